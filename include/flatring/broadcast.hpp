// Broadcast rings: one producer, many consumers, every consumer sees every record. The mode's
// policy on the endpoint skeleton (endpoint.hpp); docs/design-mp.md has the whole argument.
//
// Same record format as spsc. What differs:
//  - Each consumer owns a PeerSlot and publishes its position in PeerSlot::cursor. The producer's
//    free space ends at the slowest cursor of the consumers attached (the "min").
//  - Consumers are driven by the published tail, not by frame words: a consumer reads only records
//    below the tail it loaded (acquire). So the frame words at and above the tail may hold stale
//    bytes from the previous lap, and the producer does not zero the next frame word.
//  - Slow-consumer policy: lossless. The producer waits for the slowest LIVE consumer; a consumer
//    that died is found by the liveness check and reclaimed, so it stops holding the producer
//    back (PeerRule::lossless). With no consumer attached the producer never waits.
//
// Memory ordering (every SYNC POINT):
//  producer commit:  frame.store(w, relaxed); tail.store(next, seq_cst)      -- SYNC POINT WRITE
//                    (release: publishes frames and payloads below `next`; seq_cst: Dekker half
//                    of the consumers' sleep, and the join argument in docs/design-mp.md)
//  consumer read:    t = tail.load(acquire)                                   -- SYNC POINT READ
//                    then frames/payloads below t (relaxed/plain: ordered by the acquire)
//  consumer release: cursor.store(head, seq_cst)                              -- SYNC POINT WRITE
//                    (release: the consumer is done reading the bytes below head; seq_cst: Dekker
//                    half of the producer's sleep)
//  producer refresh: cursor.load(seq_cst) over all consumer slots             -- SYNC POINT READ
//                    only when the cached min says full (rigtorp/Aeron cached index)
// Joining: the consumer stores kJoining (seq_cst), reads the tail (seq_cst), then CASes its cursor
// from kJoining to that tail; a producer refresh that reads kJoining resolves it to its own tail
// instead. Either way the joiner cannot be lapped (docs/design-mp.md, "Joining").
#pragma once

#include <atomic>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "flatring/endpoint.hpp"

namespace flatring {
namespace detail {

/// A consumer's cursor while it joins. Never a real position: real positions are 16-byte aligned.
inline constexpr std::uint64_t kJoining = ~std::uint64_t{0};

/// The broadcast producer: Writer<Mode::broadcast>. One per ring at a time (the role is exclusive;
/// a dead producer's role is taken over, resuming at the published tail). try_write does no
/// liveness check: a dead consumer holds it back until a blocking write (or Ring::reap_dead_peers)
/// reclaims its slot.
class BroadcastWriter final : public ProducerCore<BroadcastWriter> {
 public:
  /// \throws Error(wrong_mode) for a ring that is not broadcast; Error(role_taken) if a live
  ///   producer exists; Error(corrupt_state) if the published tail is impossible.
  explicit BroadcastWriter(Ring ring, WaitOptions wait = {});

  /// The slowest attached consumer's position, as of the last refresh (the tail when none).
  [[nodiscard]] std::uint64_t slowest() const noexcept { return min_cache_; }

 private:
  friend class ProducerCore<BroadcastWriter>;
  static constexpr Handshake kHandshake = Handshake::seq_cst;
  static constexpr PeerRule kPeerRule = PeerRule::lossless;
  static constexpr int kWakeCount = INT_MAX;  // every consumer wants every record

  static void copy_in(std::byte* to, std::span<const std::byte> from) noexcept {
    if (!from.empty()) std::memcpy(to, from.data(), from.size());
  }

  Result<std::byte*> claim(std::uint64_t n) noexcept {
    const std::uint64_t need = space_needed(n);
    if (tail_ + need - min_cache_ > capacity_) {
      refresh_min();
      if (tail_ + need - min_cache_ > capacity_) return Status::full;
    }
    std::uint64_t offset = tail_ & mask_;
    const std::uint64_t to_end = capacity_ - offset;
    if (layout::frame_size(n) > to_end) {
      // Published with the next commit's tail store; consumers never read above the tail.
      header_at(data_, offset)
          .frame.store(
              layout::make_frame(layout::RecordType::padding, to_end - layout::kRecordHeaderSize),
              std::memory_order_relaxed);
      tail_ += to_end;
      offset = 0;
    }
    return data_ + offset + layout::kRecordHeaderSize;
  }

  Status publish(std::uint64_t /*reserved*/, std::uint64_t used, std::uint64_t flags) noexcept {
    const std::uint64_t next = tail_ + layout::frame_size(used);
    auto& h = header_at(data_, tail_ & mask_);
    // Relaxed: ordered before the tail store below, which is a release. aux every time: this
    // header may sit over the payload of an older lap.
    store_aux(h, flags);
    h.frame.store(layout::make_frame(layout::RecordType::data, used), std::memory_order_relaxed);
    // SYNC POINT WRITE: publishes this record (and a padding record before it); pairs with the
    // consumers' acquire load of tail. seq_cst: Dekker half of the consumers' sleep handshake and
    // the join argument.
    ctrl_->producer.tail.store(next, std::memory_order_seq_cst);
    tail_ = next;
    return Status::ok;
  }

  // A padding record written by claim stays: it is published with the next commit.
  void withdraw(std::uint64_t /*reserved*/) noexcept {}

  bool room(std::uint64_t n, std::memory_order) noexcept {
    refresh_min();  // its cursor loads are seq_cst: the sleeper's re-check of the handshake
    return tail_ + space_needed(n) - min_cache_ <= capacity_;
  }

  // Bytes from tail_ a record of `n` bytes needs: padding to the end when it does not fit, then
  // the record.
  [[nodiscard]] std::uint64_t space_needed(std::uint64_t n) const noexcept {
    const std::uint64_t frame = layout::frame_size(n);
    const std::uint64_t to_end = capacity_ - (tail_ & mask_);
    return (frame > to_end ? to_end : 0) + frame;
  }

  // Recomputes min_cache_ over the consumers' cursors (and resolves joins). No syscall.
  void refresh_min() noexcept;

  std::uint64_t min_cache_ = 0;
};

inline constexpr FrameRules kBroadcastFrames{.aux_extent = false, .abandoned = false};

/// One consumer of a broadcast ring: Reader<Mode::broadcast>. Sees every record committed after
/// it joined, in order, read in place (read-only mapping) and valid until released. Any number
/// may attach (up to the peer slots) and leave at any time.
class BroadcastReader final : public ConsumerCore<BroadcastReader, false> {
 public:
  /// Attaches and joins at the current tail: the first record it sees is the first one committed
  /// after the join.
  /// \throws Error(wrong_mode) for a ring that is not broadcast; Error(no_free_slot);
  ///   Error(corrupt_state) if the published tail is impossible.
  explicit BroadcastReader(Ring ring, WaitOptions wait = {});

  /// Where this consumer joined: records committed before it are not seen.
  [[nodiscard]] std::uint64_t joined_at() const noexcept { return joined_at_; }

 private:
  friend class ConsumerCore<BroadcastReader, false>;
  static constexpr Handshake kHandshake = Handshake::seq_cst;
  static constexpr bool kKeeps = true;               // ConsumerCore::keep: a position change only
  static constexpr bool kRecoversConsumers = false;  // each consumer reads on its own

  Result<RecordView> next() noexcept {
    for (int hop = 0; hop < 2; ++hop) {
      if (head_ == tail_cache_) {
        // SYNC POINT READ: pairs with the producer's tail store; frames and payloads below `t`
        // are visible after it. Untrusted: behind us, a lap ahead, or misaligned is corrupt.
        const std::uint64_t t = ctrl_->producer.tail.load(std::memory_order_acquire);
        if (t < head_ || t - head_ > capacity_ || (t & kAlignMask) != 0) return corrupt();
        tail_cache_ = t;
        if (t == head_) return empty();
      }
      // Relaxed: below the tail loaded with acquire, so the producer's store is visible.
      const auto [offset, d] = frame_at(head_, std::memory_order_relaxed, kBroadcastFrames);
      if (d.kind != Frame::record && d.kind != Frame::skip) return corrupt();  // 0 is corrupt too
      if (d.extent > tail_cache_ - head_) return corrupt();
      if (d.kind == Frame::record) return hold(offset, d.start, d.len, d.extent);
      step(d.extent);  // padding
      publish();       // the producer may be waiting for exactly these bytes
    }
    return corrupt();  // two paddings in a row would span the whole ring
  }

  // Read-only on the record area: moving past a record is only a position change.
  void step(std::uint64_t extent) noexcept { head_ += extent; }

  bool publish_position() noexcept {
    // SYNC POINT WRITE: the bytes below head_ are no longer read by us; pairs with the producer's
    // seq_cst cursor loads. seq_cst: Dekker half of the producer's sleep handshake.
    self_.slot().cursor.store(head_, std::memory_order_seq_cst);
    return true;
  }

  bool ready(std::memory_order order) const noexcept {
    return ctrl_->producer.tail.load(order) != head_;
  }

  Status recover_step() noexcept { return skip_to_tail(capacity_); }
  Status on_interval() noexcept { return Status::empty; }
  bool drained() const noexcept { return true; }  // try_read found head_ at the tail

  std::uint64_t joined_at_ = 0;
};

}  // namespace detail

template <>
struct ModeEndpoints<Mode::broadcast>
    : EndpointPair<detail::BroadcastWriter, detail::BroadcastReader> {};

}  // namespace flatring
