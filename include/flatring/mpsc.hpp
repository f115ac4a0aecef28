// mpsc rings: many producers, one consumer, lock-free claims, recovery from producers that die.
//
// Reference idea: Aeron's MPSC ring buffer (aeron_mpsc_rb.c): claim by CAS on the tail, the
// header written at claim and the commit word published last, the consumer zeroes consumed bytes
// so that free space reads zero, padding at the wrap, unblock() for claims whose producer died.
//
// Records (layout.hpp), as in spsc, plus:
//  - RecordType::claimed: a claim being written. Its length is the claimed payload, so a claim
//    whose producer died mid-copy still says how far it reaches.
//  - RecordHeader::aux holds the record's extent in the ring (frame_size of the claimed length):
//    a producer may commit fewer bytes than it reserved, and the extent must not shrink.
//  - A claim never spans the wrap: a producer that does not fit before the end claims the rest as
//    a padding record of its own (committed at once), then claims again at offset 0.
//  - Free space is all zero: the consumer zeroes a record's bytes (payload first, frame word last)
//    before it publishes the head past it. So a zero frame word at the head means "claimed, not
//    yet written" (or "not claimed"), and an unwritten claim's bytes are all zero.
//
// Protocol:
//  producer claim:   t = tail.load(relaxed), 16-byte aligned or corrupt; space check against the
//                    cached head (refreshed with acquire only when the cache says full);
//                    slot.cursor.store(t, release)      -- "my claim starts at t"; a release of
//                                                          the previous claim's commit
//                    tail.CAS(t -> t + extent, seq_cst) -- SYNC POINT: claims [t, t + extent)
//                    aux = extent; frame.store(claimed|n, relaxed); release fence (the header
//                    lands before any payload byte); then the payload is written
//  producer commit:  frame.CAS(claimed|n -> data|used, seq_cst)  -- SYNC POINT WRITE: publishes
//                    the payload (release); seq_cst: Dekker half of the consumer's sleep. It fails
//                    only if the consumer declared the claim abandoned: Status::abandoned.
//  consumer read:    w = frame.load(acquire)            -- SYNC POINT READ, pairs with the commit
//  consumer release: zero the record; head.store(seq_cst) -- SYNC POINT WRITE: pairs with the
//                    producers' acquire load of head; the zeroes are visible to the next claimer.
//
// Recovery (unblock): the consumer stands at a frame word that is 0 or `claimed` while the tail
// is past it. The claim's owner is the producer whose slot cursor equals the head: its cursor was
// stored before its tail CAS (release), and the consumer's acquire load of a tail value at or
// after that CAS (every tail write is a CAS, so they form one release sequence) makes the cursor
// visible; the owner moves its cursor only when it claims again, i.e. after it committed or
// aborted. If no live producer's cursor equals the head, the owner is dead and all its writes are
// done. The consumer then turns the claim into an abandoned record with CAS (which fails if the
// owner committed after all), zeroes it, moves past it and reports Status::abandoned. The claim's
// extent comes from its `claimed` header, or, when the owner died before writing it, from the next
// claim boundary: the first non-zero frame word, or the next position a producer's cursor names,
// or the tail, whichever comes first (the dead owner wrote nothing, so its bytes are zero).
// A live producer that stalls inside a claim holds the consumer (like a slow consumer holds a
// broadcast producer): abandoning a live producer's claim after a timeout is not done, because
// its late writes would land in space that by then belongs to another record.
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

#ifndef FLATRING_TSAN
#if defined(__SANITIZE_THREAD__)
#define FLATRING_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define FLATRING_TSAN 1
#endif
#endif
#endif
#ifndef FLATRING_TSAN
#define FLATRING_TSAN 0
#endif

#ifdef FLATRING_TEST_HOOKS
// Test-only stops inside a producer, so that a crash test can SIGKILL it at an exact point.
namespace flatring::test_hooks {
inline void (*after_claim)() = nullptr;  // after the tail CAS, before the claim header is written
inline void (*mid_copy)() = nullptr;     // try_write: half the payload copied
inline void (*mid_release)() = nullptr;  // mpmc consumer: record marked releasing, not yet zeroed
inline void (*mid_unblock)() = nullptr;  // mpmc recovery: a dead producer's claim taken on `next`, not yet marked
}  // namespace flatring::test_hooks
#define FLATRING_TEST_HOOK(name)                                                      \
  do {                                                                                \
    if (::flatring::test_hooks::name != nullptr) ::flatring::test_hooks::name();      \
  } while (0)
#else
#define FLATRING_TEST_HOOK(name) \
  do {                           \
  } while (0)
#endif

namespace flatring {

namespace detail {
/// A producer's cursor before its first claim. Never a real position: those are 16-byte aligned.
inline constexpr std::uint64_t kNoClaim = ~std::uint64_t{0};

/// Copies into ring memory that is not yet published. Under ThreadSanitizer the copy is made of
/// relaxed atomic word stores: an mpmc consumer that was preempted may load a frame word at a
/// stale position that by then lies inside a newer record (it discards what it read, see
/// docs/design-mp.md), and TSan must see that benign race as what it is, a race between atomics.
/// Other builds use memcpy.
inline void ring_copy(std::byte* to, const std::byte* from, std::size_t n) noexcept {
#if FLATRING_TSAN
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t v;
    std::memcpy(&v, from + i, 8);
    __atomic_store_n(reinterpret_cast<std::uint64_t*>(to + i), v, __ATOMIC_RELAXED);
  }
  for (; i < n; ++i) __atomic_store_n(reinterpret_cast<unsigned char*>(to + i), static_cast<unsigned char>(from[i]), __ATOMIC_RELAXED);
#else
  if (n != 0) std::memcpy(to, from, n);
#endif
}

/// Zeroes ring memory, with the same ThreadSanitizer treatment as ring_copy. \pre `to` is 8-byte
/// aligned and `n` a multiple of 8 (ring positions are 16-byte aligned).
inline void ring_zero(std::byte* to, std::size_t n) noexcept {
#if FLATRING_TSAN
  for (std::size_t i = 0; i < n; i += 8) {
    __atomic_store_n(reinterpret_cast<std::uint64_t*>(to + i), std::uint64_t{0}, __ATOMIC_RELAXED);
  }
#else
  std::memset(to, 0, n);
#endif
}
}  // namespace detail

/// One producer of an mpsc or mpmc ring (MpscWriter and MpmcWriter are this class; the producer's
/// protocol is the same in both modes). Any number may attach (up to the peer slots). Not
/// thread-safe: \pre every method of one MpWriter is called from one thread at a time (use one
/// per thread).
class MpWriter {
 public:
  /// \throws Error(wrong_mode) for a ring that is neither mpsc nor mpmc; Error(no_free_slot).
  explicit MpWriter(Ring ring, WaitOptions wait = {});

  /// Copies `payload` in as one record. ok, full, too_large, corrupt (impossible positions), or
  /// abandoned (the consumer gave the claim up; nothing was delivered).
  [[nodiscard]] Status try_write(std::span<const std::byte> payload) noexcept {
    auto r = try_reserve(payload.size());
    if (!r) return r.status();
    copy_in(r->data(), payload);
    return commit(payload.size());
  }

  /// Like try_write, but waits (spin, then futex) up to `timeout` for space. Extra outcomes:
  /// timed_out; no_consumer / peer_dead (full, and no live consumer is attached).
  [[nodiscard]] Status write(std::span<const std::byte> payload, std::chrono::nanoseconds timeout) {
    auto r = reserve(payload.size(), timeout);
    if (!r) return r.status();
    copy_in(r->data(), payload);
    return commit(payload.size());
  }

  /// Claims room for a record of up to `n` bytes; follow with commit(used <= n) or abort(). The
  /// consumer waits at this claim until it is committed or aborted (or this process dies).
  [[nodiscard]] Result<std::span<std::byte>> try_reserve(std::size_t n) noexcept {
    if (reserved_ != kNone) return Status::invalid_state;
    if (n > max_record_) {
      self_.count(layout::too_large);
      return Status::too_large;
    }
    const std::uint64_t frame = layout::frame_size(n);
    for (;;) {
      // Relaxed: a guess that the CAS below checks.
      std::uint64_t t = ctrl_->producer.tail.load(std::memory_order_relaxed);
      // Untrusted: a misaligned tail would put our header (and its 8-byte stores) off a record
      // boundary, at capacity - 1 even past the record area.
      if ((t & (layout::kRecordAlign - 1)) != 0) {
        self_.count(layout::corrupt_records);
        return Status::corrupt;
      }
      const std::uint64_t offset = t & mask_;
      const std::uint64_t to_end = capacity_ - offset;
      const std::uint64_t extent = frame > to_end ? to_end : frame;
      if (t + extent - head_cache_ > capacity_) {
        const Status s = refresh_head(t);
        if (s == Status::empty) continue;  // `t` was stale: the consumer is already past it
        if (s != Status::ok) return s;
        if (t + extent - head_cache_ > capacity_) return Status::full;
      }
      // "My claim starts at t", for the consumers' recovery. Release: a recoverer that sees this
      // value (acquire) also sees our commit or abort of the previous claim, so "my cursor moved"
      // implies "my previous claim is written". The CAS below publishes it with the claim.
      self_.slot().cursor.store(t, std::memory_order_release);
      // SYNC POINT: claims [t, t + extent). Acquire is already given by head_cache_'s load (the
      // consumer zeroed the space before publishing it); the CAS is a release of the cursor.
      // seq_cst: a sleeping mpmc consumer's seq_cst re-check reads the tail (Dekker with commit).
      if (!ctrl_->producer.tail.compare_exchange_weak(t, t + extent, std::memory_order_seq_cst,
                                                      std::memory_order_relaxed)) {
        // Not our claim: a cursor left on it would make recovery wait for us instead of its owner.
        // Release, as above: a recoverer that reads this value has seen our cursor move on.
        self_.slot().cursor.store(detail::kNoClaim, std::memory_order_release);
        continue;
      }
      FLATRING_TEST_HOOK(after_claim);
      auto& h = detail::header_at(data_, offset);
      if (extent != frame) {
        // The record does not fit before the end: this claim is padding, published at once.
        publish(h, layout::make_frame(layout::RecordType::padding, to_end - layout::kRecordHeaderSize));
        continue;
      }
      // Relaxed: only read by the consumer after the commit (acquire) or after this process died
      // (then every store it made is visible).
      detail::store_aux(h, extent);
      h.frame.store(layout::make_frame(layout::RecordType::claimed, n), std::memory_order_relaxed);
      // Crash order: the header before any payload byte, so that a claim whose header is missing
      // really is untouched (recovery measures it by its zero bytes). Costs nothing on x86.
      std::atomic_thread_fence(std::memory_order_release);
      claim_ = t;
      reserved_ = n;
      return std::span<std::byte>(data_ + offset + layout::kRecordHeaderSize, n);
    }
  }

  /// try_reserve, waiting up to `timeout` for space (see write for the extra outcomes).
  [[nodiscard]] Result<std::span<std::byte>> reserve(std::size_t n, std::chrono::nanoseconds timeout);

  /// Publishes the claimed record with `used` bytes (used <= the reserved size). abandoned if the
  /// consumer gave the claim up meanwhile (only done for producers it found dead).
  Status commit(std::size_t used) noexcept {
    if (reserved_ == kNone || used > reserved_) return Status::invalid_state;
    std::uint64_t expected = layout::make_frame(layout::RecordType::claimed, reserved_);
    auto& h = detail::header_at(data_, claim_ & mask_);
    const std::uint64_t extent = layout::frame_size(reserved_);
    reserved_ = kNone;
    // SYNC POINT WRITE: publishes the payload; pairs with the consumer's acquire load. seq_cst:
    // Dekker half of the consumer's sleep handshake.
    if (!h.frame.compare_exchange_strong(expected, layout::make_frame(layout::RecordType::data, used),
                                         std::memory_order_seq_cst, std::memory_order_relaxed)) {
      self_.count(layout::abandoned_records);
      finish_if_stalled(expected, extent);
      return Status::abandoned;
    }
    ++records_;
    bytes_ += used;
    self_.slot().counter[layout::records_written].store(records_, std::memory_order_relaxed);
    self_.slot().counter[layout::bytes_written].store(bytes_, std::memory_order_relaxed);
    wake_consumer();
    return Status::ok;
  }

  /// Gives the claim up: it becomes an abandoned record that the consumer skips silently.
  void abort() noexcept {
    if (reserved_ == kNone) return;
    std::uint64_t expected = layout::make_frame(layout::RecordType::claimed, reserved_);
    const std::uint64_t extent = layout::frame_size(reserved_);
    reserved_ = kNone;
    // Fails only if the consumers already abandoned it: then there is nothing left to do, unless
    // they skipped it as stalled (mpmc), which leaves the finishing to us.
    if (detail::header_at(data_, claim_ & mask_)
            .frame.compare_exchange_strong(
                expected,
                layout::make_frame(layout::RecordType::abandoned, extent - layout::kRecordHeaderSize),
                std::memory_order_seq_cst, std::memory_order_relaxed)) {
      wake_consumer();
    } else {
      finish_if_stalled(expected, extent);
    }
  }

  [[nodiscard]] std::uint64_t max_record_size() const noexcept { return max_record_; }
  [[nodiscard]] const Ring& ring() const noexcept { return ring_; }

 private:
  static constexpr std::uint64_t kNone = ~std::uint64_t{0};

  // mpmc: the consumers skipped our claim of `extent` bytes after their claim timeout and marked
  // it stalled (`w`, the frame word our commit or abort found). We are the only writer of its
  // bytes, so we zero them, mark it done and free what can be freed. Any other word (or a mark
  // that does not cover exactly our claim): nothing to do.
  void finish_if_stalled(std::uint64_t w, std::uint64_t extent) noexcept;

  static void copy_in(std::byte* to, std::span<const std::byte> from) noexcept {
    if (from.empty()) return;
#ifdef FLATRING_TEST_HOOKS
    const std::size_t half = from.size() / 2;
    detail::ring_copy(to, from.data(), half);
    FLATRING_TEST_HOOK(mid_copy);
    detail::ring_copy(to + half, from.data() + half, from.size() - half);
#else
    detail::ring_copy(to, from.data(), from.size());
#endif
  }

  // Publishes a finished frame word (padding) and wakes the consumer if it sleeps.
  void publish(layout::RecordHeader& h, std::uint64_t w) noexcept {
    // SYNC POINT WRITE (padding): pairs with the consumer's acquire load; seq_cst for the Dekker
    // handshake as in commit.
    h.frame.store(w, std::memory_order_seq_cst);
    wake_consumer();
  }

  void wake_consumer() noexcept {
    // Dekker partner of the consumer's waiters.fetch_add (after our seq_cst frame write). One
    // record, one consumer: mpmc consumers share the work, so waking them all would only make the
    // others go back to sleep (mpsc has a single consumer anyway).
    if (ctrl_->data.waiters.load(std::memory_order_seq_cst) != 0) detail::wake_one(ctrl_->data, self_);
  }

  // Reads the consumer's head into head_cache_. empty: the head is past `t`, which was stale
  // (other producers claimed and the consumer consumed since we loaded it): reload the tail.
  // Untrusted: ahead of the current tail, a lap behind `t`, or misaligned is corrupt.
  Status refresh_head(std::uint64_t t) noexcept {
    // SYNC POINT READ: pairs with the consumer's head store; the space below head + capacity is
    // free and zeroed after it.
    const std::uint64_t h = ctrl_->consumer.head.load(std::memory_order_acquire);
    if (h > t && h <= ctrl_->producer.tail.load(std::memory_order_acquire) &&
        (h & (layout::kRecordAlign - 1)) == 0) {
      head_cache_ = h;
      return Status::empty;
    }
    if (h > t || t - h > capacity_ || (h & (layout::kRecordAlign - 1)) != 0) {
      self_.count(layout::corrupt_records);
      return Status::corrupt;
    }
    head_cache_ = h;
    return Status::ok;
  }

  Ring ring_;
  Attachment self_;
  WaitOptions wait_;
  layout::Control* ctrl_;
  std::byte* data_;
  std::uint64_t capacity_;
  std::uint64_t mask_;
  std::uint64_t max_record_;
  std::uint64_t head_cache_ = 0;
  std::uint64_t claim_ = 0;
  std::uint64_t reserved_ = kNone;
  std::uint64_t records_ = 0;
  std::uint64_t bytes_ = 0;
};

using MpscWriter = MpWriter;  ///< the producer of an mpsc ring
using MpmcWriter = MpWriter;  ///< the producer of an mpmc ring

/// The consumer of an mpsc ring (one at a time; a dead consumer's role is taken over). Records are
/// read in place and stay valid until released; releasing zeroes them. Same reading API as
/// Reader (try_read, release, poll, ... from detail::ReaderCore), plus unblock(). try_read says
/// empty at a claim still being written; records a producer aborted are skipped. Not
/// thread-safe: \pre every method is called from one thread at a time.
class MpscReader : public detail::ReaderCore<MpscReader, std::byte> {
 public:
  /// \throws Error(wrong_mode), Error(role_taken), Error(corrupt_state) as for Reader.
  explicit MpscReader(Ring ring, WaitOptions wait = {});

  /// try_read, waiting up to `timeout`. While it waits it checks, every liveness interval, whether
  /// the claim at the head belongs to a dead producer (unblock()). Extra outcomes: timed_out;
  /// abandoned (a dead producer's claim was skipped: call again for the next record); peer_dead
  /// (the ring is empty and the producers died).
  [[nodiscard]] Result<RecordView> read(std::chrono::nanoseconds timeout);

  /// If the head is stuck at a claim whose producer is dead, skips the claim and returns
  /// abandoned. Otherwise empty (the claim's owner is alive, or nothing is claimed) or ok (a
  /// record is ready). Makes syscalls (liveness): not for the hot path.
  Status unblock() noexcept;

 private:
  friend class detail::ReaderCore<MpscReader, std::byte>;

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
      const std::uint64_t offset = head_ & mask_;
      auto& h = detail::header_at(data_, offset);
      // SYNC POINT READ: pairs with the producer's commit (or padding / abort) store.
      const std::uint64_t w = h.frame.load(std::memory_order_acquire);
      const auto type = layout::frame_type(w);
      if (w == 0 || type == layout::RecordType::claimed) return empty();
      if (layout::frame_flags(w) != 0) return corrupt();
      const std::uint64_t to_end = capacity_ - offset;
      const std::uint64_t len = layout::frame_length(w);
      switch (type) {
        case layout::RecordType::data: {
          const std::uint64_t extent = detail::load_aux(h);  // written before the commit we acquired
          if (len > max_record_ || extent < layout::frame_size(len) || extent > to_end ||
              (extent & (layout::kRecordAlign - 1)) != 0 || !covered(head_ + extent)) {
            return corrupt();
          }
          return hold(offset, len, extent);
        }
        case layout::RecordType::padding:
        case layout::RecordType::abandoned: {
          const std::uint64_t extent = len + layout::kRecordHeaderSize;
          const bool fits = type == layout::RecordType::padding
                                ? extent == to_end
                                : extent <= to_end && (extent & (layout::kRecordAlign - 1)) == 0;
          if (!fits || !covered(head_ + extent)) return corrupt();
          step(extent);
          publish();  // producers may be waiting for exactly these bytes
          continue;
        }
        default:
          return corrupt();
      }
    }
    return empty();
  }

  // Zeroes [head_, head_ + extent) and moves past it: free space must read zero for the next
  // claimer. Payload first, frame word last, so a consumer that dies half-way leaves a readable
  // record behind, not a zero frame over leftover bytes.
  void step(std::uint64_t extent) noexcept {
    const std::uint64_t offset = head_ & mask_;
    detail::ring_zero(data_ + offset + 8, extent - 8);
    // Relaxed: published by the head store (release) that follows.
    detail::header_at(data_, offset).frame.store(0, std::memory_order_relaxed);
    head_ += extent;
  }

  void publish() noexcept {
    store_counters();
    // SYNC POINT WRITE: frees (zeroed) space; pairs with the producers' acquire load of head.
    // seq_cst: Dekker half of the producers' sleep handshake.
    ctrl_->consumer.head.store(head_, std::memory_order_seq_cst);
    if (ctrl_->space.waiters.load(std::memory_order_seq_cst) != 0) detail::wake_all(ctrl_->space, self_);
  }
};

}  // namespace flatring
