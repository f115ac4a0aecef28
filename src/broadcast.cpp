#include "flatring/broadcast.hpp"

#include <algorithm>
#include <string>

#include "mp_wait.hpp"

namespace flatring {

using mp_detail::Slept;

// ---------------------------------------------------------------- BroadcastWriter

BroadcastWriter::BroadcastWriter(Ring ring, WaitOptions wait)
    : ring_((mp_detail::require_mode(ring, Mode::broadcast, "BroadcastWriter"), ring)),
      self_(ring_, layout::Role::producer, /*exclusive=*/true),
      wait_(wait),
      ctrl_(&ring_.control()),
      data_(ring_.writable_data()),
      capacity_(ring_.info().capacity),
      mask_(capacity_ - 1),
      max_record_(ring_.info().max_record_size) {
  // Consumers read only below the published tail, so it is the exact resume point even after a
  // producer died mid-commit (a frame it stored without the tail is simply never seen).
  const std::uint64_t t = ctrl_->producer.tail.load(std::memory_order_acquire);
  if ((t & (layout::kRecordAlign - 1)) != 0) {
    mp_detail::corrupt_state(ring_, "impossible tail " + std::to_string(t));
  }
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
    if (s.role.load(std::memory_order_acquire) != static_cast<std::uint32_t>(layout::Role::consumer)) {
      continue;
    }
    // SYNC POINT READ: pairs with the consumer's cursor store (seq_cst): the bytes below it are
    // no longer read. seq_cst: the join argument and the Dekker half of our sleep.
    std::uint64_t c = s.cursor.load(std::memory_order_seq_cst);
    if (c == detail::kJoining) {
      // Resolve the join at our own tail: everything from here on is still unwritten for it.
      // On failure the consumer resolved it first and `c` holds its choice.
      if (s.cursor.compare_exchange_strong(c, tail_, std::memory_order_seq_cst)) c = tail_;
    }
    // Untrusted and possibly not joined yet (a fresh slot reads 0): a cursor outside
    // [tail - capacity, tail] or misaligned cannot belong to a consumer that still reads here.
    if (c > tail_ || tail_ - c > capacity_ || (c & (layout::kRecordAlign - 1)) != 0) continue;
    m = std::min(m, c);
  }
  min_cache_ = m;
}

Result<std::span<std::byte>> BroadcastWriter::reserve(std::size_t n, std::chrono::nanoseconds timeout) {
  auto r = try_reserve(n);
  if (r.status() != Status::full) return r;
  const auto deadline = detail::deadline_after(timeout);
  self_.count(layout::full_waits);
  const std::uint64_t need = space_needed(n);  // tail_ does not move while we wait
  auto has_room = [&] {
    refresh_min();  // its cursor loads are seq_cst: the sleeper's re-check of the handshake
    return tail_ + need - min_cache_ <= capacity_;
  };
  for (;;) {
    if (detail::spin_until(has_room, wait_.spin)) {
      r = try_reserve(n);
      if (r.status() != Status::full) return r;
    }
    const Slept s = mp_detail::sleep_until(ctrl_->space, self_, has_room, deadline, wait_.liveness_interval);
    r = try_reserve(n);
    if (r.status() != Status::full) return r;
    if (s == Slept::timed_out) return Status::timed_out;
    // A liveness interval passed without room: reclaim dead consumers so they stop holding us.
    if (s == Slept::check_peers && census(ring_, layout::Role::consumer).dead != 0) {
      ring_.reap_dead_peers();
    }
  }
}

// ---------------------------------------------------------------- BroadcastReader

BroadcastReader::BroadcastReader(Ring ring, WaitOptions wait)
    : ReaderCore((mp_detail::require_mode(ring, Mode::broadcast, "BroadcastReader"), ring),
                 /*exclusive=*/false, wait) {
  // The join protocol (broadcast.hpp): announce, read the tail, then claim it unless the producer
  // already chose for us.
  auto& cursor = self_.slot().cursor;
  cursor.store(detail::kJoining, std::memory_order_seq_cst);
  // SYNC POINT READ: pairs with the producer's tail store (seq_cst).
  std::uint64_t start = ctrl_->producer.tail.load(std::memory_order_seq_cst);
  std::uint64_t expected = detail::kJoining;
  // acq_rel on failure too (seq_cst): the producer's choice is its tail, published before.
  if (!cursor.compare_exchange_strong(expected, start, std::memory_order_seq_cst)) start = expected;
  const std::uint64_t t = ctrl_->producer.tail.load(std::memory_order_acquire);
  if ((start & (layout::kRecordAlign - 1)) != 0 || start > t || t - start > capacity_) {
    mp_detail::corrupt_state(ring_, "impossible join position " + std::to_string(start) +
                                        " (tail " + std::to_string(t) + ")");
  }
  head_ = start;
  joined_at_ = start;
  tail_cache_ = start;
}

Result<RecordView> BroadcastReader::read(std::chrono::nanoseconds timeout) {
  auto r = try_read();
  if (r.status() != Status::empty) return r;
  const auto deadline = detail::deadline_after(timeout);
  self_.count(layout::empty_waits);
  auto published = [&](std::memory_order order) {
    return ctrl_->producer.tail.load(order) != head_;
  };
  for (;;) {
    if (detail::spin_until([&] { return published(std::memory_order_relaxed); }, wait_.spin)) {
      r = try_read();
      if (r.status() != Status::empty) return r;
    }
    const Slept s = mp_detail::sleep_until(
        ctrl_->data, self_, [&] { return published(std::memory_order_seq_cst); }, deadline,
        wait_.liveness_interval);
    r = try_read();
    if (r.status() != Status::empty) return r;
    if (s == Slept::timed_out) return Status::timed_out;
    if (s == Slept::check_peers && mp_detail::producer_gone(ring_)) return Status::peer_dead;
  }
}

}  // namespace flatring
