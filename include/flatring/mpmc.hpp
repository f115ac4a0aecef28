// mpmc rings: many producers, many consumers, each record delivered to exactly one consumer
// (work sharing), lock-free, with recovery from producers and consumers that die.
//
// Producers are MpWriter, exactly as in mpsc (mpsc.hpp): claim by CAS on the tail, a `claimed`
// header, commit by CAS claimed -> data. What differs is the consumer side, where several
// consumers take records in any interleaving and finish them in any order:
//
//   ConsumerLine::next   the first position no consumer has claimed (the shared read cursor)
//   ConsumerLine::head   the first position not yet free: records below it are done and zeroed
//
//   head <= next <= tail, tail - head <= capacity; each record in [head, next) is held by the
//   consumer that claimed it (data, padding, abandoned), being zeroed (releasing) or done.
//
// Consumer claim:   r = next.load(acquire); r < tail (acquire; never read a frame at or past the
//                   tail: it may still be the previous lap's header, held by a slow consumer);
//                   w = frame(r).load(acquire)                 -- SYNC POINT READ: the commit
//                   slot.cursor.store(r, release)              -- "I claim r", for recovery
//                   next.CAS(r -> r + extent, seq_cst)         -- SYNC POINT: the claim itself
//                   The CAS is on a 64-bit position that never repeats, so it cannot succeed on a
//                   stale `w`: while next == r the record at r is neither claimed nor freed, so its
//                   bytes are the ones we read. No CAS or store ever targets ring memory on a
//                   position read earlier without this check.
// Consumer finish:  frame.store(releasing|extent|takeovers, release); zero [r + 8, r + extent);
//                   aux = r; frame.store(done|extent, seq_cst) -- SYNC POINT WRITE (zeroes)
// Freeing (anyone): h = head.load(seq_cst); h < next; w = frame(h).load(seq_cst); w is done:
//                   head.CAS(h -> h + extent, seq_cst)         -- SYNC POINT WRITE: frees space
//                   and repeat. A finisher stores `done` then loads head; a freer CASes head then
//                   loads the next frame: seq_cst on both sides (Dekker), so a record finished
//                   out of order is freed either by the freer that reaches it or by its finisher.
//
// Free space holds zeros and old `done` headers only: a consumer reads both as "not yet written".
//
// Recovery (MpmcReader::recover, run by read() every liveness interval while it waits):
//  - a dead consumer's record at the head (the owner is the consumer whose slot cursor is the head;
//    none alive means the owner is dead): a recovering consumer takes it over with a CAS that bumps
//    the frame's flags byte (so two recoverers cannot both win), re-checks that the head has not
//    moved, and then: `data` is delivered again to the recoverer (RecordView::redelivered;
//    at-least-once), `releasing`/`padding`/`abandoned` are finished (the dead consumer was done).
//  - a dead producer's claim at the read cursor (as mpsc's unblock): the recoverer claims it like
//    a record, turns it into an abandoned record and reports Status::abandoned.
// docs/design-mp.md has the whole argument.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "flatring/layout.hpp"
#include "flatring/mp_reader.hpp"
#include "flatring/mpsc.hpp"
#include "flatring/ring.hpp"
#include "flatring/segment.hpp"
#include "flatring/status.hpp"

namespace flatring {

/// One consumer of an mpmc ring. Any number may attach; each record goes to exactly one of them.
/// Records are read in place and stay valid until released; releasing zeroes them and frees their
/// space as soon as every older record is released too. Same reading API as Reader (try_read,
/// release, poll, ... from detail::ReaderCore), plus recover(). Delivery is exactly-once while
/// consumers live; a record whose consumer died holding it is delivered again to another consumer
/// (RecordView::redelivered). Not thread-safe: \pre every method is called from one thread at a
/// time (use one MpmcReader per thread).
class MpmcReader : public detail::ReaderCore<MpmcReader, std::byte> {
 public:
  /// \throws Error(wrong_mode) for a ring that is not mpmc; Error(no_free_slot);
  ///   Error(corrupt_state) if the positions in the segment are impossible.
  explicit MpmcReader(Ring ring, WaitOptions wait = {});

  /// try_read, waiting up to `timeout`. While it waits it runs recover() every liveness interval.
  /// Extra outcomes: timed_out; abandoned (a dead producer's claim was skipped: call again);
  /// peer_dead (the ring is empty and every producer that was attached is gone).
  [[nodiscard]] Result<RecordView> read(std::chrono::nanoseconds timeout);

  /// The recovery step read() runs while it waits, for callers that only poll: frees records a
  /// dead consumer left finished, takes over a record a dead consumer held (ok: it is now held
  /// by this consumer, try_read returns it with `redelivered` set), or skips a claim a dead
  /// producer left (abandoned). Otherwise empty. Makes syscalls (liveness): not for the hot path.
  Status recover() noexcept;

 private:
  friend class detail::ReaderCore<MpmcReader, std::byte>;

  Result<RecordView> next() noexcept;
  // Finishes the held record (zero, done). publish() then frees what can be freed.
  void step(std::uint64_t extent) noexcept { finish(head_, extent, true); }
  void publish() noexcept {
    store_counters();
    advance_head();
  }

  // Claims [r, r + extent) for this consumer. False if another consumer moved the cursor first.
  bool claim(std::uint64_t r, std::uint64_t extent) noexcept {
    // Release: a recoverer that loads our cursor (acquire) and finds it moved on also sees what we
    // wrote before (our previous record finished). The CAS publishes it with the claim.
    self_.slot().cursor.store(r, std::memory_order_release);
    // SYNC POINT: the claim. seq_cst: a sleeping consumer's seq_cst re-check reads `next`.
    if (ctrl_->consumer.next.compare_exchange_strong(r, r + extent, std::memory_order_seq_cst,
                                                     std::memory_order_relaxed)) {
      return true;
    }
    drop_cursor();
    return false;
  }

  // "I hold nothing": a cursor left on a claim we do not own (lost the CAS, backed off, or only
  // marked a stalled producer's claim) would make recovery wait for us instead of its owner.
  // Release, as the claim's cursor store (a plain store on x86).
  void drop_cursor() noexcept { self_.slot().cursor.store(detail::kNoClaim, std::memory_order_release); }

  // A check on untrusted positions failed: corrupt, unless `pos` moved on from `seen` meanwhile
  // (then the check was stale: empty, try again).
  Status corrupt_unless_moved(const std::atomic<std::uint64_t>& pos, std::uint64_t seen) noexcept;

  // True if [r, end) lies below the published tail (which is untrusted).
  bool covered(std::uint64_t r, std::uint64_t end) noexcept {
    if (end <= tail_cache_) return true;
    // SYNC POINT READ: pairs with the producers' tail CAS (release).
    const std::uint64_t t = ctrl_->producer.tail.load(std::memory_order_acquire);
    if (t < r || t - r > capacity_) return false;
    tail_cache_ = t;
    return end <= t;
  }

  // True if the read cursor has moved away from `r`: what we read there may be stale.
  bool moved(std::uint64_t r) const noexcept {
    return ctrl_->consumer.next.load(std::memory_order_acquire) != r;
  }

  void finish(std::uint64_t pos, std::uint64_t extent, bool zero) noexcept;
  void pass_wake_on(std::uint64_t pos) noexcept;
  void advance_head() noexcept;  // frees the done records at the head (mp_detail::free_done_records)
  bool claim_timed_out(std::uint64_t r, layout::RecordType type) noexcept;
  Status recover_head() noexcept;
  Status unblock_claim() noexcept;
  bool consumer_alive_at(std::uint64_t pos) const noexcept;
  bool producers_gone() noexcept;

  bool seen_producer_ = false;
  std::uint64_t stall_at_ = detail::kNoClaim;  // the claim position we have seen stuck since...
  detail::Clock::time_point stall_since_{};
};

}  // namespace flatring
