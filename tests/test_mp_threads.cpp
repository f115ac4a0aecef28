// Thread-based stress variants of the mpsc and broadcast tests: the same checks as the process
// tests, with every endpoint on its own thread of one process, so that ThreadSanitizer can watch
// every access (configure with -DCMAKE_CXX_FLAGS=-fsanitize=thread and run "[threads]").
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "helpers.hpp"
#include "mp_helpers.hpp"

using namespace flatring;
using namespace std::chrono_literals;
using fr_test::unique_name;

TEST_CASE("threads: mpsc with 4 producer threads keeps per-producer order without loss or duplicate", "[mpsc][threads]") {
  const auto name = unique_name("mpsc-thr");
  RemoveGuard guard(name);
  const std::size_t capacity = GENERATE(std::size_t{4096}, std::size_t{1} << 16);
  CAPTURE(capacity);
  auto ring = Ring::create(name, {.capacity = capacity, .mode = Mode::mpsc});
  constexpr std::uint32_t kProducers = 4;
  const std::uint64_t per_producer = fr_test::scaled(20'000);
  std::atomic<int> failures{0};
  MpscReader r(ring);
  std::vector<std::thread> producers;
  for (std::uint32_t p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      MpscWriter w(ring);
      std::byte buf[64];
      for (std::uint64_t seq = 0; seq < per_producer; ++seq) {
        if (w.write({buf, fr_test::make_tagged(buf, p, seq)}, 30s) != Status::ok) {
          failures.fetch_add(1);
          return;
        }
      }
    });
  }
  std::vector<std::uint64_t> next(kProducers, 0);
  bool in_order = true;
  for (std::uint64_t total = 0; total < kProducers * per_producer && in_order; ++total) {
    auto got = r.read(30s);
    if (!got) break;
    const auto tag = fr_test::tagged_of(got->bytes);
    in_order = tag && tag->producer < kProducers && tag->seq == next[tag->producer];
    if (in_order) ++next[tag->producer];
    r.release();
  }
  for (auto& t : producers) t.join();
  CHECK(failures.load() == 0);
  CHECK(in_order);
  for (std::uint32_t p = 0; p < kProducers; ++p) CHECK(next[p] == per_producer);
}

TEST_CASE("threads: broadcast to 3 consumer threads delivers every record to each in order", "[broadcast][threads]") {
  const auto name = unique_name("bc-thr");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096, .mode = Mode::broadcast});
  const std::uint64_t count = fr_test::scaled(30'000);
  constexpr int kConsumers = 3;
  std::atomic<int> joined{0};
  std::atomic<std::uint64_t> delivered{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> consumers;
  for (int i = 0; i < kConsumers; ++i) {
    consumers.emplace_back([&] {
      BroadcastReader rd(ring);
      joined.fetch_add(1);
      for (std::uint64_t seq = 0; seq < count; ++seq) {
        auto got = rd.read(30s);
        const auto tag = got ? fr_test::tagged_of(got->bytes) : std::nullopt;
        if (!tag || tag->seq != seq) {
          failures.fetch_add(1);
          return;
        }
        rd.release();
        delivered.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  while (joined.load() < kConsumers) std::this_thread::yield();
  BroadcastWriter w(ring);
  std::byte buf[64];
  for (std::uint64_t seq = 0; seq < count; ++seq) {
    REQUIRE(w.write({buf, fr_test::make_tagged(buf, 0, seq)}, 30s) == Status::ok);
  }
  for (auto& t : consumers) t.join();
  CHECK(failures.load() == 0);
  CHECK(delivered.load() == kConsumers * count);
}
