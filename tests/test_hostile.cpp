// Hostile and failed peers, across real processes: stale segments left by a killed creator, a
// segment shrunk by the process that reads it and a SIGBUS outside flatring's mappings (the SIGBUS
// guard; a segment shrunk under a peer process, in every mode, is in test_modes.cpp), TOCTOU,
// mapping rights, foreign owners, and garbage in an mpmc ring's shared words.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <stdexcept>
#include <string>
#include <sys/mman.h>
#include <unistd.h>

#include "helpers.hpp"
#include "mp_helpers.hpp"

using namespace flatring;
using namespace std::chrono_literals;
using fr_test::error_code;
using fr_test::error_of;
using fr_test::unique_name;
using flatring::test::Msg;

namespace {

// Runs Ring::create in a child that then dies by SIGKILL, leaving the segment behind; with
// `attach`, the child also dies holding the producer role.
void create_and_die(const std::string& name, bool attach) {
  pid_t child = fr_test::spawn([&] {
    auto ring = Ring::create(name, {.capacity = 4096});
    if (attach) {
      Writer<> w(ring);
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
      Reader<> r(Ring::open(name));
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

TEST_CASE(
    "a segment whose creator was SIGKILLed is stale: create refuses it and says how to reclaim",
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

TEST_CASE("create with reclaim_stale replaces a stale segment with a fresh one",
          "[hostile][stale]") {
  const auto name = unique_name("reclaim");
  RemoveGuard guard(name);
  create_and_die(name, true);
  auto ring = Ring::create(name, {.capacity = 1 << 14}, SchemaId{}, {.reclaim_stale = true});
  CHECK(ring.info().creator.pid == self_process().pid);
  CHECK(ring.info().capacity == (1u << 14));
  CHECK(ring.control().producer.tail.load() == 0);  // nothing of the dead ring's state is reused
  CHECK(ring.control().owners.producer.load() == 0);
}

TEST_CASE("a segment with a live creator or a live attached peer is not stale",
          "[hostile][stale]") {
  const auto name = unique_name("notstale");
  RemoveGuard guard(name);
  SECTION("live creator") {
    auto ring = Ring::create(name, {.capacity = 4096});
    CHECK_FALSE(Ring::is_stale(name));
    CHECK_FALSE(Ring::reclaim_if_stale(name));
    Error e = error_of(
        [&] { (void)Ring::create(name, {.capacity = 4096}, SchemaId{}, {.reclaim_stale = true}); });
    CHECK(e.code() == Errc::already_exists);
    CHECK_THAT(e.what(), !Catch::Contains("is stale"));
  }
  SECTION("dead creator, live reader; stale once the reader is killed") {
    create_and_die(name, false);
    LiveReader reader(name);
    CHECK_FALSE(Ring::is_stale(name));
    CHECK_FALSE(Ring::reclaim_if_stale(name));
    CHECK(error_code([&] {
            (void)Ring::create(name, {.capacity = 4096}, SchemaId{}, {.reclaim_stale = true});
          }) == Errc::already_exists);
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
  CHECK(error_code([&] { (void)Ring::is_stale(name); }) == Errc::not_flatring);
  CHECK(error_code([&] { (void)Ring::reclaim_if_stale(name); }) == Errc::not_flatring);
  CHECK(error_code([&] {
          (void)Ring::create(name, {.capacity = 4096}, SchemaId{}, {.reclaim_stale = true});
        }) == Errc::already_exists);
  CHECK(Ring::exists(name));
}

// ---------------------------------------------------------------- SIGBUS guard

TEST_CASE("a reader in the same process as the shrinking peer reads zeros, not a fault",
          "[hostile][sigbus]") {
  const auto name = unique_name("sigbuslocal");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096});
  Writer<> w(ring);
  Reader<> r(ring, {.spin = 0ns, .liveness_interval = 10ms});
  std::byte p[100]{};
  REQUIRE(w.try_write(p) == Status::ok);
  CHECK_FALSE(ring.lost());
  fr_test::shrink(name, 0);
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

TEST_CASE("copy-then-verify: a record rewritten in the ring after receive does not change what the "
          "consumer reads",
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

TEST_CASE("a process without a Writer<> cannot write the record area", "[hostile]") {
  const auto name = unique_name("readonly");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096});
  {
    Writer<> w(ring);  // in another process than the child below
    std::byte b[32]{};
    REQUIRE(w.try_write(b) == Status::ok);
  }
  pid_t child = fr_test::spawn([&] {
    auto opened = Ring::open(name);
    Reader<> r(opened);
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
  Reader<> r(fresh);
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
    CHECK(error_code([&] { (void)Ring::open(name); }) == Errc::unsafe_owner);
    CHECK(error_code([&] { (void)Ring::is_stale(name); }) == Errc::unsafe_owner);
    auto ring = Ring::open(name, {.allow_foreign_owner = true});
    CHECK(ring.info().owner_uid == other);
  } else {
    WARN("not root: cannot give the segment to another uid; ownership check not exercised");
  }
}

// ---------------------------------------------------------------- mpmc: garbage in the shared
// words

namespace {

using layout::RecordType;
using layout::make_frame;

constexpr std::uint64_t kMpCap = 4096;
// A position in the fourth lap, 512 bytes before the end of the ring: the frame checks against
// the end of the ring and against the tail both have room to fail.
constexpr std::uint64_t kAt = 3 * kMpCap + kMpCap - 512;

// An mpmc ring whose positions and record words a hostile peer sets directly.
struct HostileMpmc {
  std::string name = unique_name("mpmc-hostile");
  RemoveGuard guard{name};
  Ring ring = Ring::create(name, {.capacity = kMpCap, .mode = Mode::mpmc});

  void positions(std::uint64_t head, std::uint64_t next, std::uint64_t tail) {
    ring.control().consumer.head.store(head);
    ring.control().consumer.next.store(next);
    ring.control().producer.tail.store(tail);
  }
  void record(std::uint64_t pos, std::uint64_t frame, std::uint64_t aux) {
    auto& h = detail::header_at(ring.writable_data(), pos & (kMpCap - 1));
    h.frame.store(frame);
    h.aux = aux;
  }
  [[nodiscard]] std::uint64_t head() const { return ring.control().consumer.head.load(); }
  [[nodiscard]] std::uint64_t next() const { return ring.control().consumer.next.load(); }
};

// A record a reader hands out must lie inside the record area (an mpmc consumer reads it through
// the writable mapping: it zeroes what it consumed); reading every byte makes a view that does not
// fault under ASan (or with a plain SIGSEGV) here.
bool inside(Ring& ring, std::span<const std::byte> b) {
  const auto lo = reinterpret_cast<std::uintptr_t>(ring.writable_data());
  const auto p = reinterpret_cast<std::uintptr_t>(b.data());
  unsigned sum = 0;
  for (std::byte x : b) sum += std::to_integer<unsigned>(x);
  asm volatile("" : : "r"(sum));
  return p >= lo && p + b.size() <= lo + ring.info().capacity &&
         b.size() <= ring.info().max_record_size;
}

struct PositionCase {
  const char* what;
  std::uint64_t head, next, tail;
};

struct FrameCase {
  const char* what;
  std::uint64_t frame, aux;
  Status expect;
};

}  // namespace

TEST_CASE("mpmc hostile: a consumer refuses impossible positions at attach with corrupt_state",
          "[hostile][mpmc]") {
  const auto c = GENERATE(values<PositionCase>({
      {"misaligned head", kAt + 8, kAt + 16, kAt + 32},
      {"misaligned next", kAt, kAt + 8, kAt + 32},
      {"misaligned tail", kAt, kAt, kAt + 1},
      {"next behind head", kAt, kAt - 16, kAt},
      {"tail behind next", kAt - 64, kAt, kAt - 32},
      {"tail more than a lap past head", kAt, kAt, kAt + kMpCap + 16},
      {"head near 2^64, tail wrapped to 0", ~std::uint64_t{15}, ~std::uint64_t{15}, 0},
      {"all ones", ~std::uint64_t{0}, ~std::uint64_t{0}, ~std::uint64_t{0}},
  }));
  CAPTURE(c.what);
  HostileMpmc s;
  s.positions(c.head, c.next, c.tail);
  Error e = error_of([&] { Reader<Mode::mpmc> r(s.ring); });
  CHECK(e.code() == Errc::corrupt_state);
  CHECK_THAT(e.what(), Catch::Contains("impossible positions"));
  // A full lap in flight is possible, not corrupt.
  s.positions(kAt, kAt + 64, kAt + kMpCap);
  CHECK_NOTHROW(Reader<Mode::mpmc>(s.ring));
}

TEST_CASE("mpmc hostile: a garbage frame word at the read cursor is corrupt or empty, never a "
          "record outside the ring",
          "[hostile][mpmc]") {
  const std::uint64_t max = max_record_size_for(kMpCap);
  const auto c = GENERATE_COPY(values<FrameCase>({
      {"zero: nothing written yet", 0, 0, Status::empty},
      {"claimed: being written", make_frame(RecordType::claimed, 100), 0, Status::empty},
      {"done leftover", make_frame(RecordType::done, 128), 0, Status::empty},
      {"valid data", make_frame(RecordType::data, 100), 128, Status::ok},
      {"data filling the rest of the ring", make_frame(RecordType::data, 496), 512, Status::ok},
      {"data with flags", make_frame(RecordType::data, 100) | (std::uint64_t{1} << 48), 128,
       Status::corrupt},
      {"data longer than max_record_size", make_frame(RecordType::data, max + 1), 512,
       Status::corrupt},
      {"data length 2^48-1", make_frame(RecordType::data, layout::kLengthMask), 512,
       Status::corrupt},
      {"data extent smaller than its length", make_frame(RecordType::data, 100), 112,
       Status::corrupt},
      {"data extent misaligned", make_frame(RecordType::data, 100), 136, Status::corrupt},
      {"data extent past the end of the ring", make_frame(RecordType::data, 100), 528,
       Status::corrupt},
      {"data extent 2^63", make_frame(RecordType::data, 100), std::uint64_t{1} << 63,
       Status::corrupt},
      {"data extent all ones", make_frame(RecordType::data, 100), ~std::uint64_t{0},
       Status::corrupt},
      {"padding not reaching the end", make_frame(RecordType::padding, 100), 0, Status::corrupt},
      {"padding past the end", make_frame(RecordType::padding, 512), 0, Status::corrupt},
      {"padding with flags", make_frame(RecordType::padding, 496) | (std::uint64_t{7} << 48), 0,
       Status::corrupt},
      {"abandoned with a misaligned extent", make_frame(RecordType::abandoned, 100), 0,
       Status::corrupt},
      {"abandoned past the end", make_frame(RecordType::abandoned, 1008), 0, Status::corrupt},
      {"releasing: only a consumer's own record", make_frame(RecordType::releasing, 128), 0,
       Status::corrupt},
      {"type 7", make_frame(static_cast<RecordType>(7), 16), 0, Status::corrupt},
      {"type 0xFF", ~std::uint64_t{0}, ~std::uint64_t{0}, Status::corrupt},
  }));
  CAPTURE(c.what);
  HostileMpmc s;
  s.positions(kAt, kAt, kAt + 512);  // the tail at the end of the ring: all 512 bytes claimed
  s.record(kAt, c.frame, c.aux);
  Reader<Mode::mpmc> r(s.ring);
  auto got = r.try_read();
  REQUIRE(got.status() == c.expect);
  if (c.expect == Status::ok) {
    CHECK(inside(s.ring, got->bytes));
    CHECK(got->position == kAt);
    CHECK_FALSE(got->redelivered);
    CHECK(s.next() == kAt + c.aux);  // claimed
    r.release();
    CHECK(s.head() == kAt + c.aux);  // finished and freed
    return;
  }
  // Nothing is consumed or freed; asking again gives the same answer, counted once.
  CHECK(s.next() == kAt);
  CHECK(s.head() == kAt);
  CHECK(r.try_read().status() == c.expect);
  CHECK(r.poll([](std::span<const std::byte>) { FAIL("delivered garbage"); }, 4) == 0);
  CHECK(r.last_status() == c.expect);
  CHECK(r.attachment().slot().counter[layout::corrupt_records].load() ==
        (c.expect == Status::corrupt ? 1u : 0u));
}

TEST_CASE(
    "mpmc hostile: padding and abandoned records are skipped and freed, then the reader waits",
    "[hostile][mpmc]") {
  HostileMpmc s;
  SECTION("padding to the end of the ring") {
    s.positions(kAt, kAt, kAt + 512);
    s.record(kAt, make_frame(RecordType::padding, 496), 0);
    Reader<Mode::mpmc> r(s.ring);
    CHECK(r.try_read().status() == Status::empty);
    CHECK(s.next() == kAt + 512);
    CHECK(s.head() == kAt + 512);
  }
  SECTION("an abandoned record, then an unwritten claim") {
    s.positions(kAt, kAt, kAt + 512);
    s.record(kAt, make_frame(RecordType::abandoned, 112), 0);
    Reader<Mode::mpmc> r(s.ring);
    CHECK(r.try_read().status() == Status::empty);
    CHECK(s.next() == kAt + 128);
    CHECK(s.head() == kAt + 128);
  }
}

TEST_CASE("mpmc hostile: positions rewritten after attach are corrupt or empty, never a record "
          "outside the ring",
          "[hostile][mpmc]") {
  HostileMpmc s;
  s.positions(kAt, kAt, kAt + 256);
  s.record(kAt, make_frame(RecordType::data, 100), 128);
  s.record(kAt + 128, make_frame(RecordType::data, 100), 128);
  Reader<Mode::mpmc> r(s.ring);
  {
    // Another consumer takes the first record, so `r` has not seen the tail the cursor is at now.
    Reader<Mode::mpmc> other(s.ring);
    REQUIRE(other.try_read().has_value());
    other.release();
  }
  const std::uint64_t at = kAt + 128;
  REQUIRE(s.next() == at);
  REQUIRE(s.head() == at);
  SECTION("misaligned read cursor") {
    s.ring.control().consumer.next.store(at + 8);
    CHECK(r.try_read().status() == Status::corrupt);
  }
  SECTION("tail behind the read cursor") {
    s.ring.control().producer.tail.store(at - 16);
    CHECK(r.try_read().status() == Status::corrupt);
  }
  SECTION("tail more than a lap ahead") {
    s.ring.control().producer.tail.store(at + kMpCap + 16);
    CHECK(r.try_read().status() == Status::corrupt);
  }
  SECTION("tail short of a header") {
    s.ring.control().producer.tail.store(at + 8);
    CHECK(r.try_read().status() == Status::corrupt);
  }
  SECTION("tail at the read cursor") {
    s.ring.control().producer.tail.store(at);
    CHECK(r.try_read().status() == Status::empty);
  }
  SECTION("tail short of the record's extent") {
    s.ring.control().producer.tail.store(at + 64);
    CHECK(r.try_read().status() == Status::corrupt);
  }
  SECTION("head ahead of the read cursor: the record is delivered, the head is not touched") {
    s.ring.control().consumer.head.store(at + 2 * kMpCap);
    auto got = r.try_read();
    REQUIRE(got.has_value());
    CHECK(inside(s.ring, got->bytes));
    r.release();
    CHECK(s.head() == at + 2 * kMpCap);
    CHECK(r.recover() == Status::empty);  // "nothing held" by anyone
  }
  SECTION("head more than a lap behind the read cursor: nothing is freed") {
    s.ring.control().consumer.head.store(at - kMpCap - 16);
    auto got = r.try_read();
    REQUIRE(got.has_value());
    r.release();
    CHECK(s.head() == at - kMpCap - 16);
    CHECK(r.recover() == Status::corrupt);
  }
  CHECK(s.next() >= at);  // never moved back
}

TEST_CASE("mpmc hostile: a tail moved behind a caught-up consumer's cursor reads as empty",
          "[hostile][mpmc]") {
  // The consumer caches the last tail it checked; at its own cursor, that cache already says
  // "nothing more", so it does not look again. Nothing is read either way.
  HostileMpmc s;
  s.positions(kAt, kAt, kAt);
  Reader<Mode::mpmc> r(s.ring);
  s.ring.control().producer.tail.store(kAt - 16);
  CHECK(r.try_read().status() == Status::empty);
  CHECK(r.recover() == Status::corrupt);  // recovery loads the tail itself
}

TEST_CASE("mpmc hostile: recover() on garbage takes over only well-formed records of the dead",
          "[hostile][mpmc]") {
  HostileMpmc s;
  SECTION("a dead consumer's well-formed record at the head is delivered again") {
    s.positions(kAt, kAt + 128, kAt + 128);
    s.record(kAt, make_frame(RecordType::data, 100), 128);
    Reader<Mode::mpmc> r(s.ring);
    CHECK(r.try_read().status() == Status::empty);  // claimed by "someone"
    REQUIRE(r.recover() == Status::ok);
    auto got = r.try_read();
    REQUIRE(got.has_value());
    CHECK(got->redelivered);
    CHECK(got->position == kAt);
    CHECK(inside(s.ring, got->bytes));
    r.release();
    CHECK(s.head() == kAt + 128);
  }
  SECTION("a held record with an impossible extent is corrupt") {
    const std::uint64_t aux =
        GENERATE(std::uint64_t{16}, std::uint64_t{136}, std::uint64_t{256}, ~std::uint64_t{0});
    CAPTURE(aux);
    s.positions(kAt, kAt + 128, kAt + 128);  // 256 would reach past the read cursor
    s.record(kAt, make_frame(RecordType::data, 100), aux);
    Reader<Mode::mpmc> r(s.ring);
    CHECK(r.recover() == Status::corrupt);
    CHECK(r.try_read().status() == Status::empty);
    CHECK(s.head() == kAt);
  }
  SECTION("a releasing record is finished when its length is possible, corrupt otherwise") {
    const std::uint64_t len = GENERATE(std::uint64_t{128}, std::uint64_t{0}, std::uint64_t{8},
                                       std::uint64_t{120}, std::uint64_t{256}, layout::kLengthMask);
    CAPTURE(len);
    s.positions(kAt, kAt + 128, kAt + 128);
    s.record(kAt, make_frame(RecordType::releasing, len), 128);
    std::byte* payload = s.ring.writable_data() + (kAt & (kMpCap - 1)) + layout::kRecordHeaderSize;
    std::memset(payload, 0x5A, 112);  // what the dead consumer had not zeroed yet
    Reader<Mode::mpmc> r(s.ring);
    const Status got = r.recover();
    if (len == 128) {
      CHECK(got == Status::empty);
      CHECK(s.head() == kAt + 128);  // zeroed, done and freed
      CHECK(std::all_of(payload, payload + 112, [](std::byte b) { return b == std::byte{0}; }));
    } else {
      CHECK(got == Status::corrupt);
      CHECK(s.head() == kAt);
    }
  }
  SECTION("a word that is no record at the head is corrupt") {
    const std::uint64_t w =
        GENERATE(make_frame(static_cast<RecordType>(9), 112), ~std::uint64_t{0},
                 make_frame(RecordType::claimed, 100) | (std::uint64_t{1} << 48));
    CAPTURE(w);
    s.positions(kAt, kAt + 128, kAt + 128);
    s.record(kAt, w, 128);
    Reader<Mode::mpmc> r(s.ring);
    CHECK(r.recover() == Status::corrupt);
    CHECK(s.head() == kAt);
  }
  SECTION("an unwritten header below the read cursor with no live owner is abandoned up to the "
          "next claim") {
    // What a consumer leaves when it dies between claiming a dead producer's claim and marking it
    // abandoned: 0, the producer's `claimed`, or a done header of an earlier lap (free space).
    const std::uint64_t w = GENERATE(std::uint64_t{0}, make_frame(RecordType::claimed, 100),
                                     make_frame(RecordType::done, 64));
    CAPTURE(w);
    s.positions(kAt, kAt + 128, kAt + 128);
    s.record(kAt, w, kAt - kMpCap);  // aux: a done header of the previous lap names that lap
    Reader<Mode::mpmc> r(s.ring);
    CHECK(r.recover() == Status::abandoned);
    CHECK(s.head() == kAt + 128);
    CHECK(r.try_read().status() == Status::empty);
  }
  SECTION("a finished record whose consumer did not free it is freed") {
    s.positions(kAt, kAt + 128, kAt + 128);
    s.record(kAt, make_frame(RecordType::done, 128), kAt);  // aux: a finisher may name the position
    Reader<Mode::mpmc> r(s.ring);
    CHECK(r.recover() == Status::empty);
    CHECK(s.head() == kAt + 128);
  }
  SECTION("a done word with an impossible extent is left alone and reported") {
    const std::uint64_t extent =
        GENERATE(std::uint64_t{0}, std::uint64_t{24}, std::uint64_t{256}, std::uint64_t{1024});
    CAPTURE(extent);
    s.positions(kAt, kAt + 128, kAt + 128);
    s.record(kAt, make_frame(RecordType::done, extent), kAt);  // names its position: this lap's
    Reader<Mode::mpmc> r(s.ring);
    CHECK(r.recover() == Status::corrupt);  // the free loop stops at it: not "empty" for good
    CHECK(s.head() == kAt);
  }
  SECTION("more than a lap held is corrupt") {
    s.positions(kAt, kAt + 64, kAt + 64);
    Reader<Mode::mpmc> r(s.ring);
    s.ring.control().consumer.head.store(kAt - kMpCap);
    CHECK(r.recover() == Status::corrupt);
  }
  SECTION("a dead producer's claim with a possible length is abandoned") {
    s.positions(kAt, kAt, kAt + 256);
    s.record(kAt, make_frame(RecordType::claimed, 100), 128);
    Reader<Mode::mpmc> r(s.ring);
    CHECK(r.try_read().status() == Status::empty);
    CHECK(r.recover() == Status::abandoned);
    CHECK(s.next() == kAt + 128);
    CHECK(s.head() == kAt + 128);
    CHECK(r.try_read().status() == Status::empty);  // the rest is an unwritten claim
  }
  SECTION("a dead producer's claim longer than what was claimed is corrupt") {
    const std::uint64_t len =
        GENERATE(std::uint64_t{300}, std::uint64_t{1000}, layout::kLengthMask);
    CAPTURE(len);
    s.positions(kAt, kAt, kAt + 256);
    s.record(kAt, make_frame(RecordType::claimed, len), 0);
    Reader<Mode::mpmc> r(s.ring);
    CHECK(r.recover() == Status::corrupt);
    CHECK(s.next() == kAt);
  }
  SECTION("a claim with nothing written reaches to the next header") {
    s.positions(kAt, kAt, kAt + 512);
    s.record(kAt + 256, make_frame(RecordType::data, 100), 128);
    Reader<Mode::mpmc> r(s.ring);
    CHECK(r.recover() == Status::abandoned);
    CHECK(s.next() == kAt + 256);
    auto got = r.try_read();
    REQUIRE(got.has_value());
    CHECK(got->position == kAt + 256);
  }
  SECTION("impossible tails") {
    const std::uint64_t tail = GENERATE(kAt - 16, kAt + 8, kAt + kMpCap + 16, ~std::uint64_t{0});
    CAPTURE(tail);
    s.positions(kAt, kAt, kAt);
    Reader<Mode::mpmc> r(s.ring);
    s.ring.control().producer.tail.store(tail);
    CHECK(r.recover() == Status::corrupt);
    CHECK(s.next() == kAt);
  }
}

TEST_CASE("mpmc hostile: a peer process scribbling over the positions and records never crashes or "
          "hangs a consumer",
          "[hostile][mpmc][process]") {
  HostileMpmc s;
  {
    Writer<Mode::mpmc> w(s.ring);
    std::byte buf[64];
    for (std::uint64_t seq = 0; seq < 20; ++seq)
      REQUIRE(w.try_write({buf, fr_test::make_tagged(buf, 0, seq)}) == Status::ok);
  }
  Reader<Mode::mpmc> r(s.ring, {.spin = 0ns, .liveness_interval = 1ms});
  fr_test::SharedWords shared(1);  // [0]: 1 once the scribbler is done
  pid_t child = fr_test::spawn([&] {
    auto ring = Ring::open(s.name);
    auto& c = ring.control();
    std::byte* data = ring.writable_data();
    std::uint64_t x = 0x9E3779B97F4A7C15ull;
    auto rnd = [&] {  // xorshift64: reproducible garbage
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      return x;
    };
    for (int i = 0; i < 200'000; ++i) {
      const std::uint64_t v = rnd();
      const std::uint64_t near = kAt + ((v >> 32) & 0x3F0);  // aligned and near-valid
      switch (v % 8) {
        case 0: c.consumer.next.store(v & 1 ? near : rnd()); break;
        case 1: c.consumer.head.store(v & 1 ? near : rnd()); break;
        case 2: c.producer.tail.store(v & 1 ? near + 256 : rnd()); break;
        case 3:
        case 4: {  // a frame word of any type, with a length that is often almost right
          const auto type = static_cast<RecordType>((v >> 8) % 8);
          const std::uint64_t len = (v & 2) ? ((v >> 16) & 0x3F0) : rnd();
          detail::header_at(data, (v >> 40) & (kMpCap - 16))
              .frame.store(make_frame(type, len) | (v & 4 ? 0 : v & (0xFFull << 48)));
          break;
        }
        case 5:
          detail::header_at(data, (v >> 40) & (kMpCap - 16)).aux =
              (v & 1) ? ((v >> 16) & 0x7F0) : rnd();
          break;
        default: break;  // let the consumer run on what is there
      }
    }
    shared[0].store(1);
    return 0;
  });
  std::uint64_t ops = 0, delivered = 0;
  bool statuses_ok = true, views_ok = true;
  while (shared[0].load() == 0 || ops < 1000) {
    ++ops;
    switch (ops % 5) {
      case 4: {  // the blocking read keeps its deadline whatever the garbage
        auto got = r.read(1ms);
        if (got) {
          views_ok = views_ok && inside(s.ring, got->bytes);
          ++delivered;
        } else {
          const Status st = got.status();
          statuses_ok = statuses_ok && (st == Status::timed_out || st == Status::corrupt ||
                                        st == Status::abandoned || st == Status::peer_dead);
        }
        break;
      }
      case 0: {
        auto got = r.try_read();
        if (got) {
          views_ok = views_ok && inside(s.ring, got->bytes);
          ++delivered;
        } else {
          statuses_ok =
              statuses_ok && (got.status() == Status::empty || got.status() == Status::corrupt);
        }
        break;
      }
      case 1: r.release(); break;
      case 2: {
        const Status u = r.recover();
        statuses_ok = statuses_ok && (u == Status::ok || u == Status::empty ||
                                      u == Status::corrupt || u == Status::abandoned);
        break;
      }
      default:
        delivered += r.poll(
            [&](std::span<const std::byte> b) { views_ok = views_ok && inside(s.ring, b); }, 4);
        break;
    }
  }
  CAPTURE(ops, delivered);
  CHECK(fr_test::join(child) == 0);
  CHECK(statuses_ok);
  CHECK(views_ok);
}

TEST_CASE("mpmc hostile: read() keeps its deadline when the tail is more than a lap past a "
          "caught-up consumer",
          "[hostile][mpmc]") {
  // Found by fuzz_mpmc. Reader<Mode::mpmc>::read's ready() sees a data frame at the read cursor
  // below the tail ("a record is there"); try_read() says empty (its cached tail is the cursor, and
  // the tail it loads is more than a lap ahead, impossible); mp_detail::blocking_read then neither
  // sleeps nor reaches its deadline check, and spins for good. Fixed: ready() refuses an impossible
  // tail, and blocking_read checks its deadline after every futile wake.
  HostileMpmc s;
  s.positions(kAt, kAt, kAt);
  fr_test::SharedWords result(1);  // 1 + the Status read() returned
  pid_t child = fr_test::spawn([&] {
    Reader<Mode::mpmc> r(s.ring, {.spin = 0ns, .liveness_interval = 1ms});
    s.ring.control().producer.tail.store(kAt + kMpCap + 16);
    s.record(kAt, make_frame(RecordType::data, 100), 128);
    result[0].store(1 + static_cast<std::uint64_t>(r.read(10ms).status()));
    return 0;
  });
  bool returned = true;
  try {
    fr_test::wait_for([&] { return result[0].load() != 0; });  // gives up after a minute: a hang
  } catch (const std::runtime_error&) {
    returned = false;
    ::kill(child, SIGKILL);
  }
  fr_test::join(child);
  REQUIRE(returned);
  const auto status = static_cast<Status>(result[0].load() - 1);
  CHECK((status == Status::corrupt || status == Status::timed_out));
}

TEST_CASE("mpmc hostile: a producer never writes a header at a misaligned tail",
          "[hostile][mpmc][process]") {
  // Found by fuzz_mpmc (UBSan: RecordHeader bound at a misaligned address in
  // Writer<Mode::mpmc>::try_reserve). The producer takes the tail's offset as a record boundary
  // without checking its alignment: at 1016 it claims [1016, 1048) and writes a misaligned header
  // (ok); at capacity - 1 its padding header's 8-byte frame store reaches 7 bytes past the record
  // area (SIGSEGV). Fixed: try_reserve reports a misaligned tail as corrupt.
  const std::uint64_t tail = GENERATE(kMpCap - 1, std::uint64_t{1016});
  CAPTURE(tail);
  HostileMpmc s;
  pid_t child = fr_test::spawn([&] {
    ::signal(SIGSEGV, SIG_DFL);  // a fault ends the child with the signal, not a Catch report
    ::signal(SIGBUS, SIG_DFL);
    Writer<Mode::mpmc> w(s.ring);
    s.ring.control().producer.tail.store(tail);  // after attach: the constructor checks positions
    std::byte p[16]{};
    const Status st = w.try_write(p);
    return st == Status::corrupt ? 0 : 10 + static_cast<int>(st);
  });
  CHECK(fr_test::join(child) == 0);
  CHECK(s.ring.control().producer.tail.load() == tail);  // nothing claimed
}
