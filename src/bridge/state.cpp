#include "state.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>

#include "flatring/bridge.hpp"

namespace flatring::bridge {

namespace {
constexpr std::uint64_t kStateMagic = 0x4554415453425246ull;  // "FRBSTATE"
constexpr std::uint32_t kStateVersion = 1;

template <class T>
void store(T& field, T v) noexcept {
  // Release: a kill leaves the stores in program order, and the ring's commit (a release store
  // too) is ordered with them; the next In reads the file after this process is gone.
  __atomic_store_n(&field, v, __ATOMIC_RELEASE);
}
}  // namespace

StateFile::StateFile(const std::string& path, std::uint64_t ring_identity) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd_ < 0) {
    throw BridgeError(Reason::bad_state, "flatring bridge: cannot open state file " + path + ": " +
                                             std::strerror(errno));
  }
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd_);
    throw BridgeError(Reason::busy, "flatring bridge: state file " + path +
                                        " is held by another bridge (one In per ring)");
  }
  struct stat st {};
  if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != ::geteuid() ||
      (st.st_mode & 022) != 0 ||
      (st.st_size != 0 && st.st_size != static_cast<off_t>(sizeof(StateLayout)))) {
    ::close(fd_);
    throw BridgeError(Reason::bad_state,
                      "flatring bridge: " + path +
                          " is not a bridge state file of ours (size, owner or permissions)");
  }
  const bool fresh = st.st_size == 0;
  if (fresh && ::ftruncate(fd_, sizeof(StateLayout)) != 0) {
    ::close(fd_);
    throw BridgeError(Reason::bad_state, "flatring bridge: cannot size " + path);
  }
  void* m = ::mmap(nullptr, sizeof(StateLayout), PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (m == MAP_FAILED) {
    ::close(fd_);
    throw BridgeError(Reason::bad_state, "flatring bridge: cannot map " + path);
  }
  map_ = static_cast<StateLayout*>(m);
  if (!fresh && map_->magic != kStateMagic) {
    ::munmap(m, sizeof(StateLayout));
    ::close(fd_);
    throw BridgeError(Reason::bad_state,
                      "flatring bridge: " + path + " is not a bridge state file");
  }
  if (fresh || map_->version != kStateVersion || map_->ring != ring_identity) {
    std::memset(static_cast<void*>(map_), 0, sizeof(StateLayout));
    map_->version = kStateVersion;
    map_->ring = ring_identity;
    store(map_->magic, kStateMagic);
  }
}

StateFile::~StateFile() {
  if (map_ != nullptr) ::munmap(map_, sizeof(StateLayout));
  if (fd_ >= 0) ::close(fd_);  // releases the lock
}

SourceEntry* StateFile::entry(std::uint64_t source) noexcept {
  if (source == 0) source = 1;  // 0 marks a free entry
  SourceEntry* free_entry = nullptr;
  for (auto& e : map_->sources) {
    if (e.source == source) return &e;
    if (e.source == 0 && free_entry == nullptr) free_entry = &e;
  }
  if (free_entry == nullptr) return nullptr;
  free_entry->has_last = 0;
  free_entry->pending = 0;
  store(free_entry->source, source);
  return free_entry;
}

void StateFile::begin(SourceEntry& e, std::uint64_t seq, std::uint64_t pos) noexcept {
  store(e.pending_seq, seq);
  store(e.pending_pos, pos);
  store(e.pending, std::uint32_t{1});
}

void StateFile::done(SourceEntry& e, std::uint64_t seq) noexcept {
  store(e.last, seq);
  store(e.has_last, std::uint32_t{1});
  store(e.pending, std::uint32_t{0});
}

void StateFile::settle(SourceEntry& e, bool committed) noexcept {
  if (e.pending == 0) return;
  if (committed) done(e, e.pending_seq);
  else store(e.pending, std::uint32_t{0});
}

}  // namespace flatring::bridge
