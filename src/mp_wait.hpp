// Private helpers shared by the multi-party rings (broadcast, mpsc, mpmc): mode checks and the
// sleeper's half of the futex handshake.
#pragma once

#include <algorithm>
#include <chrono>
#include <string>

#include "flatring/ring.hpp"
#include "flatring/segment.hpp"
#include "flatring/status.hpp"
#include "flatring/wait.hpp"

namespace flatring::mp_detail {

inline void require_mode(const Ring& ring, Mode want, const char* who) {
  if (ring.info().mode != want) {
    throw Error(Errc::wrong_mode, "flatring ring '" + ring.info().name + "': a " + who +
                                      " needs a ring of mode " +
                                      std::to_string(static_cast<unsigned>(want)) +
                                      "; this ring's mode is " +
                                      std::to_string(static_cast<unsigned>(ring.info().mode)));
  }
}

[[noreturn]] inline void corrupt_state(const Ring& ring, const std::string& what) {
  throw Error(Errc::corrupt_state, "flatring ring '" + ring.info().name + "': " + what);
}

enum class Slept { woken, timed_out, check_peers };

/// Sleeps on `line` until woken, `ready()`, the deadline, or `slice` (check_peers: the caller
/// looks at its peers' liveness). Sleeper's half of the Dekker handshake: waiters.fetch_add
/// (seq_cst), then `ready()` must make a seq_cst load of the condition.
template <class Ready>
Slept sleep_until(layout::WaitLine& line, const Attachment& self, Ready&& ready,
                  detail::Clock::time_point deadline, std::chrono::nanoseconds slice) {
  line.waiters.fetch_add(1, std::memory_order_seq_cst);
  // Read before the re-check: a wake after it changes the word, so futex_wait returns at once.
  const std::uint32_t seen = line.futex.load(std::memory_order_seq_cst);
  Slept out = Slept::woken;
  if (!ready()) {
    const auto now = detail::Clock::now();
    if (now >= deadline) {
      out = Slept::timed_out;
    } else {
      const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now);
      self.count(layout::futex_sleeps);
      if (wait::futex_wait(line.futex, seen, std::min(left, slice)) == wait::WaitResult::timed_out) {
        out = left <= slice ? Slept::timed_out : Slept::check_peers;
      }
    }
  }
  line.waiters.fetch_sub(1, std::memory_order_relaxed);  // only a hint for wakers
  return out;
}

/// True when no live producer is attached (dead ones are reclaimed on the way).
inline bool producer_gone(const Ring& ring) noexcept {
  const PeerCensus c = census(ring, layout::Role::producer);
  if (c.dead != 0) ring.reap_dead_peers();
  return c.alive == 0 && c.dead != 0;
}

}  // namespace flatring::mp_detail
