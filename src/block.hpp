// The one blocking loop: every blocking write and read of every mode waits here. Private.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

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

/// Puts the caller to sleep on `line` until woken, `ready()`, `deadline`, or one `slice`: the
/// sleeper's half of the Dekker handshake. waiters.fetch_add (seq_cst), the handshake's fence,
/// read the futex word, then re-check the condition with a seq_cst load; a wake between the
/// re-check and FUTEX_WAIT changes the word, so FUTEX_WAIT returns at once.
template <Handshake H, class Ready>
void sleep_once(layout::WaitLine& line, const Attachment& self, Ready&& ready,
                Clock::time_point deadline, std::chrono::nanoseconds slice) {
  line.waiters.fetch_add(1, std::memory_order_seq_cst);
  if constexpr (H == Handshake::asymmetric) {
    // Without membarrier a waker on the light fence could miss us: bound the sleep instead.
    if (!wait::sleeper_fence()) {
      slice = std::min<std::chrono::nanoseconds>(slice, std::chrono::milliseconds(1));
    }
  }
  // seq_cst (acquire at least): pairs with the waker's futex.fetch_add (release), which follows
  // its progress.
  const std::uint32_t seen = line.futex.load(std::memory_order_seq_cst);
  if (!ready()) {
    const auto now = Clock::now();
    if (now < deadline) {
      self.count(layout::futex_sleeps);
      const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now);
      (void)wait::futex_wait(line.futex, seen, std::min(left, slice));
    }
  }
  // Relaxed: the count is only a hint for wakers, and a stale non-zero costs one spare wake.
  line.waiters.fetch_sub(1, std::memory_order_relaxed);
}

/// Waits until `attempt()` (the non-blocking call) returns something other than `again` (full or
/// empty), or the deadline passes. `ready(order)` is a cheap test that a retry may succeed; with
/// seq_cst it is the sleeper's re-check of the handshake. `on_interval(final)` runs once per
/// liveness interval and at the deadline (`final`): ok means "try again now", `again` means
/// "nothing changed", anything else is the outcome. The deadline is checked on every round, so a
/// peer that keeps toggling shared words cannot keep us past the timeout, and a lost segment (see
/// Ring::lost) is reported as segment_lost whatever the shared words say.
template <Handshake H, class Attempt, class Ready, class OnInterval>
auto block(Attempt&& attempt, Ready&& ready, OnInterval&& on_interval, Status again,
           layout::WaitLine& line, const Attachment& self, const WaitOptions& wait,
           std::chrono::nanoseconds timeout) -> decltype(attempt()) {
  const auto deadline = deadline_after(timeout);
  auto next_check = deadline_after(wait.liveness_interval);
  for (;;) {
    if (spin_until([&] { return ready(std::memory_order_acquire); }, wait.spin)) {
      auto r = attempt();
      if (r.status() != again) return r;
    }
    sleep_once<H>(
        line, self, [&] { return ready(std::memory_order_seq_cst); }, deadline,
        wait.liveness_interval);
    auto r = attempt();
    if (r.status() != again) return r;
    const auto now = Clock::now();
    const bool final = now >= deadline;
    if (!final && now < next_check) continue;
    next_check = deadline_after(wait.liveness_interval);
    const Status s = on_interval(final);
    // The peer slots and positions of a lost segment read as zeros ("nobody there"): say why.
    if (self.ring().lost_fast()) return Status::segment_lost;
    if (s == Status::ok) {
      r = attempt();
      if (r.status() != again) return r;
    } else if (s != again) {
      return s;
    }
    if (final) return Status::timed_out;
  }
}

}  // namespace flatring::detail
