// The one blocking loop: every blocking write and read of every mode, and every WaitSet, waits
// here. Private.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <span>

#include "flatring/endpoint.hpp"
#include "flatring/wait.hpp"

namespace flatring::detail {

/// Spins on `ready()` until it is true or `spin` has passed. Returns ready().
template <class Ready>
bool spin_until(Ready&& ready, std::chrono::nanoseconds spin) noexcept {
  if (spin.count() <= 0) return ready();
  const auto stop = Clock::now() + spin;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (ready()) return true;
      wait::cpu_relax();
    }
    if (Clock::now() >= stop) return ready();
  }
}

/// Puts the caller to sleep on every line of `lines` at once until woken on one of them,
/// `ready()`, `deadline`, or one `slice`: the sleeper's half of the Dekker handshake, the same for
/// one blocked call and for a WaitSet. On each line: sleepers.fetch_add, a bump of the futex word
/// (whose new value we sleep on), waiters.fetch_add (seq_cst); then the handshake's fence
/// (`asymmetric`: membarrier, since some waker uses the compiler-only fence), then re-check the
/// condition with a seq_cst load; a wake between the re-check and the sleep changes a word, so
/// the sleep returns at once. One line sleeps in
/// FUTEX_WAIT, several in one futex_waitv; where the kernel lacks it (before 5.16), or beyond its
/// 128 words, on the first line in slices of at most 1 ms (the others are then found by the
/// re-check after each).
template <class Ready, class OnSleep>
void sleep_on(std::span<layout::WaitLine* const> lines, bool asymmetric, Ready&& ready,
              OnSleep&& on_sleep, Clock::time_point deadline, std::chrono::nanoseconds slice) {
  const std::size_t n = std::min(lines.size(), wait::kMaxWaitWords);
  if (lines.size() > n) {
    slice = std::min<std::chrono::nanoseconds>(slice, std::chrono::milliseconds(1));
  }
  std::array<wait::WaitWord, wait::kMaxWaitWords> words;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    layout::WaitLine* l = lines[i];
    // Relaxed: published by the seq_cst (release) bump of `waiters` after it.
    l->sleepers.fetch_add(1, std::memory_order_relaxed);
    // Our own bump of the futex word, whose value we sleep on: a waker that reads a later value
    // than its own last wake (WakeMark) knows that someone registered since. Acquire: pairs with
    // the waker's release bump, which follows its progress. Before `waiters`, which publishes it.
    const std::uint32_t mine = l->futex.fetch_add(1, std::memory_order_acq_rel) + 1;
    if (i < n) words[i] = {&l->futex, mine};
    l->waiters.fetch_add(1, std::memory_order_seq_cst);
  }
  // Without membarrier a waker on the light fence could miss us: bound the sleep instead.
  if (asymmetric && !wait::sleeper_fence()) {
    slice = std::min<std::chrono::nanoseconds>(slice, std::chrono::milliseconds(1));
  }
  if (!ready()) {
    const auto now = Clock::now();
    if (now < deadline) {
      on_sleep();
      auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now);
      left = std::min(left, slice);
      if (n == 1 ||
          wait::futex_waitv(std::span(words.data(), n), left) == wait::WaitResult::unsupported) {
        if (n != 1) left = std::min<std::chrono::nanoseconds>(left, std::chrono::milliseconds(1));
        (void)wait::futex_wait(*words[0].word, words[0].expected, left);
      }
    }
  }
  // Relaxed: the count is only a hint for wakers, and a stale non-zero costs one spare wake.
  for (layout::WaitLine* l : lines) {
    l->waiters.fetch_sub(1, std::memory_order_relaxed);
    l->sleepers.fetch_sub(1, std::memory_order_relaxed);
  }
}

/// What the blocking loop sleeps on for one endpoint: its wait line.
template <Handshake H>
struct LineSleeper {
  layout::WaitLine& line;
  const Attachment& self;

  template <class Ready>
  void sleep(Ready&& ready, Clock::time_point deadline, std::chrono::nanoseconds slice) const {
    layout::WaitLine* one[] = {&line};
    sleep_on(
        one, H == Handshake::asymmetric, ready, [&] { self.count(layout::futex_sleeps); }, deadline,
        slice);
  }
  /// The peer slots and positions of a lost segment read as zeros ("nobody there"): say why.
  [[nodiscard]] bool lost() const noexcept { return self.ring().lost_fast(); }
};

/// The outcome of an attempt that has no value, for block() (a WaitSet's round).
struct Outcome {
  Status value;
  Outcome(Status s) noexcept : value(s) {}  // NOLINT: the attempt's outcome is a Status
  [[nodiscard]] Status status() const noexcept { return value; }
};

/// Waits until `attempt()` (the non-blocking call) returns something other than `again` (full or
/// empty), or the deadline passes. `ready(order)` is a cheap test that a retry may succeed; with
/// seq_cst it is the sleeper's re-check of the handshake. `on_interval(final)` runs once per
/// liveness interval and at the deadline (`final`): ok means "try again now", `again` means
/// "nothing changed", anything else is the outcome. `sleeper` sleeps (sleep_on: one line for an
/// endpoint, all of a WaitSet's) and says whether the segment was lost. The deadline is checked on
/// every round, so a peer that keeps toggling shared words cannot keep us past the timeout, and a
/// lost segment (see Ring::lost) is reported as segment_lost whatever the shared words say.
template <class Attempt, class Ready, class OnInterval, class Sleeper>
auto block(Attempt&& attempt, Ready&& ready, OnInterval&& on_interval, Status again,
           const Sleeper& sleeper, const WaitOptions& wait, std::chrono::nanoseconds timeout)
    -> decltype(attempt()) {
  const auto deadline = deadline_after(timeout);
  auto next_check = deadline_after(wait.liveness_interval);
  // Spin before the first sleep only: a wake-up is followed by an attempt at once, and spinning
  // after a liveness wake-up (nothing arrived) would only burn WaitOptions::spin per interval.
  auto spin = wait.spin;
  for (;;) {
    if (spin_until([&] { return ready(std::memory_order_acquire); }, spin)) {
      auto r = attempt();
      if (r.status() != again) return r;
    }
    spin = std::chrono::nanoseconds::zero();
    sleeper.sleep([&] { return ready(std::memory_order_seq_cst); }, deadline,
                  wait.liveness_interval);
    auto r = attempt();
    if (r.status() != again) return r;
    const auto now = Clock::now();
    const bool final = now >= deadline;
    if (!final && now < next_check) continue;
    next_check = deadline_after(wait.liveness_interval);
    const Status s = on_interval(final);
    if (sleeper.lost()) return Status::segment_lost;
    if (s == Status::ok) {
      r = attempt();
      if (r.status() != again) return r;
    } else if (s != again) {
      return s;
    }
    if (final) return Status::timed_out;
  }
}

/// block() for one endpoint, sleeping on its wait line `line`.
template <Handshake H, class Attempt, class Ready, class OnInterval>
auto block(Attempt&& attempt, Ready&& ready, OnInterval&& on_interval, Status again,
           layout::WaitLine& line, const Attachment& self, const WaitOptions& wait,
           std::chrono::nanoseconds timeout) -> decltype(attempt()) {
  return block(attempt, ready, on_interval, again, LineSleeper<H>{line, self}, wait, timeout);
}

}  // namespace flatring::detail
