// The In's state file: per source, the last sequence committed into the ring, kept beside the
// ring (default /dev/shm/flatring-bridge.<ring>.state) so that it outlives the In process.
//
// It is a small file mapped shared; updates are plain stores into the mapping, which the kernel
// keeps when the process is killed (no syscall per record). It is trusted no more than a segment:
// every field is checked when it is loaded. One In owns it at a time (flock).
//
// Commit protocol, per record (In::commit):
//   1. reserve room in the ring;
//   2. pending = {seq, ring position of the reservation}   (release stores)
//   3. commit;
//   4. last = seq, pending cleared                          (release stores)
// A kill between 2 and 4 leaves `pending`; the next In decides whether that record was
// committed. spsc and broadcast rings have one producer, so the writer's recovered tail says it
// exactly (Writer::position() > the pending position: committed). mpsc and mpmc rings cannot say:
// the record is taken as not committed, so it is sent again, and may be in the ring twice (the
// at-least-once window, docs/bridge.md).
#pragma once

#include <cstdint>
#include <string>

namespace flatring::bridge {

inline constexpr std::uint32_t kMaxSources = 64;

struct SourceEntry {
  std::uint64_t source = 0;  // 0: unused
  std::uint64_t last = 0;    // valid when has_last
  std::uint64_t pending_seq = 0;
  std::uint64_t pending_pos = 0;
  std::uint32_t has_last = 0;
  std::uint32_t pending = 0;
  std::uint64_t reserved[3] = {};
};
static_assert(sizeof(SourceEntry) == 64, "one line per source");

struct StateLayout {
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t pad;
  std::uint64_t ring;  // identity of the ring this state belongs to (see ring_identity)
  std::uint64_t reserved[5];
  SourceEntry sources[kMaxSources];
};
static_assert(sizeof(StateLayout) == 64 + 64 * kMaxSources, "fixed layout");

class StateFile {
 public:
  /// Opens or creates `path` (0600) and locks it. A file for another ring identity is reset
  /// (that ring was recreated: its old sequences mean nothing). \throws BridgeError(busy) when
  /// another process holds it, (bad_state) when it is not a state file.
  StateFile(const std::string& path, std::uint64_t ring_identity);
  ~StateFile();
  StateFile(const StateFile&) = delete;
  StateFile& operator=(const StateFile&) = delete;

  /// The entry of `source`, created when new. nullptr when the table is full.
  SourceEntry* entry(std::uint64_t source) noexcept;
  [[nodiscard]] const std::string& path() const noexcept { return path_; }

  static void begin(SourceEntry& e, std::uint64_t seq, std::uint64_t pos) noexcept;
  static void done(SourceEntry& e, std::uint64_t seq) noexcept;
  /// Settles a pending record: committed or not.
  static void settle(SourceEntry& e, bool committed) noexcept;

 private:
  std::string path_;
  int fd_ = -1;
  StateLayout* map_ = nullptr;
};

}  // namespace flatring::bridge
