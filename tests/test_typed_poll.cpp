// The batched typed receive (Consumer::poll, DynamicConsumer::poll) in every mode: records from a
// producer process with sequence checks, garbage records inside batches (reported, skipped, the
// rest of the batch delivered), batch boundaries at the ring's wrap, one publication per batch.
#include <catch2/catch.hpp>

#include <array>
#include <chrono>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "helpers.hpp"
#include "mode_types.hpp"

using namespace flatring;
using namespace std::chrono_literals;
using flatring::test::Msg;
using fr_test::unique_name;

namespace {

// Every kGarbageEvery-th record the producer sends raw bytes that are no Msg.
constexpr std::uint64_t kGarbageEvery = 997;
const std::array<std::byte, 40> kGarbage{std::byte{0xFF}, std::byte{0xFF}, std::byte{0x7F}};

// Sizes vary so that records of every length end at every offset of the ring and batches cross
// the wrap.
std::size_t payload_of(std::uint64_t seq) { return (seq * 37) % 300; }

template <Mode M>
int produce(const std::string& name, std::uint64_t count) {
  Producer<Msg, M> producer(open_ring<Msg>(name));
  flatbuffers::FlatBufferBuilder fbb;
  for (std::uint64_t seq = 0; seq < count; ++seq) {
    if (seq % kGarbageEvery == kGarbageEvery - 1) {
      if (producer.raw().write(kGarbage, 30s) != Status::ok) return 2;
      continue;
    }
    fr_test::build_msg(fbb, seq, payload_of(seq));
    if (producer.send(fbb, 30s) != Status::ok) return 3;
  }
  return 0;
}

}  // namespace

TEMPLATE_TEST_CASE("Consumer::poll delivers verified batches from a producer process, skipping "
                   "garbage inside a batch, across the wrap",
                   "[typed][poll][process]", FR_ALL_MODES) {
  constexpr Mode M = TestType::value;
  const auto name = unique_name("typed-poll");
  RemoveGuard guard(name);
  // 16 KiB: about a hundred records per lap, so batches of 64 cross the wrap again and again.
  Ring ring = create_ring<Msg>(name, {.capacity = 1 << 14, .mode = M});
  const bool in_place = GENERATE(false, true);
  CAPTURE(in_place);
  Consumer<Msg, M> consumer(ring, {.in_place = in_place});  // a broadcast consumer joins first
  const std::uint64_t count = fr_test::scaled(1'000'000);
  const pid_t child = fr_test::spawn([&] { return produce<M>(name, count); });

  const std::uint64_t garbage = (count + 1) / kGarbageEvery;
  std::uint64_t next = 0, delivered = 0, rejected = 0, wrong = 0;
  const auto until = std::chrono::steady_clock::now() + 120s;  // a hang guard only
  while (delivered + rejected < count && std::chrono::steady_clock::now() < until) {
    const PollCount n = consumer.poll(
        [&](const Msg& m) {
          if (next % kGarbageEvery == kGarbageEvery - 1) ++next;  // a garbage slot
          const auto* p = m.payload();
          const bool ok =
              m.seq() == next && p != nullptr && p->size() == payload_of(next) &&
              fr_test::check_pattern(std::as_bytes(std::span(p->data(), p->size())), next);
          wrong += ok ? 0 : 1;
          ++next;
        },
        64);
    delivered += n.delivered;
    rejected += n.rejected;
    if (n.delivered + n.rejected == 0) {
      REQUIRE(n.status == Status::empty);
      std::this_thread::yield();
    }
  }
  CHECK(fr_test::join(child) == 0);
  CHECK(wrong == 0);
  CHECK(delivered == count - garbage);
  CHECK(rejected == garbage);
  CHECK(consumer.raw().attachment().slot().counter[layout::verify_failures].load() == rejected);
}

TEMPLATE_TEST_CASE("Consumer::poll publishes the read position once per batch and delivers the "
                   "rest of a batch after a bad record",
                   "[typed][poll]", FR_ALL_MODES) {
  constexpr Mode M = TestType::value;
  const auto name = unique_name("typed-poll-batch");
  RemoveGuard guard(name);
  Ring ring = create_ring<Msg>(name, {.capacity = 1 << 14, .mode = M});
  Consumer<Msg, M> consumer(ring);
  Producer<Msg, M> producer(ring);
  flatbuffers::FlatBufferBuilder fbb;
  for (std::uint64_t seq = 0; seq < 10; ++seq) {
    if (seq == 4) {
      REQUIRE(producer.raw().try_write(kGarbage) == Status::ok);
      continue;
    }
    fr_test::build_msg(fbb, seq, 100);
    REQUIRE(producer.try_send(fbb) == Status::ok);
  }
  auto position = [&] {
    if constexpr (M == Mode::broadcast) {
      return consumer.raw().attachment().slot().cursor.load();
    } else {
      return ring.control().consumer.head.load();
    }
  };
  const std::uint64_t before = position();
  std::vector<std::uint64_t> seen;
  std::vector<std::uint64_t> positions_during;
  const PollCount n = consumer.poll(
      [&](const Msg& m) {
        seen.push_back(m.seq());
        positions_during.push_back(position());
      },
      7);
  CHECK(n.delivered == 6);  // seven records taken: 0..3, the garbage, 5 and 6
  CHECK(n.rejected == 1);
  CHECK(n.status == Status::ok);
  CHECK(seen == std::vector<std::uint64_t>{0, 1, 2, 3, 5, 6});
  for (std::uint64_t p : positions_during) CHECK(p == before);  // nothing published mid-batch
  CHECK(position() > before);                                   // published at the end
  const PollCount rest = consumer.poll([&](const Msg& m) { seen.push_back(m.seq()); }, 64);
  CHECK(rest.delivered == 3);
  CHECK(rest.status == Status::empty);
  CHECK(seen.back() == 9);
}

TEST_CASE("DynamicConsumer::poll verifies batches against the ring's schema", "[typed][poll]") {
  const auto name = unique_name("dyn-poll");
  RemoveGuard guard(name);
  Ring ring = create_ring<Msg>(name, {.capacity = 1 << 14});
  Producer<Msg> producer(ring);
  auto dc = DynamicConsumer<>::with_ring_schema(ring);
  flatbuffers::FlatBufferBuilder fbb;
  for (std::uint64_t seq = 0; seq < 5; ++seq) {
    fr_test::build_msg(fbb, seq, 10);
    REQUIRE(producer.try_send(fbb) == Status::ok);
  }
  REQUIRE(producer.raw().try_write(kGarbage) == Status::ok);
  std::size_t bytes = 0;
  const PollCount n = dc.poll([&](std::span<const std::byte> b) { bytes += b.size(); }, 10);
  CHECK(n.delivered == 5);
  CHECK(n.rejected == 1);
  CHECK(n.status == Status::empty);
  CHECK(bytes > 0);
}
