// WaitSet (wait_set.hpp): the one blocking loop (block.hpp) over many endpoints.
#include "flatring/wait_set.hpp"

#include <algorithm>

#include "block.hpp"

namespace flatring {

namespace {

// What block() sleeps on for a WaitSet: every distinct wait line of its entries.
struct SetSleeper {
  std::span<layout::WaitLine* const> lines;
  bool asymmetric;

  template <class ReadyFn>
  void sleep(ReadyFn&& ready, detail::Clock::time_point deadline,
             std::chrono::nanoseconds slice) const {
    detail::sleep_on(
        lines, asymmetric, ready, [] {}, deadline, slice);
  }
  // A lost segment is reported per entry by the interval step.
  [[nodiscard]] bool lost() const noexcept { return false; }
};

}  // namespace

std::size_t WaitSet::add(detail::WaitTarget target) {
  for (const Entry& e : entries_) {
    if (e.target.endpoint == target.endpoint) {
      throw Error(Errc::invalid_options, "flatring ring '" + target.self->ring().info().name +
                                             "': this endpoint is in the WaitSet already");
    }
  }
  entries_.push_back({target, next_id_});
  rebuild_lines();
  return next_id_++;
}

bool WaitSet::remove(std::size_t id) noexcept {
  const auto it =
      std::find_if(entries_.begin(), entries_.end(), [&](const Entry& e) { return e.id == id; });
  if (it == entries_.end()) return false;
  entries_.erase(it);
  try {
    rebuild_lines();
  } catch (...) {  // a smaller vector: cannot run out of memory in practice
  }
  return true;
}

void WaitSet::rebuild_lines() {
  lines_.clear();
  std::vector<const detail::WaitTarget*> owners;  // an entry whose ring each line is in
  asymmetric_ = false;
  for (const Entry& e : entries_) {
    // One line once, also when two endpoints reach it through mappings of their own (two
    // Ring::open of one ring): sleep_on bumps each line it is given and sleeps on its own bump,
    // so one word listed twice would never hold the first bump's value, and no sleep would last.
    const auto offset = [](const detail::WaitTarget& t) {
      return reinterpret_cast<const std::byte*>(t.line) -
             reinterpret_cast<const std::byte*>(&t.self->ring().control());
    };
    bool seen = false;
    for (std::size_t i = 0; i < lines_.size() && !seen; ++i) {
      seen = lines_[i] == e.target.line ||
             (offset(*owners[i]) == offset(e.target) &&
              owners[i]->self->ring().same_segment(e.target.self->ring()));
    }
    if (!seen) {
      lines_.push_back(e.target.line);
      owners.push_back(&e.target);
    }
    asymmetric_ |= e.target.handshake == detail::Handshake::asymmetric;
  }
}

bool WaitSet::any_ready(std::memory_order order) const noexcept {
  for (const Entry& e : entries_) {
    if (e.target.ready(e.target.endpoint, e.target.bytes, order)) return true;
  }
  return false;
}

void WaitSet::collect(std::memory_order order) {
  for (const Entry& e : entries_) {
    if (std::any_of(ready_.begin(), ready_.end(), [&](const Ready& r) { return r.id == e.id; })) {
      continue;  // reported by the interval step already
    }
    if (e.target.ready(e.target.endpoint, e.target.bytes, order)) ready_.push_back({e.id});
  }
}

// Each entry's liveness step (as a blocked read/write runs it). True if one has an outcome.
bool WaitSet::interval(bool final) {
  for (const Entry& e : entries_) {
    Status s = final ? e.target.idle : e.target.check(e.target.endpoint, false);
    if (e.target.self->ring().lost_fast()) s = Status::segment_lost;
    if (s != e.target.idle) ready_.push_back({e.id, s});
  }
  return !ready_.empty();
}

Status WaitSet::wait(std::chrono::nanoseconds timeout) {
  ready_.clear();
  if (entries_.empty()) return Status::invalid_state;
  ready_.reserve(entries_.size());
  auto attempt = [&]() -> detail::Outcome {
    collect(std::memory_order_acquire);
    return ready_.empty() ? Status::empty : Status::ok;
  };
  const detail::Outcome r = detail::block(
      attempt, [&](std::memory_order order) { return any_ready(order); },
      [&](bool final) { return interval(final) ? Status::ok : Status::empty; }, Status::empty,
      SetSleeper{lines_, asymmetric_}, wait_, timeout);
  return r.status();
}

}  // namespace flatring
