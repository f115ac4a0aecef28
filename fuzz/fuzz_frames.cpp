// Fuzz target: the bridge's wire frames, as an In receives them from the network.
//
// The messages go through bridge::Intake (src/bridge/intake.hpp), the code the In runs on every
// message its socket takes: header, HELLO (schema identity, binary schema, compatibility), DATA
// entries (sequence, prev, length, flags; duplicates, gaps, omitted and oversized records), each
// record verified against the ring's schema and committed into a real local ring, with the In's
// state file. Only the ZeroMQ socket is left out.
//
// Input: one byte choosing the ring (bits 0-1: spsc, mpsc, mpmc, broadcast; bit 2: a raw ring,
// else one storing fuzz_schema::Record's schema), then messages, each
//   u8 peer (bits 0-1: one of four routing ids; bit 7: end the batch here: the replies due are
//   sent), u16 length, that many bytes (the message, header included; fewer at the end).
// Checked after each message: every entry received is counted exactly once (committed,
// duplicate, out of order, oversized or failed verification); the records that reached the ring
// are as many as were counted committed, each within max_record_size and, in a schema ring,
// verifying against the ring's schema; replies are only WELCOME, REFUSE, ACK or RESEND, and a
// WELCOME carries the ring's max_record_size.
#include <unistd.h>

#include <array>
#include <cstdio>
#include <optional>

#include "fuzz_common.hpp"
#include "intake.hpp"  // src/bridge/: the In's receive path
#include "record_digest.hpp"

namespace {

using namespace flatring;
using Record = flatring::fuzz_schema::Record;

constexpr std::array<Mode, 4> kModes = {Mode::spsc, Mode::mpsc, Mode::mpmc, Mode::broadcast};
constexpr std::uint64_t kCapacity = 1 << 16;  // far more than one input's records (16 KiB)
constexpr std::uint64_t kMaxRecord = 2048;    // so that larger entries are oversized
constexpr std::uint64_t kGuard = 16;          // waits for room before the target gives up

/// A local ring and the consumer that empties it after each message.
struct Target {
  std::string name;
  bool raw;
  Ring ring;
  std::optional<RecordVerifier> verifier;
  std::function<Result<RecordView>()> read;
  std::function<void()> release;
};

template <Mode M>
void attach(Target& t) {
  auto r = std::make_shared<Reader<M>>(t.ring);
  t.read = [r] { return r->try_read(); };
  t.release = [r] { r->release(); };
}

Target& target(std::uint8_t which) {
  static std::array<std::unique_ptr<Target>, 8> targets;
  auto& t = targets[which];
  if (!t) {
    t = std::make_unique<Target>();
    const Mode mode = kModes[which & 3];
    t->raw = (which & 4) != 0;
    t->name = "fuzz-frames-" + std::to_string(which) + "-" + std::to_string(::getpid());
    Ring::remove(t->name);
    static const bool cleanup = [] {
      std::atexit([] {
        for (const auto& x : targets)
          if (x) Ring::remove(x->name);
      });
      return true;
    }();
    (void)cleanup;
    const RingOptions o{.capacity = kCapacity, .max_record_size = kMaxRecord, .mode = mode};
    t->ring = t->raw ? Ring::create(t->name, o) : create_ring<Record>(t->name, o);
    if (!t->raw) t->verifier.emplace(t->ring.info().stored_schema);
    visit_mode(mode, [&](auto m) { attach<m()>(*t); });
  }
  return *t;
}

const std::string& state_path() {
  static const std::string path =
      "/dev/shm/flatring.fuzz-frames-" + std::to_string(::getpid()) + ".state";
  static const bool cleanup = [] {
    std::atexit([] { ::unlink(path.c_str()); });
    return true;
  }();
  (void)cleanup;
  return path;
}

// Empties the ring, checking each record; returns how many there were.
std::uint64_t drain(Target& t) {
  std::uint64_t n = 0;
  for (;;) {
    auto r = t.read();
    if (!r) {
      FUZZ_CHECK(r.status() == Status::empty);
      return n;
    }
    // mpsc and mpmc consumers read through the writable mapping (they zero or mark what they take).
    const Mode m = t.ring.info().mode;
    fuzz::touch(t.ring, r->bytes,
                m == Mode::mpsc || m == Mode::mpmc ? t.ring.writable_data() : t.ring.data());
    FUZZ_CHECK(r->bytes.size() <= kMaxRecord);
    if (t.verifier) {
      FUZZ_CHECK(t.verifier->verify(r->bytes));
      const auto digest = fuzz::digest(flatbuffers::GetRoot<Record>(r->bytes.data()));
      asm volatile("" : : "r"(digest));
    }
    t.release();
    ++n;
  }
}

std::uint64_t counted(const bridge::InStatus& s) {
  return s.committed + s.duplicates + s.rejected_out_of_order + s.rejected_oversized +
         s.rejected_verify;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Input in(data, size);
  Target& t = target(in.take<std::uint8_t>() & 7);
  ::unlink(state_path().c_str());  // every input starts from a fresh state file
  std::uint64_t waits = 0;
  bridge::Intake intake(
      t.ring, state_path(), t.raw,
      bridge::Intake::Hooks{[&](const std::string&, bridge::wire::Type type, std::uint64_t,
                                std::uint64_t b, const std::string&) {
                              FUZZ_CHECK(type == bridge::wire::Type::welcome ||
                                         type == bridge::wire::Type::refuse ||
                                         type == bridge::wire::Type::ack ||
                                         type == bridge::wire::Type::resend);
                              if (type == bridge::wire::Type::welcome) FUZZ_CHECK(b == kMaxRecord);
                            },
                            [&] { ++waits; },
                            {}});
  FUZZ_CHECK(intake.max_record() == kMaxRecord);
  // The ring never fills within one input (kCapacity), so a wait for room would be a bug here;
  // the guard only keeps such a bug from looping forever.
  const auto stop = [&] { return waits >= kGuard; };
  static const std::array<std::string, 4> kPeers = {"frb-peer-a", "frb-peer-b", "frb-peer-c",
                                                    "frb-peer-d"};
  std::uint64_t committed = 0;
  while (!in.empty() && !intake.stopping()) {
    const auto peer = in.take<std::uint8_t>();
    const auto length = in.take<std::uint16_t>();
    const auto bytes = in.bytes(length);
    intake.on_message(kPeers[peer & 3],
                      {reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()}, stop);
    const bridge::InStatus& s = intake.status();
    FUZZ_CHECK(waits == 0 && !intake.stopping());
    FUZZ_CHECK(counted(s) == s.received);
    committed += drain(t);
    FUZZ_CHECK(committed == s.committed);
    if ((peer & 0x80) != 0) intake.flush_replies();
  }
  intake.flush_replies();
  return 0;
}
