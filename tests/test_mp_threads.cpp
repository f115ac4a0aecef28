// Thread-based stress variants of the mpsc, mpmc and broadcast tests: the same checks as the
// process tests, with every endpoint on its own thread of one process, so that ThreadSanitizer can
// watch every access (configure with -DCMAKE_CXX_FLAGS=-fsanitize=thread and run "[threads]").
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "helpers.hpp"
#include "mp_helpers.hpp"

using namespace flatring;
using namespace std::chrono_literals;
using fr_test::unique_name;

TEST_CASE(
    "threads: mpsc with 4 producer threads keeps per-producer order without loss or duplicate",
    "[mpsc][threads]") {
  const auto name = unique_name("mpsc-thr");
  RemoveGuard guard(name);
  const std::size_t capacity = GENERATE(std::size_t{4096}, std::size_t{1} << 16);
  CAPTURE(capacity);
  auto ring = Ring::create(name, {.capacity = capacity, .mode = Mode::mpsc});
  constexpr std::uint32_t kProducers = 4;
  const std::uint64_t per_producer = fr_test::scaled(20'000);
  std::atomic<int> failures{0};
  Reader<Mode::mpsc> r(ring);
  std::vector<std::thread> producers;
  for (std::uint32_t p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      Writer<Mode::mpsc> w(ring);
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

TEST_CASE("threads: broadcast to 3 consumer threads delivers every record to each in order",
          "[broadcast][threads]") {
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
      Reader<Mode::broadcast> rd(ring);
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
  Writer<Mode::broadcast> w(ring);
  std::byte buf[64];
  for (std::uint64_t seq = 0; seq < count; ++seq) {
    REQUIRE(w.write({buf, fr_test::make_tagged(buf, 0, seq)}, 30s) == Status::ok);
  }
  for (auto& t : consumers) t.join();
  CHECK(failures.load() == 0);
  CHECK(delivered.load() == kConsumers * count);
}

// ---------------------------------------------------------------- mpmc

namespace {

// One bit per record {producer, seq}, shared by the consumer threads: a record delivered twice
// finds its bit already set.
class DeliveredBits {
 public:
  DeliveredBits(std::uint32_t producers, std::uint64_t per_producer)
      : words_per_((per_producer + 63) / 64), bits_(producers * words_per_) {}
  // False if this record was delivered before.
  bool mark(const fr_test::Tag& t) noexcept {
    const std::uint64_t bit = std::uint64_t{1} << (t.seq % 64);
    return (bits_[t.producer * words_per_ + t.seq / 64].fetch_or(bit) & bit) == 0;
  }
  [[nodiscard]] std::uint64_t count() const noexcept {
    std::uint64_t n = 0;
    for (const auto& w : bits_) n += static_cast<std::uint64_t>(__builtin_popcountll(w.load()));
    return n;
  }

 private:
  std::uint64_t words_per_;
  std::vector<std::atomic<std::uint64_t>> bits_;
};

// What one consumer thread checks of each record it takes: well-formed, from a known producer,
// later than the last record of that producer this thread took, not delivered before.
class ConsumerLedger {
 public:
  ConsumerLedger(DeliveredBits& seen, std::uint32_t producers, std::uint64_t per_producer)
      : seen_(seen), producers_(producers), per_producer_(per_producer), next_(producers, 0) {}
  bool take(std::span<const std::byte> bytes) {
    const auto tag = fr_test::tagged_of(bytes);
    if (!tag || tag->producer >= producers_ || tag->seq >= per_producer_ ||
        tag->seq < next_[tag->producer]) {
      return false;
    }
    next_[tag->producer] = tag->seq + 1;
    return seen_.mark(*tag);
  }

 private:
  DeliveredBits& seen_;
  std::uint32_t producers_;
  std::uint64_t per_producer_;
  std::vector<std::uint64_t> next_;
};

// One mpmc run: 3 producer threads writing {p, seq} for seq < per_producer, consumer threads
// given by the test, and the checks every run ends with.
struct MpmcRun {
  static constexpr std::uint32_t kProducers = 3;
  MpmcRun(const std::string& name, std::size_t capacity, std::uint64_t per)
      : ring(Ring::create(name, {.capacity = capacity, .mode = Mode::mpmc})),
        per_producer(per),
        total(kProducers * per),
        seen(kProducers, per) {}

  [[nodiscard]] ConsumerLedger ledger() { return ConsumerLedger(seen, kProducers, per_producer); }
  [[nodiscard]] bool more() const { return delivered.load() < total; }
  void fail() { failures.fetch_add(1); }

  // Starts the producers together, waits for everyone, checks the outcome.
  void finish(std::vector<std::thread>& consumers) {
    std::vector<std::thread> producers;
    std::atomic<bool> go{false};
    for (std::uint32_t p = 0; p < kProducers; ++p) {
      producers.emplace_back([this, &go, p] {
        Writer<Mode::mpmc> w(ring);
        while (!go.load()) std::this_thread::yield();
        std::byte buf[64];
        for (std::uint64_t seq = 0; seq < per_producer; ++seq) {
          if (w.write({buf, fr_test::make_tagged(buf, p, seq)}, 30s) != Status::ok) {
            fail();
            return;
          }
        }
      });
    }
    go.store(true);
    for (auto& t : producers) t.join();
    // A failed consumer would leave the others waiting for records that never come.
    if (failures.load() != 0) delivered.store(total);
    for (auto& t : consumers) t.join();
    CHECK(failures.load() == 0);
    CHECK(delivered.load() == total);
    CHECK(seen.count() == total);
    // Everything was released and freed.
    CHECK(ring.control().consumer.head.load() == ring.control().producer.tail.load());
    CHECK(ring.control().consumer.next.load() == ring.control().producer.tail.load());
  }

  Ring ring;
  std::uint64_t per_producer;
  std::uint64_t total;
  DeliveredBits seen;
  std::atomic<std::uint64_t> delivered{0};
  std::atomic<int> failures{0};
};

}  // namespace

TEST_CASE("threads: mpmc with 3 producer threads and 3 consumer threads delivers each record "
          "exactly once",
          "[mpmc][threads]") {
  const auto name = unique_name("mpmc-thr");
  RemoveGuard guard(name);
  const std::size_t capacity = GENERATE(std::size_t{4096}, std::size_t{1} << 16);
  CAPTURE(capacity);
  MpmcRun run(name, capacity, fr_test::scaled(20'000));
  std::vector<std::thread> consumers;
  for (int c = 0; c < 3; ++c) {
    consumers.emplace_back([&run, c] {
      Reader<Mode::mpmc> r(run.ring);
      ConsumerLedger ledger = run.ledger();
      while (run.more()) {
        if (c == 0) {  // one consumer polls in batches, the others read one at a time
          bool ok = true;
          const std::size_t n =
              r.poll([&](std::span<const std::byte> b) { ok = ledger.take(b) && ok; }, 8);
          run.delivered.fetch_add(n);
          if (!ok || (n == 0 && r.last_status() != Status::empty)) return run.fail();
          if (n == 0) std::this_thread::yield();
          continue;
        }
        auto got = r.read(20ms);
        // peer_dead: the producers finished and left while another consumer holds the last records.
        if (got.status() == Status::timed_out || got.status() == Status::peer_dead) continue;
        if (!got || !ledger.take(got->bytes)) return run.fail();
        r.release();
        run.delivered.fetch_add(1);
      }
    });
  }
  run.finish(consumers);
}

TEST_CASE("threads: mpmc consumer threads holding several records each release them out of order",
          "[mpmc][threads]") {
  const auto name = unique_name("mpmc-thr-ooo");
  RemoveGuard guard(name);
  const std::size_t capacity = GENERATE(std::size_t{4096}, std::size_t{1} << 14);
  CAPTURE(capacity);
  MpmcRun run(name, capacity, fr_test::scaled(10'000));
  constexpr std::size_t kHeld = 3;  // MpmcReaders per consumer thread, each holding one record
  std::vector<std::thread> consumers;
  for (std::uint64_t c = 0; c < 3; ++c) {
    consumers.emplace_back([&run, c] {
      std::vector<std::unique_ptr<Reader<Mode::mpmc>>> readers;
      for (std::size_t i = 0; i < kHeld; ++i)
        readers.push_back(std::make_unique<Reader<Mode::mpmc>>(run.ring));
      // One ledger per thread: its readers claim one after another, so positions still increase.
      ConsumerLedger ledger = run.ledger();
      std::vector<bool> holding(kHeld, false);
      std::uint64_t round = c;
      while (run.more()) {
        std::size_t held = 0;
        bool empty = false;
        for (std::size_t i = 0; i < kHeld; ++i) {
          if (!holding[i] && !empty) {
            auto got = readers[i]->try_read();
            empty = got.status() == Status::empty;
            if (empty) continue;
            if (!got || !ledger.take(got->bytes)) return run.fail();
            holding[i] = true;
            run.delivered.fetch_add(1);
          }
          if (holding[i]) ++held;
        }
        if (held == 0) {
          std::this_thread::yield();
          continue;
        }
        // Release one or two of the held records, starting at a rotating reader: the oldest is
        // often kept while newer ones go, so records finish out of order and the head waits.
        ++round;
        std::size_t released = 0;
        for (std::size_t k = 0; k < kHeld && released < 1 + round % 2; ++k) {
          const std::size_t i = (round + k) % kHeld;
          if (!holding[i]) continue;
          readers[i]->release();
          holding[i] = false;
          ++released;
        }
      }
      for (std::size_t i = 0; i < kHeld; ++i) {
        if (holding[i]) readers[i]->release();
      }
    });
  }
  run.finish(consumers);
}
