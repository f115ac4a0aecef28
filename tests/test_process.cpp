// Black-box tests across real processes (fork): streams, large records, ordering.
#include <catch2/catch.hpp>

#include <chrono>

#include "helpers.hpp"

using namespace flatring;
using namespace std::chrono_literals;
using fr_test::unique_name;
using flatring::test::Msg;

TEST_CASE("two processes stream 10^6 records: no loss, no duplicate, order kept", "[process]") {
  const auto name = unique_name("stream");
  RemoveGuard guard(name);
  const std::uint64_t count = fr_test::scaled(1'000'000);
  const std::size_t capacity = GENERATE(std::size_t{4096}, std::size_t{1} << 16);
  CAPTURE(capacity);
  auto ring = Ring::create(name, {.capacity = capacity});

  pid_t consumer = fr_test::spawn([&] {
    Reader<> r(ring);
    std::uint64_t expect = 0;
    while (expect < count) {
      auto got = r.read(30s);
      if (!got) {
        std::fprintf(stderr, "read failed at %llu: %s\n", static_cast<unsigned long long>(expect),
                     std::string(to_string(got.status())).c_str());
        return 2;
      }
      std::uint64_t seq = 0;
      const auto bytes = got->bytes;
      if (bytes.size() != 8 + (expect % 24)) return 3;
      std::memcpy(&seq, bytes.data(), 8);
      if (seq != expect) {
        std::fprintf(stderr, "expected %llu got %llu\n", static_cast<unsigned long long>(expect),
                     static_cast<unsigned long long>(seq));
        return 4;
      }
      for (std::size_t i = 8; i < bytes.size(); ++i) {
        if (bytes[i] != static_cast<std::byte>(seq + i)) return 5;
      }
      r.release();
      ++expect;
    }
    // Nothing extra: a duplicate would show up here.
    return r.read(50ms).status() == Status::timed_out ? 0 : 6;
  });

  Writer<> w(ring);
  std::byte buf[64];
  for (std::uint64_t seq = 0; seq < count; ++seq) {
    const std::size_t size = 8 + (seq % 24);
    std::memcpy(buf, &seq, 8);
    for (std::size_t i = 8; i < size; ++i) buf[i] = static_cast<std::byte>(seq + i);
    Status s = w.write({buf, size}, 30s);
    if (s != Status::ok) {
      FAIL("write failed at " << seq << ": " << to_string(s));
    }
  }
  CHECK(fr_test::join(consumer) == 0);
  const auto& c = ring.control();
  CHECK(c.peers[c.owners.producer.load() - 1].counter[layout::records_written].load() == count);
  CHECK(c.retired.value[layout::records_read].load() == count);  // the consumer has detached
}

TEST_CASE("records far above the 64 KiB pipe capacity go through intact", "[process]") {
  const std::size_t size =
      GENERATE(std::size_t{65537}, std::size_t{1} << 20, std::size_t{64} << 20);
  CAPTURE(size);
  const auto name = unique_name("big");
  RemoveGuard guard(name);
  const std::uint64_t capacity = size > (1u << 20) ? (256ull << 20) : (4ull << 20);
  auto ring = create_ring<Msg>(name, {.capacity = capacity, .max_record_size = size + 4096});
  constexpr int kRecords = 3;

  pid_t consumer = fr_test::spawn([&] {
    Consumer<Msg> c(open_ring<Msg>(name));
    for (int i = 0; i < kRecords; ++i) {
      auto msg = c.receive(60s);
      if (!msg) return 2;
      if ((*msg)->seq() != static_cast<std::uint64_t>(i)) return 3;
      const auto* p = (*msg)->payload();
      if (p == nullptr || p->size() != size) return 4;
      if (!fr_test::check_pattern({reinterpret_cast<const std::byte*>(p->data()), p->size()},
                                  static_cast<std::uint64_t>(i))) {
        return 5;
      }
    }
    return 0;
  });
  Producer<Msg> producer(ring);
  flatbuffers::FlatBufferBuilder fbb(size + 1024);
  for (int i = 0; i < kRecords; ++i) {
    fr_test::build_msg(fbb, static_cast<std::uint64_t>(i), size);
    REQUIRE(producer.send(fbb, 60s) == Status::ok);
  }
  CHECK(fr_test::join(consumer) == 0);
}

TEST_CASE("typed stream across processes with a verification failure in the middle", "[process]") {
  const auto name = unique_name("typedstream");
  RemoveGuard guard(name);
  auto ring = create_ring<Msg>(name, {.capacity = 1 << 16});
  const std::uint64_t count = fr_test::scaled(100'000);
  pid_t consumer = fr_test::spawn([&] {
    Consumer<Msg> c(ring);
    std::uint64_t expect = 0;
    int failures = 0;
    while (expect < count) {
      auto msg = c.receive(30s);
      if (msg.status() == Status::verify_failed) {
        ++failures;
        continue;
      }
      if (!msg || (*msg)->seq() != expect) return 2;
      ++expect;
    }
    return failures == 1 ? 0 : 3;
  });
  Producer<Msg> producer(ring);
  flatbuffers::FlatBufferBuilder fbb;
  for (std::uint64_t seq = 0; seq < count; ++seq) {
    if (seq == count / 2) {
      std::byte junk[40]{};
      REQUIRE(producer.raw().write(junk, 30s) == Status::ok);
    }
    fr_test::build_msg(fbb, seq, seq % 200);
    REQUIRE(producer.send(fbb, 30s) == Status::ok);
  }
  CHECK(fr_test::join(consumer) == 0);
}
