// The two-process engine of flatring-bench.
//
// A case forks: the child is the consumer (or the echo side of a ping-pong), the parent the
// producer. Both run a sequence of *rounds* announced through a small control block in an
// anonymous MAP_SHARED mapping: the parent publishes "n messages", both sides move n messages
// (sequence numbers continue across rounds), the child stamps its steady_clock end time and
// acknowledges. Untimed rounds warm up and calibrate the rate; one timed round, sized so it lasts
// about CaseSpec::budget_s, gives the result. Only the transport's own work happens per message;
// the control block is touched once per round.
//
// Failure handling: a failed check throws BenchError. In the child the message is copied into the
// control block and the child exits non-zero; the parent, which polls the failure flag and the
// child's liveness while it spins, rethrows it. A watchdog (SIGALRM) kills a hung case, removes
// the named IPC objects registered with CleanupName and exits non-zero; SIGINT/SIGTERM do the same.
#pragma once

#include "common.hpp"

#include <sys/types.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace bench {

// Anonymous MAP_SHARED memory, inherited by the child across fork.
class SharedMemory {
 public:
  explicit SharedMemory(std::size_t bytes);
  ~SharedMemory();
  SharedMemory(const SharedMemory&) = delete;
  SharedMemory& operator=(const SharedMemory&) = delete;
  void* get() const noexcept { return p_; }
  std::size_t size() const noexcept { return n_; }

 private:
  void* p_ = nullptr;
  std::size_t n_ = 0;
};

struct Control {
  alignas(64) std::atomic<std::uint64_t> round{0};       // parent: number of the current round
  std::atomic<std::uint64_t> round_count{0};             // messages in it; 0 = stop
  alignas(64) std::atomic<std::uint64_t> round_done{0};  // child: last finished round
  std::atomic<std::int64_t> t_end_ns{0};                 // child: steady_clock at its end
  std::atomic<std::uint32_t> child_ready{0};
  alignas(64) std::atomic<std::uint32_t> failed{0};  // either side: the case failed
  alignas(64) char message[1024]{};                  // child's error message
};

// What one process knows about the other one; cheap enough to poll from a spin loop.
class Peer {
 public:
  Peer(Control* ctl, int death_fd) noexcept : ctl_(ctl), death_fd_(death_fd) {}

  // Call from every spin iteration: reads the failure flag every 1024 calls and checks the other
  // process is alive every 64 Ki calls. Throws BenchError when the case is over.
  void spin_check() {
    if ((++spins_ & 1023u) == 0) [[unlikely]]
      slow_check();
  }
  void slow_check();
  void check_now();  // both checks, now (after an EINTR, a timed wait that expired, ...)
  Control& ctl() noexcept { return *ctl_; }

 private:
  Control* ctl_;
  int death_fd_;  // parent: read end of a pipe only the child holds open; child: -1
  std::uint64_t spins_ = 0;
};

class ChildSide {
 public:
  explicit ChildSide(Control* ctl) noexcept : peer_(ctl, -1) {}
  Peer& peer() noexcept { return peer_; }

  // Serves rounds until the parent announces an empty one; per_message(seq) moves one message.
  template <class PerMessage>
  void serve(PerMessage&& per_message) {
    serve_batched([&](std::uint64_t seq, std::uint64_t) {
      per_message(seq);
      return std::uint64_t{1};
    });
  }

  // Same, for receivers that take several messages per call: per_batch(first_seq, max) moves
  // between 1 and max messages and returns how many.
  template <class PerBatch>
  void serve_batched(PerBatch&& per_batch) {
    Control& c = peer_.ctl();
    c.child_ready.store(1, std::memory_order_release);
    std::uint64_t seq = 0, last = 0;
    for (;;) {
      std::uint64_t r;
      unsigned idle = 0;
      while ((r = c.round.load(std::memory_order_acquire)) == last) {
        if (++idle > 4096) wait_a_little();
        cpu_relax();
        peer_.spin_check();
      }
      last = r;
      const std::uint64_t n = c.round_count.load(std::memory_order_relaxed);
      if (n == 0) return;
      for (std::uint64_t left = n; left > 0;) {
        const std::uint64_t k = per_batch(seq, left);
        seq += k;
        left -= k;
      }
      c.t_end_ns.store(now_ns(), std::memory_order_relaxed);
      c.round_done.store(r, std::memory_order_release);
    }
  }

 private:
  static void wait_a_little() noexcept;
  Peer peer_;
};

class ParentSide {
 public:
  ParentSide(Control* ctl, int death_fd) noexcept : peer_(ctl, death_fd) {}
  Peer& peer() noexcept { return peer_; }

  // One round of n messages: body() moves them on this side. Returns the child's end time.
  template <class Body>
  std::int64_t round(std::uint64_t n, Body&& body) {
    wait_ready();
    Control& c = peer_.ctl();
    const std::uint64_t r = ++round_;
    c.round_count.store(n, std::memory_order_relaxed);
    c.round.store(r, std::memory_order_release);
    body();
    wait_done(r);
    return c.t_end_ns.load(std::memory_order_relaxed);
  }
  void stop();  // announces the empty round that ends the child

 private:
  void wait_ready();
  void wait_done(std::uint64_t r);
  Peer peer_;
  std::uint64_t round_ = 0;
  bool ready_ = false;
};

// Forks; the child pins itself to spec.consumer_cpu and runs child_fn(ChildSide&), the parent pins
// itself to spec.producer_cpu and returns parent_fn(ParentSide&). Throws BenchError if either side
// failed (with the child's message when it has one).
namespace detail {
struct ForkState;
ForkState* fork_begin(const CaseSpec& spec);  // nullptr in the child
[[noreturn]] void child_run(ForkState*, void (*fn)(void*, ChildSide&), void* ctx) noexcept;
ParentSide parent_side(ForkState*);
void parent_finish(ForkState*, ParentSide&);                  // normal end: stop round, reap, check
[[noreturn]] void parent_fail(ForkState*, const char* what);  // kill, reap, throw
bool in_child(ForkState*) noexcept;
}  // namespace detail

template <class ChildFn, class ParentFn>
auto run_forked(const CaseSpec& spec, ChildFn&& child_fn, ParentFn&& parent_fn) {
  detail::ForkState* st = detail::fork_begin(spec);
  if (detail::in_child(st)) {
    detail::child_run(
        st,
        [](void* ctx, ChildSide& side) {
          (*static_cast<std::remove_reference_t<ChildFn>*>(ctx))(side);
        },
        const_cast<void*>(static_cast<const void*>(&child_fn)));
  }
  ParentSide side = detail::parent_side(st);
  try {
    auto result = parent_fn(side);
    detail::parent_finish(st, side);
    return result;
  } catch (const std::exception& e) {
    detail::parent_fail(st, e.what());
  } catch (...) {
    detail::parent_fail(st, "unknown exception");
  }
}

// ---- drivers: warm-up rounds, calibration, one timed round ----

std::uint64_t initial_round(std::size_t payload) noexcept;

// Warm-up: untimed rounds, growing, until they add up to spec.warmup_s and the last one lasted at
// least a third of it (a short round's rate is noise). Returns the last round's rate (per second),
// from which the timed round is sized. run(n) moves n messages and returns the seconds it took.
template <class Run>
double calibrate(const CaseSpec& spec, std::uint64_t n, std::uint64_t max_n, Run&& run) {
  double warm = 0, rate = 0;
  for (int i = 0; i < 16; ++i) {
    const double s = run(n);
    warm += s;
    rate = double(n) / s;
    if (warm >= spec.warmup_s && s >= spec.warmup_s / 3) break;
    const double want = std::max(spec.warmup_s - warm, spec.warmup_s / 2);
    n = std::clamp<std::uint64_t>(std::uint64_t(rate * want), n, max_n);
  }
  return rate;
}

template <class Send>
ThroughputResult drive_throughput(ParentSide& p, const CaseSpec& spec, Send&& send) {
  std::uint64_t seq = 0;
  auto run = [&](std::uint64_t n) {
    const std::int64_t t0 = now_ns();
    const std::int64_t t1 = p.round(n, [&] {
      for (std::uint64_t i = 0; i < n; ++i) send(seq++);
    });
    return std::max(double(t1 - t0) * 1e-9, 1e-7);
  };
  const double rate = calibrate(spec, initial_round(spec.payload), 1u << 30, run);
  const std::uint64_t timed =
      std::clamp<std::uint64_t>(std::uint64_t(rate * spec.budget_s), 8, 4'000'000'000ull);
  return {timed, run(timed)};
}

LatencyResult percentiles(std::vector<std::uint64_t>& rtt_ns);

template <class RoundTrip>
LatencyResult drive_latency(ParentSide& p, const CaseSpec& spec, RoundTrip&& rt) {
  std::uint64_t seq = 0;
  auto run = [&](std::uint64_t n) {
    const std::int64_t t0 = now_ns();
    p.round(n, [&] {
      for (std::uint64_t k = 0; k < n; ++k) rt(seq++);
    });
    return std::max(double(now_ns() - t0) * 1e-9, 1e-7);
  };
  const double rate =
      calibrate(spec, std::max<std::uint64_t>(initial_round(spec.payload) / 8, 4), 1u << 26, run);
  const std::uint64_t timed =
      std::clamp<std::uint64_t>(std::uint64_t(rate * spec.budget_s), 8, 20'000'000);
  std::vector<std::uint64_t> rtt(timed);
  p.round(timed, [&] {
    for (std::uint64_t k = 0; k < timed; ++k) {
      const auto t0 = std::chrono::steady_clock::now();
      rt(seq++);
      rtt[k] = std::uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                 std::chrono::steady_clock::now() - t0)
                                 .count());
    }
  });
  return percentiles(rtt);
}

// ---- named IPC objects to remove if the watchdog or a signal ends the run ----

enum class NameKind { shm, mq, file };
class CleanupName {
 public:
  CleanupName(NameKind kind,
              std::string name);  // shm: shm_unlink(name); mq: mq_unlink; file: unlink
  ~CleanupName();
  CleanupName(const CleanupName&) = delete;
  CleanupName& operator=(const CleanupName&) = delete;

 private:
  int slot_ = -1;
};

std::string unique_name(std::string_view tag);  // "frb-<pid>-<n>-<tag>", valid for every transport

// CPUs: two distinct CPUs (different cores when the topology says so) if the process may use ≥ 2.
struct CpuPair {
  int producer = -1;
  int consumer = -1;
};
CpuPair pick_cpus();
// Back to the affinity the process had before run_forked pinned it (rows that run more processes
// than the two pinned ones leave their placement to the scheduler). Keeps a `taskset` the whole
// run was started under.
void restore_affinity() noexcept;
void install_signal_handlers();

}  // namespace bench
