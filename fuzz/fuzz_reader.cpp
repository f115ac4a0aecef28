// Fuzz target: the spsc Reader<> and Writer<> over a segment image the fuzzer controls.
//
// A real 4 KiB ring is created once. Each input resets its control area (all but the header, which
// open validates and nothing re-reads) and record area, then:
//   u8  role        0: a Reader<>, 1: a Writer<>, 2: both, attached to the fuzzed image
//   u64 tail, u64 head, u32 producer owner word, u32 consumer owner word
//   u16 n, then n bytes copied to the start of the record area
//   then up to 256 operations: the endpoints' calls interleaved with a hostile peer's stores to
//   frame words, positions, and any 8 bytes of the control area (header, wait words, peer slots).
// Checked: attach fails only with flatring::Error; every record view and every reservation lies
// inside the ring; the reader's position never goes back; nothing hangs (the timeouts are 0).
#include "fuzz_common.hpp"

#include <chrono>
#include <optional>
#include <vector>

namespace {

using namespace flatring;
using namespace std::chrono_literals;

constexpr std::uint64_t kCap = 4096;
constexpr int kMaxSteps = 256;

Ring& ring() {
  static Ring r = Ring::create(fuzz::scratch_name("reader"), {.capacity = kCap});
  return r;
}

std::atomic<std::uint64_t>& word_at(std::byte* base, std::uint64_t offset) {
  return *reinterpret_cast<std::atomic<std::uint64_t>*>(base + offset);
}

void check_reservation(const Ring& r, std::span<std::byte> s, std::size_t n) {
  const auto lo = reinterpret_cast<std::uintptr_t>(r.data());
  const auto hi = lo + r.info().capacity;
  // The writer's mapping is another view of the same pages: compare offsets, not addresses.
  const auto base = reinterpret_cast<std::uintptr_t>(r.writable_data());
  const auto p = reinterpret_cast<std::uintptr_t>(s.data()) - base + lo;
  FUZZ_CHECK(s.size() == n && p >= lo && p + n <= hi);
}

void run(fuzz::Input& in, Ring& r, std::optional<Reader<>>& reader,
         std::optional<Writer<>>& writer) {
  layout::Control& c = r.control();
  std::byte* ctrl = reinterpret_cast<std::byte*>(&c);
  std::byte* data = r.writable_data();
  std::vector<std::byte> payload(r.info().max_record_size + 64);
  std::uint64_t last_pos = reader ? reader->position() : 0;
  for (int step = 0; step < kMaxSteps && !in.empty(); ++step) {
    const std::uint8_t op = in.take<std::uint8_t>();
    switch (op % 10) {
      case 0:
        if (reader) {
          auto v = reader->try_read();
          if (v) fuzz::touch(r, v->bytes);
        }
        break;
      case 1:
        if (reader) reader->release();
        break;
      case 2:
        if (reader) (void)reader->recover();
        break;
      case 3:
        if (reader) (void)reader->poll([&](std::span<const std::byte> b) { fuzz::touch(r, b); }, 4);
        break;
      case 4:
        if (reader) {
          auto v = reader->read(0ns);
          if (v) fuzz::touch(r, v->bytes);
        }
        break;
      case 5: {  // a hostile peer rewrites a frame word
        const std::uint64_t offset = (in.take<std::uint16_t>() % kCap) & ~std::uint64_t{15};
        const auto raw = in.take<std::uint64_t>();
        const std::uint64_t w =
            (raw & 1) ? raw
                      : layout::make_frame(static_cast<layout::RecordType>((raw >> 8) % 4),
                                           (raw >> 16) & 0xFFFF);
        word_at(data, offset).store(w, std::memory_order_release);
        break;
      }
      case 6: {  // a hostile peer rewrites any aligned word of the control area
        const std::uint64_t offset =
            (in.take<std::uint16_t>() % layout::kRingOffset) & ~std::uint64_t{7};
        word_at(ctrl, offset).store(in.take<std::uint64_t>(), std::memory_order_release);
        break;
      }
      case 7:
      case 8:
        if (writer) {
          const std::size_t n = in.take<std::uint16_t>() % payload.size();
          if (op % 10 == 7) {
            auto s = writer->try_reserve(n);
            if (s) {
              check_reservation(r, *s, n);
              std::memset(s->data(), 0x5A, n);
              const std::size_t used = n == 0 ? 0 : in.take<std::uint16_t>() % (n + 1);
              if (in.take<std::uint8_t>() & 1) writer->abort();
              else (void)writer->commit(used);
            }
          } else {
            (void)writer->write({payload.data(), n}, 0ns);
          }
        }
        break;
      case 9: {  // a peer nudges a position by a small amount: near-valid values
        auto& pos = (op & 0x10) ? c.producer.tail : c.consumer.head;
        const auto delta = static_cast<std::int16_t>(in.take<std::uint16_t>());
        pos.store(pos.load(std::memory_order_relaxed) +
                      static_cast<std::uint64_t>(std::int64_t{delta}),
                  std::memory_order_release);
        break;
      }
    }
    if (reader) {
      FUZZ_CHECK(reader->position() >= last_pos);
      last_pos = reader->position();
    }
  }
}

}  // namespace

using fuzz::Input;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  Ring& r = ring();
  Input in(bytes, size);
  layout::Control& c = r.control();
  std::byte* data = r.writable_data();
  fuzz::reset_image(r);  // then lay the fuzzer's state over it
  const std::uint8_t role = in.take<std::uint8_t>() % 3;
  c.producer.tail.store(in.take<std::uint64_t>());
  c.consumer.head.store(in.take<std::uint64_t>());
  c.owners.producer.store(in.take<std::uint32_t>());
  c.owners.consumer.store(in.take<std::uint32_t>());
  auto image = in.bytes(in.take<std::uint16_t>() % (kCap + 1));
  if (!image.empty()) std::memcpy(data, image.data(), image.size());

  const WaitOptions wait{.spin = 0ns, .liveness_interval = 1ms};
  std::optional<Reader<>> reader;
  std::optional<Writer<>> writer;
  try {
    if (role != 0) writer.emplace(r, wait);
    if (role != 1) reader.emplace(r, wait);
  } catch (const Error&) {
    // Refusing an impossible image at attach is a correct outcome; go on with what attached.
  }
  if (reader || writer) run(in, r, reader, writer);
  return 0;
}
