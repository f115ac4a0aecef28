// The bridge tests' fixtures: bridge processes (the flatring binary) that are always reaped, a
// scratch directory with keys, and the status files the bridges keep.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <flatring/bridge.hpp>

#include "helpers.hpp"

namespace fr_bridge {

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// A scratch directory with a server and a client key pair, removed at the end.
struct Scratch {
  std::string dir;
  Scratch() {
    std::string t = "/tmp/flatring-bridge-test-XXXXXX";
    REQUIRE(::mkdtemp(t.data()) != nullptr);
    dir = t;
    flatring::bridge::write_keys(dir + "/server", flatring::bridge::generate_keys());
    flatring::bridge::write_keys(dir + "/client", flatring::bridge::generate_keys());
  }
  ~Scratch() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  [[nodiscard]] std::string path(const std::string& f) const { return dir + "/" + f; }
};

/// A flatring process: started with fork/exec, stdout/stderr into files, killed and reaped on
/// destruction whatever happened.
class Proc {
 public:
  Proc(std::vector<std::string> args, const std::string& log) : log_(log) {
    args.insert(args.begin(), FLATRING_CLI);
    // Everything the child needs is made before the fork: other threads of this test may hold
    // the allocator's lock at that moment, so the child only calls async-signal-safe functions.
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::fflush(nullptr);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      }
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  ~Proc() { kill(SIGKILL); }
  Proc(const Proc&) = delete;
  Proc& operator=(const Proc&) = delete;

  /// Sends `sig` and reaps; returns the exit code (128 + signal when killed). Idempotent.
  int kill(int sig) {
    if (pid_ > 0) {
      ::kill(pid_, sig);
      code_ = reap();
    }
    return code_;
  }
  /// Waits for the process to exit by itself (up to `limit`, a hang guard, then SIGKILL).
  int wait(std::chrono::seconds limit = std::chrono::seconds(120)) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (pid_ > 0) {
      int status = 0;
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        break;
      }
      if (std::chrono::steady_clock::now() > end) return kill(SIGKILL);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return code_;
  }
  [[nodiscard]] bool running() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return false;
    }
    return true;
  }
  [[nodiscard]] std::string log() const { return slurp(log_); }

 private:
  int reap() {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  std::string log_;
  pid_t pid_ = -1;
  int code_ = -1;
};

/// A counter from a bridge's JSON status file (the latest), or nothing when not there yet.
inline std::optional<std::uint64_t> counter(const std::string& status_file,
                                            const std::string& name) {
  const std::string s = slurp(status_file);
  const std::regex re("\"" + name + "\":([0-9]+)");
  std::smatch m;
  if (!std::regex_search(s, m, re)) return std::nullopt;
  return std::stoull(m[1].str());
}
inline std::string field(const std::string& status_file, const std::string& name) {
  const std::string s = slurp(status_file);
  const std::regex re("\"" + name + "\":\"([^\"]*)\"");
  std::smatch m;
  if (!std::regex_search(s, m, re)) return {};
  return m[1].str();
}

/// Waits until `pred()` holds; a hang guard of `limit` (never a measurement), after which the
/// test fails with `what`.
template <class P>
void eventually(P&& pred, const std::string& what,
                std::chrono::seconds limit = std::chrono::seconds(120)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end) FAIL("gave up waiting: " << what);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

/// `flatring bridge in` on a free loopback port, with its status file; returns the endpoint.
struct InBridge {
  std::string status;
  std::unique_ptr<Proc> proc;
  std::string endpoint;

  InBridge(const Scratch& s, const std::string& ring, const std::string& bind = "tcp://127.0.0.1:0",
           std::vector<std::string> extra = {}) {
    start(s, ring, bind, std::move(extra));
  }
  void start(const Scratch& s, const std::string& ring, const std::string& bind,
             std::vector<std::string> extra = {}) {
    status = s.path("in-" + ring + ".json");
    std::remove(status.c_str());
    std::vector<std::string> args{"bridge",
                                  "in",
                                  ring,
                                  "--bind",
                                  bind,
                                  "--key",
                                  s.path("server.key"),
                                  "--allow",
                                  s.path("client.pub"),
                                  "--state-file",
                                  s.path(ring + ".state"),
                                  "--status-file",
                                  status,
                                  "--status-interval",
                                  "0.05"};
    args.insert(args.end(), extra.begin(), extra.end());
    proc = std::make_unique<Proc>(args, s.path("in-" + ring + ".log"));
    eventually([&] { return !field(status, "bound").empty() || !proc->running(); },
               "the bridge in to bind");
    endpoint = field(status, "bound");
    REQUIRE(!endpoint.empty());
  }
  [[nodiscard]] std::uint64_t get(const std::string& name) const {
    return counter(status, name).value_or(0);
  }
};

/// Stops a bridge with SIGTERM once it runs (it has written its status file, so its signal
/// handlers are in place) and returns its exit code: 0 when it stopped cleanly.
inline int terminate(Proc& p, const std::string& status_file) {
  eventually([&] { return !slurp(status_file).empty() || !p.running(); },
             "the bridge to report its status");
  return p.kill(SIGTERM);
}

inline std::vector<std::string> out_args(const Scratch& s, const std::string& ring,
                                         const std::string& to, const std::string& status) {
  return {"bridge",
          "out",
          ring,
          "--to",
          to,
          "--key",
          s.path("client.key"),
          "--server-key",
          s.path("server.pub"),
          "--status-file",
          status,
          "--status-interval",
          "0.05",
          "--timeout",
          "1"};
}

}  // namespace fr_bridge
