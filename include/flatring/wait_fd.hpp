// A file descriptor that becomes readable when an endpoint has something to do: for epoll, poll,
// select, libuv and asyncio's add_reader.
//
// How it works (docs/design.md, "Waiting from outside"): the fd is an epoll descriptor holding
//  - an AF_UNIX datagram socket bound at /dev/shm/flatring-wait.<ring>/<peer slot>, in a directory
//    with the segment's owner and permissions (0700 for a 0600 ring; never a path read from the
//    segment), so only processes that may open the ring can signal it; and
//  - a pidfd for each peer on the other side (a reader watches the producers, an mpmc reader the
//    other consumers too, a writer the consumers), so the exit of a peer makes the fd readable too.
//    arm() also runs the liveness step once per liveness interval: poll an mpmc reader's fd with a
//    timeout (docs/api.md, "WaitFd").
// arm() registers the endpoint in the ring's wait line like a futex sleeper (its bit in
// WaitLine::notify, then `waiters`, the handshake fence, a re-check). A waker that sees `waiters`
// non-zero after publishing claims the armed bits and sends each of those sockets one datagram:
// one wake-up, no helper thread, and no syscall at all while nobody is armed. Notifications are
// one-shot: after the fd fires, call the try_ operation until it says empty or full, then arm()
// again.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <type_traits>

#include "flatring/endpoint.hpp"
#include "flatring/layout.hpp"
#include "flatring/status.hpp"

namespace flatring {

/// The pollable descriptor of one endpoint (a Reader<M> or Writer<M> of any mode; typed endpoints
/// through raw()). Move-only; the destructor disarms, closes the descriptors and removes the
/// socket. \pre arm() and disarm() are called from the endpoint's thread; fd() may be polled from
/// any thread. One WaitFd per endpoint at a time; destroy it before the endpoint. Not inherited
/// usefully across fork(): make it in the process that waits.
class WaitFd {
 public:
  /// Binds the notification socket of `endpoint`'s peer slot (removing a stale one left by a
  /// dead holder of the slot) and opens the descriptors.
  /// \throws Error(invalid_state) if the endpoint already has a WaitFd; Error(unsafe_owner) or
  ///   Error(unsafe_permissions) if the notification directory exists with another owner or wider
  ///   permissions than the segment; Error(system_error) if a descriptor cannot be made.
  template <class Endpoint>
  requires requires(Endpoint& e) { e.wait_target(); }
  explicit WaitFd(Endpoint& endpoint) : WaitFd(endpoint.wait_target()) {}
  /// A writer's WaitFd that is ready when a record of `bytes` payload bytes may fit (the one
  /// above: when any space is freed).
  template <class Endpoint>
  requires requires(Endpoint& e, std::uint64_t n) { e.wait_target(n); }
  WaitFd(Endpoint& writer, std::uint64_t bytes) : WaitFd(writer.wait_target(bytes)) {}
  explicit WaitFd(detail::WaitTarget target);

  WaitFd(WaitFd&& other) noexcept;
  WaitFd& operator=(WaitFd&&) = delete;
  WaitFd(const WaitFd&) = delete;
  WaitFd& operator=(const WaitFd&) = delete;
  ~WaitFd();

  /// The descriptor to poll for readability (level-triggered; EPOLLET works too, since arm()
  /// drains it). O_CLOEXEC. Do not read from it or close it.
  [[nodiscard]] int fd() const noexcept { return epoll_; }

  /// Prepares to sleep on fd(); call it after try_read said empty (try_write/try_reserve said
  /// full). Drains fd(), refreshes the watched peers, registers in the wait line and re-checks.
  ///  - empty (readers) / full (writers): armed. Sleep until fd() is readable (or your timeout),
  ///    then call the try_ operation again.
  ///  - ok: not armed; a retry may succeed now (something arrived meanwhile).
  ///  - peer_dead, no_consumer, abandoned, segment_lost (and, for readers, whatever the mode's
  ///    recovery step reports): the outcome, as read()/write() report it. Run only when a watched
  ///    peer exited, so arm() itself makes no /proc lookups otherwise.
  /// Makes a few syscalls (a drain, the handshake fence); the endpoint's hot path makes none.
  [[nodiscard]] Status arm() noexcept;

  /// Stops being notified (the next commit or release no longer signals this fd). Idempotent.
  void disarm() noexcept;

  /// True between an arm() that returned empty/full and the wake-up that claimed the arm (or
  /// disarm()). Shared words: a hint, for statistics and tests.
  [[nodiscard]] bool armed() const noexcept;

 private:
  /// A peer slot on the other side, as last read: watched through its pidfd, or known to have
  /// exited (then out of the epoll set, so that it does not keep fd() readable), or neither
  /// (being claimed or reaped, or no pidfd_open: found by the liveness step instead).
  struct Peer {
    std::uint32_t pid = 0;
    std::uint64_t start_time = 0;
    int pidfd = -1;
    bool dead = false;
  };

  void drain() noexcept;          // empties fd(); marks the watched peers that exited
  bool refresh_peers() noexcept;  // re-reads the peer slots; true while an exited one is there
  void drop_peer(Peer& p) noexcept;
  void close_all() noexcept;

  detail::WaitTarget t_;
  std::uint32_t bit_ = 0;
  int epoll_ = -1;
  int sock_ = -1;
  std::uint64_t sock_ino_ = 0;  // the socket file's inode: removed at close only if still ours
  std::uint32_t drains_ = 0;
  detail::Clock::time_point next_check_{};  // when arm() runs the liveness step
  std::array<Peer, layout::kMaxPeers> peers_{};
};

}  // namespace flatring
