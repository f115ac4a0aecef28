// WaitFd (wait_fd.hpp): the notification socket of a peer slot, its directory, the waker's
// datagrams, and the pidfds of the watched peers.
#include "flatring/wait_fd.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>
#include <utility>

#include "flatring/liveness.hpp"
#include "flatring/wait.hpp"
#include "notify_dir.hpp"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

namespace flatring {
namespace detail {

std::string notify_dir_path(std::string_view name) {
  return "/dev/shm/flatring-wait." + std::string(name);
}

namespace {

// The directory's permissions: the owner's always; group and other only where the segment grants
// them (then with the sticky bit, so that no member removes another's socket).
mode_t dir_mode(std::uint32_t file_mode) noexcept {
  mode_t m = 0700;
  if (file_mode & 0060) m |= 0070 | S_ISVTX;
  if (file_mode & 0006) m |= 0007 | S_ISVTX;
  return m;
}

DirOpen refuse(int fd, Errc code, std::string why) noexcept {
  if (fd >= 0) ::close(fd);
  return {-1, code, std::move(why)};
}

std::string sys_why(const std::string& what) { return what + ": " + std::strerror(errno); }

// "/proc/self/fd/<dir>/<slot>": a short path whatever the ring's name (sun_path has 108 bytes),
// resolved through the descriptor this process checked, not through a name someone may replace.
bool slot_address(int dir, std::uint32_t slot, sockaddr_un& a, socklen_t& len) noexcept {
  a = {};
  a.sun_family = AF_UNIX;
  const int n = std::snprintf(a.sun_path, sizeof a.sun_path, "/proc/self/fd/%d/%u", dir, slot);
  if (n <= 0 || static_cast<std::size_t>(n) >= sizeof a.sun_path) return false;
  len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + static_cast<std::size_t>(n) + 1);
  return true;
}

// One unbound datagram socket per process for the waker's sendto. Closed and forgotten in a
// forked child (its one thread), which makes its own when it first wakes someone.
std::atomic<int> sender_fd{-1};
void forget_sender_in_child() noexcept {
  const int fd = sender_fd.exchange(-1, std::memory_order_relaxed);
  if (fd >= 0) ::close(fd);
}
int sender() noexcept {
  // Acquire: pairs with the release of the CAS below.
  int fd = sender_fd.load(std::memory_order_acquire);
  if (fd >= 0) return fd;
  static const bool at_fork = ::pthread_atfork(nullptr, nullptr, forget_sender_in_child) == 0;
  (void)at_fork;
  fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  int expected = -1;
  if (sender_fd.compare_exchange_strong(expected, fd, std::memory_order_acq_rel)) return fd;
  ::close(fd);
  return expected;
}

// Claims armed bits of `w.notify`: the lowest one for a one-consumer wake (a bounded number of
// tries, since the word is shared and may be toggled by a hostile peer; then all), else all.
std::uint32_t claim_bits(layout::WaitLine& w, int count) noexcept {
  if (count == 1) {
    std::uint32_t cur = w.notify.load(std::memory_order_relaxed);
    for (int i = 0; i < 8 && cur != 0; ++i) {
      const std::uint32_t lowest = cur & (~cur + 1);
      // acq_rel: the claim is ours alone (the armer's disarm races with it on the same bit).
      if (w.notify.compare_exchange_weak(cur, cur & ~lowest, std::memory_order_acq_rel,
                                         std::memory_order_relaxed)) {
        return lowest;
      }
    }
    if (cur == 0) return 0;
  }
  return w.notify.exchange(0, std::memory_order_acq_rel);
}

// The waker's connected sockets, one per (notification directory, slot): a send on a connected
// socket skips the path lookup of sendto, which costs more than the datagram itself (about 15 us
// of 35 on the 2-vCPU VM). A few directories (rings) per process are cached; the rest, and a
// slot whose lock another thread holds (or held when this process forked), are sent to by path.
struct DirSockets {
  DirSockets() noexcept { fd.fill(-1); }  // -1 whenever `dir` is free: forget_notify_dir resets
  std::atomic<int> dir{-1};
  std::array<std::atomic<bool>, layout::kMaxPeers> busy{};
  std::array<int, layout::kMaxPeers> fd;
};
constexpr std::size_t kCachedDirs = 16;
std::array<DirSockets, kCachedDirs> dir_sockets;

DirSockets* sockets_for(int dir) noexcept {
  for (DirSockets& d : dir_sockets) {
    if (d.dir.load(std::memory_order_acquire) == dir) return &d;
  }
  for (DirSockets& d : dir_sockets) {
    int expected = -1;
    // acq_rel: pairs with forget_notify_dir's release of the entry.
    if (d.dir.compare_exchange_strong(expected, dir, std::memory_order_acq_rel)) return &d;
    if (expected == dir) return &d;
  }
  return nullptr;
}

int connect_slot(int dir, std::uint32_t slot) noexcept {
  sockaddr_un a;
  socklen_t len = 0;
  if (!slot_address(dir, slot, a, len)) return -1;
  const int s = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (s < 0) return -1;
  if (::connect(s, reinterpret_cast<sockaddr*>(&a), len) != 0) {
    ::close(s);
    return -1;
  }
  return s;
}

// One datagram to `slot`'s socket. Failures are fine: nobody bound there (its holder died or
// closed), or its queue is full (readable already). MSG_NOSIGNAL: never SIGPIPE.
void send_to_slot(int dir, std::uint32_t slot) noexcept {
  const char one = 1;
  if (DirSockets* d = sockets_for(dir)) {
    std::atomic<bool>& busy = d->busy[slot];
    for (int spin = 0; spin < 1000; ++spin) {
      // Acquire: pairs with the release below; the lock is process-local, never in the segment.
      if (!busy.exchange(true, std::memory_order_acquire)) {
        int& fd = d->fd[slot];
        for (int attempt = 0; attempt < 2; ++attempt) {
          if (fd < 0) fd = connect_slot(dir, slot);
          if (fd < 0) break;  // nobody bound there
          if (::send(fd, &one, 1, MSG_DONTWAIT | MSG_NOSIGNAL) == 1 || errno == EAGAIN) break;
          // Refused: the socket we were connected to is gone; a new WaitFd may be bound there.
          ::close(fd);
          fd = -1;
        }
        busy.store(false, std::memory_order_release);
        return;
      }
      wait::cpu_relax();
    }
  }
  const int s = sender();
  sockaddr_un a;
  socklen_t len = 0;
  if (s < 0 || !slot_address(dir, slot, a, len)) return;
  (void)::sendto(s, &one, 1, MSG_DONTWAIT | MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&a), len);
}

bool all_digits(const char* s) noexcept {
  if (*s == '\0') return false;
  for (; *s != '\0'; ++s) {
    if (*s < '0' || *s > '9') return false;
  }
  return true;
}

}  // namespace

DirOpen open_notify_dir(const SegmentInfo& info, bool create) noexcept {
  try {
    const std::string path = notify_dir_path(info.name);
    const mode_t mode = dir_mode(info.file_mode);
    bool made = false;
    if (create) {
      if (::mkdir(path.c_str(), mode) == 0) made = true;
      else if (errno != EEXIST) return refuse(-1, Errc::system_error, sys_why("mkdir " + path));
    }
    // O_NOFOLLOW: a symlink planted in /dev/shm is refused, not followed.
    const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      const Errc code =
          errno == ENOTDIR || errno == ELOOP ? Errc::unsafe_permissions : Errc::system_error;
      return refuse(-1, code, sys_why("open " + path));
    }
    if (made) (void)::fchmod(fd, mode);  // mkdir's mode went through the umask
    struct stat st {};
    if (::fstat(fd, &st) != 0) return refuse(fd, Errc::system_error, sys_why("fstat " + path));
    if (!S_ISDIR(st.st_mode))
      return refuse(fd, Errc::unsafe_permissions, path + " is no directory");
    if (st.st_uid != ::geteuid() && st.st_uid != info.owner_uid) {
      return refuse(fd, Errc::unsafe_owner,
                    path + " belongs to uid " + std::to_string(st.st_uid) +
                        ", neither this process's nor the segment's owner");
    }
    if ((st.st_mode & 07777 & ~mode) != 0) {
      char have[16];
      std::snprintf(have, sizeof have, "%04o", static_cast<unsigned>(st.st_mode & 07777));
      return refuse(fd, Errc::unsafe_permissions,
                    path + " has mode " + have + ", wider than the segment allows");
    }
    return {fd, Errc::system_error, {}};
  } catch (...) {
    return refuse(-1, Errc::system_error, "out of memory");
  }
}

void remove_notify_dir(std::string_view name) noexcept {
  try {
    const std::string path = notify_dir_path(name);
    const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return;
    if (DIR* d = ::fdopendir(fd)) {
      while (const dirent* e = ::readdir(d)) {
        if (all_digits(e->d_name)) (void)::unlinkat(fd, e->d_name, 0);
      }
      ::closedir(d);  // closes fd
    } else {
      ::close(fd);
    }
    (void)::rmdir(path.c_str());  // fails, harmlessly, if something else is in it
  } catch (...) {
  }
}

void notify_armed(layout::WaitLine& w, const Attachment& self, int count) noexcept {
  const std::uint32_t bits = claim_bits(w, count);
  if (bits == 0) return;
  // Relaxed: a count for wakers; the armers whose bits we claimed are no longer waiting here.
  w.waiters.fetch_sub(static_cast<std::uint32_t>(std::popcount(bits)), std::memory_order_relaxed);
  self.count(layout::futex_wakes);
  int dir = -1;
  try {
    dir = self.ring().notify_dir(false);
  } catch (...) {
  }
  if (dir < 0) return;
  for (std::uint32_t b = bits; b != 0; b &= b - 1) {
    send_to_slot(dir, static_cast<std::uint32_t>(std::countr_zero(b)));
  }
}

void forget_notify_dir(int dir) noexcept {
  for (DirSockets& d : dir_sockets) {
    if (d.dir.load(std::memory_order_acquire) != dir) continue;
    // The mapping is going away: no endpoint of this process wakes through it any more.
    for (int& f : d.fd) {
      if (f >= 0) ::close(f);
      f = -1;
    }
    d.dir.store(-1, std::memory_order_release);
  }
}

}  // namespace detail

namespace {
constexpr std::uint32_t kSocketTag = 0xFFFFFFFFu;  // epoll data of the socket; peers: their slot
}  // namespace

WaitFd::WaitFd(detail::WaitTarget target) : t_(target) {
  if (*t_.has_wait_fd) {
    throw Error(Errc::invalid_options,
                "flatring ring '" + t_.self->ring().info().name + "': this endpoint has a WaitFd");
  }
  const std::uint32_t slot = t_.self->index();
  bit_ = 1u << slot;
  const Ring& ring = t_.self->ring();
  const int dir = ring.notify_dir(true);
  auto fail = [&](const std::string& what) {
    const std::string why = std::strerror(errno);
    close_all();
    throw Error(Errc::system_error,
                "flatring ring '" + ring.info().name + "': WaitFd: " + what + ": " + why);
  };
  sock_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (sock_ < 0) fail("socket");
  const std::string name = std::to_string(slot);
  // A socket left by a dead holder of our slot (a live one cannot exist: the slot is ours).
  (void)::unlinkat(dir, name.c_str(), 0);
  sockaddr_un a;
  socklen_t len = 0;
  if (!detail::slot_address(dir, slot, a, len)) fail("address");
  if (::bind(sock_, reinterpret_cast<sockaddr*>(&a), len) != 0) fail("bind");
  // Sending needs write permission on the socket file: exactly the segment's readers/writers.
  (void)::fchmodat(dir, name.c_str(), ring.info().file_mode & 0666, 0);
  struct stat st {};
  if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) sock_ino_ = st.st_ino;
  epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_ < 0) fail("epoll_create1");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u32 = kSocketTag;
  if (::epoll_ctl(epoll_, EPOLL_CTL_ADD, sock_, &ev) != 0) fail("epoll_ctl");
  // A bit (and its count) left by a dead holder of our slot that was armed when it died.
  disarm();
  *t_.has_wait_fd = true;
  (void)refresh_peers();
}

WaitFd::WaitFd(WaitFd&& o) noexcept
    : t_(o.t_),
      bit_(o.bit_),
      epoll_(std::exchange(o.epoll_, -1)),
      sock_(std::exchange(o.sock_, -1)),
      sock_ino_(o.sock_ino_),
      drains_(o.drains_),
      peers_(o.peers_) {
  o.t_.has_wait_fd = nullptr;
  for (Peer& p : o.peers_) p.pidfd = -1;
}

WaitFd::~WaitFd() {
  if (t_.has_wait_fd == nullptr) return;  // moved from
  disarm();
  close_all();
  *t_.has_wait_fd = false;
}

void WaitFd::close_all() noexcept {
  for (Peer& p : peers_) drop_peer(p);
  if (epoll_ >= 0) ::close(epoll_);
  epoll_ = -1;
  if (sock_ < 0) return;
  ::close(sock_);
  sock_ = -1;
  int dir = -1;
  try {
    dir = t_.self->ring().notify_dir(false);
  } catch (...) {
  }
  if (dir < 0) return;
  const std::string name = std::to_string(t_.self->index());
  struct stat st {};
  // Only our own socket file: a later holder of the slot may have bound a new one.
  if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_ino == sock_ino_) {
    (void)::unlinkat(dir, name.c_str(), 0);
  }
}

void WaitFd::drop_peer(Peer& p) noexcept {
  if (p.pidfd >= 0) {
    if (epoll_ >= 0) (void)::epoll_ctl(epoll_, EPOLL_CTL_DEL, p.pidfd, nullptr);
    ::close(p.pidfd);
  }
  p = Peer{};
}

void WaitFd::drain() noexcept {
  // The datagrams first, in one call: in the common case that is all there is, and the pidfds'
  // events are looked at when none was there (then the fd was readable for an exit, if at all)
  // and on every 16th call, so that a flood of datagrams cannot hide an exit for long.
  constexpr unsigned kBatch = 16;
  char buf[kBatch];
  iovec iov[kBatch];
  mmsghdr msgs[kBatch];
  int got = 0;
  // Bounded: a flooding peer of the same uid cannot keep us here.
  for (int round = 0; round < 16; ++round) {
    for (unsigned i = 0; i < kBatch; ++i) {
      iov[i] = {&buf[i], 1};
      msgs[i] = {};
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    const int n = ::recvmmsg(sock_, msgs, kBatch, MSG_DONTWAIT, nullptr);
    if (n <= 0) break;
    got += n;
    if (static_cast<unsigned>(n) < kBatch) break;
  }
  if (got != 0 && (++drains_ % 16) != 0) return;
  epoll_event ev[layout::kMaxPeers + 1];
  const int n = ::epoll_wait(epoll_, ev, static_cast<int>(std::size(ev)), 0);
  for (int i = 0; i < n; ++i) {
    const std::uint32_t tag = ev[i].data.u32;
    if (tag < layout::kMaxPeers && peers_[tag].pidfd >= 0) {
      Peer& p = peers_[tag];
      (void)::epoll_ctl(epoll_, EPOLL_CTL_DEL, p.pidfd, nullptr);
      ::close(p.pidfd);
      p.pidfd = -1;
      p.dead = true;
    }
  }
}

bool WaitFd::refresh_peers() noexcept {
  bool dead_there = false;
  const layout::Control& c = t_.self->ring().control();
  const auto want = static_cast<std::uint32_t>(t_.peer);
  const auto want_too = static_cast<std::uint32_t>(t_.peer_too);
  for (std::uint32_t i = 0; i < layout::kMaxPeers; ++i) {
    Peer& p = peers_[i];
    if (i == t_.self->index()) continue;
    const layout::PeerSlot& s = c.peers[i];
    // Acquire: pairs with the claimer's role store (release), after its pid and start time.
    const std::uint32_t role = s.role.load(std::memory_order_acquire);
    if (role != want && (role != want_too || want_too == 0)) {
      // Left, or reaped by another peer's liveness step, perhaps before we saw its pidfd fire:
      // it may have died holding a claim or a record, so the step runs once for it.
      if (p.pid != 0) {
        drop_peer(p);
        dead_there = true;
      }
      continue;
    }
    // Untrusted: only used for pidfd_open and /proc lookups.
    const std::uint32_t pid = s.pid.load(std::memory_order_relaxed);
    const std::uint64_t start = s.start_time.load(std::memory_order_relaxed);
    if (pid == p.pid && start == p.start_time) {
      dead_there |= p.dead;
      continue;
    }
    // Another process in the slot: the one we watched left it, so the step runs once for it too.
    dead_there |= p.pid != 0;
    drop_peer(p);
    p.pid = pid;
    p.start_time = start;
    if (pid == 0 || pid == layout::kReaping || pid > (1u << 22)) continue;  // being claimed/reaped
    const long fd = ::syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0u);
    if (fd < 0) {
      // ESRCH: it has exited. Anything else (no pidfd_open before Linux 5.3, no descriptors
      // left): not watched; its exit is then found by the caller's timeout and liveness step.
      p.dead = errno == ESRCH;
      dead_there |= p.dead;
      continue;
    }
    // The pidfd names whoever had the pid when we opened it: check it is the slot's process.
    if (!is_alive(ProcessToken{pid, start})) {
      ::close(static_cast<int>(fd));
      p.dead = true;
      dead_there = true;
      continue;
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = i;
    if (::epoll_ctl(epoll_, EPOLL_CTL_ADD, static_cast<int>(fd), &ev) != 0) {
      ::close(static_cast<int>(fd));
      continue;
    }
    p.pidfd = static_cast<int>(fd);
  }
  return dead_there;
}

Status WaitFd::arm() noexcept {
  const Ring& ring = t_.self->ring();
  drain();
  // An exited peer stays "there" until the liveness step reaps its slot (or the mode's recovery
  // is done with it), so its exit is acted on as often as read() would, never lost. Besides, the
  // liveness step runs once per interval, as a blocked read() runs it: work that no exit
  // announces (mpmc: a record a dead consumer held reaches the head only once the live consumers
  // ahead of it are done, long after the exit was seen and its slot reaped) waits at most one
  // interval past the caller's next arm().
  const bool dead = refresh_peers();
  const auto now = detail::Clock::now();
  if (dead || now >= next_check_) {
    next_check_ = now + t_.interval;
    const Status s = t_.check(t_.endpoint, dead);
    if (ring.lost()) return Status::segment_lost;
    if (s != t_.idle) return s;
  }
  if (ring.lost_fast()) return Status::segment_lost;
  layout::WaitLine& line = *t_.line;
  // The bit first, then the count (seq_cst, so release): a waker that sees the count sees the
  // bit (its acquire fence in wake_sleepers). Still set from an earlier arm: already counted.
  if ((line.notify.fetch_or(bit_, std::memory_order_relaxed) & bit_) == 0) {
    line.waiters.fetch_add(1, std::memory_order_seq_cst);
  } else {
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  // The handshake's fence (as sleep_once): the asymmetric waker's is compiler-only. Without
  // membarrier such a waker could miss us, so we do not sleep: the caller retries.
  if (t_.handshake == detail::Handshake::asymmetric && !wait::sleeper_fence()) {
    disarm();
    return Status::ok;
  }
  // The sleeper's re-check, seq_cst: either the waker's `waiters` load saw our count, or we see
  // its progress here.
  if (t_.ready(t_.endpoint, t_.bytes, std::memory_order_seq_cst)) {
    disarm();
    return Status::ok;
  }
  t_.self->count(layout::futex_sleeps);
  return t_.idle;
}

void WaitFd::disarm() noexcept {
  if (t_.line == nullptr) return;
  // Whoever clears the bit takes its count off: us here, or the waker that claimed it.
  if ((t_.line->notify.fetch_and(~bit_, std::memory_order_relaxed) & bit_) != 0) {
    t_.line->waiters.fetch_sub(1, std::memory_order_relaxed);
  }
}

bool WaitFd::armed() const noexcept {
  return (t_.line->notify.load(std::memory_order_relaxed) & bit_) != 0;
}

}  // namespace flatring
