#pragma once

/// @file
/// The conversion of a parsed Beast request into the gateway's `request`,
/// shared by server.cpp and the fuzz target. Beast-side code only.

#include "maritaca/gateway/http.hpp"

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <string>

namespace maritaca::gateway {

/// Copies the head of `msg` into a `request` from the peer `remote`
/// ("ADDRESS:PORT"): the target splits into path and query at its first
/// '?'; the body stays empty.
request to_request_head(
    const boost::beast::http::request<boost::beast::http::string_body>& msg,
    std::string remote);

/// Moves `msg` into a `request`: its head as `to_request_head`, its body.
request
to_request(boost::beast::http::request<boost::beast::http::string_body>&& msg,
           std::string remote);

} // namespace maritaca::gateway
