// flatring-campaign <soak|chaos|scribble> --mode <spsc|mpsc|mpmc|broadcast> [options]
// The long runs of scripts/campaign.sh; see campaign.hpp and docs/security.md ("How it is tested").
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <sys/mman.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include "campaign.hpp"

namespace campaign {

Args::Args(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0) throw std::invalid_argument("unexpected argument: " + a);
    a = a.substr(2);
    if (i + 1 < argc && std::string_view(argv[i + 1]).rfind("--", 0) != 0) {
      values_[a] = argv[++i];
    } else {
      values_[a] = "";
    }
  }
}

std::uint64_t Args::num(const std::string& key, std::uint64_t fallback) const {
  auto it = values_.find(key);
  if (it == values_.end()) return fallback;
  std::size_t used = 0;
  const double v = std::stod(it->second, &used);  // 1e9 as well as 1000000000
  if (used != it->second.size() || v < 0) throw std::invalid_argument("--" + key + ": not a count");
  return static_cast<std::uint64_t>(v);
}

std::string Args::str(const std::string& key, const std::string& fallback) const {
  auto it = values_.find(key);
  return it == values_.end() ? fallback : it->second;
}

flatring::Mode Args::mode() const {
  const std::string m = str("mode", "");
  for (flatring::Mode mode : {flatring::Mode::spsc, flatring::Mode::mpsc, flatring::Mode::mpmc,
                              flatring::Mode::broadcast}) {
    if (flatring::to_string(mode) == m) return mode;
  }
  throw std::invalid_argument("--mode: spsc, mpsc, mpmc or broadcast");
}

Json& Json::add_raw(std::string_view key, const std::string& json) {
  if (!body_.empty()) body_ += ", ";
  body_ += "\"";
  body_ += key;
  body_ += "\": ";
  body_ += json;
  return *this;
}

Json& Json::add(std::string_view key, std::uint64_t v) { return add_raw(key, std::to_string(v)); }

Json& Json::add(std::string_view key, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3f", v);
  return add_raw(key, buf);
}

std::string json_string(std::string_view v) {
  std::string q = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') q += '\\';
    q += (c == '\n') ? ' ' : c;
  }
  return q + "\"";
}

Json& Json::add(std::string_view key, std::string_view v) { return add_raw(key, json_string(v)); }

pid_t spawn(const std::function<int()>& body) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    int rc = 99;
    try {
      rc = body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "campaign child %d failed: %s\n", ::getpid(), e.what());
    }
    std::fflush(nullptr);
    ::_exit(rc);
  }
  return pid;
}

namespace {
int decode(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}
}  // namespace

int join(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  return decode(status);
}

int exited(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, WNOHANG) != pid) return 0;
  return WIFEXITED(status) ? 1000 + WEXITSTATUS(status) : decode(status);
}

int join_within(pid_t pid, std::chrono::milliseconds limit) {
  const auto stop = std::chrono::steady_clock::now() + limit;
  for (;;) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) return decode(status);
    if (std::chrono::steady_clock::now() >= stop) {
      ::kill(pid, SIGKILL);
      join(pid);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

RingName::RingName(const std::string& tag) {
  static std::atomic<int> counter{0};
  name_ = "frcampaign-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

RingName::~RingName() {
  try {
    flatring::Ring::remove(name_);
  } catch (...) {  // already gone
  }
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void* map_shared_zeroed(std::size_t size) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::runtime_error("mmap of a shared ledger failed");
  return p;
}

void release_shared(void* p, std::size_t size) { ::munmap(p, size); }

}  // namespace campaign

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: flatring-campaign <soak|chaos|scribble> --mode <spsc|mpsc|mpmc|broadcast> "
                 "[options]\n");
    return 2;
  }
  const std::string_view what = argv[1];
  try {
    const campaign::Args args(argc - 1, argv + 1);
    if (what == "soak") return campaign::soak_main(args);
    if (what == "chaos") return campaign::chaos_main(args);
    if (what == "scribble") return campaign::scribble_main(args);
    std::fprintf(stderr, "flatring-campaign: unknown part %s\n", argv[1]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "flatring-campaign %s: %s\n", argv[1], e.what());
  }
  return 2;
}
