// How the Python module blocks: timeouts from Python values, the GIL released while the C++
// endpoint waits, and Ctrl-C noticed between sleep slices.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <mutex>

#include <pybind11/pybind11.h>

#include <flatring/endpoint.hpp>
#include <flatring/status.hpp>

namespace flatring::python {

/// The longest a blocked call waits with the GIL released before it checks for signals, so that
/// Ctrl-C (KeyboardInterrupt) interrupts it within about this long. The C++ endpoint runs its
/// liveness check at the end of every slice, so a dead peer is noticed as quickly.
inline constexpr std::chrono::milliseconds kSlice{50};

/// The endpoints' wait options. A C++ blocking call runs its liveness check (dead peers) and the
/// mode's recovery step (mpsc: a dead producer's claim; mpmc: a dead consumer's record, delivered
/// again) once per liveness interval, never at its own deadline: the interval must be shorter than
/// a slice so that every slice runs them, at least twice.
inline WaitOptions endpoint_wait_options() {
  WaitOptions w;
  w.liveness_interval = std::chrono::milliseconds(20);
  return w;
}
static_assert(std::chrono::milliseconds(20) * 2 < kSlice, "a slice runs the liveness check");

/// Records at least this large are copied and verified with the GIL released; below, the copy
/// is shorter than handing the GIL over and back.
inline constexpr std::size_t kNoGilBytes = 16 * 1024;

/// A deadline from a Python timeout: None waits forever, a number is seconds (0: do not wait).
class Deadline {
 public:
  using Clock = std::chrono::steady_clock;

  /// \throws ValueError for a negative or NaN timeout.
  explicit Deadline(pybind11::handle timeout) {
    if (timeout.is_none()) return;
    const double s = pybind11::cast<double>(timeout);
    if (!(s >= 0)) throw pybind11::value_error("'timeout' must be a non-negative number");
    forever_ = false;
    const auto now = Clock::now();
    const double max_s = 1e9;  // 30 years: far enough to be "forever", small enough not to overflow
    at_ = now + std::chrono::duration_cast<Clock::duration>(
                    std::chrono::duration<double>(std::min(s, max_s)));
  }
  static Deadline none() { return Deadline(pybind11::none()); }

  /// How long the next slice may wait: kSlice, or less when the deadline is nearer (0 once it
  /// has passed: one more non-blocking round, which still runs the liveness check).
  [[nodiscard]] std::chrono::nanoseconds slice() const {
    if (forever_) return kSlice;
    const auto left = at_ - Clock::now();
    if (left <= Clock::duration::zero()) return std::chrono::nanoseconds::zero();
    return std::min<std::chrono::nanoseconds>(kSlice, left);
  }
  [[nodiscard]] bool passed() const { return !forever_ && Clock::now() >= at_; }
  [[nodiscard]] bool forever() const noexcept { return forever_; }

 private:
  bool forever_ = true;
  Clock::time_point at_{};
};

inline Status status_of(Status s) noexcept { return s; }
template <class T>
Status status_of(const Result<T>& r) noexcept {
  return r.status();
}

/// How many times a call that found the ring empty (full) retries with the GIL still held, a
/// pause apart (a few microseconds), before it hands the GIL over and blocks: a producer in the
/// middle of its next record is usually done by then, and a GIL hand-off costs more.
inline constexpr int kHeldSpins = 256;

/// Retries `attempt()` while it reports `again`, up to kHeldSpins times. Returns the last result.
template <class Attempt>
auto spin_held(Attempt&& attempt, Status again) -> decltype(attempt()) {
  auto r = attempt();
  for (int i = 0; i < kHeldSpins && status_of(r) == again; ++i) {
    wait::cpu_relax();
    r = attempt();
  }
  return r;
}

/// Runs the blocking C++ call `op(slice)` in slices, each with the GIL released, until it gives
/// anything but timed_out or the deadline passes. Between slices, with the GIL held, pending
/// signals run their Python handlers; one that raises (KeyboardInterrupt) propagates.
/// \pre the GIL is held.
template <class Op>
auto block_until(const Deadline& d, Op&& op) -> decltype(op(std::chrono::nanoseconds{})) {
  for (;;) {
    const auto slice = d.slice();
    auto r = [&] {
      pybind11::gil_scoped_release nogil;
      return op(slice);
    }();
    if (status_of(r) != Status::timed_out) return r;
    if (PyErr_CheckSignals() != 0) throw pybind11::error_already_set();
    if (slice == std::chrono::nanoseconds::zero() || d.passed()) return r;
  }
}

/// Serializes calls on one endpoint across Python threads (the C++ endpoints are single-threaded)
/// without deadlocking on the GIL: a thread that must wait for the lock waits with the GIL
/// released, since the holder may need the GIL to finish.
class CallLock {
 public:
  explicit CallLock(std::timed_mutex& m) : m_(m) {
    if (m_.try_lock()) return;
    for (;;) {
      bool got = false;
      {
        pybind11::gil_scoped_release nogil;
        got = m_.try_lock_for(kSlice);
      }
      if (got) return;
      if (PyErr_CheckSignals() != 0) throw pybind11::error_already_set();
    }
  }
  ~CallLock() { m_.unlock(); }
  CallLock(const CallLock&) = delete;
  CallLock& operator=(const CallLock&) = delete;

 private:
  std::timed_mutex& m_;
};

}  // namespace flatring::python
