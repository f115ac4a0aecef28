#include "observer.hpp"

#include <atomic>
#include <cstring>
#include <deque>

#include <fmt/format.h>

#include "exit_codes.hpp"
#include "inspect.hpp"

namespace flatring::tool {

namespace {

Ring require_spsc(Ring ring) {
  if (ring.info().mode != Mode::spsc) {
    throw ToolError(Exit::unsupported,
                    fmt::format("ring '{}': observing a {} ring is not supported by this build",
                                ring.info().name, mode_name(ring.info().mode)));
  }
  return ring;
}

const layout::RecordHeader& header_at(const std::byte* base, std::uint64_t offset) noexcept {
  return *reinterpret_cast<const layout::RecordHeader*>(base + offset);
}

}  // namespace

Observer::Observer(Ring ring)
    : ring_(require_spsc(std::move(ring))),
      self_(ring_, layout::Role::observer, /*exclusive=*/false),
      ctrl_(&ring_.control()),
      data_(ring_.data()),
      capacity_(ring_.info().capacity),
      mask_(capacity_ - 1),
      max_record_(ring_.info().max_record_size) {
  std::uint64_t head = 0;
  pos_ = load_head(head) ? head : 0;
}

bool Observer::load_head(std::uint64_t& head) const noexcept {
  // Acquire: pairs with the consumer's head store; the frame words below head+capacity that we
  // read afterwards are at least as new as the ones the consumer had seen.
  const std::uint64_t h = ctrl_->consumer.head.load(std::memory_order_acquire);
  // Loaded after the head, so a sane tail is never behind it.
  const std::uint64_t t = ctrl_->producer.tail.load(std::memory_order_acquire);
  if ((h & (layout::kRecordAlign - 1)) != 0 || h > t) return false;
  head = h;
  return true;
}

Observer::Frame Observer::frame_at(std::uint64_t pos) const noexcept {
  const std::uint64_t offset = pos & mask_;
  // SYNC POINT READ: pairs with the producer's frame store (release), like the consumer's read.
  const std::uint64_t w = header_at(data_, offset).frame.load(std::memory_order_acquire);
  Frame f;
  if (w == 0) return f;
  const std::uint64_t to_end = capacity_ - offset;
  f.length = layout::frame_length(w);
  f.bad = true;
  if (layout::frame_flags(w) != 0) return f;
  if (layout::frame_type(w) == layout::RecordType::data && f.length <= max_record_ &&
      layout::frame_size(f.length) <= to_end) {
    f.size = layout::frame_size(f.length);
  } else if (layout::frame_type(w) == layout::RecordType::padding &&
             f.length + layout::kRecordHeaderSize == to_end) {
    f.size = to_end;
    f.padding = true;
  } else {
    return f;
  }
  // The tail is stored before the frame word, so after the acquire above it covers the record;
  // if it does not, the word is not a commit of this lap.
  const std::uint64_t t = ctrl_->producer.tail.load(std::memory_order_acquire);
  f.bad = pos + f.size > t;
  return f;
}

void Observer::start_at_last(std::size_t n) {
  std::uint64_t head = 0;
  if (!load_head(head)) return;  // next() reports it
  std::deque<std::uint64_t> last;
  std::uint64_t pos = head;
  // At most capacity / 16 records fit in the ring: the walk ends even if the producer keeps going.
  for (std::uint64_t steps = 0; steps <= capacity_ / layout::kRecordAlign; ++steps) {
    const Frame f = frame_at(pos);
    if (f.bad || f.size == 0) break;
    if (!f.padding) {
      last.push_back(pos);
      if (last.size() > n) last.pop_front();
    }
    pos += f.size;
  }
  // A record the consumer releases meanwhile is reported by next() as skipped.
  pos_ = last.empty() || n == 0 ? pos : last.front();
}

Observed Observer::next() {
  // Three steps at most: a skip is returned at once, and a padding record is followed by data.
  for (int step = 0; step < 3; ++step) {
    std::uint64_t head = 0;
    if (!load_head(head)) return {Observed::Kind::corrupt, pos_, pos_, {}};
    if (head > pos_) {  // the consumer is ahead: what lay between is gone
      Observed out{Observed::Kind::skipped, pos_, head, {}};
      pos_ = head;
      return out;
    }
    const Frame f = frame_at(pos_);
    if (f.bad) {
      // A frame word of a later lap fails the checks too; a head past pos_ tells them apart.
      if (load_head(head) && head > pos_) continue;
      return {Observed::Kind::corrupt, pos_, pos_, {}};
    }
    if (f.size == 0) return {Observed::Kind::not_yet, pos_, pos_, {}};
    if (f.padding) {
      pos_ += f.size;
      continue;
    }
    std::byte* copy = copy_.get(f.length == 0 ? 1 : f.length);
    std::memcpy(copy, data_ + (pos_ & mask_) + layout::kRecordHeaderSize, f.length);
    // The copy's reads may not move below this fence, so the head loaded after it is at least as
    // new as any producer write the copy saw. The producer writes at a position only after it has
    // seen the consumer's head pass the previous lap's record there (acquire on head), so if the
    // head is still at or below pos_, no byte of the copy can come from a newer record.
    std::atomic_thread_fence(std::memory_order_acquire);
    // Relaxed: ordered by the fence above; pairs with the consumer's head store.
    const std::uint64_t after = ctrl_->consumer.head.load(std::memory_order_relaxed);
    if (after > pos_) continue;  // consumed (and maybe overwritten) while copying: report a skip
    Observed out{Observed::Kind::record, pos_, pos_ + f.size, {copy, f.length}};
    pos_ += f.size;
    return out;
  }
  return {Observed::Kind::corrupt, pos_, pos_, {}};
}

}  // namespace flatring::tool
