// Writes the seed corpus for the fuzz targets from real rings and records:
//   make_seeds <dir>   ->  <dir>/reader/*, <dir>/mpmc/*, <dir>/typed/*, <dir>/open/*
// The committed corpus in fuzz/corpus/ was made with it; rerun it after a layout change.
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <unistd.h>
#include <vector>

#include "fuzz_msg_generated.h"
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
  return 0;
}
