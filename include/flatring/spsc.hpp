// spsc rings: one producer, one consumer. The mode's policy on the endpoint skeleton
// (endpoint.hpp); docs/design.md has the whole argument.
//
// Protocol summary (SYNC POINTs at the atomics below):
//  producer commit:  next.frame.store(0, relaxed); tail.store(new, release);
//                    this.frame.store(w, release)            -- SYNC POINT WRITE
//                    The next frame word is zeroed before the tail that names it is published, so
//                    a reader that jumps to the tail (recover) never finds last lap's bytes there.
//  consumer read:    w = this.frame.load(acquire)             -- SYNC POINT READ, pairs with above;
//                    the consumer never reads `tail` on the hot path: the frame word itself says
//                    whether a record is there.
//  consumer release: head.store(new, release)                 -- pairs with the producer's
//                    head.load(acquire), made only when its cached head says full
// Sleep handshakes use asymmetric fences (Handshake::asymmetric): a commit costs a plain store.
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

inline constexpr FrameRules kSpscFrames{.aux_extent = false, .abandoned = false};

/// The spsc producer: Writer<Mode::spsc>. One per ring at a time (the role is exclusive; a dead
/// writer's role is taken over, resuming at the last committed record).
class SpscWriter final : public ProducerCore<SpscWriter> {
 public:
  /// \throws Error(wrong_mode) for a ring that is not spsc; Error(role_taken) if a live producer
  ///   exists; Error(corrupt_state) if the positions in the segment are impossible.
  explicit SpscWriter(Ring ring, WaitOptions wait = {});

 private:
  friend class ProducerCore<SpscWriter>;
  static constexpr Handshake kHandshake = Handshake::asymmetric;
  static constexpr PeerRule kPeerRule = PeerRule::needs_consumer;
  static constexpr int kWakeCount = INT_MAX;

  static void copy_in(std::byte* to, std::span<const std::byte> from) noexcept {
    if (!from.empty()) std::memcpy(to, from.data(), from.size());
  }

  Result<std::byte*> claim(std::uint64_t n) noexcept {
    const std::uint64_t frame = layout::frame_size(n);
    std::uint64_t offset = tail_ & mask_;
    const std::uint64_t to_end = capacity_ - offset;
    const std::uint64_t pad = frame > to_end ? to_end : 0;
    // +header: the next record's frame word is zeroed at commit, so it must be free as well.
    const std::uint64_t need = pad + frame + layout::kRecordHeaderSize;
    if (tail_ + need - head_cache_ > capacity_) {
      if (!refresh_head()) return Status::corrupt;
      if (tail_ + need - head_cache_ > capacity_) return Status::full;
    }
    if (pad != 0) {
      publish_frame(offset, layout::RecordType::padding, to_end - layout::kRecordHeaderSize,
                    to_end);
      offset = 0;
    }
    return data_ + offset + layout::kRecordHeaderSize;
  }

  Status publish(std::uint64_t /*reserved*/, std::uint64_t used, std::uint64_t flags) noexcept {
    // Every time: this header may sit over the payload of an older lap. Relaxed: published by
    // the frame word's release store.
    store_aux(header_at(data_, tail_ & mask_), flags);
    publish_frame(tail_ & mask_, layout::RecordType::data, used, layout::frame_size(used));
    return Status::ok;
  }

  void withdraw(std::uint64_t /*reserved*/) noexcept {}

  bool room(std::uint64_t /*n*/, std::memory_order) const noexcept {
    // claim only reports full after reloading head_cache_, so any other head means the consumer
    // released something; claim validates it before use. Acquire: pairs with its head store.
    return ctrl_->consumer.head.load(std::memory_order_acquire) != head_cache_;
  }

  void publish_frame(std::uint64_t offset, layout::RecordType type, std::uint64_t len,
                     std::uint64_t extent) noexcept {
    const std::uint64_t next = tail_ + extent;
    header_at(data_, next & mask_).frame.store(0, std::memory_order_relaxed);
    // Release: a reader that loads this tail (recover) sees the zeroed frame word at it.
    ctrl_->producer.tail.store(next, std::memory_order_release);
    // SYNC POINT WRITE: publishes payload, tail and the zeroed next slot; pairs with the
    // consumer's acquire load of this frame word.
    header_at(data_, offset).frame.store(layout::make_frame(type, len), std::memory_order_release);
    tail_ = next;
  }

  // Reads the consumer's head. Untrusted: a head behind tail - capacity, ahead of the tail, or
  // misaligned is reported as corrupt rather than used.
  bool refresh_head() noexcept {
    // SYNC POINT READ: pairs with the consumer's head store; after it the space is free.
    const std::uint64_t h = ctrl_->consumer.head.load(std::memory_order_acquire);
    if (h > tail_ || tail_ - h > capacity_ - layout::kRecordHeaderSize || (h & kAlignMask) != 0) {
      self_.count(layout::corrupt_records);
      return false;
    }
    head_cache_ = h;
    return true;
  }

  std::uint64_t head_cache_ = 0;
};

/// The spsc consumer: Reader<Mode::spsc>. One per ring at a time (the role is exclusive; a dead
/// reader's role is taken over, resuming at the published head). Records are read in place
/// (read-only mapping) and stay valid until released.
class SpscReader final : public ConsumerCore<SpscReader, false> {
 public:
  /// \throws Error(wrong_mode), Error(role_taken), Error(corrupt_state) as for Writer<spsc>.
  explicit SpscReader(Ring ring, WaitOptions wait = {});

 private:
  friend class ConsumerCore<SpscReader, false>;
  static constexpr Handshake kHandshake = Handshake::asymmetric;
  static constexpr bool kKeeps = true;               // ConsumerCore::keep: a position change only
  static constexpr bool kRecoversConsumers = false;  // one consumer

  Result<RecordView> next() noexcept {
    for (int hop = 0; hop < 2; ++hop) {
      // SYNC POINT READ: pairs with the producer's frame store; the payload is visible after it.
      const auto [offset, d] = frame_at(head_, std::memory_order_acquire, kSpscFrames);
      switch (d.kind) {
        case Frame::empty: return empty();
        case Frame::record: return hold(offset, d.start, d.len, d.extent);
        case Frame::skip:  // padding to the end of the ring
          step(d.extent);
          publish();  // the producer may be waiting for exactly these bytes
          continue;
        default: return corrupt();
      }
    }
    // Two paddings in a row cannot happen: the second would start at offset 0 and span the ring.
    return corrupt();
  }

  void step(std::uint64_t extent) noexcept { head_ += extent; }

  bool publish_position() noexcept {
    // SYNC POINT WRITE: frees the space; pairs with the producer's acquire load of head.
    ctrl_->consumer.head.store(head_, std::memory_order_release);
    return true;
  }

  bool ready(std::memory_order) const noexcept {
    // Acquire: pairs with the producer's release store of the frame word.
    return header_at(data_, head_ & mask_).frame.load(std::memory_order_acquire) != 0;
  }

  Status recover_step() noexcept;
  Status on_interval() noexcept { return Status::empty; }
  bool drained() const noexcept { return true; }  // try_read found the frame word at head_ 0
};

}  // namespace detail

template <>
struct ModeEndpoints<Mode::spsc> : EndpointPair<detail::SpscWriter, detail::SpscReader> {};

}  // namespace flatring
