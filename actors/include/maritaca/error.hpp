#pragma once

/// @file
/// The `maritaca` error category of CAF errors. Every failure of an ask
/// reaches callers as a `caf::error` whose category is `error_category` and
/// whose code is an `errc`; its context carries the full `failure` (HTTP
/// status, retry-after, which deadline, the server's message).

#include "maritaca/failure.hpp"

#include <caf/atom.hpp>
#include <caf/error.hpp>

#include <string>

namespace caf {
class actor_system_config;
} // namespace caf

namespace maritaca {

/// The category atom of maritaca errors.
inline constexpr caf::atom_value error_category = caf::atom("maritaca");

/// Wraps `x` into a `caf::error` of the `maritaca` category.
caf::error make_error(failure x);

/// Makes an error with `code` and `message`.
caf::error make_error(errc code, std::string message);

/// Returns whether `x` belongs to the `maritaca` category.
bool is_maritaca_error(const caf::error& x) noexcept;

/// Returns the code of `x`: its `errc` for maritaca errors, `errc::none` for
/// no error, and for CAF's own errors the closest code (request timeout ->
/// `timeout`, receiver down / unexpected message -> `cancelled` /
/// `protocol_error`).
errc code_of(const caf::error& x) noexcept;

/// Recovers the failure of `x` (for other categories a failure whose code is
/// `code_of(x)` and whose message is CAF's rendering).
failure to_failure(const caf::error& x);

/// Renders `x` for humans ("rate_limited (HTTP 429): ...").
std::string describe(const caf::error& x);

/// Registers the category's renderer with `cfg` so that
/// `actor_system::render` prints maritaca errors readably.
void add_error_category(caf::actor_system_config& cfg);

} // namespace maritaca
