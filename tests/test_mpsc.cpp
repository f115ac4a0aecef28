// mpsc rings across real processes: many producers tagged {producer, seq}, one consumer checking
// per-producer order, no loss and no duplicate; typed endpoints; abort; partial commits; a live
// producer's claim is waited for. What every mode shares is in test_modes.cpp.
#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <cstring>
#include <vector>

#include "helpers.hpp"
#include "mp_helpers.hpp"

using namespace flatring;
using namespace std::chrono_literals;
using flatring::test::Msg;
using fr_test::unique_name;

TEST_CASE(
    "mpsc: 4 producer processes x 10^6 tagged records: per-producer order and no loss or duplicate",
    "[mpsc][process]") {
  const auto name = unique_name("mpsc-4");
  RemoveGuard guard(name);
  const std::size_t capacity = GENERATE(std::size_t{4096}, std::size_t{1} << 16);
  // 4 x 10^6 on the larger ring; a quarter of that on the 4 KiB one, which wraps every ~100.
  const std::uint64_t per_producer = fr_test::scaled(capacity == 4096 ? 250'000 : 1'000'000);
  CAPTURE(capacity);
  auto ring = Ring::create(name, {.capacity = capacity, .mode = Mode::mpsc});
  constexpr std::uint32_t kProducers = 4;
  fr_test::SharedWords go(1);

  std::vector<pid_t> producers;
  for (std::uint32_t p = 0; p < kProducers; ++p) {
    producers.push_back(fr_test::spawn([&] {
      Writer<Mode::mpsc> w(Ring::open(name));
      fr_test::wait_for([&] { return go[0].load() == 1; });  // start together: maximum contention
      std::byte buf[64];
      for (std::uint64_t seq = 0; seq < per_producer; ++seq) {
        const std::size_t size = fr_test::make_tagged(buf, p, seq);
        const Status s = w.write({buf, size}, 30s);
        if (s != Status::ok) {
          std::fprintf(stderr, "producer %u write %llu: %s\n", p,
                       static_cast<unsigned long long>(seq), std::string(to_string(s)).c_str());
          return 2;
        }
      }
      return 0;
    }));
  }
  Reader<Mode::mpsc> r(ring);
  go[0].store(1);
  std::vector<std::uint64_t> next(kProducers, 0);
  std::uint64_t total = 0;
  while (total < kProducers * per_producer) {
    auto got = r.read(30s);
    if (!got) FAIL("read after " << total << " records: " << to_string(got.status()));
    const auto tag = fr_test::tagged_of(got->bytes);
    if (!tag || tag->producer >= kProducers) FAIL("malformed record after " << total);
    if (tag->seq != next[tag->producer]) {
      FAIL("producer " << tag->producer << ": expected " << next[tag->producer] << " got "
                       << tag->seq);
    }
    ++next[tag->producer];
    ++total;
    r.release();
  }
  for (pid_t p : producers) CHECK(fr_test::join(p) == 0);
  for (std::uint32_t p = 0; p < kProducers; ++p) CHECK(next[p] == per_producer);
  CHECK(r.read(50ms).status() == Status::timed_out);  // nothing extra
  CHECK(ring.control().retired.value[layout::records_written].load() == kProducers * per_producer);
}

TEST_CASE("mpsc: typed producers in two processes and a typed consumer", "[mpsc][typed][process]") {
  const auto name = unique_name("mpsc-typed");
  RemoveGuard guard(name);
  auto ring = create_ring<Msg>(name, {.capacity = 1 << 16, .mode = Mode::mpsc});
  constexpr std::uint64_t kPer = 3000;
  std::vector<pid_t> producers;
  for (std::uint64_t p = 0; p < 2; ++p) {
    producers.push_back(fr_test::spawn([&] {
      Producer<Msg, Mode::mpsc> prod(open_ring<Msg>(name));
      flatbuffers::FlatBufferBuilder fbb;
      for (std::uint64_t i = 0; i < kPer; ++i) {
        const std::uint64_t seq = p << 32 | i;  // the producer in the high half
        fr_test::build_msg(fbb, seq, i % 300);
        if (prod.send(fbb, 30s) != Status::ok) return 2;
      }
      return 0;
    }));
  }
  Consumer<Msg, Mode::mpsc> c(open_ring<Msg>(name));
  std::uint64_t next[2] = {0, 0};
  for (std::uint64_t n = 0; n < 2 * kPer; ++n) {
    auto msg = c.receive(30s);
    REQUIRE(msg.status() == Status::ok);
    const std::uint64_t seq = (*msg)->seq();
    const std::uint64_t p = seq >> 32;
    REQUIRE(p < 2);
    REQUIRE((seq & 0xFFFFFFFF) == next[p]);
    const auto* v = (*msg)->payload();
    REQUIRE(v != nullptr);
    REQUIRE(
        fr_test::check_pattern({reinterpret_cast<const std::byte*>(v->data()), v->size()}, seq));
    ++next[p];
  }
  for (pid_t p : producers) CHECK(fr_test::join(p) == 0);
}

TEST_CASE("mpsc: an aborted claim is skipped and a short commit keeps the claimed extent",
          "[mpsc]") {
  const auto name = unique_name("mpsc-abort");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096, .mode = Mode::mpsc});
  Writer<Mode::mpsc> a(ring), b(ring);
  Reader<Mode::mpsc> r(ring);
  std::byte buf[64];
  for (int lap = 0; lap < 100; ++lap) {  // many laps: skipped and short records are zeroed too
    CAPTURE(lap);
    auto claim = a.try_reserve(40);
    REQUIRE(claim.has_value());
    REQUIRE(b.try_write({buf, fr_test::make_tagged(buf, 1, 2 * lap)}) == Status::ok);
    a.abort();
    auto shortc = a.try_reserve(56);
    REQUIRE(shortc.has_value());
    const std::size_t used = fr_test::make_tagged(shortc->data(), 0, lap);
    REQUIRE(used <= 56);
    REQUIRE(a.commit(used) == Status::ok);
    REQUIRE(b.try_write({buf, fr_test::make_tagged(buf, 1, 2 * lap + 1)}) == Status::ok);

    const std::uint64_t l = static_cast<std::uint64_t>(lap);
    for (auto [producer, seq] :
         {fr_test::Tag{1, 2 * l}, fr_test::Tag{0, l}, fr_test::Tag{1, 2 * l + 1}}) {
      auto got = r.try_read();
      REQUIRE(got.has_value());
      const auto tag = fr_test::tagged_of(got->bytes);
      REQUIRE(tag.has_value());
      CHECK(tag->producer == producer);
      CHECK(tag->seq == seq);
      r.release();
    }
    CHECK(r.try_read().status() == Status::empty);
  }
  CHECK(a.commit(1) == Status::invalid_state);
}

TEST_CASE("mpsc: recover() on a written frame it cannot measure says corrupt, never ok",
          "[mpsc][hostile]") {
  const auto name = unique_name("mpsc-recover-corrupt");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096, .mode = Mode::mpsc});
  Writer<Mode::mpsc> w(ring);
  std::byte buf[64];
  REQUIRE(w.try_write({buf, fr_test::make_tagged(buf, 1, 0)}) == Status::ok);
  REQUIRE(w.try_write({buf, fr_test::make_tagged(buf, 1, 1)}) == Status::ok);
  Reader<Mode::mpsc> r(ring);
  auto& h = detail::header_at(ring.writable_data(), 0);
  const std::uint64_t extent = h.aux;
  h.aux = 0;  // a data frame over a zeroed extent
  CHECK(r.try_read().status() == Status::corrupt);
  CHECK(r.recover() == Status::corrupt);  // "ok" would say a record is ready: a retry loop spins
  CHECK(r.try_read().status() == Status::corrupt);
  h.aux = extent;  // repaired: recover() now says a record is ready, and it is the first
  CHECK(r.recover() == Status::ok);
  auto got = r.try_read();
  REQUIRE(got.has_value());
  CHECK(fr_test::tagged_of(got->bytes)->seq == 0);
}

TEST_CASE("mpsc: a live producer holding a claim is waited for and never abandoned",
          "[mpsc][process]") {
  const auto name = unique_name("mpsc-live");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096, .mode = Mode::mpsc});
  fr_test::SharedWords shared(2);
  pid_t holder = fr_test::spawn([&] {
    Writer<Mode::mpsc> w(Ring::open(name));
    auto claim = w.try_reserve(16);
    if (!claim) return 2;
    shared[0].store(1);
    fr_test::wait_for([&] { return shared[1].load() == 1; });
    std::byte buf[64];
    std::memcpy(claim->data(), buf, fr_test::make_tagged(buf, 7, 0));
    return w.commit(16) == Status::ok ? 0 : 3;
  });
  fr_test::wait_for([&] { return shared[0].load() == 1; });
  WaitOptions fast;
  fast.liveness_interval = 10ms;
  Reader<Mode::mpsc> r(ring, fast);
  CHECK(r.read(100ms).status() == Status::timed_out);  // the owner is alive: wait, do not abandon
  CHECK(r.recover() == Status::empty);
  shared[1].store(1);
  auto got = r.read(30s);
  REQUIRE(got.has_value());
  CHECK(fr_test::tagged_of(got->bytes)->producer == 7);
  CHECK(fr_test::join(holder) == 0);
}
