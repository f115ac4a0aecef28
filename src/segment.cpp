#include "flatring/segment.hpp"

#include <boost/interprocess/exceptions.hpp>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/permissions.hpp>
#include <boost/interprocess/shared_memory_object.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <dirent.h>
#include <mutex>
#include <optional>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "flatring/wait.hpp"
#include "notify_dir.hpp"

namespace bip = boost::interprocess;

namespace flatring {

// ---------------------------------------------------------------- SchemaId

SchemaId SchemaId::of(std::string_view fqn, std::string_view ident) noexcept {
  SchemaId id;
  for (std::size_t i = 0; i < 4 && i < ident.size(); ++i) id.file_identifier[i] = ident[i];
  id.hash = fnv1a64(fqn);
  return id;
}

bool SchemaId::raw() const noexcept {
  return hash == 0 && file_identifier[0] == 0 && file_identifier[1] == 0 &&
         file_identifier[2] == 0 && file_identifier[3] == 0;
}

std::string SchemaId::identifier() const {
  std::string s;
  for (char c : file_identifier) {
    if (c == 0) break;
    s.push_back((c >= 0x20 && c < 0x7f) ? c : '?');
  }
  return s;
}

bool operator==(const SchemaId& a, const SchemaId& b) noexcept {
  return a.hash == b.hash && std::memcmp(a.file_identifier, b.file_identifier, 4) == 0;
}

namespace detail {

// ---------------------------------------------------------------- SIGBUS guard
//
// A peer that shrinks the segment file makes every access past the new end raise SIGBUS. One
// process-wide handler, installed with the first mapping, looks the faulting address up in a fixed
// registry of this process's segment mappings; if it is one of ours it maps anonymous zero pages
// over that whole mapping (MAP_FIXED, same address and protection) and marks it lost, and the
// faulting access is retried against the zero pages. A zero frame word reads "empty", zero
// positions read "nothing published", so the endpoints stop, and Ring::lost() tells them why.
// Faults elsewhere go to the handler that was installed before (or the default action).
//
// The registry is plain process-local memory: lock-free atomics only, so the handler may read it.
std::atomic<std::uint32_t> segments_lost{0};

namespace guard {

enum : std::uint32_t { kFree = 0, kClaiming = 1, kActive = 2, kRepairing = 3 };

struct Entry {
  std::atomic<std::uint32_t> state;  // kFree -> kClaiming -> kActive (<-> kRepairing) -> kFree
  std::atomic<std::uint32_t> lost;
  std::atomic<int> prot;
  std::atomic<std::uintptr_t> base;
  std::atomic<std::size_t> length;
};

constexpr std::size_t kEntries = 1024;  // 3 per ring at most: hundreds of rings per process
Entry g_entries[kEntries];              // static storage: zero, i.e. all kFree
struct sigaction g_previous;
std::once_flag g_install_once;

// Hands a fault that is not ours to whoever handled SIGBUS before flatring.
void chain(int sig, siginfo_t* info, void* context) noexcept {
  if ((g_previous.sa_flags & SA_SIGINFO) != 0) {
    if (g_previous.sa_sigaction != nullptr) g_previous.sa_sigaction(sig, info, context);
    return;
  }
  if (g_previous.sa_handler == SIG_DFL || g_previous.sa_handler == SIG_IGN) {
    // A synchronous fault cannot be ignored: restore the default and return, so the faulting
    // access repeats and ends the process exactly as it would have without flatring.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    ::sigemptyset(&dfl.sa_mask);
    ::sigaction(SIGBUS, &dfl, nullptr);
    return;
  }
  g_previous.sa_handler(sig);
}

void on_sigbus(int sig, siginfo_t* info, void* context) noexcept {
  const int saved_errno = errno;
  const auto addr = reinterpret_cast<std::uintptr_t>(info->si_addr);
  for (Entry& e : g_entries) {
    // Acquire pairs with the release that made the entry active: base and length are set.
    if (e.state.load(std::memory_order_acquire) < kActive) continue;
    // Relaxed: ordered after the acquire load of the state above.
    const std::uintptr_t base = e.base.load(std::memory_order_relaxed);
    if (addr < base || addr - base >= e.length.load(std::memory_order_relaxed)) continue;
    std::uint32_t expected = kActive;
    // Only one thread repairs; another faulting thread returns, faults again, and finds the zero
    // pages (or the repair still running) until the winner is done.
    if (e.state.compare_exchange_strong(expected, kRepairing, std::memory_order_acq_rel)) {
      void* p = ::mmap(reinterpret_cast<void*>(base), e.length.load(std::memory_order_relaxed),
                       e.prot.load(std::memory_order_relaxed),
                       MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) break;  // cannot repair: let the fault take its usual course
      e.lost.store(1, std::memory_order_relaxed);  // published by the release below
      // Relaxed: a hint read before lost(); lock-free, so async-signal-safe.
      segments_lost.fetch_add(1, std::memory_order_relaxed);
      // Release pairs with unregister's CAS: it waits for kActive before the range is unmapped.
      e.state.store(kActive, std::memory_order_release);
    }
    errno = saved_errno;
    return;
  }
  errno = saved_errno;
  chain(sig, info, context);
}

void install() {
  struct sigaction sa {};
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  ::sigemptyset(&sa.sa_mask);
  if (::sigaction(SIGBUS, &sa, &g_previous) != 0) {
    throw Error(Errc::system_error,
                std::string("flatring: installing the SIGBUS guard: ") + std::strerror(errno));
  }
}

constexpr std::uint32_t kNoEntry = ~std::uint32_t{0};

std::uint32_t add(const void* base, std::size_t length, int prot) {
  std::call_once(g_install_once, install);
  for (std::uint32_t i = 0; i < kEntries; ++i) {
    Entry& e = g_entries[i];
    std::uint32_t expected = kFree;
    if (!e.state.compare_exchange_strong(expected, kClaiming, std::memory_order_acquire)) continue;
    // Relaxed: no handler reads an entry while it is kClaiming; the release below publishes them.
    e.base.store(reinterpret_cast<std::uintptr_t>(base), std::memory_order_relaxed);
    e.length.store(length, std::memory_order_relaxed);
    e.prot.store(prot, std::memory_order_relaxed);
    e.lost.store(0, std::memory_order_relaxed);
    e.state.store(kActive, std::memory_order_release);  // pairs with the handler's acquire
    return i;
  }
  throw Error(Errc::system_error, "flatring: more than " + std::to_string(kEntries) +
                                      " segment mappings in this process (SIGBUS guard is full)");
}

// Before the range is unmapped: waits out a repair in progress, so the handler never maps zero
// pages over an address range that has been given back (and perhaps reused).
void remove(std::uint32_t i) noexcept {
  if (i == kNoEntry) return;
  Entry& e = g_entries[i];
  for (;;) {
    std::uint32_t expected = kActive;
    if (e.state.compare_exchange_weak(expected, kClaiming, std::memory_order_acq_rel)) break;
    wait::cpu_relax();
  }
  e.base.store(0, std::memory_order_relaxed);  // kClaiming: no handler looks (see add)
  e.length.store(0, std::memory_order_relaxed);
  e.state.store(kFree, std::memory_order_release);  // pairs with add's acquire CAS
}

bool lost(std::uint32_t i) noexcept {
  // Relaxed: a flag; the handler set it on this or another thread before the zero pages appeared.
  return i != kNoEntry && g_entries[i].lost.load(std::memory_order_relaxed) != 0;
}

}  // namespace guard

// The process-local view of one segment: the control area mapped read-write, the record area
// mapped read-only, and (for writers, on demand) the record area mapped read-write as well. Each
// mapping is registered with the SIGBUS guard while it exists.
class Mapping {
 public:
  SegmentInfo info;
  bip::mapped_region control_region;
  bip::mapped_region data_ro;
  std::once_flag rw_once;
  bip::mapped_region data_rw;
  bip::shared_memory_object shm;  // kept open for the read-write remap
  bool prefault = true;
  std::atomic<bool> populated_ro{false};
  std::atomic<bool> populated_rw{false};
  std::array<std::uint32_t, 3> guarded{guard::kNoEntry, guard::kNoEntry, guard::kNoEntry};
  std::atomic<int> notify_dir{-1};  // the WaitFd socket directory, opened on first use

  Mapping() = default;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  // Runs before the regions' destructors unmap them.
  ~Mapping() {
    for (std::uint32_t i : guarded) guard::remove(i);
    if (const int fd = notify_dir.load(std::memory_order_relaxed); fd >= 0) {
      detail::forget_notify_dir(fd);
      ::close(fd);
    }
  }

  void protect(std::size_t which, const bip::mapped_region& region, int prot) {
    guarded[which] = guard::add(region.get_address(), region.get_size(), prot);
  }

  layout::Control& control() noexcept {
    return *static_cast<layout::Control*>(control_region.get_address());
  }
};

}  // namespace detail

namespace {

constexpr std::string_view kPrefix = "flatring.";

std::string shm_name(std::string_view name) { return std::string(kPrefix) + std::string(name); }

[[noreturn]] void fail(Errc code, std::string_view name, const std::string& what) {
  throw Error(code, "flatring ring '" + std::string(name) + "': " + what);
}

Errc errc_of(const bip::interprocess_exception& e) {
  switch (e.get_error_code()) {
    case bip::already_exists_error: return Errc::already_exists;
    case bip::not_found_error: return Errc::not_found;
    case bip::security_error: return Errc::permission_denied;
    default: return Errc::system_error;
  }
}

int fd_of(const bip::shared_memory_object& shm) { return shm.get_mapping_handle().handle; }

std::uint64_t now_unix_ns() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

void validate_options(std::string_view name, RingOptions& o) {
  if (o.capacity < layout::kMinCapacity || o.capacity > layout::kMaxCapacity ||
      !std::has_single_bit(o.capacity)) {
    fail(Errc::invalid_options, name,
         "capacity " + std::to_string(o.capacity) + " must be a power of two between " +
             std::to_string(layout::kMinCapacity) + " and " + std::to_string(layout::kMaxCapacity));
  }
  if (o.max_record_size == 0) o.max_record_size = max_record_size_for(o.capacity);
  if (o.max_record_size > max_record_size_for(o.capacity)) {
    fail(Errc::invalid_options, name,
         "max_record_size " + std::to_string(o.max_record_size) + " needs capacity >= 2 * (" +
             "max_record_size + 64); the largest for capacity " + std::to_string(o.capacity) +
             " is " + std::to_string(max_record_size_for(o.capacity)));
  }
  if ((o.permissions & ~0777u) != 0 || (o.permissions & 0600u) != 0600u) {
    fail(Errc::invalid_options, name, "permissions must be within 0777 and include 0600");
  }
  switch (o.mode) {
    case Mode::spsc:
    case Mode::mpsc:
    case Mode::mpmc:
    case Mode::broadcast: break;
    default: fail(Errc::invalid_options, name, "unknown mode");
  }
}

// Checks a header copied out of the segment. Every field is checked before any is used.
void validate_header(std::string_view name, const layout::SegmentHeader& h, std::uint64_t magic,
                     std::uint64_t real_size) {
  if (magic != layout::kMagic) {
    fail(Errc::not_flatring, name,
         "not a flatring segment (bad magic; foreign, or not initialized)");
  }
  if (h.version != layout::kVersion) {
    fail(Errc::wrong_version, name,
         "layout version " + std::to_string(h.version) + ", this build reads version " +
             std::to_string(layout::kVersion));
  }
  if (h.header_size != sizeof(layout::SegmentHeader)) {
    fail(Errc::corrupt_header, name, "header size " + std::to_string(h.header_size));
  }
  if (h.mode < 1 || h.mode > 4)
    fail(Errc::corrupt_header, name, "unknown mode " + std::to_string(h.mode));
  if (h.capacity < layout::kMinCapacity || h.capacity > layout::kMaxCapacity ||
      !std::has_single_bit(h.capacity)) {
    fail(Errc::corrupt_header, name, "capacity " + std::to_string(h.capacity) + " out of range");
  }
  if (h.max_record_size == 0 || h.max_record_size > max_record_size_for(h.capacity)) {
    fail(Errc::corrupt_header, name,
         "max_record_size " + std::to_string(h.max_record_size) + " too large for capacity");
  }
  // The schema fields first: the record area's offset depends on them.
  if (h.schema_size > layout::kMaxSchemaSize) {
    fail(Errc::schema_too_large, name,
         "the header says the stored schema is " + std::to_string(h.schema_size) +
             " bytes; at most " + std::to_string(layout::kMaxSchemaSize) + " are accepted");
  }
  if (h.schema_offset != (h.schema_size == 0 ? 0 : layout::kRingOffset)) {
    fail(Errc::corrupt_header, name, "schema offset " + std::to_string(h.schema_offset));
  }
  if (h.ring_offset != layout::ring_offset_for(h.schema_size)) {
    fail(Errc::corrupt_header, name, "ring offset " + std::to_string(h.ring_offset));
  }
  if (h.segment_size != h.ring_offset + h.capacity) {
    fail(Errc::corrupt_header, name, "segment size field disagrees with capacity");
  }
  if (real_size != h.segment_size) {
    fail(Errc::size_mismatch, name,
         "segment is " + std::to_string(real_size) + " bytes but its header says " +
             std::to_string(h.segment_size) + " (truncated or resized)");
  }
}

void write_all(int fd, std::span<const std::uint8_t> bytes, std::uint64_t offset) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n =
        ::pwrite(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      throw Error(Errc::system_error, std::string("flatring: writing the schema area: ") +
                                          std::strerror(n < 0 ? errno : EIO));
    }
    done += static_cast<std::size_t>(n);
  }
}

// The stored schema, copied out once with pread (a short read is a truncated segment, never a
// SIGBUS), checked against its header hash, then verified as untrusted input (Schema::from_bfbs).
// \pre validate_header accepted `h` (the size is capped and the area lies inside the file).
Schema read_stored_schema(std::string_view name, int fd, const layout::SegmentHeader& h) {
  std::vector<std::uint8_t> bytes(h.schema_size);
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::pread(fd, bytes.data() + done, bytes.size() - done,
                              static_cast<off_t>(h.schema_offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail(Errc::size_mismatch, name, "the schema area is cut short");
    done += static_cast<std::size_t>(n);
  }
  const std::uint64_t hash =
      fnv1a64(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  if (hash != h.schema_bfbs_hash) {
    fail(Errc::corrupt_schema, name, "the stored schema does not match the hash in the header");
  }
  try {
    return Schema::from_bfbs(bytes, SchemaLimits{.max_size = layout::kMaxSchemaSize});
  } catch (const Error& e) {
    fail(e.code(), name, std::string("stored schema: ") + e.what());
  }
}

bip::mapped_region map(const bip::shared_memory_object& shm, bip::mode_t mode, std::uint64_t offset,
                       std::uint64_t size) {
  return bip::mapped_region(shm, mode, static_cast<bip::offset_t>(offset),
                            static_cast<std::size_t>(size));
}

bool slot_alive(const layout::PeerSlot& s) noexcept {
  // SYNC POINT READ: pairs with the claimer's pid CAS; the start time it stores next is read
  // with acquire below and may lag (then the liveness test fails safe: it looks dead only if the
  // pid is gone too, see is_alive).
  std::uint32_t pid = s.pid.load(std::memory_order_acquire);
  if (pid == 0) return false;
  if (pid == layout::kReaping) return true;  // someone else is reclaiming it
  return is_alive(ProcessToken{pid, s.start_time.load(std::memory_order_acquire)});
}

// Takes a dead owner's slot: only the CAS winner folds its counters, so nothing is counted twice.
bool reclaim_slot(layout::Control& c, std::uint32_t index, std::uint32_t dead_pid) noexcept {
  auto& s = c.peers[index];
  std::uint32_t expected = dead_pid;
  if (!s.pid.compare_exchange_strong(expected, layout::kReaping, std::memory_order_acq_rel)) {
    return false;
  }
  for (std::uint32_t k = 0; k < layout::kCounterCount; ++k) {
    c.retired.value[k].fetch_add(s.counter[k].load(std::memory_order_relaxed),
                                 std::memory_order_relaxed);
    s.counter[k].store(0, std::memory_order_relaxed);
  }
  s.role.store(0, std::memory_order_relaxed);
  s.start_time.store(0, std::memory_order_relaxed);
  s.cursor.store(0, std::memory_order_relaxed);
  s.pid.store(0, std::memory_order_release);  // pairs with the claimer's CAS (acquire)
  return true;
}

std::atomic<std::uint32_t>& owner_word(layout::Control& c, layout::Role role) {
  return role == layout::Role::producer ? c.owners.producer : c.owners.consumer;
}

}  // namespace

// ---------------------------------------------------------------- Ring: names

void Ring::validate_name(std::string_view name) {
  if (name.empty() || name.size() > 200) {
    fail(Errc::invalid_name, name, "a name must have 1 to 200 characters");
  }
  if (name.front() == '.') fail(Errc::invalid_name, name, "a name must not start with '.'");
  for (char ch : name) {
    bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-';
    if (!ok) fail(Errc::invalid_name, name, "names may hold only A-Z a-z 0-9 . _ -");
  }
}

std::string Ring::path_of(std::string_view name) { return "/dev/shm/" + shm_name(name); }

int Ring::notify_dir(bool create) const {
  // Acquire: pairs with the release of the CAS below, in another thread of this process.
  int fd = map_->notify_dir.load(std::memory_order_acquire);
  if (fd >= 0) return fd;
  detail::DirOpen d = detail::open_notify_dir(map_->info, create);
  if (d.fd < 0) {
    if (create) fail(d.code, map_->info.name, d.why);
    return -1;
  }
  int expected = -1;
  if (map_->notify_dir.compare_exchange_strong(expected, d.fd, std::memory_order_acq_rel)) {
    return d.fd;
  }
  ::close(d.fd);  // another thread opened it first
  return expected;
}

bool Ring::remove(std::string_view name) noexcept {
  try {
    validate_name(name);
    detail::remove_notify_dir(name);
    return bip::shared_memory_object::remove(shm_name(name).c_str());
  } catch (...) {
    return false;
  }
}

bool Ring::exists(std::string_view name) noexcept {
  try {
    validate_name(name);
  } catch (...) {
    return false;
  }
  struct stat st {};
  return ::lstat(path_of(name).c_str(), &st) == 0;
}

std::vector<std::string> Ring::list() {
  std::vector<std::string> names;
  if (DIR* d = ::opendir("/dev/shm")) {
    while (dirent* e = ::readdir(d)) {
      std::string_view n(e->d_name);
      if (n.substr(0, kPrefix.size()) == kPrefix && n.size() > kPrefix.size()) {
        names.emplace_back(n.substr(kPrefix.size()));
      }
    }
    ::closedir(d);
  }
  std::sort(names.begin(), names.end());
  return names;
}

// ---------------------------------------------------------------- Ring: stale segments

namespace {

// Why the open segment is stale, or nothing if it is not: its creator has exited and no peer slot
// is held by a live process (a slot being reaped counts as live: its reaper is).
std::optional<std::string> stale_reason_of(const Ring& ring) {
  const SegmentInfo& info = ring.info();
  if (is_alive(info.creator)) return std::nullopt;
  for (const auto& s : ring.control().peers) {
    if (slot_alive(s)) return std::nullopt;
  }
  return "its creator, pid " + std::to_string(info.creator.pid) +
         ", has exited and no live process is attached";
}

}  // namespace

std::optional<std::string> Ring::stale_reason(std::string_view name) noexcept {
  try {
    return stale_reason_of(Ring::open(name));
  } catch (...) {
    return std::nullopt;  // not a segment we may open: never called stale, never reclaimed
  }
}

bool Ring::same_segment(const Ring& other) const noexcept {
  if (!map_ || !other.map_) return false;
  if (map_ == other.map_) return true;
  struct stat a {};
  struct stat b {};
  return ::fstat(fd_of(map_->shm), &a) == 0 && ::fstat(fd_of(other.map_->shm), &b) == 0 &&
         a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

bool Ring::is_stale(std::string_view name) { return stale_reason_of(Ring::open(name)).has_value(); }

bool Ring::reclaim_if_stale(std::string_view name) {
  const Ring ring = Ring::open(name);
  if (!stale_reason_of(ring)) return false;
  // Unlink only the object we looked at: if the name was replaced meanwhile, leave the new one.
  struct stat opened {};
  struct stat now {};
  if (::fstat(fd_of(ring.map_->shm), &opened) != 0 || ::lstat(path_of(name).c_str(), &now) != 0 ||
      opened.st_ino != now.st_ino || opened.st_dev != now.st_dev) {
    return false;
  }
  return remove(name);
}

// ---------------------------------------------------------------- Ring: create / open

Ring Ring::create(std::string_view name, const RingOptions& options, const SchemaId& schema,
                  const CreateOptions& create) {
  return create_with(name, options, schema, Schema{}, create);
}

Ring Ring::create(std::string_view name, const RingOptions& options, const Schema& schema,
                  const CreateOptions& create) {
  const SchemaId id =
      schema.empty() ? SchemaId{} : SchemaId::of(schema.root_name(), schema.file_identifier());
  return create_with(name, options, id, schema, create);
}

Ring Ring::create_with(std::string_view name, const RingOptions& options, const SchemaId& schema,
                       const Schema& stored, const CreateOptions& create) {
  validate_name(name);
  RingOptions o = options;
  validate_options(name, o);
  const std::span<const std::uint8_t> bfbs = stored.bfbs();
  if (bfbs.size() > layout::kMaxSchemaSize) {
    fail(Errc::schema_too_large, name,
         "the binary schema is " + std::to_string(bfbs.size()) +
             " bytes; a segment stores at most " + std::to_string(layout::kMaxSchemaSize));
  }
  const std::uint64_t ring_offset = layout::ring_offset_for(bfbs.size());

  auto m = std::make_shared<detail::Mapping>();
  m->prefault = create.prefault;
  const std::string full = shm_name(name);
  for (int attempt = 0;; ++attempt) {
    try {
      bip::permissions perm(o.permissions);
      m->shm = bip::shared_memory_object(bip::create_only, full.c_str(), bip::read_write, perm);
      break;
    } catch (const bip::interprocess_exception& e) {
      const Errc code = errc_of(e);
      if (code != Errc::already_exists) fail(code, name, std::string("create: ") + e.what());
      const std::optional<std::string> stale = stale_reason(name);
      if (!stale) fail(code, name, "create: already exists");
      if (!create.reclaim_stale || attempt != 0) {
        fail(code, name,
             "create: already exists, and is stale (" + *stale +
                 "); reclaim it with Ring::reclaim_if_stale or "
                 "CreateOptions::reclaim_stale");
      }
      (void)reclaim_if_stale(name);  // if someone else reclaimed it first, the retry creates
    }
  }
  const std::uint64_t size = ring_offset + o.capacity;
  try {
    m->shm.truncate(static_cast<bip::offset_t>(size));
    // The schema area is written once, before the magic, with pwrite: it is never mapped.
    write_all(fd_of(m->shm), bfbs, layout::kRingOffset);
    m->control_region = map(m->shm, bip::read_write, 0, layout::kRingOffset);
    m->data_ro = map(m->shm, bip::read_only, ring_offset, o.capacity);
    m->protect(0, m->control_region, PROT_READ | PROT_WRITE);
    m->protect(1, m->data_ro, PROT_READ);
  } catch (const bip::interprocess_exception& e) {
    bip::shared_memory_object::remove(full.c_str());
    fail(errc_of(e), name, std::string("create: ") + e.what());
  } catch (const Error&) {
    bip::shared_memory_object::remove(full.c_str());
    throw;
  }

  // The new file is all zeros: positions, wait words, slots and the first frame word start at 0.
  auto& h = m->control().header;
  h.version = layout::kVersion;
  h.header_size = sizeof(layout::SegmentHeader);
  h.mode = static_cast<std::uint32_t>(o.mode);
  h.flags = 0;
  h.capacity = o.capacity;
  h.max_record_size = o.max_record_size;
  h.ring_offset = ring_offset;
  h.segment_size = size;
  std::memcpy(h.file_identifier, schema.file_identifier, 4);
  h.schema_hash = schema.hash;
  h.schema_offset = bfbs.empty() ? 0 : layout::kRingOffset;
  h.schema_size = bfbs.size();
  h.schema_bfbs_hash = bfbs.empty() ? 0 : stored.hash();
  ProcessToken self = self_process();
  h.creator_pid = self.pid;
  h.creator_start_time = self.start_time;
  h.created_unix_ns = now_unix_ns();
  // SYNC POINT WRITE: publishes the header; pairs with the opener's read of the magic.
  h.magic.store(layout::kMagic, std::memory_order_release);

  SegmentInfo& info = m->info;
  info.name = std::string(name);
  info.mode = o.mode;
  info.capacity = o.capacity;
  info.max_record_size = o.max_record_size;
  info.ring_offset = ring_offset;
  info.segment_size = size;
  info.schema = schema;
  info.stored_schema = stored;
  info.creator = self;
  info.created_unix_ns = h.created_unix_ns;
  info.owner_uid = static_cast<std::uint32_t>(::geteuid());
  info.file_mode = o.permissions;
  return Ring(std::move(m));
}

Ring Ring::open(std::string_view name, const OpenOptions& options) {
  validate_name(name);
  auto m = std::make_shared<detail::Mapping>();
  m->prefault = options.prefault;
  const std::string full = shm_name(name);
  try {
    m->shm = bip::shared_memory_object(bip::open_only, full.c_str(), bip::read_write);
  } catch (const bip::interprocess_exception& e) {
    int err = e.get_native_error();
    if (err == ELOOP) fail(Errc::unsafe_permissions, name, "the segment is a symbolic link");
    fail(errc_of(e), name, std::string("open: ") + e.what());
  }
  const int fd = fd_of(m->shm);

  struct stat st {};
  if (::fstat(fd, &st) != 0)
    fail(Errc::system_error, name, std::string("fstat: ") + std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    fail(Errc::unsafe_permissions, name, "the segment is not a regular file");
  if (st.st_uid != ::geteuid() && !options.allow_foreign_owner) {
    fail(Errc::unsafe_owner, name,
         "owned by uid " + std::to_string(st.st_uid) + ", not by this process's uid " +
             std::to_string(::geteuid()) + " (OpenOptions::allow_foreign_owner)");
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && !options.allow_shared_write) {
    fail(Errc::unsafe_permissions, name,
         "group- or world-writable (mode 0" +
             std::to_string(((st.st_mode >> 6) & 7) * 100 + ((st.st_mode >> 3) & 7) * 10 +
                            (st.st_mode & 7)) +
             "; OpenOptions::allow_shared_write)");
  }
  const auto real_size = static_cast<std::uint64_t>(st.st_size);

  // Read the header with pread, not through a mapping: a short or shrinking file can then only
  // give a short read, never SIGBUS.
  layout::SegmentHeader h;
  std::memset(static_cast<void*>(&h), 0, sizeof h);
  ssize_t got = ::pread(fd, static_cast<void*>(&h), sizeof h, 0);
  if (got < 0) fail(Errc::system_error, name, std::string("read header: ") + std::strerror(errno));
  if (static_cast<std::size_t>(got) < sizeof(std::uint64_t)) {
    fail(Errc::not_flatring, name,
         "segment too small to be flatring (" + std::to_string(real_size) + " bytes)");
  }
  std::uint64_t magic = 0;
  std::memcpy(&magic, static_cast<const void*>(&h), sizeof magic);
  if (magic == layout::kMagic && static_cast<std::size_t>(got) < sizeof h) {
    fail(Errc::size_mismatch, name,
         "truncated: " + std::to_string(real_size) + " bytes, smaller than the header");
  }
  validate_header(name, h, magic, real_size);

  SchemaId schema;
  std::memcpy(schema.file_identifier, h.file_identifier, 4);
  schema.hash = h.schema_hash;
  if (options.expect_schema && !(*options.expect_schema == schema)) {
    fail(Errc::wrong_schema, name,
         "schema mismatch: the ring holds '" + schema.identifier() + "' (hash " +
             std::to_string(schema.hash) + "), the caller expects '" +
             options.expect_schema->identifier() + "' (hash " +
             std::to_string(options.expect_schema->hash) + ")");
  }
  Schema stored;
  if (h.schema_size != 0) stored = read_stored_schema(name, fd, h);
  const auto mode = static_cast<Mode>(h.mode);
  if (options.expect_mode && *options.expect_mode != mode) {
    fail(Errc::wrong_mode, name,
         "the ring's mode is " + std::to_string(h.mode) + ", expected " +
             std::to_string(static_cast<unsigned>(*options.expect_mode)));
  }

  try {
    m->control_region = map(m->shm, bip::read_write, 0, layout::kRingOffset);
    m->data_ro = map(m->shm, bip::read_only, h.ring_offset, h.capacity);
    m->protect(0, m->control_region, PROT_READ | PROT_WRITE);
    m->protect(1, m->data_ro, PROT_READ);
  } catch (const bip::interprocess_exception& e) {
    fail(errc_of(e), name, std::string("map: ") + e.what());
  }

  SegmentInfo& info = m->info;
  info.name = std::string(name);
  info.mode = mode;
  info.capacity = h.capacity;
  info.max_record_size = h.max_record_size;
  info.ring_offset = h.ring_offset;
  info.segment_size = h.segment_size;
  info.schema = schema;
  info.stored_schema = std::move(stored);
  info.creator = ProcessToken{h.creator_pid, h.creator_start_time};
  info.created_unix_ns = h.created_unix_ns;
  info.owner_uid = st.st_uid;
  info.file_mode = st.st_mode & 0777;
  return Ring(std::move(m));
}

const SegmentInfo& Ring::info() const noexcept { return map_->info; }
bool Ring::lost() const noexcept {
  return std::any_of(map_->guarded.begin(), map_->guarded.end(), detail::guard::lost);
}
layout::Control& Ring::control() const noexcept { return map_->control(); }
const std::byte* Ring::data() const noexcept {
  return static_cast<const std::byte*>(map_->data_ro.get_address());
}

std::byte* Ring::writable_data() const {
  std::call_once(map_->rw_once, [this] {
    try {
      map_->data_rw = map(map_->shm, bip::read_write, map_->info.ring_offset, map_->info.capacity);
      map_->protect(2, map_->data_rw, PROT_READ | PROT_WRITE);
    } catch (const bip::interprocess_exception& e) {
      fail(errc_of(e), map_->info.name, std::string("map for writing: ") + e.what());
    }
  });
  return static_cast<std::byte*>(map_->data_rw.get_address());
}

bool Ring::prefault(bool writable) const noexcept {
  if (!map_->prefault) return false;
  auto& done = writable ? map_->populated_rw : map_->populated_ro;
  if (done.exchange(true, std::memory_order_relaxed)) return true;  // process-local flag
  const bip::mapped_region& region = writable ? map_->data_rw : map_->data_ro;
  auto* base = static_cast<std::byte*>(region.get_address());
  const std::size_t size = region.get_size();
  if (base == nullptr || size == 0) return false;
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22  // Linux 5.14
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
  // A shrunk segment makes madvise fail with EFAULT instead of raising SIGBUS.
  if (::madvise(base, size, writable ? MADV_POPULATE_WRITE : MADV_POPULATE_READ) == 0) return true;
  if (errno != EINVAL) return false;  // the kernel knows the advice; the pages are not there
  // Older kernels: touch every page (the SIGBUS guard covers a segment shrunk meanwhile). A
  // write is an atomic add of 0, so a peer's concurrent bytes are never changed.
  for (std::size_t off = 0; off < size; off += layout::kPageSize) {
    if (writable) {
      __atomic_fetch_add(reinterpret_cast<std::uint8_t*>(base + off), std::uint8_t{0},
                         __ATOMIC_RELAXED);
    } else {
      (void)__atomic_load_n(reinterpret_cast<const std::uint8_t*>(base + off), __ATOMIC_RELAXED);
    }
  }
  return true;
}

std::uint32_t Ring::reap_dead_peers() const noexcept {
  layout::Control& c = control();
  std::uint32_t reaped = 0;
  for (std::uint32_t i = 0; i < layout::kMaxPeers; ++i) {
    auto& s = c.peers[i];
    // Acquire: pairs with the claimer's pid CAS (acq_rel) and start-time store.
    std::uint32_t pid = s.pid.load(std::memory_order_acquire);
    if (pid == 0 || pid == layout::kReaping) continue;
    if (is_alive(ProcessToken{pid, s.start_time.load(std::memory_order_acquire)})) continue;
    for (auto role : {layout::Role::producer, layout::Role::consumer}) {
      std::uint32_t mine = i + 1;
      // SYNC POINT: frees a dead owner's role; pairs with a taker's acquire load / CAS of the
      // owner word. Fails harmlessly when the word names another slot.
      owner_word(c, role).compare_exchange_strong(mine, 0, std::memory_order_acq_rel);
    }
    if (reclaim_slot(c, i, pid)) ++reaped;
  }
  return reaped;
}

PeerCensus census(const Ring& ring, layout::Role role) noexcept {
  PeerCensus out;
  for (const auto& s : ring.control().peers) {
    // Acquire, both: pair with the claimer's pid CAS and its role store (release).
    if (s.pid.load(std::memory_order_acquire) == 0) continue;
    if (s.role.load(std::memory_order_acquire) != static_cast<std::uint32_t>(role)) continue;
    if (slot_alive(s)) ++out.alive;
    else ++out.dead;
  }
  return out;
}

// ---------------------------------------------------------------- Attachment

Attachment::Attachment(Ring ring, layout::Role role, bool exclusive)
    : ring_(std::move(ring)), role_(role), exclusive_(exclusive) {
  layout::Control& c = ring_.control();
  const ProcessToken self = self_process();
  for (int attempt = 0; attempt < 2 && slot_ == nullptr; ++attempt) {
    for (std::uint32_t i = 0; i < layout::kMaxPeers; ++i) {
      std::uint32_t expected = 0;
      // SYNC POINT: acquire pairs with the release that freed the slot.
      if (c.peers[i].pid.compare_exchange_strong(expected, self.pid, std::memory_order_acq_rel)) {
        slot_ = &c.peers[i];
        index_ = i;
        break;
      }
    }
    if (slot_ == nullptr) ring_.reap_dead_peers();
  }
  if (slot_ == nullptr) {
    fail(Errc::no_free_slot, ring_.info().name,
         "all " + std::to_string(layout::kMaxPeers) + " peer slots are held by live processes");
  }
  // Relaxed: published by the role store below.
  slot_->start_time.store(self.start_time, std::memory_order_relaxed);
  slot_->cursor.store(0, std::memory_order_relaxed);
  for (auto& v : slot_->counter) v.store(0, std::memory_order_relaxed);
  // SYNC POINT WRITE: the slot is filled; pairs with the role loads (acquire) of census,
  // broadcast's refresh_min and the recovery scans.
  slot_->role.store(static_cast<std::uint32_t>(role), std::memory_order_release);

  if (!exclusive_) return;
  auto& owner = owner_word(c, role);
  const std::uint32_t mine = index_ + 1;
  for (;;) {
    // Acquire: pairs with the previous owner's release (CAS to 0) or a takeover CAS.
    std::uint32_t cur = owner.load(std::memory_order_acquire);
    if (cur == 0) {
      // SYNC POINT: takes the free role; acq_rel pairs with every other owner-word CAS.
      if (owner.compare_exchange_strong(cur, mine, std::memory_order_acq_rel)) return;
      continue;
    }
    // The owner word is untrusted: an index out of range, or one naming a free, foreign-role or
    // dead slot, does not hold the role.
    bool held = false;
    std::uint32_t dead_pid = 0;
    if (cur <= layout::kMaxPeers) {
      const auto& s = c.peers[cur - 1];
      // Acquire: pairs with the owner's role store (release) and pid CAS.
      if (s.role.load(std::memory_order_acquire) == static_cast<std::uint32_t>(role) &&
          slot_alive(s)) {
        held = true;
      } else {
        dead_pid = s.pid.load(std::memory_order_acquire);
      }
    }
    if (held) {
      // Relaxed: only for the message.
      const std::string who = std::to_string(c.peers[cur - 1].pid.load(std::memory_order_relaxed));
      exclusive_ = false;  // we never held the role
      release();
      fail(Errc::role_taken, ring_.info().name,
           std::string(role == layout::Role::producer ? "producer" : "consumer") +
               " role is held by live process " + who + " (the mode allows one)");
    }
    // SYNC POINT: takes the role over from a dead (or impossible) owner; fails if another taker
    // or the owner's own release changed the word first.
    if (owner.compare_exchange_strong(cur, mine, std::memory_order_acq_rel)) {
      took_over_ = true;
      if (cur <= layout::kMaxPeers && dead_pid != 0 && dead_pid != layout::kReaping) {
        reclaim_slot(c, cur - 1, dead_pid);
      }
      return;
    }
  }
}

Attachment::Attachment(Attachment&& o) noexcept
    : ring_(o.ring_),
      slot_(o.slot_),
      index_(o.index_),
      role_(o.role_),
      exclusive_(o.exclusive_),
      took_over_(o.took_over_) {
  o.slot_ = nullptr;
}

Attachment::~Attachment() { release(); }

void Attachment::release() noexcept {
  if (slot_ == nullptr) return;
  layout::Control& c = ring_.control();
  if (exclusive_) {
    std::uint32_t mine = index_ + 1;
    // SYNC POINT WRITE: gives the role back; pairs with the next taker's acquire load / CAS.
    // Fails harmlessly if a taker already took it from us (we looked dead to it).
    owner_word(c, role_).compare_exchange_strong(mine, 0, std::memory_order_acq_rel);
  }
  // Relaxed: our own slot's word, which only a reaper (CAS) changes.
  std::uint32_t pid = slot_->pid.load(std::memory_order_relaxed);
  if (pid == self_process().pid) reclaim_slot(c, index_, pid);
  slot_ = nullptr;
}

}  // namespace flatring
