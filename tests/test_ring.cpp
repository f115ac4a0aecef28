// The spsc ring algorithm, white-box: full and empty edges, reserve/commit/abort, corrupt slots,
// impossible positions, blocking and wake-ups, resuming after a dead producer. What every mode
// shares (sizes, the wrap at every offset, batching, dead peers, segment_lost) is in
// test_modes.cpp.
#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <thread>
#include <vector>

#include "helpers.hpp"

using namespace flatring;
using namespace std::chrono_literals;
using fr_test::check_pattern;
using fr_test::error_code;
using fr_test::fill_pattern;
using fr_test::unique_name;

namespace {

constexpr std::uint64_t kCap = 4096;

std::vector<std::byte> pattern(std::size_t n, std::uint64_t seq) {
  std::vector<std::byte> v(n);
  fill_pattern(v, seq);
  return v;
}

// Writes then reads one record, checking every byte. Returns false on any mismatch.
bool round_trip(Writer<>& w, Reader<>& r, std::size_t size, std::uint64_t seq) {
  auto payload = pattern(size, seq);
  if (w.try_write(payload) != Status::ok) return false;
  auto got = r.try_read();
  if (!got) return false;
  bool ok = got->bytes.size() == size && check_pattern(got->bytes, seq) &&
            reinterpret_cast<std::uintptr_t>(got->bytes.data()) % 16 == 0;
  r.release();
  return ok;
}

struct Fixture {
  std::string name = unique_name("ring");
  RemoveGuard guard{name};
  Ring ring = Ring::create(name, {.capacity = kCap});
};

}  // namespace

TEST_CASE("full and empty edges", "[ring]") {
  Fixture f;
  Writer<> w(f.ring);
  Reader<> r(f.ring);
  CHECK(r.try_read().status() == Status::empty);
  auto payload = pattern(64, 0);
  // Each 64-byte record takes an 80-byte frame; 16 bytes stay free for the next frame word.
  const std::uint64_t fits = (kCap - 16) / layout::frame_size(64);
  for (std::uint64_t i = 0; i < fits; ++i) REQUIRE(w.try_write(payload) == Status::ok);
  CHECK(w.try_write(payload) == Status::full);
  CHECK(w.try_write({}) == Status::full);  // the last 16 bytes are the next frame word
  CHECK(w.try_reserve(0).status() == Status::full);
  for (std::uint64_t i = 0; i < fits; ++i) {
    auto got = r.try_read();
    REQUIRE(got);
    CHECK(got->bytes.size() == 64);
    r.release();
    if (i == 0) {
      CHECK(w.try_write({}) == Status::ok);  // space came back
    }
  }
  auto got = r.try_read();
  REQUIRE(got);
  CHECK(got->bytes.size() == 0);
  r.release();
  CHECK(r.try_read().status() == Status::empty);
  CHECK(r.position() == w.position());
}

TEST_CASE("reserve, commit less, and abort", "[ring]") {
  Fixture f;
  Writer<> w(f.ring);
  Reader<> r(f.ring);
  auto span = w.try_reserve(100);
  REQUIRE(span);
  CHECK(span->size() == 100);
  CHECK(reinterpret_cast<std::uintptr_t>(span->data()) % 16 == 0);
  CHECK(w.try_reserve(10).status() == Status::invalid_state);  // one reservation at a time
  fill_pattern(span->first(40), 9);
  CHECK(r.try_read().status() == Status::empty);  // nothing visible before commit
  CHECK(w.commit(101) == Status::invalid_state);
  CHECK(w.commit(40) == Status::ok);
  CHECK(w.commit(40) == Status::invalid_state);
  auto got = r.try_read();
  REQUIRE(got);
  CHECK(got->bytes.size() == 40);
  CHECK(check_pattern(got->bytes, 9));
  r.release();

  const auto before = w.position();
  REQUIRE(w.try_reserve(500));
  w.abort();
  CHECK(w.position() == before);
  CHECK(r.try_read().status() == Status::empty);
  CHECK(round_trip(w, r, 33, 10));
}

TEST_CASE("corrupt length slots are reported, never followed", "[ring]") {
  Fixture f;
  Writer<> w(f.ring);
  Reader<> r(f.ring);
  std::byte* data = f.ring.writable_data();
  auto& slot = detail::header_at(data, 0).frame;
  auto corrupt_with = [&](std::uint64_t frame) {
    slot.store(frame);
    CHECK(r.try_read().status() == Status::corrupt);
    CHECK(r.try_read().status() == Status::corrupt);  // stays put, does not advance
    CHECK(r.position() == 0);
    CHECK(r.last_status() == Status::corrupt);
  };
  REQUIRE(w.try_write(pattern(32, 1)) == Status::ok);

  SECTION("larger than the maximum record size") {
    corrupt_with(layout::make_frame(layout::RecordType::data, w.max_record_size() + 1));
    corrupt_with(layout::make_frame(layout::RecordType::data, layout::kLengthMask));
  }
  SECTION("larger than what is left before the end of the ring") {
    REQUIRE(r.try_read());  // consume the good record, then move near the end
    r.release();
    for (int i = 0; i < 3; ++i) REQUIRE(round_trip(w, r, 1000, 3));
    const auto at = r.position();
    REQUIRE(kCap - (at & (kCap - 1)) < layout::frame_size(w.max_record_size()));
    REQUIRE(w.try_write(pattern(100, 4)) == Status::ok);
    // Within max_record_size, but it would run past the end of the mapping.
    detail::header_at(data, at & (kCap - 1))
        .frame.store(layout::make_frame(layout::RecordType::data, w.max_record_size()));
    CHECK(r.try_read().status() == Status::corrupt);
    CHECK(r.try_read().status() == Status::corrupt);
    CHECK(r.position() == at);
  }
  SECTION("padding that does not end at the end of the ring (misaligned)") {
    corrupt_with(layout::make_frame(layout::RecordType::padding, 32));
  }
  SECTION("unknown type or flag bits") {
    corrupt_with(layout::make_frame(static_cast<layout::RecordType>(9), 32));
    corrupt_with(layout::make_frame(layout::RecordType::data, 32) | (1ull << 50));
  }
  // Corruption is counted once per position, and recover() resumes the stream at the tail.
  const auto& counters =
      f.ring.control().peers[f.ring.control().owners.consumer.load() - 1].counter;
  CHECK(counters[layout::corrupt_records].load() == 1);
  CHECK(r.recover() == Status::abandoned);
  CHECK(r.position() == w.position());
  CHECK(round_trip(w, r, 48, 2));
}

TEST_CASE("a consumer cannot trick the producer with an impossible head", "[ring]") {
  Fixture f;
  Writer<> w(f.ring);
  auto p = pattern(1000, 1);
  while (w.try_write(p) == Status::ok) {
  }
  f.ring.control().consumer.head.store(w.position() + 4096);  // ahead of the tail
  CHECK(w.try_write(p) == Status::corrupt);
  f.ring.control().consumer.head.store(8);  // misaligned
  CHECK(w.try_write(p) == Status::corrupt);
}

TEST_CASE("blocking read times out, and wakes on a write", "[ring][wait]") {
  Fixture f;
  Reader<> r(f.ring, {.spin = 0ns});
  CHECK(r.read(20ms).status() == Status::timed_out);
  CHECK(r.read(0ns).status() == Status::timed_out);
  pid_t child = fr_test::spawn([&] {
    Writer<> w(f.ring);
    // Write only once the reader counts itself a sleeper (not after a guessed delay: a loaded
    // machine can keep the reader from getting there), so the write must wake it.
    const auto give_up = std::chrono::steady_clock::now() + 60s;
    while (f.ring.control().data.waiters.load() == 0) {
      if (std::chrono::steady_clock::now() > give_up) return 2;
      std::this_thread::sleep_for(1ms);
    }
    return w.try_write(pattern(77, 3)) == Status::ok ? 0 : 1;
  });
  auto got = r.read(60s);
  REQUIRE(got);
  CHECK(check_pattern(got->bytes, 3));
  CHECK(fr_test::join(child) == 0);
  const auto& c = f.ring.control().peers[f.ring.control().owners.consumer.load() - 1].counter;
  CHECK(c[layout::futex_sleeps].load() >= 1);
  CHECK(f.ring.control().retired.value[layout::futex_wakes].load() >= 1);
}

TEST_CASE("blocking write: timed out, no consumer, and woken by a release", "[ring][wait]") {
  Fixture f;
  Writer<> w(f.ring, {.spin = 0ns, .liveness_interval = 20ms});
  auto p = pattern(500, 1);
  while (w.try_write(p) == Status::ok) {
  }
  SECTION("no consumer attached") { CHECK(w.write(p, 10s) == Status::no_consumer); }
  SECTION("consumer attached but idle") {
    Reader<> r(f.ring);
    CHECK(w.write(p, 30ms) == Status::timed_out);
  }
  SECTION("consumer releases") {
    pid_t child = fr_test::spawn([&] {
      Reader<> r(f.ring);
      std::this_thread::sleep_for(100ms);
      return r.poll([](auto) {}, 1000) > 0 ? 0 : 1;
    });
    CHECK(w.write(p, 60s) == Status::ok);
    CHECK(fr_test::join(child) == 0);
  }
}

TEST_CASE("a new producer resumes after one that died mid-commit", "[ring]") {
  Fixture f;
  Reader<> r(f.ring);
  {
    Writer<> w(f.ring);
    REQUIRE(w.try_write(pattern(40, 1)) == Status::ok);
  }
  // Simulate a death after publishing the tail but before the frame word: a hole at the tail.
  auto& ctrl = f.ring.control();
  const auto tail = ctrl.producer.tail.load();
  ctrl.producer.tail.store(tail + layout::frame_size(100));
  Writer<> w2(f.ring);
  CHECK(w2.position() == tail);
  REQUIRE(w2.try_write(pattern(50, 2)) == Status::ok);
  auto a = r.try_read();
  REQUIRE(a);
  CHECK(check_pattern(a->bytes, 1));
  r.release();
  auto b = r.try_read();
  REQUIRE(b);
  CHECK(check_pattern(b->bytes, 2));
  r.release();
}

TEST_CASE("impossible positions are refused at attach, without walking forever", "[ring]") {
  Fixture f;
  auto& ctrl = f.ring.control();
  SECTION("positions near 2^64 with valid-looking frames everywhere") {
    std::byte* data = f.ring.writable_data();
    for (std::uint64_t off = 0; off < kCap; off += 16) {
      detail::header_at(data, off).frame.store(layout::make_frame(layout::RecordType::data, 0));
    }
    ctrl.consumer.head.store(~std::uint64_t{0} - 31);  // 2^64 - 32
    ctrl.producer.tail.store(~std::uint64_t{0} - 15);  // 2^64 - 16
    Writer<> w(f.ring);  // the recovery walk stops at the published tail instead of wrapping to 0
    CHECK(w.position() == ~std::uint64_t{0} - 15);
  }
  SECTION("a full capacity between head and tail") {
    ctrl.producer.tail.store(kCap);
    CHECK(error_code([&] { Writer<> w(f.ring); }) == Errc::corrupt_state);
    CHECK(error_code([&] { Reader<> r(f.ring); }) == Errc::corrupt_state);
  }
  SECTION("tail behind head, or misaligned") {
    ctrl.consumer.head.store(64);
    CHECK(error_code([&] { Reader<> r(f.ring); }) == Errc::corrupt_state);
    ctrl.consumer.head.store(0);
    ctrl.producer.tail.store(8);
    CHECK(error_code([&] { Writer<> w(f.ring); }) == Errc::corrupt_state);
  }
}

TEST_CASE("the published tail always names a zeroed frame word", "[ring]") {
  Fixture f;
  Writer<> w(f.ring);
  Reader<> r(f.ring);
  std::byte* data = f.ring.writable_data();
  // Fill every frame word with last-lap garbage, then check after each commit (including ones
  // that pad at the wrap) that the word at the published tail reads "not yet".
  for (std::uint64_t off = 0; off < kCap; off += 16) {
    detail::header_at(data, off).frame.store(layout::make_frame(layout::RecordType::data, 8));
  }
  detail::header_at(data, 0).frame.store(0);
  for (std::uint64_t i = 0; i < 200; ++i) {
    REQUIRE(w.try_write(pattern(100 + (i * 37) % 900, i)) == Status::ok);
    const auto tail = f.ring.control().producer.tail.load();
    CHECK(tail == w.position());
    CHECK(detail::header_at(data, tail & (kCap - 1)).frame.load() == 0);
    REQUIRE(r.try_read());
    r.release();
  }
  CHECK(r.recover() == Status::empty);  // nothing stuck: nothing skipped
  CHECK(r.position() == f.ring.control().producer.tail.load());
  CHECK(r.try_read().status() == Status::empty);
}

TEST_CASE("a takeover clears a sleeper count left by a peer that died asleep", "[ring][wait]") {
  Fixture f;
  pid_t child = fr_test::spawn([&] {
    Reader<> r(f.ring, {.spin = std::chrono::nanoseconds(0)});
    (void)r.read(std::chrono::seconds(30));  // asleep on the futex when killed
    return 0;
  });
  while (f.ring.control().data.waiters.load() == 0) std::this_thread::sleep_for(1ms);
  ::kill(child, SIGKILL);
  fr_test::join(child);
  CHECK(f.ring.control().data.waiters.load() == 1);
  Reader<> r(f.ring);
  CHECK(r.attachment().took_over());
  CHECK(f.ring.control().data.waiters.load() == 0);
}
