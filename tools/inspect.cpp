#include "inspect.hpp"

#include <limits>

namespace flatring::tool {

namespace {

constexpr std::array<std::string_view, layout::kCounterCount> kCounterNames{
    "records_written", "bytes_written",   "records_read",      "bytes_read",
    "verify_failures", "corrupt_records", "abandoned_records", "too_large",
    "full_waits",      "empty_waits",     "futex_sleeps",      "futex_wakes",
};

template <class Atomics>
Counts load_counts(const Atomics& values) noexcept {
  Counts out{};
  // Relaxed: each counter is an independent statistic; no other memory is read on its account.
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = values[i].load(std::memory_order_relaxed);
  return out;
}

std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) noexcept {
  return b > std::numeric_limits<std::uint64_t>::max() - a
             ? std::numeric_limits<std::uint64_t>::max()
             : a + b;
}

}  // namespace

std::string_view counter_name(std::uint32_t c) noexcept {
  return c < kCounterNames.size() ? kCounterNames[c] : std::string_view("unknown");
}

std::string_view role_name(std::uint32_t role) noexcept {
  switch (static_cast<layout::Role>(role)) {
    case layout::Role::none: return "claiming";
    case layout::Role::producer: return "producer";
    case layout::Role::consumer: return "consumer";
    case layout::Role::observer: return "observer";
  }
  return "unknown";
}

std::uint32_t Snapshot::live_peers() const noexcept {
  std::uint32_t n = 0;
  for (const auto& p : peers) n += p.alive ? 1 : 0;
  return n;
}

Counts Snapshot::totals() const noexcept {
  Counts sum = retired;
  for (const auto& p : peers) {
    for (std::size_t i = 0; i < sum.size(); ++i) sum[i] = saturating_add(sum[i], p.counts[i]);
  }
  return sum;
}

Ring open_for_inspection(std::string_view name) {
  return Ring::open(name, OpenOptions{.allow_foreign_owner = true, .allow_shared_write = true});
}

Snapshot snapshot(const Ring& ring) {
  const layout::Control& c = ring.control();
  Snapshot s;
  s.info = ring.info();
  s.creator_alive = is_alive(s.info.creator);
  // Acquire: pairs with the consumer's and producer's stores; only for a consistent display,
  // nothing is read through these positions.
  s.head = c.consumer.head.load(std::memory_order_acquire);
  s.tail = c.producer.tail.load(std::memory_order_acquire);
  for (std::uint32_t i = 0; i < layout::kMaxPeers; ++i) {
    const layout::PeerSlot& slot = c.peers[i];
    // Acquire: pairs with the claimer's CAS and the reaper's release of the slot.
    const std::uint32_t pid = slot.pid.load(std::memory_order_acquire);
    if (pid == 0) continue;
    PeerRow row;
    row.slot = i;
    row.role = slot.role.load(std::memory_order_acquire);  // pairs with the claimer's release
    row.counts = load_counts(slot.counter);
    // Relaxed: a display value, checked before use like every other.
    row.cursor = slot.cursor.load(std::memory_order_relaxed);
    if (pid == layout::kReaping) {
      row.reaping = true;
    } else {
      row.pid = pid;
      // Relaxed is enough for a display: a stale start time only makes a live peer look dead for
      // the instant it is being claimed.
      row.alive = is_alive(ProcessToken{pid, slot.start_time.load(std::memory_order_relaxed)});
    }
    s.peers.push_back(row);
  }
  s.retired = load_counts(c.retired.value);
  // Relaxed: display values, shown as read.
  auto wait_row = [](const layout::WaitLine& l) {
    return WaitRow{l.waiters.load(std::memory_order_relaxed),
                   l.sleepers.load(std::memory_order_relaxed),
                   l.notify.load(std::memory_order_relaxed)};
  };
  s.data_wait = wait_row(c.data);
  s.space_wait = wait_row(c.space);
  if (s.info.mode == Mode::broadcast) {
    // No shared head: the producer's free space ends at the slowest live consumer. Cursors
    // outside [tail - capacity, tail] (joining, or impossible) are ignored, as the producer does.
    s.head = s.tail;
    for (const auto& p : s.peers) {
      const bool in_range = p.cursor <= s.tail && s.tail - p.cursor <= s.info.capacity;
      if (p.alive && p.role == static_cast<std::uint32_t>(layout::Role::consumer) && in_range &&
          p.cursor < s.head) {
        s.head = p.cursor;
      }
    }
  }
  s.positions_valid = ((s.head | s.tail) & (layout::kRecordAlign - 1)) == 0 && s.head <= s.tail &&
                      s.tail - s.head <= s.info.capacity;
  return s;
}

}  // namespace flatring::tool
