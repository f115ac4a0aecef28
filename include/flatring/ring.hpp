// The ring algorithm: a byte ring of variable-length records with explicit length slots.
//
// Record layout (see layout.hpp): a 16-byte header whose first word is the commit word
// `frame = (type << 56) | payload_length`, then the payload, padded to 16 bytes. A record is never
// split at the end of the ring: when it does not fit before the end, the producer writes a padding
// record up to the end and puts the record at offset 0.
//
// Positions (`tail` for the producer, `head` for the consumer) are 64-bit byte counters that only
// grow; the offset in the ring is `position & (capacity - 1)`. At 100 GB/s a 64-bit counter wraps
// after 5.8 years of continuous traffic, so wrap-around of the counters is not handled.
//
// Memory ordering (SPSC):
//  producer commit:  next.frame.store(0, relaxed); tail.store(new, release);
//                    this.frame.store(w, release)            -- SYNC POINT WRITE
//  consumer read:    w = this.frame.load(acquire)             -- SYNC POINT READ, pairs with above
//                    then payload reads. The consumer never reads `tail` on the hot path: the
//                    frame word itself says whether a record is there, so the only line that moves
//                    from producer to consumer per record is the record's own.
//  consumer release: head.store(new, release)                -- pairs with producer's head.load
//  producer reserve: head.load(acquire) only when its cached head says full (rigtorp/Aeron cache)
// Both sleep handshakes are Dekker pairs: the sleeper increments `waiters`, fences, then re-checks
// the condition; the waker stores its progress, fences, then loads `waiters`. One of them sees the
// other, so no wake-up is lost, and the waker makes a futex syscall only when someone is asleep.
// The fences are asymmetric (wait.hpp): a compiler-only fence on the waker's hot path, membarrier(2)
// on the sleeper's way to sleep; so a commit costs a plain store, not a locked instruction.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "flatring/layout.hpp"
#include "flatring/segment.hpp"
#include "flatring/status.hpp"
#include "flatring/wait.hpp"

#ifndef FLATRING_HOT_COUNTERS
#define FLATRING_HOT_COUNTERS 1
#endif

namespace flatring {

/// Whether the per-record counters (records and bytes written/read) are kept. Always on in normal
/// builds; the CMake option FLATRING_COUNTERS=OFF turns them off only so that flatring-bench can
/// show what they cost (docs/benchmarks.md). Statistics tests need them on.
inline constexpr bool kHotCounters = FLATRING_HOT_COUNTERS != 0;

/// Tuning for blocking calls.
struct WaitOptions {
  /// How long a blocking call polls before it sleeps on the futex. Spinning answers in well under
  /// a microsecond when the peer is on another core; sleeping costs a syscall and a wake-up.
  std::chrono::nanoseconds spin = std::chrono::microseconds(50);
  /// How often a sleeper wakes to check that its peers are alive (so a dead peer is reported
  /// rather than waited on until the timeout).
  std::chrono::nanoseconds liveness_interval = std::chrono::milliseconds(100);
  /// mpmc consumers only: a claim at the read position whose producer is alive but has not
  /// committed for this long is skipped (Status::abandoned), so a stalled producer cannot hold
  /// the consumers up. Its space is freed only once that producer finishes (its commit then
  /// returns abandoned) or dies. Checked at the liveness interval. 0 (the default): never skip a
  /// live producer's claim.
  std::chrono::nanoseconds claim_timeout = std::chrono::nanoseconds::zero();
};

/// A committed record, as seen by a Reader. `bytes` points into the shared ring (read-only mapping)
/// and is valid until the record is released.
struct RecordView {
  std::span<const std::byte> bytes;
  std::uint64_t position = 0;  ///< ring position of the record's header
  /// mpmc only: a consumer died holding this record and it is delivered again, to this consumer
  /// (at-least-once). Always false in the other modes.
  bool redelivered = false;
};

namespace detail {

inline layout::RecordHeader& header_at(std::byte* base, std::uint64_t offset) noexcept {
  return *reinterpret_cast<layout::RecordHeader*>(base + offset);
}
inline const layout::RecordHeader& header_at(const std::byte* base, std::uint64_t offset) noexcept {
  return *reinterpret_cast<const layout::RecordHeader*>(base + offset);
}

/// The aux word of a record header, as a relaxed atomic: ordered by the frame word's acquire or
/// release next to it, and atomic so that a stale reader racing a newer lap's writer is a race
/// between atomics (mpsc/mpmc: the record's extent; a done mpmc record: its own position).
inline std::uint64_t load_aux(const layout::RecordHeader& h) noexcept {
  return __atomic_load_n(&h.aux, __ATOMIC_RELAXED);
}
inline void store_aux(layout::RecordHeader& h, std::uint64_t v) noexcept {
  __atomic_store_n(&h.aux, v, __ATOMIC_RELAXED);
}

using Clock = std::chrono::steady_clock;

inline Clock::time_point deadline_after(std::chrono::nanoseconds timeout) noexcept {
  auto now = Clock::now();
  if (timeout > Clock::time_point::max() - now) return Clock::time_point::max();
  return now + std::chrono::duration_cast<Clock::duration>(timeout);
}

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

/// Bumps the futex word and wakes sleepers. Called only when `waiters` was seen non-zero.
inline void wake_all(layout::WaitLine& w, const Attachment& self) noexcept {
  w.futex.fetch_add(1, std::memory_order_release);
  wait::futex_wake(w.futex, INT_MAX);
  self.count(layout::futex_wakes);
}

/// Bumps the futex word and wakes one sleeper (mpmc work sharing: one record, one consumer).
inline void wake_one(layout::WaitLine& w, const Attachment& self) noexcept {
  w.futex.fetch_add(1, std::memory_order_release);
  wait::futex_wake(w.futex, 1);
  self.count(layout::futex_wakes);
}

/// Copies `payload` into a reservation and commits it: the body of every copy-in write.
template <class W>
Status fill_and_commit(W& writer, Result<std::span<std::byte>> r,
                       std::span<const std::byte> payload) noexcept {
  if (!r) return r.status();
  if (!payload.empty()) std::memcpy(r->data(), payload.data(), payload.size());
  return writer.commit(payload.size());
}

}  // namespace detail

/// The producer side of an spsc ring: copy in with try_write/write, or zero-copy with
/// reserve/commit. One Writer per ring at a time (the role is exclusive; a dead writer's role is
/// taken over). Not thread-safe: \pre every method is called from one thread at a time.
class Writer {
 public:
  /// Attaches as the ring's producer.
  /// \throws Error(wrong_mode) for a ring that is not spsc; Error(role_taken) if a live producer
  ///   exists; Error(corrupt_state) if the positions in the segment are impossible.
  explicit Writer(Ring ring, WaitOptions wait = {});

  /// Copies `payload` in as one record. ok, full, too_large, or corrupt (the consumer published an
  /// impossible head). Never blocks, never makes a syscall unless a consumer sleeps.
  [[nodiscard]] Status try_write(std::span<const std::byte> payload) noexcept {
    return detail::fill_and_commit(*this, try_reserve(payload.size()), payload);
  }

  /// Like try_write, but waits (spin, then futex) up to `timeout` for space. Extra outcomes:
  /// timed_out; no_consumer (full and no live consumer attached); peer_dead (the consumer died;
  /// its slot was reclaimed).
  [[nodiscard]] Status write(std::span<const std::byte> payload, std::chrono::nanoseconds timeout) {
    return detail::fill_and_commit(*this, reserve(payload.size(), timeout), payload);
  }

  /// Reserves room for a record of up to `n` bytes and returns the writable payload area (16-byte
  /// aligned) in the ring. Follow with commit(used <= n) or abort(). Nothing is visible to the
  /// consumer until commit.
  [[nodiscard]] Result<std::span<std::byte>> try_reserve(std::size_t n) noexcept {
    if (reserved_ != kNone) return Status::invalid_state;
    if (n > max_record_) {
      self_.count(layout::too_large);
      return Status::too_large;
    }
    const std::uint64_t frame = layout::frame_size(n);
    std::uint64_t offset = tail_ & mask_;
    const std::uint64_t to_end = capacity_ - offset;
    const std::uint64_t pad = frame > to_end ? to_end : 0;
    // +header: the next record's frame word is zeroed at commit, so it must be free as well.
    const std::uint64_t need = pad + frame + layout::kRecordHeaderSize;
    if (tail_ + need - head_cache_ > capacity_) {
      Status s = refresh_head();
      if (s != Status::ok) return s;
      if (tail_ + need - head_cache_ > capacity_) return Status::full;
    }
    if (pad != 0) {
      publish_padding(offset, to_end);
      offset = 0;
    }
    reserved_ = n;
    return std::span<std::byte>(data_ + offset + layout::kRecordHeaderSize, n);
  }

  /// try_reserve, waiting up to `timeout` for space (see write for the extra outcomes).
  [[nodiscard]] Result<std::span<std::byte>> reserve(std::size_t n, std::chrono::nanoseconds timeout);

  /// Publishes the reserved record with `used` bytes of payload (used <= the reserved size).
  /// Returns invalid_state without a reservation or with used too large.
  Status commit(std::size_t used) noexcept {
    if (reserved_ == kNone || used > reserved_) return Status::invalid_state;
    const std::uint64_t offset = tail_ & mask_;
    const std::uint64_t next = tail_ + layout::frame_size(used);
    // The next frame word is zeroed before the tail that names it is published (release), so a
    // reader that jumps to the tail (skip_to_tail) never finds last lap's bytes there.
    detail::header_at(data_, next & mask_).frame.store(0, std::memory_order_relaxed);
    ctrl_->producer.tail.store(next, std::memory_order_release);
    // SYNC POINT WRITE: publishes payload, tail and the zeroed next slot; pairs with the
    // consumer's acquire load.
    detail::header_at(data_, offset)
        .frame.store(layout::make_frame(layout::RecordType::data, used), std::memory_order_release);
    tail_ = next;
    reserved_ = kNone;
    ++records_;
    bytes_ += used;
    if constexpr (kHotCounters) {  // own line, plain stores: no read-modify-write, no sharing
      self_.slot().counter[layout::records_written].store(records_, std::memory_order_relaxed);
      self_.slot().counter[layout::bytes_written].store(bytes_, std::memory_order_relaxed);
    }
    // Dekker partner of the consumer's waiters.fetch_add + sleeper_fence. Relaxed is enough after
    // the waker fence: the fence pair orders it after the frame store for any sleeper.
    wait::waker_fence(fast_wake_);
    if (ctrl_->data.waiters.load(std::memory_order_relaxed) != 0) detail::wake_all(ctrl_->data, self_);
    return Status::ok;
  }

  /// Drops the reservation. Nothing becomes visible to the consumer.
  void abort() noexcept { reserved_ = kNone; }

  /// Position just past the last committed record.
  [[nodiscard]] std::uint64_t position() const noexcept { return tail_; }
  [[nodiscard]] std::uint64_t max_record_size() const noexcept { return max_record_; }
  [[nodiscard]] const Ring& ring() const noexcept { return ring_; }
  /// True when this writer took the role over from a producer that died.
  [[nodiscard]] bool took_over() const noexcept { return self_.took_over(); }

 private:
  static constexpr std::uint64_t kNone = ~std::uint64_t{0};

  // Reads the consumer's head. Untrusted: a head behind tail-capacity, ahead of tail, or
  // misaligned is reported as corrupt rather than used.
  Status refresh_head() noexcept {
    // SYNC POINT READ: pairs with the consumer's head store; after it the space is free.
    const std::uint64_t h = ctrl_->consumer.head.load(std::memory_order_acquire);
    if (h > tail_ || tail_ - h > capacity_ - layout::kRecordHeaderSize ||
        (h & (layout::kRecordAlign - 1)) != 0) {
      self_.count(layout::corrupt_records);
      return Status::corrupt;
    }
    head_cache_ = h;
    return Status::ok;
  }

  void publish_padding(std::uint64_t offset, std::uint64_t to_end) noexcept {
    const std::uint64_t next = tail_ + to_end;
    detail::header_at(data_, 0).frame.store(0, std::memory_order_relaxed);
    ctrl_->producer.tail.store(next, std::memory_order_release);  // see commit
    // SYNC POINT WRITE (padding): pairs with the consumer's acquire load of this frame word.
    detail::header_at(data_, offset)
        .frame.store(layout::make_frame(layout::RecordType::padding,
                                        to_end - layout::kRecordHeaderSize),
                     std::memory_order_release);
    tail_ = next;
  }

  Ring ring_;
  Attachment self_;
  WaitOptions wait_;
  layout::Control* ctrl_;
  std::byte* data_;
  std::uint64_t capacity_;
  std::uint64_t mask_;
  std::uint64_t max_record_;
  std::uint64_t tail_ = 0;
  std::uint64_t head_cache_ = 0;
  std::uint64_t reserved_ = kNone;
  std::uint64_t records_ = 0;
  std::uint64_t bytes_ = 0;
  bool fast_wake_ = wait::register_waker();
};

/// The consumer side of an spsc ring. Records are read in place (read-only mapping) and stay valid
/// until released. Not thread-safe: \pre every method is called from one thread at a time.
class Reader {
 public:
  /// Attaches as the ring's consumer, resuming at the published head.
  /// \throws Error(wrong_mode), Error(role_taken), Error(corrupt_state) as for Writer.
  explicit Reader(Ring ring, WaitOptions wait = {});

  /// The next committed record, without releasing it (calling again returns the same record).
  /// empty: nothing committed. corrupt: the length slot or positions at the read position are
  /// impossible; nothing is read and the reader stays put (see skip_to_tail).
  [[nodiscard]] Result<RecordView> try_read() noexcept {
    if (held_) return RecordView{held_view_, head_};
    return next();
  }

  /// try_read, waiting (spin, then futex) up to `timeout` for a record. Extra outcomes: timed_out;
  /// peer_dead (the producer died and the ring is empty; its slot was reclaimed).
  [[nodiscard]] Result<RecordView> read(std::chrono::nanoseconds timeout);

  /// Releases the record returned by try_read/read, making its space free for the producer.
  void release() noexcept {
    if (!held_) return;
    consume_held();
    publish_head();
  }

  /// Calls `on_record(std::span<const std::byte>)` for up to `max` committed records, releasing
  /// each after the call, and publishes the head once at the end (one store for the whole batch).
  /// Returns the number of records delivered. Stops early at empty or corrupt (last_status()).
  template <class F>
  std::size_t poll(F&& on_record, std::size_t max) {
    std::size_t n = 0;
    if (held_) {
      on_record(held_view_);
      consume_held();
      ++n;
    }
    while (n < max) {
      auto r = next();
      if (!r) break;
      on_record(r->bytes);
      consume_held();
      ++n;
    }
    if (n != 0) publish_head();
    return n;
  }

  /// Status of the last read attempt that found no record (empty or corrupt).
  [[nodiscard]] Status last_status() const noexcept { return last_status_; }

  /// Recovery after `corrupt`: drops everything up to the producer's published tail (validated),
  /// and returns the number of bytes skipped. The stream continues with the next record the
  /// producer commits. Records in the skipped range are lost (counted as corrupt).
  std::uint64_t skip_to_tail() noexcept;

  /// Position of the next record to read.
  [[nodiscard]] std::uint64_t position() const noexcept { return head_; }
  [[nodiscard]] std::uint64_t max_record_size() const noexcept { return max_record_; }
  [[nodiscard]] const Ring& ring() const noexcept { return ring_; }
  [[nodiscard]] const Attachment& attachment() const noexcept { return self_; }

 private:
  Result<RecordView> corrupt() noexcept {
    if (corrupt_at_ != head_) {  // count each bad position once, however often it is polled
      corrupt_at_ = head_;
      self_.count(layout::corrupt_records);
    }
    last_status_ = Status::corrupt;
    return Status::corrupt;
  }

  Result<RecordView> next() noexcept {
    for (int hop = 0; hop < 2; ++hop) {
      const std::uint64_t offset = head_ & mask_;
      // SYNC POINT READ: pairs with the producer's frame store; the payload is visible after it.
      const std::uint64_t w = detail::header_at(data_, offset).frame.load(std::memory_order_acquire);
      if (w == 0) {
        last_status_ = Status::empty;
        return Status::empty;
      }
      const std::uint64_t to_end = capacity_ - offset;
      const std::uint64_t len = layout::frame_length(w);
      if (layout::frame_flags(w) != 0) return corrupt();
      switch (layout::frame_type(w)) {
        case layout::RecordType::data: {
          if (len > max_record_) return corrupt();
          const std::uint64_t frame = layout::frame_size(len);
          if (frame > to_end) return corrupt();  // would run past the end of the mapping
          held_view_ = std::span<const std::byte>(data_ + offset + layout::kRecordHeaderSize, len);
          held_frame_ = frame;
          held_ = true;
          return RecordView{held_view_, head_};
        }
        case layout::RecordType::padding:
          if (len + layout::kRecordHeaderSize != to_end) return corrupt();
          head_ += to_end;
          // Publish at once: the producer may be waiting for exactly these bytes.
          publish_head();
          continue;
        default:
          return corrupt();
      }
    }
    // Two paddings in a row cannot happen: the second would start at offset 0 and span the ring.
    return corrupt();
  }

  void consume_held() noexcept {
    head_ += held_frame_;
    ++records_;
    bytes_ += held_view_.size();
    held_ = false;
  }

  void publish_head() noexcept {
    if constexpr (kHotCounters) {
      self_.slot().counter[layout::records_read].store(records_, std::memory_order_relaxed);
      self_.slot().counter[layout::bytes_read].store(bytes_, std::memory_order_relaxed);
    }
    // SYNC POINT WRITE: frees the space; pairs with the producer's acquire load of head.
    ctrl_->consumer.head.store(head_, std::memory_order_release);
    // Dekker half of the producer's sleep handshake (see Writer::commit).
    wait::waker_fence(fast_wake_);
    if (ctrl_->space.waiters.load(std::memory_order_relaxed) != 0) detail::wake_all(ctrl_->space, self_);
  }

  Ring ring_;
  Attachment self_;
  WaitOptions wait_;
  layout::Control* ctrl_;
  const std::byte* data_;
  std::uint64_t capacity_;
  std::uint64_t mask_;
  std::uint64_t max_record_;
  std::uint64_t head_ = 0;
  std::uint64_t held_frame_ = 0;
  std::span<const std::byte> held_view_;
  bool held_ = false;
  Status last_status_ = Status::empty;
  std::uint64_t corrupt_at_ = ~std::uint64_t{0};
  std::uint64_t records_ = 0;
  std::uint64_t bytes_ = 0;
  bool fast_wake_ = wait::register_waker();
};

}  // namespace flatring
