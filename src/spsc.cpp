#include "flatring/spsc.hpp"

#include <string>

#include "endpoint_impl.hpp"

namespace flatring::detail {

template class ProducerCore<SpscWriter>;
template class ConsumerCore<SpscReader, false>;

namespace {
// The published head and tail, checked: an honest ring never holds more than capacity - 16 bytes
// (the frame word after the last record stays free). Acquire, both: they pair with the previous
// consumer's head store and the previous producer's tail store.
struct Positions {
  std::uint64_t head, tail;
};
Positions checked_positions(const Ring& ring) {
  const auto& c = ring.control();
  const std::uint64_t head = c.consumer.head.load(std::memory_order_acquire);
  const std::uint64_t tail = c.producer.tail.load(std::memory_order_acquire);
  const std::uint64_t capacity = ring.info().capacity;
  if ((head | tail) & kAlignMask || tail < head ||
      tail - head > capacity - layout::kRecordHeaderSize) {
    throw_corrupt_state(ring, "impossible positions: head " + std::to_string(head) + ", tail " +
                                  std::to_string(tail));
  }
  return {head, tail};
}
}  // namespace

SpscWriter::SpscWriter(Ring ring, WaitOptions wait)
    : ProducerCore(std::move(ring), Mode::spsc, "Writer", wait) {
  // Recover the true tail. The published tail is stored before each frame word, so a producer
  // that died mid-commit may have published a tail past a record it never committed. Walk the
  // committed frames from the consumer's head instead: the first zero frame word (or the published
  // tail) is where writing resumes. Every value here is untrusted and checked.
  const auto [head, published] = checked_positions(ring_);
  std::uint64_t pos = head;
  while (pos < published) {
    const std::uint64_t offset = pos & mask_;
    const auto& h = header_at(data_, offset);
    // Acquire: pairs with the previous producer's frame stores.
    const Decoded d = decode_frame(h, h.frame.load(std::memory_order_acquire), capacity_ - offset,
                                   max_record_, kSpscFrames);
    if (d.kind == Frame::empty) break;
    if ((d.kind != Frame::record && d.kind != Frame::skip) || d.extent > published - pos) {
      throw_corrupt_state(ring_, "impossible record at position " + std::to_string(pos));
    }
    pos += d.extent;
  }
  tail_ = pos;
  head_cache_ = head;
  // Only the producer sleeps on `space`: a count left by a producer that died asleep would make
  // every release pay for a futex wake.
  if (self_.took_over()) {
    ctrl_->space.waiters.store(0, std::memory_order_relaxed);
    ctrl_->space.sleepers.store(0, std::memory_order_relaxed);
  }
  // Re-establish the invariant that the frame word at the tail reads "not yet".
  header_at(data_, tail_ & mask_).frame.store(0, std::memory_order_relaxed);
  // Release: a consumer that loads this tail sees the zeroed frame word at it.
  ctrl_->producer.tail.store(tail_, std::memory_order_release);
}

SpscReader::SpscReader(Ring ring, WaitOptions wait)
    : ConsumerCore(std::move(ring), Mode::spsc, "Reader", wait) {
  head_ = checked_positions(ring_).head;
  // Only the consumer sleeps on `data` (see the SpscWriter constructor).
  if (self_.took_over()) {
    ctrl_->data.waiters.store(0, std::memory_order_relaxed);
    ctrl_->data.sleepers.store(0, std::memory_order_relaxed);
  }
}

Status SpscReader::recover_step() noexcept {
  return skip_to_tail(capacity_ - layout::kRecordHeaderSize);
}

}  // namespace flatring::detail
