// Private helpers shared by the multi-party rings (broadcast, mpsc, mpmc): mode checks and the
// sleeper's half of the futex handshake.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>

#include "flatring/ring.hpp"
#include "flatring/segment.hpp"
#include "flatring/status.hpp"
#include "flatring/wait.hpp"

namespace flatring::mp_detail {

inline void require_mode(const Ring& ring, Mode want, const char* who) {
  if (ring.info().mode != want) {
    throw Error(Errc::wrong_mode, "flatring ring '" + ring.info().name + "': a " + who +
                                      " needs a ring of mode " +
                                      std::to_string(static_cast<unsigned>(want)) +
                                      "; this ring's mode is " +
                                      std::to_string(static_cast<unsigned>(ring.info().mode)));
  }
}

[[noreturn]] inline void corrupt_state(const Ring& ring, const std::string& what) {
  throw Error(Errc::corrupt_state, "flatring ring '" + ring.info().name + "': " + what);
}

enum class Slept { woken, timed_out, check_peers };

/// Sleeps on `line` until woken, `ready()`, the deadline, or `slice` (check_peers: the caller
/// looks at its peers' liveness). Sleeper's half of the Dekker handshake: waiters.fetch_add
/// (seq_cst), then `ready()` must make a seq_cst load of the condition.
template <class Ready>
Slept sleep_until(layout::WaitLine& line, const Attachment& self, Ready&& ready,
                  detail::Clock::time_point deadline, std::chrono::nanoseconds slice) {
  line.waiters.fetch_add(1, std::memory_order_seq_cst);
  // Read before the re-check: a wake after it changes the word, so futex_wait returns at once.
  const std::uint32_t seen = line.futex.load(std::memory_order_seq_cst);
  Slept out = Slept::woken;
  if (!ready()) {
    const auto now = detail::Clock::now();
    if (now >= deadline) {
      out = Slept::timed_out;
    } else {
      const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now);
      self.count(layout::futex_sleeps);
      if (wait::futex_wait(line.futex, seen, std::min(left, slice)) == wait::WaitResult::timed_out) {
        out = left <= slice ? Slept::timed_out : Slept::check_peers;
      }
    }
  }
  line.waiters.fetch_sub(1, std::memory_order_relaxed);  // only a hint for wakers
  return out;
}

/// True when no live producer is attached (dead ones are reclaimed on the way).
inline bool producer_gone(const Ring& ring) noexcept {
  const PeerCensus c = census(ring, layout::Role::producer);
  if (c.dead != 0) ring.reap_dead_peers();
  return c.alive == 0 && c.dead != 0;
}

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
    if (pid == 0 || s.role.load(std::memory_order_acquire) != static_cast<std::uint32_t>(layout::Role::producer)) {
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
inline bool unwritten_header(const layout::RecordHeader& h, std::uint64_t w, std::uint64_t pos) noexcept {
  return w == 0 || (layout::frame_type(w) == layout::RecordType::done && detail::load_aux(h) != pos);
}

/// How far the claim at `pos` of a dead producer reaches, at most `limit` bytes and never more than
/// the largest claim there can be (`frame_size(max_record)`: a padding claim is shorter than the
/// record that did not fit), so a garbage lap of zeros costs no whole-ring scan. `w` is the frame
/// word there: a `claimed` header says; an unwritten header means the producer died before writing
/// it, so it wrote nothing, and the claim ends at the next header written in this lap, at the next
/// position in `stops` (a cursor: where another claim starts), or at the limit. 0: corrupt.
inline std::uint64_t dead_claim_extent(const std::byte* data, std::uint64_t mask, std::uint64_t pos,
                                       std::uint64_t w, std::uint64_t limit, std::uint64_t max_record,
                                       const CursorSet& stops) noexcept {
  limit = std::min(limit, layout::frame_size(max_record));
  if (layout::frame_flags(w) != 0) return 0;
  if (layout::frame_type(w) == layout::RecordType::claimed) {
    const std::uint64_t extent = layout::frame_size(layout::frame_length(w));
    return extent > limit ? 0 : extent;
  }
  std::uint64_t extent = layout::kRecordAlign;
  while (extent < limit) {
    const std::uint64_t at = pos + extent;
    const auto& h = detail::header_at(data, at & mask);
    if (!unwritten_header(h, h.frame.load(std::memory_order_acquire), at)) break;
    if (stops.contains(at)) break;  // the next claim starts here
    extent += layout::kRecordAlign;
  }
  return extent;
}

/// mpmc: frees the `done` records at the head, in order, and wakes producers waiting for space.
/// Anyone may call it (consumers after finishing a record, a producer after finishing a stalled
/// claim, recoverers). A finisher stores `done` (seq_cst) and then calls this, which loads the head
/// (seq_cst); a freer CASes the head (seq_cst) and then loads the next frame (seq_cst): in the
/// single total order one of them sees the other, so no finished record is left unfreed.
inline void free_done_records(layout::Control& ctrl, const std::byte* data, std::uint64_t capacity,
                              const Attachment& self) noexcept {
  const std::uint64_t mask = capacity - 1;
  bool freed = false;
  // Bounded: each pass frees at least 16 bytes of a ring of `capacity` bytes, or stops.
  for (std::uint64_t hop = 0; hop <= capacity / layout::kRecordAlign; ++hop) {
    std::uint64_t h = ctrl.consumer.head.load(std::memory_order_seq_cst);
    const std::uint64_t r = ctrl.consumer.next.load(std::memory_order_seq_cst);
    if (h >= r || r - h > capacity || (h & (layout::kRecordAlign - 1)) != 0) break;
    const std::uint64_t offset = h & mask;
    // SYNC POINT READ: pairs with the finisher's done store; the zeroes are visible after it.
    const auto& hd = detail::header_at(data, offset);
    const std::uint64_t w = hd.frame.load(std::memory_order_seq_cst);
    if (layout::frame_type(w) != layout::RecordType::done || layout::frame_flags(w) != 0) break;
    // A done header of an earlier lap (free space keeps them) names another position: it is a
    // claim whose header was never written, not a finished record.
    if (detail::load_aux(hd) != h) break;
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
  // seq_cst: Dekker partner of a sleeping producer's waiters.fetch_add.
  if (freed && ctrl.space.waiters.load(std::memory_order_seq_cst) != 0) detail::wake_all(ctrl.space, self);
}

/// The blocking read of the mpsc and mpmc consumers: try, spin, sleep on the `data` futex; at each
/// liveness interval (and at the deadline) run `recover()` for claims whose producers died (or
/// records whose consumers died), and report peer_dead once `gone()` says the ring is empty and
/// its producers are gone. `ready(order)` says a record may be there; with seq_cst it is the
/// sleeper's re-check of the Dekker handshake. `recover()`: abandoned / corrupt are returned, ok
/// means "try again now", empty means nothing changed.
template <class Reader, class Ready, class Recover, class Gone>
Result<RecordView> blocking_read(Reader& reader, layout::WaitLine& line, const Attachment& self,
                                 const WaitOptions& wait, std::chrono::nanoseconds timeout,
                                 Ready&& ready, Recover&& recover, Gone&& gone) {
  auto r = reader.try_read();
  if (r.status() != Status::empty) return r;
  const auto deadline = detail::deadline_after(timeout);
  self.count(layout::empty_waits);
  for (;;) {
    if (detail::spin_until([&] { return ready(std::memory_order_relaxed); }, wait.spin)) {
      r = reader.try_read();
      if (r.status() != Status::empty) return r;
    }
    Slept s = sleep_until(
        line, self, [&] { return ready(std::memory_order_seq_cst); }, deadline, wait.liveness_interval);
    r = reader.try_read();
    if (r.status() != Status::empty) return r;
    // `ready()` can say yes while try_read() says empty (a hostile segment: a frame that looks
    // committed under an impossible tail): then sleep_until returns at once, and without this
    // check the loop would never reach its deadline.
    if (s == Slept::woken && detail::Clock::now() >= deadline) s = Slept::timed_out;
    if (s == Slept::check_peers || s == Slept::timed_out) {
      const Status u = recover();
      if (u == Status::abandoned || u == Status::corrupt) return u;
      if (u == Status::ok) {  // a record arrived meanwhile, or one was taken over
        r = reader.try_read();
        if (r.status() != Status::empty) return r;
      }
      if (s == Slept::timed_out) return Status::timed_out;
      if (gone()) return Status::peer_dead;
    }
  }
}

}  // namespace flatring::mp_detail
