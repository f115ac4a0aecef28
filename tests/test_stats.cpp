// The statistics in the segment, checked counter by counter against known traffic.
//
// Every test compares all kCounterCount counters, not only the ones it provokes, so a counter that
// moves when it should not fails as surely as one that does not move.
#include <catch2/catch.hpp>

#include <array>
#include <chrono>
#include <csignal>
#include <numeric>
#include <unistd.h>
#include <vector>

#include "helpers.hpp"

using namespace flatring;
using namespace std::chrono_literals;
using fr_test::unique_name;
using flatring::test::Msg;

namespace {

using Counts = std::array<std::uint64_t, layout::kCounterCount>;

template <class Atomics>
Counts load(const Atomics& values) {
  Counts out{};
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = values[i].load();
  return out;
}

Counts slot_counts(const Ring& ring, std::uint32_t owner_word) {
  REQUIRE(owner_word >= 1);
  REQUIRE(owner_word <= layout::kMaxPeers);
  return load(ring.control().peers[owner_word - 1].counter);
}
Counts producer_counts(const Ring& ring) {
  return slot_counts(ring, ring.control().owners.producer.load());
}
Counts consumer_counts(const Ring& ring) {
  return slot_counts(ring, ring.control().owners.consumer.load());
}
Counts retired_counts(const Ring& ring) { return load(ring.control().retired.value); }

Counts counts(std::initializer_list<std::pair<layout::Counter, std::uint64_t>> set) {
  Counts out{};
  for (auto [c, v] : set) out[c] = v;
  return out;
}

std::uint32_t attached_slots(const Ring& ring) {
  std::uint32_t n = 0;
  for (const auto& s : ring.control().peers) n += s.pid.load() != 0 ? 1 : 0;
  return n;
}

// Never spins, so every blocking call that finds nothing goes straight to the futex; peers are
// checked only after a minute, so no liveness wake-up adds a second sleep.
constexpr WaitOptions kNoSpin{.spin = 0ns, .liveness_interval = 60s};

}  // namespace

TEST_CASE("each side counts exactly its own records, bytes, rejects and waits", "[stats]") {
  const auto name = unique_name("stats");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096});
  const std::vector<std::size_t> sizes{0, 1, 15, 16, 17, 100, 1000};
  const std::uint64_t bytes = std::accumulate(sizes.begin(), sizes.end(), std::uint64_t{0});
  std::vector<std::byte> buf(ring.info().max_record_size + 1);
  Counts producer{};
  Counts consumer{};
  {
    Writer<> w(ring, kNoSpin);
    Reader<> r(ring, kNoSpin);
    CHECK(producer_counts(ring) == Counts{});
    CHECK(consumer_counts(ring) == Counts{});

    for (std::size_t n : sizes) REQUIRE(w.try_write({buf.data(), n}) == Status::ok);
    CHECK(w.try_write(buf) == Status::too_large);
    CHECK(w.try_reserve(buf.size()).status() == Status::too_large);
    for (std::size_t n : sizes) {
      auto got = r.try_read();
      REQUIRE(got);
      CHECK(got->bytes.size() == n);
      r.release();
    }
    CHECK(r.read(0ns).status() == Status::timed_out);  // no time left: an empty wait, no sleep
    CHECK(r.read(5ms).status() == Status::timed_out);  // one futex sleep that times out

    std::uint64_t fill = 0;
    while (w.try_write({buf.data(), 100}) == Status::ok) ++fill;
    REQUIRE(fill > 0);
    CHECK(w.write({buf.data(), 100}, 0ns) == Status::timed_out);

    producer = counts({{layout::records_written, sizes.size() + fill},
                       {layout::bytes_written, bytes + 100 * fill},
                       {layout::too_large, 2},
                       {layout::full_waits, 1}});
    consumer = counts({{layout::records_read, sizes.size()},
                       {layout::bytes_read, bytes},
                       {layout::empty_waits, 2},
                       {layout::futex_sleeps, 1}});
    CHECK(producer_counts(ring) == producer);
    CHECK(consumer_counts(ring) == consumer);
    CHECK(retired_counts(ring) == Counts{});
  }
  // Detached: both slots are free and their counts are in the retired totals, once.
  CHECK(attached_slots(ring) == 0);
  Counts total{};
  for (std::size_t i = 0; i < total.size(); ++i) total[i] = producer[i] + consumer[i];
  CHECK(retired_counts(ring) == total);
  CHECK(ring.reap_dead_peers() == 0);
  CHECK(retired_counts(ring) == total);
}

TEST_CASE("a typed consumer counts verification failures among the records it read", "[stats]") {
  const auto name = unique_name("stats-verify");
  RemoveGuard guard(name);
  auto ring = create_ring<Msg>(name, {.capacity = 1 << 16});
  Producer<Msg> producer(ring);
  Consumer<Msg> consumer(ring);
  flatbuffers::FlatBufferBuilder fbb;
  std::uint64_t bytes = 0;
  std::vector<std::byte> garbage(64);
  fr_test::fill_pattern(garbage, 3);
  for (std::uint64_t seq = 0; seq < 3; ++seq) {
    fr_test::build_msg(fbb, seq, 10 * seq);
    REQUIRE(producer.try_send(fbb) == Status::ok);
    bytes += fbb.GetSize();
    REQUIRE(producer.raw().try_write(garbage) == Status::ok);
    bytes += garbage.size();
  }
  for (std::uint64_t seq = 0; seq < 3; ++seq) {
    auto msg = consumer.try_receive();
    REQUIRE(msg);
    CHECK((*msg)->seq() == seq);
    CHECK(consumer.try_receive().status() == Status::verify_failed);
  }
  CHECK(consumer.try_receive().status() == Status::empty);
  CHECK(producer_counts(ring) ==
        counts({{layout::records_written, 6}, {layout::bytes_written, bytes}}));
  CHECK(consumer_counts(ring) == counts({{layout::records_read, 6},
                                         {layout::bytes_read, bytes},
                                         {layout::verify_failures, 3}}));
}

TEST_CASE("a wake-up across processes is counted once by each side", "[stats][process]") {
  const auto name = unique_name("stats-wake");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096});
  Writer<> w(ring, kNoSpin);
  pid_t child = fr_test::spawn([&] {
    Reader<> r(Ring::open(name), kNoSpin);
    auto got = r.read(60s);
    if (!got || got->bytes.size() != 24) return 2;
    r.release();
    return 0;
  });
  // The consumer has counted a sleep (it checked the ring after announcing itself as a sleeper,
  // found nothing, and is about to sleep or asleep): the next commit must wake it. Waiting only
  // for `waiters` raced: a commit between the announcement and the re-check needs no sleep.
  auto consumer_sleeps = [&] {
    std::uint64_t n = 0;
    for (const auto& s : ring.control().peers) {
      if (s.role.load() == static_cast<std::uint32_t>(layout::Role::consumer)) {
        n += s.counter[layout::futex_sleeps].load();
      }
    }
    return n;
  };
  while (consumer_sleeps() == 0) ::usleep(1000);
  std::byte record[24]{};
  REQUIRE(w.try_write(record) == Status::ok);
  REQUIRE(fr_test::join(child) == 0);
  CHECK(producer_counts(ring) ==
        counts(
            {{layout::records_written, 1}, {layout::bytes_written, 24}, {layout::futex_wakes, 1}}));
  // The child detached cleanly, so its counts are retired.
  CHECK(retired_counts(ring) == counts({{layout::records_read, 1},
                                        {layout::bytes_read, 24},
                                        {layout::empty_waits, 1},
                                        {layout::futex_sleeps, 1}}));
}

TEST_CASE("the counts of a SIGKILLed peer are folded into the retired totals by a reap",
          "[stats][process]") {
  const auto name = unique_name("stats-kill");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096});
  pid_t child = fr_test::spawn([&] {
    Writer<> w(Ring::open(name));
    std::byte record[100]{};
    for (int i = 0; i < 5; ++i) {
      if (w.try_write(record) != Status::ok) return 2;
    }
    std::vector<std::byte> big(w.max_record_size() + 1);
    if (w.try_write(big) != Status::too_large) return 3;
    ::raise(SIGKILL);
    return 0;
  });
  REQUIRE(fr_test::join(child) == 128 + SIGKILL);
  const Counts dead =
      counts({{layout::records_written, 5}, {layout::bytes_written, 500}, {layout::too_large, 1}});
  CHECK(census(ring, layout::Role::producer).dead == 1);
  CHECK(producer_counts(ring) == dead);  // still in the dead process's slot
  CHECK(retired_counts(ring) == Counts{});

  CHECK(ring.reap_dead_peers() == 1);
  CHECK(census(ring, layout::Role::producer).dead == 0);
  CHECK(attached_slots(ring) == 0);
  CHECK(retired_counts(ring) == dead);
  CHECK(ring.reap_dead_peers() == 0);  // reaped once, counted once
  CHECK(retired_counts(ring) == dead);
}

namespace {

// Registers a sleeper on `line` as sleep_on (src/block.hpp) does, without sleeping: the waker
// cannot tell it from a consumer that is about to sleep.
void register_sleeper(layout::WaitLine& line) {
  line.sleepers.fetch_add(1);
  line.futex.fetch_add(1);
  line.waiters.fetch_add(1);
}
void unregister_sleeper(layout::WaitLine& line) {
  line.waiters.fetch_sub(1);
  line.sleepers.fetch_sub(1);
}

}  // namespace

TEST_CASE("a waker wakes a registered sleeper once and not once per commit", "[stats][wait]") {
  const auto name = unique_name("stats-mark");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 1 << 16});
  Writer<> w(ring, kNoSpin);
  Reader<> r(ring, kNoSpin);  // attached, never reading: the sleepers are registered by hand
  auto& line = ring.control().data;
  std::byte record[24]{};
  auto wakes = [&] { return producer_counts(ring)[layout::futex_wakes]; };

  register_sleeper(line);
  for (int i = 0; i < 50; ++i) REQUIRE(w.try_write(record) == Status::ok);
  // The first commit wakes it; it is still counted in `waiters` (woken, not yet gone), but the
  // futex word still holds that wake's value, so nobody new registered: no more futex(2).
  CHECK(wakes() == 1);
  unregister_sleeper(line);
  for (int i = 0; i < 10; ++i) REQUIRE(w.try_write(record) == Status::ok);
  CHECK(wakes() == 1);  // nobody registered

  // A new registration changes the word: the next commit wakes again, once.
  register_sleeper(line);
  for (int i = 0; i < 10; ++i) REQUIRE(w.try_write(record) == Status::ok);
  CHECK(wakes() == 2);
  // A second one while the first is still registered (an observer, say): spsc wakes every
  // sleeper, so one wake covers both.
  register_sleeper(line);
  for (int i = 0; i < 5; ++i) REQUIRE(w.try_write(record) == Status::ok);
  CHECK(wakes() == 3);
  unregister_sleeper(line);
  unregister_sleeper(line);
}

TEST_CASE("a one-consumer wake does not stand for several sleepers", "[stats][wait]") {
  const auto name = unique_name("stats-mark-mpmc");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 1 << 16, .mode = Mode::mpmc});
  Writer<Mode::mpmc> w(ring, kNoSpin);
  Reader<Mode::mpmc> r(ring, kNoSpin);
  auto& line = ring.control().data;
  std::byte record[24]{};
  auto wakes = [&] {  // mpmc producers have no owner word: add up the producer slots
    std::uint64_t n = 0;
    for (const auto& p : ring.control().peers) {
      if (p.role.load() == static_cast<std::uint32_t>(layout::Role::producer)) {
        n += p.counter[layout::futex_wakes].load();
      }
    }
    return n;
  };
  // mpmc wakes one consumer per commit: with two registered, a wake reaches one, so every commit
  // wakes (as before the mark), until only one is left.
  register_sleeper(line);
  register_sleeper(line);
  for (int i = 0; i < 5; ++i) REQUIRE(w.try_write(record) == Status::ok);
  CHECK(wakes() == 5);
  unregister_sleeper(line);
  for (int i = 0; i < 5; ++i) REQUIRE(w.try_write(record) == Status::ok);
  CHECK(wakes() == 6);  // one more wake, which covers the one left
  unregister_sleeper(line);
}
