// Hostile and failed peers, across real processes: stale segments left by a killed creator, and a
// peer that shrinks the segment under a reader or writer (the SIGBUS guard).
#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <fcntl.h>
#include <string>
#include <sys/mman.h>
#include <unistd.h>

#include "helpers.hpp"

using namespace flatring;
using namespace std::chrono_literals;
using fr_test::unique_name;
using flatring::test::Msg;

namespace {

// The Error a call throws; fails the test if it throws nothing.
template <class F>
Error error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  FAIL("no flatring::Error thrown");
  return Error(Errc::system_error, "");
}

// Runs Ring::create in a child that then dies by SIGKILL, leaving the segment behind; with
// `attach`, the child also dies holding the producer role.
void create_and_die(const std::string& name, bool attach) {
  pid_t child = fr_test::spawn([&] {
    auto ring = Ring::create(name, {.capacity = 4096});
    if (attach) {
      Writer w(ring);
      std::byte b[16]{};
      (void)w.try_write(b);
      ::raise(SIGKILL);
    }
    ::raise(SIGKILL);
    return 0;
  });
  REQUIRE(fr_test::join(child) == 128 + SIGKILL);
}

// A child that holds the consumer role until its stdin pipe closes.
struct LiveReader {
  int to_child[2] = {-1, -1};
  int from_child[2] = {-1, -1};
  pid_t pid = -1;
  explicit LiveReader(const std::string& name) {
    REQUIRE(::pipe(to_child) == 0);
    REQUIRE(::pipe(from_child) == 0);
    pid = fr_test::spawn([&] {
      ::close(to_child[1]);
      ::close(from_child[0]);
      Reader r(Ring::open(name));
      char c = 1;
      if (::write(from_child[1], &c, 1) != 1) return 2;
      return ::read(to_child[0], &c, 1) == 0 ? 0 : 3;  // EOF: the parent let go
    });
    ::close(to_child[0]);
    ::close(from_child[1]);
    char c = 0;
    REQUIRE(::read(from_child[0], &c, 1) == 1);  // attached
  }
  int finish() {
    ::close(to_child[1]);
    ::close(from_child[0]);
    return fr_test::join(pid);
  }
};

}  // namespace

TEST_CASE("a segment whose creator was SIGKILLed is stale: create refuses it and says how to reclaim",
          "[hostile][stale]") {
  const auto name = unique_name("stale");
  RemoveGuard guard(name);
  const bool attach = GENERATE(false, true);
  CAPTURE(attach);
  create_and_die(name, attach);
  CHECK(Ring::is_stale(name));
  Error e = error_of([&] { (void)Ring::create(name, {.capacity = 4096}); });
  CHECK(e.code() == Errc::already_exists);
  CHECK_THAT(e.what(), Catch::Contains("is stale") && Catch::Contains("Ring::reclaim_if_stale") &&
                           Catch::Contains("CreateOptions::reclaim_stale"));
  CHECK(Ring::exists(name));  // refused, not replaced
  CHECK(Ring::reclaim_if_stale(name));
  CHECK_FALSE(Ring::exists(name));
  auto ring = Ring::create(name, {.capacity = 4096});
  CHECK(ring.info().creator.pid == self_process().pid);
  CHECK_FALSE(Ring::is_stale(name));
}

TEST_CASE("create with reclaim_stale replaces a stale segment with a fresh one", "[hostile][stale]") {
  const auto name = unique_name("reclaim");
  RemoveGuard guard(name);
  create_and_die(name, true);
  auto ring = Ring::create(name, {.capacity = 1 << 14}, {}, {.reclaim_stale = true});
  CHECK(ring.info().creator.pid == self_process().pid);
  CHECK(ring.info().capacity == (1u << 14));
  CHECK(ring.control().producer.tail.load() == 0);  // nothing of the dead ring's state is reused
  CHECK(ring.control().owners.producer.load() == 0);
}

TEST_CASE("a segment with a live creator or a live attached peer is not stale", "[hostile][stale]") {
  const auto name = unique_name("notstale");
  RemoveGuard guard(name);
  SECTION("live creator") {
    auto ring = Ring::create(name, {.capacity = 4096});
    CHECK_FALSE(Ring::is_stale(name));
    CHECK_FALSE(Ring::reclaim_if_stale(name));
    Error e = error_of([&] { (void)Ring::create(name, {.capacity = 4096}, {}, {.reclaim_stale = true}); });
    CHECK(e.code() == Errc::already_exists);
    CHECK_THAT(e.what(), !Catch::Contains("is stale"));
  }
  SECTION("dead creator, live reader; stale once the reader is killed") {
    create_and_die(name, false);
    LiveReader reader(name);
    CHECK_FALSE(Ring::is_stale(name));
    CHECK_FALSE(Ring::reclaim_if_stale(name));
    CHECK(error_of([&] {
            (void)Ring::create(name, {.capacity = 4096}, {}, {.reclaim_stale = true});
          }).code() == Errc::already_exists);
    ::kill(reader.pid, SIGKILL);
    CHECK(reader.finish() == 128 + SIGKILL);
    CHECK(Ring::is_stale(name));
    CHECK(Ring::reclaim_if_stale(name));
  }
}

TEST_CASE("something that is not a flatring segment is never called stale or reclaimed",
          "[hostile][stale]") {
  const auto name = unique_name("foreignstale");
  RemoveGuard guard(name);
  const int fd = ::open(Ring::path_of(name).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  REQUIRE(fd >= 0);
  REQUIRE(::ftruncate(fd, 1 << 16) == 0);  // zeros: no magic, as if its creator died at once
  ::close(fd);
  CHECK(error_of([&] { (void)Ring::is_stale(name); }).code() == Errc::not_flatring);
  CHECK(error_of([&] { (void)Ring::reclaim_if_stale(name); }).code() == Errc::not_flatring);
  Error e = error_of([&] { (void)Ring::create(name, {.capacity = 4096}, {}, {.reclaim_stale = true}); });
  CHECK(e.code() == Errc::already_exists);
  CHECK(Ring::exists(name));
}

// ---------------------------------------------------------------- SIGBUS guard

namespace {

// Shrinks the segment file, as a hostile peer with write access to it can.
void shrink(const std::string& name, off_t size) {
  REQUIRE(::truncate(Ring::path_of(name).c_str(), size) == 0);
}

enum class Victim { reader, writer, typed_consumer };

}  // namespace

TEST_CASE("a peer that shrinks the segment does not kill a blocked reader or writer: segment_lost",
          "[hostile][sigbus]") {
  const Victim victim = GENERATE(Victim::reader, Victim::writer, Victim::typed_consumer);
  const off_t new_size = GENERATE(off_t{0}, off_t{4096});
  CAPTURE(static_cast<int>(victim), new_size);
  const auto name = unique_name("sigbus");
  RemoveGuard guard(name);
  auto ring = create_ring<Msg>(name, {.capacity = 1 << 14});
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  const WaitOptions wait{.spin = 0ns, .liveness_interval = 10ms};

  pid_t child = fr_test::spawn([&] {
    ::close(ready[0]);
    auto opened = open_ring<Msg>(name);
    Status last = Status::ok;
    const char c = 1;
    if (victim == Victim::writer) {
      Writer w(opened, wait);
      std::byte p[1000]{};
      while (w.try_write(p) == Status::ok) {
      }
      if (::write(ready[1], &c, 1) != 1) return 2;
      last = w.write(p, 30s);  // full: blocks until the segment is lost
    } else if (victim == Victim::reader) {
      Reader r(opened, wait);
      if (::write(ready[1], &c, 1) != 1) return 2;
      auto got = r.read(30s);  // empty: blocks until the segment is lost
      last = got.status();
    } else {
      Consumer<Msg> consumer(opened, ConsumerOptions{.wait = wait});
      if (::write(ready[1], &c, 1) != 1) return 2;
      last = consumer.receive(30s).status();
    }
    if (last != Status::segment_lost) {
      std::fprintf(stderr, "expected segment_lost, got %s\n", std::string(to_string(last)).c_str());
      return 3;
    }
    return opened.lost() ? 0 : 4;
  });
  ::close(ready[1]);
  char c = 0;
  REQUIRE(::read(ready[0], &c, 1) == 1);
  ::close(ready[0]);
  shrink(name, new_size);
  CHECK(fr_test::join(child) == 0);  // exited normally, having seen segment_lost
}

TEST_CASE("a reader in the same process as the shrinking peer reads zeros, not a fault", "[hostile][sigbus]") {
  const auto name = unique_name("sigbuslocal");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096});
  Writer w(ring);
  Reader r(ring, {.spin = 0ns, .liveness_interval = 10ms});
  std::byte p[100]{};
  REQUIRE(w.try_write(p) == Status::ok);
  CHECK_FALSE(ring.lost());
  shrink(name, 0);
  // The record was committed, but its pages are gone: the reader sees "nothing" and says why.
  CHECK(r.read(1s).status() == Status::segment_lost);
  CHECK(ring.lost());
  // The writer's view is replaced too; what it writes now lands in private zero pages, which no
  // reader sees (ok), or it learns of the loss (segment_lost). Either way it is not killed.
  const Status s = w.write(p, 1s);
  CHECK((s == Status::ok || s == Status::segment_lost));
  CHECK(r.read(1s).status() == Status::segment_lost);
}

TEST_CASE("a SIGBUS outside flatring's mappings still ends the process", "[hostile][sigbus]") {
  const auto name = unique_name("sigbusother");
  RemoveGuard guard(name);
  const auto other = "/dev/shm/" + unique_name("notflatring");
  pid_t child = fr_test::spawn([&] {
    ::signal(SIGABRT, SIG_DFL);  // under ASan its report aborts: no Catch report from the child
    auto ring = Ring::create(name + "-child", {.capacity = 4096});  // installs the guard
    RemoveGuard child_guard(name + "-child");
    const int fd = ::open(other.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || ::ftruncate(fd, 8192) != 0) return 2;
    auto* p = static_cast<volatile char*>(::mmap(nullptr, 8192, PROT_READ, MAP_SHARED, fd, 0));
    ::unlink(other.c_str());
    if (::ftruncate(fd, 0) != 0) return 3;
    return p[4096] == 0 ? 4 : 5;  // faults: not a flatring mapping, so not repaired
  });
  const int rc = fr_test::join(child);
  ::unlink(other.c_str());
#if defined(__SANITIZE_ADDRESS__)
  CHECK((rc != 0 && rc != 2 && rc != 3 && rc != 4 && rc != 5));  // ASan's own SIGBUS report
#else
  CHECK(rc == 128 + SIGBUS);
#endif
  Ring::remove(name + "-child");
}

// ---------------------------------------------------------------- TOCTOU and mapping rights

TEST_CASE("copy-then-verify: a record rewritten in the ring after receive does not change what the consumer reads",
          "[hostile]") {
  const auto name = unique_name("toctou");
  RemoveGuard guard(name);
  auto ring = create_ring<Msg>(name, {.capacity = 1 << 14});
  const bool in_place = GENERATE(false, true);
  CAPTURE(in_place);
  Producer<Msg> producer(ring);
  Consumer<Msg> consumer(ring, ConsumerOptions{.in_place = in_place});
  flatbuffers::FlatBufferBuilder fbb;
  fr_test::build_msg(fbb, 7, 64);
  REQUIRE(producer.try_send(fbb) == Status::ok);
  auto got = consumer.try_receive();
  REQUIRE(got);
  // The hostile producer rewrites the whole record after it was verified.
  std::byte* record = ring.writable_data() + layout::kRecordHeaderSize;
  std::memset(record, 0xFF, fbb.GetSize());
  const Msg* msg = *got;
  const auto* p = msg->payload();
  if (!in_place) {
    CHECK(msg->seq() == 7);  // the caller's private copy
    REQUIRE(p != nullptr);
    CHECK(fr_test::check_pattern({reinterpret_cast<const std::byte*>(p->data()), p->size()}, 7));
  } else {
    // In place, the caller reads the ring: the rewrite shows. This is why copy is the default.
    CHECK(consumer.bytes().data() == ring.data() + layout::kRecordHeaderSize);
    CHECK(std::to_integer<int>(consumer.bytes()[0]) == 0xFF);
  }
}

TEST_CASE("a process without a Writer cannot write the record area", "[hostile]") {
  const auto name = unique_name("readonly");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096});
  {
    Writer w(ring);  // in another process than the child below
    std::byte b[32]{};
    REQUIRE(w.try_write(b) == Status::ok);
  }
  pid_t child = fr_test::spawn([&] {
    auto opened = Ring::open(name);
    Reader r(opened);
    auto got = r.try_read();
    if (!got) return 2;
    // A consumer bug (or an exploited one) tries to rewrite what it reads. (Default action for
    // the fault: Catch's handler would report a failure from this child.)
    ::signal(SIGSEGV, SIG_DFL);
    *const_cast<volatile std::byte*>(got->bytes.data()) = std::byte{1};
    return 0;  // not reached: the record area is mapped read-only here
  });
  const int rc = fr_test::join(child);
#if defined(__SANITIZE_ADDRESS__)
  CHECK((rc != 0 && rc != 2));  // ASan reports the SEGV itself
#else
  CHECK(rc == 128 + SIGSEGV);
#endif
  auto fresh = Ring::open(name);
  Reader r(fresh);
  auto got = r.try_read();
  REQUIRE(got);
  CHECK(std::to_integer<int>(got->bytes[0]) == 0);  // untouched
}

TEST_CASE("a segment owned by another uid is refused unless allowed", "[hostile]") {
  const auto name = unique_name("foreignuid");
  RemoveGuard guard(name);
  { auto ring = Ring::create(name, {.capacity = 4096}); }
  // As if another user had created the name first. Giving a file away needs root; CI runs as root.
  const uid_t other = 4242;
  if (::geteuid() == 0) {
    REQUIRE(::chown(Ring::path_of(name).c_str(), other, other) == 0);
    CHECK(error_of([&] { (void)Ring::open(name); }).code() == Errc::unsafe_owner);
    CHECK(error_of([&] { (void)Ring::is_stale(name); }).code() == Errc::unsafe_owner);
    auto ring = Ring::open(name, {.allow_foreign_owner = true});
    CHECK(ring.info().owner_uid == other);
  } else {
    WARN("not root: cannot give the segment to another uid; ownership check not exercised");
  }
}
