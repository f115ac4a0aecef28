#include "flatring/mpmc.hpp"

#include <algorithm>
#include <string>

#include "endpoint_impl.hpp"
#include "mp_recovery.hpp"
#include "test_hooks.hpp"

namespace flatring::detail {

template class ConsumerCore<MpmcReader, true>;

using layout::RecordType;

namespace {
// A frame word with its takeover count (flags bits 0..6) bumped, so that a takeover CAS always
// changes the word and only one of several recoverers can win it. The stalled bit is kept.
constexpr std::uint64_t bump_takeovers(std::uint64_t w) noexcept {
  const std::uint64_t count = ((w & layout::kTakeoverMask) >> layout::kLengthBits) % 0x7F + 1;
  return (w & ~layout::kTakeoverMask) | (count << layout::kLengthBits);
}
}  // namespace

MpmcReader::MpmcReader(Ring ring, WaitOptions wait)
    : ConsumerCore(std::move(ring), Mode::mpmc, "Reader", wait) {
  // No claim yet: a recoverer looking for the owner of the record at the head must not take us.
  self_.slot().cursor.store(kNoClaim, std::memory_order_relaxed);
  // Other consumers and producers move the positions while we load them, only forward: take a
  // snapshot during which the head did not move, then check head <= next <= tail <= head +
  // capacity.
  std::uint64_t head = 0, next = 0, tail = 0;
  for (int attempt = 0;; ++attempt) {
    head = ctrl_->consumer.head.load(std::memory_order_acquire);
    next = ctrl_->consumer.next.load(std::memory_order_acquire);
    tail = ctrl_->producer.tail.load(std::memory_order_acquire);
    if (ctrl_->consumer.head.load(std::memory_order_acquire) == head || attempt == 1000) break;
  }
  if ((head | next | tail) & kAlignMask || next < head || tail < next || tail - head > capacity_) {
    throw_corrupt_state(ring_, "impossible positions: head " + std::to_string(head) + ", next " +
                                   std::to_string(next) + ", tail " + std::to_string(tail));
  }
  head_ = next;
  tail_cache_ = next;
}

Result<RecordView> MpmcReader::next() noexcept {
  // Bounded: every pass either returns, or skips a record (progress), or lost a race to another
  // consumer that made progress.
  for (int hop = 0; hop < 64; ++hop) {
    // Acquire: pairs with the claim CASes on `next`.
    const std::uint64_t r = ctrl_->consumer.next.load(std::memory_order_acquire);
    head_ = r;  // where a corrupt record is reported
    if ((r & kAlignMask) != 0) return corrupt();
    // Nothing at or past the tail is a record of this lap: never interpret a frame there.
    if (!covered(r, r + layout::kRecordHeaderSize)) {
      // Acquire: pairs with the producers' tail CASes.
      if (tail_cache_ == r || ctrl_->producer.tail.load(std::memory_order_acquire) == r) {
        return empty();
      }
      if (moved(r)) continue;
      return corrupt();
    }
    // SYNC POINT READ: pairs with the producer's commit (or padding / abandon) CAS.
    const auto [offset, d] = frame_at(r, std::memory_order_acquire, kMpFrames);
    switch (d.kind) {
      case Frame::empty: return empty();  // a claim still being written (or a dead one: recover)
      case Frame::in_flight:
        // claimed: still being written; done: an old lap's header over an unwritten claim.
        if (d.type == RecordType::claimed || d.type == RecordType::done) return empty();
        break;
      case Frame::record:
        if (!covered(r, r + d.extent)) break;
        if (!claim(r, d.extent)) continue;
        pass_wake_on(r + d.extent);
        return hold(offset, d.start, d.len, d.extent);
      case Frame::skip:
        if (!covered(r, r + d.extent)) break;
        if (!claim(r, d.extent)) continue;
        finish(r, d.extent, d.type == RecordType::abandoned);  // padding covers free (zero) space
        advance_head();  // producers may be waiting for exactly these bytes
        continue;
      case Frame::corrupt: break;
    }
    // Not a frame word this position can hold, unless what we read was stale.
    if (moved(r)) continue;
    return corrupt();
  }
  return empty();
}

bool MpmcReader::claim(std::uint64_t r, std::uint64_t extent) noexcept {
  // Release: a recoverer that loads our cursor (acquire) and finds it moved on also sees what we
  // wrote before (our previous record finished). The CAS publishes it with the claim.
  self_.slot().cursor.store(r, std::memory_order_release);
  // SYNC POINT: the claim. seq_cst: a sleeping consumer's seq_cst re-check reads `next`.
  if (ctrl_->consumer.next.compare_exchange_strong(r, r + extent, std::memory_order_seq_cst,
                                                   std::memory_order_relaxed)) {
    return true;
  }
  drop_cursor();
  return false;
}

void MpmcReader::drop_cursor() noexcept {
  // A cursor left on a claim we do not own (lost the CAS, backed off, or only marked a stalled
  // producer's claim) would make recovery wait for us instead of its owner. Release, as the
  // claim's cursor store (a plain store on x86).
  self_.slot().cursor.store(kNoClaim, std::memory_order_release);
}

bool MpmcReader::covered(std::uint64_t r, std::uint64_t end) noexcept {
  if (end <= tail_cache_) return true;
  // SYNC POINT READ: pairs with the producers' tail CAS (release).
  const std::uint64_t t = ctrl_->producer.tail.load(std::memory_order_acquire);
  if (t < r || t - r > capacity_) return false;
  tail_cache_ = t;
  return end <= t;
}

bool MpmcReader::moved(std::uint64_t r) const noexcept {
  // Acquire: pairs with the claim CASes on `next`.
  return ctrl_->consumer.next.load(std::memory_order_acquire) != r;
}

bool MpmcReader::ready(std::memory_order order) const noexcept {
  const std::uint64_t n = ctrl_->consumer.next.load(order);
  const std::uint64_t t = ctrl_->producer.tail.load(order);
  if (t <= n || t - n > capacity_) return false;  // nothing there, or impossible
  const std::uint64_t w = header_at(data_, n & mask_).frame.load(order);
  const auto type = layout::frame_type(w);
  return type == RecordType::data || type == RecordType::padding || type == RecordType::abandoned;
}

void MpmcReader::pass_wake_on(std::uint64_t pos) noexcept {
  // A commit wakes one consumer, but the one it wakes may find the record it was woken for taken,
  // or stuck behind a claim still being written, and the wake is spent. So a consumer that got a
  // record wakes one more sleeper when the next record is ready too. Relaxed: a hint; a wrong
  // guess costs one spurious wake-up or leaves the commit's own wake to do the work.
  if (ctrl_->data.waiters.load(std::memory_order_relaxed) == 0 || pos >= tail_cache_) return;
  const std::uint64_t w = header_at(data_, pos & mask_).frame.load(std::memory_order_relaxed);
  if (layout::frame_type(w) == RecordType::data) wake_sleepers(ctrl_->data, self_, 1, data_mark_);
}

void MpmcReader::finish(std::uint64_t pos, std::uint64_t extent, bool zero) noexcept {
  const std::uint64_t offset = pos & mask_;
  auto& h = header_at(data_, offset);
  if (zero) {
    // "Done with it, zeroing": a recoverer that finds this after our death finishes the zeroing
    // instead of delivering half-zeroed bytes again. The takeover count is kept: a record we took
    // over carries ours, and writing the word a slower recoverer loaded before our takeover (the
    // count-free one) would let its CAS win too, and it would zero what we free (ABA). Release: a
    // recoverer that loads this also sees our cursor on the record. The fence keeps the zeroing
    // after the mark in the order our stores land (costs nothing on x86).
    const std::uint64_t keep =
        h.frame.load(std::memory_order_relaxed) & layout::kTakeoverMask;  // ours
    h.frame.store(layout::make_frame(RecordType::releasing, extent) | keep,
                  std::memory_order_release);
    std::atomic_thread_fence(std::memory_order_release);
    FLATRING_TEST_HOOK(mid_release);
    ring_zero(data_ + offset + 8, extent - 8);
  }
  // The done record names its own position: free space keeps old done headers, and a freer must
  // not take one of those (a claim whose header was never written) for this lap's.
  store_aux(h, pos);
  // SYNC POINT WRITE: publishes the zeroes and the aux (release) to whoever frees this record.
  // The Dekker half against a freer's head CAS is the seq_cst fence in publish_position(), which
  // every finish is followed by: one fence per batch of records instead of one per record.
  h.frame.store(layout::make_frame(RecordType::done, extent), std::memory_order_release);
}

void MpmcReader::advance_head() noexcept {
  if (publish_position()) wake<kHandshake>(ctrl_->space, self_, false, INT_MAX, space_mark_);
}

bool MpmcReader::publish_position() noexcept {
  // The Dekker fence (docs/design-mp.md, "Why a finished record is always freed"): every done
  // store this consumer made before it (finish(), release) is ordered before the free loop's
  // seq_cst load of `head`. So either a freer's seq_cst load of one of those frames follows this
  // fence in the single total order (it sees done: C++20 [atomics.order]), or its head CAS
  // precedes the fence and our head load sees it. Every path that finishes a record reaches here
  // before it can wait or return to the caller: release(), poll()'s end, advance_head().
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return free_done_records(*ctrl_, data_, capacity_);
}

bool MpmcReader::consumer_alive_at(std::uint64_t pos) const noexcept {
  for (const auto& s : ctrl_->peers) {
    if (&s == &self_.slot()) continue;  // we hold nothing (recover() runs only when not holding)
    const std::uint32_t pid = s.pid.load(std::memory_order_acquire);
    if (pid == 0 || pid == layout::kReaping ||
        s.role.load(std::memory_order_acquire) !=
            static_cast<std::uint32_t>(layout::Role::consumer)) {
      continue;
    }
    // Acquire: pairs with the cursor's release store (see MpmcReader::claim); seq_cst: the
    // recoverers' mutual exclusion in recover_head (store own cursor, then load the others').
    if (s.cursor.load(std::memory_order_seq_cst) == pos &&
        is_alive(ProcessToken{pid, s.start_time.load(std::memory_order_relaxed)})) {
      return true;
    }
  }
  return false;
}

Status MpmcReader::corrupt_unless_moved(const std::atomic<std::uint64_t>& pos,
                                        std::uint64_t seen) noexcept {
  // Others move head and next forward while we look: what we checked may be a mix of two moments.
  if (pos.load(std::memory_order_acquire) != seen) return Status::empty;
  head_ = seen;
  return corrupt().status();
}

Status MpmcReader::recover_head() noexcept {
  const std::uint64_t h = ctrl_->consumer.head.load(std::memory_order_seq_cst);
  // SYNC POINT READ: pairs with the claim CASes on `next` (one release sequence): the claimer's
  // cursor store, made before its CAS, is visible once we see `next` past its record.
  const std::uint64_t r = ctrl_->consumer.next.load(std::memory_order_seq_cst);
  if (h >= r) return Status::empty;  // nothing held
  auto stale_or_corrupt = [&] { return corrupt_unless_moved(ctrl_->consumer.head, h); };
  if (r - h > capacity_ || (h & kAlignMask) != 0) return stale_or_corrupt();
  const std::uint64_t offset = h & mask_;
  const std::uint64_t to_end = capacity_ - offset;
  auto& hd = header_at(data_, offset);
  std::uint64_t w = hd.frame.load(std::memory_order_acquire);
  const auto type = layout::frame_type(w);
  // Below `next`, a header nobody wrote in this lap (0, an old done, or the producer's claimed)
  // is a producer's claim that a consumer took to skip it and died before marking it.
  const bool unwritten = type == RecordType::claimed || unwritten_header(hd, w, h);
  if (type == RecordType::done && !unwritten) {  // its consumer died between finishing and freeing
    const std::uint64_t extent = layout::frame_length(w);
    if (layout::frame_flags(w) != 0 || extent < layout::kRecordAlign ||
        (extent & kAlignMask) != 0 || extent > to_end || extent > r - h) {
      return stale_or_corrupt();  // the free loop stops at it: say so instead of "empty" for good
    }
    advance_head();
    return Status::empty;
  }
  if (!unwritten && type != RecordType::data && type != RecordType::releasing &&
      type != RecordType::padding && type != RecordType::abandoned) {
    return stale_or_corrupt();
  }
  if (type == RecordType::abandoned && (w & layout::kStalledFlag) != 0 &&
      (w & layout::kTakeoverMask) == 0) {
    // Skipped after the claim timeout: its producer finishes it (MpWriter::commit/abort), unless
    // it died. Its cursor still names the claim until it claims again, which is after finishing.
    if (producer_cursors(*ctrl_, h).owner_alive) return Status::empty;
  } else if (consumer_alive_at(h)) {
    // The owner is the consumer whose cursor is `h`: it moves its cursor only after it finished
    // the record (then the frame is done). A live one is still working on it.
    return Status::empty;
  }

  // The owner is dead. Take the record over: name ourselves its owner first (in case we die too),
  // then change the frame word so no other recoverer can also take it.
  std::uint64_t mine = 0;
  std::uint64_t extent = 0;
  bool stalled = false;
  if (unwritten) {
    // Measured as a dead producer's claim, up to `next`. The stops are every peer's cursor: the
    // next claim may be unwritten too (another recoverer's, between its claim and its mark), and
    // merging it would zero what that one is about to mark.
    extent = dead_claim_extent(data_, mask_, h, w, std::min(r - h, to_end), max_record_,
                               peer_cursors(*ctrl_, self_.slot()));
    if (extent == 0) return stale_or_corrupt();
    // A `claimed` header whose producer lives: a stalled claim, which that producer finishes.
    stalled = type == RecordType::claimed && producer_cursors(*ctrl_, h).owner_alive;
    mine = layout::make_frame(RecordType::abandoned, extent - layout::kRecordHeaderSize) |
           (stalled ? layout::kStalledFlag : 0);
  } else {
    mine = bump_takeovers(w);
  }
  auto give_up = [&] {
    drop_cursor();
    return Status::empty;
  };
  self_.slot().cursor.store(h, std::memory_order_seq_cst);
  // Recoverers exclude each other (Dekker): each stores its cursor, then looks for another live
  // one on the same position, both seq_cst, so of two that overlap at least one sees the other and
  // backs off (both may; the next recovery round retries). So while our cursor is `h`, nobody else
  // takes over, finishes or frees the record at `h`: with the head check below, the head stays at
  // `h` until we are done, and the CAS cannot hit a later lap's word (an unwritten header is 0,
  // which any zero word of a later record would match).
  if (consumer_alive_at(h)) return give_up();
  if (ctrl_->consumer.head.load(std::memory_order_seq_cst) != h) return give_up();
  if (!hd.frame.compare_exchange_strong(w, mine, std::memory_order_seq_cst,
                                        std::memory_order_relaxed)) {
    return give_up();  // another recoverer won, or the record changed
  }
  // An old done word looks like the done word another recoverer just stored when it finished this
  // very claim (same extent): then its aux names `h` (ordered by the CAS, which read that store).
  const bool finished_meanwhile = type == RecordType::done && load_aux(hd) == h;
  if (finished_meanwhile || ctrl_->consumer.head.load(std::memory_order_seq_cst) != h) {
    // The head moved between our check and the CAS: the word belonged to a later lap. Put it back
    // (fails harmlessly if its owner has written it since).
    std::uint64_t back = mine;
    hd.frame.compare_exchange_strong(back, w, std::memory_order_seq_cst, std::memory_order_relaxed);
    return give_up();
  }
  self_.count(layout::abandoned_records);
  head_ = h;
  if (unwritten) {  // a producer's claim, skipped: abandoned, as the consumer that died would have
    if (!stalled) {
      finish(h, extent, true);
      advance_head();
    } else {
      drop_cursor();  // its live producer finishes it
    }
    last_status_ = Status::abandoned;
    return Status::abandoned;
  }
  const std::uint64_t len = layout::frame_length(w);
  switch (type) {
    case RecordType::data: {
      const std::uint64_t aux = load_aux(hd);
      extent = aux & ~layout::kAuxFlags;
      std::uint64_t start = 0;
      if (len > max_record_ || extent < layout::frame_size(len) || extent > to_end ||
          (extent & kAlignMask) != 0 || extent > r - h ||
          (aux & layout::kAuxFlags & ~layout::kOffsetFlag) != 0 ||
          !payload_start(hd, aux, len, start)) {
        return corrupt().status();
      }
      hold(offset, start, len - start, extent, /*redelivered=*/true);
      return Status::ok;
    }
    case RecordType::releasing: {  // the dead consumer was done with it: finish the zeroing
      if (len < layout::kRecordAlign || len > to_end || (len & kAlignMask) != 0 || len > r - h) {
        return corrupt().status();
      }
      finish(h, len, true);
      break;
    }
    default: {  // padding or abandoned, claimed but not finished (or a stalled producer's, dead)
      extent = len + layout::kRecordHeaderSize;
      if (extent > to_end || (extent & kAlignMask) != 0 || extent > r - h)
        return corrupt().status();
      finish(h, extent, type == RecordType::abandoned);
      break;
    }
  }
  advance_head();
  return Status::empty;
}

Status MpmcReader::unblock_claim() noexcept {
  const std::uint64_t r = ctrl_->consumer.next.load(std::memory_order_acquire);
  // SYNC POINT READ: pairs with the tail CASes (one release sequence): the owner's cursor store,
  // made before its CAS, is visible once we see a tail past its claim.
  const std::uint64_t t = ctrl_->producer.tail.load(std::memory_order_acquire);
  if (t == r) return Status::empty;  // nothing claimed
  if (t < r || t - r > capacity_ || ((t | r) & kAlignMask) != 0) {
    return corrupt_unless_moved(ctrl_->consumer.next, r);
  }
  const std::uint64_t offset = r & mask_;
  auto& hd = header_at(data_, offset);
  std::uint64_t w = hd.frame.load(std::memory_order_acquire);
  const auto type = layout::frame_type(w);
  if (w != 0 && type != RecordType::claimed && type != RecordType::done) return Status::ok;

  const ProducerCursors producers = producer_cursors(*ctrl_, r);
  const bool stalled = producers.owner_alive;
  if (stalled && !claim_timed_out(r, type)) return Status::empty;
  // A producer that moved its cursor on had written this claim first (its cursor store is a
  // release of that write, and producer_cursors loads it with acquire): if the word changed since
  // `w`, the owner was alive and committed or aborted; read it again instead.
  if (hd.frame.load(std::memory_order_acquire) != w) return Status::ok;
  // The owner is dead, or alive and past the claim timeout. How far does its claim reach?
  const std::uint64_t extent = dead_claim_extent(
      data_, mask_, r, w, std::min(t - r, capacity_ - offset), max_record_, producers.others);
  if (extent == 0) return corrupt_unless_moved(ctrl_->consumer.next, r);
  // Claim it like a record: from here on it is ours alone and cannot be reused under us.
  if (!claim(r, extent)) return Status::empty;
  FLATRING_TEST_HOOK(mid_unblock);
  // A stalled producer's claim is only marked: the producer may still be writing into it, so
  // the producer finishes (zeroes and frees) it when its commit or abort finds the mark.
  const std::uint64_t mark =
      layout::make_frame(RecordType::abandoned, extent - layout::kRecordHeaderSize) |
      (stalled ? layout::kStalledFlag : 0);
  // Fails only if the producer committed after all: then deliver the record.
  if (!hd.frame.compare_exchange_strong(w, mark, std::memory_order_acq_rel,
                                        std::memory_order_acquire)) {
    head_ = r;
    const std::uint64_t len = layout::frame_length(w);
    if (layout::frame_type(w) == RecordType::abandoned && layout::frame_flags(w) == 0 &&
        len + layout::kRecordHeaderSize == extent) {
      // The (stalled, live) producer aborted it meanwhile: an ordinary abandoned record.
      finish(r, extent, true);
      advance_head();
      last_status_ = Status::abandoned;
      return Status::abandoned;
    }
    const std::uint64_t aux = load_aux(hd);
    std::uint64_t start = 0;
    if (layout::frame_type(w) == RecordType::data && layout::frame_flags(w) == 0 &&
        len <= max_record_ && (aux & ~layout::kOffsetFlag) == extent &&
        layout::frame_size(len) <= extent && payload_start(hd, aux, len, start)) {
      hold(offset, start, len - start, extent);
      return Status::ok;
    }
    finish(r, extent, true);  // not a record we can deliver: drop it, zeroed
    advance_head();
    return corrupt().status();
  }
  if (!stalled) {
    finish(r, extent, true);
    advance_head();
  } else {
    drop_cursor();  // its live producer finishes it
  }
  self_.count(layout::abandoned_records);
  last_status_ = Status::abandoned;
  return Status::abandoned;
}

bool MpmcReader::claim_timed_out(std::uint64_t r, RecordType type) noexcept {
  // Only a claim whose header is written: before that, the producer's header store could land
  // on our mark. Its window is a few instructions after the tail CAS.
  if (type != RecordType::claimed || wait_.claim_timeout <= std::chrono::nanoseconds::zero())
    return false;
  const auto now = Clock::now();
  if (stall_at_ != r) {
    stall_at_ = r;
    stall_since_ = now;
    return false;
  }
  return now - stall_since_ >= wait_.claim_timeout;
}

Status MpmcReader::recover_step() noexcept {
  advance_head();  // records a dead consumer finished but did not free
  const Status h = recover_head();
  if (h != Status::empty) return h;
  return unblock_claim();
}

}  // namespace flatring::detail
