// Fuzz target: mpmc consumers (Reader<Mode::mpmc>) and a producer (Writer<Mode::mpmc>) over a
// segment image the fuzzer controls.
//
// A real 4 KiB mpmc ring is created once. Each input resets its control area (all but the header,
// which open validates and nothing re-reads) and record area, then:
//   u8  setup       bits 0-1: 1 + v % 3 consumers; bit 2: a producer attaches too;
//                   bit 3: next and tail are taken as they are (else relative, see below)
//   u64 head, u64 next, u64 tail
//                   relative: next = head + (next & 0xFFFF), tail = next + (tail & 0xFFFF), so
//                   that most inputs are near-valid positions rather than noise
//   u16 n, then n bytes copied to the start of the record area
//   then up to 256 operations: each consumer's try_read / release / poll / recover / read(0),
//   the producer's calls, interleaved with a hostile peer's stores to frame words (every record
//   type, lengths, flags), extents (aux), the positions, and any 8 bytes of the control area.
// Checked: attaching fails only with flatring::Error; every record a consumer hands out lies inside
// the ring at the position it reports; every reservation lies inside the ring; every call returns
// one of its documented outcomes; nothing hangs (the timeouts are 0).
#include "fuzz_common.hpp"

#include <array>
#include <chrono>
#include <optional>
#include <vector>

namespace {

using namespace flatring;
using namespace std::chrono_literals;
using layout::RecordType;

constexpr std::uint64_t kCap = 4096;
constexpr std::uint64_t kMask = kCap - 1;
constexpr int kMaxSteps = 256;
constexpr std::size_t kMaxReaders = 3;

Ring& ring() {
  static Ring r = Ring::create(fuzz::scratch_name("mpmc"), {.capacity = kCap, .mode = Mode::mpmc});
  return r;
}

std::atomic<std::uint64_t>& word_at(std::byte* base, std::uint64_t offset) {
  return *reinterpret_cast<std::atomic<std::uint64_t>*>(base + offset);
}

// A record an mpmc consumer hands out: inside the ring (it reads through the writable mapping,
// since it zeroes what it consumed), right after the header at the position it reports, or, for a
// record built in place (layout::kOffsetFlag), a multiple of 16 bytes further (its offset word).
void check_record(Ring& r, const RecordView& v) {
  std::byte* base = r.writable_data();
  FUZZ_CHECK((v.position & (layout::kRecordAlign - 1)) == 0);
  const std::byte* payload = base + (v.position & kMask) + layout::kRecordHeaderSize;
  FUZZ_CHECK(v.bytes.data() >= payload &&
             (v.bytes.data() - payload) % std::ptrdiff_t{layout::kRecordAlign} == 0);
  fuzz::touch(r, v.bytes, base);
}

bool is_one_of(Status s, std::initializer_list<Status> allowed) {
  for (Status a : allowed) {
    if (s == a) return true;
  }
  return false;
}

// Two findings of this target, fixed in core code and kept as tests in tests/test_hostile.cpp:
// Reader<Mode::mpmc>::read spun past its deadline when ready() and try_read() disagreed ("read()
// keeps its deadline ..."), and Writer<Mode::mpmc>::try_reserve wrote a header at a misaligned tail
// ("a producer never writes a header at a misaligned tail"). The target no longer steers around
// either state.

using Readers = std::array<std::optional<Reader<Mode::mpmc>>, kMaxReaders>;

void run(fuzz::Input& in, Ring& r, Readers& readers, std::optional<Writer<Mode::mpmc>>& writer) {
  layout::Control& c = r.control();
  std::byte* ctrl = reinterpret_cast<std::byte*>(&c);
  std::byte* data = r.writable_data();
  std::vector<std::byte> payload(r.info().max_record_size + 64, std::byte{0x5A});
  std::atomic<std::uint64_t>* positions[3] = {&c.consumer.head, &c.consumer.next, &c.producer.tail};
  for (int step = 0; step < kMaxSteps && !in.empty(); ++step) {
    const std::uint8_t op = in.take<std::uint8_t>();
    std::optional<Reader<Mode::mpmc>>& rd = readers[(op >> 4) % kMaxReaders];
    switch ((op & 0x0F) % 12) {  // low nibble: the operation; high nibble: which consumer
      case 0:
        if (rd) {
          auto v = rd->try_read();
          if (v) check_record(r, *v);
          else FUZZ_CHECK(is_one_of(v.status(), {Status::empty, Status::corrupt}));
        }
        break;
      case 1:
        if (rd) rd->release();
        break;
      case 2:
        if (rd) {
          const std::size_t n =
              rd->poll([&](std::span<const std::byte> b) { fuzz::touch(r, b, data); }, 4);
          // Stopped early: last_status() says why. (After 4 it still holds an earlier outcome.)
          if (n < 4) FUZZ_CHECK(is_one_of(rd->last_status(), {Status::empty, Status::corrupt}));
        }
        break;
      case 3:
        if (rd) {
          const Status s = rd->recover();
          FUZZ_CHECK(is_one_of(s, {Status::ok, Status::empty, Status::corrupt, Status::abandoned}));
        }
        break;
      case 4:
        if (rd) {
          auto v = rd->read(0ns);
          if (v) check_record(r, *v);
          else {
            FUZZ_CHECK(is_one_of(v.status(), {Status::corrupt, Status::abandoned, Status::timed_out,
                                              Status::peer_dead}));
          }
        }
        break;
      case 5: {  // a hostile peer rewrites a frame word: any type, often a near-valid length
        const std::uint64_t offset = in.take<std::uint16_t>() & (kCap - layout::kRecordAlign);
        const auto raw = in.take<std::uint64_t>();
        std::uint64_t w = raw;
        if ((raw & 1) == 0) {
          w = layout::make_frame(static_cast<RecordType>((raw >> 8) % 8), (raw >> 16) & 0x1FFF);
          if (raw & 2) w |= ((raw >> 40) & 0xFF) << layout::kLengthBits;
        }
        word_at(data, offset).store(w, std::memory_order_release);
        break;
      }
      case 6: {  // ... or an extent (aux)
        const std::uint64_t offset = in.take<std::uint16_t>() & (kCap - layout::kRecordAlign);
        const auto raw = in.take<std::uint64_t>();
        word_at(data, offset + 8)
            .store((op & 0x80) ? raw : raw & 0x1FF0, std::memory_order_release);
        break;
      }
      case 7: {  // ... or any aligned word of the control area (peer slots, wait lines, positions)
        const std::uint64_t offset =
            (in.take<std::uint16_t>() % layout::kRingOffset) & ~std::uint64_t{7};
        word_at(ctrl, offset).store(in.take<std::uint64_t>(), std::memory_order_release);
        break;
      }
      case 8: {  // ... or nudges a position by a small amount: near-valid values
        auto& pos = *positions[(op >> 4) % 3];
        const auto delta = static_cast<std::int16_t>(in.take<std::uint16_t>());
        pos.store(pos.load(std::memory_order_relaxed) +
                      static_cast<std::uint64_t>(std::int64_t{delta}),
                  std::memory_order_release);
        break;
      }
      case 9: {  // ... or copies one position over another (next = head, tail = next, ...)
        const std::uint8_t which = in.take<std::uint8_t>();
        positions[which % 3]->store(positions[(which >> 2) % 3]->load(std::memory_order_relaxed),
                                    std::memory_order_release);
        break;
      }
      case 10:
        if (writer) {
          const std::size_t n = in.take<std::uint16_t>() % payload.size();
          const Status s = writer->try_write({payload.data(), n});
          FUZZ_CHECK(is_one_of(s, {Status::ok, Status::full, Status::too_large, Status::corrupt,
                                   Status::abandoned}));
        }
        break;
      case 11:
        if (writer) {
          const std::size_t n = in.take<std::uint16_t>() % payload.size();
          auto s = writer->try_reserve(n);
          if (!s) break;
          const auto p = reinterpret_cast<std::uintptr_t>(s->data());
          const auto lo = reinterpret_cast<std::uintptr_t>(data);
          FUZZ_CHECK(s->size() == n && p >= lo && p + n <= lo + kCap);
          std::memset(s->data(), 0x5A, n);
          const std::size_t used = n == 0 ? 0 : in.take<std::uint16_t>() % (n + 1);
          if (in.take<std::uint8_t>() & 1) writer->abort();
          else (void)writer->commit(used);
        }
        break;
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
  const std::uint8_t setup = in.take<std::uint8_t>();
  const std::uint64_t head = in.take<std::uint64_t>();
  std::uint64_t next = in.take<std::uint64_t>();
  std::uint64_t tail = in.take<std::uint64_t>();
  if ((setup & 8) == 0) {
    next = head + (next & 0xFFFF);
    tail = next + (tail & 0xFFFF);
  }
  c.consumer.head.store(head);
  c.consumer.next.store(next);
  c.producer.tail.store(tail);
  auto image = in.bytes(in.take<std::uint16_t>() % (kCap + 1));
  if (!image.empty()) std::memcpy(data, image.data(), image.size());

  const WaitOptions wait{.spin = 0ns, .liveness_interval = 1ms};
  Readers readers;
  std::optional<Writer<Mode::mpmc>> writer;
  try {
    if (setup & 4) writer.emplace(r, wait);
    for (std::size_t i = 0; i < 1 + (setup & 3) % kMaxReaders; ++i) readers[i].emplace(r, wait);
  } catch (const Error&) {
    // Refusing impossible positions at attach is a correct outcome; go on with what attached.
  }
  run(in, r, readers, writer);
  return 0;
}
