// Broadcast rings: one producer, many consumers, every consumer sees every record.
//
// Same record format as spsc (16-byte header, commit word `frame`, padding record at the wrap, see
// layout.hpp). What differs:
//  - Each consumer owns a PeerSlot and publishes its position in PeerSlot::cursor. The producer's
//    free space ends at the slowest cursor of the consumers attached (the "min").
//  - Consumers are driven by the published tail, not by frame words: a consumer reads only records
//    below the tail it loaded (acquire). So the frame words at and above the tail may hold stale
//    bytes from the previous lap, and the producer does not zero the next frame word: no consumer
//    ever reads a frame word at or above the published tail.
//
// Slow-consumer policy: lossless. The producer waits for the slowest LIVE consumer. A consumer that
// died is found by liveness (pid + /proc start time; a blocking write checks every
// WaitOptions::liveness_interval) and its slot is reclaimed, so it stops holding the producer back.
// With no consumer attached the producer never waits: nobody is there to lose anything.
//
// Memory ordering (every SYNC POINT):
//  producer commit:  frame.store(w, relaxed); tail.store(next, seq_cst)      -- SYNC POINT WRITE
//                    (release: publishes frames and payloads below `next`; seq_cst: Dekker half
//                    of the consumers' sleep, and the join argument below)
//  consumer read:    t = tail.load(acquire)                                   -- SYNC POINT READ
//                    then frames/payloads below t (relaxed/plain: ordered by the acquire)
//  consumer release: cursor.store(head, seq_cst)                              -- SYNC POINT WRITE
//                    (release: the consumer is done reading the bytes below head; seq_cst: Dekker
//                    half of the producer's sleep)
//  producer refresh: cursor.load(seq_cst) over all consumer slots             -- SYNC POINT READ
//                    only when the cached min says full (rigtorp/Aeron cached index)
//
// Joining (a consumer may attach at any time):
//   consumer: cursor.store(kJoining, seq_cst)  (J)
//             T = tail.load(seq_cst)
//             CAS(cursor, kJoining -> T); if it fails the producer chose the start (below)
//   producer: a refresh that reads kJoining resolves it: CAS(cursor, kJoining -> its own tail).
// Why the joiner cannot be lapped: a refresh whose load of this cursor came before J in the
// single total order S computed a min m <= t0, the producer's tail at that refresh; the producer
// stored t0 (seq_cst) before that refresh's loads, so T >= t0 >= m, and that refresh lets the
// producer write only below m + capacity <= T + capacity. A refresh after J reads kJoining (and
// resolves it itself) or the resolved value, so it counts the joiner. Either way nothing the
// joiner may still read at or after its start is overwritten before its cursor moves past it.
// A fresh slot's cursor reads 0 before J (Attachment zeroes it): the producer ignores cursors
// outside [tail - capacity, tail], which covers that 0 once the ring has wrapped; before that,
// 0 only holds the producer back a little longer (conservative).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "flatring/layout.hpp"
#include "flatring/mp_reader.hpp"
#include "flatring/ring.hpp"
#include "flatring/segment.hpp"
#include "flatring/status.hpp"

namespace flatring {

namespace detail {
/// A consumer's cursor while it joins (see the join protocol above). Never a real position: real
/// positions are 16-byte aligned.
inline constexpr std::uint64_t kJoining = ~std::uint64_t{0};
}  // namespace detail

/// The producer of a broadcast ring. One per ring at a time (the role is exclusive; a dead
/// producer's role is taken over). Not thread-safe: \pre every method is called from one thread
/// at a time.
class BroadcastWriter {
 public:
  /// Attaches as the ring's producer, resuming at the published tail.
  /// \throws Error(wrong_mode) for a ring that is not broadcast; Error(role_taken) if a live
  ///   producer exists; Error(corrupt_state) if the published tail is impossible.
  explicit BroadcastWriter(Ring ring, WaitOptions wait = {});

  /// Copies `payload` in as one record. ok, full (the slowest consumer has not released enough),
  /// too_large. Never blocks, makes no syscall unless a consumer sleeps, and does no liveness
  /// check: a dead consumer holds a try_write back until a blocking write (or
  /// Ring::reap_dead_peers) reclaims its slot.
  [[nodiscard]] Status try_write(std::span<const std::byte> payload) noexcept {
    return detail::fill_and_commit(*this, try_reserve(payload.size()), payload);
  }

  /// Like try_write, but waits (spin, then futex) up to `timeout` for the slowest live consumer.
  /// Consumers that died are reclaimed while waiting and stop holding the producer back.
  /// Extra outcome: timed_out.
  [[nodiscard]] Status write(std::span<const std::byte> payload, std::chrono::nanoseconds timeout) {
    return detail::fill_and_commit(*this, reserve(payload.size(), timeout), payload);
  }

  /// Reserves room for a record of up to `n` bytes; follow with commit(used <= n) or abort().
  [[nodiscard]] Result<std::span<std::byte>> try_reserve(std::size_t n) noexcept {
    if (reserved_ != kNone) return Status::invalid_state;
    if (n > max_record_) {
      self_.count(layout::too_large);
      return Status::too_large;
    }
    const std::uint64_t need = space_needed(n);
    if (tail_ + need - min_cache_ > capacity_) {
      refresh_min();
      if (tail_ + need - min_cache_ > capacity_) return Status::full;
    }
    std::uint64_t offset = tail_ & mask_;
    const std::uint64_t to_end = capacity_ - offset;
    if (layout::frame_size(n) > to_end) {
      // Published with the next commit's tail store; consumers never read above the tail.
      detail::header_at(data_, offset)
          .frame.store(layout::make_frame(layout::RecordType::padding,
                                          to_end - layout::kRecordHeaderSize),
                       std::memory_order_relaxed);
      tail_ += to_end;
      offset = 0;
    }
    reserved_ = n;
    return std::span<std::byte>(data_ + offset + layout::kRecordHeaderSize, n);
  }

  /// try_reserve, waiting up to `timeout` (see write).
  [[nodiscard]] Result<std::span<std::byte>> reserve(std::size_t n, std::chrono::nanoseconds timeout);

  /// Publishes the reserved record with `used` bytes (used <= the reserved size).
  Status commit(std::size_t used) noexcept {
    if (reserved_ == kNone || used > reserved_) return Status::invalid_state;
    const std::uint64_t offset = tail_ & mask_;
    const std::uint64_t next = tail_ + layout::frame_size(used);
    // Relaxed: ordered before the tail store below, which is a release.
    detail::header_at(data_, offset)
        .frame.store(layout::make_frame(layout::RecordType::data, used), std::memory_order_relaxed);
    // SYNC POINT WRITE: publishes this record (and a padding record before it); pairs with the
    // consumers' acquire load of tail. seq_cst: Dekker half of the consumers' sleep handshake and
    // the join argument (see the top of this file).
    ctrl_->producer.tail.store(next, std::memory_order_seq_cst);
    tail_ = next;
    reserved_ = kNone;
    ++records_;
    bytes_ += used;
    self_.slot().counter[layout::records_written].store(records_, std::memory_order_relaxed);
    self_.slot().counter[layout::bytes_written].store(bytes_, std::memory_order_relaxed);
    // Dekker partner of the consumers' waiters.fetch_add. Broadcast: every sleeper wants it.
    if (ctrl_->data.waiters.load(std::memory_order_seq_cst) != 0) detail::wake_all(ctrl_->data, self_);
    return Status::ok;
  }

  /// Drops the reservation. A padding record it wrote stays (it is published with the next commit).
  void abort() noexcept { reserved_ = kNone; }

  /// Position just past the last record (committed, or padding awaiting the next commit).
  [[nodiscard]] std::uint64_t position() const noexcept { return tail_; }
  [[nodiscard]] std::uint64_t max_record_size() const noexcept { return max_record_; }
  [[nodiscard]] const Ring& ring() const noexcept { return ring_; }
  [[nodiscard]] bool took_over() const noexcept { return self_.took_over(); }
  /// The slowest attached consumer's position, as of the last refresh (tail when none).
  [[nodiscard]] std::uint64_t slowest() const noexcept { return min_cache_; }

 private:
  static constexpr std::uint64_t kNone = ~std::uint64_t{0};

  // Bytes from tail_ a record of `n` bytes needs: padding to the end when it does not fit, then
  // the record.
  [[nodiscard]] std::uint64_t space_needed(std::size_t n) const noexcept {
    const std::uint64_t frame = layout::frame_size(n);
    const std::uint64_t to_end = capacity_ - (tail_ & mask_);
    return (frame > to_end ? to_end : 0) + frame;
  }

  // Recomputes min_cache_ over the consumers' cursors (and resolves joins). No syscall.
  void refresh_min() noexcept;

  Ring ring_;
  Attachment self_;
  WaitOptions wait_;
  layout::Control* ctrl_;
  std::byte* data_;
  std::uint64_t capacity_;
  std::uint64_t mask_;
  std::uint64_t max_record_;
  std::uint64_t tail_ = 0;
  std::uint64_t min_cache_ = 0;
  std::uint64_t reserved_ = kNone;
  std::uint64_t records_ = 0;
  std::uint64_t bytes_ = 0;
};

/// One consumer of a broadcast ring: sees every record committed after it joined, in order, read
/// in place (read-only mapping) and valid until released. Any number may attach (up to the peer
/// slots) and leave at any time. Same reading API as Reader (try_read, release, poll, ... from
/// detail::ReaderCore). Not thread-safe: \pre every method is called from one thread at a time.
class BroadcastReader : public detail::ReaderCore<BroadcastReader, const std::byte> {
 public:
  /// Attaches and joins at the current tail: the first record it sees is the first one committed
  /// after the join.
  /// \throws Error(wrong_mode) for a ring that is not broadcast; Error(no_free_slot);
  ///   Error(corrupt_state) if the published tail is impossible.
  explicit BroadcastReader(Ring ring, WaitOptions wait = {});

  /// try_read, waiting (spin, then futex) up to `timeout`. Extra outcomes: timed_out; peer_dead
  /// (the producer died and everything it published has been read; its slot was reclaimed).
  [[nodiscard]] Result<RecordView> read(std::chrono::nanoseconds timeout);

  /// Where this consumer joined: records committed before it are not seen.
  [[nodiscard]] std::uint64_t joined_at() const noexcept { return joined_at_; }

 private:
  friend class detail::ReaderCore<BroadcastReader, const std::byte>;

  Result<RecordView> next() noexcept {
    for (int hop = 0; hop < 2; ++hop) {
      if (head_ == tail_cache_) {
        // SYNC POINT READ: pairs with the producer's tail store; frames and payloads below `t`
        // are visible after it. Untrusted: behind us, a lap ahead, or misaligned is corrupt.
        const std::uint64_t t = ctrl_->producer.tail.load(std::memory_order_acquire);
        if (t < head_ || t - head_ > capacity_ || (t & (layout::kRecordAlign - 1)) != 0) {
          return corrupt();
        }
        tail_cache_ = t;
        if (t == head_) return empty();
      }
      const std::uint64_t offset = head_ & mask_;
      // Relaxed: below the tail loaded with acquire, so the producer's store is visible.
      const std::uint64_t w = detail::header_at(data_, offset).frame.load(std::memory_order_relaxed);
      const std::uint64_t to_end = capacity_ - offset;
      const std::uint64_t len = layout::frame_length(w);
      if (layout::frame_flags(w) != 0) return corrupt();
      switch (layout::frame_type(w)) {
        case layout::RecordType::data: {
          if (len > max_record_) return corrupt();
          const std::uint64_t frame = layout::frame_size(len);
          if (frame > to_end || frame > tail_cache_ - head_) return corrupt();
          return hold(offset, len, frame);
        }
        case layout::RecordType::padding:
          if (len + layout::kRecordHeaderSize != to_end || to_end > tail_cache_ - head_) {
            return corrupt();
          }
          step(to_end);
          publish();  // the producer may be waiting for exactly these bytes
          continue;
        default:
          return corrupt();
      }
    }
    return corrupt();  // two paddings in a row would span the whole ring
  }

  // Read-only on the record area: moving past a record is only a position change.
  void step(std::uint64_t extent) noexcept { head_ += extent; }

  void publish() noexcept {
    store_counters();
    // SYNC POINT WRITE: the bytes below head_ are no longer read by us; pairs with the producer's
    // seq_cst cursor loads. seq_cst: Dekker half of the producer's sleep handshake.
    self_.slot().cursor.store(head_, std::memory_order_seq_cst);
    if (ctrl_->space.waiters.load(std::memory_order_seq_cst) != 0) detail::wake_all(ctrl_->space, self_);
  }

  std::uint64_t joined_at_ = 0;
};

}  // namespace flatring
