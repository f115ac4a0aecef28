#include "flatring/mpsc.hpp"

#include <algorithm>
#include <string>

#include "endpoint_impl.hpp"
#include "mp_recovery.hpp"
#include "test_hooks.hpp"

namespace flatring::detail {

template class ProducerCore<MpWriterCore>;
template class ConsumerCore<MpscReader, true>;

// ---------------------------------------------------------------- the multi-producer policy

MpWriterCore::MpWriterCore(Ring ring, Mode mode, WaitOptions wait)
    : ProducerCore(std::move(ring), mode, "Writer", wait) {
  // No claim yet: a consumer stuck at position 0 must not take us for its owner. Relaxed: no
  // claim of ours exists that a recoverer could confuse it with.
  self_.slot().cursor.store(kNoClaim, std::memory_order_relaxed);
  std::uint64_t t = 0;
  Status s = Status::empty;
  while (s == Status::empty) {  // empty: the tail moved on between the two loads
    // Acquire: pairs with the other producers' tail CASes.
    t = ctrl_->producer.tail.load(std::memory_order_acquire);
    s = refresh_head(t);
  }
  if (s != Status::ok) {
    throw_corrupt_state(ring_, "impossible positions: head " +
                                   std::to_string(ctrl_->consumer.head.load()) + ", tail " +
                                   std::to_string(t));
  }
  tail_ = t;
}

void MpWriterCore::copy_in(std::byte* to, std::span<const std::byte> from) noexcept {
  const std::size_t half = from.size() / 2;
  ring_copy(to, from.data(), half);
  FLATRING_TEST_HOOK(mid_copy);
  ring_copy(to + half, from.data() + half, from.size() - half);
}

Result<std::byte*> MpWriterCore::claim(std::uint64_t n) noexcept {
  const std::uint64_t frame = layout::frame_size(n);
  for (;;) {
    // Relaxed: a guess that the CAS below checks.
    std::uint64_t t = ctrl_->producer.tail.load(std::memory_order_relaxed);
    // Untrusted: a misaligned tail would put our header (and its 8-byte stores) off a record
    // boundary, at capacity - 1 even past the record area.
    if ((t & kAlignMask) != 0) {
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
      self_.slot().cursor.store(kNoClaim, std::memory_order_release);
      continue;
    }
    FLATRING_TEST_HOOK(after_claim);
    tail_ = t + extent;
    auto& h = header_at(data_, offset);
    if (extent != frame) {
      // The record does not fit before the end: this claim is padding, published at once.
      // SYNC POINT WRITE (padding): pairs with the consumer's acquire load; seq_cst for the
      // Dekker handshake as in commit.
      h.frame.store(
          layout::make_frame(layout::RecordType::padding, to_end - layout::kRecordHeaderSize),
          std::memory_order_seq_cst);
      wake<kHandshake>(ctrl_->data, self_, false, kWakeCount, data_mark_);
      continue;
    }
    // Relaxed: only read by the consumer after the commit (acquire) or after this process died
    // (then every store it made is visible).
    store_aux(h, extent);
    h.frame.store(layout::make_frame(layout::RecordType::claimed, n), std::memory_order_relaxed);
    // Crash order: the header before any payload byte, so that a claim whose header is missing
    // really is untouched (recovery measures it by its zero bytes). Costs nothing on x86.
    std::atomic_thread_fence(std::memory_order_release);
    claim_ = t;
    return data_ + offset + layout::kRecordHeaderSize;
  }
}

// Reads the consumer's head into head_cache_. empty: the head is past `t`, which was stale
// (other producers claimed and the consumer consumed since we loaded it): reload the tail.
// Untrusted: ahead of the current tail, a lap behind `t`, or misaligned is corrupt.
Status MpWriterCore::refresh_head(std::uint64_t t) noexcept {
  // SYNC POINT READ: pairs with the consumer's head store; the space below head + capacity is
  // free and zeroed after it.
  const std::uint64_t h = ctrl_->consumer.head.load(std::memory_order_acquire);
  // Acquire: pairs with the other producers' tail CASes; only for the range check.
  if (h > t && h <= ctrl_->producer.tail.load(std::memory_order_acquire) && (h & kAlignMask) == 0) {
    head_cache_ = h;
    return Status::empty;
  }
  if (h > t || t - h > capacity_ || (h & kAlignMask) != 0) {
    self_.count(layout::corrupt_records);
    return Status::corrupt;
  }
  head_cache_ = h;
  return Status::ok;
}

void MpWriterCore::finish_if_stalled(std::uint64_t w, std::uint64_t extent) noexcept {
  // A recoverer that found us dead would have bumped the takeover count: then it is not ours.
  if (layout::frame_type(w) != layout::RecordType::abandoned || (w & layout::kStalledFlag) == 0 ||
      (w & layout::kTakeoverMask) != 0 ||
      layout::frame_length(w) + layout::kRecordHeaderSize != extent) {
    return;
  }
  const std::uint64_t offset = claim_ & mask_;
  ring_zero(data_ + offset + 8, extent - 8);
  auto& h = header_at(data_, offset);
  store_aux(h, claim_);  // a done record names its position (see MpmcReader::finish)
  // SYNC POINT WRITE: publishes the zeroes to the freer (as MpmcReader::finish); seq_cst for the
  // Dekker with a freer's head CAS (a consumer uses a release store and a fence per batch instead;
  // a stalled claim is finished once, so the store is the fence here).
  h.frame.store(layout::make_frame(layout::RecordType::done, extent), std::memory_order_seq_cst);
  if (free_done_records(*ctrl_, data_, capacity_)) {
    wake<Handshake::seq_cst>(ctrl_->space, self_, false, INT_MAX, space_mark_);
  }
}

// ---------------------------------------------------------------- the mpsc consumer

MpscReader::MpscReader(Ring ring, WaitOptions wait)
    : ConsumerCore(std::move(ring), Mode::mpsc, "Reader", wait) {
  // Acquire, both: pair with the previous consumer's head store and the producers' tail CASes.
  const std::uint64_t head = ctrl_->consumer.head.load(std::memory_order_acquire);
  const std::uint64_t tail = ctrl_->producer.tail.load(std::memory_order_acquire);
  if ((head | tail) & kAlignMask || tail < head || tail - head > capacity_) {
    throw_corrupt_state(ring_, "impossible positions: head " + std::to_string(head) + ", tail " +
                                   std::to_string(tail));
  }
  head_ = head;
  tail_cache_ = tail;
}

Status MpscReader::recover_step() noexcept {
  const std::uint64_t offset = head_ & mask_;
  auto& h = header_at(data_, offset);
  // Acquire: pairs with the producer's commit; a written frame needs no recovery. What it is,
  // next() decides (the one decoder): ok only for a record now held (try_read returns it), empty
  // after skips, corrupt for bytes nothing here can measure (say, a data frame whose aux word is
  // not a valid extent): not "ok", or a caller that retries on ok would spin on it.
  std::uint64_t w = h.frame.load(std::memory_order_acquire);
  if (w != 0 && layout::frame_type(w) != layout::RecordType::claimed) {
    const Result<RecordView> r = next();
    return r ? Status::ok : r.status();
  }
  // SYNC POINT READ: pairs with the tail CASes (one release sequence): the owner's cursor store,
  // made before its CAS, is visible once we see a tail past its claim.
  const std::uint64_t t = ctrl_->producer.tail.load(std::memory_order_acquire);
  if (t < head_ || t - head_ > capacity_ || (t & kAlignMask) != 0) return corrupt().status();
  if (t == head_) return Status::empty;  // nothing claimed

  const ProducerCursors producers = producer_cursors(*ctrl_, head_);
  if (producers.owner_alive) return Status::empty;
  // The owner is dead. How far does its claim reach?
  const std::uint64_t extent =
      dead_claim_extent(data_, mask_, head_, w, std::min(t - head_, capacity_ - offset),
                        max_record_, producers.others);
  if (extent == 0) return corrupt().status();
  // Fails if the owner committed or aborted after all (then it was not dead when we looked).
  if (!h.frame.compare_exchange_strong(
          w, layout::make_frame(layout::RecordType::abandoned, extent - layout::kRecordHeaderSize),
          std::memory_order_acq_rel, std::memory_order_acquire)) {
    return Status::empty;
  }
  step(extent);
  self_.count(layout::abandoned_records);
  publish();
  last_status_ = Status::abandoned;
  return Status::abandoned;
}

}  // namespace flatring::detail
