// The endpoint skeleton: what every ring mode's producer and consumer share.
//
//   Writer<Mode M>  = ProducerCore + M's producer policy  (spsc.hpp, broadcast.hpp, mpsc.hpp)
//   Reader<Mode M>  = ConsumerCore + M's consumer policy  (spsc.hpp, broadcast.hpp, mpsc.hpp,
//                                                           mpmc.hpp)
//
// The cores hold everything that does not depend on the mode: the reservation state and its
// too_large / invalid_state checks, copy-in, the held record, batched polling, statistics, the
// frame decoder, the waker's half of the sleep handshake, the blocking loop (src/block.hpp), the
// liveness check and the recovery verb. A mode's policy supplies only its protocol: how a producer
// claims and publishes, how a consumer decodes the next record, steps past it and publishes its
// position, and what its recovery does. docs/design.md walks through the skeleton first and then
// each mode as a policy on it.
//
// Record format (layout.hpp): a 16-byte header whose first word is the commit word
// `frame = (type << 56) | payload_length`, then the payload, padded to 16 bytes. Positions are
// 64-bit byte counters that only grow; the offset in the ring is `position & (capacity - 1)`. At
// 100 GB/s a 64-bit counter wraps after 5.8 years of continuous traffic, so counter wrap-around is
// not handled.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>

#include "flatring/layout.hpp"
#include "flatring/mode.hpp"
#include "flatring/segment.hpp"
#include "flatring/status.hpp"
#include "flatring/wait.hpp"

#ifndef FLATRING_HOT_COUNTERS
#define FLATRING_HOT_COUNTERS 1
#endif

#ifndef FLATRING_TSAN
#if defined(__SANITIZE_THREAD__)
#define FLATRING_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define FLATRING_TSAN 1
#endif
#endif
#endif
#ifndef FLATRING_TSAN
#define FLATRING_TSAN 0
#endif

namespace flatring {

/// Whether the per-record counters (records and bytes written/read) are kept, in every mode.
/// Always on in normal builds; the CMake option FLATRING_COUNTERS=OFF turns them off only so that
/// flatring-bench can show what they cost (docs/benchmarks.md). Statistics tests need them on.
inline constexpr bool kHotCounters = FLATRING_HOT_COUNTERS != 0;

/// Tuning for blocking calls.
struct WaitOptions {
  /// How long a blocking call polls before it sleeps on the futex. Spinning answers in well under
  /// a microsecond when the peer is on another core; sleeping costs a syscall and a wake-up.
  std::chrono::nanoseconds spin = std::chrono::microseconds(50);
  /// How often a sleeper wakes to check that its peers are alive (so a dead peer is reported
  /// rather than waited on until the timeout), and to run the mode's recovery step.
  std::chrono::nanoseconds liveness_interval = std::chrono::milliseconds(100);
  /// mpmc consumers only: a claim at the read position whose producer is alive but has not
  /// committed for this long is skipped (Status::abandoned), so a stalled producer cannot hold
  /// the consumers up. Its space is freed only once that producer finishes (its commit then
  /// returns abandoned) or dies. Checked at the liveness interval. 0 (the default): never skip a
  /// live producer's claim.
  std::chrono::nanoseconds claim_timeout = std::chrono::nanoseconds::zero();
};

/// A committed record, as seen by a Reader. `bytes` points into the shared ring (read-only mapping
/// in spsc and broadcast) and is valid until the record is released.
struct RecordView {
  std::span<const std::byte> bytes;
  std::uint64_t position = 0;  ///< ring position of the record's header
  /// mpmc only: a consumer died holding this record and it is delivered again, to this consumer
  /// (at-least-once). Always false in the other modes.
  bool redelivered = false;
};

/// The endpoint types of each mode; specialized by the mode headers.
template <Mode M>
struct ModeEndpoints;
template <class W, class R>
struct EndpointPair {
  using writer = W;
  using reader = R;
};

/// The producer of a ring of mode M: try_write / write (copy in), try_reserve / reserve + commit /
/// abort (zero copy). Not thread-safe: \pre every method is called from one thread at a time.
template <Mode M = Mode::spsc>
using Writer = typename ModeEndpoints<M>::writer;
/// A consumer of a ring of mode M: try_read / read + release, poll (batches), recover. Not
/// thread-safe: \pre every method is called from one thread at a time.
template <Mode M = Mode::spsc>
using Reader = typename ModeEndpoints<M>::reader;

namespace detail {

inline layout::RecordHeader& header_at(std::byte* base, std::uint64_t offset) noexcept {
  return *reinterpret_cast<layout::RecordHeader*>(base + offset);
}
inline const layout::RecordHeader& header_at(const std::byte* base, std::uint64_t offset) noexcept {
  return *reinterpret_cast<const layout::RecordHeader*>(base + offset);
}

/// The aux word of a record header, as a relaxed atomic: ordered by the frame word's acquire or
/// release next to it, and atomic so that a stale reader racing a newer lap's writer is a race
/// between atomics (mpsc/mpmc: the record's extent; a done mpmc record: its own position).
inline std::uint64_t load_aux(const layout::RecordHeader& h) noexcept {
  return __atomic_load_n(&h.aux, __ATOMIC_RELAXED);
}
inline void store_aux(layout::RecordHeader& h, std::uint64_t v) noexcept {
  __atomic_store_n(&h.aux, v, __ATOMIC_RELAXED);
}

/// Copies into ring memory that is not yet published. Under ThreadSanitizer the copy is made of
/// relaxed atomic word stores: an mpmc consumer that was preempted may load a frame word at a
/// stale position that by then lies inside a newer record (it discards what it read, see
/// docs/design-mp.md), and TSan must see that benign race as what it is, a race between atomics.
/// Other builds use memcpy.
inline void ring_copy(std::byte* to, const std::byte* from, std::size_t n) noexcept {
#if FLATRING_TSAN
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t v;
    std::memcpy(&v, from + i, 8);
    __atomic_store_n(reinterpret_cast<std::uint64_t*>(to + i), v, __ATOMIC_RELAXED);
  }
  for (; i < n; ++i) {
    __atomic_store_n(reinterpret_cast<unsigned char*>(to + i), static_cast<unsigned char>(from[i]),
                     __ATOMIC_RELAXED);
  }
#else
  if (n != 0) std::memcpy(to, from, n);
#endif
}

/// Zeroes ring memory, with the same ThreadSanitizer treatment as ring_copy. \pre `to` is 8-byte
/// aligned and `n` a multiple of 8 (ring positions are 16-byte aligned).
inline void ring_zero(std::byte* to, std::size_t n) noexcept {
#if FLATRING_TSAN
  for (std::size_t i = 0; i < n; i += 8) {
    __atomic_store_n(reinterpret_cast<std::uint64_t*>(to + i), std::uint64_t{0}, __ATOMIC_RELAXED);
  }
#else
  std::memset(to, 0, n);
#endif
}

using Clock = std::chrono::steady_clock;

inline Clock::time_point deadline_after(std::chrono::nanoseconds timeout) noexcept {
  auto now = Clock::now();
  if (timeout > Clock::time_point::max() - now) return Clock::time_point::max();
  return now + std::chrono::duration_cast<Clock::duration>(timeout);
}

inline constexpr std::uint64_t kAlignMask = layout::kRecordAlign - 1;

// ---------------------------------------------------------------- the frame decoder

/// What a frame word at a read position says, once checked.
enum class Frame : std::uint8_t {
  empty,      ///< 0: nothing written here yet
  record,     ///< a data record: `len` payload bytes, `extent` ring bytes
  skip,       ///< padding or abandoned: step over `extent` bytes
  in_flight,  ///< claimed, releasing or done: the mode decides (mpsc/mpmc protocol words)
  corrupt,    ///< not a frame word this mode can hold here
};

struct Decoded {
  Frame kind = Frame::corrupt;
  layout::RecordType type{};
  std::uint64_t len = 0;     ///< a record: its bytes (after `start`); otherwise the frame length
  std::uint64_t extent = 0;  ///< ring bytes from the header to the next record
  std::uint64_t start = 0;   ///< a record built in place: where its bytes start in the payload
};

/// Where the bytes of a data record start in its payload area, from its aux word and frame length
/// `len` (both loaded once, and checked by the caller against the ring): 0, or the offset word of a
/// record built in place (layout::kOffsetFlag), loaded once and checked. false: corrupt.
inline bool payload_start(const layout::RecordHeader& h, std::uint64_t aux, std::uint64_t len,
                          std::uint64_t& start) noexcept {
  start = 0;
  if ((aux & layout::kOffsetFlag) == 0) return true;
  if (len < layout::kMinOffset) return false;
  // The first payload word, written before the commit the caller acquired (like aux). Atomic
  // for the same reason as load_aux: a stale mpmc reader may race a later lap's writer.
  const auto* word = reinterpret_cast<const std::uint64_t*>(&h + 1);
  const std::uint64_t o = __atomic_load_n(word, __ATOMIC_RELAXED);
  if (o < layout::kMinOffset || o > len || (o & kAlignMask) != 0) return false;
  start = o;
  return true;
}

/// The format rules that differ between modes.
struct FrameRules {
  /// mpsc/mpmc: a record's extent is in its aux word (a producer may commit fewer bytes than it
  /// claimed); spsc/broadcast: the extent is frame_size(len).
  bool aux_extent = false;
  /// mpsc/mpmc: abandoned records exist (a producer gave its claim up or died).
  bool abandoned = false;
};

/// The one frame decoder: every reader, and the spsc producer's resume walk, interpret frame words
/// only through it. `w` was loaded once by the caller (with the ordering its protocol needs);
/// `to_end` is the bytes from the record's offset to the end of the ring. Every length is checked
/// against the ring's limits before it is returned, so a caller never reads past the mapping.
inline Decoded decode_frame(const layout::RecordHeader& h, std::uint64_t w, std::uint64_t to_end,
                            std::uint64_t max_record, FrameRules rules) noexcept {
  using layout::RecordType;
  if (w == 0) return {Frame::empty};
  const RecordType type = layout::frame_type(w);
  const std::uint64_t len = layout::frame_length(w);
  if (type == RecordType::claimed || type == RecordType::releasing || type == RecordType::done) {
    return {Frame::in_flight, type, len, 0};
  }
  if (layout::frame_flags(w) != 0) return {Frame::corrupt, type};
  switch (type) {
    case RecordType::data: {
      if (len > max_record) return {Frame::corrupt, type};
      const std::uint64_t frame = layout::frame_size(len);
      // Written before the commit the caller acquired: the extent (mpsc/mpmc) and flags.
      const std::uint64_t aux = load_aux(h);
      const std::uint64_t extent = rules.aux_extent ? aux & ~layout::kAuxFlags : frame;
      if ((!rules.aux_extent && (aux & ~layout::kAuxFlags) != 0) ||
          (aux & layout::kAuxFlags & ~layout::kOffsetFlag) != 0) {
        return {Frame::corrupt, type};
      }
      if (extent < frame || extent > to_end || (extent & kAlignMask) != 0) {
        return {Frame::corrupt, type};
      }
      std::uint64_t start = 0;
      if (!payload_start(h, aux, len, start)) return {Frame::corrupt, type};
      return {Frame::record, type, len - start, extent, start};
    }
    case RecordType::padding: {
      const std::uint64_t extent = len + layout::kRecordHeaderSize;
      if (extent != to_end) return {Frame::corrupt, type};
      return {Frame::skip, type, len, extent};
    }
    case RecordType::abandoned: {
      const std::uint64_t extent = len + layout::kRecordHeaderSize;
      if (!rules.abandoned || extent > to_end || (extent & kAlignMask) != 0) {
        return {Frame::corrupt, type};
      }
      return {Frame::skip, type, len, extent};
    }
    default: return {Frame::corrupt, type};
  }
}

// ---------------------------------------------------------------- waking

/// How a mode's sleep handshake (Dekker: publish progress, fence, load `waiters` / bump `waiters`,
/// fence, re-check progress) gets its store-load fences.
enum class Handshake : std::uint8_t {
  /// spsc: a compiler-only fence on the waker's hot path, membarrier(2) on the sleeper's way to
  /// sleep (wait.hpp), so a commit is a plain store.
  asymmetric,
  /// multi-party modes: the waker's publication is a seq_cst store or CAS (a locked instruction
  /// anyway) and its load of `waiters` is seq_cst; the sleeper's re-check is seq_cst.
  seq_cst,
};

/// Signals the WaitFd waiters whose bits are set in `w.notify` (one when `count` is 1, else all):
/// claims the bits, sends each claimed slot one datagram and takes their count off `waiters`.
/// src/wait_fd.cpp. Called by wake_sleepers only, when a bit was seen.
void notify_armed(layout::WaitLine& w, const Attachment& self, int count) noexcept;

/// A waker's memory of its last FUTEX_WAKE on one wait line: process-local, one per endpoint and
/// line. Every sleeper bumps the line's futex word as it registers (sleep_on) and sleeps on the
/// value of its own bump, and every value is written once, so a word still holding the value our
/// last wake wrote means that nobody registered since. When that wake covered every sleeper then
/// registered (`all`), a second FUTEX_WAKE would find nobody new: the waker skips it. Without this
/// a producer paid one futex(2) per commit from its wake until the woken consumer had run far
/// enough to take its count off `waiters` (up to a whole batch of records).
struct WakeMark {
  std::uint32_t futex = 0;
  bool all = false;
};

/// Wakes up to `count` sleepers, WaitFd and futex ones. Called only when `waiters` was seen
/// non-zero.
inline void wake_sleepers(layout::WaitLine& w, const Attachment& self, int count,
                          WakeMark& mark) noexcept {
  // Acquire: the caller saw `waiters` non-zero (a relaxed or seq_cst load); a waiter bumps it
  // (release) after its notify bit, its `sleepers` count and its bump of `futex`, so those of any
  // waiter we counted are visible here. A waiter we did not count re-checks after registering
  // and sees our progress.
  std::atomic_thread_fence(std::memory_order_acquire);
  // The fd waiters first: their datagram is the longer way to a wake-up.
  if (w.notify.load(std::memory_order_relaxed) != 0) notify_armed(w, self, count);
  if (w.sleepers.load(std::memory_order_relaxed) == 0) return;
  // Every futex sleeper we counted bumped `futex` before `waiters`: a word still at our mark
  // means each of them registered before our last wake, which reached them all.
  if (mark.all && w.futex.load(std::memory_order_relaxed) == mark.futex) return;
  // Acq_rel: pairs with the sleeper's acquire load of the futex word before it re-checks
  // (release), and reads from every earlier sleeper's bump (acquire), so that `sleepers` below
  // counts each sleeper that registered before this wake.
  mark.futex = w.futex.fetch_add(1, std::memory_order_acq_rel) + 1;
  mark.all = count >= static_cast<int>(w.sleepers.load(std::memory_order_relaxed));
  wait::futex_wake(w.futex, count);
  self.count(layout::futex_wakes);
}

/// The waker's half of the handshake, after it published its progress: wakes `count` sleepers on
/// `line` if anyone sleeps there. No syscall unless someone does, and none again for sleepers an
/// earlier wake already reached (`mark`).
template <Handshake H>
inline void wake(layout::WaitLine& line, const Attachment& self, bool fast_fence, int count,
                 WakeMark& mark) noexcept {
  if constexpr (H == Handshake::asymmetric) {
    // Dekker partner of the sleeper's waiters.fetch_add + sleeper_fence. Relaxed is enough after
    // the waker fence: the fence pair orders it after the progress store for any sleeper.
    wait::waker_fence(fast_fence);
    if (line.waiters.load(std::memory_order_relaxed) != 0) wake_sleepers(line, self, count, mark);
  } else {
    // seq_cst: Dekker partner of the sleeper's seq_cst waiters.fetch_add, after our seq_cst store.
    if (line.waiters.load(std::memory_order_seq_cst) != 0) wake_sleepers(line, self, count, mark);
  }
}

// ---------------------------------------------------------------- waiting from outside

/// What WaitFd and WaitSet need of an endpoint, type-erased: its wait line, the handshake, a
/// readiness test (the sleeper's re-check) and the checks a blocked call runs every liveness
/// interval. Made by ProducerCore/ConsumerCore::wait_target(); valid while the endpoint lives and
/// is not moved. Use it from the endpoint's thread only.
struct WaitTarget {
  void* endpoint = nullptr;
  /// A retry of the endpoint's try_ call may succeed (with seq_cst: the handshake's re-check).
  bool (*ready)(void* endpoint, std::uint64_t bytes, std::memory_order order) = nullptr;
  /// The liveness-interval step: `idle` means "keep waiting"; ok "retry now"; anything else is
  /// the outcome (peer_dead, no_consumer, abandoned, ...). `force` runs the mode's recovery step
  /// even if it ran within the last half interval. segment_lost is reported by the caller.
  Status (*check)(void* endpoint, bool force) = nullptr;
  layout::WaitLine* line = nullptr;
  const Attachment* self = nullptr;
  Handshake handshake = Handshake::seq_cst;
  /// The role on the other side of `line`: whose death ends the wait.
  layout::Role peer = layout::Role::none;
  /// A second role whose death leaves the mode's recovery work (none: no such role). An mpmc
  /// consumer's: the other consumers, whose held records a dead one leaves at the head.
  layout::Role peer_too = layout::Role::none;
  /// How often `check` is due while the endpoint waits (WaitOptions::liveness_interval).
  std::chrono::nanoseconds interval{};
  /// What the endpoint's try_ call says while it must wait: empty (readers) or full (writers).
  Status idle = Status::empty;
  /// Payload bytes a writer waits to have room for (readers: unused).
  std::uint64_t bytes = 0;
  /// Set while a WaitFd is bound to this endpoint (one at a time); lives in the endpoint.
  bool* has_wait_fd = nullptr;
};

// ---------------------------------------------------------------- statistics

/// An endpoint's running totals, stored into its own PeerSlot with plain relaxed stores (single
/// writer, own line: no read-modify-write, no sharing). Off with FLATRING_COUNTERS=OFF.
struct Tally {
  std::uint64_t records = 0;
  std::uint64_t bytes = 0;

  void add(std::uint64_t n) noexcept {
    ++records;
    bytes += n;
  }
  void store(const Attachment& self, layout::Counter records_c,
             layout::Counter bytes_c) const noexcept {
    if constexpr (kHotCounters) {
      self.slot().counter[records_c].store(records, std::memory_order_relaxed);
      self.slot().counter[bytes_c].store(bytes, std::memory_order_relaxed);
    }
  }
};

/// Who must be alive for a blocked endpoint to go on waiting (the one liveness check, run once per
/// WaitOptions::liveness_interval by the blocking loop).
enum class PeerRule : std::uint8_t {
  /// A producer waiting for space: dead consumers are reclaimed; none left alive is peer_dead (one
  /// died) or no_consumer (none attached).
  needs_consumer,
  /// The broadcast producer: dead consumers are reclaimed so that they stop holding it back; with
  /// none attached it never waits (nobody is there to lose anything).
  lossless,
  /// A consumer waiting for records, once it has read everything there is: no live producer left
  /// is peer_dead when one died or one was seen attached before; before any producer came it
  /// waits on.
  needs_producer,
};

/// The one liveness check. ok: keep waiting (or retry); otherwise the outcome to report.
/// `seen_producer` remembers, for needs_producer, that a live producer was once seen.
[[nodiscard]] Status check_peers(const Ring& ring, PeerRule rule, bool& seen_producer) noexcept;

[[noreturn]] void throw_corrupt_state(const Ring& ring, const std::string& what);
/// \throws Error(wrong_mode) unless `ring` has mode `want`. `who` names the endpoint.
void require_mode(const Ring& ring, Mode want, const char* who);

// ---------------------------------------------------------------- the producer core

/// The producer side every mode shares. `Policy` (CRTP) supplies, privately (befriend the core):
///   static constexpr Handshake kHandshake; static constexpr PeerRule kPeerRule;
///   static constexpr int kWakeCount;                  consumers woken per commit
///   Result<std::byte*> claim(std::uint64_t n)          room for n payload bytes, or why not
///   Status publish(std::uint64_t reserved, std::uint64_t used, std::uint64_t aux_flags)
///                                                     ok, or abandoned; aux_flags go into aux
///   void withdraw(std::uint64_t reserved)             abort the claim
///   bool room(std::uint64_t n, std::memory_order)     a retry of claim(n) may succeed
///   static void copy_in(std::byte*, std::span<const std::byte>)
template <class Policy>
class ProducerCore {
 public:
  /// Copies `payload` in as one record. ok, full, too_large, corrupt (a peer published impossible
  /// positions), abandoned (mpsc/mpmc: the consumers gave the claim up; nothing was delivered),
  /// segment_lost. Never blocks, never makes a syscall unless a consumer sleeps.
  [[nodiscard]] Status try_write(std::span<const std::byte> payload) noexcept {
    auto r = try_reserve(payload.size());
    if (!r) return r.status();
    Policy::copy_in(r->data(), payload);
    return commit(payload.size());
  }

  /// Like try_write, but waits (spin, then futex) up to `timeout` for space. Extra outcomes:
  /// timed_out; no_consumer (full and no live consumer attached); peer_dead (the consumer died;
  /// its slot was reclaimed). The broadcast producer waits for the slowest live consumer only.
  [[nodiscard]] Status write(std::span<const std::byte> payload, std::chrono::nanoseconds timeout) {
    auto r = reserve(payload.size(), timeout);
    if (!r) return r.status();
    Policy::copy_in(r->data(), payload);
    return commit(payload.size());
  }

  /// Reserves room for a record of up to `n` bytes and returns the writable payload area (16-byte
  /// aligned) in the ring. Follow with commit(used <= n) or abort(). Nothing is visible to a
  /// consumer until commit (mpsc/mpmc: the consumers wait at this claim until then).
  [[nodiscard]] Result<std::span<std::byte>> try_reserve(std::size_t n) noexcept {
    if (reserved_ != kNone) return Status::invalid_state;
    if (n > max_record_) {
      self_.count(layout::too_large);
      return Status::too_large;
    }
    const Result<std::byte*> at = policy().claim(n);
    if (!at) return ring_.lost_fast() ? Status::segment_lost : at.status();
    reserved_ = n;
    reserved_at_ = *at;
    return std::span<std::byte>(*at, n);
  }

  /// try_reserve, waiting up to `timeout` for space (see write for the extra outcomes).
  [[nodiscard]] Result<std::span<std::byte>> reserve(std::size_t n,
                                                     std::chrono::nanoseconds timeout);

  /// Publishes the reserved record with `used` bytes of payload (used <= the reserved size).
  /// invalid_state without a reservation or with `used` too large; abandoned (mpsc/mpmc) if the
  /// consumers gave the claim up meanwhile (only done for producers found dead or stalled);
  /// segment_lost when the segment was lost (the record reached no consumer).
  Status commit(std::size_t used) noexcept {
    if (reserved_ == kNone || used > reserved_) return Status::invalid_state;
    return publish(used, 0);
  }

  /// Publishes a record that was written back to front into the reservation, as FlatBuffers'
  /// builder does (it finishes at the end of its block): the record is the `used - offset` bytes
  /// at `offset` in the reserved area. The first 8 bytes of the area are overwritten with
  /// `offset` (the record's offset word, layout::kOffsetFlag), and the `offset` bytes in front of
  /// the record stay in the ring as dead space until it is released. Consumers see exactly the
  /// `used - offset` bytes. invalid_state (the reservation is kept) unless
  /// layout::kMinOffset <= offset <= used <= the reserved size and offset is a multiple of 16
  /// (layout::kRecordAlign: every record a reader sees starts 16-byte aligned).
  Status commit_at(std::size_t offset, std::size_t used) noexcept {
    if (reserved_ == kNone || used > reserved_ || offset < layout::kMinOffset || offset > used ||
        (offset & detail::kAlignMask) != 0) {
      return Status::invalid_state;
    }
    // Relaxed: published by the commit word's store, like the payload (see payload_start).
    __atomic_store_n(reinterpret_cast<std::uint64_t*>(reserved_at_), std::uint64_t{offset},
                     __ATOMIC_RELAXED);
    return publish(used, offset);
  }

  /// Drops the reservation. Nothing becomes visible to a consumer.
  void abort() noexcept {
    if (reserved_ == kNone) return;
    const std::uint64_t reserved = reserved_;
    reserved_ = kNone;
    policy().withdraw(reserved);
  }

  /// For WaitFd and WaitSet: this producer as a thing to wait on, for room for `bytes` payload
  /// bytes (1: any space freed). \pre called from this producer's thread.
  [[nodiscard]] WaitTarget wait_target(std::uint64_t bytes = 1) noexcept {
    WaitTarget t;
    t.endpoint = this;
    t.ready = [](void* e, std::uint64_t n, std::memory_order o) {
      return static_cast<ProducerCore*>(e)->policy().room(n, o);
    };
    t.check = [](void* e, bool) { return static_cast<ProducerCore*>(e)->wait_check(); };
    t.line = &ctrl_->space;
    t.self = &self_;
    t.handshake = Policy::kHandshake;
    t.peer = layout::Role::consumer;
    t.interval = wait_.liveness_interval;
    t.idle = Status::full;
    t.bytes = bytes;
    t.has_wait_fd = &has_wait_fd_;
    return t;
  }

  /// Position just past this producer's last claim (spsc/broadcast: the ring's tail).
  [[nodiscard]] std::uint64_t position() const noexcept { return tail_; }
  [[nodiscard]] std::uint64_t max_record_size() const noexcept { return max_record_; }
  [[nodiscard]] const Ring& ring() const noexcept { return ring_; }
  [[nodiscard]] const Attachment& attachment() const noexcept { return self_; }
  /// True when this producer took the role over from one that died (exclusive roles only).
  [[nodiscard]] bool took_over() const noexcept { return self_.took_over(); }

 protected:
  static constexpr std::uint64_t kNone = ~std::uint64_t{0};

  /// Attaches as a producer of `ring`. \throws Error(wrong_mode) unless the ring's mode is `mode`;
  /// Error(role_taken) for an exclusive role a live process holds; Error(no_free_slot).
  ProducerCore(Ring ring, Mode mode, const char* who, WaitOptions wait);

 private:
  // The commit of every mode: the mode's publish, then statistics and the wake-up.
  Status publish(std::uint64_t used, std::uint64_t offset) noexcept {
    const std::uint64_t reserved = reserved_;
    reserved_ = kNone;
    const Status s =
        policy().publish(reserved, used, offset != 0 ? layout::kOffsetFlag : std::uint64_t{0});
    if (s != Status::ok) return s;
    // A lost segment takes writes into private zero pages that no consumer sees: say so.
    if (ring_.lost_fast()) [[unlikely]]
      return Status::segment_lost;
    used -= offset;
    tally_.add(used);
    tally_.store(self_, layout::records_written, layout::bytes_written);
    wake<Policy::kHandshake>(ctrl_->data, self_, fast_fence_, Policy::kWakeCount, data_mark_);
    return Status::ok;
  }

 protected:
  Ring ring_;
  Attachment self_;
  WaitOptions wait_;
  layout::Control* ctrl_;
  std::byte* data_;
  std::uint64_t capacity_;
  std::uint64_t mask_;
  std::uint64_t max_record_;
  std::uint64_t tail_ = 0;
  std::uint64_t reserved_ = kNone;
  std::byte* reserved_at_ = nullptr;  // the reservation's payload area
  Tally tally_;
  WakeMark data_mark_;  // our last wake of consumers
  bool fast_fence_ = false;
  bool has_wait_fd_ = false;

  /// What a writer blocked for space checks every liveness interval: full (keep waiting) while a
  /// consumer that can free space lives; peer_dead / no_consumer otherwise.
  Status wait_check() noexcept {
    bool unused = false;
    const Status s = check_peers(ring_, Policy::kPeerRule, unused);
    return s == Status::ok ? Status::full : s;
  }

 private:
  Policy& policy() noexcept { return static_cast<Policy&>(*this); }
};

// ---------------------------------------------------------------- the consumer core

/// The consumer side every mode shares. `Writes` says whether it writes the record area (mpsc and
/// mpmc consumers zero what they consumed); spsc and broadcast consumers map it read-only.
/// `Policy` (CRTP) supplies, privately (befriend the core):
///   static constexpr Handshake kHandshake;
///   static constexpr bool kRecoversConsumers  a dead consumer leaves this mode's recovery work
///   Result<RecordView> next()            the record at the read position (via hold()), or why not
///   void step(std::uint64_t extent)      move head_ past `extent` bytes
///   bool publish_position()              publish head_; true if space may have been freed
///   bool ready(std::memory_order)        a retry of next() may find something
///   Status recover_step()                the mode's recovery (see recover())
///   Status on_interval()                 what a blocked read runs each liveness interval
///   bool drained()                       everything published has been read
template <class Policy, bool Writes>
class ConsumerCore {
 public:
  using Byte = std::conditional_t<Writes, std::byte, const std::byte>;

  /// The next committed record, without releasing it (calling again returns the same record).
  /// empty: nothing committed. corrupt: the length slot or positions at the read position are
  /// impossible; nothing is read and the reader stays put (see recover). abandoned (mpsc/mpmc):
  /// a claim given up was skipped. segment_lost: see Ring::lost.
  [[nodiscard]] Result<RecordView> try_read() noexcept {
    if (held_) return RecordView{held_view_, head_, held_redelivered_};
    Result<RecordView> r = policy().next();
    if (!r && ring_.lost_fast()) return Status::segment_lost;
    return r;
  }

  /// try_read, waiting (spin, then futex) up to `timeout` for a record. While it waits it runs the
  /// mode's recovery step every liveness interval (mpsc/mpmc: claims of dead producers, records
  /// of dead consumers). Extra outcomes: timed_out; abandoned (a dead producer's claim was
  /// skipped: call again for the next record); peer_dead (everything published has been read and
  /// no live producer is left: one died, or every producer that was attached is gone).
  [[nodiscard]] Result<RecordView> read(std::chrono::nanoseconds timeout);

  /// Releases the record returned by try_read/read, making its space free for the producers.
  void release() noexcept {
    if (!held_) return;
    consume_held();
    publish();
  }

  /// Deferred release, for a consumer that may free a record only once something outside the ring
  /// says it is safe (the bridge: the remote side committed and acknowledged it). Moves past the
  /// held record without freeing its space: the next try_read returns the record after it, while
  /// the bytes of every record kept stay valid and their space stays held (producers see it as
  /// used) until release_to() frees it. While records are kept, release() and poll() keep too.
  /// If this process dies, the next consumer resumes at the last released position and reads the
  /// kept records again. spsc, mpsc and broadcast; not mpmc, where a consumer holds one record.
  /// (A template, so that the constraint is checked at the call, once Policy is complete: clang 14
  /// checks a plain member's requires-clause when the CRTP base is instantiated.)
  template <class P = Policy>
  requires(P::kKeeps) void keep() noexcept {
    if (!held_) return;
    if (kept_from_ == kNotKept) kept_from_ = head_;
    head_ += held_frame_;  // no step(): mpsc zeroes what it steps past, release_to does that
    tally_.add(held_view_.size());
    held_ = false;
  }

  /// Frees the space of the kept records below ring position `end`: a position() read right
  /// after a keep(), so that it is a record boundary (clamped to position()). Publishes once.
  template <class P = Policy>
  requires(P::kKeeps) void release_to(std::uint64_t end) noexcept {
    if (kept_from_ == kNotKept || held_) return;
    end = std::min(end, head_);
    if (end <= kept_from_) return;
    const std::uint64_t ahead = head_;
    head_ = kept_from_;
    kept_from_ = kNotKept;  // so that step() zeroes and publish() publishes
    if constexpr (Writes) {
      // mpsc: zero the kept records front to back, as release() would have one by one. Their
      // frame words were checked when they were read; they are checked again (a producer may
      // scribble on held space), and a bad one stops the walk there: the ring is then corrupt.
      while (head_ < end) {
        const auto [offset, d] = frame_at(head_, std::memory_order_relaxed, Policy::kFrames);
        if ((d.kind != Frame::record && d.kind != Frame::skip) || d.extent > end - head_) break;
        policy().step(d.extent);
      }
    } else {
      head_ = end;
    }
    publish();
    if (head_ < ahead) kept_from_ = head_;
    head_ = ahead;
  }

  /// True while records are kept (see keep()).
  [[nodiscard]] bool keeping() const noexcept { return kept_from_ != kNotKept; }

  /// Position of the first kept record, or position() when nothing is kept.
  [[nodiscard]] std::uint64_t released_position() const noexcept {
    return kept_from_ == kNotKept ? head_ : kept_from_;
  }

  /// Calls `on_record(std::span<const std::byte>)` for up to `max` committed records, releasing
  /// each after the call, and publishes the position once at the end (one store for the whole
  /// batch). Returns the number of records delivered. Stops early at empty, corrupt or abandoned
  /// (last_status()). If `on_record` throws, the records before it are released (published) and
  /// the one it was given stays held: the next try_read or poll returns it again.
  template <class F>
  std::size_t poll(F&& on_record, std::size_t max) {
    std::size_t n = 0;
    try {
      while (n < max) {
        auto r = try_read();
        if (!r) break;
        on_record(r->bytes);
        consume_held();
        ++n;
      }
    } catch (...) {
      if (n != 0) publish();
      throw;
    }
    if (n != 0) publish();
    return n;
  }

  /// The recovery verb, the same in every mode: unsticks the read position. Makes syscalls
  /// (liveness); not for the hot path.
  ///  - spsc, broadcast: after `corrupt`, drops everything up to the producer's published tail
  ///    (validated); the records there are lost and counted as corrupt. abandoned when it
  ///    skipped something.
  ///  - mpsc: a claim at the read position whose producer is dead is skipped: abandoned; a
  ///    written frame there that does not decode (it cannot be measured) is corrupt.
  ///  - mpmc: frees records a dead consumer finished, takes over a record a dead consumer held
  ///    (ok: try_read returns it with `redelivered` set), or skips a dead producer's claim
  ///    (abandoned).
  /// ok: a record is ready; empty: nothing was stuck; corrupt: the state cannot be repaired here.
  Status recover() noexcept {
    if (held_) return Status::ok;
    return policy().recover_step();
  }

  /// For WaitFd and WaitSet: this consumer as a thing to wait on, for "a record may be there".
  /// \pre called from this consumer's thread.
  [[nodiscard]] WaitTarget wait_target() noexcept {
    WaitTarget t;
    t.endpoint = this;
    t.ready = [](void* e, std::uint64_t, std::memory_order o) {
      return static_cast<ConsumerCore*>(e)->held_ ||
             static_cast<ConsumerCore*>(e)->policy().ready(o);
    };
    t.check = [](void* e, bool force) {
      return static_cast<ConsumerCore*>(e)->wait_check(false, force);
    };
    t.line = &ctrl_->data;
    t.self = &self_;
    t.handshake = Policy::kHandshake;
    t.peer = layout::Role::producer;
    if constexpr (Policy::kRecoversConsumers) t.peer_too = layout::Role::consumer;
    t.interval = wait_.liveness_interval;
    t.idle = Status::empty;
    t.has_wait_fd = &has_wait_fd_;
    return t;
  }

  /// Status of the last read attempt that found no record (empty, corrupt, abandoned).
  [[nodiscard]] Status last_status() const noexcept { return last_status_; }
  /// Position of the next record to read.
  [[nodiscard]] std::uint64_t position() const noexcept { return head_; }
  [[nodiscard]] std::uint64_t max_record_size() const noexcept { return max_record_; }
  [[nodiscard]] const Ring& ring() const noexcept { return ring_; }
  [[nodiscard]] const Attachment& attachment() const noexcept { return self_; }
  /// True when this consumer took the role over from one that died (exclusive roles only).
  [[nodiscard]] bool took_over() const noexcept { return self_.took_over(); }

 protected:
  /// Attaches as a consumer of `ring`. \throws Error(wrong_mode) unless the ring's mode is
  /// `mode`; Error(role_taken) for an exclusive role a live process holds; Error(no_free_slot).
  ConsumerCore(Ring ring, Mode mode, const char* who, WaitOptions wait);

  Result<RecordView> corrupt() noexcept {
    if (corrupt_at_ != head_) {  // count each bad position once, however often it is polled
      corrupt_at_ = head_;
      self_.count(layout::corrupt_records);
    }
    last_status_ = Status::corrupt;
    return Status::corrupt;
  }

  Result<RecordView> empty() noexcept {
    last_status_ = Status::empty;
    return Status::empty;
  }

  /// The frame at ring position `pos`: its offset, and its frame word loaded once with `order`
  /// and decoded under `rules`. With acquire it is the SYNC POINT READ that pairs with the
  /// producer's commit of that frame word: the payload is visible after it.
  struct FrameAt {
    std::uint64_t offset;
    Decoded d;
  };
  FrameAt frame_at(std::uint64_t pos, std::memory_order order, FrameRules rules) const noexcept {
    const std::uint64_t offset = pos & mask_;
    const auto& h = header_at(data_, offset);
    return {offset, decode_frame(h, h.frame.load(order), capacity_ - offset, max_record_, rules)};
  }

  /// Holds the checked record of `len` payload bytes at `offset`, taking `extent` ring bytes.
  RecordView hold(std::uint64_t offset, std::uint64_t start, std::uint64_t len,
                  std::uint64_t extent, bool redelivered = false) noexcept {
    held_view_ =
        std::span<const std::byte>(data_ + offset + layout::kRecordHeaderSize + start, len);
    held_frame_ = extent;
    held_ = true;
    held_redelivered_ = redelivered;
    return RecordView{held_view_, head_, redelivered};
  }

  /// Publishes head_ (the mode's store), this consumer's statistics, and wakes producers waiting
  /// for space.
  void publish() noexcept {
    tally_.store(self_, layout::records_read, layout::bytes_read);
    if (kept_from_ != kNotKept) return;  // kept records hold their space until release_to()
    if (policy().publish_position()) {
      wake<Policy::kHandshake>(ctrl_->space, self_, fast_fence_, INT_MAX, space_mark_);
    }
  }

  /// The spsc and broadcast recovery step: after `corrupt`, drops everything up to the producer's
  /// published tail, which is untrusted: behind us, more than `max_ahead` ahead, or misaligned is
  /// corrupt. abandoned when it skipped something, ok when a record is ready, empty otherwise.
  Status skip_to_tail(std::uint64_t max_ahead) noexcept {
    const Result<RecordView> r = policy().next();
    if (r) return Status::ok;
    if (r.status() != Status::corrupt) return r.status();
    // Acquire: pairs with the producer's release store of tail (spsc: which follows the zeroing
    // of the frame word at it, so we then see "not yet" there, not last lap's bytes).
    const std::uint64_t t = ctrl_->producer.tail.load(std::memory_order_acquire);
    if (t <= head_ || t - head_ > max_ahead || (t & kAlignMask) != 0) return Status::corrupt;
    head_ = t;
    tail_cache_ = t;
    publish();
    last_status_ = Status::abandoned;
    return Status::abandoned;
  }

  /// True at most about twice per liveness interval: gates a recovery step (it makes syscalls)
  /// that a blocking read runs when it wakes without a record.
  bool recovery_due() noexcept {
    const auto now = Clock::now();
    if (now < next_recovery_) return false;
    next_recovery_ = now + wait_.liveness_interval / 2;
    return true;
  }

  Ring ring_;
  Attachment self_;
  WaitOptions wait_;
  layout::Control* ctrl_;
  Byte* data_ = nullptr;
  std::uint64_t capacity_;
  std::uint64_t mask_;
  std::uint64_t max_record_;
  std::uint64_t head_ = 0;
  std::uint64_t tail_cache_ = 0;
  Status last_status_ = Status::empty;
  bool held_ = false;
  bool held_redelivered_ = false;
  WakeMark space_mark_;  // our last wake of producers
  bool fast_fence_ = false;
  bool seen_producer_ = false;
  bool has_wait_fd_ = false;
  Clock::time_point next_recovery_{};

  /// What a reader blocked for records checks every liveness interval (and at the deadline,
  /// `final`): the mode's recovery step (mpsc/mpmc: dead producers' claims, dead consumers'
  /// records; `force` runs it even if it ran within the last half interval), then, once
  /// everything published has been read, whether a producer is left. empty: keep waiting.
  Status wait_check(bool final, bool force) noexcept {
    if (force) next_recovery_ = {};
    const Status u = policy().on_interval();
    if (u != Status::empty || final) return u;
    if (!policy().drained()) return Status::empty;
    const Status p = check_peers(ring_, PeerRule::needs_producer, seen_producer_);
    return p == Status::ok ? Status::empty : p;
  }

 private:
  Policy& policy() noexcept { return static_cast<Policy&>(*this); }

  static constexpr std::uint64_t kNotKept = ~std::uint64_t{0};

  void consume_held() noexcept {
    if constexpr (Policy::kKeeps) {
      if (kept_from_ != kNotKept) {
        keep();
        return;
      }
    }
    policy().step(held_frame_);
    tally_.add(held_view_.size());
    held_ = false;
  }

  std::uint64_t held_frame_ = 0;
  std::span<const std::byte> held_view_;
  std::uint64_t corrupt_at_ = ~std::uint64_t{0};
  std::uint64_t kept_from_ = kNotKept;  // first kept position (see keep()), or kNotKept
  Tally tally_;
};

}  // namespace detail
}  // namespace flatring
