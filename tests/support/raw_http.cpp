#include "support/raw_http.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <stdexcept>

namespace maritaca::test {

using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

// -- raw_conn -----------------------------------------------------------------

raw_conn::raw_conn(int port, const std::string& source) {
  fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd_ < 0) throw std::runtime_error("cannot make a socket");
  if (!source.empty()) {
    sockaddr_in from{};
    from.sin_family = AF_INET;
    from.sin_port = 0;
    if (::inet_pton(AF_INET, source.c_str(), &from.sin_addr) != 1 ||
        ::bind(fd_, reinterpret_cast<sockaddr*>(&from), sizeof(from)) != 0) {
      close();
      throw std::runtime_error("cannot bind to " + source);
    }
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close();
    throw std::runtime_error("cannot connect");
  }
}

raw_conn::~raw_conn() {
  close();
}

void raw_conn::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool raw_conn::send(std::string_view data) {
  return scripted_server::write_all(fd_, data);
}

std::string raw_conn::read_some(std::chrono::milliseconds timeout, bool& eof) {
  eof = false;
  pollfd p{fd_, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return {};
  char buf[16384];
  auto n = ::recv(fd_, buf, sizeof(buf), 0);
  if (n <= 0) {
    eof = true;
    return {};
  }
  return std::string(buf, static_cast<std::size_t>(n));
}

std::string raw_conn::read_until_close(std::chrono::milliseconds timeout) {
  std::string all;
  auto end = clock_type::now() + timeout;
  while (clock_type::now() < end) {
    bool eof = false;
    all += read_some(50ms, eof);
    if (eof) break;
  }
  return all;
}

bool raw_conn::closed_within(std::chrono::milliseconds timeout) {
  auto end = clock_type::now() + timeout;
  while (clock_type::now() < end) {
    bool eof = false;
    read_some(50ms, eof);
    if (eof) return true;
  }
  return false;
}

// -- responses ----------------------------------------------------------------

std::string raw_result::header(const std::string& name) const {
  auto lower = [](std::string s) {
    for (auto& c : s)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  };
  auto h = lower(head);
  auto key = "\r\n" + lower(name) + ":";
  auto pos = h.find(key);
  if (pos == std::string::npos) return {};
  auto start = pos + key.size();
  auto end = head.find("\r\n", start);
  auto v = head.substr(start, end - start);
  while (!v.empty() && v.front() == ' ')
    v.erase(0, 1);
  return v;
}

std::string make_request(const std::string& method, const std::string& target,
                         const std::string& headers, const std::string& body,
                         bool keep_alive) {
  std::string out = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  if (!keep_alive) out += "Connection: close\r\n";
  if (!body.empty() || method == "POST")
    out += "Content-Type: application/json\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n";
  out += headers + "\r\n" + body;
  return out;
}

std::string dechunk(const std::string& raw, bool& complete) {
  std::string out;
  std::size_t pos = 0;
  complete = false;
  while (pos < raw.size()) {
    auto eol = raw.find("\r\n", pos);
    if (eol == std::string::npos) break;
    auto len = std::strtoul(raw.substr(pos, eol - pos).c_str(), nullptr, 16);
    if (len == 0) {
      complete = true;
      break;
    }
    if (eol + 2 + len > raw.size()) break;
    out += raw.substr(eol + 2, len);
    pos = eol + 2 + len + 2;
  }
  return out;
}

void parse_response(const std::string& raw, raw_result& r, bool head_only) {
  auto head_end = raw.find("\r\n\r\n");
  if (raw.rfind("HTTP/1.", 0) != 0 || head_end == std::string::npos) return;
  r.head = raw.substr(0, head_end);
  r.status = std::atoi(r.head.substr(9, 3).c_str());
  auto body = raw.substr(head_end + 4);
  if (head_only) {
    r.body = body;
    r.complete = true;
  } else if (r.header("transfer-encoding") == "chunked") {
    r.body = dechunk(body, r.complete);
  } else {
    r.body = body;
    auto cl = r.header("content-length");
    r.complete = cl.empty() || body.size() == std::stoul(cl);
  }
}

raw_result roundtrip(int port, const std::string& raw,
                     std::chrono::milliseconds timeout) {
  raw_conn c{port};
  auto start = clock_type::now();
  c.send(raw);
  std::string all;
  std::size_t head_end = std::string::npos;
  raw_result r;
  auto end = start + timeout;
  while (clock_type::now() < end) {
    bool eof = false;
    auto piece = c.read_some(100ms, eof);
    if (eof) break;
    if (piece.empty()) continue;
    all += piece;
    auto at = std::chrono::duration<double>(clock_type::now() - start).count();
    if (head_end == std::string::npos) {
      head_end = all.find("\r\n\r\n");
      if (head_end != std::string::npos && all.size() > head_end + 4)
        r.arrivals.push_back(at);
    } else {
      r.arrivals.push_back(at);
    }
  }
  parse_response(all, r);
  return r;
}

// -- scripted_server ----------------------------------------------------------

scripted_server::scripted_server(script fn) : fn_(std::move(fn)) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (listen_fd_ < 0 ||
      ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) !=
          0 ||
      ::listen(listen_fd_, 128) != 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    throw std::runtime_error("scripted_server: cannot listen");
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread{[this] { accept_loop(); }};
}

scripted_server::~scripted_server() {
  stopping_ = true;
  ::shutdown(listen_fd_, SHUT_RDWR);
  acceptor_.join();
  ::close(listen_fd_);
  {
    std::lock_guard<std::mutex> guard{mtx_};
    for (auto fd : fds_)
      ::shutdown(fd, SHUT_RDWR);
  }
  for (auto& t : workers_)
    t.join();
}

std::string scripted_server::base_url() const {
  return "http://127.0.0.1:" + std::to_string(port_) + "/api";
}

std::vector<std::string> scripted_server::heads() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return heads_;
}

bool scripted_server::write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    auto n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

void scripted_server::accept_loop() {
  while (!stopping_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    auto fd = ::accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) continue;
    std::lock_guard<std::mutex> guard{mtx_};
    if (stopping_) {
      ::close(fd);
      break;
    }
    fds_.push_back(fd);
    workers_.emplace_back([this, fd] { serve(fd); });
  }
}

void scripted_server::serve(int fd) {
  // The request head, and a Content-Length body if there is one.
  std::string in;
  char buf[4096];
  std::size_t head_end = std::string::npos;
  while (!stopping_ && head_end == std::string::npos && in.size() < 1 << 20) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    auto n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    in.append(buf, static_cast<std::size_t>(n));
    head_end = in.find("\r\n\r\n");
  }
  if (head_end != std::string::npos) {
    auto head = in.substr(0, head_end);
    std::size_t length = 0;
    for (auto& c : head)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (auto at = head.find("\r\ncontent-length:"); at != std::string::npos)
      length = std::strtoul(head.c_str() + at + 17, nullptr, 10);
    while (!stopping_ && in.size() < head_end + 4 + length) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      auto n = ::recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) break;
      in.append(buf, static_cast<std::size_t>(n));
    }
    {
      std::lock_guard<std::mutex> guard{mtx_};
      heads_.push_back(in.substr(0, head_end));
    }
    fn_(fd, stopping_);
  }
  // The descriptor closes only here, so that the destructor's shutdown
  // never hits a reused one.
  std::lock_guard<std::mutex> guard{mtx_};
  ::shutdown(fd, SHUT_RDWR);
  ::close(fd);
  std::erase(fds_, fd);
}

} // namespace maritaca::test
