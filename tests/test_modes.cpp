// Behaviour every mode shares, tested once over all four modes (TEMPLATE_TEST_CASE over spsc,
// mpsc, mpmc, broadcast): mode and role refusal, too_large and the exact maximum, the wrap at
// every offset of a small ring, batched polling, segment_lost under blocked and polling endpoints,
// and a dead peer seen by a blocked endpoint. What only one mode does stays in that mode's file.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <optional>
#include <string>
#include <sys/types.h>
#include <thread>
#include <type_traits>
#include <unistd.h>
#include <vector>

#include "helpers.hpp"
#include "mode_types.hpp"
#include "mp_helpers.hpp"

using namespace flatring;
using namespace std::chrono_literals;
using flatring::test::Msg;
using fr_test::error_code;
using fr_test::unique_name;

namespace {

constexpr std::uint64_t kCap = 4096;
// Blocking calls in these tests sleep at once and check their peers often.
constexpr WaitOptions kFast{.spin = 0ns, .liveness_interval = 10ms};

// A 4 KiB ring of mode M, created for Msg (raw endpoints ignore the schema; typed ones need it).
template <Mode M>
struct Fixture {
  explicit Fixture(std::uint64_t max_record_size = 0)
      : ring(create_ring<Msg>(name,
                              {.capacity = kCap, .max_record_size = max_record_size, .mode = M})) {}
  std::string name = unique_name("modes-" + std::string(to_string(M)));
  RemoveGuard guard{name};
  Ring ring;
};

std::vector<std::byte> pattern(std::size_t n, std::uint64_t seq) {
  std::vector<std::byte> v(n);
  fr_test::fill_pattern(v, seq);
  return v;
}

// The position a consumer publishes to free space: the ring's head, or (broadcast) the
// consumer's own cursor.
template <Mode M>
std::uint64_t published(const Ring& ring, const Reader<M>& r) {
  if constexpr (M == Mode::broadcast) {
    return r.attachment().slot().cursor.load();
  } else {
    return ring.control().consumer.head.load();
  }
}

// Writes then reads one record of `size` pattern bytes, checking every byte and the alignment.
// The ring is empty before and after.
// (Generic: Writer<M> names a member type, from which M cannot be deduced.)
template <class W, class R>
bool round_trip(W& w, R& r, std::size_t size, std::uint64_t seq) {
  if (w.try_write(pattern(size, seq)) != Status::ok) return false;
  auto got = r.try_read();
  if (!got) return false;
  const bool ok = got->bytes.size() == size && fr_test::check_pattern(got->bytes, seq) &&
                  reinterpret_cast<std::uintptr_t>(got->bytes.data()) % 16 == 0;
  r.release();
  return ok;
}

// Moves an empty ring's position to `offset` with filler records that never pad.
template <class W, class R>
void move_to(W& w, R& r, std::uint64_t offset) {
  // The largest frame whose whole payload is allowed (max_record_size need not be aligned).
  const std::uint64_t max_frame =
      (w.max_record_size() + layout::kRecordHeaderSize) & ~std::uint64_t{layout::kRecordAlign - 1};
  for (int i = 0; i < 8 && (w.position() & (kCap - 1)) != offset; ++i) {
    const std::uint64_t cur = w.position() & (kCap - 1);
    const std::uint64_t gap = (offset - cur) & (kCap - 1);
    const std::uint64_t frame = std::min({gap, max_frame, kCap - cur});
    REQUIRE(round_trip(w, r, frame - layout::kRecordHeaderSize, 7));
  }
  REQUIRE((w.position() & (kCap - 1)) == offset);
}

// One attachment of `role` in mode M: a Writer<M> or a Reader<M>.
template <Mode M>
struct Endpoint {
  Endpoint(const Ring& ring, layout::Role role) {
    if (role == layout::Role::producer) w.emplace(ring);
    else r.emplace(ring);
  }
  [[nodiscard]] const Attachment& attachment() const {
    return w ? w->attachment() : r->attachment();
  }
  std::optional<Writer<M>> w;
  std::optional<Reader<M>> r;
};

// The same attachment through the typed layer: a Producer<Msg, M> or a Consumer<Msg, M>.
template <Mode M>
void attach_typed(const Ring& ring, layout::Role role) {
  if (role == layout::Role::producer) {
    Producer<Msg, M> p(ring);
  } else {
    Consumer<Msg, M> c(ring);
  }
}

const char* name_of(Status s) { return to_string(s).data(); }  // to_string's views end in '\0'

}  // namespace

// ---------------------------------------------------------------- refusal

TEMPLATE_TEST_CASE(
    "every endpoint of another mode refuses the ring: wrong_mode, and no slot is taken", "[modes]",
    FR_ALL_MODES) {
  constexpr Mode M = TestType::value;
  Fixture<M> f;
  for (const Mode other : kModes) {
    if (other == M) continue;
    const std::string other_name(to_string(other));
    CAPTURE(other_name);
    visit_mode(other, [&](auto mode) {
      constexpr Mode N = decltype(mode)::value;
      CHECK(error_code([&] { Writer<N> w(f.ring); }) == Errc::wrong_mode);
      CHECK(error_code([&] { Reader<N> r(f.ring); }) == Errc::wrong_mode);
      CHECK(error_code([&] { Producer<Msg, N> p(f.ring); }) == Errc::wrong_mode);
      CHECK(error_code([&] { Consumer<Msg, N> c(f.ring); }) == Errc::wrong_mode);
      CHECK(error_code([&] { (void)Ring::open(f.name, {.expect_mode = N}); }) == Errc::wrong_mode);
      CHECK(error_code([&] { (void)open_ring<Msg>(f.name, {.expect_mode = N}); }) ==
            Errc::wrong_mode);
    });
  }
  // Refused before attaching: no peer slot is held, no role owned.
  CHECK(census(f.ring, layout::Role::producer).alive == 0);
  CHECK(census(f.ring, layout::Role::consumer).alive == 0);
  CHECK(f.ring.control().owners.producer.load() == 0);
  CHECK(f.ring.control().owners.consumer.load() == 0);
  // The ring's own mode is accepted by every endpoint (one at a time: some roles are exclusive).
  CHECK(error_code([&] { Writer<M> w(f.ring); }) == std::nullopt);
  CHECK(error_code([&] { Reader<M> r(f.ring); }) == std::nullopt);
  CHECK(error_code([&] { Producer<Msg, M> p(f.ring); }) == std::nullopt);
  CHECK(error_code([&] { Consumer<Msg, M> c(f.ring); }) == std::nullopt);
  CHECK(error_code([&] { (void)open_ring<Msg>(f.name, {.expect_mode = M}); }) == std::nullopt);
}

TEMPLATE_TEST_CASE(
    "an exclusive role held by a live process is refused to another process (role_taken), "
    "and shared roles attach many times",
    "[modes][process]", FR_ALL_MODES) {
  constexpr Mode M = TestType::value;
  Fixture<M> f;
  const layout::Role role = GENERATE(layout::Role::producer, layout::Role::consumer);
  const bool producer = role == layout::Role::producer;
  const bool exclusive = producer ? exclusive_producer(M) : exclusive_consumer(M);
  CAPTURE(producer, exclusive);

  SECTION("held by a child, wanted by the parent") {
    fr_test::SharedWords ready(1);  // 1: the child holds the role; 2: it could not attach
    fr_test::ParkedChild holder(fr_test::spawn([&]() -> int {
      try {
        Endpoint<M> e(Ring::open(f.name), role);
        ready[0].store(1);
        for (;;) ::pause();
      } catch (...) {
        ready[0].store(2);
      }
      return 2;
    }));
    fr_test::wait_for([&] { return ready[0].load() != 0; });
    REQUIRE(ready[0].load() == 1);
    if (exclusive) {
      CHECK(error_code([&] { Endpoint<M> e(f.ring, role); }) == Errc::role_taken);
      CHECK(error_code([&] { attach_typed<M>(f.ring, role); }) == Errc::role_taken);
      CHECK(census(f.ring, role).alive == 1);  // a refused attach gives its slot back
    } else {
      Endpoint<M> a(f.ring, role);
      Endpoint<M> b(f.ring, role);
      CHECK(error_code([&] { attach_typed<M>(f.ring, role); }) == std::nullopt);
      CHECK(census(f.ring, role).alive == 3);
    }
    // Dead, the holder holds nothing: the role is free, and an exclusive one is taken over.
    CHECK(holder.kill_and_join() == 128 + SIGKILL);
    Endpoint<M> after(f.ring, role);
    CHECK(after.attachment().took_over() == exclusive);
  }
  SECTION("held by the parent, wanted by a child") {
    Endpoint<M> mine(f.ring, role);
    const pid_t child = fr_test::spawn([&] {
      const Ring ring = Ring::open(f.name);
      const auto raw = error_code([&] { Endpoint<M> e(ring, role); });
      const auto typed = error_code([&] { attach_typed<M>(ring, role); });
      const std::optional<Errc> expect = exclusive ? std::optional(Errc::role_taken) : std::nullopt;
      return raw == expect && typed == expect ? 0 : 1;
    });
    CHECK(fr_test::join(child) == 0);
    CHECK_FALSE(mine.attachment().took_over());
  }
}

// ---------------------------------------------------------------- record sizes and the wrap

TEMPLATE_TEST_CASE(
    "a record one byte over max_record_size is too_large and leaves no trace, and one of "
    "exactly the maximum round-trips",
    "[modes]", FR_ALL_MODES) {
  constexpr Mode M = TestType::value;
  const std::uint64_t max = GENERATE(std::uint64_t{777}, max_record_size_for(kCap));
  CAPTURE(max);
  Fixture<M> f(max);
  REQUIRE(f.ring.info().max_record_size == max);
  Writer<M> w(f.ring);
  Reader<M> r(f.ring);  // broadcast: joined before anything is written
  CHECK(w.max_record_size() == max);
  CHECK(r.max_record_size() == max);

  const auto big = pattern(max + 1, 5);
  const std::uint64_t tail = f.ring.control().producer.tail.load();
  CHECK(w.try_write(big) == Status::too_large);
  CHECK(w.write(big, 30s) == Status::too_large);  // refused at once, not waited on
  CHECK(w.try_reserve(max + 1).status() == Status::too_large);
  CHECK(w.reserve(max + 1, 30s).status() == Status::too_large);
  CHECK(w.commit(0) == Status::invalid_state);  // nothing was reserved
  CHECK(w.position() == tail);
  CHECK(f.ring.control().producer.tail.load() == tail);
  CHECK(r.try_read().status() == Status::empty);
  CHECK(w.attachment().slot().counter[layout::too_large].load() == 4);

  // Exactly the maximum, copied in and reserved in place, wherever the ring wraps.
  std::uint64_t seq = 100;
  for (const std::uint64_t offset : {std::uint64_t{0}, std::uint64_t{16}, kCap / 2, kCap - 16}) {
    CAPTURE(offset);
    move_to(w, r, offset);
    CHECK(round_trip(w, r, max, ++seq));
    move_to(w, r, offset);
    auto span = w.try_reserve(max);
    REQUIRE(span.has_value());
    REQUIRE(span->size() == max);
    fr_test::fill_pattern(*span, ++seq);
    REQUIRE(w.commit(max) == Status::ok);
    auto got = r.try_read();
    REQUIRE(got.has_value());
    CHECK(got->bytes.size() == max);
    CHECK(fr_test::check_pattern(got->bytes, seq));
    r.release();
    CHECK(r.try_read().status() == Status::empty);
  }
  CHECK(w.attachment().slot().counter[layout::too_large].load() == 4);
}

TEMPLATE_TEST_CASE("records of every size wrap correctly at every 16-byte offset of a small ring",
                   "[modes]", FR_ALL_MODES) {
  constexpr Mode M = TestType::value;
  Fixture<M> f;
  Writer<M> w(f.ring);
  Reader<M> r(f.ring);  // broadcast: joined before anything is written
  const std::size_t max = w.max_record_size();
  std::uint64_t seq = 1000;
  for (std::uint64_t offset = 0; offset < kCap; offset += 16) {
    for (const std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{15}, std::size_t{16},
                                   std::size_t{17}, std::size_t{200}, std::size_t{1000}, max}) {
      CAPTURE(offset, size);
      move_to(w, r, offset);
      const std::uint64_t before = w.position();
      const std::uint64_t frame = layout::frame_size(size);
      // A record never straddles the end: what does not fit before it is padded over.
      const std::uint64_t pad = frame > kCap - offset ? kCap - offset : 0;
      ++seq;
      REQUIRE(w.try_write(pattern(size, seq)) == Status::ok);
      CHECK(w.position() - before == pad + frame);
      auto got = r.try_read();
      REQUIRE(got.has_value());
      CHECK(got->position == before + pad);
      CHECK(got->bytes.size() == size);
      CHECK(fr_test::check_pattern(got->bytes, seq));
      CHECK(reinterpret_cast<std::uintptr_t>(got->bytes.data()) % 16 == 0);
      r.release();
      CHECK(r.try_read().status() == Status::empty);
      CHECK(published<M>(f.ring, r) ==
            w.position());  // every byte, padding included, is free again
    }
  }
}

// ---------------------------------------------------------------- batched polling

TEMPLATE_TEST_CASE("poll delivers up to max records and releases them as one batch, publishing the "
                   "position once",
                   "[modes]", FR_ALL_MODES) {
  constexpr Mode M = TestType::value;
  Fixture<M> f;
  Writer<M> w(f.ring);
  Reader<M> r(f.ring);
  // 128-byte frames: 32 fill the ring exactly, so no record ever pads (a padding record is
  // released on its own, in the middle of a batch).
  constexpr std::size_t kSize = 100;
  static_assert(kCap % layout::frame_size(kSize) == 0);
  const auto filler = pattern(kSize, ~std::uint64_t{0});
  std::uint64_t written = 0, delivered = 0;

  for (int round = 0; round < 24; ++round) {  // about five laps
    CAPTURE(round);
    while (w.try_write(pattern(kSize, written)) == Status::ok) ++written;
    REQUIRE(w.try_write(filler) == Status::full);

    // try_read returns the same record until it is released, and poll hands that one over first.
    auto a = r.try_read();
    auto b = r.try_read();
    REQUIRE((a && b));
    CHECK(a->bytes.data() == b->bytes.data());
    CHECK(a->position == b->position);

    const std::size_t max =
        std::array<std::size_t, 3>{1, 7, 64}[static_cast<std::size_t>(round) % 3];
    const std::uint64_t at = published<M>(f.ring, r);
    const std::uint64_t first = delivered;
    bool in_order = true, held_back = true, kept_full = true;
    const std::size_t n = r.poll(
        [&](std::span<const std::byte> bytes) {
          in_order = in_order && bytes.size() == kSize && fr_test::check_pattern(bytes, delivered);
          ++delivered;
          // Nothing of the batch is released before it ends: the producer still finds it full.
          held_back = held_back && published<M>(f.ring, r) == at;
          kept_full = kept_full && w.try_write(filler) == Status::full;
        },
        max);
    CHECK(n == std::min<std::uint64_t>(max, written - first));
    CHECK(delivered == first + n);
    CHECK(in_order);
    CHECK(held_back);
    CHECK(kept_full);
    CHECK(published<M>(f.ring, r) == at + n * layout::frame_size(kSize));  // once, for the batch
    if constexpr (kHotCounters) {
      CHECK(r.attachment().slot().counter[layout::records_read].load() == delivered);
    }
  }
  while (delivered < written) {
    const std::size_t n = r.poll(
        [&](std::span<const std::byte> bytes) {
          CHECK(fr_test::check_pattern(bytes, delivered++));
        },
        64);
    REQUIRE(n > 0);
  }
  CHECK(written > 4 * kCap / layout::frame_size(kSize));
  CHECK(r.poll([](std::span<const std::byte>) { FAIL("nothing is left"); }, 64) == 0);
  CHECK(r.last_status() == Status::empty);
  CHECK(published<M>(f.ring, r) == w.position());
}

TEMPLATE_TEST_CASE("poll whose callback throws releases the records before it and keeps the one "
                   "it was given",
                   "[modes]", FR_ALL_MODES) {
  constexpr Mode M = TestType::value;
  Fixture<M> f;
  Writer<M> w(f.ring);
  Reader<M> r(f.ring);
  constexpr std::size_t kSize = 100;
  std::uint64_t written = 0;
  while (w.try_write(pattern(kSize, written)) == Status::ok) ++written;
  REQUIRE(written > 3);
  const std::uint64_t at = published<M>(f.ring, r);
  std::uint64_t seen = 0;
  struct Stop {};
  CHECK_THROWS_AS(r.poll(
                      [&](std::span<const std::byte> bytes) {
                        if (seen == 2) throw Stop{};
                        CHECK(fr_test::check_pattern(bytes, seen++));
                      },
                      64),
                  Stop);
  // The two records before the throw are freed: the producers see their space.
  CHECK(published<M>(f.ring, r) == at + 2 * layout::frame_size(kSize));
  CHECK(w.try_write(pattern(kSize, written)) == Status::ok);
  ++written;
  // The third is still held: it comes again, then the rest in order.
  std::uint64_t next = 2;
  while (next < written) {
    const std::size_t n = r.poll(
        [&](std::span<const std::byte> bytes) { CHECK(fr_test::check_pattern(bytes, next++)); },
        64);
    REQUIRE(n > 0);
  }
  CHECK(r.try_read().status() == Status::empty);
}

TEMPLATE_TEST_CASE("poll keeps up with producer processes streaming through many laps",
                   "[modes][process]", FR_ALL_MODES) {
  constexpr Mode M = TestType::value;
  Fixture<M> f;
  const std::uint32_t producers = exclusive_producer(M) ? 1 : 2;
  const std::uint64_t per_producer = fr_test::scaled(20'000);
  Reader<M> r(f.ring);  // before anything is written (broadcast: joined)
  std::vector<pid_t> kids;
  for (std::uint32_t p = 0; p < producers; ++p) {
    kids.push_back(fr_test::spawn([&, p] {
      Writer<M> w(Ring::open(f.name));
      std::byte buf[64];
      for (std::uint64_t seq = 0; seq < per_producer; ++seq) {
        const Status s = w.write({buf, fr_test::make_tagged(buf, p, seq)}, 30s);
        if (s != Status::ok) {
          std::fprintf(stderr, "producer %u, record %llu: %s\n", p,
                       static_cast<unsigned long long>(seq), name_of(s));
          return 2;
        }
      }
      return 0;
    }));
  }
  std::vector<std::uint64_t> next(producers, 0);
  std::uint64_t total = 0;
  bool ok = true;
  while (total < producers * per_producer && ok) {
    const std::size_t n = r.poll(
        [&](std::span<const std::byte> b) {
          const auto tag = fr_test::tagged_of(b);
          if (!tag || tag->producer >= producers || tag->seq != next[tag->producer]) ok = false;
          else ++next[tag->producer];
        },
        64);
    total += n;
    if (n == 0) {
      // Nothing ready (or a claim still being written): wait for it instead of spinning. The
      // record stays held, and the next poll hands it over first.
      const Status why = r.last_status();
      const Status waited = r.read(30s).status();
      if (why != Status::empty || waited != Status::ok) {
        FAIL_CHECK("after " << total << " records: poll " << name_of(why) << ", read "
                            << name_of(waited));
        break;
      }
    }
  }
  CHECK(ok);
  for (const pid_t k : kids) CHECK(fr_test::join(k) == 0);
  for (std::uint32_t p = 0; p < producers; ++p) CHECK(next[p] == per_producer);
  CHECK(r.try_read().status() == Status::empty);  // nothing extra
}

// ---------------------------------------------------------------- segment_lost

namespace {

enum class Blocked { reader, typed_consumer, writer, reserver, typed_producer };

const char* name_of(Blocked b) {
  switch (b) {
    case Blocked::reader: return "Reader::read";
    case Blocked::typed_consumer: return "Consumer::receive";
    case Blocked::writer: return "Writer::write";
    case Blocked::reserver: return "Writer::reserve";
    case Blocked::typed_producer: return "Producer::send";
  }
  return "?";
}

constexpr bool produces(Blocked b) {
  return b == Blocked::writer || b == Blocked::reserver || b == Blocked::typed_producer;
}

}  // namespace

TEMPLATE_TEST_CASE(
    "a peer that shrinks the segment under a blocked reader or writer: segment_lost, "
    "and the process exits normally",
    "[modes][process][sigbus]", FR_ALL_MODES) {
  constexpr Mode M = TestType::value;
  const Blocked victim = GENERATE(Blocked::reader, Blocked::typed_consumer, Blocked::writer,
                                  Blocked::reserver, Blocked::typed_producer);
  // 0: nothing left; 4096: the first page of the control area is left, the record area is gone.
  const off_t new_size = GENERATE(off_t{0}, off_t{4096});
  const std::string blocked_in = name_of(victim);
  CAPTURE(blocked_in, new_size);
  Fixture<M> f;
  // The peer on the other side stays alive and attached: only the loss can end the wait.
  std::optional<Writer<M>> peer_writer;
  std::optional<Reader<M>> peer_reader;
  if (produces(victim)) peer_reader.emplace(f.ring);
  else peer_writer.emplace(f.ring);
  int ready[2];
  REQUIRE(::pipe(ready) == 0);

  const pid_t child = fr_test::spawn([&] {
    ::close(ready[0]);
    const Ring opened = Ring::open(f.name);
    const char c = 1;
    Status last = Status::ok;
    if (victim == Blocked::writer || victim == Blocked::reserver) {
      Writer<M> w(opened, kFast);
      const auto p = pattern(1000, 1);
      while (w.try_write(p) == Status::ok) {
      }
      if (::write(ready[1], &c, 1) != 1) return 2;
      // full: blocks until the segment is lost
      if (victim == Blocked::writer) {
        last = w.write(p, 30s);
      } else {
        last = w.reserve(p.size(), 30s).status();
        w.abort();
      }
    } else if (victim == Blocked::typed_producer) {
      Producer<Msg, M> producer(opened, kFast);
      flatbuffers::FlatBufferBuilder fbb;
      fr_test::build_msg(fbb, 1, 900);
      while (producer.try_send(fbb) == Status::ok) {
      }
      if (::write(ready[1], &c, 1) != 1) return 2;
      last = producer.send(fbb, 30s);
    } else if (victim == Blocked::reader) {
      Reader<M> r(opened, kFast);
      if (::write(ready[1], &c, 1) != 1) return 2;
      last = r.read(30s).status();  // empty: blocks until the segment is lost
    } else {
      Consumer<Msg, M> consumer(opened, ConsumerOptions{.wait = kFast});
      if (::write(ready[1], &c, 1) != 1) return 2;
      last = consumer.receive(30s).status();
    }
    if (last != Status::segment_lost) {
      std::fprintf(stderr, "%s %s: expected segment_lost, got %s\n", to_string(M).data(),
                   name_of(victim), name_of(last));
      return 10 + static_cast<int>(last);
    }
    return opened.lost() ? 0 : 4;
  });
  ::close(ready[1]);
  char c = 0;
  REQUIRE(::read(ready[0], &c, 1) == 1);
  ::close(ready[0]);
  // Asleep in the blocking call, not on its way there.
  const auto& line = produces(victim) ? f.ring.control().space : f.ring.control().data;
  fr_test::wait_for([&] { return line.waiters.load() != 0; });
  fr_test::shrink(f.name, new_size);
  CHECK(fr_test::join(child) == 0);  // 10 + n: the blocking call returned Status n instead
}

namespace {

enum class Polling { reader, writer };

}  // namespace

TEMPLATE_TEST_CASE("a peer that shrinks the segment under a polling reader or writer: it observes "
                   "segment_lost and exits normally",
                   "[modes][process][sigbus]", FR_ALL_MODES) {
  constexpr Mode M = TestType::value;
  const Polling victim = GENERATE(Polling::reader, Polling::writer);
  const std::string polling = victim == Polling::reader ? "Reader::try_read" : "Writer::try_write";
  CAPTURE(polling);
  Fixture<M> f;
  std::optional<Writer<M>> peer_writer;
  std::optional<Reader<M>> peer_reader;  // the writer's consumer: attached, never reads
  if (victim == Polling::writer) peer_reader.emplace(f.ring);
  else peer_writer.emplace(f.ring);
  int ready[2];
  REQUIRE(::pipe(ready) == 0);

  const pid_t child = fr_test::spawn([&] {
    ::close(ready[0]);
    const Ring opened = Ring::open(f.name);
    const char c = 1;
    const auto give_up = std::chrono::steady_clock::now() + 30s;  // a hang guard only
    Status last = Status::ok;
    bool observed = false;
    if (victim == Polling::writer) {
      Writer<M> w(opened, kFast);
      const auto p = pattern(100, 1);
      while (w.try_write(p) == Status::ok) {
      }
      if (::write(ready[1], &c, 1) != 1) return 2;
      // full until the loss; then maybe ok for a while (docs/security.md: a write may land in
      // the private zero pages that replaced the segment), then segment_lost.
      while (!observed && std::chrono::steady_clock::now() < give_up) {
        last = w.try_write(p);
        if (last != Status::full && last != Status::ok && last != Status::segment_lost) break;
        observed = last == Status::segment_lost;
        std::this_thread::sleep_for(100us);
      }
    } else {
      Reader<M> r(opened, kFast);
      if (::write(ready[1], &c, 1) != 1) return 2;
      while (!observed && std::chrono::steady_clock::now() < give_up) {
        last = r.try_read().status();
        if (last != Status::empty && last != Status::segment_lost) break;
        observed = last == Status::segment_lost;
        std::this_thread::sleep_for(100us);
      }
    }
    if (!observed) {
      std::fprintf(stderr, "%s: expected segment_lost, last saw %s\n", to_string(M).data(),
                   name_of(last));
      return 10 + static_cast<int>(last);
    }
    return opened.lost() ? 0 : 4;
  });
  ::close(ready[1]);
  char c = 0;
  REQUIRE(::read(ready[0], &c, 1) == 1);
  ::close(ready[0]);
  fr_test::shrink(f.name, 0);
  CHECK(fr_test::join(child) == 0);  // 10 + n: the poll ended on Status n instead
}

// ---------------------------------------------------------------- dead peers

TEMPLATE_TEST_CASE("writers blocked on a full ring whose consumer process is SIGKILLed: peer_dead "
                   "(broadcast: the dead consumer is reclaimed and the write goes through)",
                   "[modes][process][wait]", FR_ALL_MODES) {
  constexpr Mode M = TestType::value;
  Fixture<M> f;
  const std::uint32_t writers = exclusive_producer(M) ? 1 : 2;
  // [0]: the consumer is attached; [1 + p]: records writer p committed; [1 + writers + p]: 1 + the
  // Status of writer p's next write, after the blocked one.
  fr_test::SharedWords shared(1 + 2 * writers);

  fr_test::ParkedChild consumer(fr_test::spawn([&]() -> int {
    Reader<M> r(Ring::open(f.name));
    shared[0].store(1);
    for (;;) ::pause();  // attached, never reads
  }));
  fr_test::wait_for([&] { return shared[0].load() == 1; });

  std::vector<pid_t> kids;
  for (std::uint32_t p = 0; p < writers; ++p) {
    kids.push_back(fr_test::spawn([&, p] {
      Writer<M> w(Ring::open(f.name), kFast);
      std::byte buf[64];
      for (std::uint64_t seq = 0;; ++seq) {
        const std::span<const std::byte> rec{buf, fr_test::make_tagged(buf, p, seq)};
        Status s = w.try_write(rec);
        if (s == Status::ok) {
          shared[1 + p].store(seq + 1);
          continue;
        }
        if (s != Status::full) return 50 + static_cast<int>(s);
        s = w.write(rec, 30s);  // full, and nobody reads: blocks
        if (s == Status::ok) shared[1 + p].store(++seq);
        // Once more: the dead consumer is reclaimed by now.
        const std::span<const std::byte> again{buf, fr_test::make_tagged(buf, p, seq)};
        const Status next = w.write(again, 30s);
        if (next == Status::ok) shared[1 + p].store(seq + 1);
        shared[1 + writers + p].store(1 + static_cast<std::uint64_t>(next));
        return 10 + static_cast<int>(s);  // what the blocked write returned
      }
    }));
  }
  // Every writer asleep on the full ring, then its only consumer dies.
  fr_test::wait_for([&] { return f.ring.control().space.waiters.load() == writers; });
  CHECK(consumer.kill_and_join() == 128 + SIGKILL);

  std::vector<Status> got;
  for (const pid_t k : kids) {
    const int rc = fr_test::join(k);
    REQUIRE(rc >= 10);
    REQUIRE(rc < 50);
    got.push_back(static_cast<Status>(rc - 10));
  }
  std::vector<Status> then;
  for (std::uint32_t p = 0; p < writers; ++p) {
    then.push_back(static_cast<Status>(shared[1 + writers + p].load() - 1));
  }
  if constexpr (M == Mode::broadcast) {
    // Lossless, but only toward live consumers: the dead one stops holding the producer back.
    CHECK(got[0] == Status::ok);
    CHECK(then[0] == Status::ok);  // nobody attached: nobody to wait for
  } else {
    // The first to look reclaims the dead consumer (peer_dead); a writer that looks after that
    // finds nobody attached (no_consumer).
    CHECK(std::count(got.begin(), got.end(), Status::peer_dead) >= 1);
    for (const Status s : got) CHECK((s == Status::peer_dead || s == Status::no_consumer));
    for (const Status s : then) CHECK(s == Status::no_consumer);
  }
  CHECK(census(f.ring, layout::Role::consumer).dead == 0);  // reclaimed
  CHECK(census(f.ring, layout::Role::consumer).alive == 0);

  std::uint64_t committed = 0;
  for (std::uint32_t p = 0; p < writers; ++p) committed += shared[1 + p].load();
  CHECK(committed * 64 >= kCap / 2);  // the ring was full
  if constexpr (M != Mode::broadcast) {
    // Nothing committed was lost with the consumer: a new one reads every record, in order.
    Reader<M> r(f.ring);
    std::vector<std::uint64_t> next(writers, 0);
    std::uint64_t total = 0;
    bool in_order = true;
    while (auto rec = r.try_read()) {
      const auto tag = fr_test::tagged_of(rec->bytes);
      if (!tag || tag->producer >= writers || tag->seq != next[tag->producer]) {
        in_order = false;
        break;
      }
      ++next[tag->producer];
      ++total;
      r.release();
    }
    CHECK(in_order);
    CHECK(r.last_status() == Status::empty);
    CHECK(total == committed);
    for (std::uint32_t p = 0; p < writers; ++p) CHECK(next[p] == shared[1 + p].load());
  }
}

TEMPLATE_TEST_CASE(
    "a reader blocked on an empty ring whose only producer process was SIGKILLed: every "
    "record, then peer_dead",
    "[modes][process][wait]", FR_ALL_MODES) {
  constexpr Mode M = TestType::value;
  Fixture<M> f;
  Reader<M> r(f.ring, kFast);  // before anything is written (broadcast: joined)
  constexpr std::uint64_t kRecords = 50;
  fr_test::SharedWords shared(1);  // 1: the reader has every record
  auto read_all = [&] {
    for (std::uint64_t seq = 0; seq < kRecords; ++seq) {
      auto got = r.read(30s);
      REQUIRE(got.has_value());
      const auto tag = fr_test::tagged_of(got->bytes);
      REQUIRE(tag.has_value());
      REQUIRE(tag->seq == seq);
      r.release();
    }
  };
  auto write_all = [&](Writer<M>& w) {
    std::byte buf[64];
    for (std::uint64_t seq = 0; seq < kRecords; ++seq) {
      if (w.write({buf, fr_test::make_tagged(buf, 0, seq)}, 30s) != Status::ok) return false;
    }
    return true;
  };

  SECTION("it dies while the reader sleeps") {
    fr_test::ParkedChild producer(fr_test::spawn([&] {
      Writer<M> w(Ring::open(f.name));
      if (!write_all(w)) return 2;
      fr_test::wait_for(
          [&] { return shared[0].load() == 1 && f.ring.control().data.waiters.load() != 0; });
      ::raise(SIGKILL);
      return 3;
    }));
    read_all();
    shared[0].store(1);
    CHECK(r.read(30s).status() == Status::peer_dead);
    CHECK(producer.kill_and_join() == 128 + SIGKILL);
  }
  SECTION("it died before the reader got there") {
    const pid_t producer = fr_test::spawn([&] {
      Writer<M> w(Ring::open(f.name));
      if (!write_all(w)) return 2;
      ::raise(SIGKILL);
      return 3;
    });
    CHECK(fr_test::join(producer) == 128 + SIGKILL);
    read_all();
    CHECK(r.read(30s).status() == Status::peer_dead);
    // Reclaimed now; no producer is attached, none was seen alive: the reader waits for one.
    CHECK(r.read(30ms).status() == Status::timed_out);
  }
  CHECK(census(f.ring, layout::Role::producer).dead == 0);  // reclaimed
}
