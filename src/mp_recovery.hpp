// What mpsc and mpmc recovery share: finding the owner of a claim among the peers' cursors,
// measuring a dead producer's claim, and freeing finished mpmc records. Private.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "flatring/endpoint.hpp"
#include "flatring/liveness.hpp"
#include "flatring/mpsc.hpp"

namespace flatring::detail {

/// Positions that peers' cursors name: each is where some claim starts (a claim boundary).
struct CursorSet {
  std::uint64_t cursor[layout::kMaxPeers];
  std::uint32_t n = 0;
  [[nodiscard]] bool contains(std::uint64_t pos) const noexcept {
    return std::find(cursor, cursor + n, pos) != cursor + n;
  }
};

/// The producers' claim positions, for recovering a claim at `pos` that is not becoming a record.
struct ProducerCursors {
  bool owner_alive = false;  ///< a live producer's cursor is `pos`: it owns (or retries) the claim
  CursorSet others;          ///< the other producers' cursors (only filled when no owner is alive)
};

/// \pre the caller loaded the tail (acquire) after the claim was made: a producer stores its
/// cursor before its tail CAS, so the owner's cursor is visible.
inline ProducerCursors producer_cursors(const layout::Control& ctrl, std::uint64_t pos) noexcept {
  ProducerCursors out;
  for (const auto& s : ctrl.peers) {
    const std::uint32_t pid = s.pid.load(std::memory_order_acquire);
    if (pid == 0 || s.role.load(std::memory_order_acquire) !=
                        static_cast<std::uint32_t>(layout::Role::producer)) {
      continue;
    }
    // Acquire: pairs with the producer's release store of its cursor (MpWriter::try_reserve).
    const std::uint64_t c = s.cursor.load(std::memory_order_acquire);
    if (c == pos && pid != layout::kReaping &&
        is_alive(ProcessToken{pid, s.start_time.load(std::memory_order_relaxed)})) {
      out.owner_alive = true;
      return out;
    }
    out.others.cursor[out.others.n++] = c;
  }
  return out;
}

/// Every attached peer's cursor but `self`'s, whatever its role or liveness (mpmc recovery: the
/// next claim below `next` may be another recoverer's). \pre the caller loaded `next` (acquire)
/// after those claims: cursors are stored (release) before the claim CAS that moved `next`.
inline CursorSet peer_cursors(const layout::Control& ctrl, const layout::PeerSlot& self) noexcept {
  CursorSet out;
  for (const auto& s : ctrl.peers) {
    if (&s == &self || s.pid.load(std::memory_order_acquire) == 0) continue;
    out.cursor[out.n++] = s.cursor.load(std::memory_order_acquire);
  }
  return out;
}

/// True if the header at `pos` holds what free space holds: 0, or a `done` header of an earlier
/// lap (mpmc finishers store the record's own position in aux, so an old one names another).
inline bool unwritten_header(const layout::RecordHeader& h, std::uint64_t w,
                             std::uint64_t pos) noexcept {
  return w == 0 || (layout::frame_type(w) == layout::RecordType::done && load_aux(h) != pos);
}

/// How far the claim at `pos` of a dead producer reaches, at most `limit` bytes and never more than
/// the largest claim there can be (`frame_size(max_record)`: a padding claim is shorter than the
/// record that did not fit), so a garbage lap of zeros costs no whole-ring scan. `w` is the frame
/// word there: a `claimed` header says; an unwritten header means the producer died before writing
/// it, so it wrote nothing, and the claim ends at the next header written in this lap, at the next
/// position in `stops` (a cursor: where another claim starts), or at the limit. 0: corrupt.
inline std::uint64_t dead_claim_extent(const std::byte* data, std::uint64_t mask, std::uint64_t pos,
                                       std::uint64_t w, std::uint64_t limit,
                                       std::uint64_t max_record, const CursorSet& stops) noexcept {
  limit = std::min(limit, layout::frame_size(max_record));
  if (layout::frame_flags(w) != 0) return 0;
  if (layout::frame_type(w) == layout::RecordType::claimed) {
    const std::uint64_t extent = layout::frame_size(layout::frame_length(w));
    return extent > limit ? 0 : extent;
  }
  std::uint64_t extent = layout::kRecordAlign;
  while (extent < limit) {
    const std::uint64_t at = pos + extent;
    const auto& h = header_at(data, at & mask);
    if (!unwritten_header(h, h.frame.load(std::memory_order_acquire), at)) break;
    if (stops.contains(at)) break;  // the next claim starts here
    extent += layout::kRecordAlign;
  }
  return extent;
}

/// mpmc: frees the `done` records at the head, in order. Returns whether it freed any: the caller
/// then wakes producers waiting for space (wake<Handshake::seq_cst>).
/// Anyone may call it (consumers after finishing a record, a producer after finishing a stalled
/// claim, recoverers). A finisher stores `done` (a consumer: release, then a seq_cst fence before
/// calling this, once per batch; a producer finishing a stalled claim: seq_cst) and then calls
/// this, which loads the head (seq_cst); a freer CASes the head (seq_cst) and then loads the next
/// frame (seq_cst): in the single total order one of them sees the other, so no finished record
/// is left unfreed (docs/design-mp.md, "Why a finished record is always freed").
inline bool free_done_records(layout::Control& ctrl, const std::byte* data,
                              std::uint64_t capacity) noexcept {
  const std::uint64_t mask = capacity - 1;
  bool freed = false;
  // Bounded: each pass frees at least 16 bytes of a ring of `capacity` bytes, or stops.
  for (std::uint64_t hop = 0; hop <= capacity / layout::kRecordAlign; ++hop) {
    std::uint64_t h = ctrl.consumer.head.load(std::memory_order_seq_cst);
    const std::uint64_t r = ctrl.consumer.next.load(std::memory_order_seq_cst);
    if (h >= r || r - h > capacity || (h & (layout::kRecordAlign - 1)) != 0) break;
    const std::uint64_t offset = h & mask;
    // SYNC POINT READ: pairs with the finisher's done store; the zeroes are visible after it.
    const auto& hd = header_at(data, offset);
    const std::uint64_t w = hd.frame.load(std::memory_order_seq_cst);
    if (layout::frame_type(w) != layout::RecordType::done || layout::frame_flags(w) != 0) break;
    // A done header of an earlier lap (free space keeps them) names another position: it is a
    // claim whose header was never written, not a finished record.
    if (load_aux(hd) != h) break;
    const std::uint64_t extent = layout::frame_length(w);
    // A stale `h` (another freer moved on) may show anything: the CAS below then fails.
    if (extent < layout::kRecordAlign || (extent & (layout::kRecordAlign - 1)) != 0 ||
        extent > capacity - offset || extent > r - h) {
      break;
    }
    // SYNC POINT WRITE: frees [h, h + extent); pairs with the producers' acquire load of head.
    if (ctrl.consumer.head.compare_exchange_strong(h, h + extent, std::memory_order_seq_cst,
                                                   std::memory_order_relaxed)) {
      freed = true;
    }
  }
  return freed;
}

}  // namespace flatring::detail
