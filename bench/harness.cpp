#include "harness.hpp"

#include <fmt/format.h>

#include <fcntl.h>
#include <mqueue.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>

namespace bench {

std::uint64_t g_fault_seq = ~std::uint64_t(0);

// ---------------------------------------------------------------- common.hpp helpers

std::string_view to_string(Pattern p) noexcept {
  return p == Pattern::throughput ? "throughput" : "latency";
}

std::optional<Pattern> parse_pattern(std::string_view s) noexcept {
  if (s == "throughput") return Pattern::throughput;
  if (s == "latency") return Pattern::latency;
  return std::nullopt;
}

void fail_errno(std::string_view what) {
  const int e = errno;
  throw BenchError(fmt::format("{}: {}", what, std::strerror(e)));
}

void fail_message(std::uint64_t expected_seq, std::uint64_t got_head, std::uint64_t got_tail,
                  std::size_t expected_len, std::size_t got_len) {
  throw BenchError(
      fmt::format("bad message: expected seq {} length {}, got length {} head {} tail {:#x}",
                  expected_seq, expected_len, got_len, got_head, got_tail));
}

void fill_pattern(std::byte* msg, std::size_t len) noexcept {
  for (std::size_t i = 0; i < len; ++i) msg[i] = std::byte(0xA5 ^ (i * 31));
}

std::string format_size(std::size_t b) {
  if (b >= (1u << 20) && b % (1u << 20) == 0) return fmt::format("{} MiB", b >> 20);
  if (b >= 1024 && b % 1024 == 0) return fmt::format("{} KiB", b >> 10);
  return fmt::format("{} B", b);
}

std::optional<std::size_t> parse_size(std::string_view s) {
  std::size_t i = 0;
  std::uint64_t v = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
    v = v * 10 + std::uint64_t(s[i] - '0');
    if (v > (1ull << 40)) return std::nullopt;
    ++i;
  }
  if (i == 0) return std::nullopt;
  std::string suffix;
  for (; i < s.size(); ++i)
    if (s[i] != ' ') suffix += char(std::tolower(static_cast<unsigned char>(s[i])));
  std::uint64_t mul = 1;
  if (suffix.empty() || suffix == "b") mul = 1;
  else if (suffix == "k" || suffix == "kib" || suffix == "kb") mul = 1024;
  else if (suffix == "m" || suffix == "mib" || suffix == "mb") mul = 1024 * 1024;
  else return std::nullopt;
  return std::size_t(v * mul);
}

// ---------------------------------------------------------------- shared memory, peers

SharedMemory::SharedMemory(std::size_t bytes) : n_(bytes) {
  p_ = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p_ == MAP_FAILED) {
    p_ = nullptr;
    fail_errno("mmap(MAP_SHARED|MAP_ANONYMOUS)");
  }
}

SharedMemory::~SharedMemory() {
  if (p_) munmap(p_, n_);
}

void Peer::slow_check() {
  if (ctl_->failed.load(std::memory_order_relaxed)) throw BenchError("the other process failed");
  if ((spins_ & 0xFFFFu) == 0) check_now();
}

void Peer::check_now() {
  if (ctl_->failed.load(std::memory_order_relaxed)) throw BenchError("the other process failed");
  if (death_fd_ >= 0) {
    pollfd pfd{death_fd_, POLLIN, 0};
    if (::poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLHUP | POLLIN | POLLERR)))
      throw BenchError("the consumer process died");
  }
}

void ChildSide::wait_a_little() noexcept {
  timespec ts{0, 20'000};
  nanosleep(&ts, nullptr);
}

void ParentSide::wait_ready() {
  if (ready_) return;
  Control& c = peer_.ctl();
  unsigned idle = 0;
  while (c.child_ready.load(std::memory_order_acquire) == 0) {
    if (++idle > 1024) {
      timespec ts{0, 50'000};
      nanosleep(&ts, nullptr);
      peer_.slow_check();
    }
    cpu_relax();
    peer_.spin_check();
  }
  ready_ = true;
}

void ParentSide::wait_done(std::uint64_t r) {
  Control& c = peer_.ctl();
  unsigned idle = 0;
  while (c.round_done.load(std::memory_order_acquire) != r) {
    // The child stamps its own end time, so sleeping here does not skew the measurement; it
    // leaves the CPU to anything else (there are only two).
    if (++idle > 4096) {
      timespec ts{0, 20'000};
      nanosleep(&ts, nullptr);
      if ((idle & 63) == 0) peer_.slow_check();
    }
    cpu_relax();
    peer_.spin_check();
  }
}

void ParentSide::stop() {
  Control& c = peer_.ctl();
  c.round_count.store(0, std::memory_order_relaxed);
  c.round.store(++round_, std::memory_order_release);
}

// ---------------------------------------------------------------- cleanup registry, signals

namespace {

constexpr int kSlots = 16;
struct Slot {
  volatile sig_atomic_t used = 0;
  NameKind kind = NameKind::shm;
  char name[256] = {};
};
Slot g_slots[kSlots];
volatile pid_t g_child = 0;
Control* volatile g_ctl = nullptr;

void remove_name(NameKind kind, const char* name) noexcept {
  switch (kind) {
    case NameKind::shm: shm_unlink(name); break;
    case NameKind::mq: mq_unlink(name); break;
    case NameKind::file: unlink(name); break;
  }
}

void write_str(const char* s) noexcept {
  ssize_t r = ::write(2, s, std::strlen(s));
  (void)r;
}

extern "C" void on_child_exit(int) {}  // only there to make blocking calls return EINTR

extern "C" void on_fatal_signal(int sig) {
  const pid_t child = g_child;
  if (child > 0) {
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
  }
  for (auto& s : g_slots)
    if (s.used) remove_name(s.kind, s.name);
  if (sig == SIGALRM) {
    write_str("flatring-bench: FAILED: watchdog: case did not finish in time; child killed\n");
    Control* c = g_ctl;
    if (c && c->failed.load() && c->message[0]) {
      c->message[sizeof c->message - 1] = 0;
      write_str("flatring-bench: consumer reported: ");
      write_str(c->message);
      write_str("\n");
    }
  } else write_str("flatring-bench: interrupted\n");
  _exit(sig == SIGALRM ? 3 : 128 + sig);
}

cpu_set_t g_saved_affinity;

void pin_to(int cpu) noexcept {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof set, &set);
}

}  // namespace

void restore_affinity() noexcept {
  sched_setaffinity(0, sizeof g_saved_affinity, &g_saved_affinity);
}

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_fatal_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGALRM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a dead reader shows up as EPIPE, not as a silent death
  // No SA_RESTART: a blocking call of the parent returns EINTR when the child exits, and the
  // transports' EINTR paths call Peer::check_now().
  struct sigaction chld {};
  chld.sa_handler = on_child_exit;
  sigemptyset(&chld.sa_mask);
  chld.sa_flags = SA_NOCLDSTOP;
  sigaction(SIGCHLD, &chld, nullptr);
}

CleanupName::CleanupName(NameKind kind, std::string name) {
  for (int i = 0; i < kSlots; ++i) {
    if (!g_slots[i].used) {
      g_slots[i].kind = kind;
      std::snprintf(g_slots[i].name, sizeof g_slots[i].name, "%s", name.c_str());
      g_slots[i].used = 1;
      slot_ = i;
      return;
    }
  }
}

CleanupName::~CleanupName() {
  if (slot_ >= 0) g_slots[slot_].used = 0;
}

std::string unique_name(std::string_view tag) {
  static unsigned counter = 0;
  return fmt::format("frb-{}-{}-{}", getpid(), counter++, tag);
}

// ---------------------------------------------------------------- CPUs

namespace {
std::set<int> siblings_of(int cpu) {
  std::set<int> out;
  std::ifstream f(fmt::format("/sys/devices/system/cpu/cpu{}/topology/thread_siblings_list", cpu));
  std::string list;
  if (!(f >> list)) return out;
  // "0-1" or "0,4" style lists.
  std::size_t pos = 0;
  while (pos < list.size()) {
    std::size_t comma = list.find(',', pos);
    std::string part =
        list.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    std::size_t dash = part.find('-');
    try {
      if (dash == std::string::npos) {
        out.insert(std::stoi(part));
      } else {
        for (int c = std::stoi(part.substr(0, dash)); c <= std::stoi(part.substr(dash + 1)); ++c)
          out.insert(c);
      }
    } catch (...) {
      return {};
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}
}  // namespace

CpuPair pick_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return {};
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  if (cpus.size() < 2) return {};
  CpuPair p{cpus[0], cpus[1]};
  const std::set<int> sib = siblings_of(cpus[0]);
  for (int c : cpus) {
    if (c != cpus[0] && !sib.count(c)) {
      p.consumer = c;
      break;
    }
  }
  return p;
}

// ---------------------------------------------------------------- fork engine

LatencyResult percentiles(std::vector<std::uint64_t>& v) {
  LatencyResult r;
  r.round_trips = v.size();
  if (v.empty()) return r;
  auto rank = [&](double q) {
    std::size_t k = std::size_t(std::ceil(q * double(v.size())));
    k = std::clamp<std::size_t>(k, 1, v.size()) - 1;
    std::nth_element(v.begin(), v.begin() + std::ptrdiff_t(k), v.end());
    return v[k];
  };
  // nth_element partitions, so take the quantiles in increasing order of rank.
  r.p50_ns = rank(0.50);
  r.p99_ns = rank(0.99);
  r.p999_ns = rank(0.999);
  return r;
}

std::uint64_t initial_round(std::size_t payload) noexcept {
  return std::clamp<std::uint64_t>((4u << 20) / std::max<std::size_t>(payload, 1), 4, 4096);
}

namespace detail {

struct ForkState {
  SharedMemory mem{sizeof(Control)};
  Control* ctl = nullptr;
  pid_t pid = -1;
  int death_fd = -1;
  bool child = false;
  CaseSpec spec;
};

bool in_child(ForkState* st) noexcept { return st->child; }

ForkState* fork_begin(const CaseSpec& spec) {
  auto* st = new ForkState;
  st->spec = spec;
  st->ctl = new (st->mem.get()) Control;
  int death[2];
  if (pipe2(death, O_CLOEXEC) != 0) {
    delete st;
    fail_errno("pipe2");
  }
  std::fflush(stdout);
  std::fflush(stderr);
  sched_getaffinity(0, sizeof g_saved_affinity, &g_saved_affinity);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    close(death[0]);
    close(death[1]);
    delete st;
    fail_errno("fork");
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(9);
    // The child must not run the parent's handlers (they would remove the parent's names).
    signal(SIGALRM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    close(death[0]);
    st->child = true;
    st->death_fd = death[1];  // held open until the child exits
    pin_to(spec.consumer_cpu);
    return st;
  }
  close(death[1]);
  st->pid = pid;
  st->death_fd = death[0];
  g_child = pid;
  g_ctl = st->ctl;
  pin_to(spec.producer_cpu);
  alarm(unsigned(std::max(1.0, std::ceil(spec.watchdog_s))));
  return st;
}

void child_run(ForkState* st, void (*fn)(void*, ChildSide&), void* ctx) noexcept {
  ChildSide side(st->ctl);
  int code = 0;
  auto report = [&](const char* what) {
    // A failure caused by the parent's (flag already set) is the parent's to report.
    if (st->ctl->failed.exchange(1) == 0)
      std::snprintf(st->ctl->message, sizeof st->ctl->message, "%s", what);
    code = 2;
  };
  try {
    fn(ctx, side);
  } catch (const std::exception& e) {
    report(e.what());
  } catch (...) {
    report("unknown exception");
  }
  std::fflush(stdout);
  std::fflush(stderr);
  _exit(code);  // never run the parent's destructors (guards that remove rings, ...)
}

ParentSide parent_side(ForkState* st) { return ParentSide(st->ctl, st->death_fd); }

namespace {
void end_case(ForkState* st) noexcept {
  alarm(0);
  g_child = 0;
  g_ctl = nullptr;
  sched_setaffinity(0, sizeof g_saved_affinity, &g_saved_affinity);
  close(st->death_fd);
}

int reap(pid_t pid) noexcept {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

std::string describe(int status) {
  if (WIFEXITED(status)) return fmt::format("exit code {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("signal {}", WTERMSIG(status));
  return "unknown status";
}
}  // namespace

void parent_finish(ForkState* st, ParentSide& side) {
  side.stop();
  const int status = reap(st->pid);
  std::string child_msg = st->ctl->failed.load() ? std::string(st->ctl->message) : std::string();
  end_case(st);
  delete st;
  if (!child_msg.empty()) throw BenchError("consumer: " + child_msg);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw BenchError("consumer process ended with " + describe(status));
}

void parent_fail(ForkState* st, const char* what) {
  std::string msg = what;
  st->ctl->failed.store(1, std::memory_order_release);
  // Give a child that is reporting its own failure a moment to finish writing it.
  for (int i = 0; i < 200; ++i) {
    int status = 0;
    if (waitpid(st->pid, &status, WNOHANG) == st->pid) {
      st->pid = -1;
      break;
    }
    timespec ts{0, 1'000'000};
    nanosleep(&ts, nullptr);
  }
  if (st->pid > 0) {
    kill(st->pid, SIGKILL);
    reap(st->pid);
  }
  if (st->ctl->message[0])
    msg = std::string("consumer: ") + st->ctl->message + " (producer: " + msg + ")";
  end_case(st);
  delete st;
  throw BenchError(msg);
}

}  // namespace detail
}  // namespace bench
