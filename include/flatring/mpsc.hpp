// mpsc rings: many producers, one consumer, lock-free claims, recovery from producers that die.
// The multi-producer policy here is also mpmc's producer (mpmc.hpp adds the consumers). The mode's
// policy on the endpoint skeleton (endpoint.hpp); docs/design-mp.md has the whole argument.
//
// Reference idea: Aeron's MPSC ring buffer (aeron_mpsc_rb.c): claim by CAS on the tail, the
// header written at claim and the commit word published last, the consumer zeroes consumed bytes
// so that free space reads zero, padding at the wrap, recovery for claims whose producer died.
//
// Records (layout.hpp), as in spsc, plus:
//  - RecordType::claimed: a claim being written. Its length is the claimed payload, so a claim
//    whose producer died mid-copy still says how far it reaches.
//  - RecordHeader::aux holds the record's extent in the ring (frame_size of the claimed length):
//    a producer may commit fewer bytes than it reserved, and the extent must not shrink.
//  - A claim never spans the wrap: a producer that does not fit before the end claims the rest as
//    a padding record of its own (committed at once), then claims again at offset 0.
//  - Free space is all zero: the consumer zeroes a record's bytes (the frame word marked
//    abandoned first, then aux and payload, then the frame word) before it publishes the head
//    past it.
//
// Protocol (SYNC POINTs at the atomics, in src/mpsc.cpp for the claim):
//  producer claim:   slot.cursor.store(t, release); tail.CAS(t -> t + extent, seq_cst); then
//                    aux = extent; frame.store(claimed|n, relaxed); release fence; payload
//  producer commit:  frame.CAS(claimed|n -> data|used, seq_cst)  -- SYNC POINT WRITE
//  consumer read:    w = frame.load(acquire)                      -- SYNC POINT READ
//  consumer release: zero the record; head.store(seq_cst)         -- SYNC POINT WRITE
// Recovery (recover): the owner of a claim at the head is the producer whose slot cursor equals
// the head; if none alive has it, the owner is dead and the consumer turns the claim into an
// abandoned record with CAS, zeroes it and moves past it. A live producer that stalls inside a
// claim holds the consumer: abandoning a live producer's claim after a timeout is not done here,
// because its late writes would land in space that by then belongs to another record (an mpmc
// ring with one consumer offers the claim timeout).
#pragma once

#include <atomic>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <span>

#include "flatring/endpoint.hpp"

namespace flatring {
namespace detail {

/// A producer's cursor before its first claim. Never a real position: those are 16-byte aligned.
inline constexpr std::uint64_t kNoClaim = ~std::uint64_t{0};

inline constexpr FrameRules kMpFrames{.aux_extent = true, .abandoned = true};

/// The producer of an mpsc or mpmc ring (the protocol is the same in both modes). Any number may
/// attach (up to the peer slots). Use one per thread.
class MpWriterCore : public ProducerCore<MpWriterCore> {
 protected:
  /// \throws Error(wrong_mode) unless the ring's mode is `mode`; Error(no_free_slot);
  ///   Error(corrupt_state) for impossible positions.
  MpWriterCore(Ring ring, Mode mode, WaitOptions wait);

 private:
  friend class ProducerCore<MpWriterCore>;
  static constexpr Handshake kHandshake = Handshake::seq_cst;
  static constexpr PeerRule kPeerRule = PeerRule::needs_consumer;
  // One record, one consumer: mpmc consumers share the work, so waking them all would only make
  // the others go back to sleep (mpsc has a single consumer anyway).
  static constexpr int kWakeCount = 1;

  // Out of line (src/mpsc.cpp), where the crash tests' stops are.
  static void copy_in(std::byte* to, std::span<const std::byte> from) noexcept;
  Result<std::byte*> claim(std::uint64_t n) noexcept;

  Status publish(std::uint64_t reserved, std::uint64_t used, std::uint64_t flags) noexcept {
    std::uint64_t expected = layout::make_frame(layout::RecordType::claimed, reserved);
    if (flags != 0) {
      // Relaxed: published by the commit CAS below. The extent, stored at claim, stays.
      auto& h = header_at(data_, claim_ & mask_);
      store_aux(h, load_aux(h) | flags);
    }
    // SYNC POINT WRITE: publishes the payload; pairs with the consumer's acquire load. seq_cst:
    // Dekker half of the consumer's sleep handshake. Fails only if the consumers declared the
    // claim abandoned.
    if (!header_at(data_, claim_ & mask_)
             .frame.compare_exchange_strong(expected,
                                            layout::make_frame(layout::RecordType::data, used),
                                            std::memory_order_seq_cst, std::memory_order_relaxed)) {
      self_.count(layout::abandoned_records);
      finish_if_stalled(expected, layout::frame_size(reserved));
      return Status::abandoned;
    }
    return Status::ok;
  }

  // The claim becomes an abandoned record that the consumer skips silently.
  void withdraw(std::uint64_t reserved) noexcept {
    std::uint64_t expected = layout::make_frame(layout::RecordType::claimed, reserved);
    const std::uint64_t extent = layout::frame_size(reserved);
    // Fails only if the consumers already abandoned it: then there is nothing left to do, unless
    // they skipped it as stalled (mpmc), which leaves the finishing to us.
    if (header_at(data_, claim_ & mask_)
            .frame.compare_exchange_strong(expected,
                                           layout::make_frame(layout::RecordType::abandoned,
                                                              extent - layout::kRecordHeaderSize),
                                           std::memory_order_seq_cst, std::memory_order_relaxed)) {
      wake<kHandshake>(ctrl_->data, self_, false, kWakeCount, data_mark_);
    } else {
      finish_if_stalled(expected, extent);
    }
  }

  bool room(std::uint64_t n, std::memory_order order) const noexcept {
    // The claim position moves with the other producers: re-derive the need from the tail.
    const std::uint64_t frame = layout::frame_size(n);
    const std::uint64_t t = ctrl_->producer.tail.load(std::memory_order_relaxed);
    const std::uint64_t to_end = capacity_ - (t & mask_);
    const std::uint64_t need = frame > to_end ? to_end + frame : frame;
    return t + need - ctrl_->consumer.head.load(order) <= capacity_;
  }

  // Reads the consumer's head into head_cache_ (src/mpsc.cpp).
  Status refresh_head(std::uint64_t t) noexcept;
  // mpmc: the consumers skipped our claim after their claim timeout and marked it stalled; we
  // finish it (src/mpsc.cpp).
  void finish_if_stalled(std::uint64_t w, std::uint64_t extent) noexcept;

  std::uint64_t head_cache_ = 0;
  std::uint64_t claim_ = 0;
  WakeMark space_mark_;  // our last wake of producers (finish_if_stalled frees space)
};

/// Writer<Mode::mpsc> and Writer<Mode::mpmc>: the same producer, refusing a ring of the other
/// mode.
template <Mode M>
class MpWriter final : public MpWriterCore {
  static_assert(M == Mode::mpsc || M == Mode::mpmc, "multi-producer modes only");

 public:
  /// \throws Error(wrong_mode) for a ring of another mode; Error(no_free_slot);
  ///   Error(corrupt_state) if the positions in the segment are impossible.
  explicit MpWriter(Ring ring, WaitOptions wait = {}) : MpWriterCore(std::move(ring), M, wait) {}
};

/// The consumer of an mpsc ring: Reader<Mode::mpsc>. One at a time (a dead consumer's role is
/// taken over). Records are read in place and stay valid until released; releasing zeroes them.
/// try_read says empty at a claim still being written; records a producer aborted are skipped.
class MpscReader final : public ConsumerCore<MpscReader, true> {
 public:
  /// \throws Error(wrong_mode), Error(role_taken), Error(corrupt_state) as for Reader<spsc>.
  explicit MpscReader(Ring ring, WaitOptions wait = {});

 private:
  friend class ConsumerCore<MpscReader, true>;
  static constexpr Handshake kHandshake = Handshake::seq_cst;
  // ConsumerCore::keep: kept records are zeroed by release_to, walking them with these rules.
  static constexpr bool kKeeps = true;
  static constexpr bool kRecoversConsumers = false;  // one consumer
  static constexpr FrameRules kFrames = kMpFrames;

  // True if [head_, end) lies below the published tail. The tail is untrusted.
  bool covered(std::uint64_t end) noexcept {
    if (end <= tail_cache_) return true;
    // SYNC POINT READ: pairs with the producers' tail CAS (release).
    const std::uint64_t t = ctrl_->producer.tail.load(std::memory_order_acquire);
    if (t < head_ || t - head_ > capacity_) return false;
    tail_cache_ = t;
    return end <= t;
  }

  Result<RecordView> next() noexcept {
    // Bounded: skipped records are followed by a publish, so the caller makes progress anyway.
    for (int hop = 0; hop < 64; ++hop) {
      // SYNC POINT READ: pairs with the producer's commit (or padding / abort) store.
      const auto [offset, d] = frame_at(head_, std::memory_order_acquire, kMpFrames);
      switch (d.kind) {
        case Frame::empty: return empty();  // claimed, not yet written (or not claimed)
        case Frame::in_flight:
          if (d.type == layout::RecordType::claimed) return empty();
          return corrupt();
        case Frame::record:
          if (!covered(head_ + d.extent)) return corrupt();
          return hold(offset, d.start, d.len, d.extent);
        case Frame::skip:
          if (!covered(head_ + d.extent)) return corrupt();
          step(d.extent);
          publish();  // producers may be waiting for exactly these bytes
          continue;
        case Frame::corrupt: return corrupt();
      }
    }
    return empty();
  }

  // Zeroes [head_, head_ + extent) and moves past it: free space must read zero for the next
  // claimer. Crash order: the frame word first says "abandoned, `extent` bytes" (consumed), then
  // the aux word and payload are zeroed, then the frame word. A consumer that dies half-way leaves
  // a record the next one skips, never a data frame over a zeroed aux word (corrupt for good) or a
  // partly zeroed payload (delivered again); one that dies after the last store leaves zeros,
  // which recover_step measures and skips once no live producer's cursor is at the head.
  void step(std::uint64_t extent) noexcept {
    if (keeping()) {  // a padding or abandoned claim among kept records: release_to zeroes it
      head_ += extent;
      return;
    }
    const std::uint64_t offset = head_ & mask_;
    auto& frame = header_at(data_, offset).frame;
    // Relaxed, both: no producer touches [head, ...) before the head store (release) that follows
    // publishes it, and a successor reads them only after this process died, when every store it
    // made is visible. The signal fences (no instruction) keep the compiler from moving the zeroing
    // across them: a SIGKILL stops the process between two instructions in program order.
    frame.store(
        layout::make_frame(layout::RecordType::abandoned, extent - layout::kRecordHeaderSize),
        std::memory_order_relaxed);
    std::atomic_signal_fence(std::memory_order_seq_cst);
    ring_zero(data_ + offset + 8, extent - 8);
    std::atomic_signal_fence(std::memory_order_seq_cst);
    frame.store(0, std::memory_order_relaxed);
    head_ += extent;
  }

  bool publish_position() noexcept {
    // SYNC POINT WRITE: frees (zeroed) space; pairs with the producers' acquire load of head.
    // seq_cst: Dekker half of the producers' sleep handshake.
    ctrl_->consumer.head.store(head_, std::memory_order_seq_cst);
    return true;
  }

  bool ready(std::memory_order order) const noexcept {
    const std::uint64_t w = header_at(data_, head_ & mask_).frame.load(order);
    return w != 0 && layout::frame_type(w) != layout::RecordType::claimed;
  }

  // A claim at the head whose producer is dead is skipped (src/mpsc.cpp).
  Status recover_step() noexcept;
  // A claim that does not become a record: is its producer dead? At most twice per interval: it
  // makes syscalls, and read(0) in a loop must not make them on every call.
  Status on_interval() noexcept { return recovery_due() ? recover() : Status::empty; }
  bool drained() const noexcept {
    return ctrl_->producer.tail.load(std::memory_order_acquire) == head_;
  }
};

}  // namespace detail

template <>
struct ModeEndpoints<Mode::mpsc> : EndpointPair<detail::MpWriter<Mode::mpsc>, detail::MpscReader> {
};

}  // namespace flatring
