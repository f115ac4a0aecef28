#include "observer.hpp"

#include <atomic>
#include <cstring>
#include <deque>

#include <fmt/format.h>

#include "exit_codes.hpp"
#include "inspect.hpp"

namespace flatring::tool {

namespace {

Ring require_observable(Ring ring) {
  if (ring.info().mode != Mode::spsc && ring.info().mode != Mode::broadcast) {
    throw ToolError(Exit::unsupported,
                    fmt::format("ring '{}': observing a {} ring is not supported by this build "
                                "(tail --consume reads it as its consumer)",
                                ring.info().name, to_string(ring.info().mode)));
  }
  return ring;
}

const layout::RecordHeader& header_at(const std::byte* base, std::uint64_t offset) noexcept {
  return *reinterpret_cast<const layout::RecordHeader*>(base + offset);
}

bool aligned(std::uint64_t pos) noexcept { return (pos & (layout::kRecordAlign - 1)) == 0; }

}  // namespace

Observer::Observer(Ring ring)
    : ring_(require_observable(std::move(ring))),
      self_(ring_, layout::Role::observer, /*exclusive=*/false),
      ctrl_(&ring_.control()),
      data_(ring_.data()),
      capacity_(ring_.info().capacity),
      mask_(capacity_ - 1),
      max_record_(ring_.info().max_record_size),
      broadcast_(ring_.info().mode == Mode::broadcast),
      // A padding record (shorter than a maximum frame) plus a maximum frame.
      in_flight_(2 * layout::frame_size(ring_.info().max_record_size)) {
  std::uint64_t start = 0;
  pos_ = load_start(start) ? start : 0;
}

bool Observer::load_tail(std::uint64_t& tail) const noexcept {
  // SYNC POINT READ: pairs with the producer's tail store (release). In broadcast rings it
  // publishes every frame and payload below it.
  const std::uint64_t t = ctrl_->producer.tail.load(std::memory_order_acquire);
  if (!aligned(t)) return false;
  tail = t;
  return true;
}

std::uint64_t Observer::slowest_cursor(std::uint64_t tail) const noexcept {
  std::uint64_t slowest = tail;
  for (const layout::PeerSlot& s : ctrl_->peers) {
    // Acquire: pairs with the claimer's release of the role and the consumer's cursor stores.
    if (s.role.load(std::memory_order_acquire) !=
        static_cast<std::uint32_t>(layout::Role::consumer))
      continue;
    const std::uint64_t c = s.cursor.load(std::memory_order_acquire);
    // As the producer does: cursors outside [tail - capacity, tail] (joining, free, impossible)
    // do not hold it back, so they tell nothing either.
    if (aligned(c) && c <= tail && tail - c <= capacity_ && c < slowest) slowest = c;
  }
  return slowest;
}

bool Observer::load_start(std::uint64_t& start) const noexcept {
  std::uint64_t t = 0;
  if (!broadcast_) {
    // Acquire: pairs with the consumer's head store; the frame words we read after it are at
    // least as new as the ones the consumer had seen.
    const std::uint64_t h = ctrl_->consumer.head.load(std::memory_order_acquire);
    // Loaded after the head, so a sane tail is never behind it.
    if (!load_tail(t) || !aligned(h) || h > t) return false;
    start = h;
    return true;
  }
  if (!load_tail(t)) return false;
  start = slowest_cursor(t);
  return true;
}

Observer::Frame Observer::frame_at(std::uint64_t pos, std::uint64_t tail) const noexcept {
  const std::uint64_t offset = pos & mask_;
  // SYNC POINT READ (spsc): pairs with the producer's frame store (release). In broadcast rings
  // the tail loaded before already ordered it.
  const std::uint64_t w = header_at(data_, offset).frame.load(std::memory_order_acquire);
  Frame f;
  if (w == 0) return f;
  f.bad = true;
  // The library's one frame decoder (spsc and broadcast rules: the extent is the frame size, no
  // abandoned records), so records built in place read as their consumers see them.
  const flatring::detail::Decoded d =
      flatring::detail::decode_frame(header_at(data_, offset), w, capacity_ - offset, max_record_,
                                     {.aux_extent = false, .abandoned = false});
  if (d.kind == flatring::detail::Frame::record) {
    f.length = d.len;
    f.start = d.start;
    f.size = d.extent;
  } else if (d.kind == flatring::detail::Frame::skip && d.type == layout::RecordType::padding) {
    f.size = d.extent;
    f.padding = true;
  } else {
    return f;
  }
  // spsc: the tail is stored before the frame word, so after the acquire above it covers the
  // record; if it does not, the word is not a commit of this lap.
  std::uint64_t t = tail;
  if (t == 0 && !load_tail(t)) return f;
  f.bad = pos + f.size > t;
  return f;
}

bool Observer::intact(std::uint64_t pos) const noexcept {
  if (!broadcast_) {
    // Relaxed: ordered by the caller's acquire fence; pairs with the consumer's head store.
    return ctrl_->consumer.head.load(std::memory_order_relaxed) <= pos;
  }
  // Relaxed: ordered by the caller's acquire fence; pairs with the producer's tail store.
  const std::uint64_t t = ctrl_->producer.tail.load(std::memory_order_relaxed);
  if (t < pos || t - pos > capacity_) return false;
  if (t - pos + in_flight_ <= capacity_) return true;
  return slowest_cursor(t) <= pos;
}

Observed Observer::resync() {
  std::uint64_t start = 0;
  if (!load_start(start)) return {Observed::Kind::corrupt, pos_, pos_, {}};
  if (start <= pos_) {
    // No boundary ahead of us but the tail (broadcast without consumers): start over there.
    std::uint64_t t = 0;
    if (!load_tail(t) || t <= pos_) return {Observed::Kind::corrupt, pos_, pos_, {}};
    start = t;
  }
  Observed out{Observed::Kind::skipped, pos_, start, {}};
  pos_ = start;
  return out;
}

void Observer::start_at_last(std::size_t n) {
  std::uint64_t start = 0;
  std::uint64_t t = 0;
  if (!load_start(start) || !load_tail(t)) return;  // next() reports it
  std::deque<std::uint64_t> last;
  std::uint64_t pos = start;
  // At most capacity / 16 records fit in the ring: the walk ends even if the producer keeps going.
  for (std::uint64_t steps = 0; steps <= capacity_ / layout::kRecordAlign; ++steps) {
    if (broadcast_ && pos >= t) break;  // frame words at and past the tail may be last lap's
    const Frame f = frame_at(pos, broadcast_ ? t : 0);
    if (f.bad || f.size == 0) break;
    if (!f.padding) {
      last.push_back(pos);
      if (last.size() > n) last.pop_front();
    }
    pos += f.size;
  }
  // A record overwritten meanwhile is reported by next() as skipped.
  pos_ = last.empty() || n == 0 ? pos : last.front();
}

Observed Observer::next() {
  // A few steps at most: a skip is returned at once, and a padding record is followed by data.
  for (int step = 0; step < 3; ++step) {
    std::uint64_t t = 0;
    if (broadcast_) {
      if (!load_tail(t) || t < pos_) return {Observed::Kind::corrupt, pos_, pos_, {}};
      if (t - pos_ > capacity_) return resync();  // lapped: those bytes are gone
      if (t == pos_) return {Observed::Kind::not_yet, pos_, pos_, {}};
    } else {
      std::uint64_t head = 0;
      if (!load_start(head)) return {Observed::Kind::corrupt, pos_, pos_, {}};
      if (head > pos_) return resync();  // the consumer is ahead: what lay between is gone
    }
    const Frame f = frame_at(pos_, t);
    if (f.bad) {
      // A frame word rewritten by a later lap fails the checks too; intact() tells them apart.
      std::atomic_thread_fence(std::memory_order_acquire);
      if (!intact(pos_)) return resync();
      return {Observed::Kind::corrupt, pos_, pos_, {}};
    }
    if (f.size == 0) return {Observed::Kind::not_yet, pos_, pos_, {}};
    if (f.padding) {
      pos_ += f.size;
      continue;
    }
    std::byte* copy = copy_.get(f.length == 0 ? 1 : f.length);
    std::memcpy(copy, data_ + (pos_ & mask_) + layout::kRecordHeaderSize + f.start, f.length);
    // The copy's reads may not move below this fence, so the positions loaded after it are at
    // least as new as any producer write the copy saw (see observer.hpp for why that suffices).
    std::atomic_thread_fence(std::memory_order_acquire);
    if (!intact(pos_)) return resync();
    Observed out{Observed::Kind::record, pos_, pos_ + f.size, {copy, f.length}};
    pos_ += f.size;
    return out;
  }
  return {Observed::Kind::corrupt, pos_, pos_, {}};
}

}  // namespace flatring::tool
