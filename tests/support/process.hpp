#pragma once

/// @file
/// Test support: runs a program of this project (maritaca-sim,
/// maritaca-gateway, maritaca) as a child process on loopback, and makes
/// self-signed certificates with the openssl CLI.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <sys/types.h>

namespace maritaca::test {

/// Whether this build runs under AddressSanitizer (then resident sets say
/// little: freed memory waits in ASan's quarantine).
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool under_asan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool under_asan = true;
#else
inline constexpr bool under_asan = false;
#endif
#else
inline constexpr bool under_asan = false;
#endif

/// Returns the path of a program built into the binary directory.
std::string bin_path(const std::string& program);

/// A child process; killed (SIGTERM, then SIGKILL) and reaped on destruction.
class child_process {
public:
  /// Starts `argv[0]` with `argv`. When `ready_prefix` is not empty, waits
  /// (up to 10 s) for the first stdout line starting with it and keeps that
  /// line in `first_line()`.
  child_process(std::vector<std::string> argv, std::string ready_prefix = {});

  ~child_process();

  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  /// The line waited for, e.g. "http://127.0.0.1:40123/api".
  const std::string& first_line() const noexcept { return first_line_; }

  /// The process id.
  pid_t pid() const noexcept { return pid_; }

  /// Sends `signal` to the child.
  void kill(int signal);

  /// Waits for the child to exit and returns its exit status (-1 on error).
  int wait();

private:
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  std::string first_line_;
};

/// maritaca-sim on 127.0.0.1 with an ephemeral port.
class sim_process {
public:
  /// Starts the simulator with extra flags (e.g. "--token-delay-ms", "5").
  explicit sim_process(std::vector<std::string> extra_args = {});

  /// The base URL it serves, e.g. "http://127.0.0.1:40123/api".
  const std::string& base_url() const noexcept { return proc_.first_line(); }

  /// "http://127.0.0.1:PORT" without the "/api" suffix.
  std::string origin() const;

  /// The listening port.
  int port() const;

  /// The child process.
  child_process& process() noexcept { return proc_; }

private:
  child_process proc_;
};

/// tinyproxy (a Debian package that scripts/setup installs: an HTTP proxy
/// we did not write) on 127.0.0.1 with a free port, allowing `CONNECT` to
/// every port.
class proxy_process {
public:
  /// Starts tinyproxy; with a `user`, it asks for these Basic credentials.
  /// Throws when tinyproxy is missing or does not listen within 10 s.
  explicit proxy_process(const std::string& user = {},
                         const std::string& password = {});

  /// Stops tinyproxy and removes its configuration.
  ~proxy_process();

  /// "http://127.0.0.1:PORT".
  std::string url() const;

  /// The listening port.
  int port() const noexcept { return port_; }

private:
  std::string dir_;
  int port_ = 0;
  std::unique_ptr<child_process> proc_;
};

/// A self-signed certificate and key in a temporary directory.
struct test_cert {
  /// PEM certificate (also the CA to trust).
  std::string cert_file;
  /// PEM private key.
  std::string key_file;
};

/// Makes (once per process and name set) a self-signed certificate valid
/// for `dns_name` and IP 127.0.0.1.
test_cert make_test_cert(const std::string& dns_name = "localhost");

/// Performs a blocking HTTP/1.1 request with a fresh connection (no
/// keep-alive) against 127.0.0.1:`port`; returns the status and stores the
/// body. A tiny independent client for checking servers in tests.
int http_get(int port, const std::string& target, std::string& body);

/// Same as http_get for POST with a JSON body and extra raw header lines
/// (each ending in "\r\n").
int http_post(int port, const std::string& target, const std::string& json,
              std::string& body, const std::string& extra_headers = {});

/// The CPU time this process uses during `window` while the test thread
/// sleeps, after waiting `settle` first. Shows threads that keep polling
/// (or spinning) when there is nothing to do: such a thread uses about the
/// whole window, idle ones next to nothing.
std::chrono::nanoseconds idle_cpu(std::chrono::milliseconds settle,
                                  std::chrono::milliseconds window);

/// The simulator's counters (`GET /sim/stats`); -1 where absent.
struct sim_stats {
  int64_t requests = -1;
  int64_t connections = -1;
  int64_t in_flight = -1;
  int64_t max_in_flight = -1;
};

/// Reads the counters out of a `/sim/stats` body.
sim_stats parse_sim_stats(const std::string& json);

/// Reads the simulator's counters (all -1 when it does not answer).
sim_stats read_stats(const sim_process& sim);

/// Resets the simulator's counters.
void reset_stats(const sim_process& sim);

/// A memory figure of process `pid` (0: this process) in bytes, from
/// /proc/PID/status: `field` is e.g. "VmRSS" (resident now) or "VmHWM" (the
/// peak so far). -1 when unknown.
long memory_of(pid_t pid, const char* field);

/// What a program printed and how it ended.
struct program_run {
  /// The exit status (-1 when it did not exit normally).
  int status = -1;
  std::string out;
  std::string err;
  /// The largest resident set seen while it ran, in bytes.
  long max_rss = 0;
  /// How long it ran.
  std::chrono::milliseconds took{0};
};

/// Runs a program of this project (`bin_path(program)`) with `args`,
/// `stdin_text` as its standard input, without MARITACA_API_KEY and
/// MARITACA_API_BASE; samples its resident set until it exits. Bounded:
/// killed after `limit`.
program_run run_program(
    const std::string& program, const std::vector<std::string>& args,
    const std::string& stdin_text = {},
    std::chrono::milliseconds limit = std::chrono::milliseconds{60'000});

/// Returns a port of 127.0.0.1 that nothing listens on right now (the
/// kernel's choice of a free one); throws when none can be found.
int free_port();

} // namespace maritaca::test
