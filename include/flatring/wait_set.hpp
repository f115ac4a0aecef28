// One thread waiting on many endpoints at once: readers for "a record is there", writers for
// "space is free", either for "the peer died" or "the segment was lost".
//
// A WaitSet sleeps where a blocked read or write sleeps (src/block.hpp, the one blocking loop):
// it spins for WaitOptions::spin, then registers in every endpoint's wait line as a futex sleeper
// (the same Dekker handshake, so a writer still makes no syscall unless someone sleeps) and sleeps
// on all their futex words in one futex_waitv(2) call (Linux 5.16+; older kernels: bounded 1 ms
// slices on one word, see docs/design.md). Every liveness interval it runs each endpoint's
// liveness step (peer died, recovery of dead producers' claims, segment lost), and it checks its
// deadline on every round, so hostile wait words cannot keep it past the timeout.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "flatring/endpoint.hpp"
#include "flatring/layout.hpp"
#include "flatring/status.hpp"

namespace flatring {

/// One endpoint the last WaitSet::wait found ready. `status` ok: readable (try_read may return a
/// record) or writable (try_write / try_reserve may find room); otherwise the outcome a blocking
/// read/write would report for it: peer_dead, no_consumer, abandoned (a dead producer's claim was
/// skipped: read on), corrupt, segment_lost.
struct Ready {
  std::size_t id = 0;
  Status status = Status::ok;
};

/// Waits on any number of endpoints of any mode (Reader<M>, Writer<M>; typed ones through raw()).
/// \pre one thread uses the WaitSet and the endpoints in it; an endpoint outlives its entry
/// (remove it, or destroy the WaitSet, first) and is not moved while in it.
class WaitSet {
 public:
  /// `wait.spin` and `wait.liveness_interval` as for blocking reads and writes.
  explicit WaitSet(WaitOptions wait = {}) : wait_(wait) {}

  /// Adds a reader (ready when a record may be there) or a writer (ready when room for one byte
  /// may be free). Returns the entry's id, reported in ready(). An endpoint may be added once.
  template <class Endpoint>
  requires requires(Endpoint& e) { e.wait_target(); }
  std::size_t add(Endpoint& endpoint) { return add(endpoint.wait_target()); }
  /// Adds a writer that is ready when a record of `bytes` payload bytes may fit.
  template <class Endpoint>
  requires requires(Endpoint& e, std::uint64_t n) { e.wait_target(n); }
  std::size_t add(Endpoint& endpoint, std::uint64_t bytes) {
    return add(endpoint.wait_target(bytes));
  }
  /// \throws Error(invalid_options) if that endpoint is in the set already.
  std::size_t add(detail::WaitTarget target);

  /// Removes entry `id`. False if there is none.
  bool remove(std::size_t id) noexcept;
  [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }

  /// Waits up to `timeout` until at least one endpoint is ready (spin, then sleep). ok: ready()
  /// lists every endpoint found ready in that round; timed_out: none was; invalid_state: the set
  /// is empty.
  [[nodiscard]] Status wait(std::chrono::nanoseconds timeout);

  /// The endpoints the last wait() found ready, by id (valid until the next wait()).
  [[nodiscard]] std::span<const Ready> ready() const noexcept { return ready_; }

 private:
  struct Entry {
    detail::WaitTarget target;
    std::size_t id;
  };
  bool any_ready(std::memory_order order) const noexcept;
  void collect(std::memory_order order);
  bool interval(bool final);
  void rebuild_lines();

  WaitOptions wait_;
  std::vector<Entry> entries_;
  std::vector<layout::WaitLine*> lines_;  // distinct wait lines of the entries
  std::vector<Ready> ready_;
  bool asymmetric_ = false;  // some entry's wakers use the compiler-only fence
  std::size_t next_id_ = 0;
};

}  // namespace flatring
