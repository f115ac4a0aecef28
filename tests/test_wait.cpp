// Waiting from outside a flatring call: WaitFd (a descriptor for epoll/poll) and WaitSet (one
// thread on many endpoints), across real processes. Control between the processes goes through
// pipes, never through sleeps: no test here depends on timing. Timeouts given to epoll_wait and
// WaitSet::wait are hang guards, reported as failures, not thresholds.
#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <random>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "helpers.hpp"
#include "mode_types.hpp"
#include "mp_helpers.hpp"

using namespace flatring;
using namespace std::chrono_literals;

namespace {

constexpr int kGuardMs = 30'000;  // hang guard for the waits below: reaching it is a failure

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

// A one-way byte channel between two processes.
struct Pipe {
  int fd[2] = {-1, -1};
  Pipe() { REQUIRE(::pipe2(fd, O_CLOEXEC) == 0); }
  ~Pipe() {
    for (int f : fd) {
      if (f >= 0) ::close(f);
    }
  }
  void put(char c = 1) const { (void)!::write(fd[1], &c, 1); }
  // -1 at EOF.
  int get() const {
    char c = 0;
    return ::read(fd[0], &c, 1) == 1 ? c : -1;
  }
};

std::size_t open_fds() {
  std::size_t n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (const dirent* e = ::readdir(d)) {
      ++n;
      if (std::getenv("FDS")) {
        char buf[256] = {};
        (void)!::readlink((std::string("/proc/self/fd/") + e->d_name).c_str(), buf, 255);
        std::fprintf(stderr, "%s -> %s\n", e->d_name, buf);
      }
    }
    ::closedir(d);
  }
  return n;
}

// The waker's datagram socket is one per process, made on its first wake-up and kept: make it
// before counting descriptors, so that it is not counted as a leak.
void warm_sender() {
  const std::string name = fr_test::unique_name("wfd-warm");
  RemoveGuard guard(name);
  Ring ring = Ring::create(name, RingOptions{.capacity = 4096});
  Reader<> reader(ring);
  WaitFd w(reader);
  Writer<> writer(ring);
  (void)w.arm();
  const std::uint64_t one = 1;
  (void)writer.try_write({reinterpret_cast<const std::byte*>(&one), sizeof one});
}

// Waits until `fd` is readable; false if the hang guard passed.
bool readable(int fd, int timeout_ms = kGuardMs) {
  pollfd p{fd, POLLIN, 0};
  int rc;
  do rc = ::poll(&p, 1, timeout_ms);
  while (rc < 0 && errno == EINTR);
  return rc == 1;
}

std::span<const std::byte> bytes_of(const std::uint64_t& v) {
  return {reinterpret_cast<const std::byte*>(&v), sizeof v};
}
std::uint64_t value_of(std::span<const std::byte> b) {
  std::uint64_t v = 0;
  if (b.size() == sizeof v) std::memcpy(&v, b.data(), sizeof v);
  return v;
}

template <Mode M>
Ring make_ring(const std::string& name, std::uint64_t capacity = 1 << 16) {
  return Ring::create(name, RingOptions{.capacity = capacity, .mode = M});
}

// Reads with the WaitFd discipline: try, arm, sleep on the fd, repeat. Returns the outcome.
template <class R>
Result<RecordView> read_via_fd(R& reader, WaitFd& w) {
  for (;;) {
    auto r = reader.try_read();
    if (r.status() != Status::empty) return r;
    const Status s = w.arm();
    if (s == Status::ok) continue;
    if (s != Status::empty) return s;
    if (!readable(w.fd())) return Status::timed_out;
  }
}

}  // namespace

// ---------------------------------------------------------------- WaitFd

TEMPLATE_TEST_CASE("WaitFd: a reader sleeping on its fd wakes for every record from another "
                   "process, and try_read then returns it",
                   "[wait][process]", FR_ALL_MODES) {
  constexpr Mode M = TestType::value;
  const std::string name = fr_test::unique_name("wfd-read");
  RemoveGuard guard(name);
  Ring ring = make_ring<M>(name);
  Reader<M> reader(ring, WaitOptions{.spin = 0ns});
  WaitFd w(reader);
  constexpr std::uint64_t kRecords = 200;
  Pipe go, attached;
  const pid_t child = fr_test::spawn([&] {
    Writer<M> writer(Ring::open(name));
    attached.put();
    for (std::uint64_t i = 0; i < kRecords; ++i) {
      if (go.get() < 0) return 2;
      if (writer.write(bytes_of(i), 10s) != Status::ok) return 3;
    }
    return 0;
  });
  REQUIRE(attached.get() == 1);
  std::uint64_t slept = 0;
  for (std::uint64_t i = 0; i < kRecords; ++i) {
    REQUIRE(reader.try_read().status() == Status::empty);
    const Status armed = w.arm();
    REQUIRE(armed == Status::empty);  // nothing can be there: the child writes after `go`
    CHECK(w.armed());
    go.put();
    REQUIRE(readable(w.fd()));
    // Edge safety: once the fd fired, the record is there (the waker signals after publishing).
    auto r = reader.try_read();
    REQUIRE(r.status() == Status::ok);
    CHECK(value_of(r->bytes) == i);
    reader.release();
    ++slept;
    // The wake-up claimed the arm: the writer's next commit makes no syscall for us.
    CHECK_FALSE(w.armed());
  }
  CHECK(slept == kRecords);
  CHECK(fr_test::join(child) == 0);
}

TEMPLATE_TEST_CASE("WaitFd: a writer sleeping on its fd wakes when a consumer in another process "
                   "frees space",
                   "[wait][process]", FR_ALL_MODES) {
  constexpr Mode M = TestType::value;
  const std::string name = fr_test::unique_name("wfd-write");
  RemoveGuard guard(name);
  Ring ring = make_ring<M>(name, 4096);
  Pipe go, attached;
  const pid_t child = fr_test::spawn([&] {
    go.fd[1] = (::close(go.fd[1]), -1);  // so that the parent's close is an EOF here
    Reader<M> reader(Ring::open(name));
    attached.put();
    for (;;) {
      const int c = go.get();
      if (c < 0) return 0;
      auto r = reader.read(10s);
      if (!r) return 3;
      reader.release();
    }
  });
  REQUIRE(attached.get() == 1);  // broadcast: a consumer must hold the producer back
  Writer<M> writer(ring, WaitOptions{.spin = 0ns});
  const std::array<std::byte, 200> payload{};
  WaitFd w(writer, payload.size());
  for (int round = 0; round < 20; ++round) {
    while (writer.try_write(payload) == Status::ok) {
    }
    REQUIRE(writer.try_write(payload) == Status::full);
    Status armed = w.arm();
    REQUIRE(armed == Status::full);
    CHECK(w.armed());
    go.put();
    REQUIRE(readable(w.fd()));
    // The consumer released a record: a retry may succeed. One record may not be enough room
    // (the padding at the wrap), so free one more each time the writer sleeps again.
    Status s = writer.try_write(payload);
    while (s == Status::full) {
      armed = w.arm();
      if (armed == Status::ok) {
        s = writer.try_write(payload);
        continue;
      }
      REQUIRE(armed == Status::full);
      go.put();
      REQUIRE(readable(w.fd()));
      s = writer.try_write(payload);
    }
    REQUIRE(s == Status::ok);
  }
  go.fd[1] = (::close(go.fd[1]), -1);
  CHECK(fr_test::join(child) == 0);
}

TEMPLATE_TEST_CASE("WaitFd: the fd becomes readable when the producer dies, and arm() reports "
                   "peer_dead",
                   "[wait][process]", FR_ALL_MODES) {
  constexpr Mode M = TestType::value;
  const std::string name = fr_test::unique_name("wfd-dead");
  RemoveGuard guard(name);
  Ring ring = make_ring<M>(name);
  Reader<M> reader(ring);
  Pipe attached, hold;
  const pid_t child = fr_test::spawn([&] {
    Writer<M> writer(Ring::open(name));
    attached.put();
    (void)hold.get();  // parked until killed
    return 0;
  });
  REQUIRE(attached.get() == 1);
  WaitFd w(reader);
  REQUIRE(w.arm() == Status::empty);
  REQUIRE(::kill(child, SIGKILL) == 0);
  CHECK(fr_test::join(child) == 128 + SIGKILL);
  // No datagram comes: the producer's pidfd in the fd's epoll set fires.
  REQUIRE(readable(w.fd()));
  CHECK(reader.try_read().status() == Status::empty);
  CHECK(w.arm() == Status::peer_dead);
}

TEST_CASE("WaitFd (mpmc): a consumer that dies holding the record at the head makes the other "
          "consumers' fds readable, and their next arm() hands that record over again",
          "[wait][process]") {
  const std::string name = fr_test::unique_name("wfd-held");
  RemoveGuard guard(name);
  Ring ring = make_ring<Mode::mpmc>(name);
  Writer<Mode::mpmc> writer(ring);
  const std::uint64_t seven = 7;
  REQUIRE(writer.try_write(bytes_of(seven)) == Status::ok);
  Pipe holding, hold;
  const pid_t child = fr_test::spawn([&] {
    Reader<Mode::mpmc> r(Ring::open(name));
    if (!r.try_read()) return 1;
    holding.put();
    (void)hold.get();  // parked, holding the record, until killed
    return 0;
  });
  fr_test::ParkedChild parked(child);
  REQUIRE(holding.get() == 1);
  Reader<Mode::mpmc> reader(ring);
  WaitFd w(reader);
  REQUIRE(reader.try_read().status() == Status::empty);  // next == tail: the child has it
  REQUIRE(w.arm() == Status::empty);
  CHECK(parked.kill_and_join() == 128 + SIGKILL);
  // Nothing is committed and the producer lives: only the consumer's pidfd can wake us.
  REQUIRE(readable(w.fd()));
  auto r = read_via_fd(reader, w);
  REQUIRE(r);
  CHECK(r->redelivered);
  CHECK(value_of(r->bytes) == 7);
  reader.release();
  CHECK(reader.try_read().status() == Status::empty);
}

TEST_CASE("WaitFd (mpmc): a record a dead consumer held behind a live consumer's is handed over "
          "by an arm() once the head reaches it, though its exit was seen and its slot reaped "
          "long before",
          "[wait][process]") {
  const std::string name = fr_test::unique_name("wfd-behind");
  RemoveGuard guard(name);
  Ring ring = make_ring<Mode::mpmc>(name);
  Writer<Mode::mpmc> writer(ring);
  const std::uint64_t one = 1, two = 2;
  REQUIRE(writer.try_write(bytes_of(one)) == Status::ok);
  REQUIRE(writer.try_write(bytes_of(two)) == Status::ok);
  Reader<Mode::mpmc> live(ring);
  REQUIRE(live.try_read());  // record 1, held at the head
  Pipe holding, hold;
  const pid_t child = fr_test::spawn([&] {
    Reader<Mode::mpmc> r(Ring::open(name));
    if (!r.try_read()) return 1;  // record 2
    holding.put();
    (void)hold.get();
    return 0;
  });
  fr_test::ParkedChild parked(child);
  REQUIRE(holding.get() == 1);
  Reader<Mode::mpmc> reader(ring, WaitOptions{.liveness_interval = 1ms});
  WaitFd w(reader);
  REQUIRE(reader.try_read().status() == Status::empty);
  CHECK(parked.kill_and_join() == 128 + SIGKILL);
  REQUIRE(readable(w.fd()));
  // The exit is acted on, but record 2 is not at the head yet: nothing to take over.
  CHECK(reader.try_read().status() == Status::empty);
  CHECK(w.arm() == Status::empty);
  CHECK(ring.reap_dead_peers() == 1);  // as another peer's liveness step would
  live.release();  // the head moves to record 2; nothing is committed, nobody is woken
  // Each arm() runs the liveness step once its interval has passed. The poll timeout stands in
  // for the caller's own; the bound on rounds is a hang guard.
  std::optional<std::uint64_t> got;
  bool redelivered = false;
  for (int round = 0; round < 30'000 && !got; ++round) {
    auto r = reader.try_read();
    if (r) {
      got = value_of(r->bytes);
      redelivered = r->redelivered;
      reader.release();
      break;
    }
    REQUIRE(r.status() == Status::empty);
    const Status s = w.arm();
    if (s == Status::ok) continue;
    REQUIRE(s == Status::empty);
    pollfd p{w.fd(), POLLIN, 0};
    (void)::poll(&p, 1, 1);
  }
  REQUIRE(got);
  CHECK(*got == 2);
  CHECK(redelivered);
  CHECK(reader.try_read().status() == Status::empty);
}

TEST_CASE("WaitFd: the writer's fd reports a consumer that dies (spsc: peer_dead)",
          "[wait][process]") {
  const std::string name = fr_test::unique_name("wfd-dead-w");
  RemoveGuard guard(name);
  Ring ring = make_ring<Mode::spsc>(name, 4096);
  Pipe attached, hold;
  const pid_t child = fr_test::spawn([&] {
    Reader<> reader(Ring::open(name));
    attached.put();
    (void)hold.get();
    return 0;
  });
  REQUIRE(attached.get() == 1);
  Writer<> writer(ring);
  WaitFd w(writer);
  const std::array<std::byte, 100> payload{};
  while (writer.try_write(payload) == Status::ok) {
  }
  REQUIRE(w.arm() == Status::full);
  REQUIRE(::kill(child, SIGKILL) == 0);
  CHECK(fr_test::join(child) == 128 + SIGKILL);
  REQUIRE(readable(w.fd()));
  CHECK(w.arm() == Status::peer_dead);
}

TEST_CASE("WaitFd: ping-pong where both processes sleep in epoll on flatring fds: every round "
          "trip completes and no descriptor leaks",
          "[wait][process][stress]") {
  // 10^6 round trips (two fd wake-ups each; about 30 s on a loaded 2-core machine); 10^5 under
  // the sanitizers, which run the same code several times slower. FLATRING_STRESS_SCALE scales.
  const std::uint64_t trips = fr_test::scaled(kSanitized ? 100'000 : 1'000'000);
  const std::string ping = fr_test::unique_name("wfd-ping");
  const std::string pong = fr_test::unique_name("wfd-pong");
  RemoveGuard g1(ping), g2(pong);
  warm_sender();
  Pipe ready;  // before the count: the test's own descriptors
  const std::size_t fds_before = open_fds();
  Ring a = make_ring<Mode::spsc>(ping, 4096);
  Ring b = make_ring<Mode::spsc>(pong, 4096);

  // One side of the game: waits for each value on `in` in epoll, answers on `out`. Returns the
  // number of round trips that failed (0 expected).
  auto side = [](Reader<>& in, Writer<>& out, std::uint64_t n, bool serve) -> std::uint64_t {
    WaitFd w(in);
    const int ep = ::epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    if (::epoll_ctl(ep, EPOLL_CTL_ADD, w.fd(), &ev) != 0) return n;
    std::uint64_t bad = 0;
    for (std::uint64_t i = 0; i < n; ++i) {
      if (!serve && out.write(bytes_of(i), 10s) != Status::ok) ++bad;
      for (;;) {
        auto r = in.try_read();
        if (r) {
          if (value_of(r->bytes) != i) ++bad;
          in.release();
          break;
        }
        const Status s = w.arm();
        if (s == Status::ok) continue;
        if (s != Status::empty) return n;
        epoll_event got{};
        if (::epoll_wait(ep, &got, 1, kGuardMs) != 1) return n;  // a lost wake-up
      }
      if (serve && out.write(bytes_of(i), 10s) != Status::ok) ++bad;
    }
    ::close(ep);
    return bad;
  };

  const pid_t child = fr_test::spawn([&] {
    warm_sender();
    const std::size_t child_before = open_fds();
    std::uint64_t bad = 0;
    {
      Reader<> in(Ring::open(ping), WaitOptions{.spin = 0ns});
      Writer<> out(Ring::open(pong));
      ready.put();
      bad = side(in, out, trips, true);
    }
    // Ring::open mappings and the notification directory's cached descriptor go with the rings.
    return bad == 0 && open_fds() == child_before ? 0 : 1;
  });
  REQUIRE(ready.get() == 1);
  std::uint64_t bad = 0;
  {
    Writer<> out(a);
    Reader<> in(b, WaitOptions{.spin = 0ns});
    bad = side(in, out, trips, false);
  }
  CHECK(bad == 0);
  CHECK(fr_test::join(child) == 0);
  // The two Ring handles of this process are still open (their mappings hold descriptors; the
  // notification directory's is cached per mapping): compare after dropping them.
  a = Ring();
  b = Ring();
  const std::size_t fds_after = open_fds();
  CHECK(fds_after == fds_before);
}

TEST_CASE("WaitFd: a hostile peer writing the wait words at random causes spurious wake-ups at "
          "most: no hang past the timeout, empty reads, no descriptor leak",
          "[wait][process][hostile]") {
  const std::string name = fr_test::unique_name("wfd-hostile");
  RemoveGuard guard(name);
  warm_sender();
  Pipe started;  // before the count: the test's own descriptors
  const std::size_t fds_before = open_fds();
  Ring ring = make_ring<Mode::mpsc>(name);
  const pid_t attacker = fr_test::spawn([&] {
    Ring r = Ring::open(name);
    layout::Control& c = r.control();
    std::mt19937 gen(13);
    auto rng = [&] { return static_cast<std::uint32_t>(gen()); };
    started.put();
    for (;;) {  // until killed
      for (layout::WaitLine* l : {&c.data, &c.space}) {
        l->futex.store(rng(), std::memory_order_relaxed);
        l->waiters.store(rng() % 3 == 0 ? 0 : rng(), std::memory_order_relaxed);
        l->notify.store(rng(), std::memory_order_relaxed);
        l->sleepers.store(rng() % 3 == 0 ? 0 : rng(), std::memory_order_relaxed);
        (void)wait::futex_wake(l->futex, 100);
      }
    }
    return 0;
  });
  REQUIRE(started.get() == 1);
  std::uint64_t arms = 0, wakes = 0, timeouts = 0;
  {
    Reader<Mode::mpsc> reader(ring);
    WaitFd w(reader);
    // A producer that commits nothing: every wake-up is spurious, and each one ends in empty.
    Writer<Mode::mpsc> writer(ring);
    for (int i = 0; i < 300; ++i) {
      const Status s = w.arm();
      REQUIRE((s == Status::empty || s == Status::ok));
      ++arms;
      if (s == Status::empty) {
        if (readable(w.fd(), 5)) ++wakes;
        else ++timeouts;  // the poll's timeout ended the wait, as it must
      }
      REQUIRE(reader.try_read().status() == Status::empty);
      // A writer's sleep on the same hostile words ends at its deadline too.
      if (i % 30 == 0) {
        auto r = reader.read(2ms);
        REQUIRE(r.status() == Status::timed_out);
      }
    }
    // The same words under a WaitSet: timed out every time, never held past the timeout.
    WaitSet set(WaitOptions{.spin = 0ns, .liveness_interval = 1ms});
    (void)set.add(reader);
    for (int i = 0; i < 20; ++i) {
      REQUIRE(set.wait(3ms) == Status::timed_out);
      CHECK(set.ready().empty());
    }
  }
  ::kill(attacker, SIGKILL);
  CHECK(fr_test::join(attacker) == 128 + SIGKILL);
  CHECK(arms == 300);
  ring = Ring();
  CHECK(open_fds() == fds_before);
}

TEST_CASE("WaitFd: the notification channel is closed to other uids: the directory is 0700 with "
          "the ring's owner, a wider or foreign one is refused, Ring::remove removes it",
          "[wait][security]") {
  const std::string name = fr_test::unique_name("wfd-sec");
  RemoveGuard guard(name);
  Ring ring = make_ring<Mode::spsc>(name);
  const std::string dir = "/dev/shm/flatring-wait." + name;
  {
    Reader<> reader(ring);
    WaitFd w(reader);
    struct stat st {};
    REQUIRE(::lstat(dir.c_str(), &st) == 0);
    CHECK(S_ISDIR(st.st_mode));
    CHECK((st.st_mode & 07777) == 0700);
    CHECK(st.st_uid == ::geteuid());
    const std::string sock = dir + "/" + std::to_string(reader.attachment().index());
    REQUIRE(::lstat(sock.c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 0777) == 0600);
    if (::geteuid() == 0) {
      // Another uid can neither reach the socket nor open the ring.
      const pid_t other = fr_test::spawn([&] {
        if (::setgid(65534) != 0 || ::setuid(65534) != 0) return 2;
        const int s = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::snprintf(a.sun_path, sizeof a.sun_path, "%s", sock.c_str());
        const char one = 1;
        const bool refused =
            ::sendto(s, &one, 1, 0, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 &&
            errno == EACCES;
        return refused ? 0 : 1;
      });
      CHECK(fr_test::join(other) == 0);
      CHECK(!readable(w.fd(), 0));
    }
    // Only one WaitFd per endpoint.
    CHECK(fr_test::error_code([&] { WaitFd again(reader); }) == Errc::invalid_options);
  }
  CHECK(Ring::remove(name));
  struct stat st {};
  CHECK(::lstat(dir.c_str(), &st) != 0);

  // A directory planted with wider permissions, or as a symlink, is refused.
  const std::string name2 = fr_test::unique_name("wfd-sec2");
  RemoveGuard guard2(name2);
  Ring ring2 = make_ring<Mode::spsc>(name2);
  const std::string dir2 = "/dev/shm/flatring-wait." + name2;
  REQUIRE(::mkdir(dir2.c_str(), 0700) == 0);
  REQUIRE(::chmod(dir2.c_str(), 0777) == 0);
  {
    Reader<> reader(ring2);
    CHECK(fr_test::error_code([&] { WaitFd w(reader); }) == Errc::unsafe_permissions);
  }
  REQUIRE(::rmdir(dir2.c_str()) == 0);
  REQUIRE(::symlink("/tmp", dir2.c_str()) == 0);
  {
    Reader<> reader(ring2);
    CHECK(fr_test::error_code([&] { WaitFd w(reader); }) == Errc::unsafe_permissions);
  }
  REQUIRE(::unlink(dir2.c_str()) == 0);
  if (::geteuid() == 0) {
    REQUIRE(::mkdir(dir2.c_str(), 0700) == 0);
    REQUIRE(::chown(dir2.c_str(), 65534, 65534) == 0);
    Reader<> reader(ring2);
    CHECK(fr_test::error_code([&] { WaitFd w(reader); }) == Errc::unsafe_owner);
  }
}

TEST_CASE("WaitFd: a WaitFd killed armed leaves nothing that blocks the next one of its slot",
          "[wait][process]") {
  const std::string name = fr_test::unique_name("wfd-stale");
  RemoveGuard guard(name);
  Ring ring = make_ring<Mode::spsc>(name);
  Pipe armed, hold;
  const pid_t child = fr_test::spawn([&] {
    Reader<> reader(Ring::open(name));
    WaitFd w(reader);
    if (w.arm() != Status::empty) return 2;
    armed.put(static_cast<char>(reader.attachment().index()));
    (void)hold.get();
    return 0;
  });
  const int slot = armed.get();
  REQUIRE(slot >= 0);
  REQUIRE(::kill(child, SIGKILL) == 0);
  CHECK(fr_test::join(child) == 128 + SIGKILL);
  const std::uint32_t bit = 1u << slot;
  layout::WaitLine& line = ring.control().data;
  CHECK((line.notify.load() & bit) != 0);  // it died armed
  const std::string sock = "/dev/shm/flatring-wait." + name + "/" + std::to_string(slot);
  struct stat st {};
  CHECK(::lstat(sock.c_str(), &st) == 0);  // and left its socket behind
  // The next commit claims the dead waiter's bit once (its sendto is refused), and is done.
  Writer<> writer(ring);
  const std::uint64_t v = 1;
  REQUIRE(writer.try_write(bytes_of(v)) == Status::ok);
  CHECK((line.notify.load() & bit) == 0);
  // A new reader in the reaped slot binds a fresh socket there and is woken as usual.
  CHECK(ring.reap_dead_peers() >= 1);
  Reader<> reader(ring, WaitOptions{.spin = 0ns});
  REQUIRE(reader.attachment().index() == static_cast<std::uint32_t>(slot));
  WaitFd w(reader);
  REQUIRE(reader.try_read());
  reader.release();
  REQUIRE(w.arm() == Status::empty);
  REQUIRE(writer.try_write(bytes_of(v)) == Status::ok);
  REQUIRE(readable(w.fd()));
  CHECK(reader.try_read().status() == Status::ok);
}

// ---------------------------------------------------------------- WaitSet

TEST_CASE("WaitSet: one thread waits on four rings of four modes and wakes for each, in any "
          "order, with exactly the ring that is ready",
          "[wait][process]") {
  const std::string base = fr_test::unique_name("wset");
  const std::array<std::string, 4> names{base + "-spsc", base + "-mpsc", base + "-mpmc",
                                         base + "-bcast"};
  RemoveGuard g0(names[0]), g1(names[1]), g2(names[2]), g3(names[3]);
  Ring r0 = make_ring<Mode::spsc>(names[0]);
  Ring r1 = make_ring<Mode::mpsc>(names[1]);
  Ring r2 = make_ring<Mode::mpmc>(names[2]);
  Ring r3 = make_ring<Mode::broadcast>(names[3]);
  Reader<Mode::spsc> a(r0);
  Reader<Mode::mpsc> b(r1);
  Reader<Mode::mpmc> c(r2);
  Reader<Mode::broadcast> d(r3);
  WaitSet set(WaitOptions{.spin = 0ns});
  const std::array<std::size_t, 4> id{set.add(a), set.add(b), set.add(c), set.add(d)};
  CHECK(set.size() == 4);
  CHECK(fr_test::error_code([&] { (void)set.add(a); }) == Errc::invalid_options);

  // The child writes to ring k when told k; the parent is then asleep in the WaitSet (or about
  // to be: either way it must report exactly ring k).
  Pipe order, attached;
  const pid_t child = fr_test::spawn([&] {
    order.fd[1] = (::close(order.fd[1]), -1);  // so that the parent's close is an EOF here
    Writer<Mode::spsc> w0(Ring::open(names[0]));
    Writer<Mode::mpsc> w1(Ring::open(names[1]));
    Writer<Mode::mpmc> w2(Ring::open(names[2]));
    Writer<Mode::broadcast> w3(Ring::open(names[3]));
    attached.put();
    std::uint64_t seq = 0;
    for (int k; (k = order.get()) >= 0;) {
      Status s = Status::invalid_state;
      if (k == 0) s = w0.write(bytes_of(seq), 10s);
      if (k == 1) s = w1.write(bytes_of(seq), 10s);
      if (k == 2) s = w2.write(bytes_of(seq), 10s);
      if (k == 3) s = w3.write(bytes_of(seq), 10s);
      if (s != Status::ok) return 3;
      ++seq;
    }
    return 0;
  });
  order.fd[0] = (::close(order.fd[0]), -1);
  REQUIRE(attached.get() == 1);
  auto take = [&](int k) -> std::uint64_t {
    auto pop = [](auto& reader) {
      auto r = reader.try_read();
      const std::uint64_t v = r ? value_of(r->bytes) : ~std::uint64_t{0};
      if (r) reader.release();
      return v;
    };
    switch (k) {
      case 0: return pop(a);
      case 1: return pop(b);
      case 2: return pop(c);
      default: return pop(d);
    }
  };
  std::array<int, 4> perm{0, 1, 2, 3};
  std::uint64_t seq = 0;
  int rounds = 0;
  do {  // every order of the four rings: 24 permutations, 96 wake-ups
    for (int k : perm) {
      CAPTURE(k, rounds);
      REQUIRE(set.wait(0ns) == Status::timed_out);  // nothing is ready before we ask
      order.put(static_cast<char>(k));
      REQUIRE(set.wait(std::chrono::milliseconds(kGuardMs)) == Status::ok);
      REQUIRE(set.ready().size() == 1);
      CHECK(set.ready()[0].id == id[static_cast<std::size_t>(k)]);
      CHECK(set.ready()[0].status == Status::ok);
      CHECK(take(k) == seq++);
    }
    ++rounds;
  } while (std::next_permutation(perm.begin(), perm.end()));
  CHECK(rounds == 24);
  ::close(order.fd[1]);
  order.fd[1] = -1;
  CHECK(fr_test::join(child) == 0);
}

TEST_CASE("WaitSet: a writer entry wakes when space is freed in another process",
          "[wait][process]") {
  const std::string name = fr_test::unique_name("wset-w");
  RemoveGuard guard(name);
  Ring ring = make_ring<Mode::mpmc>(name, 4096);
  Pipe go, attached;
  const pid_t child = fr_test::spawn([&] {
    go.fd[1] = (::close(go.fd[1]), -1);
    Reader<Mode::mpmc> reader(Ring::open(name));
    attached.put();
    while (go.get() >= 0) {
      auto r = reader.read(10s);
      if (!r) return 3;
      reader.release();
    }
    return 0;
  });
  REQUIRE(attached.get() == 1);
  Writer<Mode::mpmc> writer(ring);
  const std::array<std::byte, 300> payload{};
  WaitSet set(WaitOptions{.spin = 0ns});
  const std::size_t id = set.add(writer, payload.size());
  for (int round = 0; round < 10; ++round) {
    while (writer.try_write(payload) == Status::ok) {
    }
    REQUIRE(set.wait(0ns) == Status::timed_out);
    Status s = Status::full;
    while (s == Status::full) {
      go.put();  // free one more record
      REQUIRE(set.wait(std::chrono::milliseconds(kGuardMs)) == Status::ok);
      REQUIRE(set.ready().size() == 1);
      CHECK(set.ready()[0].id == id);
      s = writer.try_write(payload);
    }
    REQUIRE(s == Status::ok);
  }
  go.fd[1] = (::close(go.fd[1]), -1);
  CHECK(fr_test::join(child) == 0);
}

TEST_CASE("WaitSet: timeouts, an empty set, and remove", "[wait]") {
  const std::string name = fr_test::unique_name("wset-t");
  RemoveGuard guard(name);
  Ring ring = make_ring<Mode::spsc>(name);
  WaitSet set(WaitOptions{.spin = 10us, .liveness_interval = 5ms});
  CHECK(set.wait(1ms) == Status::invalid_state);  // nothing to wait on
  Reader<> reader(ring);
  const std::size_t id = set.add(reader);
  CHECK(set.wait(0ns) == Status::timed_out);
  CHECK(set.wait(20ms) == Status::timed_out);  // across several liveness intervals
  CHECK(set.ready().empty());
  // A record already there: ok at once, whatever the timeout.
  Writer<> writer(ring);
  const std::uint64_t v = 7;
  REQUIRE(writer.try_write(bytes_of(v)) == Status::ok);
  REQUIRE(set.wait(0ns) == Status::ok);
  REQUIRE(set.ready().size() == 1);
  CHECK(set.ready()[0].id == id);
  // A held record keeps it ready: try_read returns it again.
  REQUIRE(reader.try_read());
  CHECK(set.wait(0ns) == Status::ok);
  reader.release();
  CHECK(set.wait(0ns) == Status::timed_out);
  CHECK(set.remove(id));
  CHECK_FALSE(set.remove(id));
  CHECK(set.size() == 0);
}

TEMPLATE_TEST_CASE("WaitSet: a producer that dies while the WaitSet sleeps on its ring is "
                   "reported as peer_dead",
                   "[wait][process]", FR_ALL_MODES) {
  constexpr Mode M = TestType::value;
  const std::string name = fr_test::unique_name("wset-dead");
  const std::string other = fr_test::unique_name("wset-alive");
  RemoveGuard guard(name), guard2(other);
  Ring ring = make_ring<M>(name);
  Ring quiet = make_ring<Mode::spsc>(other);
  Reader<M> reader(ring);
  Reader<> idle(quiet);
  WaitSet set(WaitOptions{.spin = 0ns, .liveness_interval = 20ms});
  const std::size_t idle_id = set.add(idle);
  const std::size_t id = set.add(reader);
  Pipe attached;
  const pid_t child = fr_test::spawn([&] {
    Writer<M> writer(Ring::open(name));
    attached.put();
    // Die once the WaitSet sleeps on this ring (it is counted in the wait line's `waiters`).
    const layout::WaitLine& line = writer.ring().control().data;
    while (line.waiters.load() == 0) ::usleep(100);
    ::kill(::getpid(), SIGKILL);
    return 0;
  });
  REQUIRE(attached.get() == 1);
  REQUIRE(set.wait(std::chrono::milliseconds(kGuardMs)) == Status::ok);
  REQUIRE(set.ready().size() == 1);
  CHECK(set.ready()[0].id == id);
  CHECK(set.ready()[0].status == Status::peer_dead);
  CHECK(set.ready()[0].id != idle_id);
  CHECK(fr_test::join(child) == 128 + SIGKILL);
}

TEST_CASE("WaitSet: two readers of one ring through mappings of their own share one wait line, "
          "and the WaitSet really sleeps",
          "[wait]") {
  const auto name = fr_test::unique_name("ws-alias");
  RemoveGuard guard(name);
  Ring ring = make_ring<Mode::broadcast>(name);
  Writer<Mode::broadcast> w(ring);
  // Each reader maps the ring anew: the same wait words at two addresses.
  Reader<Mode::broadcast> a(Ring::open(name)), b(Ring::open(name));
  REQUIRE(&a.ring().control() != &b.ring().control());
  REQUIRE(a.ring().same_segment(b.ring()));
  const auto other_name = fr_test::unique_name("ws-alias-other");
  RemoveGuard other_guard(other_name);
  CHECK_FALSE(a.ring().same_segment(make_ring<Mode::broadcast>(other_name)));
  WaitSet set(WaitOptions{.spin = 0ns, .liveness_interval = 60s});
  (void)set.add(a);
  (void)set.add(b);
  // A sleeper bumps each line's futex word once as it registers. Listed twice, the word would
  // never hold the first bump's value, and the WaitSet would spin through futex_waitv's EAGAIN
  // for the whole timeout, bumping the word on every pass.
  auto& futex = ring.control().data.futex;
  const std::uint32_t before = futex.load();
  CHECK(set.wait(200ms) == Status::timed_out);
  CHECK(futex.load() - before <= 2);  // one registration (a second if a wake-up was spurious)
  // It still wakes for a record.
  std::byte rec[8]{};
  REQUIRE(w.try_write(rec) == Status::ok);
  CHECK(set.wait(10s) == Status::ok);
  CHECK(set.ready().size() == 2);
}
