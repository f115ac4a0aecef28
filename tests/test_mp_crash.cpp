// Crash recovery across real processes, built against the hooked library (FLATRING_TEST_HOOKS):
// a producer SIGKILLed at an exact point inside a claim, and a consumer SIGKILLed while producers
// are blocked on a full ring.
#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <cstring>
#include <unistd.h>
#include <vector>

#include "helpers.hpp"
#include "mp_helpers.hpp"

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

// A producer process that claims one record and is stopped at `where`, never to return.
pid_t spawn_stuck_producer(const std::string& name, Stop where) {
  return fr_test::spawn([=] {
    MpscWriter w(Ring::open(name));
    std::byte buf[64];
    const std::size_t size = fr_test::make_tagged(buf, 9, 0);
    switch (where) {
      case Stop::after_claim:
        test_hooks::after_claim = park;
        break;
      case Stop::mid_copy:
        test_hooks::mid_copy = park;
        break;
      case Stop::before_commit: {
        auto claim = w.try_reserve(size);
        if (!claim) return 2;
        std::memcpy(claim->data(), buf, size);
        park();
      }
    }
    (void)w.try_write({buf, size});
    return 3;  // the hook did not fire
  });
}

}  // namespace

TEST_CASE("mpsc crash: a producer SIGKILLed inside a claim is skipped as abandoned and later records arrive", "[mpsc][crash][process]") {
  const auto where = GENERATE(Stop::after_claim, Stop::mid_copy, Stop::before_commit);
  CAPTURE(static_cast<int>(where));
  const auto name = unique_name("mpsc-crash");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096, .mode = Mode::mpsc});
  fr_test::SharedWords parked(1);
  g_parked = &parked;

  // Records before the stuck claim, the stuck claim, then a live producer's records behind it.
  MpscWriter before(ring);
  std::byte buf[64];
  REQUIRE(before.try_write({buf, fr_test::make_tagged(buf, 1, 0)}) == Status::ok);
  const pid_t stuck = spawn_stuck_producer(name, where);
  fr_test::wait_for([&] { return parked[0].load() == 1; });
  constexpr std::uint64_t kAfter = 200;  // several laps of the 4 KiB ring once unblocked
  const pid_t after = fr_test::spawn([&] {
    MpscWriter w(Ring::open(name));
    for (std::uint64_t seq = 0; seq < kAfter; ++seq) {
      if (w.write({buf, fr_test::make_tagged(buf, 2, seq)}, 30s) != Status::ok) return 2;
    }
    return 0;
  });

  WaitOptions fast;
  fast.liveness_interval = 10ms;
  MpscReader r(ring, fast);
  auto first = r.read(30s);
  REQUIRE(first.has_value());
  CHECK(fr_test::tagged_of(first->bytes)->producer == 1);
  r.release();
  // The claim's owner is alive (parked): it is waited for, not abandoned.
  CHECK(r.unblock() == Status::empty);

  ::kill(stuck, SIGKILL);
  CHECK(fr_test::join(stuck) == 128 + SIGKILL);
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

TEST_CASE("mpsc crash: a consumer SIGKILLed while producers are blocked on a full ring releases them", "[mpsc][crash][process]") {
  const auto name = unique_name("mpsc-deadc");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096, .mode = Mode::mpsc});
  fr_test::SharedWords shared(1);
  const pid_t consumer = fr_test::spawn([&]() -> int {
    MpscReader r(Ring::open(name));
    shared[0].store(1);
    for (;;) ::pause();  // attached, never reads
  });
  fr_test::wait_for([&] { return shared[0].load() == 1; });

  WaitOptions fast;
  fast.liveness_interval = 10ms;
  std::vector<pid_t> producers;
  for (std::uint32_t p = 0; p < 2; ++p) {
    producers.push_back(fr_test::spawn([&, p] {
      MpscWriter w(Ring::open(name), fast);
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
  ::kill(consumer, SIGKILL);
  CHECK(fr_test::join(consumer) == 128 + SIGKILL);
  for (pid_t p : producers) CHECK(fr_test::join(p) == 0);

  // A new consumer takes the role over and finds every committed record, in per-producer order.
  CHECK(census(ring, layout::Role::consumer).dead == 0);  // the producers reclaimed its slot
  MpscReader r(ring);
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
