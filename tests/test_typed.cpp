// The FlatBuffers layer: verified records only, verification failures skipped, schemas checked.
#include <catch2/catch.hpp>

#include "helpers.hpp"

using namespace flatring;
using namespace std::chrono_literals;
using fr_test::error_code;
using fr_test::unique_name;
using flatring::test::Msg;
using flatring::test::Other;

namespace {

struct Fixture {
  std::string name = unique_name("typed");
  RemoveGuard guard{name};
  Ring ring = create_ring<Msg>(name, {.capacity = 1 << 16});
};

}  // namespace

TEST_CASE("typed records round-trip, verified, in both consumer modes", "[typed]") {
  Fixture f;
  Producer<Msg> producer(f.ring);
  const bool in_place = GENERATE(false, true);
  CAPTURE(in_place);
  Consumer<Msg> consumer(open_ring<Msg>(f.name), {.in_place = in_place});
  flatbuffers::FlatBufferBuilder fbb;
  for (std::uint64_t seq = 0; seq < 50; ++seq) {
    fr_test::build_msg(fbb, seq, seq * 37);
    REQUIRE(producer.try_send(fbb) == Status::ok);
  }
  for (std::uint64_t seq = 0; seq < 50; ++seq) {
    auto msg = consumer.try_receive();
    REQUIRE(msg);
    CHECK((*msg)->seq() == seq);
    REQUIRE((*msg)->payload() != nullptr);
    auto* p = (*msg)->payload();
    CHECK(fr_test::check_pattern({reinterpret_cast<const std::byte*>(p->data()), p->size()}, seq));
    const bool points_into_ring =
        consumer.bytes().data() >= consumer.raw().ring().data() &&
        consumer.bytes().data() < consumer.raw().ring().data() + f.ring.info().capacity;
    CHECK(points_into_ring == in_place);
  }
  CHECK(consumer.try_receive().status() == Status::empty);
}

TEST_CASE("a record that fails verification is reported and skipped, and the next one arrives",
          "[typed]") {
  Fixture f;
  Producer<Msg> producer(f.ring);
  Consumer<Msg> consumer(f.ring);
  flatbuffers::FlatBufferBuilder fbb;
  fr_test::build_msg(fbb, 1, 100);
  REQUIRE(producer.try_send(fbb) == Status::ok);

  // Garbage through the raw writer into the typed ring: random bytes, a truncated buffer, a
  // buffer with the right identifier but a wild root offset, and an empty record.
  std::vector<std::byte> garbage(300);
  fr_test::fill_pattern(garbage, 99);
  REQUIRE(producer.raw().try_write(garbage) == Status::ok);
  REQUIRE(producer.raw().try_write(fr_test::detail_bytes(fbb).first(fbb.GetSize() / 2)) ==
          Status::ok);
  std::vector<std::byte> wild(fr_test::detail_bytes(fbb).begin(), fr_test::detail_bytes(fbb).end());
  std::uint32_t huge = 0x7ffffff0;
  std::memcpy(wild.data(), &huge, 4);
  REQUIRE(producer.raw().try_write(wild) == Status::ok);
  REQUIRE(producer.raw().try_write({}) == Status::ok);

  fr_test::build_msg(fbb, 2, 10);
  REQUIRE(producer.try_send(fbb) == Status::ok);

  auto first = consumer.try_receive();
  REQUIRE(first);
  CHECK((*first)->seq() == 1);
  for (int i = 0; i < 4; ++i) CHECK(consumer.try_receive().status() == Status::verify_failed);
  auto next = consumer.receive(1s);
  REQUIRE(next);
  CHECK((*next)->seq() == 2);
  const auto& c = f.ring.control().peers[f.ring.control().owners.consumer.load() - 1].counter;
  CHECK(c[layout::verify_failures].load() == 4);
}

TEST_CASE("a record of another schema fails verification by its file identifier", "[typed]") {
  Fixture f;
  Producer<Msg> producer(f.ring);
  Consumer<Msg> consumer(f.ring);
  flatbuffers::FlatBufferBuilder fbb;
  fbb.Finish(flatring::test::CreateOther(fbb, 5), flatring::test::OtherIdentifier());
  CHECK(producer.try_send(fbb) == Status::invalid_state);  // the producer checks the identifier
  REQUIRE(producer.raw().try_write(fr_test::detail_bytes(fbb)) == Status::ok);
  CHECK(consumer.try_receive().status() == Status::verify_failed);
}

TEST_CASE("depth and table limits are enforced", "[typed]") {
  Fixture f;
  Producer<Msg> producer(f.ring);
  Consumer<Msg> consumer(f.ring, {.max_tables = 0});
  flatbuffers::FlatBufferBuilder fbb;
  fr_test::build_msg(fbb, 1, 10);
  REQUIRE(producer.try_send(fbb) == Status::ok);
  CHECK(consumer.try_receive().status() == Status::verify_failed);
}

TEST_CASE("typed endpoints refuse a ring of another schema", "[typed]") {
  Fixture f;
  CHECK(error_code([&] { Consumer<Other> c(f.ring); }) == Errc::wrong_schema);
  CHECK(error_code([&] { Producer<Other> p(f.ring); }) == Errc::wrong_schema);
  CHECK(error_code([&] { (void)open_ring<Other>(f.name); }) == Errc::wrong_schema);
  auto raw_name = unique_name("raw");
  RemoveGuard g(raw_name);
  auto raw = Ring::create(raw_name, {.capacity = 4096});
  CHECK(error_code([&] { Consumer<Msg> c(raw); }) == Errc::wrong_schema);
  CHECK(error_code([&] { Producer<Msg> p(raw); }) == Errc::wrong_schema);
  CHECK(schema_of<Msg>().identifier() == "FRTM");
  CHECK(schema_of<Msg>().hash == fnv1a64("flatring.test.Msg"));
}
