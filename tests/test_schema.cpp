// The ring's stored schema (layout version 2): compatibility by FlatBuffers' evolution rules,
// evolution across separately built processes in every mode, refusals that name the field, the
// reflection-verified DynamicConsumer, and the schema area as hostile input.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <flatbuffers/idl.h>
#include <flatbuffers/reflection_generated.h>
#include <flatbuffers/util.h>

#include "helpers.hpp"

// Generated without --gen-name-strings: FLATRING_SCHEMA names it from its spelling.
FLATRING_SCHEMA(reflection::Schema, reflection::SchemaIdentifier());

using namespace flatring;
using namespace std::chrono_literals;
using fr_test::unique_name;

namespace {

std::string schema_path(const std::string& file) {
  return std::string(FLATRING_TEST_SCHEMA_DIR) + "/" + file;
}

Schema load(const std::string& file) { return Schema::from_fbs_file(schema_path(file)); }

struct Run {
  int status = -1;
  std::string out;
};

// Starts `argv` (a peer program) with its stdout on a pipe; finish() waits for it.
class Peer {
 public:
  explicit Peer(std::vector<std::string> argv) {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::dup2(fds[1], 1);
      ::close(fds[0]);
      ::close(fds[1]);
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::close(fds[1]);
    out_ = fds[0];
  }
  Peer(const Peer&) = delete;
  Peer& operator=(const Peer&) = delete;
  ~Peer() {
    if (pid_ > 0) (void)finish();
  }
  Run finish() {
    Run r;
    char buf[512];
    for (;;) {
      const ssize_t n = ::read(out_, buf, sizeof buf);
      if (n <= 0) break;
      r.out.append(buf, static_cast<std::size_t>(n));
    }
    ::close(out_);
    int st = 0;
    ::waitpid(pid_, &st, 0);
    pid_ = -1;
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return r;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
};

std::vector<std::string> peer(int version, const char* what, const std::string& name, Mode mode,
                              std::uint64_t count, int producer_version) {
  return {version == 1 ? FLATRING_EVO_V1 : FLATRING_EVO_V2,
          what,
          name,
          std::string(to_string(mode)),
          std::to_string(count),
          std::to_string(producer_version)};
}

}  // namespace

// ---------------------------------------------------------------- compatibility

TEST_CASE("identical schemas match, whatever their comments", "[schema]") {
  const Schema v1 = load("evo_v1.fbs");
  CHECK(v1.root_name() == "flatring.evo.Order");
  CHECK(v1.file_identifier() == "FREV");
  const SchemaCheck c = check_compatible(v1, load("evo_comment.fbs"));
  CHECK(c.compatible);
  CHECK(c.match == SchemaMatch::identical);
}

TEST_CASE("a field added at the end is a compatible evolution, and the direction is named",
          "[schema]") {
  const Schema v1 = load("evo_v1.fbs"), v2 = load("evo_v2.fbs");
  const SchemaCheck newer_endpoint = check_compatible(v1, v2);
  CHECK(newer_endpoint.compatible);
  CHECK(newer_endpoint.match == SchemaMatch::endpoint_newer);
  const SchemaCheck newer_ring = check_compatible(v2, v1);
  CHECK(newer_ring.compatible);
  CHECK(newer_ring.match == SchemaMatch::ring_newer);
}

TEST_CASE("an incompatible schema is refused with a message that names the field", "[schema]") {
  const Schema v1 = load("evo_v1.fbs");
  struct Case {
    const char* file;
    const char* names;
  };
  const auto c = GENERATE(Case{"evo_bad_type.fbs", "field flatring.evo.Order.qty changed type"},
                          Case{"evo_bad_removed.fbs", "field flatring.evo.Order.symbol"},
                          Case{"evo_bad_reorder.fbs", "field flatring.evo.Order.symbol has id"},
                          Case{"evo_other_root.fbs", "root type is flatring.evo.Order"});
  CAPTURE(c.file);
  for (const bool ring_side : {true, false}) {
    const Schema other = load(c.file);
    const SchemaCheck r = ring_side ? check_compatible(v1, other) : check_compatible(other, v1);
    CHECK_FALSE(r.compatible);
    if (ring_side) CHECK_THAT(r.why, Catch::Contains(c.names));
    CHECK_FALSE(r.why.empty());
  }
}

TEST_CASE("a typed endpoint on a ring whose stored schema changed a field's type is refused",
          "[schema]") {
  const auto name = unique_name("schema-bad");
  RemoveGuard guard(name);
  Ring ring = Ring::create(name, {.capacity = 1 << 14}, load("test_msg_bad.fbs"));
  REQUIRE_FALSE(ring.info().stored_schema.empty());
  for (int side = 0; side < 3; ++side) {
    CAPTURE(side);
    const Error e = fr_test::error_of([&] {
      if (side == 0) (void)Consumer<flatring::test::Msg>(ring);
      if (side == 1) (void)Producer<flatring::test::Msg>(ring);
      if (side == 2) (void)open_ring<flatring::test::Msg>(name);
    });
    CHECK(e.code() == Errc::wrong_schema);
    CHECK_THAT(std::string(e.what()), Catch::Contains("flatring.test.Msg.seq changed type"));
  }
}

TEST_CASE("rings created from generated code store the binary schema, raw rings store none",
          "[schema]") {
  const auto name = unique_name("schema-stored");
  RemoveGuard guard(name);
  Ring ring = create_ring<flatring::test::Msg>(name, {.capacity = 1 << 14});
  const Schema stored = Ring::open(name).info().stored_schema;  // a copy: the Ring is a temporary
  REQUIRE_FALSE(stored.empty());
  CHECK(stored.root_name() == "flatring.test.Msg");
  CHECK(stored.file_identifier() == "FRTM");
  CHECK(ring.info().ring_offset == layout::ring_offset_for(stored.bfbs().size()));
  Consumer<flatring::test::Msg> c(ring);
  CHECK(c.schema_match() == SchemaMatch::identical);

  const auto raw_name = unique_name("schema-raw");
  RemoveGuard raw_guard(raw_name);
  Ring raw = Ring::create(raw_name, {.capacity = 1 << 14});
  CHECK(Ring::open(raw_name).info().stored_schema.empty());
  CHECK(raw.info().ring_offset == layout::kRingOffset);
}

TEST_CASE("a root type from generated code without name strings can be named (reflection.Schema)",
          "[schema]") {
  // Debian's flatbuffers/reflection_generated.h was made without --gen-name-strings.
  CHECK(schema_traits<reflection::Schema>::name() == "reflection.Schema");
  CHECK(std::string(schema_traits<reflection::Schema>::file_identifier()) == "BFBS");
  CHECK(schema_traits<reflection::Schema>::binary_schema().empty());
  const auto name = unique_name("schema-bfbs");
  RemoveGuard guard(name);
  Ring ring = create_ring<reflection::Schema>(name, {.capacity = 1 << 16});
  CHECK(ring.info().schema == schema_of<reflection::Schema>());
  // Records of it: binary schemas themselves, verified with the generated verifier.
  Producer<reflection::Schema> p(ring);
  Consumer<reflection::Schema> c(ring);
  CHECK(c.schema_match() == SchemaMatch::identity_only);
  const Schema record = load("evo_v1.fbs");
  REQUIRE(p.raw().try_write(std::as_bytes(record.bfbs())) == Status::ok);
  auto got = c.try_receive();
  CAPTURE(to_string(got.status()));
  REQUIRE(got);
  CHECK((*got)->root_table()->name()->str() == "flatring.evo.Order");
}

// ---------------------------------------------------------------- across processes

TEST_CASE("schema evolution across separately built processes, in every mode",
          "[schema][process]") {
  const Mode mode = GENERATE(Mode::spsc, Mode::mpsc, Mode::mpmc, Mode::broadcast);
  // (ring created with, producer, consumer, the consumer's expected match)
  struct Case {
    int ring, producer, consumer;
    const char* match;
  };
  const auto c = GENERATE(Case{2, 2, 1, "ring_newer"}, Case{1, 1, 2, "endpoint_newer"},
                          Case{1, 2, 1, "identical"}, Case{2, 1, 2, "identical"});
  CAPTURE(to_string(mode), c.ring, c.producer, c.consumer);
  const auto name = unique_name("evo");
  RemoveGuard guard(name);
  Ring ring = Ring::create(name, {.capacity = 1 << 14, .mode = mode},
                           load(c.ring == 1 ? "evo_v1.fbs" : "evo_v2.fbs"));
  constexpr std::uint64_t kCount = 2000;  // several laps of the ring
  Peer consumer(peer(c.consumer, "consume", name, mode, kCount, c.producer));
  Peer producer(peer(c.producer, "produce", name, mode, kCount, c.producer));
  CHECK(producer.finish().status == 0);
  const Run got = consumer.finish();
  CHECK(got.status == 0);
  CHECK_THAT(got.out, Catch::Contains(std::string("match ") + c.match));
}

TEST_CASE("a peer built from another schema version is refused when the schemas conflict",
          "[schema][process]") {
  const auto name = unique_name("evo-bad");
  RemoveGuard guard(name);
  Ring ring = Ring::create(name, {.capacity = 1 << 14}, load("evo_bad_type.fbs"));
  const Run r = Peer(peer(1, "consume", name, Mode::spsc, 1, 1)).finish();
  CHECK(r.status == 3);  // wrong_schema at attach
}

// ---------------------------------------------------------------- DynamicConsumer

TEST_CASE("DynamicConsumer verifies records against the ring's schema or the caller's",
          "[schema]") {
  const auto name = unique_name("dyn");
  RemoveGuard guard(name);
  const Schema v2 = load("evo_v2.fbs");
  Ring ring = Ring::create(name, {.capacity = 1 << 14}, v2);
  Writer<> w(ring);
  // A record built from JSON with FlatBuffers' own parser, and one garbage record between two.
  flatbuffers::Parser parser;
  REQUIRE(parser.Deserialize(v2.bfbs().data(), v2.bfbs().size()));
  REQUIRE(parser.ParseJson(R"({"id": 7, "symbol": "X", "qty": 2})"));
  const std::span<const std::byte> good(
      reinterpret_cast<const std::byte*>(parser.builder_.GetBufferPointer()),
      parser.builder_.GetSize());
  const std::array<std::byte, 24> garbage{std::byte{0xFF}, std::byte{0x7F}};
  REQUIRE(w.try_write(good) == Status::ok);
  REQUIRE(w.try_write(garbage) == Status::ok);
  REQUIRE(w.try_write(good) == Status::ok);

  const bool in_place = GENERATE(false, true);
  auto dc = in_place ? DynamicConsumer<>(ring, load("evo_v1.fbs"), {.in_place = true})
                     : DynamicConsumer<>::with_ring_schema(ring);
  CHECK(dc.schema_match() == (in_place ? SchemaMatch::ring_newer : SchemaMatch::identical));
  auto a = dc.try_receive();
  REQUIRE(a);
  CHECK(a->size() == good.size());
  CHECK(dc.try_receive().status() == Status::verify_failed);  // skipped, and the stream goes on
  CHECK(dc.try_receive());
  CHECK(dc.try_receive().status() == Status::empty);
  CHECK(dc.raw().attachment().slot().counter[layout::verify_failures].load() == 1);
}

TEST_CASE("DynamicConsumer refuses a raw ring and an incompatible schema", "[schema]") {
  const auto name = unique_name("dyn-raw");
  RemoveGuard guard(name);
  Ring raw = Ring::create(name, {.capacity = 1 << 14});
  const auto code = fr_test::error_code([&] { (void)DynamicConsumer<>::with_ring_schema(raw); });
  CHECK(code == Errc::wrong_schema);
  const auto name2 = unique_name("dyn-bad");
  RemoveGuard guard2(name2);
  Ring ring = Ring::create(name2, {.capacity = 1 << 14}, load("evo_v1.fbs"));
  CHECK(fr_test::error_code([&] { DynamicConsumer<> d(ring, load("evo_bad_type.fbs")); }) ==
        Errc::wrong_schema);
}

TEST_CASE("RecordVerifier verifies each nested flatbuffer as its table, wherever it is",
          "[schema]") {
  // FlatBuffers' reflection verifier alone checks a nested flatbuffer as plain bytes; generated
  // code's accessor (blob_nested_root()) then read a bogus one out of bounds (fuzz_frames).
  const RecordVerifier verifier(load("nested.fbs"));
  // Records are built from JSON by a parser of the same schema without the attributes, so that
  // a nested buffer can be given as any bytes (a JSON array).
  std::string text;
  REQUIRE(flatbuffers::LoadFile(schema_path("nested.fbs").c_str(), false, &text));
  for (auto at = text.find(" (nested_flatbuffer"); at != std::string::npos;
       at = text.find(" (nested_flatbuffer"))
    text.erase(at, text.find(')', at) + 1 - at);
  flatbuffers::Parser plain;
  REQUIRE(plain.Parse(text.c_str()));
  auto build = [&](const char* root, const std::string& json) {
    REQUIRE(plain.SetRootType(root));
    REQUIRE(plain.ParseJson(json.c_str()));
    const auto* p = plain.builder_.GetBufferPointer();
    return std::vector<std::uint8_t>(p, p + plain.builder_.GetSize());
  };
  auto array = [](const std::vector<std::uint8_t>& b) {
    std::string a = "[";
    for (std::size_t i = 0; i < b.size(); ++i) a += (i ? ", " : "") + std::to_string(b[i]);
    return a + "]";
  };
  auto verifies = [&](const std::string& json) {
    const auto b = build("Outer", json);
    std::vector<std::uint64_t> aligned((b.size() + 7) / 8);
    std::memcpy(aligned.data(), b.data(), b.size());
    return verifier.verify({reinterpret_cast<const std::byte*>(aligned.data()), b.size()});
  };
  const std::string inner = array(build("Inner", R"({"name": "in", "values": [1, 2]})"));
  const std::string bogus = "[240, 255, 255, 127, 0, 0, 0, 0]";  // a root offset far outside
  const std::string inner_bogus =
      array(build("Inner", R"({"name": "x", "deeper": )" + bogus + "}"));
  const std::string inner_deeper = array(build("Inner", R"({"deeper": )" + inner + "}"));
  CHECK(verifies(R"({"id": 1})"));
  CHECK(verifies(R"({"id": 1, "blob": )" + inner + "}"));
  CHECK(verifies(R"({"blob": )" + inner_deeper + R"(, "items": [{"blob": )" + inner +
                 R"(}], "any_type": "Item", "any": {"blob": )" + inner + "}}"));
  CHECK_FALSE(verifies(R"({"id": 1, "blob": )" + bogus + "}"));
  CHECK_FALSE(verifies(R"({"id": 1, "blob": [4, 0]})"));  // shorter than a root offset
  CHECK_FALSE(verifies(R"({"items": [{"blob": )" + inner + R"(}, {"blob": )" + bogus + "}]}"));
  CHECK_FALSE(verifies(R"({"any_type": "Item", "any": {"blob": )" + bogus + "}}"));
  CHECK_FALSE(verifies(R"({"blob": )" + inner_bogus + "}"));  // inside a nested buffer
}

TEST_CASE("RecordVerifier never reads past a record whose table or union fields are placed past "
          "its end, even at the end of a mapping",
          "[schema]") {
  // FlatBuffers 2.0.8's reflection verifier reads a union's type byte and a table or union
  // field's offset at the table plus the field's vtable entry before checking that place (up to
  // 64 KiB on): a record that ended the ring made it fault (the campaign's fuzz_frames).
  const RecordVerifier verifier(load("nested.fbs"));
  flatbuffers::Parser parser;
  std::string text;
  REQUIRE(flatbuffers::LoadFile(schema_path("nested.fbs").c_str(), false, &text));
  REQUIRE(parser.Parse(text.c_str()));
  REQUIRE(parser.ParseJson(R"({"id": 7, "any_type": "Item", "any": {}})"));
  const std::uint8_t* b = parser.builder_.GetBufferPointer();
  const std::size_t size = parser.builder_.GetSize();

  // The record at the very end of a readable page; 17 inaccessible pages after it.
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::size_t span = 18 * page;
  void* m = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(m != MAP_FAILED);
  auto* base = static_cast<std::uint8_t*>(m);
  REQUIRE(::mprotect(base + page, span - page, PROT_NONE) == 0);
  REQUIRE(size % 8 == 0);
  std::uint8_t* rec = base + page - size;
  std::memcpy(rec, b, size);
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(rec), size);
  CHECK(verifier.verify(bytes));  // as built

  // Outer's fields: id, blob, items, any_type, any: vtable slots 4, 6, 8, 10, 12.
  const auto* root = rec + flatbuffers::ReadScalar<flatbuffers::uoffset_t>(rec);
  auto* vtable =
      const_cast<std::uint8_t*>(root - flatbuffers::ReadScalar<flatbuffers::soffset_t>(root));
  REQUIRE(flatbuffers::ReadScalar<flatbuffers::voffset_t>(vtable) > 12);
  const flatbuffers::voffset_t far =
      GENERATE(flatbuffers::voffset_t{0xFFF0}, flatbuffers::voffset_t{0x8000});
  const int slot = GENERATE(10, 12);  // the union's type byte, its offset
  CAPTURE(far, slot);
  flatbuffers::WriteScalar<flatbuffers::voffset_t>(vtable + slot, far);
  CHECK_FALSE(verifier.verify(bytes));
  ::munmap(m, span);
}

// ---------------------------------------------------------------- the schema area is untrusted

namespace {

// Overwrites part of a segment file, as a hostile peer with write access can.
void poke(const std::string& name, std::uint64_t offset, const void* bytes, std::size_t n) {
  const int fd = ::open(Ring::path_of(name).c_str(), O_RDWR);
  REQUIRE(fd >= 0);
  REQUIRE(::pwrite(fd, bytes, n, static_cast<off_t>(offset)) == static_cast<ssize_t>(n));
  ::close(fd);
}

template <class T>
void poke_header(const std::string& name, std::size_t field_offset, T value) {
  poke(name, field_offset, &value, sizeof value);
}

std::uint64_t hash_of(std::span<const std::uint8_t> b) {
  return fnv1a64(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()));
}

}  // namespace

TEST_CASE("a hostile schema area gives a distinct error for each kind of damage",
          "[schema][hostile]") {
  const auto name = unique_name("schema-hostile");
  RemoveGuard guard(name);
  const Schema v1 = load("evo_v1.fbs");
  const std::size_t n = v1.bfbs().size();
  { Ring ring = Ring::create(name, {.capacity = 1 << 14}, v1); }
  const auto open_code = [&] { return fr_test::error_code([&] { (void)Ring::open(name); }); };
  REQUIRE_FALSE(open_code().has_value());
  constexpr auto kSize = offsetof(layout::SegmentHeader, schema_size);
  constexpr auto kHash = offsetof(layout::SegmentHeader, schema_bfbs_hash);
  constexpr auto kOffset = offsetof(layout::SegmentHeader, schema_offset);

  SECTION("garbage bytes under their own (recomputed) hash: not a schema") {
    std::vector<std::uint8_t> junk(n, 0xA5);
    poke(name, layout::kRingOffset, junk.data(), junk.size());
    poke_header<std::uint64_t>(name, kHash, hash_of(junk));
    CHECK(open_code() == Errc::corrupt_schema);
  }
  SECTION("one byte changed, hash kept: the hash check") {
    std::uint8_t b = 0x42;
    poke(name, layout::kRingOffset + n / 2, &b, 1);
    CHECK(open_code() == Errc::corrupt_schema);
  }
  SECTION("a huge length") {
    poke_header<std::uint64_t>(name, kSize, std::uint64_t{1} << 40);
    CHECK(open_code() == Errc::schema_too_large);
  }
  SECTION("a length that disagrees with the record area's offset") {
    poke_header<std::uint64_t>(name, kSize, layout::kPageSize * 3);
    CHECK(open_code() == Errc::corrupt_header);
  }
  SECTION("a misplaced area") {
    poke_header<std::uint64_t>(name, kOffset, 4096);
    CHECK(open_code() == Errc::corrupt_header);
  }
  SECTION("a valid binary schema with no root type") {
    flatbuffers::Parser p;
    REQUIRE(p.Parse("namespace x; table T { a: int; }"));
    p.Serialize();
    std::vector<std::uint8_t> rootless(p.builder_.GetBufferPointer(),
                                       p.builder_.GetBufferPointer() + p.builder_.GetSize());
    REQUIRE(rootless.size() <= layout::kPageSize);  // fits the area the ring has
    poke(name, layout::kRingOffset, rootless.data(), rootless.size());
    poke_header<std::uint64_t>(name, kSize, rootless.size());
    poke_header<std::uint64_t>(name, kHash, hash_of(rootless));
    CHECK(open_code() == Errc::schema_no_root);
  }
}

TEST_CASE("Schema::from_bfbs: every check on untrusted bytes has its own error",
          "[schema][hostile]") {
  const Schema v1 = load("evo_v1.fbs");
  const auto bfbs = v1.bfbs();
  CHECK(fr_test::error_code([&] { (void)Schema::from_bfbs(bfbs, {.max_depth = 2}); }) ==
        Errc::schema_too_deep);
  CHECK(fr_test::error_code([&] { (void)Schema::from_bfbs(bfbs, {.max_size = 16}); }) ==
        Errc::schema_too_large);
  std::vector<std::uint8_t> cut(bfbs.begin(), bfbs.begin() + static_cast<long>(bfbs.size() / 2));
  CHECK(fr_test::error_code([&] { (void)Schema::from_bfbs(cut); }) == Errc::corrupt_schema);
  CHECK(fr_test::error_code([&] { (void)Schema::from_bfbs({}); }) == Errc::corrupt_schema);
  CHECK(fr_test::error_code([&] { (void)Schema::from_fbs_file(schema_path("missing.fbs")); }) ==
        Errc::invalid_schema);
  // The file-based loaders agree with each other: .fbs and .bfbs give the same schema.
  const auto tmp = "/tmp/" + unique_name("evo") + ".bfbs";
  {
    std::ofstream out(tmp, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bfbs.data()),
              static_cast<std::streamsize>(bfbs.size()));
  }
  const Schema again = Schema::from_file(tmp);
  ::unlink(tmp.c_str());
  CHECK(check_compatible(v1, again).match == SchemaMatch::identical);
  CHECK_THAT(v1.describe(), Catch::Contains("root_type flatring.evo.Order;"));
  CHECK_THAT(v1.describe(), Catch::Contains("qty: int (id: 2);"));
}

namespace {
// A minimal binary schema (one table without fields, the root) naming one source file, with or
// without its list of included files.
std::vector<std::uint8_t> bfbs_with_file(bool with_includes) {
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<flatbuffers::Offset<reflection::Field>> no_fields;
  const auto root = reflection::CreateObjectDirect(fbb, "t.Root", &no_fields);
  std::vector<flatbuffers::Offset<reflection::Object>> objects{root};
  std::vector<flatbuffers::Offset<reflection::Enum>> enums;
  const std::vector<flatbuffers::Offset<flatbuffers::String>> includes;
  std::vector<flatbuffers::Offset<reflection::SchemaFile>> files{
      reflection::CreateSchemaFileDirect(fbb, "//t.fbs", with_includes ? &includes : nullptr)};
  fbb.Finish(reflection::CreateSchemaDirect(fbb, &objects, &enums, nullptr, nullptr, root, nullptr,
                                            reflection::AdvancedFeatures{}, &files),
             reflection::SchemaIdentifier());
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}
}  // namespace

TEST_CASE("Schema::from_bfbs refuses a source file entry without its list of included files, "
          "which FlatBuffers' Parser::Deserialize would dereference",
          "[schema][hostile]") {
  // Found by the campaign's fuzz_frames: a bridge hello carrying such a schema made
  // check_compatible (Parser::Deserialize, for ConformTo) read address 0.
  const auto bad = bfbs_with_file(false);
  CHECK(fr_test::error_code([&] { (void)Schema::from_bfbs(bad); }) == Errc::corrupt_schema);
  // The same schema with the list (empty, as flatc writes it) loads and compares.
  const Schema good = Schema::from_bfbs(bfbs_with_file(true));
  CHECK(good.root_name() == "t.Root");
  auto other = bfbs_with_file(true);
  other.push_back(0);  // different bytes, the same schema: check_compatible loads both
  const Schema again = Schema::from_bfbs(other);
  CHECK(check_compatible(good, again).compatible);
}
