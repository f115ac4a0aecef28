#include "flatring/ring.hpp"

#include "mp_wait.hpp"

#include <string>

namespace flatring {
namespace {

void require_mode(const Ring& ring, const char* who) { mp_detail::require_mode(ring, Mode::spsc, who); }

using mp_detail::corrupt_state;

// Puts the caller to sleep on `line` until woken, `ready()`, `deadline`, or one `slice`. The
// sleeper's half of the Dekker handshake: waiters.fetch_add, sleeper_fence (membarrier), read the
// futex word, then re-check the condition; a wake between the re-check and FUTEX_WAIT changes the
// word, so FUTEX_WAIT returns at once.
template <class Ready>
void sleep_once(layout::WaitLine& line, const Attachment& self, Ready&& ready,
                detail::Clock::time_point deadline, std::chrono::nanoseconds slice) {
  line.waiters.fetch_add(1, std::memory_order_seq_cst);
  // Without membarrier a waker on the light fence could miss us: bound the sleep instead.
  if (!wait::sleeper_fence()) slice = std::min<std::chrono::nanoseconds>(slice, std::chrono::milliseconds(1));
  // Acquire: pairs with the waker's futex.fetch_add (release), which follows its progress.
  const std::uint32_t seen = line.futex.load(std::memory_order_acquire);
  if (!ready()) {
    const auto now = detail::Clock::now();
    if (now < deadline) {
      self.count(layout::futex_sleeps);
      const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now);
      (void)wait::futex_wait(line.futex, seen, std::min(left, slice));
    }
  }
  // Relaxed: the count is only a hint for wakers, and a stale non-zero costs one spare wake.
  line.waiters.fetch_sub(1, std::memory_order_relaxed);
}

// The blocking loop shared by Writer::reserve and Reader::read. `attempt()` is the non-blocking
// call (its result's status is `again_status` while there is nothing to do); `changed()` is a
// cheap test that a retry may succeed. Peers are looked at once per liveness interval, and the
// deadline is checked on every round, so a peer that keeps toggling shared words cannot keep us
// past the timeout.
// A lost segment (see Ring::lost) reads as empty, full or corrupt forever: say why instead.
template <class R>
R unless_lost(R r, const Attachment& self) noexcept {
  return (!r && self.ring().lost()) ? R(Status::segment_lost) : r;
}

template <class Attempt, class Changed, class OnInterval>
auto block(Attempt&& attempt, Changed&& changed, OnInterval&& on_interval, Status again_status,
           layout::WaitLine& line, const Attachment& self, const WaitOptions& wait,
           std::chrono::nanoseconds timeout) -> decltype(attempt()) {
  const auto deadline = detail::deadline_after(timeout);
  auto next_check = detail::deadline_after(wait.liveness_interval);
  for (;;) {
    if (detail::spin_until(changed, wait.spin)) {
      auto r = unless_lost(attempt(), self);
      if (r.status() != again_status) return r;
    }
    sleep_once(line, self, changed, deadline, wait.liveness_interval);
    auto r = unless_lost(attempt(), self);
    if (r.status() != again_status) return r;
    const auto now = detail::Clock::now();
    if (now >= deadline) return Status::timed_out;
    if (now >= next_check) {
      next_check = detail::deadline_after(wait.liveness_interval);
      // The census reads peer slots: in a lost segment they are zeros ("nobody there").
      if (Status s = on_interval(); s != Status::ok) {
        return self.ring().lost() ? Status::segment_lost : s;
      }
    }
  }
}

}  // namespace

// ---------------------------------------------------------------- Writer

Writer::Writer(Ring ring, WaitOptions wait)
    : ring_((require_mode(ring, "Writer"), ring)),
      self_(ring_, layout::Role::producer, /*exclusive=*/true),
      wait_(wait),
      ctrl_(&ring_.control()),
      data_(ring_.writable_data()),
      capacity_(ring_.info().capacity),
      mask_(capacity_ - 1),
      max_record_(ring_.info().max_record_size) {
  // Recover the true tail. The published tail is stored before each frame word, so a producer
  // that died mid-commit may have published a tail past a record it never committed. Walk the
  // committed frames from the consumer's head instead: the first zero frame word (or the published
  // tail) is where writing resumes. Every value here is untrusted and checked.
  const std::uint64_t head = ctrl_->consumer.head.load(std::memory_order_acquire);
  const std::uint64_t published = ctrl_->producer.tail.load(std::memory_order_acquire);
  // An honest ring never holds more than capacity - 16 bytes: the next frame word stays free.
  if ((head | published) & (layout::kRecordAlign - 1) || published < head ||
      published - head > capacity_ - layout::kRecordHeaderSize) {
    corrupt_state(ring_, "impossible positions: head " + std::to_string(head) + ", tail " +
                             std::to_string(published));
  }
  std::uint64_t pos = head;
  while (pos < published) {
    const std::uint64_t offset = pos & mask_;
    const std::uint64_t w = detail::header_at(data_, offset).frame.load(std::memory_order_acquire);
    if (w == 0) break;
    const std::uint64_t to_end = capacity_ - offset;
    const std::uint64_t len = layout::frame_length(w);
    std::uint64_t frame = 0;
    if (layout::frame_type(w) == layout::RecordType::data && len <= max_record_ &&
        layout::frame_flags(w) == 0) {
      frame = layout::frame_size(len);
    } else if (layout::frame_type(w) == layout::RecordType::padding &&
               len + layout::kRecordHeaderSize == to_end) {
      frame = to_end;
    }
    if (frame == 0 || frame > to_end || frame > published - pos) {  // no overflow near 2^64
      corrupt_state(ring_, "impossible record at position " + std::to_string(pos));
    }
    pos += frame;
  }
  tail_ = pos;
  head_cache_ = head;
  // Only the producer sleeps on `space`: a count left by a producer that died asleep would make
  // every release pay for a futex wake.
  if (self_.took_over()) ctrl_->space.waiters.store(0, std::memory_order_relaxed);
  // Re-establish the invariant that the frame word at the tail reads "not yet".
  detail::header_at(data_, tail_ & mask_).frame.store(0, std::memory_order_relaxed);
  ctrl_->producer.tail.store(tail_, std::memory_order_release);
}

Result<std::span<std::byte>> Writer::reserve(std::size_t n, std::chrono::nanoseconds timeout) {
  auto r = unless_lost(try_reserve(n), self_);
  if (r.status() != Status::full) return r;
  self_.count(layout::full_waits);
  // try_reserve just reloaded head_cache_ (it only reports full after a reload), so any other
  // head means the consumer released something; try_reserve validates it before use.
  auto head_moved = [&] {
    // Acquire: pairs with the consumer's release store of head.
    return ctrl_->consumer.head.load(std::memory_order_acquire) != head_cache_;
  };
  auto look_at_consumers = [&] {  // is anyone there to make room?
    const PeerCensus c = census(ring_, layout::Role::consumer);
    if (c.dead != 0) {
      ring_.reap_dead_peers();
      if (c.alive == 0) return Status::peer_dead;
    }
    return c.alive == 0 ? Status::no_consumer : Status::ok;
  };
  return block([&] { return try_reserve(n); }, head_moved, look_at_consumers, Status::full,
               ctrl_->space, self_, wait_, timeout);
}

// ---------------------------------------------------------------- Reader

Reader::Reader(Ring ring, WaitOptions wait)
    : ring_((require_mode(ring, "Reader"), ring)),
      self_(ring_, layout::Role::consumer, /*exclusive=*/true),
      wait_(wait),
      ctrl_(&ring_.control()),
      data_(ring_.data()),
      capacity_(ring_.info().capacity),
      mask_(capacity_ - 1),
      max_record_(ring_.info().max_record_size) {
  const std::uint64_t head = ctrl_->consumer.head.load(std::memory_order_acquire);
  const std::uint64_t tail = ctrl_->producer.tail.load(std::memory_order_acquire);
  if ((head | tail) & (layout::kRecordAlign - 1) || tail < head ||
      tail - head > capacity_ - layout::kRecordHeaderSize) {
    corrupt_state(ring_, "impossible positions: head " + std::to_string(head) + ", tail " +
                             std::to_string(tail));
  }
  head_ = head;
  // Only the consumer sleeps on `data` (see the Writer constructor).
  if (self_.took_over()) ctrl_->data.waiters.store(0, std::memory_order_relaxed);
}

Result<RecordView> Reader::read(std::chrono::nanoseconds timeout) {
  auto r = unless_lost(try_read(), self_);
  if (r.status() != Status::empty) return r;
  self_.count(layout::empty_waits);
  auto frame_present = [&] {
    // Acquire: pairs with the producer's release store of the frame word.
    return detail::header_at(data_, head_ & mask_).frame.load(std::memory_order_acquire) != 0;
  };
  auto look_at_producers = [&] {
    const PeerCensus c = census(ring_, layout::Role::producer);
    if (c.dead != 0) {
      ring_.reap_dead_peers();
      if (c.alive == 0) return Status::peer_dead;
    }
    return Status::ok;  // no producer yet, or a live one: keep waiting
  };
  return block([&] { return try_read(); }, frame_present, look_at_producers, Status::empty,
               ctrl_->data, self_, wait_, timeout);
}

std::uint64_t Reader::skip_to_tail() noexcept {
  const std::uint64_t t = ctrl_->producer.tail.load(std::memory_order_acquire);
  // Acquire: pairs with the producer's release store of tail, which follows the zeroing of the
  // frame word at t, so the reader then sees "not yet" there, not last lap's bytes.
  if (t < head_ || t - head_ > capacity_ - layout::kRecordHeaderSize ||
      (t & (layout::kRecordAlign - 1)) != 0) {
    return 0;
  }
  const std::uint64_t skipped = t - head_;
  held_ = false;
  head_ = t;
  publish_head();
  return skipped;
}

}  // namespace flatring
