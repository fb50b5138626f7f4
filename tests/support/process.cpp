#include "support/process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace maritaca::test {

std::string bin_path(const std::string& program) {
  return std::string{MARITACA_BIN_DIR} + "/" + program;
}

child_process::child_process(std::vector<std::string> argv,
                             std::string ready_prefix) {
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    // Child: dies with the test (even when the test is killed), stdout into
    // the pipe, stderr stays the test's stderr.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    std::vector<char*> args;
    for (auto& a : argv)
      args.push_back(a.data());
    args.push_back(nullptr);
    execv(args[0], args.data());
    perror("execv");
    _exit(127);
  }
  close(fds[1]);
  stdout_fd_ = fds[0];
  if (ready_prefix.empty()) return;
  // Read byte by byte until a line with the prefix arrives (or 10 s pass).
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::string line;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{stdout_fd_, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char c;
    if (read(stdout_fd_, &c, 1) != 1) break;
    if (c != '\n') {
      line += c;
      continue;
    }
    if (line.rfind(ready_prefix, 0) == 0) {
      first_line_ = line;
      return;
    }
    line.clear();
  }
  kill(SIGKILL);
  wait();
  throw std::runtime_error("child " + argv[0] + " did not print a line with '" +
                           ready_prefix + "'");
}

child_process::~child_process() {
  if (pid_ > 0) {
    kill(SIGTERM);
    // Give it a moment to exit cleanly, then insist.
    for (int i = 0; i < 50; ++i) {
      int status;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  if (stdout_fd_ >= 0) close(stdout_fd_);
}

void child_process::kill(int signal) {
  if (pid_ > 0) ::kill(pid_, signal);
}

int child_process::wait() {
  if (pid_ <= 0) return -1;
  int status = 0;
  if (waitpid(pid_, &status, 0) != pid_) return -1;
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

namespace {

std::vector<std::string> sim_args(std::vector<std::string> extra) {
  std::vector<std::string> args{bin_path("maritaca-sim"), "--listen",
                                "127.0.0.1:0"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

} // namespace

sim_process::sim_process(std::vector<std::string> extra_args)
    : proc_(sim_args(std::move(extra_args)), "http") {
  // nop
}

std::string sim_process::origin() const {
  auto& url = base_url();
  auto pos = url.find('/', url.find("//") + 2);
  return pos == std::string::npos ? url : url.substr(0, pos);
}

int sim_process::port() const {
  auto o = origin();
  return std::atoi(o.substr(o.rfind(':') + 1).c_str());
}

namespace {

std::chrono::nanoseconds process_cpu() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return std::chrono::seconds{ts.tv_sec} + std::chrono::nanoseconds{ts.tv_nsec};
}

} // namespace

std::chrono::nanoseconds idle_cpu(std::chrono::milliseconds settle,
                                  std::chrono::milliseconds window) {
  std::this_thread::sleep_for(settle);
  auto before = process_cpu();
  std::this_thread::sleep_for(window);
  return process_cpu() - before;
}

int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len)) {
    if (fd >= 0) close(fd);
    throw std::runtime_error("cannot find a free port");
  }
  close(fd);
  return ntohs(addr.sin_port);
}

namespace {

/// Whether something accepts connections on 127.0.0.1:`port`.
bool listening(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  auto ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

} // namespace

proxy_process::proxy_process(const std::string& user,
                             const std::string& password) {
  const std::string binary = "/usr/bin/tinyproxy";
  if (access(binary.c_str(), X_OK) != 0)
    throw std::runtime_error("tinyproxy is missing (run scripts/setup)");
  char tmpl[] = "/tmp/maritaca-proxy-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
  port_ = free_port();
  // No ConnectPort line: CONNECT may reach any port (the simulator's).
  std::string conf = "Port " + std::to_string(port_) +
                     "\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 30\n"
                     "MaxClients 200\nLogLevel Warning\n";
  if (!user.empty()) conf += "BasicAuth " + user + " " + password + "\n";
  auto path = dir_ + "/tinyproxy.conf";
  if (auto f = std::fopen(path.c_str(), "w")) {
    std::fputs(conf.c_str(), f);
    std::fclose(f);
  } else {
    throw std::runtime_error("cannot write " + path);
  }
  proc_ = std::make_unique<child_process>(
      std::vector<std::string>{binary, "-d", "-c", path});
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!listening(port_)) {
    if (std::chrono::steady_clock::now() > deadline)
      throw std::runtime_error("tinyproxy does not listen on port " +
                               std::to_string(port_));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

proxy_process::~proxy_process() {
  proc_.reset();
  std::remove((dir_ + "/tinyproxy.conf").c_str());
  rmdir(dir_.c_str());
}

std::string proxy_process::url() const {
  return "http://127.0.0.1:" + std::to_string(port_);
}

test_cert make_test_cert(const std::string& dns_name) {
  static std::mutex mtx;
  static std::map<std::string, test_cert> made;
  std::lock_guard<std::mutex> guard{mtx};
  if (auto i = made.find(dns_name); i != made.end()) return i->second;
  char tmpl[] = "/tmp/maritaca-cert-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
  test_cert result{std::string{tmpl} + "/cert.pem",
                   std::string{tmpl} + "/key.pem"};
  auto cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=" +
             dns_name + "' -addext 'subjectAltName=DNS:" + dns_name +
             ",IP:127.0.0.1' -keyout " + result.key_file + " -out " +
             result.cert_file + " >/dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0)
    throw std::runtime_error("openssl failed to make a certificate");
  made.emplace(dns_name, result);
  return result;
}

namespace {

int raw_exchange(int port, const std::string& request, std::string& body) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{30, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  size_t sent = 0;
  while (sent < request.size()) {
    auto n = write(fd, request.data() + sent, request.size() - sent);
    if (n <= 0) {
      close(fd);
      return -1;
    }
    sent += static_cast<size_t>(n);
  }
  std::string response;
  char buf[4096];
  for (;;) {
    auto n = read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    response.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  auto head_end = response.find("\r\n\r\n");
  if (response.rfind("HTTP/1.", 0) != 0 || head_end == std::string::npos)
    return -1;
  auto head = response.substr(0, head_end);
  body = response.substr(head_end + 4);
  // Undo chunked transfer coding when present.
  std::string lower = head;
  for (auto& c : lower)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower.find("transfer-encoding: chunked") != std::string::npos) {
    std::string plain;
    size_t pos = 0;
    while (pos < body.size()) {
      auto eol = body.find("\r\n", pos);
      if (eol == std::string::npos) break;
      auto len = std::strtoul(body.substr(pos, eol - pos).c_str(), nullptr, 16);
      if (len == 0) break;
      plain += body.substr(eol + 2, len);
      pos = eol + 2 + len + 2;
    }
    body = std::move(plain);
  }
  return std::atoi(head.substr(9, 3).c_str());
}

} // namespace

int http_get(int port, const std::string& target, std::string& body) {
  return raw_exchange(port,
                      "GET " + target +
                          " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          "Connection: close\r\n\r\n",
                      body);
}

int http_post(int port, const std::string& target, const std::string& json,
              std::string& body, const std::string& extra_headers) {
  return raw_exchange(port,
                      "POST " + target +
                          " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          "Connection: close\r\nContent-Type: "
                          "application/json\r\nContent-Length: " +
                          std::to_string(json.size()) + "\r\n" + extra_headers +
                          "\r\n" + json,
                      body);
}

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

} // namespace

program_run run_program(const std::string& program,
                        const std::vector<std::string>& args,
                        const std::string& stdin_text,
                        std::chrono::milliseconds limit) {
  static std::atomic<int> runs{0};
  auto base = "/tmp/maritaca-run-" + std::to_string(::getpid()) + "-" +
              std::to_string(runs++);
  {
    std::ofstream in{base + ".in", std::ios::binary};
    in << stdin_text;
  }
  program_run r;
  auto start = std::chrono::steady_clock::now();
  auto pid = ::fork();
  if (pid == 0) {
    // The child: files for stdin, stdout and stderr, no key, no base URL.
    auto in = ::open((base + ".in").c_str(), O_RDONLY);
    auto out =
        ::open((base + ".out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    auto err =
        ::open((base + ".err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    ::unsetenv("MARITACA_API_KEY");
    ::unsetenv("MARITACA_API_BASE");
    std::vector<std::string> argv{bin_path(program)};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> cargs;
    for (auto& a : argv)
      cargs.push_back(a.data());
    cargs.push_back(nullptr);
    ::execv(cargs[0], cargs.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    r.max_rss = std::max(r.max_rss, std::max(0L, memory_of(pid, "VmRSS")));
    if (std::chrono::steady_clock::now() - start > limit) ::kill(pid, SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds{5});
  }
  r.took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(base + ".out");
  r.err = slurp(base + ".err");
  for (auto ext : {".in", ".out", ".err"})
    std::remove((base + ext).c_str());
  return r;
}

sim_stats parse_sim_stats(const std::string& json) {
  auto field = [&](const std::string& name) -> int64_t {
    auto pos = json.find("\"" + name + "\"");
    if (pos == std::string::npos) return -1;
    pos = json.find(':', pos + name.size() + 2);
    return pos == std::string::npos ? -1 : std::atoll(json.c_str() + pos + 1);
  };
  return {field("requests"), field("connections"), field("in_flight"),
          field("max_in_flight")};
}

sim_stats read_stats(const sim_process& sim) {
  std::string body;
  if (http_get(sim.port(), "/sim/stats", body) != 200) return {};
  return parse_sim_stats(body);
}

void reset_stats(const sim_process& sim) {
  std::string body;
  http_post(sim.port(), "/sim/stats/reset", "{}", body);
}

long memory_of(pid_t pid, const char* field) {
  auto path = pid == 0 ? std::string{"/proc/self/status"}
                       : "/proc/" + std::to_string(pid) + "/status";
  std::ifstream in{path};
  std::string key = std::string{field} + ":";
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0)
      return std::atol(line.c_str() + key.size()) * 1024;
  return -1;
}

} // namespace maritaca::test
