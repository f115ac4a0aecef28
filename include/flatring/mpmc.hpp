// mpmc rings: many producers, many consumers, each record delivered to exactly one consumer
// (work sharing), lock-free, with recovery from producers and consumers that die. The mode's
// policy on the endpoint skeleton (endpoint.hpp); docs/design-mp.md has the whole argument.
//
// Producers are the multi-producer policy of mpsc.hpp. What differs is the consumer side, where
// several consumers take records in any interleaving and finish them in any order:
//
//   ConsumerLine::next   the first position no consumer has claimed (the shared read cursor)
//   ConsumerLine::head   the first position not yet free: records below it are done and zeroed
//
//   head <= next <= tail, tail - head <= capacity; each record in [head, next) is held by the
//   consumer that claimed it (data, padding, abandoned), being zeroed (releasing) or done.
//
// Consumer claim:   r = next.load(acquire); r < tail (acquire); w = frame(r).load(acquire) -- SYNC
//                   POINT READ; slot.cursor.store(r, release); next.CAS(r -> r + extent, seq_cst)
//                   -- SYNC POINT: the claim. The CAS is on a 64-bit position that never repeats,
//                   so it cannot succeed on a stale `w`.
// Consumer finish:  frame.store(releasing|extent|takeovers, release); zero [r + 8, r + extent);
//                   aux = r; frame.store(done|extent, release) -- SYNC POINT WRITE (zeroes);
//                   a seq_cst fence before the free loop (publish_position: once per batch)
// Freeing (anyone): head.CAS(h -> h + extent, seq_cst) over the done records at the head, Dekker
//                   against the finisher's done store and fence (src/mp_recovery.hpp).
// Recovery (recover, run by read() every liveness interval while it waits): a dead consumer's
// record at the head is taken over (data is delivered again, RecordView::redelivered); a dead
// producer's claim at the read cursor is skipped (abandoned); with WaitOptions::claim_timeout, a
// live producer's stalled claim is skipped too, and that producer finishes it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "flatring/endpoint.hpp"
#include "flatring/mpsc.hpp"

namespace flatring {
namespace detail {

/// One consumer of an mpmc ring: Reader<Mode::mpmc>. Any number may attach; each record goes to
/// exactly one of them. Records are read in place and stay valid until released; releasing zeroes
/// them and frees their space as soon as every older record is released too. Delivery is
/// exactly-once while consumers live; a record whose consumer died holding it is delivered again
/// to another consumer (RecordView::redelivered). Use one per thread.
class MpmcReader final : public ConsumerCore<MpmcReader, true> {
 public:
  /// \throws Error(wrong_mode) for a ring that is not mpmc; Error(no_free_slot);
  ///   Error(corrupt_state) if the positions in the segment are impossible.
  explicit MpmcReader(Ring ring, WaitOptions wait = {});

 private:
  friend class ConsumerCore<MpmcReader, true>;
  static constexpr Handshake kHandshake = Handshake::seq_cst;
  static constexpr bool kKeeps = false;             // each claim is one record held by one consumer
  static constexpr bool kRecoversConsumers = true;  // a dead one's held record stops the head

  Result<RecordView> next() noexcept;
  // Finishes the held record (zero, done). publish_position() then frees what can be freed.
  void step(std::uint64_t extent) noexcept { finish(head_, extent, true); }
  bool publish_position() noexcept;
  bool ready(std::memory_order order) const noexcept;
  Status recover_step() noexcept;
  Status on_interval() noexcept { return recovery_due() ? recover() : Status::empty; }  // syscalls
  bool drained() const noexcept {
    return ctrl_->producer.tail.load(std::memory_order_acquire) ==
           ctrl_->consumer.next.load(std::memory_order_acquire);
  }

  // Claims [r, r + extent) for this consumer. False if another consumer moved the cursor first.
  bool claim(std::uint64_t r, std::uint64_t extent) noexcept;
  // "I hold nothing": a cursor left on a claim we do not own would make recovery wait for us.
  void drop_cursor() noexcept;
  // A check on untrusted positions failed: corrupt, unless `pos` moved on from `seen` meanwhile.
  Status corrupt_unless_moved(const std::atomic<std::uint64_t>& pos, std::uint64_t seen) noexcept;
  // True if [r, end) lies below the published tail (which is untrusted).
  bool covered(std::uint64_t r, std::uint64_t end) noexcept;
  // True if the read cursor has moved away from `r`: what we read there may be stale.
  bool moved(std::uint64_t r) const noexcept;
  void finish(std::uint64_t pos, std::uint64_t extent, bool zero) noexcept;
  void pass_wake_on(std::uint64_t pos) noexcept;
  void advance_head() noexcept;  // frees the done records at the head and wakes producers
  bool claim_timed_out(std::uint64_t r, layout::RecordType type) noexcept;
  Status recover_head() noexcept;
  Status unblock_claim() noexcept;
  bool consumer_alive_at(std::uint64_t pos) const noexcept;

  WakeMark data_mark_;                 // our last wake of another consumer (pass_wake_on)
  std::uint64_t stall_at_ = kNoClaim;  // the claim position we have seen stuck since...
  Clock::time_point stall_since_{};
};

}  // namespace detail

template <>
struct ModeEndpoints<Mode::mpmc> : EndpointPair<detail::MpWriter<Mode::mpmc>, detail::MpmcReader> {
};

}  // namespace flatring
