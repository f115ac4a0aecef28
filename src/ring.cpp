#include "flatring/ring.hpp"

#include <string>

namespace flatring {
namespace {

void require_mode(const Ring& ring, const char* who) {
  if (ring.info().mode != Mode::spsc) {
    throw Error(Errc::wrong_mode, "flatring ring '" + ring.info().name + "': a " + who +
                                      " needs an spsc ring; this ring's mode is " +
                                      std::to_string(static_cast<unsigned>(ring.info().mode)));
  }
}

[[noreturn]] void corrupt_state(const Ring& ring, const std::string& what) {
  throw Error(Errc::corrupt_state, "flatring ring '" + ring.info().name + "': " + what);
}

enum class Slept { woken, timed_out, check_peers };

// Waits on `line` until `ready()` or the deadline. The sleeper's half of the Dekker handshake:
// waiters.fetch_add, then sleeper_fence (membarrier), then ready() re-checks the condition.
// check_peers: a liveness interval passed without a wake-up; the caller looks at its peers.
template <class Ready>
Slept sleep_until(layout::WaitLine& line, const Attachment& self, Ready&& ready,
                   detail::Clock::time_point deadline, std::chrono::nanoseconds slice) {
  line.waiters.fetch_add(1, std::memory_order_seq_cst);
  // Without membarrier a waker on the light fence could miss us: bound the sleep instead.
  if (!wait::sleeper_fence()) slice = std::min(slice, std::chrono::nanoseconds(std::chrono::milliseconds(1)));
  // Acquire: pairs with the waker's futex.fetch_add (release) that follows its progress.
  const std::uint32_t seen = line.futex.load(std::memory_order_acquire);
  Slept out = Slept::woken;
  if (!ready()) {
    const auto now = detail::Clock::now();
    if (now >= deadline) {
      out = Slept::timed_out;
    } else {
      auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now);
      self.count(layout::futex_sleeps);
      auto r = wait::futex_wait(line.futex, seen, std::min(left, slice));
      if (r == wait::WaitResult::timed_out) out = left <= slice ? Slept::timed_out : Slept::check_peers;
    }
  }
  line.waiters.fetch_sub(1, std::memory_order_relaxed);  // only a hint for wakers
  return out;
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
  if ((head | published) & (layout::kRecordAlign - 1) || published < head ||
      published - head > capacity_) {
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
    if (frame == 0 || frame > to_end || pos + frame > published) {
      corrupt_state(ring_, "impossible record at position " + std::to_string(pos));
    }
    pos += frame;
  }
  tail_ = pos;
  head_cache_ = head;
  // Re-establish the invariant that the frame word at the tail reads "not yet".
  detail::header_at(data_, tail_ & mask_).frame.store(0, std::memory_order_relaxed);
  ctrl_->producer.tail.store(tail_, std::memory_order_release);
}

Result<std::span<std::byte>> Writer::reserve(std::size_t n, std::chrono::nanoseconds timeout) {
  auto r = try_reserve(n);
  if (r.status() != Status::full) return r;
  const auto deadline = detail::deadline_after(timeout);
  self_.count(layout::full_waits);
  // Exactly try_reserve's test: tail_ does not move while we wait.
  const std::uint64_t frame = layout::frame_size(n);
  const std::uint64_t to_end = capacity_ - (tail_ & mask_);
  const std::uint64_t need = (frame > to_end ? to_end : 0) + frame + layout::kRecordHeaderSize;
  auto has_room = [&](std::memory_order order) {
    return tail_ + need - ctrl_->consumer.head.load(order) <= capacity_;
  };
  for (;;) {
    if (detail::spin_until([&] { return has_room(std::memory_order_acquire); }, wait_.spin)) {
      r = try_reserve(n);
      if (r.status() != Status::full) return r;
    }
    Slept s = sleep_until(ctrl_->space, self_, [&] { return has_room(std::memory_order_acquire); },
                           deadline, wait_.liveness_interval);
    r = try_reserve(n);
    if (r.status() != Status::full) return r;
    if (s == Slept::timed_out) return Status::timed_out;
    if (s == Slept::check_peers) {  // a liveness interval passed: is anyone there to make room?
      PeerCensus c = census(ring_, layout::Role::consumer);
      if (c.dead != 0) {
        ring_.reap_dead_peers();
        if (c.alive == 0) return Status::peer_dead;
      }
      if (c.alive == 0) return Status::no_consumer;
    }
  }
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
  if ((head | tail) & (layout::kRecordAlign - 1) || tail < head || tail - head > capacity_) {
    corrupt_state(ring_, "impossible positions: head " + std::to_string(head) + ", tail " +
                             std::to_string(tail));
  }
  head_ = head;
}

Result<RecordView> Reader::read(std::chrono::nanoseconds timeout) {
  auto r = try_read();
  if (r.status() != Status::empty) return r;
  const auto deadline = detail::deadline_after(timeout);
  self_.count(layout::empty_waits);
  auto frame_present = [&](std::memory_order order) {
    return detail::header_at(data_, head_ & mask_).frame.load(order) != 0;
  };
  for (;;) {
    if (detail::spin_until([&] { return frame_present(std::memory_order_relaxed); }, wait_.spin)) {
      r = try_read();
      if (r.status() != Status::empty) return r;
    }
    Slept s = sleep_until(ctrl_->data, self_, [&] { return frame_present(std::memory_order_acquire); },
                           deadline, wait_.liveness_interval);
    r = try_read();
    if (r.status() != Status::empty) return r;
    if (s == Slept::timed_out) return Status::timed_out;
    if (s == Slept::check_peers) {
      PeerCensus c = census(ring_, layout::Role::producer);
      if (c.dead != 0) {
        ring_.reap_dead_peers();
        if (c.alive == 0) return Status::peer_dead;
      }
    }
  }
}

std::uint64_t Reader::skip_to_tail() noexcept {
  const std::uint64_t t = ctrl_->producer.tail.load(std::memory_order_acquire);
  if (t < head_ || t - head_ > capacity_ || (t & (layout::kRecordAlign - 1)) != 0) return 0;
  const std::uint64_t skipped = t - head_;
  held_ = false;
  head_ = t;
  publish_head();
  return skipped;
}

}  // namespace flatring
