#include "flatring/mpsc.hpp"

#include <algorithm>
#include <string>

#include "mp_wait.hpp"

namespace flatring {

using mp_detail::Slept;

// ---------------------------------------------------------------- MpWriter

MpWriter::MpWriter(Ring ring, WaitOptions wait)
    : ring_((mp_detail::require_mode(ring, ring.info().mode == Mode::mpmc ? Mode::mpmc : Mode::mpsc,
                                     "MpWriter"),
             ring)),
      self_(ring_, layout::Role::producer, /*exclusive=*/false),
      wait_(wait),
      ctrl_(&ring_.control()),
      data_(ring_.writable_data()),
      capacity_(ring_.info().capacity),
      mask_(capacity_ - 1),
      max_record_(ring_.info().max_record_size) {
  // No claim yet: a consumer stuck at position 0 must not take us for its owner.
  self_.slot().cursor.store(detail::kNoClaim, std::memory_order_relaxed);
  std::uint64_t t = 0;
  Status s = Status::empty;
  while (s == Status::empty) {  // empty: the tail moved on between the two loads
    t = ctrl_->producer.tail.load(std::memory_order_acquire);
    s = refresh_head(t);
  }
  if (s != Status::ok) {
    mp_detail::corrupt_state(ring_, "impossible positions: head " +
                                        std::to_string(ctrl_->consumer.head.load()) + ", tail " +
                                        std::to_string(t));
  }
}

void MpWriter::finish_if_stalled(std::uint64_t w, std::uint64_t extent) noexcept {
  // A recoverer that found us dead would have bumped the takeover count: then it is not ours.
  if (layout::frame_type(w) != layout::RecordType::abandoned || (w & layout::kStalledFlag) == 0 ||
      (w & layout::kTakeoverMask) != 0 ||
      layout::frame_length(w) + layout::kRecordHeaderSize != extent) {
    return;
  }
  const std::uint64_t offset = claim_ & mask_;
  detail::ring_zero(data_ + offset + 8, extent - 8);
  auto& h = detail::header_at(data_, offset);
  detail::store_aux(h, claim_);  // a done record names its position (see MpmcReader::finish)
  // SYNC POINT WRITE: as a consumer's finish (mpmc.cpp): publishes the zeroes to the freer; seq_cst
  // for the Dekker with a freer's head CAS.
  h.frame.store(layout::make_frame(layout::RecordType::done, extent), std::memory_order_seq_cst);
  mp_detail::free_done_records(*ctrl_, data_, capacity_, self_);
}

Result<std::span<std::byte>> MpWriter::reserve(std::size_t n, std::chrono::nanoseconds timeout) {
  auto r = try_reserve(n);
  if (r.status() != Status::full) return r;
  const auto deadline = detail::deadline_after(timeout);
  self_.count(layout::full_waits);
  const std::uint64_t frame = layout::frame_size(n);
  // The claim position moves with the other producers: re-derive the need from the current tail.
  auto has_room = [&](std::memory_order order) {
    const std::uint64_t t = ctrl_->producer.tail.load(std::memory_order_relaxed);
    const std::uint64_t to_end = capacity_ - (t & mask_);
    const std::uint64_t need = frame > to_end ? to_end + frame : frame;
    return t + need - ctrl_->consumer.head.load(order) <= capacity_;
  };
  for (;;) {
    if (detail::spin_until([&] { return has_room(std::memory_order_acquire); }, wait_.spin)) {
      r = try_reserve(n);
      if (r.status() != Status::full) return r;
    }
    const Slept s = mp_detail::sleep_until(
        ctrl_->space, self_, [&] { return has_room(std::memory_order_seq_cst); }, deadline,
        wait_.liveness_interval);
    r = try_reserve(n);
    if (r.status() != Status::full) return r;
    if (s == Slept::timed_out) return Status::timed_out;
    if (s == Slept::check_peers) {
      const PeerCensus c = census(ring_, layout::Role::consumer);
      if (c.dead != 0) {
        ring_.reap_dead_peers();
        if (c.alive == 0) return Status::peer_dead;
      }
      if (c.alive == 0) return Status::no_consumer;
    }
  }
}

// ---------------------------------------------------------------- MpscReader

MpscReader::MpscReader(Ring ring, WaitOptions wait)
    : ReaderCore((mp_detail::require_mode(ring, Mode::mpsc, "MpscReader"), ring), /*exclusive=*/true,
                 wait) {
  const std::uint64_t head = ctrl_->consumer.head.load(std::memory_order_acquire);
  const std::uint64_t tail = ctrl_->producer.tail.load(std::memory_order_acquire);
  if ((head | tail) & (layout::kRecordAlign - 1) || tail < head || tail - head > capacity_) {
    mp_detail::corrupt_state(ring_, "impossible positions: head " + std::to_string(head) +
                                        ", tail " + std::to_string(tail));
  }
  head_ = head;
  tail_cache_ = tail;
}

Status MpscReader::unblock() noexcept {
  if (held_) return Status::ok;
  const std::uint64_t offset = head_ & mask_;
  auto& h = detail::header_at(data_, offset);
  std::uint64_t w = h.frame.load(std::memory_order_acquire);
  if (w != 0 && layout::frame_type(w) != layout::RecordType::claimed) return Status::ok;
  // SYNC POINT READ: pairs with the tail CASes (one release sequence): the owner's cursor store,
  // made before its CAS, is visible once we see a tail past its claim.
  const std::uint64_t t = ctrl_->producer.tail.load(std::memory_order_acquire);
  if (t < head_ || t - head_ > capacity_ || (t & (layout::kRecordAlign - 1)) != 0) {
    return corrupt().status();
  }
  if (t == head_) return Status::empty;  // nothing claimed

  const mp_detail::ProducerCursors producers = mp_detail::producer_cursors(*ctrl_, head_);
  if (producers.owner_alive) return Status::empty;
  // The owner is dead. How far does its claim reach?
  const std::uint64_t extent = mp_detail::dead_claim_extent(
      data_, mask_, head_, w, std::min(t - head_, capacity_ - offset), max_record_, producers.others);
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

Result<RecordView> MpscReader::read(std::chrono::nanoseconds timeout) {
  return mp_detail::blocking_read(
      *this, ctrl_->data, self_, wait_, timeout,
      [&](std::memory_order order) {
        const std::uint64_t w = detail::header_at(data_, head_ & mask_).frame.load(order);
        return w != 0 && layout::frame_type(w) != layout::RecordType::claimed;
      },
      // A claim that does not become a record: is its producer dead? (At most twice per interval:
      // it makes syscalls, and read(0) in a loop must not make them on every call.)
      [&] { return recovery_due() ? unblock() : Status::empty; },
      [&] {
        return ctrl_->producer.tail.load(std::memory_order_acquire) == head_ && mp_detail::producer_gone(ring_);
      });
}

}  // namespace flatring
