// The segment: naming, creating, opening and validating a ring's shared memory, and attaching to
// it.
//
// Named segments are POSIX shared memory objects (Boost.Interprocess shared_memory_object), which
// on Linux live in /dev/shm/flatring.<name>. Everything read from the segment is validated once at
// open and kept in a private SegmentInfo; the hot path never re-reads the header.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "flatring/layout.hpp"
#include "flatring/liveness.hpp"
#include "flatring/schema.hpp"
#include "flatring/status.hpp"

namespace flatring {

/// Identity of a ring's record schema: the FlatBuffers file_identifier plus a 64-bit FNV-1a hash of
/// the root type's fully qualified name (e.g. "app.Order"). All zero means "raw bytes, no schema".
struct SchemaId {
  char file_identifier[4] = {0, 0, 0, 0};
  std::uint64_t hash = 0;

  [[nodiscard]] static SchemaId of(std::string_view fully_qualified_name,
                                   std::string_view file_identifier) noexcept;
  [[nodiscard]] bool raw() const noexcept;
  [[nodiscard]] std::string identifier() const;  // printable, "" when none
  friend bool operator==(const SchemaId&, const SchemaId&) noexcept;
};

/// 64-bit FNV-1a. Stable across builds and platforms; used for schema identity.
[[nodiscard]] constexpr std::uint64_t fnv1a64(std::string_view s) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

/// Options for Ring::create.
struct RingOptions {
  /// Bytes in the record area. A power of two, at least 4096.
  std::uint64_t capacity = 1u << 20;
  /// Largest payload a producer may commit. 0 means the largest the capacity allows:
  /// capacity / 2 - 64. Must satisfy 2 * frame_size(max_record_size) + 16 <= capacity, so that a
  /// record of the maximum size always fits once the consumer has caught up, wherever the ring
  /// wraps.
  std::uint64_t max_record_size = 0;
  Mode mode = Mode::spsc;
  /// File mode of the segment. 0600 by default (owner only). Widen deliberately, e.g. 0660.
  unsigned permissions = 0600;
};

/// How Ring::create treats a name that is already taken.
struct CreateOptions {
  /// When the name is held by a stale segment (its creator has exited and no live process holds
  /// a peer slot in it; see Ring::is_stale), remove it and create afresh. Off by default: create
  /// never reuses or replaces a segment silently, it fails with Errc::already_exists.
  bool reclaim_stale = false;
  /// Fault the record area in when an endpoint of this process attaches (see
  /// OpenOptions::prefault).
  bool prefault = true;
};

/// Options for Ring::open.
struct OpenOptions {
  /// When set, open fails with Errc::wrong_schema unless the ring's schema matches.
  std::optional<SchemaId> expect_schema = std::nullopt;
  /// When set, open fails with Errc::wrong_mode unless the ring's mode matches.
  std::optional<Mode> expect_mode = std::nullopt;
  /// Accept a segment owned by another uid. Off by default: another user's segment is untrusted.
  bool allow_foreign_owner = false;
  /// Accept a group- or world-writable segment. Off by default.
  bool allow_shared_write = false;
  /// Fault the record area in when an endpoint of this process attaches
  /// (madvise MADV_POPULATE_READ/WRITE, or touching each page where the kernel lacks them), so the
  /// first lap costs no page fault on the hot path. It makes the whole record area resident:
  /// `capacity` bytes of shared memory (shared by every process that maps it) plus this
  /// process's page tables for it. Turn it off for rings too large to keep resident.
  bool prefault = true;
};

/// What a validated header says, copied out of shared memory once.
struct SegmentInfo {
  std::string name;
  Mode mode = Mode::spsc;
  std::uint64_t capacity = 0;
  std::uint64_t max_record_size = 0;
  std::uint64_t ring_offset = 0;
  std::uint64_t segment_size = 0;
  SchemaId schema;
  /// The binary schema stored in the segment (layout version 2), verified and copied out at open;
  /// empty for a raw ring or one created from a root type without a binary schema.
  Schema stored_schema;
  ProcessToken creator;
  std::uint64_t created_unix_ns = 0;
  std::uint32_t owner_uid = 0;
  std::uint32_t file_mode = 0;  // permission bits
};

/// Largest max_record_size a ring of `capacity` bytes accepts.
[[nodiscard]] constexpr std::uint64_t max_record_size_for(std::uint64_t capacity) noexcept {
  return capacity / 2 - 64;
}

namespace detail {
class Mapping;
/// How many mappings the SIGBUS guard has replaced with zero pages in this process (see
/// Ring::lost). 0 in a process that never lost a segment: endpoints read it (relaxed, a line that
/// is never written) before the dearer Ring::lost().
extern std::atomic<std::uint32_t> segments_lost;
}  // namespace detail

/// A handle to a mapped ring segment. Cheap to copy (shared ownership of the mapping); the mapping
/// goes away with the last handle. Writers, readers, producers and consumers keep a copy.
class Ring {
 public:
  /// Creates the segment `name` exclusively (fails with Errc::already_exists if it exists), with
  /// mode options.permissions (0600 by default), and maps it. When the existing segment is stale,
  /// the already_exists message says so and how to reclaim it; with create.reclaim_stale it is
  /// removed and created afresh instead.
  /// \throws Error (invalid_name, invalid_options, already_exists, permission_denied, system_error)
  [[nodiscard]] static Ring create(std::string_view name, const RingOptions& options,
                                   const SchemaId& schema = {}, const CreateOptions& create = {});
  /// Creates a ring that stores `schema` (its binary schema, in the schema area) and whose
  /// identity is its root type and file identifier. 	hrows as the other create.
  [[nodiscard]] static Ring create(std::string_view name, const RingOptions& options,
                                   const Schema& schema, const CreateOptions& create = {});
  /// Opens an existing segment, checking ownership, permissions, every header field and the real
  /// size of the segment before anything else is used. A stored schema is length-capped, read
  /// with pread into private memory, checked against its header hash and verified as a
  /// reflection.Schema (Schema::from_bfbs); nothing re-reads it from the segment.
  /// \throws Error naming what is wrong (not_found, not_flatring, wrong_version, wrong_schema,
  ///   wrong_mode, size_mismatch, corrupt_header, unsafe_owner, unsafe_permissions,
  ///   schema_too_large, corrupt_schema, schema_too_deep, schema_no_root, ...)
  [[nodiscard]] static Ring open(std::string_view name, const OpenOptions& options = {});
  /// Removes the name, and the directory of its WaitFd sockets. Processes that have it mapped keep
  /// their mapping (their WaitFds get no notifications any more). Returns false if there was no
  /// segment to remove.
  static bool remove(std::string_view name) noexcept;
  /// True if `name` is a stale segment: a flatring segment this process may open (Ring::open's
  /// checks, with default options) whose creator has exited and in which no live process holds a
  /// peer slot. A process that has the ring mapped without an attachment (a bare Ring handle, not
  /// a Writer/Reader) is not seen.
  /// \throws Error as Ring::open does when the segment cannot be opened.
  [[nodiscard]] static bool is_stale(std::string_view name);
  /// Removes `name` if it is stale (see is_stale) and returns whether it did. A process that opens
  /// the segment between the check and the removal keeps a mapping nobody else will see: reclaim
  /// when restarting a service, not while peers are starting.
  /// \throws Error as Ring::open does when the segment cannot be opened.
  static bool reclaim_if_stale(std::string_view name);
  /// True if a segment with this name exists (flatring's or not).
  [[nodiscard]] static bool exists(std::string_view name) noexcept;
  /// \throws Error(invalid_name) unless `name` is 1-200 characters of [A-Za-z0-9._-] and does
  /// not start with '.'.
  static void validate_name(std::string_view name);
  /// Where a segment lives on Linux: "/dev/shm/flatring.<name>".
  [[nodiscard]] static std::string path_of(std::string_view name);
  /// Names of the flatring segments in /dev/shm.
  [[nodiscard]] static std::vector<std::string> list();

  [[nodiscard]] const SegmentInfo& info() const noexcept;
  /// The control area (header, positions, wait words, peer slots). Shared and untrusted.
  [[nodiscard]] layout::Control& control() const noexcept;
  /// The record area, mapped read-only unless a writer has attached in this process.
  [[nodiscard]] const std::byte* data() const noexcept;
  /// The record area mapped read-write (mapped on first use). Used by writers only.
  [[nodiscard]] std::byte* writable_data() const;
  /// Faults the record area in (the read-only mapping, or with `writable` the read-write one),
  /// once per mapping, unless the ring was created or opened with prefault off. Endpoints call it
  /// when they attach. Returns whether the pages were populated.
  bool prefault(bool writable) const noexcept;

  /// True once this process's view of the segment has been lost: a peer shrank the segment file and
  /// an access past its new end raised SIGBUS, which flatring's handler answered by mapping zero
  /// pages over the whole affected mapping (see docs/security.md). Nothing in the ring is
  /// delivered any more; blocking reads and writes return Status::segment_lost.
  [[nodiscard]] bool lost() const noexcept;
  /// lost(), after a cheap test that any segment was lost in this process: for hot paths.
  [[nodiscard]] bool lost_fast() const noexcept {
    return detail::segments_lost.load(std::memory_order_relaxed) != 0 && lost();
  }

  /// The directory of this ring's WaitFd sockets, /dev/shm/flatring-wait.<name> (never a path read
  /// from the segment), opened once per mapping and cached until the mapping goes. With `create`
  /// it is made when missing (0700 for a 0600 ring; group/other bits, with the sticky bit, when
  /// the segment has them). -1 without `create` when it does not exist or fails the checks.
  /// \throws with `create`: Error(unsafe_owner) if another uid than this one or the segment's
  ///   owner owns it; Error(unsafe_permissions) for wider permissions than the segment's or a
  ///   non-directory; Error(system_error).
  [[nodiscard]] int notify_dir(bool create) const;

  /// True when `other` maps the same segment (the same mapping, or the same shared-memory object
  /// mapped again by another Ring::open): compared by device and inode, never by what the
  /// segment says.
  [[nodiscard]] bool same_segment(const Ring& other) const noexcept;

  /// Reclaims peer slots (and exclusive role ownership) of processes that have died, folding their
  /// counters into the retired totals. Returns how many were reclaimed.
  std::uint32_t reap_dead_peers() const noexcept;

  Ring() = default;

 private:
  explicit Ring(std::shared_ptr<detail::Mapping> m) : map_(std::move(m)) {}
  static Ring create_with(std::string_view name, const RingOptions& options, const SchemaId& id,
                          const Schema& schema, const CreateOptions& create);
  // Why `name` is stale, or nothing (also when it cannot be opened). For create's message.
  static std::optional<std::string> stale_reason(std::string_view name) noexcept;
  std::shared_ptr<detail::Mapping> map_;
};

/// Removes a ring's name when it goes out of scope: easy cleanup for tests and examples.
class RemoveGuard {
 public:
  explicit RemoveGuard(std::string name) : name_(std::move(name)) {}
  RemoveGuard(const RemoveGuard&) = delete;
  RemoveGuard& operator=(const RemoveGuard&) = delete;
  ~RemoveGuard() { Ring::remove(name_); }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }

 private:
  std::string name_;
};

/// One process's claim on a peer slot (and, for an exclusive role, on the role itself: see
/// exclusive_producer / exclusive_consumer in mode.hpp). Released on
/// destruction: counters are folded into the retired totals and the slot is freed.
class Attachment {
 public:
  /// \throws Error(role_taken) if `exclusive` and a live process holds the role;
  ///   Error(no_free_slot) if every slot is held by a live process.
  Attachment(Ring ring, layout::Role role, bool exclusive);
  Attachment(Attachment&&) noexcept;
  Attachment& operator=(Attachment&&) = delete;
  Attachment(const Attachment&) = delete;
  ~Attachment();

  [[nodiscard]] layout::PeerSlot& slot() const noexcept { return *slot_; }
  [[nodiscard]] std::uint32_t index() const noexcept { return index_; }
  /// True when this attachment took the role over from a dead process.
  [[nodiscard]] bool took_over() const noexcept { return took_over_; }
  /// Adds to one of this peer's counters. Single writer: a relaxed load and store, no RMW.
  void count(layout::Counter c, std::uint64_t n = 1) const noexcept {
    auto& v = slot_->counter[c];
    v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  [[nodiscard]] const Ring& ring() const noexcept { return ring_; }

 private:
  void release() noexcept;
  Ring ring_;
  layout::PeerSlot* slot_ = nullptr;
  std::uint32_t index_ = 0;
  layout::Role role_ = layout::Role::none;
  bool exclusive_ = false;
  bool took_over_ = false;
};

/// Liveness of peers with `role`: how many attached ones are alive and how many have died without
/// detaching (untrusted slot contents are only used for kill(pid, 0) and /proc lookups). Both 0:
/// nobody holds the role.
struct PeerCensus {
  std::uint32_t alive = 0;
  std::uint32_t dead = 0;
};
[[nodiscard]] PeerCensus census(const Ring& ring, layout::Role role) noexcept;

}  // namespace flatring
