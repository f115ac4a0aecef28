// The flatring tool and a ring's stored schema, black-box: the real binary against real segments.
// tail and send without --schema, --schema checked for compatibility, `flatring schema`, and the
// root type in ls and stat.
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include <nlohmann/json.hpp>

#include <flatring/flatring.hpp>
#include <flatring/schema.hpp>

#include "cli_run.hpp"
#include "helpers.hpp"

using namespace flatring;
using fr_test::unique_name;
using flatring::test::Msg;
using nlohmann::json;

namespace {

using fr_cli::Output;
using fr_cli::find_ring;
using fr_cli::one_line_error;
using fr_cli::run;
using fr_cli::slurp;

const std::string kMsgSchema = FLATRING_TEST_SCHEMA_DIR "/test_msg.fbs";
const std::string kOtherSchema = FLATRING_TEST_SCHEMA_DIR "/test_other.fbs";

// A private temporary directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = "/tmp/flatring-cli-schema-" + std::to_string(::getpid()) + "-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    REQUIRE(::mkdtemp(buf.data()) != nullptr);
    path_ = buf.data();
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  [[nodiscard]] std::string file(const std::string& name) const { return path_ + "/" + name; }
  /// Writes `text` to a file in the directory and returns its path.
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(file(name), std::ios::binary) << text;
    return file(name);
  }

 private:
  std::string path_;
};

std::string as_string(std::span<const std::uint8_t> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// Variants of tests/schema/test_msg.fbs (flatring.test.Msg { seq: ulong; payload: [ubyte]; }).
const char* const kMsgNewer = R"(namespace flatring.test;
table Msg { seq: ulong; payload: [ubyte]; note: string; }
root_type Msg;
file_identifier "FRTM";
)";
const char* const kMsgSeqIsInt = R"(namespace flatring.test;
table Msg { seq: int; payload: [ubyte]; }
root_type Msg;
file_identifier "FRTM";
)";
const char* const kMsgReordered = R"(namespace flatring.test;
table Msg { payload: [ubyte]; seq: ulong; }
root_type Msg;
file_identifier "FRTM";
)";

}  // namespace

TEST_CASE("schema: generated code stores its schema, and tail and send need no --schema",
          "[cli][schema]") {
  const auto name = unique_name("clis-rt");
  RemoveGuard guard(name);
  auto ring = create_ring<Msg>(name, {.capacity = 65536});
  // The generated header embeds the binary schema (flatc --bfbs-gen-embed): the ring stores it.
  REQUIRE_FALSE(binary_schema_of<Msg>().empty());
  REQUIRE_FALSE(ring.info().stored_schema.empty());
  CHECK(ring.info().stored_schema.root_name() == "flatring.test.Msg");
  CHECK(as_string(Ring::open(name).info().stored_schema.bfbs()) ==
        as_string(binary_schema_of<Msg>().bfbs()));

  const auto sent =
      run({"send", name, "--json", "-"}, "{\"seq\": 7, \"payload\": [1, 2, 3]}\n{\"seq\": 8}\n");
  REQUIRE(sent.code == 0);
  CHECK(sent.out == "sent 2 records to " + name + "\n");
  CHECK(sent.err.empty());

  auto tail = run({"tail", name});
  REQUIRE(tail.code == 0);
  CHECK(tail.err.empty());
  auto lines = tail.lines();
  REQUIRE(lines.size() == 2);
  json a = json::parse(lines[0]);
  CHECK(a["seq"] == 7);
  CHECK(a["payload"] == json::array({1, 2, 3}));
  CHECK(json::parse(lines[1])["seq"] == 8);

  tail = run({"tail", name, "-n", "1", "--json"});
  REQUIRE(tail.code == 0);
  lines = tail.lines();
  REQUIRE(lines.size() == 1);
  CHECK(json::parse(lines[0])["record"]["seq"] == 8);

  // What send built is a real Msg, with its file identifier: the generated code's consumer takes
  // it.
  Consumer<Msg> consumer(ring);
  auto r = consumer.try_receive();
  REQUIRE(r);
  CHECK((*r)->seq() == 7);
  REQUIRE((*r)->payload() != nullptr);
  CHECK((*r)->payload()->size() == 3);
  r = consumer.try_receive();
  REQUIRE(r);
  CHECK((*r)->seq() == 8);
}

TEST_CASE("schema: --schema is checked for compatibility with the stored schema", "[cli][schema]") {
  const auto name = unique_name("clis-compat");
  RemoveGuard guard(name);
  auto ring = create_ring<Msg>(name, {.capacity = 65536});
  TempDir dir;

  SECTION("the same schema, as a .fbs or as the ring's own .bfbs") {
    REQUIRE(run({"send", name, "--schema", kMsgSchema, "--json", "-", "-q"}, "{\"seq\": 1}").code ==
            0);
    const std::string bfbs = dir.file("msg.bfbs");
    REQUIRE(run({"schema", name, "--bfbs", bfbs}).code == 0);
    REQUIRE(run({"send", name, "--schema", bfbs, "--json", "-", "-q"}, "{\"seq\": 2}").code == 0);
    for (const auto& schema : {kMsgSchema, bfbs}) {
      CAPTURE(schema);
      const auto tail = run({"tail", name, "--schema", schema});
      REQUIRE(tail.code == 0);
      const auto lines = tail.lines();
      REQUIRE(lines.size() == 2);
      CHECK(json::parse(lines[0])["seq"] == 1);
      CHECK(json::parse(lines[1])["seq"] == 2);
    }
  }

  SECTION("a compatible evolution: a field added at the end") {
    const std::string newer = dir.write("msg_newer.fbs", kMsgNewer);
    const auto sent =
        run({"send", name, "--schema", newer, "--json", "-"}, R"({"seq": 5, "note": "hi"})");
    REQUIRE(sent.code == 0);
    // The newer schema sees the new field; the ring's own schema (older) does not.
    auto tail = run({"tail", name, "--schema", newer});
    REQUIRE(tail.code == 0);
    REQUIRE(tail.lines().size() == 1);
    json j = json::parse(tail.lines()[0]);
    CHECK(j["seq"] == 5);
    CHECK(j["note"] == "hi");
    tail = run({"tail", name});
    REQUIRE(tail.code == 0);
    REQUIRE(tail.lines().size() == 1);
    j = json::parse(tail.lines()[0]);
    CHECK(j["seq"] == 5);
    CHECK_FALSE(j.contains("note"));
  }

  SECTION("an incompatible schema is refused, naming the field") {
    const std::string retyped = dir.write("msg_seq_int.fbs", kMsgSeqIsInt);
    auto o = run({"tail", name, "--schema", retyped});
    CHECK(o.code == 5);
    CHECK(one_line_error(o, "field flatring.test.Msg.seq changed type"));
    CHECK(one_line_error(o, "not compatible with the schema stored in ring '" + name + "'"));
    o = run({"send", name, "--schema", retyped, "--json", "-"}, "{\"seq\": 1}");
    CHECK(o.code == 5);
    CHECK(one_line_error(o, "field flatring.test.Msg.seq changed type"));

    const std::string reordered = dir.write("msg_reordered.fbs", kMsgReordered);
    o = run({"send", name, "--schema", reordered, "--json", "-"}, "{\"seq\": 1}");
    CHECK(o.code == 5);
    CHECK(one_line_error(o, "field flatring.test.Msg.seq has id 0"));

    // Another root type: the identity check names both.
    o = run({"tail", name, "--schema", kOtherSchema});
    CHECK(o.code == 5);
    CHECK(one_line_error(o, "holds FRTM/"));
    CHECK(one_line_error(
        o, "(flatring.test.Msg), the schema's root type flatring.test.Other is FRTO/"));
    // Nothing was sent by any of them.
    CHECK(ring.control().producer.tail.load() == 0);
  }

  SECTION("a --schema file that does not load is a schema error (exit 5), never a bad ring") {
    auto o = run({"tail", name, "--schema", dir.write("broken.fbs", "table Msg { seq: ulong ")});
    CHECK(o.code == 5);
    CHECK(one_line_error(o, "schema '" + dir.file("broken.fbs") + "'"));
    o = run({"tail", name, "--schema",
             dir.write("junk.bfbs", std::string("\x10\0\0\0BFBS", 8) + std::string(40, 'x'))});
    CHECK(o.code == 5);
    CHECK(one_line_error(o, "not a binary schema"));
    const std::string bfbs = dir.file("msg.bfbs");
    REQUIRE(run({"schema", name, "--bfbs", bfbs}).code == 0);
    o = run({"tail", name, "--schema", bfbs, "--root-type", "Other"});
    CHECK(o.code == 5);
    CHECK(one_line_error(o, "its root type is flatring.test.Msg"));
    CHECK(run({"tail", name, "--schema", bfbs, "--root-type", "Msg"}).code == 0);
  }
}

TEST_CASE("schema: flatring schema writes the stored .bfbs and lists it", "[cli][schema]") {
  const auto name = unique_name("clis-dump");
  RemoveGuard guard(name);
  auto ring = create_ring<Msg>(name, {.capacity = 4096});
  const std::string stored = as_string(ring.info().stored_schema.bfbs());
  REQUIRE_FALSE(stored.empty());
  TempDir dir;

  const std::string file = dir.file("out.bfbs");
  auto o = run({"schema", name, "--bfbs", file});
  REQUIRE(o.code == 0);
  CHECK(o.out.find("flatring.test.Msg") != std::string::npos);
  CHECK(slurp(file) == stored);
  // A .bfbs written by it loads back as the same schema.
  CHECK(as_string(Schema::from_file(file).bfbs()) == stored);

  o = run({"schema", name, "--bfbs", "-"});
  REQUIRE(o.code == 0);
  CHECK(o.out == stored);

  for (const auto& args : {std::vector<std::string>{"schema", name, "--text"},
                           std::vector<std::string>{"schema", name}}) {
    o = run(args);
    REQUIRE(o.code == 0);
    CHECK(o.out.find("root_type flatring.test.Msg") != std::string::npos);
    CHECK(o.out.find("file_identifier \"FRTM\"") != std::string::npos);
    CHECK(o.out.find("table flatring.test.Msg {") != std::string::npos);
    CHECK(o.out.find("seq: ulong") != std::string::npos);
    CHECK(o.out.find("payload: [ubyte]") != std::string::npos);
    CHECK(o.out == ring.info().stored_schema.describe());
  }

  // Both: the file, and the listing on stdout.
  const std::string both = dir.file("both.bfbs");
  o = run({"schema", name, "--bfbs", both, "--text"});
  REQUIRE(o.code == 0);
  CHECK(slurp(both) == stored);
  CHECK(o.out == ring.info().stored_schema.describe());

  o = run({"schema", name, "--bfbs", "-", "--text"});
  CHECK(o.code == 2);
  CHECK(one_line_error(o, "stdout"));
  o = run({"schema", unique_name("clis-none")});
  CHECK(o.code == 3);
  CHECK(one_line_error(o, "no ring named"));
  o = run({"schema", "--help"});
  CHECK(o.code == 0);
  CHECK(o.out.find("--bfbs") != std::string::npos);
}

TEST_CASE("schema: ls and stat show the root type", "[cli][schema]") {
  const auto name = unique_name("clis-ls");
  const auto id_only = unique_name("clis-ls-id");
  const auto made = unique_name("clis-ls-cli");
  RemoveGuard guard(name);
  RemoveGuard guard_id(id_only);
  RemoveGuard guard_made(made);
  auto ring = create_ring<Msg>(name, {.capacity = 65536});
  // A ring with the identity only (as a layout-1 ring or code without an embedded schema).
  auto bare = Ring::create(id_only, {.capacity = 4096}, schema_of<Msg>());
  REQUIRE(bare.info().stored_schema.empty());
  // flatring create --schema stores the schema too.
  REQUIRE(run({"create", made, "--capacity", "4KiB", "--schema", kMsgSchema}).code == 0);
  const Schema made_schema = Ring::open(made).info().stored_schema;
  REQUIRE_FALSE(made_schema.empty());
  CHECK(made_schema.root_name() == "flatring.test.Msg");
  CHECK(check_compatible(made_schema, binary_schema_of<Msg>()).compatible);

  const auto ls = run({"ls", "--json"});
  REQUIRE(ls.code == 0);
  const json all = json::parse(ls.out);
  for (const auto& n : {name, made}) {
    CAPTURE(n);
    const json e = find_ring(all, n);
    REQUIRE(e.is_object());
    CHECK(e["root_type"] == "flatring.test.Msg");
    CHECK(e["schema"]["root_type"] == "flatring.test.Msg");
    CHECK(e["schema"]["file_identifier"] == "FRTM");
    CHECK(e["schema"]["binary_schema_size"] == Ring::open(n).info().stored_schema.bfbs().size());
  }
  const json e = find_ring(all, id_only);
  REQUIRE(e.is_object());
  CHECK(e["root_type"].is_null());
  CHECK(e["schema"]["root_type"].is_null());
  CHECK(e["schema"]["binary_schema_size"] == 0);
  CHECK(e["schema"]["file_identifier"] == "FRTM");

  const auto table = run({"ls"});
  REQUIRE(table.code == 0);
  bool saw_root = false;
  bool saw_id = false;
  for (const auto& line : table.lines()) {
    if (line.rfind(name + " ", 0) == 0)
      saw_root = line.find(" flatring.test.Msg ") != std::string::npos;
    if (line.rfind(id_only + " ", 0) == 0) saw_id = line.find(" FRTM/") != std::string::npos;
  }
  CHECK(saw_root);
  CHECK(saw_id);

  auto stat = run({"stat", name, "--json"});
  REQUIRE(stat.code == 0);
  const json s = json::parse(stat.out);
  CHECK(s["root_type"] == "flatring.test.Msg");
  CHECK(s["schema"]["file_identifier"] == "FRTM");
  stat = run({"stat", name});
  REQUIRE(stat.code == 0);
  CHECK(stat.out.rfind(name + " (spsc, schema flatring.test.Msg, capacity", 0) == 0);
  stat = run({"stat", id_only});
  REQUIRE(stat.code == 0);
  CHECK(stat.out.rfind(id_only + " (spsc, schema FRTM/", 0) == 0);

  // tail and send of the ring flatring create made need no --schema either.
  REQUIRE(run({"send", made, "--json", "-", "-q"}, "{\"seq\": 42}").code == 0);
  const auto tail = run({"tail", made});
  REQUIRE(tail.code == 0);
  REQUIRE(tail.lines().size() == 1);
  CHECK(json::parse(tail.lines()[0])["seq"] == 42);
}

TEST_CASE("schema: a ring without a stored schema needs --schema, and schema fails",
          "[cli][schema]") {
  SECTION("a raw ring") {
    const auto name = unique_name("clis-raw");
    RemoveGuard guard(name);
    auto ring = Ring::create(name, {.capacity = 4096});
    auto o = run({"schema", name});
    CHECK(o.code == 5);
    CHECK(one_line_error(o, "ring '" + name + "' is a raw ring: it has no schema"));
    o = run({"schema", name, "--bfbs", "-"});
    CHECK(o.code == 5);
    CHECK(o.out.empty());
    o = run({"tail", name});
    CHECK(o.code == 5);
    CHECK(one_line_error(o, "ring '" + name + "' is a raw ring (no schema)"));
    o = run({"send", name, "--json", "-"}, "{\"seq\": 1}");
    CHECK(o.code == 5);
    CHECK(one_line_error(o, "is a raw ring (no schema)"));
    o = run({"tail", name, "--schema", kMsgSchema});
    CHECK(o.code == 5);
    CHECK(one_line_error(o, "schema mismatch: ring '" + name + "' holds raw"));
    CHECK(ring.control().producer.tail.load() == 0);
  }

  SECTION("a ring with the identity only: --schema is checked by identity, as before") {
    const auto name = unique_name("clis-idonly");
    RemoveGuard guard(name);
    auto ring = Ring::create(name, {.capacity = 4096}, schema_of<Msg>());
    auto o = run({"schema", name});
    CHECK(o.code == 5);
    CHECK(one_line_error(o, "stores no binary schema, only its identity FRTM/"));
    o = run({"tail", name});
    CHECK(o.code == 5);
    CHECK(one_line_error(o, "stores no schema"));
    CHECK(one_line_error(o, "--schema"));
    o = run({"send", name, "--json", "-"}, "{\"seq\": 1}");
    CHECK(o.code == 5);
    CHECK(one_line_error(o, "stores no schema"));

    REQUIRE(run({"send", name, "--schema", kMsgSchema, "--json", "-", "-q"}, "{\"seq\": 3}").code ==
            0);
    const auto tail = run({"tail", name, "--schema", kMsgSchema});
    REQUIRE(tail.code == 0);
    REQUIRE(tail.lines().size() == 1);
    CHECK(json::parse(tail.lines()[0])["seq"] == 3);
    o = run({"tail", name, "--schema", kOtherSchema});
    CHECK(o.code == 5);
    CHECK(one_line_error(o, "schema mismatch: ring '" + name + "' holds FRTM/"));
  }
}

TEST_CASE("tail shows records built in place exactly as consumers see them, in spsc and broadcast",
          "[cli][schema][build]") {
  const auto mode = GENERATE(Mode::spsc, Mode::broadcast);
  CAPTURE(to_string(mode));
  const auto name = unique_name("clis-build");
  RemoveGuard guard(name);
  auto ring = create_ring<Msg>(name, {.capacity = 65536, .mode = mode});
  auto send_built = [&](auto& producer) {
    for (std::uint64_t seq = 1; seq <= 3; ++seq) {
      // Hints far above the record: dead space in front of each record in the ring.
      REQUIRE(producer.try_build(1000, [&](flatbuffers::FlatBufferBuilder& fbb) {
        const std::uint8_t bytes[] = {std::uint8_t(seq), 2, 3};
        return flatring::test::CreateMsg(fbb, seq, fbb.CreateVector(bytes, 3));
      }) == Status::ok);
    }
  };
  // broadcast: tail shows what the slowest consumer has not read yet, so one stays attached.
  std::optional<Reader<Mode::broadcast>> reader;
  if (mode == Mode::spsc) {
    Producer<Msg> producer(ring);
    send_built(producer);
  } else {
    reader.emplace(ring);
    Producer<Msg, Mode::broadcast> producer(ring);
    send_built(producer);
  }
  const auto tail = run({"tail", name});
  REQUIRE(tail.code == 0);
  CHECK(tail.err.empty());
  const auto lines = tail.lines();
  REQUIRE(lines.size() == 3);
  for (std::uint64_t seq = 1; seq <= 3; ++seq) {
    const json j = json::parse(lines[seq - 1]);
    CHECK(j["seq"] == seq);
    CHECK(j["payload"] == json::array({seq, 2, 3}));
  }
}
