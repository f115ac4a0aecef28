// Crash recovery across real processes, stopped at the library's test seams (src/test_hooks.hpp):
// a producer SIGKILLed at an exact point inside a claim, a consumer SIGKILLed while producers are
// blocked on a full ring and one SIGKILLed while it zeroes what it released (mpsc); for mpmc also
// a consumer SIGKILLed in the middle of a release and one SIGKILLed holding a record while the
// others go on.
#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <cstring>
#include <optional>
#include <random>
#include <span>
#include <thread>
#include <unistd.h>
#include <vector>

#include "helpers.hpp"
#include "mp_helpers.hpp"
#include "test_hooks.hpp"  // src/: the library's private test seams

using namespace flatring;
using namespace std::chrono_literals;
using fr_test::unique_name;

namespace {

// Set by a child before it parks itself in a hook: the parent's signal that the child is there.
fr_test::SharedWords* g_parked = nullptr;

void park() {
  (*g_parked)[0].fetch_add(1);
  for (;;) ::pause();
}

enum class Stop { after_claim, mid_copy, before_commit };

// A producer process (mpsc or mpmc) that claims one record and is stopped at `where`, never to
// return.
template <Mode M>
int stuck_producer(Ring ring, Stop where);

pid_t spawn_stuck_producer(const std::string& name, Stop where) {
  return fr_test::spawn([=] {
    Ring ring = Ring::open(name);
    return ring.info().mode == Mode::mpsc ? stuck_producer<Mode::mpsc>(ring, where)
                                          : stuck_producer<Mode::mpmc>(ring, where);
  });
}

template <Mode M>
int stuck_producer(Ring ring, Stop where) {
  {
    Writer<M> w(std::move(ring));
    std::byte buf[64];
    const std::size_t size = fr_test::make_tagged(buf, 9, 0);
    switch (where) {
      case Stop::after_claim: test_hooks::after_claim = park; break;
      case Stop::mid_copy: test_hooks::mid_copy = park; break;
      case Stop::before_commit: {
        auto claim = w.try_reserve(size);
        if (!claim) return 2;
        std::memcpy(claim->data(), buf, size);
        park();
      }
    }
    (void)w.try_write({buf, size});
    return 3;  // the hook did not fire
  }
}

// A 4 KiB ring of `mode` holding a committed record {1, 0} and, behind it, a claim whose producer
// process is stopped at `where`. Records a live producer writes next go behind the claim.
// A producer of an mpsc or mpmc ring (whichever `ring` is) that stays attached.
struct IdleProducer {
  explicit IdleProducer(const Ring& ring) {
    if (ring.info().mode == Mode::mpsc) mpsc.emplace(ring);
    else mpmc.emplace(ring);
  }
  Status try_write(std::span<const std::byte> p) {
    return mpsc ? mpsc->try_write(p) : mpmc->try_write(p);
  }
  std::optional<Writer<Mode::mpsc>> mpsc;
  std::optional<Writer<Mode::mpmc>> mpmc;
};

struct StuckClaim {
  StuckClaim(Mode mode, Stop where, const char* tag)
      : name(unique_name(tag)),
        guard(name),
        ring(Ring::create(name, {.capacity = 4096, .mode = mode})),
        before(ring),
        parked(1),
        stuck(start(before, parked, name, where)) {
    fr_test::wait_for([&] { return parked[0].load() == 1; });
  }
  std::string name;
  RemoveGuard guard;
  Ring ring;
  IdleProducer before;  // stays attached: a producer that is alive and idle
  fr_test::SharedWords parked;
  fr_test::ParkedChild stuck;

 private:
  static pid_t start(IdleProducer& before, fr_test::SharedWords& parked, const std::string& name,
                     Stop where) {
    g_parked = &parked;
    std::byte buf[64];
    REQUIRE(before.try_write({buf, fr_test::make_tagged(buf, 1, 0)}) == Status::ok);
    return spawn_stuck_producer(name, where);
  }
};

// Exit codes of the mpmc consumer children below.
enum Exit : int {
  kBadRecord = 3,
  kRedelivered = 4,
  kOutOfOrder = 5,
  kStuck = 6,
  kWrongStatus = 10
};

// Where an mpmc consumer child counts what it saw.
struct Deliveries {
  const fr_test::Tally& seen;
  fr_test::SharedWords& shared;  // [0] deliveries, [1] abandoned reports, [2] redelivered copies,
                                 // [3] and [4]: producer + 1 and seq of the last redelivered copy
};

// An mpmc consumer: reads until `total` deliveries were counted by all consumers together, checks
// every byte and the per-producer order of first deliveries, counts each record, then releases it.
// A redelivered copy is counted in `shared` ([2], [3], [4]); `allow_redelivery` says if that is
// expected. Gives up (kStuck) when no consumer delivered anything for a minute.
int consume_mpmc(const std::string& name, const Deliveries& d, std::uint64_t total,
                 bool allow_redelivery) {
  WaitOptions fast;
  fast.liveness_interval = 10ms;
  Reader<Mode::mpmc> r(Ring::open(name), fast);
  std::vector<std::uint64_t> next(8, 0);
  std::uint64_t seen_total = d.shared[0].load();
  auto progress = std::chrono::steady_clock::now();
  while (d.shared[0].load() < total) {
    auto got = r.read(20ms);
    // peer_dead: the producers are done (or dead) and nothing is ready; records a dead consumer
    // held may still be recovered, so it is the same as waiting.
    if (got.status() == Status::timed_out || got.status() == Status::peer_dead) {
      if (d.shared[0].load() != seen_total) {
        seen_total = d.shared[0].load();
        progress = std::chrono::steady_clock::now();
      } else if (std::chrono::steady_clock::now() - progress > 60s) {
        return kStuck;
      }
      continue;
    }
    if (got.status() == Status::abandoned) {
      d.shared[1].fetch_add(1);
      continue;
    }
    if (!got) return kWrongStatus + static_cast<int>(got.status());
    const auto tag = fr_test::tagged_of(got->bytes);
    if (!tag || !d.seen.fits(*tag) || tag->producer >= next.size()) return kBadRecord;
    if (got->redelivered) {
      if (!allow_redelivery) return kRedelivered;
      d.shared[2].fetch_add(1);
      d.shared[3].store(tag->producer + 1);
      d.shared[4].store(tag->seq);
    } else {
      // Each consumer claims positions in increasing order, and one producer's records lie in
      // the order it committed them.
      if (tag->seq < next[tag->producer]) return kOutOfOrder;
      next[tag->producer] = tag->seq + 1;
    }
    d.seen.add(*tag);
    r.release();
    d.shared[0].fetch_add(1);
  }
  return 0;
}

// A producer process writing `count` tagged records, from `first` on.
pid_t spawn_mpmc_producer(const std::string& name, std::uint32_t producer, std::uint64_t first,
                          std::uint64_t count) {
  return fr_test::spawn([=]() -> int {
    Writer<Mode::mpmc> w(Ring::open(name));
    std::byte buf[64];
    for (std::uint64_t seq = first; seq < first + count; ++seq) {
      const Status s = w.write({buf, fr_test::make_tagged(buf, producer, seq)}, 30s);
      if (s != Status::ok) return kWrongStatus + static_cast<int>(s);
    }
    return 0;
  });
}

// head == next == tail: every record was consumed and its space freed.
void check_drained(const Ring& ring) {
  const auto& c = ring.control();
  CHECK(c.consumer.head.load() == c.producer.tail.load());
  CHECK(c.consumer.next.load() == c.producer.tail.load());
}

}  // namespace

TEST_CASE("mpsc crash: a producer SIGKILLed inside a claim is skipped as abandoned and later "
          "records arrive",
          "[mpsc][crash][process]") {
  const auto where = GENERATE(Stop::after_claim, Stop::mid_copy, Stop::before_commit);
  CAPTURE(static_cast<int>(where));
  StuckClaim sc(Mode::mpsc, where, "mpsc-crash");
  std::byte buf[64];
  constexpr std::uint64_t kAfter = 200;  // several laps of the 4 KiB ring once unblocked
  const pid_t after = fr_test::spawn([&] {
    Writer<Mode::mpsc> w(Ring::open(sc.name));
    for (std::uint64_t seq = 0; seq < kAfter; ++seq) {
      if (w.write({buf, fr_test::make_tagged(buf, 2, seq)}, 30s) != Status::ok) return 2;
    }
    return 0;
  });

  WaitOptions fast;
  fast.liveness_interval = 10ms;
  Reader<Mode::mpsc> r(sc.ring, fast);
  auto first = r.read(30s);
  REQUIRE(first.has_value());
  CHECK(fr_test::tagged_of(first->bytes)->producer == 1);
  r.release();
  // The claim's owner is alive (parked): it is waited for, not abandoned.
  CHECK(r.recover() == Status::empty);

  CHECK(sc.stuck.kill_and_join() == 128 + SIGKILL);
  std::uint64_t abandoned = 0, next = 0;
  while (next < kAfter) {
    auto got = r.read(30s);
    if (got.status() == Status::abandoned) {
      ++abandoned;
      continue;
    }
    REQUIRE(got.has_value());
    const auto tag = fr_test::tagged_of(got->bytes);
    REQUIRE(tag.has_value());
    REQUIRE(tag->producer == 2);
    REQUIRE(tag->seq == next);
    ++next;
    r.release();
  }
  CHECK(abandoned == 1);
  CHECK(fr_test::join(after) == 0);
  CHECK(r.read(20ms).status() == Status::timed_out);
  CHECK(r.attachment().slot().counter[layout::abandoned_records].load() == 1);
}

TEST_CASE(
    "mpsc crash: a consumer SIGKILLed while producers are blocked on a full ring releases them",
    "[mpsc][crash][process]") {
  const auto name = unique_name("mpsc-deadc");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096, .mode = Mode::mpsc});
  fr_test::SharedWords shared(1);
  fr_test::ParkedChild consumer(fr_test::spawn([&]() -> int {
    Reader<Mode::mpsc> r(Ring::open(name));
    shared[0].store(1);
    for (;;) ::pause();  // attached, never reads
  }));
  fr_test::wait_for([&] { return shared[0].load() == 1; });

  WaitOptions fast;
  fast.liveness_interval = 10ms;
  std::vector<pid_t> producers;
  for (std::uint32_t p = 0; p < 2; ++p) {
    producers.push_back(fr_test::spawn([&, p] {
      Writer<Mode::mpsc> w(Ring::open(name), fast);
      std::byte buf[64];
      for (std::uint64_t seq = 0;; ++seq) {
        const Status s = w.write({buf, fr_test::make_tagged(buf, p, seq)}, 60s);
        if (s == Status::ok) continue;
        // The ring filled up; the consumer was then killed: reported, not waited on forever.
        return s == Status::peer_dead || s == Status::no_consumer ? 0 : 10 + static_cast<int>(s);
      }
    }));
  }
  // Both producers are blocked once the ring is full and they have gone to sleep on it.
  fr_test::wait_for([&] { return ring.control().space.waiters.load() == 2; });
  CHECK(consumer.kill_and_join() == 128 + SIGKILL);
  for (pid_t p : producers) CHECK(fr_test::join(p) == 0);

  // A new consumer takes the role over and finds every committed record, in per-producer order.
  CHECK(census(ring, layout::Role::consumer).dead == 0);  // the producers reclaimed its slot
  Reader<Mode::mpsc> r(ring);
  std::uint64_t next[2] = {0, 0}, total = 0;
  for (;;) {
    auto got = r.try_read();
    if (!got) {
      CHECK(got.status() == Status::empty);
      break;
    }
    const auto tag = fr_test::tagged_of(got->bytes);
    REQUIRE(tag.has_value());
    REQUIRE(tag->producer < 2);
    REQUIRE(tag->seq == next[tag->producer]);
    ++next[tag->producer];
    ++total;
    r.release();
  }
  CHECK(total * 32 >= 4096 / 2);  // a ring's worth: records take 32 to 64 bytes
}

// A consumer frees what it released by zeroing it (free space reads zero for the next claimer),
// and it can die at any instruction of that. Records of 1 MiB make the zeroing most of what the
// consumer does, so most kills land inside it: in release() one record at a time, or in
// release_to() over a batch of kept records (the bridge's way). Whatever the point, the next
// consumer must find no corrupt record and no partly zeroed one: it resumes at the first record
// the dead one had not released (or at one it had begun to release: delivered again intact, or
// skipped), and reads every record after it in order.
TEST_CASE("mpsc crash: a consumer SIGKILLed while it zeroes released records leaves none corrupt "
          "or partly zeroed, and the next consumer resumes in order",
          "[mpsc][crash][process]") {
  const bool keep = GENERATE(false, true);
  CAPTURE(keep);
  constexpr std::size_t kSize = 1 << 20;
  constexpr std::uint64_t kFilled = 6;  // then one more after the kill: 7 fill the 8 MiB ring
  WaitOptions fast;
  fast.liveness_interval = 10ms;
  std::mt19937 rng(keep ? 2027 : 2026);
  std::vector<std::byte> buf(kSize);
  for (int round = 0; round < 40; ++round) {
    CAPTURE(round);
    const auto name = unique_name("mpsc-zero");
    RemoveGuard guard(name);
    auto ring = Ring::create(name, {.capacity = 8u << 20, .mode = Mode::mpsc});
    Writer<Mode::mpsc> w(ring);
    auto put = [&](std::uint64_t seq) {
      std::memcpy(buf.data(), &seq, 8);
      fr_test::fill_pattern(std::span(buf).subspan(8), seq);
      REQUIRE(w.try_write(buf) == Status::ok);
    };
    for (std::uint64_t seq = 0; seq < kFilled; ++seq) put(seq);
    // [0]: attached; [1]: every record below it is released; [2]: no record from it on has been
    // given to release or release_to yet; [3]: go. The kill falls between or inside those steps.
    fr_test::SharedWords shared(4);
    fr_test::ParkedChild consumer(fr_test::spawn([&]() -> int {
      Reader<Mode::mpsc> r(Ring::open(name));
      shared[0].store(1);
      while (shared[3].load() == 0) {
      }
      std::uint64_t kept = 0;
      for (;;) {
        auto got = r.try_read();
        if (!got) continue;  // spins until it is killed
        std::uint64_t seq = 0;
        std::memcpy(&seq, got->bytes.data(), 8);
        if (!keep) {
          shared[2].store(seq + 1);
          r.release();
          shared[1].store(seq + 1);
        } else if (r.keep(); ++kept % 3 == 0) {
          shared[2].store(seq + 1);
          r.release_to(r.position());
          shared[1].store(seq + 1);
        }
      }
    }));
    fr_test::wait_for([&] { return shared[0].load() == 1; });
    shared[3].store(1);
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 700));
    CHECK(consumer.kill_and_join() == 128 + SIGKILL);
    const std::uint64_t low = shared[1].load(), high = shared[2].load();
    CAPTURE(low, high);
    put(kFilled);  // the stream goes on; and this producer's cursor is off the dead one's records

    Reader<Mode::mpsc> r(ring, fast);
    std::optional<std::uint64_t> first;
    std::uint64_t next = 0;
    while (next <= kFilled) {
      auto got = r.read(10s);
      if (!got) {
        // abandoned: records the dead consumer had zeroed, measured as a claim nobody wrote.
        REQUIRE(got.status() == Status::abandoned);
        continue;
      }
      REQUIRE(got->bytes.size() == kSize);
      std::uint64_t seq = 0;
      std::memcpy(&seq, got->bytes.data(), 8);
      REQUIRE(fr_test::check_pattern(got->bytes.subspan(8), seq));
      if (!first) {
        first = seq;
        CHECK(low <= seq);
        CHECK(seq <= std::max(low, high));
      } else {
        REQUIRE(seq == next);
      }
      next = seq + 1;
      r.release();
    }
    CHECK(r.try_read().status() == Status::empty);
  }
}

TEST_CASE("mpmc crash: a producer SIGKILLed inside a claim is abandoned by exactly one of two "
          "consumers and later records arrive once",
          "[mpmc][crash][process]") {
  const auto where = GENERATE(Stop::after_claim, Stop::mid_copy, Stop::before_commit);
  CAPTURE(static_cast<int>(where));
  StuckClaim sc(Mode::mpmc, where, "mpmc-crash");
  constexpr std::uint64_t kAfter = 300;  // several laps of the 4 KiB ring once unblocked
  constexpr std::uint64_t kTotal = 1 + kAfter;
  const fr_test::Tally seen(3, kAfter);
  fr_test::SharedWords shared(5);
  const Deliveries d{seen, shared};
  std::vector<pid_t> consumers;
  for (int c = 0; c < 2; ++c) {
    consumers.push_back(fr_test::spawn([&] { return consume_mpmc(sc.name, d, kTotal, false); }));
  }
  const pid_t after = spawn_mpmc_producer(sc.name, 2, 0, kAfter);

  // The ring fills behind the claim and the producer sleeps; the consumers, checking liveness every
  // 10 ms meanwhile, wait for the claim's live owner instead of abandoning it.
  fr_test::wait_for(
      [&] { return shared[0].load() == 1 && sc.ring.control().space.waiters.load() != 0; });
  CHECK(shared[1].load() == 0);
  CHECK(layout::frame_type(
            detail::header_at(sc.ring.data(), sc.ring.control().consumer.next.load() & 4095)
                .frame.load()) ==
        (where == Stop::after_claim ? layout::RecordType{} : layout::RecordType::claimed));

  CHECK(sc.stuck.kill_and_join() == 128 + SIGKILL);
  for (pid_t c : consumers) CHECK(fr_test::join(c) == 0);
  CHECK(fr_test::join(after) == 0);
  CHECK(shared[1].load() == 1);  // one consumer reported the claim, once
  CHECK(shared[0].load() == kTotal);
  CHECK(seen.count(1, 0) == 1);
  for (std::uint64_t seq = 0; seq < kAfter; ++seq) REQUIRE(seen.count(2, seq) == 1);
  check_drained(sc.ring);
  Reader<Mode::mpmc> r(sc.ring);
  CHECK(r.recover() == Status::empty);
  CHECK(r.try_read().status() == Status::empty);
  CHECK(sc.ring.control().retired.value[layout::abandoned_records].load() == 1);
}

// A 4 KiB mpmc ring with a producer attached, for consumers parked by the mid_release hook.
struct ParkingRing {
  explicit ParkingRing(const char* tag)
      : name(unique_name(tag)),
        guard(name),
        ring(Ring::create(name, {.capacity = 4096, .mode = Mode::mpmc})),
        parked(1),
        writer(ring) {
    g_parked = &parked;
  }
  // Writes producer 0's record `seq`; returns its payload size.
  std::size_t write(std::uint64_t seq) {
    std::byte buf[64];
    const std::size_t n = fr_test::make_tagged(buf, 0, seq);
    REQUIRE(writer.try_write({buf, n}) == Status::ok);
    return n;
  }
  // A consumer process that reads the next record and releases it (recover = false), or runs
  // recover() until it takes one over (recover = true); the hook parks it inside the zeroing.
  pid_t spawn_parked_releaser(bool recover) const {
    return fr_test::spawn([&, recover]() -> int {
      Reader<Mode::mpmc> r(Ring::open(name));
      test_hooks::mid_release = park;
      if (recover) {
        for (;;) {
          if (r.recover() != Status::empty) return 4;
          std::this_thread::sleep_for(1ms);
        }
      }
      auto got = r.try_read();
      if (!got || !fr_test::tagged_of(got->bytes)) return 2;
      r.release();
      return 3;  // the hook did not fire
    });
  }
  std::string name;
  RemoveGuard guard;
  Ring ring;
  fr_test::SharedWords parked;
  Writer<Mode::mpmc> writer;
};

TEST_CASE("mpmc crash: a consumer SIGKILLed in the middle of a release: the record is not "
          "delivered again and the head catches up",
          "[mpmc][crash][process]") {
  ParkingRing pr("mpmc-midrel");
  const auto& name = pr.name;
  auto& ring = pr.ring;
  auto& parked = pr.parked;
  pr.write(0);
  fr_test::ParkedChild holder(pr.spawn_parked_releaser(false));
  fr_test::wait_for([&] { return parked[0].load() == 1; });
  const auto& rec = detail::header_at(ring.data(), 0);
  CHECK(layout::frame_type(rec.frame.load()) == layout::RecordType::releasing);

  // A producer writes behind the half-released record until the ring is full and it sleeps.
  constexpr std::uint64_t kCount = 2000;
  const pid_t producer = spawn_mpmc_producer(name, 0, 1, kCount - 1);
  WaitOptions fast;
  fast.liveness_interval = 5ms;
  Reader<Mode::mpmc> r(ring, fast);
  std::vector<int> seen(kCount, 0);
  std::uint64_t got_count = 0, next = 1;
  bool killed = false;
  while (got_count < kCount - 1) {
    if (!killed && ring.control().space.waiters.load() != 0) {
      // Its owner is alive: however often the survivor ran recovery, the record was not touched.
      CHECK(layout::frame_type(rec.frame.load()) == layout::RecordType::releasing);
      CHECK(ring.control().consumer.head.load() == 0);
      CHECK(holder.kill_and_join() == 128 + SIGKILL);
      killed = true;
    }
    auto got = r.read(killed ? 30s : 5ms);
    if (!killed && got.status() == Status::timed_out) continue;
    REQUIRE(got.has_value());
    CHECK_FALSE(got->redelivered);
    const auto tag = fr_test::tagged_of(got->bytes);
    REQUIRE(tag.has_value());
    REQUIRE(tag->seq == next);  // record 0 never comes again
    ++next;
    ++seen[tag->seq];
    ++got_count;
    r.release();
  }
  CHECK(fr_test::join(producer) == 0);
  CHECK(seen[0] == 0);
  for (std::uint64_t i = 1; i < kCount; ++i) REQUIRE(seen[i] == 1);
  check_drained(ring);
  CHECK(r.recover() == Status::empty);
  CHECK(r.try_read().status() == Status::empty);
}

// A recoverer that takes over a dead consumer's half-zeroed record zeroes it again. While it does,
// the frame word must not be the one other recoverers loaded before its takeover (`releasing` with
// no takeover count): a slower recoverer's CAS would then win as well, and it would go on zeroing
// after the first one freed the space (ABA; found in review). Killed there in turn, the next
// recoverer finishes the record and nothing is delivered again.
TEST_CASE("mpmc crash: a recoverer SIGKILLed while finishing a dead consumer's half-released "
          "record keeps it its own",
          "[mpmc][crash][process]") {
  ParkingRing pr("mpmc-recrel");
  auto& ring = pr.ring;
  auto& parked = pr.parked;
  const std::size_t first = pr.write(0);
  pr.write(1);
  const auto& rec = detail::header_at(ring.data(), 0);
  fr_test::ParkedChild holder(pr.spawn_parked_releaser(false));
  fr_test::wait_for([&] { return parked[0].load() == 1; });
  const std::uint64_t before = rec.frame.load();
  CHECK(layout::frame_type(before) == layout::RecordType::releasing);
  CHECK(holder.kill_and_join() == 128 + SIGKILL);

  fr_test::ParkedChild recoverer(pr.spawn_parked_releaser(true));
  fr_test::wait_for([&] { return parked[0].load() == 2; });
  const std::uint64_t during = rec.frame.load();
  CHECK(layout::frame_type(during) == layout::RecordType::releasing);
  CHECK(during != before);  // carries the takeover count: a stale recoverer's CAS fails
  CHECK(ring.control().consumer.head.load() == 0);
  CHECK(recoverer.kill_and_join() == 128 + SIGKILL);

  Reader<Mode::mpmc> r(ring);
  const Status u = r.recover();  // finished and freed by this third consumer; ok: a record is next
  CHECK((u == Status::empty || u == Status::ok));
  CHECK(ring.control().consumer.head.load() == layout::frame_size(first));
  auto got = r.try_read();
  REQUIRE(got.has_value());
  CHECK_FALSE(got->redelivered);
  const auto tag = fr_test::tagged_of(got->bytes);
  REQUIRE(tag.has_value());
  CHECK(tag->seq == 1);
  r.release();
  check_drained(ring);
}

TEST_CASE("mpmc crash: a consumer SIGKILLed holding a record while others go on: it is delivered "
          "again once with its bytes intact",
          "[mpmc][crash][process]") {
  const auto name = unique_name("mpmc-holdkill");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096, .mode = Mode::mpmc});
  constexpr std::uint32_t kProducers = 2;
  constexpr std::uint64_t kPer = 1500;
  constexpr std::uint64_t kTotal = kProducers * kPer;
  const fr_test::Tally seen(kProducers, kPer);
  fr_test::SharedWords shared(5);
  fr_test::SharedWords held(3);  // [0] set once the victim holds its record; [1] producer, [2] seq
  const Deliveries d{seen, shared};

  // The victim consumes a few records, then holds one (counted as delivered) until it is killed.
  fr_test::ParkedChild victim(fr_test::spawn([&]() -> int {
    Reader<Mode::mpmc> r(Ring::open(name));
    for (int n = 0;; ++n) {
      auto got = r.read(30s);
      if (!got) return kWrongStatus + static_cast<int>(got.status());
      const auto tag = fr_test::tagged_of(got->bytes);
      if (!tag || !seen.fits(*tag) || got->redelivered) return kBadRecord;
      seen.add(*tag);
      shared[0].fetch_add(1);
      if (n == 10) {
        held[1].store(tag->producer);
        held[2].store(tag->seq);
        held[0].store(1);
        for (;;) ::pause();
      }
      r.release();
    }
  }));
  std::vector<pid_t> kids;
  for (std::uint32_t p = 0; p < kProducers; ++p)
    kids.push_back(spawn_mpmc_producer(name, p, 0, kPer));
  fr_test::wait_for([&] { return held[0].load() == 1; });
  for (int c = 0; c < 2; ++c) {
    // Together the survivors count one delivery more than there are records: the redelivery.
    kids.push_back(fr_test::spawn([&] { return consume_mpmc(name, d, kTotal + 1, true); }));
  }
  // The others go on while the victim holds its record, until the ring is full behind it and the
  // producers sleep; then it is killed.
  fr_test::wait_for(
      [&] { return shared[0].load() > 11 && ring.control().space.waiters.load() != 0; });
  CHECK(victim.kill_and_join() == 128 + SIGKILL);
  for (pid_t k : kids) CHECK(fr_test::join(k) == 0);

  const auto p = static_cast<std::uint32_t>(held[1].load());
  const std::uint64_t s = held[2].load();
  CHECK(shared[2].load() ==
        1);  // one redelivered copy: the held record (tagged_of checked its bytes)
  CHECK(shared[3].load() == p + 1);
  CHECK(shared[4].load() == s);
  for (std::uint32_t q = 0; q < kProducers; ++q) {
    for (std::uint64_t i = 0; i < kPer; ++i)
      REQUIRE(seen.count(q, i) == (q == p && i == s ? 2u : 1u));
  }
  CHECK(shared[1].load() == 0);  // no producer died: nothing abandoned
  check_drained(ring);
}

// A consumer that recovers a dead producer's claim (Reader<Mode::mpmc>::unblock_claim) first claims
// it on the read cursor (`next` CAS), then turns its frame into `abandoned`. SIGKILLed between the
// two (hook mid_unblock), it leaves the claim's header (`claimed`, or nothing if the producer died
// before writing it) below `next`, held by a dead consumer. Recovery takes that over too.
TEST_CASE("mpmc crash: a consumer SIGKILLed while recovering a dead producer's claim does not "
          "wedge the ring",
          "[mpmc][crash][process]") {
  const Stop where = GENERATE(Stop::after_claim, Stop::mid_copy);
  CAPTURE(static_cast<int>(where));
  StuckClaim sc(Mode::mpmc, where, "mpmc-deadrecov");
  WaitOptions fast;
  fast.liveness_interval = 5ms;
  Reader<Mode::mpmc> r(sc.ring, fast);
  auto first = r.read(30s);
  REQUIRE(first.has_value());
  r.release();
  CHECK(sc.stuck.kill_and_join() == 128 + SIGKILL);

  fr_test::SharedWords step(1);
  fr_test::ParkedChild recoverer(fr_test::spawn([&]() -> int {
    Reader<Mode::mpmc> dying(Ring::open(sc.name), fast);
    static fr_test::SharedWords* g_step = nullptr;
    g_step = &step;
    test_hooks::mid_unblock = [] {
      (*g_step)[0].store(1);
      for (;;) ::pause();
    };
    for (;;) {
      const Status u = dying.recover();  // parks in the hook once it has claimed the dead claim
      if (u != Status::empty) return 2;
      std::this_thread::sleep_for(1ms);
    }
  }));
  fr_test::wait_for([&] { return step[0].load() == 1; });
  CHECK(recoverer.kill_and_join() == 128 + SIGKILL);

  constexpr std::uint64_t kAfter = 300;  // several laps of the 4 KiB ring
  const pid_t after = spawn_mpmc_producer(sc.name, 2, 0, kAfter);
  std::uint64_t next = 0, abandoned = 0;
  Status stopped = Status::ok;
  for (int failures = 0; next < kAfter && failures < 5;) {  // 5 in a row: it stays wedged
    auto got = r.read(10s);
    if (got.status() == Status::abandoned) {  // the claim was never reported: once at most
      ++abandoned;
      continue;
    }
    if (!got) {
      stopped = got.status();
      ++failures;
      continue;
    }
    const auto tag = fr_test::tagged_of(got->bytes);
    if (!tag || tag->producer != 2 || tag->seq != next) break;
    ++next;
    failures = 0;
    r.release();
  }
  if (next < kAfter) ::kill(after, SIGKILL);  // wedged: the producer sleeps on the full ring
  fr_test::join(after);
  CHECK(stopped == Status::ok);
  CHECK(next == kAfter);
  CHECK(abandoned <= 1);
  check_drained(sc.ring);
}
