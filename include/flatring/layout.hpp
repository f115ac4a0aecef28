// The shared-memory layout: a contract between separately built processes.
//
// Everything in this file lives in the segment and is therefore UNTRUSTED input for every party but
// the one that wrote it. The structs are plain standard-layout types with fixed sizes and offsets,
// checked at compile time below. Nothing in the segment is a pointer; positions are byte counters.
//
//   offset 0        SegmentHeader      immutable after create; `magic` is published last
//   offset 256      ProducerLine       written by the producer side only (published tail)
//   offset 384      ConsumerLine       written by the consumer side only (published head)
//   offset 512      WaitLine (data)    futex word + sleeper count for "not empty"
//   offset 640      WaitLine (space)   futex word + sleeper count for "not full"
//   offset 768      Counters (retired) totals folded in from peers that detached or died
//   offset 896      OwnerLine          exclusive-role owners (spsc/broadcast producer, spsc/mpsc
//   consumer) offset 1024     PeerSlot[kMaxPeers] one 128-byte line per attached process (liveness,
//   stats) offset 8192     schema area (version 2): the root type's binary schema, `schema_size`
//   bytes,
//                   written once by the creator before the magic; never mapped (read with pread)
//   ring_offset     record area, `capacity` bytes, at the first page boundary after the schema
//                   area (8192 when there is none), so it can be mapped read-only
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "flatring/mode.hpp"

namespace flatring {

namespace layout {

inline constexpr std::uint64_t kMagic = 0x474E495254414C46ull;  // "FLATRING", little-endian
// Version 2: the schema area and its header fields (schema_offset, schema_size, schema_bfbs_hash).
// Version 3: records built in place (RecordHeader::aux, kOffsetFlag).
// Version 4: WaitLine::notify, the armed WaitFd waiters (an older waker would not signal them).
inline constexpr std::uint32_t kVersion = 4;
// Fixed, not std::hardware_destructive_interference_size: both sides must agree whatever their
// compiler flags. 128 also keeps the adjacent-line prefetcher from coupling neighbours.
inline constexpr std::size_t kLine = 128;
inline constexpr std::size_t kRecordAlign = 16;  // FlatBuffers roots need <= 16 (force_align max)
inline constexpr std::size_t kRecordHeaderSize = 16;
inline constexpr std::size_t kPageSize = 4096;
inline constexpr std::uint32_t kMaxPeers = 32;
inline constexpr std::size_t kMinCapacity = 4096;
inline constexpr std::uint64_t kMaxCapacity = 1ull << 40;  // 1 TiB: far beyond any mapping here
// Frame words keep the payload length in the low 48 bits.
inline constexpr std::uint64_t kLengthBits = 48;
inline constexpr std::uint64_t kLengthMask = (1ull << kLengthBits) - 1;

/// Record types, stored in the top byte of the frame word. 0 is never a valid frame word, which
/// is how "not yet committed" reads.
enum class RecordType : std::uint8_t {
  data = 1,       ///< a committed record
  padding = 2,    ///< skip to the end of the ring (records are never split at the end)
  abandoned = 3,  ///< a claim whose producer died (multi-producer recovery); skipped
  claimed = 4,    ///< mpsc/mpmc: a claim being written (length = the claimed payload); not yet data
  releasing = 5,  ///< mpmc: its consumer is done with it and is zeroing it; length = the extent
  done = 6,       ///< mpmc: consumed and zeroed; length = the record's extent. Free once the head
                  ///< passes it, and then read as "not yet written", like 0
};

/// Every record starts with this 16-byte header, at a 16-byte aligned offset; the payload follows.
///
/// `frame` is the commit word: (type << 56) | payload_length. The producer writes the payload, then
/// stores `frame` with release; the consumer loads it with acquire, and only then reads the
/// payload. Before committing, the producer zeroes the frame word
/// of the *next* record position, so a consumer that arrives there reads 0 ("not yet") instead of
/// bytes left over from the previous lap.
struct RecordHeader {
  std::atomic<std::uint64_t> frame;
  /// Written before the commit word, by the record's producer. A data record: its extent
  /// (mpsc/mpmc; 0 in spsc and broadcast) | kOffsetFlag when it was built in place. A done mpmc
  /// record: its position. Extents and positions are multiples of kRecordAlign, so the low bits
  /// are free for flags.
  std::uint64_t aux;
};

/// aux flag of a data record (every mode, layout version 3): the record was built in place
/// (FlatBuffers builds back to front). Its payload area starts with an 8-byte offset word `o`,
/// and the record's bytes are the `length - o` bytes at payload + o, so the `o` bytes in front
/// are dead space. kMinOffset <= o <= length, o a multiple of 16 (kRecordAlign: the record starts
/// 16-byte aligned, as every other record does); anything else is corrupt.
inline constexpr std::uint64_t kOffsetFlag = 1;
inline constexpr std::uint64_t kAuxFlags = kRecordAlign - 1;
inline constexpr std::uint64_t kMinOffset = 16;

constexpr std::uint64_t make_frame(RecordType type, std::uint64_t length) noexcept {
  return (static_cast<std::uint64_t>(type) << 56) | (length & kLengthMask);
}
constexpr RecordType frame_type(std::uint64_t frame) noexcept {
  return static_cast<RecordType>(frame >> 56);
}
constexpr std::uint64_t frame_length(std::uint64_t frame) noexcept { return frame & kLengthMask; }
constexpr std::uint64_t frame_flags(std::uint64_t frame) noexcept {
  return (frame >> kLengthBits) & 0xFF;
}
/// mpmc: flag bits of the frame word's flags byte (bits 48..55), which are 0 in every other use.
/// kStalled marks an `abandoned` record that consumers skipped after the claim timeout while its
/// producer lived: that producer, not a consumer, finishes it. The low 7 bits count recovery
/// takeovers (a CAS that must change the word).
inline constexpr std::uint64_t kStalledFlag = std::uint64_t{0x80} << kLengthBits;
inline constexpr std::uint64_t kTakeoverMask = std::uint64_t{0x7F} << kLengthBits;

/// Bytes a record of `payload` bytes occupies in the ring, header included.
constexpr std::uint64_t frame_size(std::uint64_t payload) noexcept {
  return (kRecordHeaderSize + payload + (kRecordAlign - 1)) & ~std::uint64_t{kRecordAlign - 1};
}

/// Written once by the creator, then read-only for everyone. `magic` is stored last (release), so
/// an opener that sees the magic sees the whole header.
struct SegmentHeader {
  std::atomic<std::uint64_t> magic;
  std::uint32_t version;
  std::uint32_t header_size;  // sizeof(SegmentHeader), a cheap cross-build check
  std::uint32_t mode;         // Mode
  std::uint32_t flags;
  std::uint64_t capacity;         // bytes in the record area, a power of two
  std::uint64_t max_record_size;  // largest payload a producer may commit
  std::uint64_t ring_offset;      // where the record area starts
  std::uint64_t segment_size;     // ring_offset + capacity: the file's exact size
  char file_identifier[4];        // FlatBuffers file_identifier of the root type, or zeros
  std::uint32_t reserved0;
  std::uint64_t schema_hash;  // FNV-1a 64 of the root type's fully qualified name, or 0 (raw)
  std::uint32_t creator_pid;
  std::uint32_t reserved1;
  std::uint64_t creator_start_time;  // /proc/<pid>/stat starttime, against pid reuse
  std::uint64_t created_unix_ns;
  std::uint64_t schema_offset;     // kRingOffset when a schema is stored, else 0
  std::uint64_t schema_size;       // bytes of the stored binary schema, 0 for none
  std::uint64_t schema_bfbs_hash;  // FNV-1a 64 of those bytes
  std::uint8_t reserved[256 - 120];
};

/// Owned by the producer side. `tail` is the position just past the last committed record, stored
/// before that record's frame word so a consumer that has seen the frame also sees the tail.
struct alignas(kLine) ProducerLine {
  std::atomic<std::uint64_t> tail;
  std::uint8_t pad[kLine - 8];
};

/// Owned by the consumer side. `head` is the position up to which records have been released.
/// `next` (mpmc only, 0 otherwise) is the position of the next record no consumer has claimed yet;
/// it sits in the second 64-byte half so that claims and frees do not bounce one cache line.
struct alignas(kLine) ConsumerLine {
  std::atomic<std::uint64_t> head;
  std::uint8_t pad0[64 - 8];
  std::atomic<std::uint64_t> next;
  std::uint8_t pad[kLine - 64 - 8];
};

/// One futex handshake. Sleepers bump `waiters` and re-check before they sleep on `futex`; a waker
/// touches `futex` and calls futex(2) only when `waiters` is non-zero. Written only around sleeps,
/// so the line stays shared-clean in both caches on the hot path.
///
/// `notify` (version 4): one bit per peer slot whose WaitFd is armed on this line. An armer sets
/// its bit, then bumps `waiters` (release); a waker that saw `waiters` non-zero claims bits (one
/// for a one-consumer wake, all otherwise), sends one datagram to each claimed slot's socket and
/// takes their count off `waiters`. Untrusted like everything here: a forged bit costs the waker
/// one sendto and the slot's owner a spurious wake-up (docs/security.md).
///
/// `sleepers` (version 4): how many of `waiters` sleep on `futex` (blocked calls and WaitSets), so
/// that a waker of WaitFd waiters only skips FUTEX_WAKE when no futex sleeper is there. Bumped
/// before `waiters`, like a notify bit.
struct alignas(kLine) WaitLine {
  std::atomic<std::uint32_t> futex;
  std::atomic<std::uint32_t> waiters;
  std::atomic<std::uint32_t> notify;
  std::atomic<std::uint32_t> sleepers;
  std::uint8_t pad[kLine - 16];
};

/// Statistics. Each PeerSlot's counters are written by that peer alone (relaxed stores to its own
/// line); readers treat every value as an untrusted number.
enum Counter : std::uint32_t {
  records_written,
  bytes_written,
  records_read,
  bytes_read,
  verify_failures,
  corrupt_records,
  abandoned_records,
  too_large,
  full_waits,
  empty_waits,
  futex_sleeps,
  futex_wakes,
  kCounterCount
};

struct alignas(kLine) Counters {
  std::atomic<std::uint64_t> value[kCounterCount];
  std::uint8_t pad[kLine - 8 * kCounterCount];
};

enum class Role : std::uint32_t { none = 0, producer = 1, consumer = 2, observer = 3 };

/// Ownership of the single-writer roles. Each word holds (slot index + 1) of the owning PeerSlot,
/// or 0. Taken with CAS; a word whose owner is dead may be taken over with CAS.
struct alignas(kLine) OwnerLine {
  std::atomic<std::uint32_t> producer;
  std::atomic<std::uint32_t> consumer;
  std::uint8_t pad[kLine - 8];
};

/// One attached process (one attachment within it). `pid` is 0 when the slot is free; a claimer
/// CASes it from 0 to its pid, then fills `start_time` and `role` (role last, with release).
/// kReaping marks a slot whose dead owner is being folded away by another process.
struct alignas(kLine) PeerSlot {
  std::atomic<std::uint32_t> pid;
  std::atomic<std::uint32_t> role;  // Role; none while being claimed
  std::atomic<std::uint64_t> start_time;
  std::atomic<std::uint64_t> cursor;  // broadcast/mpmc: this consumer's position
  std::uint64_t reserved;
  std::atomic<std::uint64_t> counter[kCounterCount];
};
inline constexpr std::uint32_t kReaping = 0xFFFFFFFFu;

/// The control area at the start of every segment.
struct Control {
  SegmentHeader header;
  ProducerLine producer;
  ConsumerLine consumer;
  WaitLine data;   // consumers sleep here for "not empty"
  WaitLine space;  // producers sleep here for "not full"
  Counters retired;
  OwnerLine owners;
  PeerSlot peers[kMaxPeers];
};

inline constexpr std::size_t kControlSize = sizeof(Control);
/// The first page boundary after the control area: where the schema area starts, and the record
/// area of a ring that stores no schema.
inline constexpr std::size_t kRingOffset = (kControlSize + kPageSize - 1) & ~(kPageSize - 1);
/// Largest binary schema a segment may store (an opener refuses a longer one).
inline constexpr std::uint64_t kMaxSchemaSize = 1u << 20;
/// Where the record area starts when the schema area holds `schema_size` bytes.
constexpr std::uint64_t ring_offset_for(std::uint64_t schema_size) noexcept {
  return kRingOffset + ((schema_size + kPageSize - 1) & ~std::uint64_t{kPageSize - 1});
}

// ---- compile-time checks: a mismatch here means two builds would disagree about the segment ----
static_assert(std::atomic<std::uint64_t>::is_always_lock_free,
              "64-bit atomics in shared memory must be lock-free, or they are process-local locks");
static_assert(std::atomic<std::uint32_t>::is_always_lock_free,
              "32-bit atomics (futex words) must be lock-free");
static_assert(sizeof(std::atomic<std::uint64_t>) == 8 && sizeof(std::atomic<std::uint32_t>) == 4,
              "atomics must have the size of the plain integer: the layout is byte-exact");
static_assert(std::is_standard_layout_v<Control>, "the segment layout must be standard-layout");
static_assert(std::is_standard_layout_v<RecordHeader> && sizeof(RecordHeader) == kRecordHeaderSize,
              "record header is exactly 16 bytes, so payloads stay 16-byte aligned");
static_assert(sizeof(SegmentHeader) == 256, "header size is part of the layout version");
static_assert(offsetof(SegmentHeader, schema_offset) == 96 &&
                  offsetof(SegmentHeader, schema_bfbs_hash) == 112,
              "schema area fields are part of layout version 2");
static_assert(offsetof(WaitLine, notify) == 8 && offsetof(WaitLine, sleepers) == 12 &&
                  sizeof(WaitLine) == kLine,
              "the WaitFd mask is part of layout version 4");
static_assert(kMaxPeers <= 32, "WaitLine::notify has one bit per peer slot");
static_assert(sizeof(PeerSlot) == kLine, "one peer per cache line: peers never share a line");
static_assert(sizeof(Counters) == kLine, "counters fit one line");
static_assert(offsetof(Control, producer) == 256 && offsetof(Control, consumer) == 384 &&
                  offsetof(Control, data) == 512 && offsetof(Control, space) == 640 &&
                  offsetof(Control, retired) == 768 && offsetof(Control, owners) == 896 &&
                  offsetof(Control, peers) == 1024,
              "control offsets are part of layout version 1");
static_assert(offsetof(ConsumerLine, next) == 64,
              "mpmc read cursor offset is part of layout version 1");
static_assert(offsetof(SegmentHeader, schema_hash) == 64 && offsetof(SegmentHeader, capacity) == 24,
              "header offsets are part of layout version 1");
static_assert(kRingOffset == 8192, "record area offset is part of layout version 1");

}  // namespace layout
}  // namespace flatring
