// Fuzz target: the typed verify-and-read path over arbitrary record bytes.
//
// The input is one record's payload. It is committed to two rings of fuzz_schema::Record, one
// read by a copy-then-verify Consumer (the default), one by an in-place Consumer; every field of
// what verifies is read (record_digest.hpp). Checked: both modes agree on the outcome and on every
// field; the outcome is ok or verify_failed, never anything else; the returned bytes are the
// committed ones.
#include "fuzz_common.hpp"
#include "record_digest.hpp"

#include <chrono>

namespace {

using namespace flatring;
using Record = flatring::fuzz_schema::Record;

struct Pair {
  Ring ring;
  Producer<Record> producer{ring};
  Consumer<Record> consumer;
  Pair(const std::string& name, bool in_place)
      : ring(create_ring<Record>(name, {.capacity = 1 << 16})),
        consumer(ring, ConsumerOptions{.in_place = in_place}) {}
};

Pair& copying() {
  static Pair p(fuzz::scratch_name("typed-copy"), false);
  return p;
}
Pair& in_place() {
  static Pair p(fuzz::scratch_name("typed-inplace"), true);
  return p;
}

struct Seen {
  Status status;
  std::uint64_t digest = 0;
};

Seen deliver(Pair& p, std::span<const std::byte> record) {
  FUZZ_CHECK(p.producer.raw().try_write(record) == Status::ok);
  auto got = p.consumer.try_receive();
  if (!got) return {got.status()};
  const auto b = p.consumer.bytes();
  FUZZ_CHECK(b.size() == record.size() && std::memcmp(b.data(), record.data(), b.size()) == 0);
  return {Status::ok, fuzz::digest(*got)};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Pair& a = copying();
  Pair& b = in_place();
  size = std::min<std::size_t>(size, a.producer.raw().max_record_size());
  const std::span<const std::byte> record(reinterpret_cast<const std::byte*>(data), size);
  const Seen x = deliver(a, record);
  const Seen y = deliver(b, record);
  FUZZ_CHECK(x.status == Status::ok || x.status == Status::verify_failed);
  FUZZ_CHECK(x.status == y.status && x.digest == y.digest);
  return 0;
}
