// mpmc rings across real processes: producers tagged {producer, seq}, several consumers; every
// record is delivered exactly once across all consumers, and each consumer sees each producer's
// records in order. Typed endpoints, batched polling by several consumers, records a consumer died
// holding, stalled claims. What every mode shares is in test_modes.cpp.
#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "mp_helpers.hpp"

using namespace flatring;
using namespace std::chrono_literals;
using flatring::test::Msg;
using fr_test::unique_name;

namespace {

// One bit per record {producer, seq}, shared by every consumer process: a record delivered twice
// finds its bit already set.
struct Delivered {
  Delivered(std::uint32_t producers, std::uint64_t per_producer)
      : per(per_producer),
        bits(producers * ((per_producer + 63) / 64)),
        words_per((per_producer + 63) / 64) {}
  // False if this record was delivered before.
  bool mark(const fr_test::Tag& t) const {
    const std::uint64_t bit = std::uint64_t{1} << (t.seq % 64);
    return (bits[t.producer * words_per + t.seq / 64].fetch_or(bit) & bit) == 0;
  }
  std::uint64_t count() const {
    std::uint64_t n = 0;
    for (std::size_t i = 0; i < bits.size(); ++i)
      n += static_cast<std::uint64_t>(__builtin_popcountll(bits[i].load()));
    return n;
  }
  std::uint64_t per;
  fr_test::SharedWords bits;
  std::uint64_t words_per;
};

// Consumes until `stop` says the whole stream was delivered (shared[0] counts deliveries). Returns
// 0, or non-zero for a malformed record, a duplicate, or a per-producer order violation.
int consume_all(const std::string& name, const Delivered& seen, fr_test::SharedWords& shared,
                std::uint32_t producers, std::uint64_t total) {
  Reader<Mode::mpmc> r(Ring::open(name));
  std::vector<std::uint64_t> last(producers, 0);
  std::vector<bool> any(producers, false);
  while (shared[0].load() < total) {
    auto got = r.read(20ms);
    if (got.status() == Status::timed_out) continue;
    if (!got) {
      std::fprintf(stderr, "consumer: %s\n", std::string(to_string(got.status())).c_str());
      return 2;
    }
    const auto tag = fr_test::tagged_of(got->bytes);
    if (!tag || tag->producer >= producers) return 3;
    if (any[tag->producer] && tag->seq <= last[tag->producer]) return 4;  // out of order
    any[tag->producer] = true;
    last[tag->producer] = tag->seq;
    if (!seen.mark(*tag)) return 5;  // delivered twice
    r.release();
    shared[0].fetch_add(1);
  }
  return 0;
}

}  // namespace

TEST_CASE("mpmc: 4 producers and 4 consumers (processes): every record consumed exactly once",
          "[mpmc][process]") {
  const auto name = unique_name("mpmc-4x4");
  RemoveGuard guard(name);
  const std::size_t capacity = GENERATE(std::size_t{4096}, std::size_t{1} << 16);
  CAPTURE(capacity);
  const std::uint64_t per_producer = fr_test::scaled(capacity == 4096 ? 100'000 : 250'000);
  constexpr std::uint32_t kProducers = 4, kConsumers = 4;
  auto ring = Ring::create(name, {.capacity = capacity, .mode = Mode::mpmc});
  const Delivered seen(kProducers, per_producer);
  fr_test::SharedWords shared(2);  // [0] deliveries, [1] start
  const std::uint64_t total = kProducers * per_producer;

  std::vector<pid_t> consumers, producers;
  for (std::uint32_t c = 0; c < kConsumers; ++c) {
    consumers.push_back(
        fr_test::spawn([&] { return consume_all(name, seen, shared, kProducers, total); }));
  }
  for (std::uint32_t p = 0; p < kProducers; ++p) {
    producers.push_back(fr_test::spawn([&, p] {
      Writer<Mode::mpmc> w(Ring::open(name));
      fr_test::wait_for([&] { return shared[1].load() == 1; });
      std::byte buf[64];
      for (std::uint64_t seq = 0; seq < per_producer; ++seq) {
        if (w.write({buf, fr_test::make_tagged(buf, p, seq)}, 30s) != Status::ok) return 2;
      }
      return 0;
    }));
  }
  shared[1].store(1);
  for (pid_t p : producers) CHECK(fr_test::join(p) == 0);
  for (pid_t c : consumers) CHECK(fr_test::join(c) == 0);
  CHECK(shared[0].load() == total);
  CHECK(seen.count() == total);
  // Everything was released: the head caught up with the tail, and no consumer slot is left.
  CHECK(ring.control().consumer.head.load() == ring.control().producer.tail.load());
  CHECK(ring.control().consumer.next.load() == ring.control().producer.tail.load());
  CHECK(ring.control().retired.value[layout::records_read].load() == total);
}

TEST_CASE("mpmc: a record is delivered to exactly one of several waiting consumers", "[mpmc]") {
  const auto name = unique_name("mpmc-one");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096, .mode = Mode::mpmc});
  Reader<Mode::mpmc> a(ring), b(ring);
  Writer<Mode::mpmc> w(ring);
  std::byte buf[64];
  CHECK(a.try_read().status() == Status::empty);
  REQUIRE(w.try_write({buf, fr_test::make_tagged(buf, 0, 0)}) == Status::ok);
  REQUIRE(w.try_write({buf, fr_test::make_tagged(buf, 0, 1)}) == Status::ok);
  auto ra = a.try_read();
  REQUIRE(ra.has_value());
  auto rb = b.try_read();
  REQUIRE(rb.has_value());
  CHECK(fr_test::tagged_of(ra->bytes)->seq == 0);
  CHECK(fr_test::tagged_of(rb->bytes)->seq == 1);
  CHECK_FALSE(ra->redelivered);
  // Held records are not handed out again, and the head waits for the oldest one.
  CHECK(a.try_read()->position == ra->position);
  const std::uint64_t first_head = ring.control().consumer.head.load();
  b.release();  // released out of order: not free yet
  CHECK(ring.control().consumer.head.load() == first_head);
  a.release();  // now both are
  CHECK(ring.control().consumer.head.load() == ring.control().producer.tail.load());
  CHECK(a.try_read().status() == Status::empty);
  CHECK(b.try_read().status() == Status::empty);
}

TEST_CASE("mpmc: out-of-order releases free the ring in order and wrap many times", "[mpmc]") {
  const auto name = unique_name("mpmc-ooo");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096, .mode = Mode::mpmc});
  Writer<Mode::mpmc> w(ring);
  std::vector<std::unique_ptr<Reader<Mode::mpmc>>> readers;
  for (int i = 0; i < 3; ++i) readers.push_back(std::make_unique<Reader<Mode::mpmc>>(ring));
  std::byte buf[64];
  std::uint64_t written = 0, read = 0;
  for (int round = 0; round < 2000; ++round) {
    while (w.try_write({buf, fr_test::make_tagged(buf, 0, written)}) == Status::ok) ++written;
    // Each reader takes one; they release in reverse order (the newest first).
    std::vector<int> holding;
    for (int i = 0; i < 3; ++i) {
      auto got = readers[i]->try_read();
      if (!got) break;
      const auto tag = fr_test::tagged_of(got->bytes);
      REQUIRE(tag.has_value());
      REQUIRE(tag->seq == read);
      ++read;
      holding.push_back(i);
    }
    for (auto it = holding.rbegin(); it != holding.rend(); ++it) readers[*it]->release();
  }
  while (auto got = readers[0]->try_read()) {
    REQUIRE(fr_test::tagged_of(got->bytes)->seq == read);
    ++read;
    readers[0]->release();
  }
  CHECK(read == written);
  CHECK(written > 4096 / 64 * 20);  // many laps of the 4 KiB ring
  CHECK(ring.control().consumer.head.load() == ring.control().producer.tail.load());
}

TEST_CASE("mpmc: batched polling by two consumers delivers every record once", "[mpmc]") {
  const auto name = unique_name("mpmc-poll");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096, .mode = Mode::mpmc});
  Writer<Mode::mpmc> w(ring);
  Reader<Mode::mpmc> a(ring), b(ring);
  std::byte buf[64];
  std::vector<int> seen(5000, 0);
  std::uint64_t written = 0, got = 0;
  auto on = [&](std::span<const std::byte> bytes) {
    const auto tag = fr_test::tagged_of(bytes);
    if (tag && tag->seq < seen.size()) ++seen[tag->seq];
    ++got;
  };
  while (got < seen.size()) {
    while (written < seen.size() &&
           w.try_write({buf, fr_test::make_tagged(buf, 0, written)}) == Status::ok)
      ++written;
    a.poll(on, 7);
    b.poll(on, 5);
  }
  for (std::size_t i = 0; i < seen.size(); ++i) REQUIRE(seen[i] == 1);
}

TEST_CASE("mpmc: typed producers and consumers in separate processes", "[mpmc][typed][process]") {
  const auto name = unique_name("mpmc-typed");
  RemoveGuard guard(name);
  auto ring = create_ring<Msg>(name, {.capacity = 1 << 16, .mode = Mode::mpmc});
  constexpr std::uint64_t kPer = 3000;
  const Delivered seen(2, kPer);
  fr_test::SharedWords shared(1);
  std::vector<pid_t> kids;
  for (int c = 0; c < 2; ++c) {
    kids.push_back(fr_test::spawn([&] {
      Consumer<Msg, Mode::mpmc> in(open_ring<Msg>(name));
      while (shared[0].load() < 2 * kPer) {
        auto m = in.receive(20ms);
        if (m.status() == Status::timed_out) continue;
        if (!m) return 2;
        const std::uint64_t seq = (*m)->seq();
        if (!seen.mark({static_cast<std::uint32_t>(seq >> 32), seq & 0xFFFFFFFF})) return 3;
        if ((*m)->payload() == nullptr ||
            !fr_test::check_pattern({reinterpret_cast<const std::byte*>((*m)->payload()->data()),
                                     (*m)->payload()->size()},
                                    seq))
          return 4;
        shared[0].fetch_add(1);
      }
      return 0;
    }));
  }
  for (std::uint64_t p = 0; p < 2; ++p) {
    kids.push_back(fr_test::spawn([&, p] {
      Producer<Msg, Mode::mpmc> out(open_ring<Msg>(name));
      flatbuffers::FlatBufferBuilder fbb;
      for (std::uint64_t i = 0; i < kPer; ++i) {
        const std::uint64_t seq = p << 32 | i;
        fr_test::build_msg(fbb, seq, i % 300);
        if (out.send(fbb, 30s) != Status::ok) return 2;
      }
      return 0;
    }));
  }
  for (pid_t k : kids) CHECK(fr_test::join(k) == 0);
  CHECK(seen.count() == 2 * kPer);
}

TEST_CASE("mpmc: a consumer killed holding a record: it is delivered again to another consumer",
          "[mpmc][process]") {
  const auto name = unique_name("mpmc-redeliver");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096, .mode = Mode::mpmc});
  Writer<Mode::mpmc> w(ring);
  std::byte buf[64];
  constexpr std::uint64_t kCount = 300;  // several laps once the held record is recovered
  REQUIRE(w.try_write({buf, fr_test::make_tagged(buf, 0, 0)}) == Status::ok);
  fr_test::SharedWords shared(1);
  const pid_t holder = fr_test::spawn([&]() -> int {
    Reader<Mode::mpmc> r(Ring::open(name));
    auto got = r.try_read();
    if (!got) return 2;
    shared[0].store(1);
    for (;;) ::pause();  // holds record 0 until killed
  });
  fr_test::wait_for([&] { return shared[0].load() == 1; });

  WaitOptions fast;
  fast.liveness_interval = 5ms;
  Reader<Mode::mpmc> r(ring, fast);
  CHECK(r.recover() == Status::empty);  // the holder is alive: nothing to take over
  ::kill(holder, SIGKILL);
  CHECK(fr_test::join(holder) == 128 + SIGKILL);

  // The writer fills the ring behind the dead holder's record; the survivor drains it, then finds
  // the held record again (and the head moves on).
  std::uint64_t written = 1, redelivered = 0;
  std::vector<int> seen(kCount, 0);
  std::uint64_t got_count = 0;
  while (got_count < kCount) {
    while (written < kCount &&
           w.try_write({buf, fr_test::make_tagged(buf, 0, written)}) == Status::ok)
      ++written;
    auto got = r.read(2s);
    REQUIRE(got.has_value());
    const auto tag = fr_test::tagged_of(got->bytes);
    REQUIRE(tag.has_value());
    REQUIRE(tag->seq < kCount);
    if (got->redelivered) {
      ++redelivered;
      CHECK(tag->seq == 0);
    }
    ++seen[tag->seq];
    ++got_count;
    r.release();
  }
  CHECK(redelivered == 1);
  for (std::uint64_t i = 0; i < kCount; ++i) REQUIRE(seen[i] == 1);
  CHECK(r.attachment().slot().counter[layout::abandoned_records].load() == 1);
  CHECK(ring.control().consumer.head.load() == ring.control().producer.tail.load());
}

TEST_CASE("mpmc: producers blocked behind a dead consumer's record go on once a live consumer "
          "recovers it",
          "[mpmc][process]") {
  const auto name = unique_name("mpmc-stuckhead");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096, .mode = Mode::mpmc});
  fr_test::SharedWords shared(2);
  Writer<Mode::mpmc> w(ring);
  std::byte buf[64];
  REQUIRE(w.try_write({buf, fr_test::make_tagged(buf, 0, 0)}) == Status::ok);
  const pid_t holder = fr_test::spawn([&]() -> int {
    Reader<Mode::mpmc> r(Ring::open(name));
    if (!r.try_read()) return 2;
    shared[0].store(1);
    for (;;) ::pause();
  });
  fr_test::wait_for([&] { return shared[0].load() == 1; });
  constexpr std::uint64_t kCount = 2000;
  const pid_t producer = fr_test::spawn([&] {
    Writer<Mode::mpmc> pw(Ring::open(name));
    for (std::uint64_t seq = 1; seq < kCount; ++seq) {
      if (pw.write({buf, fr_test::make_tagged(buf, 0, seq)}, 30s) != Status::ok) return 2;
    }
    return 0;
  });
  // The survivor consumes everything it can reach; the ring fills behind the held record.
  WaitOptions fast;
  fast.liveness_interval = 5ms;
  Reader<Mode::mpmc> r(ring, fast);
  std::vector<int> seen(kCount, 0);
  std::uint64_t got_count = 0;
  bool killed = false;
  while (got_count < kCount) {
    if (!killed && ring.control().space.waiters.load() != 0) {
      ::kill(holder, SIGKILL);  // the producer sleeps on a full ring: now the holder dies
      killed = true;
    }
    auto got = r.read(killed ? 30s : 5ms);
    if (!killed && got.status() == Status::timed_out) continue;
    REQUIRE(got.has_value());
    const auto tag = fr_test::tagged_of(got->bytes);
    REQUIRE(tag.has_value());
    ++seen[tag->seq];
    ++got_count;
    r.release();
  }
  CHECK(fr_test::join(holder) == 128 + SIGKILL);
  CHECK(fr_test::join(producer) == 0);
  for (std::uint64_t i = 0; i < kCount; ++i) REQUIRE(seen[i] == 1);
}

TEST_CASE("mpmc: a live producer's claim stalled past the claim timeout is skipped, and that "
          "producer frees it",
          "[mpmc]") {
  const bool aborts = GENERATE(false, true);
  CAPTURE(aborts);
  const auto name = unique_name("mpmc-stall");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096, .mode = Mode::mpmc});
  Writer<Mode::mpmc> stalled(ring), other(ring);
  WaitOptions opts;
  opts.liveness_interval = 2ms;
  opts.claim_timeout = 10ms;
  Reader<Mode::mpmc> r(ring, opts);
  Reader<Mode::mpmc> patient(ring);  // default options: never skips a live producer's claim
  std::byte buf[64];
  auto claim = stalled.try_reserve(40);
  REQUIRE(claim.has_value());
  const std::uint64_t claim_at = ring.control().producer.tail.load() - layout::frame_size(40);
  std::memset(claim->data(), 0x5A, 20);  // half written when it stalls
  REQUIRE(other.try_write({buf, fr_test::make_tagged(buf, 1, 0)}) == Status::ok);
  CHECK(patient.recover() == Status::empty);  // alive and no timeout: wait for it
  CHECK(patient.try_read().status() == Status::empty);

  CHECK(r.read(10s).status() == Status::abandoned);  // skipped after the timeout
  auto got = r.read(10s);
  REQUIRE(got.has_value());
  CHECK(fr_test::tagged_of(got->bytes)->producer == 1);
  r.release();
  // The skipped claim is not free yet: its producer may still be writing into it.
  CHECK(ring.control().consumer.head.load() == claim_at);
  std::memset(claim->data() + 20, 0x5A, 20);  // the producer's late writes land in its own claim
  if (aborts) {
    stalled.abort();
  } else {
    CHECK(stalled.commit(40) == Status::abandoned);  // nothing was delivered
  }
  // The producer finished it: zeroed, done, freed with everything behind it.
  CHECK(ring.control().consumer.head.load() == ring.control().producer.tail.load());
  for (std::uint64_t i = 0; i < 300; ++i) {  // laps over the stalled claim's bytes
    REQUIRE(other.try_write({buf, fr_test::make_tagged(buf, 1, i + 1)}) == Status::ok);
    auto g = patient.try_read();
    REQUIRE(g.has_value());
    REQUIRE(fr_test::tagged_of(g->bytes)->seq == i + 1);
    patient.release();
  }
  CHECK(r.attachment().slot().counter[layout::abandoned_records].load() == 1);
}

TEST_CASE("mpmc: a stalled producer that dies after its claim was skipped is freed by recovery",
          "[mpmc][process]") {
  const auto name = unique_name("mpmc-stall-dead");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096, .mode = Mode::mpmc});
  fr_test::SharedWords shared(1);
  const pid_t stuck = fr_test::spawn([&]() -> int {
    Writer<Mode::mpmc> w(Ring::open(name));
    if (!w.try_reserve(100)) return 2;
    shared[0].store(1);
    for (;;) ::pause();
  });
  fr_test::wait_for([&] { return shared[0].load() == 1; });
  WaitOptions opts;
  opts.liveness_interval = 2ms;
  opts.claim_timeout = 5ms;
  Reader<Mode::mpmc> r(ring, opts);
  CHECK(r.read(10s).status() == Status::abandoned);  // skipped while the producer lives
  CHECK(r.recover() == Status::empty);               // alive: its claim stays its own
  CHECK(ring.control().consumer.head.load() != ring.control().producer.tail.load());
  ::kill(stuck, SIGKILL);
  CHECK(fr_test::join(stuck) == 128 + SIGKILL);
  CHECK(r.recover() == Status::empty);  // dead: finished and freed
  CHECK(ring.control().consumer.head.load() == ring.control().producer.tail.load());
  Writer<Mode::mpmc> w(ring);
  std::byte buf[64];
  for (std::uint64_t i = 0; i < 200; ++i) {
    REQUIRE(w.try_write({buf, fr_test::make_tagged(buf, 0, i)}) == Status::ok);
    auto g = r.try_read();
    REQUIRE(g.has_value());
    REQUIRE(fr_test::tagged_of(g->bytes)->seq == i);
    r.release();
  }
}

TEST_CASE("mpmc: a typed in-place consumer killed holding a record: another typed consumer gets it "
          "with redelivered()",
          "[mpmc][typed][process]") {
  const auto name = unique_name("mpmc-typed-redeliver");
  RemoveGuard guard(name);
  auto ring = create_ring<Msg>(name, {.capacity = 4096, .mode = Mode::mpmc});
  Producer<Msg, Mode::mpmc> out(ring);
  flatbuffers::FlatBufferBuilder fbb;
  for (std::uint64_t seq = 0; seq < 2; ++seq) {
    fr_test::build_msg(fbb, seq, 100);
    REQUIRE(out.try_send(fbb) == Status::ok);
  }
  fr_test::SharedWords shared(1);
  const pid_t holder = fr_test::spawn([&]() -> int {
    // In place: the record stays held in the ring until the next receive.
    Consumer<Msg, Mode::mpmc> in(open_ring<Msg>(name), {.in_place = true});
    auto m = in.receive(5s);
    shared[0].store(m && (*m)->seq() == 0 && !in.redelivered() ? 1 : 2);
    for (;;) ::pause();  // holds record 0 until killed
  });
  fr_test::wait_for([&] { return shared[0].load() != 0; });
  REQUIRE(shared[0].load() == 1);
  ::kill(holder, SIGKILL);
  CHECK(fr_test::join(holder) == 128 + SIGKILL);

  ConsumerOptions options;  // copying: the default
  options.wait.liveness_interval = 5ms;
  Consumer<Msg, Mode::mpmc> in(ring, options);
  auto first = in.receive(2s);
  REQUIRE(first.has_value());
  CHECK((*first)->seq() == 1);  // record 0 is claimed by the dead holder
  CHECK_FALSE(in.redelivered());
  auto again = in.receive(2s);  // waits, recovers record 0 from the dead holder
  REQUIRE(again.has_value());
  CHECK((*again)->seq() == 0);
  CHECK(in.redelivered());
  REQUIRE((*again)->payload() != nullptr);
  CHECK(fr_test::check_pattern({reinterpret_cast<const std::byte*>((*again)->payload()->data()),
                                (*again)->payload()->size()},
                               0));
  CHECK(in.receive(20ms).status() == Status::timed_out);
  CHECK_FALSE(in.redelivered());  // reset when no record is returned
  CHECK(ring.control().consumer.head.load() == ring.control().producer.tail.load());
}
