// The flatring tool, black-box: the real binary against real segments, in child processes.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include <nlohmann/json.hpp>

#include <flatring/flatring.hpp>

#include "cli_run.hpp"
#include "helpers.hpp"
#include "observer.hpp"

using namespace flatring;
using namespace std::chrono_literals;
using fr_test::unique_name;
using flatring::test::Msg;
using nlohmann::json;

namespace {

using fr_cli::Cli;
using fr_cli::Output;
using fr_cli::find_ring;
using fr_cli::one_line_error;
using fr_cli::run;
using fr_cli::slurp;

const std::string kMsgSchema = FLATRING_TEST_SCHEMA_DIR "/test_msg.fbs";
const std::string kOtherSchema = FLATRING_TEST_SCHEMA_DIR "/test_other.fbs";

std::string hex(std::uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// A ring created by a child that was then SIGKILLed: nobody will ever remove it.
void create_and_die(const std::string& name, bool attach_writer) {
  pid_t child = fr_test::spawn([&] {
    auto ring = Ring::create(name, {.capacity = 4096});
    if (attach_writer) {
      Writer<> w(ring);
      std::byte b[8]{};
      (void)w.try_write(b);
      ::raise(SIGKILL);
    }
    ::raise(SIGKILL);
    return 0;
  });
  REQUIRE(fr_test::join(child) == 128 + SIGKILL);
}

std::uint32_t observers(const Ring& ring) {
  std::uint32_t n = 0;
  for (const auto& s : ring.control().peers) {
    n += s.pid.load() != 0 && s.role.load() == static_cast<std::uint32_t>(layout::Role::observer)
             ? 1
             : 0;
  }
  return n;
}

// What a free-running tail showed: Msgs built by build_msg(seq, payload) with seq in [lo, hi), in
// increasing order, every byte as committed (never half-copied). It may have missed some.
void check_shown(const Output& out, std::uint64_t lo, std::uint64_t hi, std::size_t payload) {
  std::uint64_t prev = 0;
  bool first = true;
  for (const auto& line : out.lines()) {
    const json j = json::parse(line);
    const std::uint64_t seq = j["seq"];
    CHECK(seq >= lo);
    CHECK(seq < hi);
    if (!first) CHECK(seq > prev);
    first = false;
    prev = seq;
    std::vector<std::byte> expect(payload);
    fr_test::fill_pattern(expect, seq);
    REQUIRE(j["payload"].size() == payload);
    for (std::size_t i = 0; i < payload; ++i)
      REQUIRE(j["payload"][i] == std::to_integer<int>(expect[i]));
  }
}

// Sends Msgs lo..hi-1 with 64-byte payloads (waiting for space), waits for the consumer child to
// finish, then stops the following tail with SIGTERM and returns what it printed.
template <class P>
Output send_then_stop(P& producer, pid_t consumer, Cli& follow, std::uint64_t lo,
                      std::uint64_t hi) {
  flatbuffers::FlatBufferBuilder fbb;
  for (std::uint64_t seq = lo; seq < hi; ++seq) {
    fr_test::build_msg(fbb, seq, 64);
    REQUIRE(producer.send(fbb, 30s) == Status::ok);
  }
  REQUIRE(fr_test::join(consumer) == 0);
  follow.signal(SIGTERM);
  Output out = follow.wait();
  CHECK(out.code == 0);
  return out;
}

}  // namespace

TEST_CASE("create then ls and stat show the ring and its schema and peers and counters", "[cli]") {
  const auto name = unique_name("cli-ls");
  RemoveGuard guard(name);
  auto created = run({"create", name, "--capacity", "64KiB", "--max-record-size", "1KiB",
                      "--schema", kMsgSchema, "--json"});
  REQUIRE(created.code == 0);
  const json c = json::parse(created.out);
  CHECK(c["capacity"] == 65536);
  CHECK(c["max_record_size"] == 1024);
  CHECK(c["root_type"] == "flatring.test.Msg");
  CHECK(c["permissions"] == "0600");

  // The CLI's schema identity is exactly the one the generated code computes.
  auto ring = open_ring<Msg>(name);
  CHECK(ring.info().capacity == 65536);

  SECTION("a ring whose creator exited and that nobody uses is stale") {
    const json entry = find_ring(json::parse(run({"ls", "--json"}).out), name);
    REQUIRE(entry.is_object());
    CHECK(entry["stale"] == true);
    CHECK(entry["creator"]["alive"] == false);
    CHECK(entry["peers"].empty());
  }

  SECTION("a live producer is listed; its records show in fill and counters") {
    Producer<Msg> producer(ring);
    flatbuffers::FlatBufferBuilder fbb;
    std::uint64_t bytes = 0;
    std::uint64_t frames = 0;
    for (std::uint64_t seq = 0; seq < 3; ++seq) {
      fr_test::build_msg(fbb, seq, 10 + seq);
      REQUIRE(producer.try_send(fbb) == Status::ok);
      bytes += fbb.GetSize();
      frames += layout::frame_size(fbb.GetSize());
    }
    const auto ls = run({"ls", "--json"});
    REQUIRE(ls.code == 0);
    const json entry = find_ring(json::parse(ls.out), name);
    REQUIRE(entry.is_object());
    CHECK(entry["mode"] == "spsc");
    CHECK(entry["permissions"] == "0600");
    CHECK(entry["owner_uid"] == ::geteuid());
    CHECK(entry["schema"]["file_identifier"] == "FRTM");
    CHECK(entry["schema"]["hash"] == hex(schema_of<Msg>().hash));
    CHECK(entry["capacity"] == 65536);
    CHECK(entry["fill"] == frames);
    CHECK(entry["stale"] == false);
    REQUIRE(entry["peers"].size() == 1);
    CHECK(entry["peers"][0]["role"] == "producer");
    CHECK(entry["peers"][0]["pid"] == ::getpid());
    CHECK(entry["peers"][0]["alive"] == true);

    const auto table = run({"ls"});
    REQUIRE(table.code == 0);
    CHECK(table.out.rfind("NAME", 0) == 0);
    CHECK(table.out.find(name) != std::string::npos);
    CHECK(table.out.find("producer " + std::to_string(::getpid()) + " alive") != std::string::npos);

    auto stat = run({"stat", name, "--json"});
    REQUIRE(stat.code == 0);
    json s = json::parse(stat.out);
    CHECK(s["totals"]["records_written"] == 3);
    CHECK(s["totals"]["bytes_written"] == bytes);
    CHECK(s["retired"]["records_written"] == 0);
    REQUIRE(s["peers"].size() == 1);
    CHECK(s["peers"][0]["counters"]["records_written"] == 3);

    // A consumer reads the three and fails one verification, then detaches: its counts are retired.
    {
      Consumer<Msg> consumer(ring);
      std::byte junk[40]{};
      REQUIRE(producer.raw().try_write(junk) == Status::ok);
      for (int i = 0; i < 3; ++i) REQUIRE(consumer.try_receive());
      CHECK(consumer.try_receive().status() == Status::verify_failed);
    }
    stat = run({"stat", name, "--json"});
    REQUIRE(stat.code == 0);
    s = json::parse(stat.out);
    CHECK(s["totals"]["records_written"] == 4);
    CHECK(s["totals"]["records_read"] == 4);
    CHECK(s["totals"]["bytes_read"] == bytes + 40);
    CHECK(s["totals"]["verify_failures"] == 1);
    CHECK(s["retired"]["records_read"] == 4);
    CHECK(s["retired"]["records_written"] == 0);

    const auto text = run({"stat", name});
    REQUIRE(text.code == 0);
    CHECK(text.out.find("verify_failures") != std::string::npos);
    CHECK(text.out.find("producer " + std::to_string(::getpid())) != std::string::npos);

    // Bounded --watch: one JSON object per sample, totals as above, rates present.
    const auto watch =
        run({"stat", name, "--watch", "--count", "3", "--interval", "0.05", "--json"});
    REQUIRE(watch.code == 0);
    const auto samples = watch.lines();
    REQUIRE(samples.size() == 3);
    for (std::size_t i = 0; i < samples.size(); ++i) {
      const json w = json::parse(samples[i]);
      CHECK(w["sample"] == i);
      CHECK(w["totals"]["records_written"] == 4);
      CHECK(w["rates"].contains("records_written"));
      CHECK(w["live_peers"] == 1);
    }
  }
}

TEST_CASE("stat shows who waits on the ring: armed WaitFds by slot and futex sleepers",
          "[cli][wait]") {
  const auto name = unique_name("cli-wait");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096});
  Writer<> w(ring);
  Reader<> r(ring);
  const auto slot = static_cast<std::uint32_t>(&r.attachment().slot() - &ring.control().peers[0]);
  auto waiting = [&] {
    auto st = run({"stat", name, "--json"});
    REQUIRE(st.code == 0);
    return json::parse(st.out)["waiting"];
  };
  json wt = waiting();
  CHECK(wt["data"]["waiters"] == 0);
  CHECK(wt["data"]["armed_wait_fd_slots"].empty());
  {
    WaitFd fd(r);
    REQUIRE(fd.arm() == Status::empty);
    wt = waiting();
    CHECK(wt["data"]["waiters"] == 1);
    CHECK(wt["data"]["futex_sleepers"] == 0);
    CHECK(wt["data"]["armed_wait_fd_slots"] == json::array({slot}));
    CHECK(wt["space"]["waiters"] == 0);
    const auto text = run({"stat", name});
    CHECK(text.out.find("consumers: 1 waiting (0 on the futex, WaitFds armed: #" +
                        std::to_string(slot) + ")") != std::string::npos);
    fd.disarm();
  }
  wt = waiting();
  CHECK(wt["data"]["waiters"] == 0);
  CHECK(wt["data"]["armed_wait_fd_slots"].empty());
}

TEST_CASE("rm refuses a ring with live peers unless forced", "[cli]") {
  const auto name = unique_name("cli-rm");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096});
  {
    Writer<> w(ring);
    const auto refused = run({"rm", name});
    CHECK(refused.code == 7);
    CHECK(one_line_error(refused, "1 live peer (producer pid " + std::to_string(::getpid()) + ")"));
    CHECK(Ring::exists(name));
    const auto forced = run({"rm", name, "--force"});
    CHECK(forced.code == 0);
    CHECK_FALSE(Ring::exists(name));
  }
  ring = Ring::create(name, {.capacity = 4096});  // no peers now: removed without --force
  CHECK(run({"rm", name}).code == 0);
  CHECK_FALSE(Ring::exists(name));
  const auto missing = run({"rm", name});
  CHECK(missing.code == 3);
  CHECK(one_line_error(missing, "no ring named '" + name + "'"));
}

TEST_CASE("gc removes stale rings and keeps live ones", "[cli][process]") {
  const auto prefix = unique_name("cli-gc") + ".";
  const std::string live = prefix + "live";         // creator (this process) alive
  const std::string stale = prefix + "stale";       // creator SIGKILLed, no peers
  const std::string dead_writer = prefix + "dead";  // creator and its writer SIGKILLed
  const std::string used = prefix + "used";         // creator SIGKILLed, a live peer attached
  RemoveGuard g1(live), g2(stale), g3(dead_writer), g4(used);
  auto live_ring = Ring::create(live, {.capacity = 4096});
  create_and_die(stale, false);
  create_and_die(dead_writer, true);
  create_and_die(used, false);
  Reader<> reader(Ring::open(used));

  const json list = json::parse(run({"ls", "--json"}).out);
  CHECK(find_ring(list, live)["stale"] == false);
  CHECK(find_ring(list, stale)["stale"] == true);
  CHECK(find_ring(list, used)["stale"] == false);
  const json dead = find_ring(list, dead_writer);
  CHECK(dead["stale"] == true);
  REQUIRE(dead["peers"].size() == 1);
  CHECK(dead["peers"][0]["role"] == "producer");
  CHECK(dead["peers"][0]["alive"] == false);

  const auto dry = run({"gc", "--prefix", prefix, "--dry-run", "--json"});
  REQUIRE(dry.code == 0);
  CHECK(json::parse(dry.out)["removed"].size() == 2);
  CHECK(Ring::exists(stale));

  const auto gc = run({"gc", "--prefix", prefix, "--json"});
  REQUIRE(gc.code == 0);
  const json result = json::parse(gc.out);
  std::vector<std::string> removed;
  for (const auto& r : result["removed"]) removed.push_back(r["name"].get<std::string>());
  std::sort(removed.begin(), removed.end());
  CHECK(removed == std::vector<std::string>{dead_writer, stale});
  CHECK_FALSE(Ring::exists(stale));
  CHECK_FALSE(Ring::exists(dead_writer));
  CHECK(Ring::exists(live));
  CHECK(Ring::exists(used));

  const auto again = run({"gc", "--prefix", prefix});
  CHECK(again.code == 0);
  CHECK(again.out.find("0 stale rings removed, 2 kept") != std::string::npos);
}

TEST_CASE("send then tail round-trips JSON through the schema", "[cli]") {
  const auto name = unique_name("cli-send");
  RemoveGuard guard(name);
  auto ring = create_ring<Msg>(name, {.capacity = 1 << 16});
  const std::vector<json> records{
      {{"seq", 1}, {"payload", {1, 2, 3}}},
      {{"seq", 18446744073709551615ull}, {"payload", json::array()}},
      {{"seq", 3}, {"payload", {255}}},
  };
  std::string ndjson;
  for (const auto& r : records) ndjson += r.dump() + "\n\n";  // blank lines are ignored

  const auto sent = run({"send", name, "--schema", kMsgSchema, "--json", "-"}, ndjson);
  REQUIRE(sent.code == 0);
  CHECK(sent.out == "sent 3 records to " + name + "\n");

  // tail observes: it prints them and leaves them in the ring.
  auto tail = run({"tail", name, "--schema", kMsgSchema});
  REQUIRE(tail.code == 0);
  auto lines = tail.lines();
  REQUIRE(lines.size() == records.size());
  for (std::size_t i = 0; i < lines.size(); ++i) CHECK(json::parse(lines[i]) == records[i]);
  CHECK(observers(ring) == 0);  // it detached

  tail = run({"tail", name, "--schema", kMsgSchema, "-n", "1", "--json"});
  REQUIRE(tail.code == 0);
  const json last = json::parse(tail.out);
  CHECK(last["record"] == records[2]);
  CHECK(last["position"] == ring.control().producer.tail.load() -
                                layout::frame_size(last["size"].get<std::uint64_t>()));

  // A typed consumer receives exactly what was sent: real FlatBuffers with Msg's identifier.
  {
    Consumer<Msg> consumer(ring);
    for (const auto& r : records) {
      auto msg = consumer.try_receive();
      REQUIRE(msg);
      CHECK((*msg)->seq() == r["seq"].get<std::uint64_t>());
      std::vector<int> payload((*msg)->payload()->begin(), (*msg)->payload()->end());
      CHECK(json(payload) == r["payload"]);
    }
    CHECK(consumer.try_receive().status() == Status::empty);
  }
  tail = run({"tail", name, "--schema", kMsgSchema});  // consumed: nothing left to show
  CHECK(tail.code == 0);
  CHECK(tail.out.empty());

  // The other direction: C++ producer, JSON out. A JSON array is accepted as input too.
  {
    Producer<Msg> producer(ring);
    flatbuffers::FlatBufferBuilder fbb;
    fr_test::build_msg(fbb, 77, 4);
    REQUIRE(producer.try_send(fbb) == Status::ok);
  }
  REQUIRE(
      run({"send", name, "--schema", kMsgSchema, "--json", "-", "-q"}, R"([{"seq": 78}])").code ==
      0);
  tail = run({"tail", name, "--schema", kMsgSchema});
  REQUIRE(tail.code == 0);
  lines = tail.lines();
  REQUIRE(lines.size() == 2);
  const json a = json::parse(lines[0]);
  CHECK(a["seq"] == 77);
  REQUIRE(a["payload"].size() == 4);
  std::vector<std::byte> expect(4);
  fr_test::fill_pattern(expect, 77);
  for (std::size_t i = 0; i < 4; ++i) CHECK(a["payload"][i] == std::to_integer<int>(expect[i]));
  CHECK(json::parse(lines[1])["seq"] == 78);
}

TEST_CASE("tail observes without taking records from an attached consumer", "[cli]") {
  const auto name = unique_name("cli-observe");
  RemoveGuard guard(name);
  auto ring = create_ring<Msg>(name, {.capacity = 1 << 16});
  Consumer<Msg> consumer(ring);
  REQUIRE(run({"send", name, "--schema", kMsgSchema, "--json", "-"}, "{\"seq\":5}\n{\"seq\":6}\n")
              .code == 0);

  const auto tail = run({"tail", name, "--schema", kMsgSchema});
  REQUIRE(tail.code == 0);
  CHECK(tail.lines().size() == 2);
  CHECK(ring.control().consumer.head.load() == 0);
  auto first = consumer.try_receive();
  REQUIRE(first);
  CHECK((*first)->seq() == 5);
  auto second = consumer.try_receive();
  REQUIRE(second);
  CHECK((*second)->seq() == 6);

  const auto busy = run({"tail", name, "--schema", kMsgSchema, "--consume"});
  CHECK(busy.code == 7);
  CHECK(one_line_error(busy, "consumer role is held by live process"));
}

TEST_CASE("tail --consume takes the consumer role when no consumer is attached", "[cli]") {
  const auto name = unique_name("cli-consume");
  RemoveGuard guard(name);
  auto ring = create_ring<Msg>(name, {.capacity = 1 << 16});
  REQUIRE(run({"send", name, "--schema", kMsgSchema, "--json", "-"}, "{\"seq\":5}\n{\"seq\":6}\n")
              .code == 0);
  const auto tail = run({"tail", name, "--schema", kMsgSchema, "--consume"});
  REQUIRE(tail.code == 0);
  CHECK(tail.lines().size() == 2);
  CHECK(ring.control().consumer.head.load() == ring.control().producer.tail.load());
  CHECK(ring.control().retired.value[layout::records_read].load() == 2);
}

TEST_CASE("tail --follow prints records as they are committed and stops on a signal",
          "[cli][process]") {
  const auto name = unique_name("cli-follow");
  RemoveGuard guard(name);
  auto ring = create_ring<Msg>(name, {.capacity = 4096});
  Producer<Msg> producer(ring);
  flatbuffers::FlatBufferBuilder fbb;

  SECTION("--count ends it") {
    // The ring is empty when tail starts, so every record it prints was committed after.
    Cli follow(
        {"tail", name, "--schema", kMsgSchema, "--follow", "--count", "40", "--poll", "0.001"});
    while (observers(ring) == 0) ::usleep(1000);  // attached: it sees whatever comes next
    // 40 records of ~100 bytes through a 4 KiB ring: it wraps, with no consumer to make room
    // the producer must wait, so a consumer runs in a child.
    pid_t consumer = fr_test::spawn([&] {
      Consumer<Msg> c(open_ring<Msg>(name));
      for (int i = 0; i < 40; ++i) {
        if (!c.receive(30s)) return 2;
      }
      return 0;
    });
    // The consumer may overtake the observer: whatever tail shows is in order and intact, never
    // half-copied. (How a skip is reported is checked deterministically in the observer test.)
    check_shown(send_then_stop(producer, consumer, follow, 0, 40), 0, 40, 64);
  }

  SECTION("a consumer that waits for it: every record is seen, across the wrap") {
    Cli follow(
        {"tail", name, "--schema", kMsgSchema, "--follow", "--count", "40", "--poll", "0.001"});
    while (observers(ring) == 0) ::usleep(1000);
    Consumer<Msg> consumer(ring);
    for (std::uint64_t seq = 0; seq < 40; ++seq) {
      fr_test::build_msg(fbb, seq, 64);
      REQUIRE(producer.try_send(fbb) == Status::ok);
      while (follow.lines_so_far() < seq + 1) ::usleep(1000);  // tail has printed it
      REQUIRE(consumer.try_receive());
    }
    CHECK(ring.control().producer.tail.load() > ring.info().capacity);
    const auto out = follow.wait();
    REQUIRE(out.code == 0);
    const auto lines = out.lines();
    REQUIRE(lines.size() == 40);
    for (std::uint64_t seq = 0; seq < 40; ++seq) CHECK(json::parse(lines[seq])["seq"] == seq);
    CHECK(out.err.empty());
  }

  SECTION("without a consumer every record is seen") {
    Cli follow({"tail", name, "--schema", kMsgSchema, "--follow", "--count", "3"});
    while (observers(ring) == 0) ::usleep(1000);
    for (std::uint64_t seq = 0; seq < 3; ++seq) {
      fr_test::build_msg(fbb, seq, 8);
      REQUIRE(producer.try_send(fbb) == Status::ok);
    }
    const auto out = follow.wait();
    REQUIRE(out.code == 0);
    const auto lines = out.lines();
    REQUIRE(lines.size() == 3);
    for (std::uint64_t seq = 0; seq < 3; ++seq) CHECK(json::parse(lines[seq])["seq"] == seq);
    CHECK(observers(ring) == 0);
  }

  SECTION("SIGTERM ends it and frees its slot") {
    Cli follow({"tail", name, "--schema", kMsgSchema, "--follow"});
    while (observers(ring) == 0) ::usleep(1000);
    follow.signal(SIGTERM);
    CHECK(follow.wait().code == 0);
    CHECK(observers(ring) == 0);
  }
}

TEST_CASE("tail reports a record that fails verification and goes on", "[cli]") {
  const auto name = unique_name("cli-verify");
  RemoveGuard guard(name);
  auto ring = create_ring<Msg>(name, {.capacity = 1 << 16});
  {
    Producer<Msg> producer(ring);
    flatbuffers::FlatBufferBuilder fbb;
    fr_test::build_msg(fbb, 1, 3);
    REQUIRE(producer.try_send(fbb) == Status::ok);
    std::vector<std::byte> garbage(48);
    fr_test::fill_pattern(garbage, 9);
    REQUIRE(producer.raw().try_write(garbage) == Status::ok);
    fr_test::build_msg(fbb, 2, 3);
    REQUIRE(producer.try_send(fbb) == Status::ok);
  }
  const auto tail = run({"tail", name, "--schema", kMsgSchema});
  CHECK(tail.code == 0);
  const auto lines = tail.lines();
  REQUIRE(lines.size() == 2);
  CHECK(json::parse(lines[0])["seq"] == 1);
  CHECK(json::parse(lines[1])["seq"] == 2);
  CHECK(tail.err.find("(48 bytes) skipped: file identifier is not 'FRTM'") != std::string::npos);
}

TEST_CASE("bad input and a schema mismatch give one-line errors and distinct exit codes", "[cli]") {
  const auto name = unique_name("cli-errors");
  RemoveGuard guard(name);
  auto ring = create_ring<Msg>(name, {.capacity = 4096, .max_record_size = 256});
  auto send = [&](const std::string& input, const std::string& schema = kMsgSchema) {
    return run({"send", name, "--schema", schema, "--json", "-"}, input);
  };

  auto o = send("{\"seq\": 1}\n{\"seq\": 2,\n");
  CHECK(o.code == 6);
  CHECK(one_line_error(o, "malformed JSON on line 2"));
  o = send("[{\"seq\": 1}, {\"seq\": }]");
  CHECK(o.code == 6);
  CHECK(one_line_error(o, "malformed JSON"));
  o = send("{\"seq\": 1, \"colour\": 2}");
  CHECK(o.code == 6);
  CHECK(one_line_error(o, "line 1: does not fit flatring.test.Msg: unknown field: colour"));
  o = send("[1]");
  CHECK(o.code == 6);
  CHECK(one_line_error(o, "element 1: a record must be a JSON object"));
  std::string big = "{\"payload\": [0";
  for (int i = 0; i < 300; ++i) big += ",1";
  o = send(big + "]}");
  CHECK(o.code == 6);
  CHECK(one_line_error(o, "takes at most 256"));
  o = send("{\"value\": 1}", kOtherSchema);
  CHECK(o.code == 5);
  CHECK(one_line_error(o, "schema mismatch: ring '" + name + "' holds FRTM/"));
  o = run({"tail", name, "--schema", kOtherSchema});
  CHECK(o.code == 5);
  CHECK(one_line_error(o, "flatring.test.Other is FRTO/"));
  // Nothing was sent by any of them: bad input is rejected before the first record goes out.
  CHECK(ring.control().producer.tail.load() == 0);

  o = run({"tail", unique_name("cli-none"), "--schema", kMsgSchema});
  CHECK(o.code == 3);
  CHECK(one_line_error(o, "no ring named"));
  o = run({"stat", "no/such"});
  CHECK(o.code == 2);
  CHECK(one_line_error(o, "names may hold only"));
  o = run({"ls", "--bogus"});
  CHECK(o.code == 2);
  CHECK(one_line_error(o, "--bogus"));
  o = run({"create", name});
  CHECK(o.code == 7);
  CHECK(one_line_error(o, "create"));

  // A full ring with no consumer: the records that fit go out, then a clear "not delivered".
  std::string many;
  for (int i = 0; i < 100; ++i) many += "{\"seq\": " + std::to_string(i) + "}\n";
  o = run({"send", name, "--schema", kMsgSchema, "--json", "-", "--timeout", "0"}, many);
  CHECK(o.code == 8);
  CHECK(one_line_error(o, "not sent: the ring stayed full until the timeout"));
}

TEST_CASE("every subcommand has --help", "[cli]") {
  for (const char* sub : {"create", "ls", "stat", "rm", "gc", "tail", "send"}) {
    CAPTURE(sub);
    const auto o = run({sub, "--help"});
    CHECK(o.code == 0);
    CHECK(o.out.find(std::string("Usage: flatring ") + sub) != std::string::npos);
  }
  const auto top = run({"--help"});
  CHECK(top.code == 0);
  CHECK(top.out.find("Exit codes:") != std::string::npos);
}

TEST_CASE("the observer reports records the consumer released before it got to them",
          "[cli][observer]") {
  const auto name = unique_name("observer");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096});
  Writer<> w(ring);
  Reader<> r(ring);
  tool::Observer obs(ring);
  std::byte rec[100]{};  // 32-byte records first, 100-byte ones for the wrap below
  for (int i = 0; i < 4; ++i) {
    rec[0] = static_cast<std::byte>(i);
    REQUIRE(w.try_write({rec, 32}) == Status::ok);
  }
  obs.start_at_last(10);
  auto first = obs.next();
  REQUIRE(first.kind == tool::Observed::Kind::record);
  CHECK(first.bytes.size() == 32);
  CHECK(first.bytes[0] == std::byte{0});
  CHECK(first.position == 0);
  // The consumer takes two records: the observer's next one (index 1) is gone.
  for (int i = 0; i < 2; ++i) {
    REQUIRE(r.try_read());
    r.release();
  }
  auto gap = obs.next();
  CHECK(gap.kind == tool::Observed::Kind::skipped);
  CHECK(gap.position == layout::frame_size(32));
  CHECK(gap.end == 2 * layout::frame_size(32));
  auto third = obs.next();
  REQUIRE(third.kind == tool::Observed::Kind::record);
  CHECK(third.bytes[0] == std::byte{2});
  auto fourth = obs.next();
  REQUIRE(fourth.kind == tool::Observed::Kind::record);
  CHECK(fourth.bytes[0] == std::byte{3});
  CHECK(obs.next().kind == tool::Observed::Kind::not_yet);

  // Wrap: fill past the end of the ring; the observer follows the padding record.
  for (int i = 0; i < 2; ++i) {
    REQUIRE(r.try_read());
    r.release();
  }
  std::uint64_t seen = 0;
  for (int i = 0; i < 200; ++i) {
    rec[0] = static_cast<std::byte>(i);
    REQUIRE(w.try_write({rec, 100}) == Status::ok);
    auto o = obs.next();
    REQUIRE(o.kind == tool::Observed::Kind::record);
    CHECK(o.bytes.size() == 100);
    CHECK(o.bytes[0] == std::byte(static_cast<unsigned char>(i)));
    ++seen;
    REQUIRE(r.try_read());
    r.release();
  }
  CHECK(seen == 200);
  CHECK(w.position() > 4 * ring.info().capacity);

  // A frame word the ring could never hold is reported, not followed.
  const std::uint64_t at = w.position();
  auto& frame = detail::header_at(ring.writable_data(), at & (ring.info().capacity - 1)).frame;
  frame.store(layout::make_frame(layout::RecordType::data, ring.info().capacity));
  CHECK(obs.next().kind == tool::Observed::Kind::corrupt);
  frame.store(0);
}

TEST_CASE("ls measures a broadcast ring's fill from its slowest live consumer", "[cli]") {
  const auto name = unique_name("cli-bcast");
  RemoveGuard guard(name);
  auto ring = create_ring<Msg>(name, {.capacity = 4096, .mode = Mode::broadcast});
  Writer<Mode::broadcast> w(ring);
  Reader<Mode::broadcast> fast(ring);
  Reader<Mode::broadcast> slow(ring);
  std::byte rec[40]{};
  for (int i = 0; i < 3; ++i) REQUIRE(w.try_write(rec) == Status::ok);
  REQUIRE(fast.try_read());
  fast.release();
  const json entry = find_ring(json::parse(run({"ls", "--json"}).out), name);
  REQUIRE(entry.is_object());
  CHECK(entry["mode"] == "broadcast");
  CHECK(entry["positions_valid"] == true);
  CHECK(entry["fill"] == 3 * layout::frame_size(40));
  std::vector<std::uint64_t> cursors;
  for (const auto& p : entry["peers"]) {
    if (p["role"] == "consumer") cursors.push_back(p["cursor"]);
  }
  std::sort(cursors.begin(), cursors.end());
  CHECK(cursors == std::vector<std::uint64_t>{0, layout::frame_size(40)});
  // tail observes from the slowest consumer's cursor: all three records, none consumed.
  auto tail = run({"tail", name, "--schema", kMsgSchema});
  CHECK(tail.code == 0);
  CHECK(tail.lines().empty());  // raw bytes, not Msg: each one is reported and skipped
  CHECK(tail.err.find("(40 bytes) skipped: file identifier is not 'FRTM'") != std::string::npos);
  CHECK(slow.position() == 0);
  const auto mpsc = unique_name("cli-mpsc");
  RemoveGuard mpsc_guard(mpsc);
  auto other = create_ring<Msg>(mpsc, {.capacity = 4096, .mode = Mode::mpsc});
  tail = run({"tail", mpsc, "--schema", kMsgSchema});
  CHECK(tail.code == 9);
  CHECK(
      one_line_error(tail, "observing a mpsc ring is not supported by this build (tail --consume"));
  {
    Producer<Msg, Mode::mpsc> producer(other);
    flatbuffers::FlatBufferBuilder fbb;
    fr_test::build_msg(fbb, 7, 2);
    REQUIRE(producer.try_send(fbb) == Status::ok);
  }
  REQUIRE(run({"send", mpsc, "--schema", kMsgSchema, "--json", "-"}, "{\"seq\": 8}").code == 0);
  tail = run({"tail", mpsc, "--schema", kMsgSchema, "--consume"});
  CHECK(tail.code == 0);
  REQUIRE(tail.lines().size() == 2);
  CHECK(json::parse(tail.lines()[0])["seq"] == 7);
  CHECK(json::parse(tail.lines()[1])["seq"] == 8);
  CHECK(other.control().consumer.head.load() == other.control().producer.tail.load());
}

TEST_CASE("send and tail --consume work on an mpmc ring beside another consumer", "[cli]") {
  const auto name = unique_name("cli-mpmc");
  RemoveGuard guard(name);
  auto ring = create_ring<Msg>(name, {.capacity = 4096, .mode = Mode::mpmc});
  Consumer<Msg, Mode::mpmc> other(
      ring);  // attached, holds nothing: the tool shares the records with it
  auto tail = run({"tail", name, "--schema", kMsgSchema});
  CHECK(tail.code == 9);
  CHECK(
      one_line_error(tail, "observing a mpmc ring is not supported by this build (tail --consume"));
  REQUIRE(run({"send", name, "--schema", kMsgSchema, "--json", "-"}, "{\"seq\": 5}\n{\"seq\": 6}")
              .code == 0);
  tail = run({"tail", name, "--schema", kMsgSchema, "--consume"});
  CHECK(tail.code == 0);
  REQUIRE(tail.lines().size() == 2);
  CHECK(json::parse(tail.lines()[0])["seq"] == 5);
  CHECK(json::parse(tail.lines()[1])["seq"] == 6);
  CHECK(other.try_receive().status() == Status::empty);  // consumed by the tool, exactly once
  CHECK(ring.control().consumer.head.load() == ring.control().producer.tail.load());
}

TEST_CASE("tail observes a broadcast ring and follows it without holding the producer back",
          "[cli][process]") {
  const auto name = unique_name("cli-bfollow");
  RemoveGuard guard(name);
  auto ring = create_ring<Msg>(name, {.capacity = 4096, .mode = Mode::broadcast});
  Producer<Msg, Mode::broadcast> producer(ring);
  flatbuffers::FlatBufferBuilder fbb;
  {
    Consumer<Msg, Mode::broadcast> consumer(ring);
    for (std::uint64_t seq = 0; seq < 2; ++seq) {
      fr_test::build_msg(fbb, seq, 4);
      REQUIRE(producer.try_send(fbb) == Status::ok);
    }
    // send takes the producer role: refused while this process holds it.
    const auto busy = run({"send", name, "--schema", kMsgSchema, "--json", "-"}, "{\"seq\": 2}");
    CHECK(busy.code == 7);
    CHECK(one_line_error(busy, "producer role is held by live process"));
    fr_test::build_msg(fbb, 2, 4);
    REQUIRE(producer.try_send(fbb) == Status::ok);
    auto shown = run({"tail", name, "--schema", kMsgSchema, "-n", "2"});
    REQUIRE(shown.code == 0);
    REQUIRE(shown.lines().size() == 2);
    CHECK(json::parse(shown.lines()[0])["seq"] == 1);
    CHECK(json::parse(shown.lines()[1])["seq"] == 2);
    for (std::uint64_t seq = 0; seq < 3; ++seq) {  // the consumer still gets all three
      auto msg = consumer.try_receive();
      REQUIRE(msg);
      CHECK((*msg)->seq() == seq);
    }
  }

  {
    // In step with a consumer that waits for tail: every record is seen, across the wrap.
    Cli follow({"tail", name, "--schema", kMsgSchema, "--follow", "-n", "0", "--count", "40",
                "--poll", "0.001"});
    while (observers(ring) == 0) ::usleep(1000);
    Consumer<Msg, Mode::broadcast> consumer(ring);
    for (std::uint64_t seq = 10; seq < 50; ++seq) {
      fr_test::build_msg(fbb, seq, 64);
      REQUIRE(producer.try_send(fbb) == Status::ok);
      while (follow.lines_so_far() < seq - 9) ::usleep(1000);
      auto msg = consumer.try_receive();
      REQUIRE(msg);
      CHECK((*msg)->seq() == seq);
    }
    const auto out = follow.wait();
    REQUIRE(out.code == 0);
    const auto lines = out.lines();
    REQUIRE(lines.size() == 40);
    for (std::uint64_t i = 0; i < 40; ++i) CHECK(json::parse(lines[i])["seq"] == 10 + i);
    CHECK(out.err.empty());
  }

  // Free-running: the consumer may overtake tail; what tail shows is in order and intact.
  Cli follow(
      {"tail", name, "--schema", kMsgSchema, "--follow", "--count", "60", "--poll", "0.001"});
  while (observers(ring) == 0) ::usleep(1000);
  pid_t consumer = fr_test::spawn([&] {
    Consumer<Msg, Mode::broadcast> c(open_ring<Msg>(name));
    for (int i = 0; i < 60; ++i) {
      auto msg = c.receive(30s);
      if (!msg || (*msg)->seq() != static_cast<std::uint64_t>(100 + i)) return 2;
    }
    return 0;
  });
  // The producer waits for the consumer only once it has joined; records before that are seen by
  // the observer alone (or skipped), never waited for.
  while (census(ring, layout::Role::consumer).alive == 0) ::usleep(1000);
  check_shown(send_then_stop(producer, consumer, follow, 100, 160), 100, 160, 64);
}

TEST_CASE("a broadcast observer keeps only the records the producer cannot have reached",
          "[cli][observer]") {
  const auto name = unique_name("observer-bc");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = 4096, .mode = Mode::broadcast});
  Writer<Mode::broadcast> w(ring);
  std::byte rec[32]{};
  tool::Observer obs(ring);
  // No consumer: the producer never waits, and may be writing up to two maximum frames past its
  // tail. A record so close to the tail is still safe; older ones are not.
  REQUIRE(w.try_write(rec) == Status::ok);
  auto one = obs.next();
  REQUIRE(one.kind == tool::Observed::Kind::record);
  CHECK(one.position == 0);
  CHECK(obs.next().kind == tool::Observed::Kind::not_yet);
  for (int i = 0; i < 3; ++i) REQUIRE(w.try_write(rec) == Status::ok);
  auto gap = obs.next();
  REQUIRE(gap.kind == tool::Observed::Kind::skipped);
  CHECK(gap.position == layout::frame_size(32));
  CHECK(gap.end == w.position());  // no consumer: the only boundary left is the tail
  CHECK(obs.next().kind == tool::Observed::Kind::not_yet);

  // With a consumer, the producer cannot pass its cursor by more than the capacity: every record
  // at or past the cursor is safe to copy.
  Reader<Mode::broadcast> r(ring);
  for (int i = 0; i < 3; ++i) {
    rec[0] = static_cast<std::byte>(i);
    REQUIRE(w.try_write(rec) == Status::ok);
  }
  tool::Observer late(ring);
  late.start_at_last(10);
  for (int i = 0; i < 3; ++i) {
    auto o = late.next();
    REQUIRE(o.kind == tool::Observed::Kind::record);
    CHECK(o.bytes[0] == static_cast<std::byte>(i));
  }
  CHECK(late.next().kind == tool::Observed::Kind::not_yet);
}

TEST_CASE("a segment that is not a ring is listed with the reason and left alone by gc", "[cli]") {
  const auto name = unique_name("cli-foreign");
  RemoveGuard guard(name);
  {
    std::ofstream junk(Ring::path_of(name), std::ios::binary);
    junk << std::string(9000, 'x');
  }
  ::chmod(Ring::path_of(name).c_str(), 0600);
  const json entry = find_ring(json::parse(run({"ls", "--json"}).out), name);
  REQUIRE(entry.is_object());
  CHECK(entry["error_code"] == "not_flatring");
  CHECK(entry["error"].get<std::string>().find("not a flatring segment") != std::string::npos);
  const auto table = run({"ls"});
  CHECK(table.code == 0);
  CHECK(table.out.find("error: ring '" + name + "': not a flatring segment") != std::string::npos);

  const auto gc = run({"gc", "--prefix", name, "--json"});
  CHECK(gc.code == 0);
  CHECK(json::parse(gc.out)["skipped"][0]["name"] == name);
  CHECK(Ring::exists(name));
  const auto stat = run({"stat", name});
  CHECK(stat.code == 4);
  CHECK(one_line_error(stat, "not a flatring segment"));
  const auto refused = run({"rm", name});
  CHECK(refused.code == 4);
  CHECK(one_line_error(refused, "cannot inspect ring '" + name + "'"));
  CHECK(Ring::exists(name));
  CHECK(run({"rm", name, "--force"}).code == 0);
  CHECK_FALSE(Ring::exists(name));
}
