// A read-only snapshot of a ring's control area, for ls, stat, rm and gc.
//
// The control area is shared and untrusted: every value is loaded once into the snapshot and
// checked before anything is derived from it. Nothing here writes to the segment.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <flatring/layout.hpp>
#include <flatring/segment.hpp>

namespace flatring::tool {

using Counts = std::array<std::uint64_t, layout::kCounterCount>;

/// Names of the counters, in layout::Counter order, as printed and as JSON keys.
[[nodiscard]] std::string_view counter_name(std::uint32_t c) noexcept;
[[nodiscard]] std::string_view role_name(std::uint32_t role) noexcept;

struct PeerRow {
  std::uint32_t slot = 0;
  std::uint32_t pid = 0;
  std::uint32_t role = 0;  // layout::Role, as read (may be out of range: untrusted)
  bool alive = false;
  bool reaping = false;      // another process is folding this dead peer's counters away
  std::uint64_t cursor = 0;  // broadcast consumers: the position this consumer has read up to
  Counts counts{};
};

/// One wait line as read (untrusted words, for display only).
struct WaitRow {
  std::uint32_t waiters = 0;   // registered waiters: blocked calls, WaitSets and armed WaitFds
  std::uint32_t sleepers = 0;  // of those, the ones sleeping on the futex word
  std::uint32_t notify = 0;    // one bit per peer slot with an armed WaitFd
};

struct Snapshot {
  SegmentInfo info;
  bool creator_alive = false;
  /// Where the unread records start: the consumer's head (spsc), or the slowest live consumer's
  /// cursor (broadcast; the tail when no consumer is attached).
  std::uint64_t head = 0;
  std::uint64_t tail = 0;
  /// False when head/tail are impossible (misaligned, head past tail, or further apart than the
  /// capacity); fill() is then meaningless.
  bool positions_valid = false;
  std::vector<PeerRow> peers;  // occupied slots only
  Counts retired{};
  WaitRow data_wait;   // consumers waiting for records
  WaitRow space_wait;  // producers waiting for space

  [[nodiscard]] std::uint64_t fill() const noexcept { return positions_valid ? tail - head : 0; }
  [[nodiscard]] std::uint32_t live_peers() const noexcept;
  /// The creator has died and no live process is attached: nobody will use or remove it.
  [[nodiscard]] bool stale() const noexcept { return !creator_alive && live_peers() == 0; }
  /// retired + every occupied slot, saturating (the numbers are untrusted).
  [[nodiscard]] Counts totals() const noexcept;
};

/// Opens `name` for inspection only: another owner's or a group-writable segment is accepted,
/// since nothing is written to it and every value read is checked.
/// \throws Error as Ring::open does.
[[nodiscard]] Ring open_for_inspection(std::string_view name);

[[nodiscard]] Snapshot snapshot(const Ring& ring);

}  // namespace flatring::tool
