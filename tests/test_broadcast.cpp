// Broadcast rings across real processes: every consumer sees every record in order, late joiners,
// the slow-consumer policy (lossless: the producer waits) and a SIGKILLed consumer releasing it.
#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <cstring>
#include <thread>
#include <vector>

#include "helpers.hpp"
#include "mp_helpers.hpp"

using namespace flatring;
using namespace std::chrono_literals;
using flatring::test::Msg;
using fr_test::unique_name;

namespace {

// A record of 8 + (seq % 40) bytes: seq, then bytes derived from it.
std::size_t record_size(std::uint64_t seq) { return 8 + (seq % 40); }

void make_record(std::byte* buf, std::uint64_t seq) {
  std::memcpy(buf, &seq, 8);
  for (std::size_t i = 8; i < record_size(seq); ++i) buf[i] = static_cast<std::byte>(seq + i);
}

// Checks a record's shape and returns its seq, or ~0 when it is malformed.
std::uint64_t record_seq(std::span<const std::byte> b) {
  if (b.size() < 8) return ~0ull;
  std::uint64_t seq = 0;
  std::memcpy(&seq, b.data(), 8);
  if (b.size() != record_size(seq)) return ~0ull;
  for (std::size_t i = 8; i < b.size(); ++i) {
    if (b[i] != static_cast<std::byte>(seq + i)) return ~0ull;
  }
  return seq;
}

// Reads records until `last` (inclusive) and checks they are first, first+1, ..., last.
// `first` ~0 means "whatever comes first" (a joiner that raced the producer). Returns 0 or an
// exit code naming the failure.
int expect_run(Reader<Mode::broadcast>& r, std::uint64_t first, std::uint64_t last) {
  std::uint64_t expect = first;
  for (;;) {
    auto got = r.read(30s);
    if (!got) {
      std::fprintf(stderr, "read: %s\n", std::string(to_string(got.status())).c_str());
      return 2;
    }
    const std::uint64_t seq = record_seq(got->bytes);
    if (seq == ~0ull) return 3;
    if (expect == ~0ull) expect = seq;
    if (seq != expect) {
      std::fprintf(stderr, "expected %llu got %llu\n", static_cast<unsigned long long>(expect),
                   static_cast<unsigned long long>(seq));
      return 4;
    }
    r.release();
    if (seq == last) return 0;
    ++expect;
  }
}

}  // namespace

TEST_CASE("broadcast: every consumer process sees every record in order", "[broadcast][process]") {
  const auto name = unique_name("bc-all");
  RemoveGuard guard(name);
  const std::uint64_t count = fr_test::scaled(200'000);
  const std::size_t capacity = GENERATE(std::size_t{4096}, std::size_t{1} << 16);
  CAPTURE(capacity);
  auto ring = Ring::create(name, {.capacity = capacity, .mode = Mode::broadcast});
  fr_test::SharedWords shared(1);
  constexpr int kConsumers = 3;

  std::vector<pid_t> consumers;
  for (int i = 0; i < kConsumers; ++i) {
    consumers.push_back(fr_test::spawn([&] {
      Reader<Mode::broadcast> r(Ring::open(name));
      shared[0].fetch_add(1);  // joined: the producer may start
      // Batched polling for one, blocking reads for the others: both paths must deliver it all.
      if (i == 0) {
        std::uint64_t expect = 0;
        while (expect < count) {
          const std::size_t n = r.poll(
              [&](std::span<const std::byte> b) {
                if (record_seq(b) == expect) ++expect;
                else expect = count + 1;  // fails the check below
              },
              64);
          if (n == 0 && r.last_status() != Status::empty) return 5;
        }
        if (expect != count) return 4;
      } else if (int rc = expect_run(r, 0, count - 1); rc != 0) {
        return rc;
      }
      return r.read(50ms).status() == Status::timed_out ? 0 : 6;  // nothing extra
    }));
  }
  Writer<Mode::broadcast> w(ring);
  fr_test::wait_for([&] { return shared[0].load() == kConsumers; });
  std::byte buf[64];
  for (std::uint64_t seq = 0; seq < count; ++seq) {
    make_record(buf, seq);
    const Status s = w.write({buf, record_size(seq)}, 30s);
    if (s != Status::ok) FAIL("write " << seq << ": " << to_string(s));
  }
  for (pid_t p : consumers) CHECK(fr_test::join(p) == 0);
  CHECK(ring.control().retired.value[layout::records_read].load() == kConsumers * count);
}

TEST_CASE("broadcast: a late joiner sees exactly the records committed after its join",
          "[broadcast][process]") {
  const auto name = unique_name("bc-late");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096, .mode = Mode::broadcast});
  Writer<Mode::broadcast> w(ring);
  std::byte buf[64];
  // Several laps before anyone listens: with no consumer nothing holds the producer back.
  constexpr std::uint64_t kBefore = 1000, kAfter = 500;
  for (std::uint64_t seq = 0; seq < kBefore; ++seq) {
    make_record(buf, seq);
    REQUIRE(w.try_write({buf, record_size(seq)}) == Status::ok);
  }
  fr_test::SharedWords shared(1);
  pid_t late = fr_test::spawn([&] {
    Reader<Mode::broadcast> r(Ring::open(name));
    shared[0].store(1);
    if (r.try_read().status() != Status::empty) return 7;  // nothing from before the join
    if (int rc = expect_run(r, kBefore, kBefore + kAfter - 1); rc != 0) return rc;
    return r.read(50ms).status() == Status::timed_out ? 0 : 6;
  });
  fr_test::wait_for([&] { return shared[0].load() == 1; });
  for (std::uint64_t seq = kBefore; seq < kBefore + kAfter; ++seq) {
    make_record(buf, seq);
    REQUIRE(w.write({buf, record_size(seq)}, 30s) == Status::ok);
  }
  CHECK(fr_test::join(late) == 0);
}

TEST_CASE("broadcast: consumers joining while the producer streams see a gapless suffix",
          "[broadcast][process]") {
  const auto name = unique_name("bc-join");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096, .mode = Mode::broadcast});
  const std::uint64_t count = fr_test::scaled(100'000);
  fr_test::SharedWords shared(2);
  constexpr int kJoiners = 3;
  pid_t producer = fr_test::spawn([&] {
    Writer<Mode::broadcast> w(Ring::open(name));
    std::byte buf[64];
    for (std::uint64_t seq = 0; seq < count; ++seq) {
      // Every joiner must be in before the last record, or it would wait for nothing.
      if (seq == count - 1) fr_test::wait_for([&] { return shared[1].load() == kJoiners; });
      make_record(buf, seq);
      if (w.write({buf, record_size(seq)}, 30s) != Status::ok) return 2;
      if (seq == count / 10) shared[0].store(1);  // let the joiners in mid-stream
    }
    return 0;
  });
  fr_test::wait_for([&] { return shared[0].load() == 1; });
  std::vector<pid_t> joiners;
  for (int i = 0; i < kJoiners; ++i) {
    joiners.push_back(fr_test::spawn([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(i));  // spread the joins out
      Reader<Mode::broadcast> r(Ring::open(name));
      shared[1].fetch_add(1);
      return expect_run(r, ~0ull, count - 1);
    }));
  }
  CHECK(fr_test::join(producer) == 0);
  for (pid_t p : joiners) CHECK(fr_test::join(p) == 0);
}

TEST_CASE("broadcast: a stalled consumer holds the producer back and SIGKILL releases it",
          "[broadcast][process]") {
  const auto name = unique_name("bc-slow");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096, .mode = Mode::broadcast});
  fr_test::SharedWords shared(2);
  WaitOptions fast_liveness;
  fast_liveness.liveness_interval = 20ms;
  Writer<Mode::broadcast> w(ring, fast_liveness);

  // A healthy consumer that reads everything, and one that joins and never reads.
  constexpr std::uint64_t kTotal = 2000;
  pid_t healthy = fr_test::spawn([&] {
    Reader<Mode::broadcast> r(Ring::open(name));
    shared[0].fetch_add(1);
    return expect_run(r, 0, kTotal - 1);
  });
  pid_t stalled = fr_test::spawn([&]() -> int {
    Reader<Mode::broadcast> r(Ring::open(name));
    shared[0].fetch_add(1);
    for (;;) ::pause();
  });
  fr_test::wait_for([&] { return shared[0].load() == 2; });

  std::byte buf[64];
  std::uint64_t seq = 0;
  Status s = Status::ok;
  // The ring holds 4096 bytes; records take 32 to 64: it is full within a few hundred.
  for (; seq < kTotal; ++seq) {
    make_record(buf, seq);
    s = w.try_write({buf, record_size(seq)});
    if (s != Status::ok) break;
  }
  REQUIRE(s == Status::full);
  CHECK(seq * 32 <= 4096);
  CHECK(w.slowest() == 0);  // the stalled consumer never moved
  // Blocking: the stalled consumer is alive, so the producer waits it out to the timeout.
  CHECK(w.write({buf, record_size(seq)}, 100ms) == Status::timed_out);

  ::kill(stalled, SIGKILL);
  CHECK(fr_test::join(stalled) == 128 + SIGKILL);
  for (; seq < kTotal; ++seq) {
    make_record(buf, seq);
    s = w.write({buf, record_size(seq)}, 30s);
    if (s != Status::ok) FAIL("write " << seq << " after the kill: " << to_string(s));
  }
  CHECK(fr_test::join(healthy) == 0);
  CHECK(census(ring, layout::Role::consumer).dead == 0);  // the dead one was reclaimed
}

TEST_CASE("broadcast: typed consumers verify every record", "[broadcast][typed][process]") {
  const auto name = unique_name("bc-typed");
  RemoveGuard guard(name);
  auto ring = create_ring<Msg>(name, {.capacity = 1 << 16, .mode = Mode::broadcast});
  fr_test::SharedWords shared(1);
  constexpr std::uint64_t kCount = 5000;
  std::vector<pid_t> consumers;
  for (int i = 0; i < 2; ++i) {
    consumers.push_back(fr_test::spawn([&] {
      Consumer<Msg, Mode::broadcast> c(open_ring<Msg>(name));
      shared[0].fetch_add(1);
      for (std::uint64_t seq = 0; seq < kCount; ++seq) {
        auto msg = c.receive(30s);
        if (!msg) return 2;
        if ((*msg)->seq() != seq || (*msg)->payload() == nullptr) return 3;
        const auto* p = (*msg)->payload();
        if (!fr_test::check_pattern({reinterpret_cast<const std::byte*>(p->data()), p->size()},
                                    seq)) {
          return 4;
        }
      }
      return 0;
    }));
  }
  Producer<Msg, Mode::broadcast> p(ring);
  fr_test::wait_for([&] { return shared[0].load() == 2; });
  flatbuffers::FlatBufferBuilder fbb;
  for (std::uint64_t seq = 0; seq < kCount; ++seq) {
    fr_test::build_msg(fbb, seq, seq % 200);
    REQUIRE(p.send(fbb, 30s) == Status::ok);
  }
  for (pid_t c : consumers) CHECK(fr_test::join(c) == 0);
}

TEST_CASE("broadcast: a consumer reports an impossible published tail as corrupt", "[broadcast]") {
  const auto name = unique_name("bc-corrupt");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096, .mode = Mode::broadcast});
  Reader<Mode::broadcast> r(ring);
  auto& tail = ring.control().producer.tail;
  for (std::uint64_t bad : {std::uint64_t{8}, std::uint64_t{4096 + 16}}) {
    CAPTURE(bad);
    tail.store(bad);  // misaligned, then more than a lap ahead
    CHECK(r.try_read().status() == Status::corrupt);
  }
  // A frame word that claims more bytes than the producer published.
  tail.store(32);
  auto* frame = &detail::header_at(ring.writable_data(), 0).frame;
  frame->store(layout::make_frame(layout::RecordType::data, 100));
  CHECK(r.try_read().status() == Status::corrupt);
  frame->store(layout::make_frame(layout::RecordType::data, 16));
  CHECK(r.try_read().status() == Status::ok);
}

TEST_CASE("broadcast: a producer SIGKILLed inside a reservation is reported and taken over",
          "[broadcast][crash][process]") {
  const auto name = unique_name("bc-pcrash");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096, .mode = Mode::broadcast});
  WaitOptions fast;
  fast.liveness_interval = 10ms;
  Reader<Mode::broadcast> r(ring, fast);
  fr_test::SharedWords shared(1);
  constexpr std::uint64_t kFirst = 300;  // several laps of the 4 KiB ring
  const pid_t producer = fr_test::spawn([&]() -> int {
    Writer<Mode::broadcast> w(Ring::open(name));
    std::byte buf[64];
    for (std::uint64_t seq = 0; seq < kFirst; ++seq) {
      make_record(buf, seq);
      if (w.write({buf, record_size(seq)}, 30s) != Status::ok) return 2;
    }
    auto claim = w.try_reserve(48);  // a reservation that is never committed
    if (!claim) return 3;
    std::memset(claim->data(), 0xEE, 48);
    shared[0].store(1);
    for (;;) ::pause();
  });
  CHECK(expect_run(r, 0, kFirst - 1) == 0);
  fr_test::wait_for([&] { return shared[0].load() == 1; });
  ::kill(producer, SIGKILL);
  CHECK(fr_test::join(producer) == 128 + SIGKILL);
  // Everything published has been read and the producer is dead: reported, not waited on.
  CHECK(r.read(30s).status() == Status::peer_dead);

  CHECK(census(ring, layout::Role::producer).dead == 0);  // the reader reclaimed its slot
  Writer<Mode::broadcast> w(ring);                        // resumes at the published tail
  std::byte buf[64];
  // One record at a time: this thread is also the (only) consumer, and the producer waits for it.
  for (std::uint64_t seq = kFirst; seq < 2 * kFirst; ++seq) {
    make_record(buf, seq);
    REQUIRE(w.write({buf, record_size(seq)}, 30s) == Status::ok);
    REQUIRE(expect_run(r, seq, seq) == 0);  // the dead reservation left nothing behind
  }
  CHECK(r.try_read().status() == Status::empty);
}
