// Building records in place (Producer::try_build / build, Writer::commit_at) in every mode: a
// producer process building records of every size with sequence checks, the fallback when the
// hint is too small, records at and above max_record_size, a build that throws, a full ring, a
// producer killed while building, and the offset word as hostile input.
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "helpers.hpp"
#include "mode_types.hpp"

using namespace flatring;
using namespace std::chrono_literals;
using flatring::test::Msg;
using fr_test::unique_name;

namespace {

std::size_t payload_of(std::uint64_t seq) { return (seq * 37) % 700; }

// A Msg of `size` pattern bytes, as a build callback.
auto msg_of(std::uint64_t seq, std::size_t size) {
  return [seq, size](flatbuffers::FlatBufferBuilder& fbb) {
    std::uint8_t* p = nullptr;
    auto vec = fbb.CreateUninitializedVector(size, &p);
    fr_test::fill_pattern({reinterpret_cast<std::byte*>(p), size}, seq);
    return flatring::test::CreateMsg(fbb, seq, vec);
  };
}

// The bytes an ordinary builder makes for the same record, finished with a minimum alignment of
// 16 as Producer::try_build finishes (so that the record starts 16-byte aligned in the ring).
std::vector<std::byte> reference(std::uint64_t seq, std::size_t size) {
  flatbuffers::FlatBufferBuilder fbb;
  const auto root = msg_of(seq, size)(fbb);
  fbb.TrackMinAlign(flatring::layout::kRecordAlign);
  fbb.Finish(root, flatring::test::MsgIdentifier());
  const auto b = fr_test::detail_bytes(fbb);
  return {b.begin(), b.end()};
}

bool same(std::span<const std::byte> a, const std::vector<std::byte>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size()) == 0;
}

// Every 5th record's hint is too small, so the fallback runs in the stream too.
std::size_t hint_of(std::uint64_t seq) { return seq % 5 == 4 ? 8 : payload_of(seq) + 64; }

template <Mode M>
int build_records(const std::string& name, std::uint64_t count) {
  Producer<Msg, M> producer(open_ring<Msg>(name));
  for (std::uint64_t seq = 0; seq < count; ++seq) {
    const Status s = seq % 2 == 0 ? producer.build(hint_of(seq), msg_of(seq, payload_of(seq)), 30s)
                                  : producer.try_build(hint_of(seq), msg_of(seq, payload_of(seq)));
    if (s == Status::full) {
      --seq;  // try_build never waits: retry
      continue;
    }
    if (s != Status::ok) return 3;
  }
  return 0;
}

}  // namespace

TEMPLATE_TEST_CASE("Producer::build writes each record once, in place, and a consumer process "
                   "gets exactly the bytes an ordinary builder makes",
                   "[typed][build][process]", FR_ALL_MODES) {
  constexpr Mode M = TestType::value;
  const auto name = unique_name("build");
  RemoveGuard guard(name);
  // 64 KiB: records of every size end at every offset, the hint's dead space crosses the wrap.
  Ring ring = create_ring<Msg>(name, {.capacity = 1 << 16, .max_record_size = 4096, .mode = M});
  const bool in_place = GENERATE(false, true);
  CAPTURE(in_place);
  Consumer<Msg, M> consumer(ring, {.in_place = in_place});  // a broadcast consumer joins first
  const std::uint64_t count = fr_test::scaled(100'000);
  const pid_t child = fr_test::spawn([&] { return build_records<M>(name, count); });

  std::uint64_t next = 0, wrong = 0;
  const auto until = std::chrono::steady_clock::now() + 120s;  // a hang guard only
  while (next < count && std::chrono::steady_clock::now() < until) {
    const PollCount n = consumer.poll(
        [&](const Msg& m) {
          const auto* p = m.payload();
          const bool ok =
              m.seq() == next && p != nullptr && p->size() == payload_of(next) &&
              fr_test::check_pattern(std::as_bytes(std::span(p->data(), p->size())), next);
          wrong += ok ? 0 : 1;
          ++next;
        },
        64);
    CHECK(n.rejected == 0);
    if (n.delivered == 0) {
      REQUIRE(n.status == Status::empty);
      std::this_thread::yield();
    }
  }
  CHECK(fr_test::join(child) == 0);
  CHECK(next == count);
  CHECK(wrong == 0);
}

TEMPLATE_TEST_CASE("Producer::try_build: the record a reader sees is exactly an ordinary "
                   "builder's bytes, in place or through the fallback, max_record_size, a build "
                   "that throws, a full ring",
                   "[typed][build]", FR_ALL_MODES) {
  constexpr Mode M = TestType::value;
  const auto name = unique_name("build-edges");
  RemoveGuard guard(name);
  // The largest record is the one an ordinary builder makes for a 3000-byte payload.
  const std::size_t max = reference(7, 3000).size();
  Ring ring = create_ring<Msg>(name, {.capacity = 1 << 14, .max_record_size = max, .mode = M});
  Reader<M> reader(ring);
  Producer<Msg, M> producer(ring);

  auto expect_record = [&](std::uint64_t seq, std::size_t size) {
    auto r = reader.try_read();
    REQUIRE(r.has_value());
    CHECK(same(r->bytes, reference(seq, size)));
    // Like every record, one built in place starts 16-byte aligned.
    CHECK(reinterpret_cast<std::uintptr_t>(r->bytes.data()) % flatring::layout::kRecordAlign == 0);
    flatbuffers::Verifier v(reinterpret_cast<const std::uint8_t*>(r->bytes.data()),
                            r->bytes.size());
    CHECK(v.VerifyBuffer<Msg>(flatring::test::MsgIdentifier()));
    reader.release();
  };

  SECTION("in place, and the fallback for a hint too small (0, 8, one byte short)") {
    REQUIRE(producer.try_build(200, msg_of(1, 100)) == Status::ok);
    expect_record(1, 100);
    REQUIRE(producer.try_build(0, msg_of(2, 100)) == Status::ok);
    expect_record(2, 100);
    REQUIRE(producer.try_build(8, msg_of(3, 1000)) == Status::ok);
    expect_record(3, 1000);
    const std::size_t exact = reference(4, 500).size();
    REQUIRE(producer.try_build(exact - 1, msg_of(4, 500)) == Status::ok);
    expect_record(4, 500);
    REQUIRE(producer.try_build(exact, msg_of(5, 500)) == Status::ok);
    expect_record(5, 500);
    CHECK(reader.try_read().status() == Status::empty);
  }
  SECTION("a record of exactly max_record_size arrives (through the fallback); one byte more is "
          "too_large, nothing is written, and the stream goes on") {
    REQUIRE(producer.try_build(max, msg_of(7, 3000)) == Status::ok);
    expect_record(7, 3000);
    CHECK(producer.try_build(max, msg_of(8, 3016)) == Status::too_large);
    CHECK(producer.try_build(100, msg_of(8, 3016)) == Status::too_large);
    CHECK(reader.try_read().status() == Status::empty);
    REQUIRE(producer.try_build(64, msg_of(9, 10)) == Status::ok);
    expect_record(9, 10);
  }
  SECTION("a build that throws drops its reservation: nothing is visible, the next build goes "
          "on") {
    CHECK_THROWS_AS(
        producer.try_build(256,
                           [](flatbuffers::FlatBufferBuilder& fbb) -> flatbuffers::Offset<Msg> {
                             fbb.CreateString("half a record");
                             throw std::runtime_error("abort while building");
                           }),
        std::runtime_error);
    CHECK(reader.try_read().status() == Status::empty);
    REQUIRE(producer.try_build(256, msg_of(10, 50)) == Status::ok);
    expect_record(10, 50);
  }
  SECTION("a full ring: try_build is full and writes nothing; after a release it goes on") {
    std::uint64_t sent = 0;
    while (producer.try_build(1100, msg_of(sent, 1000)) == Status::ok) ++sent;
    REQUIRE(sent > 0);
    CHECK(producer.try_build(1100, msg_of(sent, 1000)) == Status::full);
    for (std::uint64_t seq = 0; seq < sent; ++seq) expect_record(seq, 1000);
    CHECK(reader.try_read().status() == Status::empty);
    REQUIRE(producer.build(1100, msg_of(sent, 1000), 1s) == Status::ok);
    expect_record(sent, 1000);
  }
}

TEMPLATE_TEST_CASE("A producer killed while building in place: spsc and broadcast show nothing, "
                   "mpsc and mpmc skip its claim as abandoned, the stream goes on",
                   "[typed][build][crash][process]", FR_ALL_MODES) {
  constexpr Mode M = TestType::value;
  const auto name = unique_name("build-kill");
  RemoveGuard guard(name);
  Ring ring = create_ring<Msg>(name, {.capacity = 1 << 14, .mode = M});
  WaitOptions fast;
  fast.liveness_interval = 10ms;
  Consumer<Msg, M> consumer(ring, {.wait = fast});
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  const pid_t child = fr_test::spawn([&] {
    Producer<Msg, M> producer(open_ring<Msg>(name));
    (void)producer.try_build(512, [&](flatbuffers::FlatBufferBuilder& fbb) {
      auto root = msg_of(1, 300)(fbb);  // half built: objects in the ring, not finished
      const char c = 'b';
      (void)!::write(ready[1], &c, 1);
      for (;;) ::pause();
      return root;
    });
    return 5;
  });
  char c = 0;
  REQUIRE(::read(ready[0], &c, 1) == 1);
  ::close(ready[0]);
  ::close(ready[1]);
  CHECK(consumer.try_receive().status() == Status::empty);
  REQUIRE(::kill(child, SIGKILL) == 0);
  CHECK(fr_test::join(child) == 128 + SIGKILL);

  // A new producer (taking over the exclusive role in spsc and broadcast) sends the next record.
  Producer<Msg, M> producer(ring);
  REQUIRE(producer.build(512, msg_of(2, 300), 5s) == Status::ok);
  auto got = consumer.receive(30s);
  if constexpr (M == Mode::mpsc || M == Mode::mpmc) {
    CHECK(got.status() == Status::abandoned);
    got = consumer.receive(30s);
  }
  REQUIRE(got.has_value());
  CHECK((*got)->seq() == 2);
  CHECK(consumer.try_receive().status() == Status::empty);
}

TEMPLATE_TEST_CASE("The offset word of a record built in place is untrusted: out of range or "
                   "misaligned is corrupt, never a read outside the record",
                   "[build][hostile]", FR_ALL_MODES) {
  constexpr Mode M = TestType::value;
  const auto name = unique_name("build-hostile");
  RemoveGuard guard(name);
  Ring ring = Ring::create(name, {.capacity = 1 << 14, .mode = M});
  Reader<M> reader(ring);
  Writer<M> writer(ring);
  // 20, 24, 36: multiples of 4 or 8 but not of 16, a view that would not be 16-byte aligned.
  const std::uint64_t bad = GENERATE(0, 8, 15, 18, 20, 24, 36, 65, 1 << 20, ~std::uint64_t{0});
  CAPTURE(bad);
  auto r = writer.try_reserve(64);
  REQUIRE(r.has_value());
  std::memset(r->data(), 0xAB, 64);
  REQUIRE(writer.commit_at(32, 64) == Status::ok);
  // A hostile writer rewrites the committed offset word.
  std::memcpy(r->data(), &bad, sizeof bad);
  CHECK(reader.try_read().status() == Status::corrupt);
}

TEST_CASE("Writer::commit_at refuses offsets it cannot publish, keeping the reservation",
          "[build]") {
  const auto name = unique_name("commit-at");
  RemoveGuard guard(name);
  Ring ring = Ring::create(name, {.capacity = 1 << 14});
  Reader<> reader(ring);
  Writer<> writer(ring);
  auto r = writer.try_reserve(64);
  REQUIRE(r.has_value());
  for (std::size_t i = 0; i < 64; ++i) (*r)[i] = std::byte(i);
  CHECK(writer.commit_at(8, 64) == Status::invalid_state);   // below kMinOffset
  CHECK(writer.commit_at(18, 64) == Status::invalid_state);  // not a multiple of 4
  CHECK(writer.commit_at(24, 64) == Status::invalid_state);  // not a multiple of 16
  CHECK(writer.commit_at(32, 65) == Status::invalid_state);  // more than reserved
  CHECK(writer.commit_at(68, 64) == Status::invalid_state);  // past used
  REQUIRE(writer.commit_at(32, 64) == Status::ok);
  auto got = reader.try_read();
  REQUIRE(got.has_value());
  REQUIRE(got->bytes.size() == 32);
  CHECK(got->bytes[0] == std::byte(32));
  CHECK(got->bytes[31] == std::byte(63));
  reader.release();
  CHECK(writer.commit_at(32, 64) == Status::invalid_state);  // no reservation
}

TEST_CASE("mpmc: a record built in place that a dead consumer held is redelivered with exactly "
          "its bytes",
          "[typed][build][crash][process]") {
  const auto name = unique_name("build-redeliver");
  RemoveGuard guard(name);
  Ring ring = create_ring<Msg>(name, {.capacity = 1 << 14, .mode = Mode::mpmc});
  Producer<Msg, Mode::mpmc> producer(ring);
  // Far more hint than record: the record starts well inside its reservation.
  REQUIRE(producer.try_build(2000, msg_of(1, 300)) == Status::ok);
  REQUIRE(producer.try_build(64, msg_of(2, 10)) == Status::ok);
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  const pid_t victim = fr_test::spawn([&] {
    // In place: the record stays held in the ring until the next receive.
    Consumer<Msg, Mode::mpmc> c(open_ring<Msg>(name), {.in_place = true});
    auto got = c.receive(10s);
    if (!got || (*got)->seq() != 1) return 2;
    const char c1 = 'h';
    (void)!::write(ready[1], &c1, 1);
    for (;;) ::pause();
  });
  char c = 0;
  REQUIRE(::read(ready[0], &c, 1) == 1);
  ::close(ready[0]);
  ::close(ready[1]);
  REQUIRE(::kill(victim, SIGKILL) == 0);
  CHECK(fr_test::join(victim) == 128 + SIGKILL);

  WaitOptions fast;
  fast.liveness_interval = 10ms;
  Consumer<Msg, Mode::mpmc> consumer(ring, {.in_place = GENERATE(false, true), .wait = fast});
  std::vector<std::uint64_t> seen;
  bool redelivered = false;
  const auto until = std::chrono::steady_clock::now() + 30s;  // a hang guard only
  while (seen.size() < 2 && std::chrono::steady_clock::now() < until) {
    auto got = consumer.receive(100ms);
    if (!got) {
      REQUIRE((got.status() == Status::timed_out || got.status() == Status::empty));
      continue;
    }
    const std::uint64_t seq = (*got)->seq();
    const std::size_t size = seq == 1 ? 300 : 10;
    CHECK(same(consumer.bytes(), reference(seq, size)));
    if (seq == 1) redelivered = consumer.redelivered();
    seen.push_back(seq);
  }
  std::sort(seen.begin(), seen.end());
  CHECK(seen == std::vector<std::uint64_t>{1, 2});
  CHECK(redelivered);
}
