// Deferred release (ConsumerCore::keep / release_to): kept records hold their space until
// released, and a consumer that dies with kept records leaves them to the next one. The bridge's
// delivery rests on this (docs/bridge.md).
#include <cstring>
#include <vector>

#include "helpers.hpp"
#include "mode_types.hpp"

using namespace flatring;

namespace {

template <Mode M>
std::vector<std::byte> record_of(std::uint64_t seq, std::size_t size) {
  std::vector<std::byte> b(size);
  fr_test::fill_pattern(b, seq);
  return b;
}

}  // namespace

TEMPLATE_TEST_CASE("keep holds space until release_to, and a new consumer resumes at the release",
                   "[keep]", fr_test::Spsc, fr_test::Mpsc, fr_test::Broadcast) {
  constexpr Mode M = TestType::value;
  const std::string name = fr_test::unique_name("keep");
  RemoveGuard guard(name);
  // Small ring, so that kept records fill it and the padding at the wrap is kept and freed too.
  Ring ring = Ring::create(name, RingOptions{.capacity = 4096, .max_record_size = 1000, .mode = M});
  Writer<M> w(ring);
  auto r = std::make_unique<Reader<M>>(ring);

  std::uint64_t written = 0, read = 0;
  const std::size_t size = 300;  // 320 ring bytes: 12 fit, the wrap falls inside a record
  std::vector<std::uint64_t> ends;
  for (int lap = 0; lap < 20; ++lap) {
    while (w.try_write(record_of<M>(written, size)) == Status::ok) ++written;
    REQUIRE(w.try_write(record_of<M>(written, size)) == Status::full);
    // Read and keep everything: nothing is freed, the writer stays full.
    while (auto v = r->try_read()) {
      REQUIRE(fr_test::check_pattern(v->bytes, read));
      ++read;
      r->keep();
      ends.push_back(r->position());
    }
    REQUIRE(read == written);
    CHECK(w.try_write(record_of<M>(written, size)) == Status::full);
    // Free the first half: room for about half again.
    const std::size_t half = ends.size() / 2;
    r->release_to(ends[half - 1]);
    CHECK(r->released_position() == ends[half - 1]);
    std::uint64_t more = 0;
    while (w.try_write(record_of<M>(written, size)) == Status::ok) {
      ++written;
      ++more;
    }
    CHECK(more >= 1);
    // Up to the last record: a padding after it (mpsc pads when a claim fails at the wrap) stays
    // kept until a position past it is released.
    r->release_to(ends.back());
    CHECK(r->released_position() <= r->position());
    r->release_to(r->position());
    CHECK(r->released_position() == r->position());
    CHECK_FALSE(r->keeping());
    ends.clear();
    // Read what came meanwhile and release it normally.
    while (auto v = r->try_read()) {
      REQUIRE(fr_test::check_pattern(v->bytes, read));
      ++read;
      r->release();
    }
    REQUIRE(read == written);
  }

  if constexpr (M != Mode::broadcast) {
    // A consumer that goes away with kept records: the next one reads them again.
    REQUIRE(w.try_write(record_of<M>(written, size)) == Status::ok);
    REQUIRE(w.try_write(record_of<M>(written + 1, size)) == Status::ok);
    REQUIRE(w.try_write(record_of<M>(written + 2, size)) == Status::ok);
    auto v = r->try_read();
    REQUIRE(v);
    r->keep();
    r->release_to(r->position());  // the first is released
    REQUIRE(r->try_read());
    r->keep();
    REQUIRE(r->try_read());
    r->release();  // keeps: the second is still kept
    r.reset();
    Reader<M> again(ring);
    auto a = again.try_read();
    REQUIRE(a);
    CHECK(fr_test::check_pattern(a->bytes, written + 1));
    again.release();
    auto b = again.try_read();
    REQUIRE(b);
    CHECK(fr_test::check_pattern(b->bytes, written + 2));
    again.release();
    CHECK(again.try_read().status() == Status::empty);
  }
}
