// Writes the seed corpus for the fuzz targets from real rings and records:
//   make_seeds <dir>   ->  <dir>/reader/*, <dir>/mpmc/*, <dir>/typed/*, <dir>/open/*,
//   <dir>/schema/*, <dir>/frames/*
// The committed corpus in fuzz/corpus/ was made with it; rerun it after a layout change. The schema
// seeds are parsed from tests/schema/*.fbs and fuzz/schema/fuzz_msg.fbs (FLATRING_SOURCE_DIR).
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unistd.h>
#include <vector>

#include "fuzz_msg_generated.h"
#include "record_digest.hpp"  // FLATRING_SCHEMA of fuzz_schema::Record
#include "wire.hpp"           // src/bridge/: the bridge's frames (header only)
#include <flatbuffers/idl.h>
#include <flatbuffers/util.h>
#include <flatring/flatring.hpp>

namespace {

using namespace flatring;
namespace fs_ = std::filesystem;
using Bytes = std::vector<std::uint8_t>;

template <class T>
void put(Bytes& out, T v) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof v);
}

void save(const fs_::path& dir, const std::string& file, const Bytes& b) {
  fs_::create_directories(dir);
  std::ofstream(dir / file, std::ios::binary)
      .write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

std::string temp_name(const char* tag) {
  return std::string("fuzz-seed-") + tag + "-" + std::to_string(::getpid());
}

// The record area's size (u16) and bytes, as the ring-image targets read them.
void put_image(Bytes& b, const Ring& ring) {
  const auto cap = static_cast<std::uint16_t>(ring.info().capacity);
  put<std::uint16_t>(b, cap);
  const auto* d = reinterpret_cast<const std::uint8_t*>(ring.data());
  b.insert(b.end(), d, d + cap);
}

// A fuzz_reader input: the image of `ring` as it is now, then `ops`.
Bytes reader_input(std::uint8_t role, const Ring& ring, const Bytes& ops) {
  Bytes b;
  put<std::uint8_t>(b, role);
  put<std::uint64_t>(b, ring.control().producer.tail.load());
  put<std::uint64_t>(b, ring.control().consumer.head.load());
  put<std::uint32_t>(b, 0);
  put<std::uint32_t>(b, 0);
  put_image(b, ring);
  b.insert(b.end(), ops.begin(), ops.end());
  return b;
}

void write_records(Writer<>& w, int count, std::size_t size) {
  std::vector<std::byte> p(size, std::byte{0x42});
  for (int i = 0; i < count; ++i) (void)w.try_write(p);
}

void reader_seeds(const fs_::path& dir) {
  const Bytes reads = {0, 1, 0, 1, 0, 1, 3, 4, 0, 1, 2, 0};
  const std::string name = temp_name("reader");
  Ring::remove(name);
  {
    RemoveGuard guard(name);
    Ring ring = Ring::create(name, {.capacity = 4096});
    save(dir, "empty-both", reader_input(2, ring, {7, 100, 0, 100, 0, 0, 0, 1, 8, 40, 0, 3, 0, 1}));
    {
      Writer<> w(ring);
      write_records(w, 5, 100);
    }
    save(dir, "five-records", reader_input(0, ring, reads));
    Bytes poked = {5, 0x70, 0, 0, 0x01, 0, 0, 0xFF, 0, 0, 0, 0};  // data frame, length 0xFF00...
    poked.insert(poked.end(), reads.begin(), reads.end());
    save(dir, "five-records-poked", reader_input(0, ring, poked));
    Bytes tail_nudge = {9 | 0x10, 0x10, 0, 0, 0, 0, 9, 0xF0, 0xFF};
    tail_nudge.insert(tail_nudge.end(), reads.begin(), reads.end());
    save(dir, "five-records-nudged", reader_input(0, ring, tail_nudge));
    {
      Reader<> r(ring);
      for (int i = 0; i < 5; ++i) {
        (void)r.try_read();
        r.release();
      }
      Writer<> w(ring);
      write_records(w, 30, 200);  // wraps: a padding record at the end, records from offset 0
      for (int i = 0; i < 3; ++i) {
        (void)r.try_read();
        r.release();
      }
    }
    save(dir, "wrapped", reader_input(0, ring, reads));
    save(dir, "wrapped-writer", reader_input(1, ring, {7, 200, 0, 200, 0, 0, 8, 0, 4, 8, 100, 0}));
    save(dir, "wrapped-both", reader_input(2, ring, {0, 1, 7, 0x80, 0, 0x80, 0, 0, 0, 1, 6, 0, 1}));
  }
}

// A fuzz_mpmc input: `setup`, the positions of `ring` as they are now (taken as they are), its
// record area, then `ops`.
Bytes mpmc_input(std::uint8_t setup, const Ring& ring, const Bytes& ops) {
  Bytes b;
  put<std::uint8_t>(b, static_cast<std::uint8_t>(setup | 8));
  put<std::uint64_t>(b, ring.control().consumer.head.load());
  put<std::uint64_t>(b, ring.control().consumer.next.load());
  put<std::uint64_t>(b, ring.control().producer.tail.load());
  put_image(b, ring);
  b.insert(b.end(), ops.begin(), ops.end());
  return b;
}

void mpmc_seeds(const fs_::path& dir) {
  // Operations (fuzz_mpmc.cpp): low nibble 0 try_read, 1 release, 2 poll, 3 recover, 4 read(0),
  // 5 frame poke, 10 try_write; high nibble: which of the three consumers.
  const Bytes reads = {0x00, 0x10, 0x20, 0x21, 0x01, 0x11, 0x02, 0x03, 0x04, 0x12, 0x00, 0x01};
  const Bytes recovers = {0x03, 0x00, 0x01, 0x13, 0x10, 0x11, 0x23, 0x04, 0x02};
  const std::uint8_t three = 2;  // setup: 1 + 2 % 3 consumers
  const std::string name = temp_name("mpmc");
  Ring::remove(name);
  RemoveGuard guard(name);
  Ring ring = Ring::create(name, {.capacity = 4096, .mode = Mode::mpmc});
  save(dir, "empty-with-producer",
       mpmc_input(three | 4, ring, {10,   100, 0,   0x0A, 40,  0, 0x00, 0x10, 0x11, 0x01,
                                    0x03, 11,  200, 0,    100, 0, 0,    0x20, 0x21, 0x04}));
  std::vector<std::byte> p(100, std::byte{0x42});
  Writer<Mode::mpmc> w(ring);
  for (int i = 0; i < 10; ++i) (void)w.try_write(p);
  save(dir, "ten-records", mpmc_input(three, ring, reads));
  Bytes poked = {5, 0xA0, 0, 0x02, 0x05, 0xFF, 0, 0, 0, 0, 0};  // a releasing frame at 160
  poked.insert(poked.end(), reads.begin(), reads.end());
  save(dir, "ten-records-poked", mpmc_input(three, ring, poked));
  {
    // Two consumers hold a record each and one more is finished out of order: the head waits at a
    // held record. In the fuzzed image their holders are gone, so recover() takes them over.
    Reader<Mode::mpmc> a(ring), b(ring), c(ring);
    (void)a.try_read();
    (void)b.try_read();
    (void)c.try_read();
    c.release();
    save(dir, "held-by-the-dead", mpmc_input(three, ring, recovers));
    a.release();
    b.release();
    for (int i = 0; i < 40; ++i) {  // many laps: padding at the end, records from offset 0
      (void)w.try_write(p);
      (void)a.try_read();
      a.release();
    }
    (void)b.try_read();
    save(dir, "wrapped-held", mpmc_input(three | 4, ring, recovers));
    b.release();
  }
  // A claim whose producer is gone: a `claimed` header at the read cursor.
  auto claim = w.try_reserve(64);
  if (claim) save(dir, "dead-claim", mpmc_input(0, ring, recovers));
  w.abort();
}

Bytes record_bytes(bool full, std::uint8_t choice) {
  namespace fz = flatring::fuzz_schema;
  flatbuffers::FlatBufferBuilder fbb;
  if (!full) {
    fbb.Finish(fz::CreateRecord(fbb, 7), fz::RecordIdentifier());
  } else {
    flatbuffers::FlatBufferBuilder nested;
    nested.Finish(fz::CreateLeafDirect(nested, "nested", nullptr));
    std::vector<std::int64_t> values = {1, -2, 3};
    auto leaf = fz::CreateLeafDirect(fbb, "leaf", &values);
    auto child = fz::CreateLeafDirect(fbb, "child", &values);
    std::vector<flatbuffers::Offset<fz::Leaf>> leaves = {leaf, child};
    std::vector<flatbuffers::Offset<flatbuffers::String>> tags = {fbb.CreateString("a"),
                                                                  fbb.CreateString("bb")};
    flatbuffers::Offset<void> choice_value;
    auto choice_type = fz::Choice::NONE;
    if (choice == 1) {
      choice_value = fz::CreateLeafDirect(fbb, "choice", nullptr).Union();
      choice_type = fz::Choice::Leaf;
    } else if (choice == 2) {
      choice_value = fz::CreateAltDirect(fbb, 9, "alt").Union();
      choice_type = fz::Choice::Alt;
    }
    std::vector<std::uint8_t> blob(nested.GetBufferPointer(),
                                   nested.GetBufferPointer() + nested.GetSize());
    std::vector<std::uint8_t> flags = {1, 0, 1};
    fz::Point point(3, 2.5);
    auto rec = fz::CreateRecordDirect(fbb, 42, &point, "name", &tags, &leaves, child, choice_type,
                                      choice_value, &blob, &flags);
    fbb.Finish(rec, fz::RecordIdentifier());
  }
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

void typed_seeds(const fs_::path& dir) {
  save(dir, "minimal", record_bytes(false, 0));
  for (std::uint8_t c = 0; c < 3; ++c)
    save(dir, "full-choice" + std::to_string(c), record_bytes(true, c));
  Bytes cut = record_bytes(true, 1);
  cut.resize(cut.size() / 2);
  save(dir, "truncated", cut);
}

Bytes file_bytes(const std::string& name) {
  std::ifstream f(Ring::path_of(name), std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void open_seeds(const fs_::path& dir) {
  const std::string name = temp_name("open");
  Ring::remove(name);
  RemoveGuard guard(name);
  {
    Ring ring = Ring::create(name, {.capacity = 4096});
    save(dir, "fresh", file_bytes(name));
    Writer<> w(ring);
    write_records(w, 7, 300);
    save(dir, "records", file_bytes(name));
  }
  Bytes header_only = file_bytes(name);
  header_only.resize(sizeof(layout::SegmentHeader));
  save(dir, "header-only", header_only);
  Ring::remove(name);
  {
    Ring ring =
        Ring::create(name, {.capacity = 4096, .max_record_size = 1000, .mode = Mode::broadcast},
                     SchemaId::of("app.Order", "ORDR"));
    save(dir, "broadcast-schema", file_bytes(name));
  }
  Ring::remove(name);
  {
    // Layout version 2: a stored binary schema, and the record area after its page.
    Ring ring = Ring::create(
        name, {.capacity = 4096},
        Schema::from_fbs_file(std::string(FLATRING_SOURCE_DIR) + "/tests/schema/evo_v1.fbs"));
    save(dir, "stored-schema", file_bytes(name));
  }
}

// ---- fuzz_schema (fuzz_schema.cpp): u8 flags, u8 max_depth, u32 max_tables, u32 max_size, u16 n,
// n bytes of binary schema, then (a) a record or (b) the fuzzed header fields and a record.

struct Parsed {
  Bytes bfbs;
  Bytes record;  // from `json` (empty when none)
};

Parsed parse_fbs(const std::string& file, const char* json) {
  const std::string path = std::string(FLATRING_SOURCE_DIR) + "/" + file;
  std::string text;
  if (!flatbuffers::LoadFile(path.c_str(), false, &text)) throw std::runtime_error("read " + path);
  flatbuffers::Parser parser;
  if (!parser.Parse(text.c_str())) throw std::runtime_error(path + ": " + parser.error_);
  parser.Serialize();
  Parsed out;
  out.bfbs.assign(parser.builder_.GetBufferPointer(),
                  parser.builder_.GetBufferPointer() + parser.builder_.GetSize());
  if (json != nullptr) {
    if (!parser.ParseJson(json)) throw std::runtime_error(path + ": " + parser.error_);
    out.record.assign(parser.builder_.GetBufferPointer(),
                      parser.builder_.GetBufferPointer() + parser.builder_.GetSize());
  }
  return out;
}

Bytes schema_input(std::uint8_t flags, const Bytes& bfbs, const Bytes& rest,
                   std::uint8_t max_depth = 0, std::uint32_t max_size = 0) {
  Bytes b;
  put<std::uint8_t>(b, flags);
  put<std::uint8_t>(b, max_depth);
  put<std::uint32_t>(b, 1000);  // max_tables
  put<std::uint32_t>(b, max_size);
  put<std::uint16_t>(b, static_cast<std::uint16_t>(bfbs.size()));
  b.insert(b.end(), bfbs.begin(), bfbs.end());
  b.insert(b.end(), rest.begin(), rest.end());
  return b;
}

std::uint64_t hash_of(const Bytes& b) {
  return fnv1a64(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()));
}

void schema_seeds(const fs_::path& dir) {
  const char* order = R"({"id": 7, "symbol": "X", "qty": 2})";
  const Parsed v1 = parse_fbs("tests/schema/evo_v1.fbs", order);
  const Parsed v2 = parse_fbs("tests/schema/evo_v2.fbs", R"({"id": 7, "price": 2.5})");
  const Parsed bad_type = parse_fbs("tests/schema/evo_bad_type.fbs", R"({"qty": "many"})");
  const Parsed reorder = parse_fbs("tests/schema/evo_bad_reorder.fbs", order);
  const Parsed other_root = parse_fbs("tests/schema/evo_other_root.fbs", R"({"order": 3})");
  const Parsed msg = parse_fbs("tests/schema/test_msg.fbs", R"({"seq": 1, "payload": [1, 2]})");
  const Parsed rich = parse_fbs("fuzz/schema/fuzz_msg.fbs", nullptr);
  const Parsed all = parse_fbs("fuzz/schema/fuzz_rich.fbs", R"({
    "id": 5, "req": "x", "any_type": "alias", "any": {"name": "l"},
    "leaves": [{"name": "a", "v": [1.5]}], "opt": 4, "lvl": "Low", "colors": ["Red Blue"],
    "pos": {"x": 1, "y": 2, "z": 3, "c": "Green", "in": {"x": 1, "y": 2}, "arr": [1, 2, 3, 4],
            "iarr": [{"x": 1, "y": 2}, {"x": 3, "y": 4}]}})");
  // (a) from_bfbs: valid schemas with a record of theirs.
  save(dir, "evo-v1", schema_input(0, v1.bfbs, v1.record));
  save(dir, "evo-v2", schema_input(0, v2.bfbs, v2.record));
  save(dir, "evo-bad-type", schema_input(0, bad_type.bfbs, bad_type.record));
  save(dir, "evo-bad-reorder", schema_input(0, reorder.bfbs, reorder.record));
  save(dir, "evo-other-root", schema_input(0, other_root.bfbs, other_root.record));
  save(dir, "test-msg", schema_input(0, msg.bfbs, msg.record));
  save(dir, "fuzz-msg-choice1", schema_input(0, rich.bfbs, record_bytes(true, 1)));
  save(dir, "fuzz-msg-choice2", schema_input(0, rich.bfbs, record_bytes(true, 2)));
  save(dir, "fuzz-rich", schema_input(0, all.bfbs, all.record));
  // (a) refused: too deep and too large under fuzzed limits, cut short, no root type.
  save(dir, "limit-depth", schema_input(2, v1.bfbs, v1.record, 2, 1u << 20));
  save(dir, "limit-size", schema_input(2, v1.bfbs, v1.record, 64, 16));
  Bytes cut = v1.bfbs;
  cut.resize(cut.size() / 2);
  save(dir, "cut", schema_input(0, cut, {}));
  flatbuffers::Parser rootless;
  if (!rootless.Parse("namespace x; table T { a: int; }")) throw std::runtime_error("rootless");
  rootless.Serialize();
  const Bytes no_root(rootless.builder_.GetBufferPointer(),
                      rootless.builder_.GetBufferPointer() + rootless.builder_.GetSize());
  save(dir, "no-root", schema_input(0, no_root, {}));
  // (b) the segment: consistent header fields (the true hash), then each field fuzzed.
  save(dir, "segment-evo-v1", schema_input(1, v1.bfbs, v1.record));
  save(dir, "segment-evo-v2", schema_input(1, v2.bfbs, v2.record));
  save(dir, "segment-fuzz-msg", schema_input(1, rich.bfbs, record_bytes(false, 0)));
  save(dir, "segment-fuzz-rich", schema_input(1, all.bfbs, all.record));
  save(dir, "segment-no-root", schema_input(1, no_root, {}));
  save(dir, "segment-cut", schema_input(1, cut, {}));
  Bytes fields;
  Bytes padded = v1.bfbs;  // an area longer than the bytes: zeros after them, under their hash
  padded.resize(padded.size() + 100);
  put<std::uint64_t>(fields, padded.size());
  put<std::uint64_t>(fields, hash_of(padded));
  save(dir, "segment-longer", schema_input(2 | 8 | 1, v1.bfbs, fields));
  fields.clear();
  put<std::uint64_t>(fields, 4096);  // a misplaced area
  save(dir, "segment-offset", schema_input(4 | 1, v1.bfbs, fields));
  fields.clear();
  put<std::uint64_t>(fields, std::uint64_t{1} << 40);  // a huge length
  save(dir, "segment-huge", schema_input(2 | 1, v1.bfbs, fields));
  save(dir, "segment-none", schema_input(1, {}, {}));
}

// ---- fuzz_frames (fuzz_frames.cpp): u8 ring (bits 0-1 mode, bit 2 raw), then messages
// {u8 peer (bit 7: end of batch), u16 length, the message}.

namespace wire = flatring::bridge::wire;

Bytes frame(wire::Type type, std::uint64_t a, std::uint64_t b, const Bytes& body) {
  Bytes m(wire::kHeaderSize);
  wire::put_header(reinterpret_cast<std::byte*>(m.data()), {type, a, b});
  m.insert(m.end(), body.begin(), body.end());
  return m;
}

Bytes hello(std::uint64_t source, const SchemaId& id, std::span<const std::uint8_t> bfbs) {
  Bytes body(id.file_identifier, id.file_identifier + 4);
  put<std::uint64_t>(body, id.hash);
  body.insert(body.end(), bfbs.begin(), bfbs.end());
  return frame(wire::Type::hello, source, 4096, body);
}

struct Item {
  std::uint64_t seq;
  std::uint64_t prev;
  Bytes payload;
  std::uint64_t flags = 0;
  std::uint64_t len = ~std::uint64_t{0};  // the payload's size unless set
};

Bytes data(const std::vector<Item>& items) {
  Bytes body;
  for (const Item& it : items) {
    const std::size_t at = body.size();
    body.resize(at + wire::kEntrySize);
    const std::uint64_t len = it.len == ~std::uint64_t{0} ? it.payload.size() : it.len;
    wire::put_entry(reinterpret_cast<std::byte*>(body.data() + at),
                    {it.seq, it.prev, len, it.flags});
    body.insert(body.end(), it.payload.begin(), it.payload.end());
    body.resize(at + wire::kEntrySize + wire::padded(it.payload.size()));
  }
  return frame(wire::Type::data, 0, 0, body);
}

class Frames {
 public:
  explicit Frames(std::uint8_t ring) { put<std::uint8_t>(b_, ring); }
  Frames& send(std::uint8_t peer, const Bytes& m) {
    put<std::uint8_t>(b_, peer);
    put<std::uint16_t>(b_, static_cast<std::uint16_t>(m.size()));
    b_.insert(b_.end(), m.begin(), m.end());
    return *this;
  }
  [[nodiscard]] const Bytes& bytes() const { return b_; }

 private:
  Bytes b_;
};

constexpr std::uint8_t kEndBatch = 0x80;
constexpr Mode kModes[4] = {Mode::spsc, Mode::mpsc, Mode::mpmc, Mode::broadcast};
constexpr std::uint64_t kNone = wire::kNone;

void frames_seeds(const fs_::path& dir) {
  namespace fz = flatring::fuzz_schema;
  SchemaId typed_id;
  SchemaId raw_id;
  {
    const std::string name = temp_name("frames");
    Ring::remove(name);
    RemoveGuard guard(name);
    typed_id = create_ring<fz::Record>(name, {.capacity = 1 << 16}).info().schema;
    Ring::remove(name);
    raw_id = Ring::create(name, {.capacity = 1 << 16}).info().schema;
  }
  const auto bfbs = binary_schema_of<fz::Record>().bfbs();
  const Bytes full1 = record_bytes(true, 1), full2 = record_bytes(true, 2);
  const Bytes minimal = record_bytes(false, 0);
  Bytes cut = full1;
  cut.resize(cut.size() / 2);
  const Bytes noise(300, 0x5a);
  for (std::uint8_t ring = 0; ring < 4; ++ring) {
    const std::string mode = std::string(to_string(kModes[ring]));
    save(dir, mode + "-records",
         Frames(ring)
             .send(0, hello(7, typed_id, bfbs))
             .send(kEndBatch, data({{0, kNone, full1}, {1, 0, minimal}, {2, 1, full2}}))
             .send(0, data({{1, 0, minimal}, {3, 2, full1}}))  // a duplicate, then the next
             .bytes());
    save(dir, mode + "-raw-records",
         Frames(ring | 4)
             .send(0, hello(7, raw_id, {}))
             .send(kEndBatch, data({{0, kNone, noise}, {8, 0, Bytes(5, 1)}, {9, 8, {}}}))
             .send(0, data({{10, 9, Bytes(2049, 2)}, {11, 10, {}, wire::kOmitted, 1u << 20}}))
             .bytes());
  }
  const std::span<const std::uint8_t> none;
  save(dir, "identity-hello",
       Frames(0).send(0, hello(1, typed_id, none)).send(0, data({{0, kNone, full1}})).bytes());
  save(dir, "verify-failed",
       Frames(0)
           .send(0, hello(1, typed_id, bfbs))
           .send(0, data({{0, kNone, cut}, {1, 0, noise}, {2, 1, {}}, {3, 2, full2}}))
           .bytes());
  save(dir, "gap-and-resend",
       Frames(0)
           .send(0, hello(1, typed_id, bfbs))
           .send(kEndBatch, data({{5, 4, full1}, {6, 5, full1}}))
           .send(0, data({{0, kNone, full1}}))
           .bytes());
  save(
      dir, "oversized-and-omitted",
      Frames(0)
          .send(0, hello(1, typed_id, bfbs))
          .send(0,
                data({{0, kNone, Bytes(2100, 3)}, {1, 0, {}, wire::kOmitted, 5000}, {2, 1, full1}}))
          .bytes());
  save(dir, "malformed-entries",
       Frames(0)
           .send(0, hello(1, typed_id, bfbs))
           .send(0, data({{0, kNone, full1}, {1, 0, minimal, 0, 60000}}))  // longer than the body
           .send(0, data({{1, 0, minimal, 4}}))                            // an unknown flag
           .send(0, Bytes(40, 0x42))                                       // not a frame
           .send(0, frame(wire::Type::ack, 1, 1, {}))                      // only an In sends it
           .send(0, frame(wire::Type::hello, 1, 0, Bytes(5, 0)))           // a short hello
           .bytes());
  save(dir, "no-session",
       Frames(0)
           .send(1, data({{0, kNone, full1}}))
           .send(2, frame(wire::Type::data, 0, 0, {}))
           .bytes());
  const Parsed other = parse_fbs("tests/schema/test_msg.fbs", nullptr);
  save(dir, "incompatible-hello",
       Frames(0)
           .send(0, hello(1, typed_id, other.bfbs))
           .send(1, hello(2, typed_id, Bytes(64, 0x11)))
           .send(2, hello(3, raw_id, none))
           .send(3, data({{0, kNone, full1}}))
           .bytes());
  // Records whose nested flatbuffer (Record.blob, a Leaf) is not one: the reflection verifier
  // alone passed them, and a reader of blob_nested_root() then read out of bounds.
  for (const auto& [tag, blob] :
       {std::pair<std::string, Bytes>{"offset", {0xf0, 0xff, 0xff, 0x7f, 0, 0, 0, 0}},
        {"short", {4, 0}},
        {"vtable", {8, 0, 0, 0, 0, 0, 0, 0, 0xf0, 0xff, 0xff, 0x7f}}}) {
    flatbuffers::FlatBufferBuilder fbb;
    fbb.Finish(fz::CreateRecordDirect(fbb, 1, nullptr, nullptr, nullptr, nullptr, 0,
                                      fz::Choice::NONE, 0, &blob),
               fz::RecordIdentifier());
    const Bytes record(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
    save(dir, "nested-bogus-" + tag,
         Frames(static_cast<std::uint8_t>(tag.size() % 4))
             .send(0, hello(1, typed_id, bfbs))
             .send(0, data({{0, kNone, record}, {1, 0, full1}}))
             .bytes());
  }
  save(dir, "raw-identity-differs",
       Frames(4).send(0, hello(1, typed_id, none)).send(0, data({{0, kNone, noise}})).bytes());
  save(dir, "two-peers-one-source",
       Frames(1)
           .send(0, hello(9, typed_id, bfbs))
           .send(kEndBatch, data({{0, kNone, full1}}))
           .send(1, hello(9, typed_id, none))
           .send(1, data({{0, kNone, full1}, {1, 0, full2}}))
           .bytes());
  Frames many(2);
  for (std::uint64_t source = 1; source <= 66; ++source)
    many.send(source & 3, hello(source, typed_id, none));
  save(dir, "too-many-sources", many.bytes());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
    return 2;
  }
  const fs_::path root = argv[1];
  reader_seeds(root / "reader");
  mpmc_seeds(root / "mpmc");
  typed_seeds(root / "typed");
  open_seeds(root / "open");
  schema_seeds(root / "schema");
  frames_seeds(root / "frames");
  return 0;
}
