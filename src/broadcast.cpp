#include "flatring/broadcast.hpp"

#include <algorithm>
#include <string>

#include "endpoint_impl.hpp"

namespace flatring::detail {

template class ProducerCore<BroadcastWriter>;
template class ConsumerCore<BroadcastReader, false>;

BroadcastWriter::BroadcastWriter(Ring ring, WaitOptions wait)
    : ProducerCore(std::move(ring), Mode::broadcast, "Writer", wait) {
  // Consumers read only below the published tail, so it is the exact resume point even after a
  // producer died mid-commit (a frame it stored without the tail is simply never seen).
  // Acquire: pairs with the previous producer's tail store.
  const std::uint64_t t = ctrl_->producer.tail.load(std::memory_order_acquire);
  if ((t & kAlignMask) != 0) throw_corrupt_state(ring_, "impossible tail " + std::to_string(t));
  tail_ = t;
  // seq_cst: a consumer joining after this reads a tail >= ours (the join argument's t0).
  ctrl_->producer.tail.store(tail_, std::memory_order_seq_cst);
  refresh_min();
}

void BroadcastWriter::refresh_min() noexcept {
  std::uint64_t m = tail_;
  for (auto& s : ctrl_->peers) {
    // Acquire: pairs with Attachment's role store (release); a slot that is not a consumer's
    // holds nothing back.
    if (s.role.load(std::memory_order_acquire) !=
        static_cast<std::uint32_t>(layout::Role::consumer)) {
      continue;
    }
    // SYNC POINT READ: pairs with the consumer's cursor store (seq_cst): the bytes below it are
    // no longer read. seq_cst: the join argument and the Dekker half of our sleep.
    std::uint64_t c = s.cursor.load(std::memory_order_seq_cst);
    if (c == kJoining) {
      // Resolve the join at our own tail: everything from here on is still unwritten for it.
      // On failure the consumer resolved it first and `c` holds its choice. seq_cst: the join
      // argument (docs/design-mp.md).
      if (s.cursor.compare_exchange_strong(c, tail_, std::memory_order_seq_cst)) c = tail_;
    }
    // Untrusted and possibly not joined yet (a fresh slot reads 0): a cursor outside
    // [tail - capacity, tail] or misaligned cannot belong to a consumer that still reads here.
    if (c > tail_ || tail_ - c > capacity_ || (c & kAlignMask) != 0) continue;
    m = std::min(m, c);
  }
  min_cache_ = m;
}

BroadcastReader::BroadcastReader(Ring ring, WaitOptions wait)
    : ConsumerCore(std::move(ring), Mode::broadcast, "Reader", wait) {
  // The join protocol (broadcast.hpp): announce, read the tail, then claim it unless the producer
  // already chose for us.
  auto& cursor = self_.slot().cursor;
  // SYNC POINT WRITE (J): seq_cst, ordered before our tail load in the single total order.
  cursor.store(kJoining, std::memory_order_seq_cst);
  // SYNC POINT READ: pairs with the producer's tail store (seq_cst).
  std::uint64_t start = ctrl_->producer.tail.load(std::memory_order_seq_cst);
  std::uint64_t expected = kJoining;
  // seq_cst on failure too: the producer's choice is its tail, published before its CAS.
  if (!cursor.compare_exchange_strong(expected, start, std::memory_order_seq_cst)) start = expected;
  // Acquire: pairs with the producer's tail store; only for the check below.
  const std::uint64_t t = ctrl_->producer.tail.load(std::memory_order_acquire);
  if ((start & kAlignMask) != 0 || start > t || t - start > capacity_) {
    throw_corrupt_state(ring_, "impossible join position " + std::to_string(start) + " (tail " +
                                   std::to_string(t) + ")");
  }
  head_ = start;
  joined_at_ = start;
  tail_cache_ = start;
}

}  // namespace flatring::detail
