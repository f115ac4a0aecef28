// The bridge between rings over ZeroMQ, end to end: `flatring bridge in|out` processes on
// loopback (ports chosen at run time), records checked byte for byte on the far ring, bridges
// SIGKILLed at random points, hostile frames from an authenticated peer, refused keys and
// schemas. Every process is reaped (bridge_helpers.hpp: Proc).
#include <zmq.h>

#include <atomic>
#include <random>
#include <thread>

#include "bridge_helpers.hpp"
#include "mode_types.hpp"

using namespace flatring;
using fr_bridge::eventually;
using fr_bridge::InBridge;
using fr_bridge::Proc;
using fr_bridge::Scratch;
using flatring::test::Msg;

namespace {

constexpr std::uint64_t kNone = ~std::uint64_t{0};

/// Writes `n` Msg records with seq 0..n-1 and payload sizes from `size_of`, blocking when full.
class Feeder {
 public:
  template <Mode M, class SizeOf>
  static std::thread start(Ring ring, std::uint64_t n, SizeOf size_of, std::atomic<bool>& failed,
                           std::atomic<std::uint64_t>* written = nullptr) {
    return std::thread([=, &failed] {
      Producer<Msg, M> p(ring);
      flatbuffers::FlatBufferBuilder fbb;
      for (std::uint64_t i = 0; i < n && !failed; ++i) {
        fr_test::build_msg(fbb, i, size_of(i));
        Status s;
        while ((s = p.send(fbb, std::chrono::milliseconds(100))) != Status::ok) {
          if (failed || (s != Status::timed_out && s != Status::full && s != Status::no_consumer &&
                         s != Status::peer_dead)) {
            failed = true;
            return;
          }
        }
        if (written != nullptr) written->store(i + 1);
      }
    });
  }
};

/// Reads Msg records from `ring` and checks that they are exactly seq 0..n-1 in order, each with
/// the payload fill_pattern gave it and the size `size_of` says: no loss, no duplicate.
template <Mode M, class SizeOf>
std::string drain_checked(Ring ring, std::uint64_t n, SizeOf size_of, std::atomic<bool>& failed,
                          std::chrono::seconds limit = std::chrono::seconds(150)) {
  Consumer<Msg, M> c(ring);
  const auto end = std::chrono::steady_clock::now() + limit;
  for (std::uint64_t want = 0; want < n;) {
    if (failed) return "the feeder failed";
    if (std::chrono::steady_clock::now() > end)
      return "gave up at record " + std::to_string(want) + " of " + std::to_string(n);
    auto r = c.receive(std::chrono::milliseconds(100));
    if (!r) {
      if (r.status() == Status::timed_out || r.status() == Status::empty ||
          r.status() == Status::peer_dead)
        continue;
      return "receive: " + std::string(to_string(r.status()));
    }
    const Msg* m = *r;
    if (m->seq() != want)
      return "record " + std::to_string(want) + " expected, got " + std::to_string(m->seq()) +
             (m->seq() < want ? " (a duplicate)" : " (a loss)");
    const auto* p = m->payload();
    const std::size_t size = p == nullptr ? 0 : p->size();
    if (size != size_of(want) ||
        !fr_test::check_pattern({reinterpret_cast<const std::byte*>(p->data()), size}, want))
      return "record " + std::to_string(want) + " has the wrong bytes";
    ++want;
  }
  // Nothing after the last one either.
  auto extra = c.receive(std::chrono::milliseconds(200));
  if (extra) return "a record after the last: seq " + std::to_string((*extra)->seq());
  return {};
}

struct TwoRings {
  std::string a = fr_test::unique_name("bra");
  std::string b = fr_test::unique_name("brb");
  RemoveGuard ga{a}, gb{b};
  Ring ra, rb;
  TwoRings(RingOptions oa, RingOptions ob) {
    ra = create_ring<Msg>(a, oa);
    rb = create_ring<Msg>(b, ob);
  }
};

}  // namespace

TEST_CASE("bridge: 10^5 records of mixed sizes up to 16 MiB arrive byte for byte and in order",
          "[bridge]") {
  Scratch s;
  TwoRings r({.capacity = 64u << 20}, {.capacity = 64u << 20});
  const std::uint64_t n = 100'000;
  auto size_of = [](std::uint64_t i) -> std::size_t {
    if (i % 33'333 == 7) return 16u << 20;               // three of 16 MiB
    if (i % 1'000 == 500) return 65'537;                 // a hundred of 64 KiB + 1
    return static_cast<std::size_t>((i * 7919) % 1500);  // the rest: 0..1499 bytes
  };
  InBridge in(s, r.b);
  const std::string out_status = s.path("out.json");
  Proc out(fr_bridge::out_args(s, r.a, in.endpoint, out_status), s.path("out.log"));
  std::atomic<bool> failed{false};
  std::thread feeder = Feeder::start<Mode::spsc>(r.ra, n, size_of, failed);
  const std::string problem = drain_checked<Mode::spsc>(r.rb, n, size_of, failed);
  failed = true;
  feeder.join();
  INFO(out.log() << in.proc->log());
  CHECK(problem.empty());
  INFO(problem);
  eventually([&] { return in.get("committed") == n; }, "the in to count every record");
  CHECK(in.get("rejected_verify") == 0);
  CHECK(in.get("rejected_malformed") == 0);
  eventually([&] { return fr_bridge::counter(out_status, "acknowledged").value_or(0) == n; },
             "the out to count every acknowledgement");
  CHECK(fr_bridge::terminate(out, out_status) == 0);
  CHECK(fr_bridge::terminate(*in.proc, in.status) == 0);
}

namespace {

// A peer with a valid client key that speaks the bridge protocol by hand: the hostile one.
struct RawPeer {
  void* ctx = zmq_ctx_new();
  void* s = nullptr;
  RawPeer(const Scratch& sc, const std::string& endpoint, const std::string& id) {
    s = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_ROUTING_ID, id.data(), id.size());
    const auto keys = bridge::read_key_pair(sc.path("client.key"));
    const auto server = bridge::read_public_key(sc.path("server.pub"));
    zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, server.data(), server.size());
    zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, keys.public_key.data(), keys.public_key.size());
    zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, keys.secret_key.data(), keys.secret_key.size());
    REQUIRE(zmq_connect(s, endpoint.c_str()) == 0);
  }
  ~RawPeer() {
    zmq_close(s);
    zmq_ctx_term(ctx);
  }
  void send(const std::vector<std::byte>& m, int flags = 0) {
    REQUIRE(zmq_send(s, m.data(), m.size(), flags) == static_cast<int>(m.size()));
  }
  // The next reply's header {type, a, b}, waiting up to 2 s (nothing: type 0).
  std::array<std::uint64_t, 3> reply(long ms = 2000) {
    zmq_pollitem_t it{s, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, ms) <= 0) return {0, 0, 0};
    std::vector<std::byte> b(70000);
    const int n = zmq_recv(s, b.data(), b.size(), 0);
    if (n < 24) return {0, 0, 0};
    std::uint64_t a, bb;
    std::memcpy(&a, b.data() + 8, 8);
    std::memcpy(&bb, b.data() + 16, 8);
    return {static_cast<std::uint64_t>(b[4]), a, bb};
  }
};

std::vector<std::byte> header(std::uint8_t type, std::uint64_t a, std::uint64_t b) {
  std::vector<std::byte> m(24);
  const std::uint32_t magic = 0x31425246;
  std::memcpy(m.data(), &magic, 4);
  m[4] = std::byte{type};
  std::memcpy(m.data() + 8, &a, 8);
  std::memcpy(m.data() + 16, &b, 8);
  return m;
}

void add_entry(std::vector<std::byte>& m, std::uint64_t seq, std::uint64_t prev,
               std::span<const std::byte> payload, std::uint64_t claimed_len = kNone) {
  const std::uint64_t len = claimed_len == kNone ? payload.size() : claimed_len;
  const std::uint64_t flags = 0;
  const std::size_t at = m.size();
  m.resize(at + 32);
  std::memcpy(m.data() + at, &seq, 8);
  std::memcpy(m.data() + at + 8, &prev, 8);
  std::memcpy(m.data() + at + 16, &len, 8);
  std::memcpy(m.data() + at + 24, &flags, 8);
  m.insert(m.end(), payload.begin(), payload.end());
  while (m.size() % 8 != 0) m.push_back(std::byte{0});
}

std::vector<std::byte> msg_record(std::uint64_t seq, std::size_t size) {
  flatbuffers::FlatBufferBuilder fbb;
  fr_test::build_msg(fbb, seq, size);
  const auto b = fr_test::detail_bytes(fbb);
  return {b.begin(), b.end()};
}

}  // namespace

TEST_CASE("bridge: garbage and oversized frames are rejected and counted and the stream goes on",
          "[bridge]") {
  Scratch s;
  const std::string b = fr_test::unique_name("brh");
  RemoveGuard gb(b);
  Ring rb = create_ring<Msg>(b, {.capacity = 1 << 16, .max_record_size = 8192});
  InBridge in(s, b);
  RawPeer peer(s, in.endpoint, "hostile-1");

  // The handshake, as an Out sends it: our schema identity and binary schema.
  auto hello = header(1, 0x1234, 8192);
  const SchemaId id = rb.info().schema;
  const auto bfbs = rb.info().stored_schema.bfbs();
  hello.resize(24 + 12);
  std::memcpy(hello.data() + 24, id.file_identifier, 4);
  std::memcpy(hello.data() + 28, &id.hash, 8);
  for (auto c : bfbs) hello.push_back(static_cast<std::byte>(c));
  peer.send(hello);
  auto w = peer.reply();
  REQUIRE(w[0] == 2);  // welcome
  CHECK(w[1] == kNone);
  CHECK(w[2] == 8192);

  // Not frames at all: random bytes, too short, a wrong magic, two parts, an unknown type.
  std::mt19937_64 rng(42);
  std::vector<std::byte> junk(100);
  for (auto& x : junk) x = static_cast<std::byte>(rng());
  peer.send(junk);
  peer.send({std::byte{1}, std::byte{2}, std::byte{3}});
  auto bad_magic = header(4, 0, 0);
  bad_magic[0] = std::byte{'X'};
  peer.send(bad_magic);
  peer.send(header(4, 0, 0), ZMQ_SNDMORE);
  peer.send(header(4, 0, 0));
  peer.send(header(99, 0, 0));
  // An entry that claims more bytes than the message has.
  auto lying = header(4, 0, 0);
  add_entry(lying, 16, kNone, msg_record(1, 10), 60000);
  peer.send(lying);

  // A good record, then: oversized (above the ring's max record), not a Msg, a gap, a duplicate.
  auto good = header(4, 0, 0);
  add_entry(good, 16, kNone, msg_record(1, 100));
  peer.send(good);
  auto big = header(4, 0, 0);
  add_entry(big, 32, 16, std::vector<std::byte>(8193, std::byte{7}));
  peer.send(big);
  auto bogus = header(4, 0, 0);
  add_entry(bogus, 48, 32, std::vector<std::byte>(64, std::byte{0xEE}));
  peer.send(bogus);
  auto gap = header(4, 0, 0);
  add_entry(gap, 80, 64, msg_record(99, 10));
  peer.send(gap);
  peer.send(good);  // a duplicate of seq 16

  // The In answers the gap with RESEND from the last one it has (48: the rejected records are
  // behind it too), and acknowledges the rest.
  bool resend_seen = false;
  for (int i = 0; i < 10 && !resend_seen; ++i) {
    auto r = peer.reply();
    if (r[0] == 6) {
      resend_seen = true;
      CHECK(r[1] == 48);
      CHECK(r[2] == 2);  // rejected so far: the oversized one and the bogus one
    }
  }
  CHECK(resend_seen);

  // A message far above the size cap (ZMQ_MAXMSGSIZE): ZeroMQ drops that connection; the peer
  // reconnects and the stream goes on where it was.
  std::vector<std::byte> huge = header(4, 0, 0);
  add_entry(huge, 64, 48, std::vector<std::byte>(200'000, std::byte{1}));
  peer.send(huge);
  auto next = header(4, 0, 0);
  add_entry(next, 64, 48, msg_record(2, 200));
  bool acked = false;
  for (int i = 0; i < 50 && !acked; ++i) {
    peer.send(next);
    for (auto r = peer.reply(200); r[0] != 0; r = peer.reply(50))
      acked = acked || (r[0] == 5 && r[1] == 64);
  }
  CHECK(acked);

  // A peer that skipped the handshake is told so.
  RawPeer stranger(s, in.endpoint, "hostile-2");
  bool told = false;
  for (int i = 0; i < 20 && !told; ++i) {
    stranger.send(good);
    auto r = stranger.reply(200);
    told = r[0] == 3 && r[1] == 2;  // refuse: no session
  }
  CHECK(told);

  eventually([&] { return in.get("committed") == 2 && in.get("rejected_no_session") >= 1; },
             "the in's counters");
  CHECK(in.get("rejected_malformed") >= 6);
  CHECK(in.get("rejected_oversized") == 1);
  CHECK(in.get("rejected_verify") == 1);
  CHECK(in.get("rejected_out_of_order") == 1);
  CHECK(in.get("duplicates") >= 1);
  // Exactly the two good records are in the ring.
  Consumer<Msg> c(rb);
  auto r1 = c.receive(std::chrono::seconds(5));
  REQUIRE(r1);
  CHECK((*r1)->seq() == 1);
  auto r2 = c.receive(std::chrono::seconds(5));
  REQUIRE(r2);
  CHECK((*r2)->seq() == 2);
  CHECK(c.receive(std::chrono::milliseconds(100)).status() == Status::timed_out);
  CHECK(fr_bridge::terminate(*in.proc, in.status) == 0);
}

TEST_CASE("bridge: unknown keys, plaintext clients and plaintext off loopback are refused",
          "[bridge]") {
  Scratch s;
  TwoRings r({.capacity = 1 << 16}, {.capacity = 1 << 16});
  InBridge in(s, r.b);

  SECTION("a client key the server was not given") {
    bridge::write_keys(s.path("stranger"), bridge::generate_keys());
    auto args = fr_bridge::out_args(s, r.a, in.endpoint, s.path("out.json"));
    for (auto& a : args) {
      if (a == s.path("client.key")) a = s.path("stranger.key");
    }
    Proc out(args, s.path("out.log"));
    CHECK(out.wait() == 10);
    INFO(out.log());
    CHECK(out.log().find("did not accept our key") != std::string::npos);
    eventually([&] { return in.get("refused_auth") >= 1; }, "the in to count the refusal");
    CHECK(in.get("sessions") == 0);
  }
  SECTION("a plaintext client to a CURVE server") {
    Proc out({"bridge", "out", r.a, "--to", in.endpoint, "--no-curve", "--timeout", "1"},
             s.path("out.log"));
    CHECK(out.wait() == 10);
    INFO(out.log());
    CHECK(out.log().find("security handshake") != std::string::npos);
    // A plaintext peer that keeps trying (ZeroMQ reconnects it): each attempt fails at the In.
    void* ctx = zmq_ctx_new();
    void* plain = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(plain, ZMQ_LINGER, &linger, sizeof linger);
    REQUIRE(zmq_connect(plain, in.endpoint.c_str()) == 0);
    eventually([&] { return in.get("handshake_failed") >= 1; }, "the in to count the failure");
    CHECK(in.get("sessions") == 0);
    zmq_close(plain);
    zmq_ctx_term(ctx);
  }
  SECTION("plaintext on an address that is not loopback") {
    Proc bad_in({"bridge", "in", r.b, "--no-curve", "--bind", "tcp://0.0.0.0:0"},
                s.path("bad-in.log"));
    CHECK(bad_in.wait() == 2);
    CHECK(bad_in.log().find("not a loopback address") != std::string::npos);
    Proc bad_out({"bridge", "out", r.a, "--no-curve", "--to", "tcp://192.0.2.1:5790"},
                 s.path("bad-out.log"));
    CHECK(bad_out.wait() == 2);
  }
  CHECK(fr_bridge::terminate(*in.proc, in.status) == 0);
}

TEST_CASE("bridge: a peer that does not answer is reported within the timeout", "[bridge]") {
  Scratch s;
  const std::string a = fr_test::unique_name("bru");
  RemoveGuard ga(a);
  Ring ra = create_ring<Msg>(a, {.capacity = 1 << 16});
  // A loopback port with no listener: bound by us for a moment, then closed.
  void* ctx = zmq_ctx_new();
  void* sock = zmq_socket(ctx, ZMQ_ROUTER);
  REQUIRE(zmq_bind(sock, "tcp://127.0.0.1:*") == 0);
  char ep[256];
  std::size_t n = sizeof ep;
  zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, ep, &n);
  zmq_close(sock);
  zmq_ctx_term(ctx);
  const std::string out_status = s.path("out.json");
  const std::string& status = out_status;
  Proc out(fr_bridge::out_args(s, a, ep, status), s.path("out.log"));
  eventually([&] { return fr_bridge::field(status, "state") == "unreachable"; },
             "the out to call its peer unreachable");
  CHECK(out.log().find("no answer from") != std::string::npos);
  CHECK(fr_bridge::terminate(out, out_status) == 0);
}

TEST_CASE("bridge: an incompatible schema is refused at connect and a compatible evolution is not",
          "[bridge]") {
  Scratch s;
  const std::string dir = FLATRING_TEST_SCHEMA_DIR;
  const std::string a = fr_test::unique_name("bre"), b = fr_test::unique_name("bre");
  RemoveGuard ga(a), gb(b);
  Ring ra = Ring::create(a, {.capacity = 1 << 16}, Schema::from_fbs_file(dir + "/evo_v1.fbs"));
  SECTION("a field changed type") {
    Ring rb =
        Ring::create(b, {.capacity = 1 << 16}, Schema::from_fbs_file(dir + "/evo_bad_type.fbs"));
    InBridge in(s, b);
    Proc out(fr_bridge::out_args(s, a, in.endpoint, s.path("out.json")), s.path("out.log"));
    CHECK(out.wait() == 5);
    INFO(out.log());
    CHECK(out.log().find("qty") != std::string::npos);
    eventually([&] { return in.get("refused_schema") == 1; }, "the in to count the refusal");
    CHECK(in.get("sessions") == 0);
    CHECK(fr_bridge::terminate(*in.proc, in.status) == 0);
  }
  SECTION("another root type") {
    Ring rb = create_ring<Msg>(b, {.capacity = 1 << 16});
    InBridge in(s, b);
    Proc out(fr_bridge::out_args(s, a, in.endpoint, s.path("out.json")), s.path("out.log"));
    CHECK(out.wait() == 5);
    CHECK(fr_bridge::terminate(*in.proc, in.status) == 0);
  }
  SECTION("version 2 of the schema on the far side") {
    Ring rb = Ring::create(b, {.capacity = 1 << 16}, Schema::from_fbs_file(dir + "/evo_v2.fbs"));
    InBridge in(s, b);
    const std::string out_status = s.path("out.json");
    const std::string& status = out_status;
    Proc out(fr_bridge::out_args(s, a, in.endpoint, status), s.path("out.log"));
    eventually([&] { return fr_bridge::field(status, "state") == "connected"; },
               "the out to connect");
    eventually([&] { return in.get("sessions") == 1; }, "the in to count the session");
    CHECK(fr_bridge::terminate(out, out_status) == 0);
    CHECK(fr_bridge::terminate(*in.proc, in.status) == 0);
  }
}

namespace {
std::size_t small_size(std::uint64_t i) { return static_cast<std::size_t>((i * 13) % 700); }
}  // namespace

TEMPLATE_TEST_CASE("bridge: the sending bridge SIGKILLed at random points and restarted loses "
                   "and duplicates nothing",
                   "[bridge][kill]", fr_test::Spsc, fr_test::Mpsc) {
  constexpr Mode M = TestType::value;
  const int kills = M == Mode::spsc ? 100 : 30;
  Scratch s;
  TwoRings r({.capacity = 1 << 18, .mode = M}, {.capacity = 1 << 18});
  const std::uint64_t n = 40'000;
  InBridge in(s, r.b);
  std::atomic<bool> failed{false};
  std::thread feeder = Feeder::start<M>(r.ra, n, small_size, failed);
  std::string problem;
  std::thread drain([&] { problem = drain_checked<Mode::spsc>(r.rb, n, small_size, failed); });
  std::mt19937 rng(2026);
  const std::string out_status = s.path("out.json");
  const std::string& status = out_status;
  for (int k = 0; k < kills; ++k) {
    Proc out(fr_bridge::out_args(s, r.a, in.endpoint, status), s.path("out.log"));
    // A random point: before the handshake, mid-window, between acknowledgements.
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 40'000));
    CHECK(out.kill(SIGKILL) == 128 + SIGKILL);
  }
  std::remove(status.c_str());
  Proc out(fr_bridge::out_args(s, r.a, in.endpoint, status), s.path("out.log"));
  drain.join();
  failed = true;
  feeder.join();
  INFO(problem << "\nin: " << fr_bridge::slurp(in.status) << "\nout: " << fr_bridge::slurp(status));
  CHECK(problem.empty());
  CHECK(in.get("rejected_verify") == 0);
  CHECK(fr_bridge::terminate(out, out_status) == 0);
  CHECK(fr_bridge::terminate(*in.proc, in.status) == 0);
}

TEMPLATE_TEST_CASE("bridge: the receiving bridge SIGKILLed at random points and restarted loses "
                   "and duplicates nothing",
                   "[bridge][kill]", fr_test::Spsc, fr_test::Broadcast) {
  constexpr Mode M = TestType::value;  // the far ring's mode: one producer, an exact restart
  Scratch s;
  TwoRings r({.capacity = 1 << 18}, {.capacity = 1 << 18, .mode = M});
  const std::uint64_t n = 30'000;
  InBridge in(s, r.b);
  const std::string port = in.endpoint;
  std::atomic<bool> failed{false};
  std::string problem;
  std::thread drain2([&] { problem = drain_checked<M>(r.rb, n, small_size, failed); });
  // The consumer joins first (a broadcast consumer sees what is committed after it joined).
  eventually([&] { return census(r.rb, layout::Role::consumer).alive >= 1; },
             "the consumer to attach");
  std::thread feeder = Feeder::start<Mode::spsc>(r.ra, n, small_size, failed);
  const std::string out_status = s.path("out.json");
  const std::string& status = out_status;
  Proc out(fr_bridge::out_args(s, r.a, port, status), s.path("out.log"));
  std::mt19937 rng(15);
  for (int k = 0; k < 20; ++k) {
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 60'000));
    CHECK(in.proc->kill(SIGKILL) == 128 + SIGKILL);
    in.start(s, r.b, port);
  }
  drain2.join();
  failed = true;
  feeder.join();
  INFO(problem << "\n" << out.log());
  CHECK(problem.empty());
  CHECK(fr_bridge::terminate(out, out_status) == 0);
  CHECK(fr_bridge::terminate(*in.proc, in.status) == 0);
}

TEST_CASE("bridge: a full remote ring stops the source without loss", "[bridge]") {
  Scratch s;
  TwoRings r({.capacity = 1 << 16}, {.capacity = 1 << 14});
  const std::uint64_t n = 5'000;
  auto size_of = [](std::uint64_t) -> std::size_t { return 200; };
  InBridge in(s, r.b);
  const std::string out_status = s.path("out.json");
  const std::string& status = out_status;
  auto args = fr_bridge::out_args(s, r.a, in.endpoint, status);
  args.insert(args.end(), {"--window", "32"});
  Proc out(args, s.path("out.log"));
  std::atomic<bool> failed{false};
  std::atomic<std::uint64_t> written{0};
  std::thread feeder = Feeder::start<Mode::spsc>(r.ra, n, size_of, failed, &written);
  // Nobody reads the far ring: it fills, the In waits, the window fills, the source ring fills.
  // Everything between the producer and the far ring is bounded (two small rings, a window of 32
  // records), far below n, so the producer must stop.
  eventually([&] { return in.get("full_waits") >= 1; }, "the far ring to fill");
  eventually([&] { return fr_bridge::counter(status, "in_flight").value_or(0) == 32; },
             "the window to fill");
  CHECK(written.load() < n);
  CHECK(fr_bridge::counter(status, "in_flight").value_or(99) <= 32);
  // Now drain the far ring: everything arrives, in order, once.
  const std::string problem = drain_checked<Mode::spsc>(r.rb, n, size_of, failed);
  failed = true;
  feeder.join();
  INFO(problem);
  CHECK(problem.empty());
  CHECK(fr_bridge::terminate(out, out_status) == 0);
  CHECK(fr_bridge::terminate(*in.proc, in.status) == 0);
}

TEST_CASE("bridge: a source ring corrupt at the read position is reported once and retried, "
          "and the bridge stays up",
          "[bridge]") {
  Scratch s;
  TwoRings r({.capacity = 1 << 16, .mode = Mode::mpsc}, {.capacity = 1 << 16});
  {
    Writer<Mode::mpsc> w(r.ra);
    flatbuffers::FlatBufferBuilder fbb;
    for (std::uint64_t seq = 0; seq < 3; ++seq) {
      fr_test::build_msg(fbb, seq, 100);
      REQUIRE(w.try_write(fr_test::detail_bytes(fbb)) == Status::ok);
    }
  }
  // The first record's aux word (its extent) zeroed under its data frame: what a consumer killed
  // at the start of zeroing it left before 2026-12-04. No recovery step can tell how far it
  // reaches.
  auto& h = detail::header_at(r.ra.writable_data(), 0);
  h.aux = 0;
  InBridge in(s, r.b);
  const std::string out_status = s.path("out.json");
  const std::string& status = out_status;
  Proc out(fr_bridge::out_args(s, r.a, in.endpoint, status), s.path("out.log"));
  eventually(
      [&] {
        return fr_bridge::field(status, "last_error").find("corrupt at position 0") !=
               std::string::npos;
      },
      "the out to report the corrupt source");
  CHECK(fr_bridge::counter(status, "source_corrupt").value_or(0) >= 1);
  CHECK(fr_bridge::field(status, "state") == "connected");
  CHECK(in.get("committed") == 0);
  INFO(out.log());
  // Logged once for the position, however often it is retried.
  const std::string log = out.log();
  CHECK(log.find("corrupt at position 0") == log.rfind("corrupt at position 0"));
  CHECK(fr_bridge::terminate(out, out_status) == 0);
  CHECK(fr_bridge::terminate(*in.proc, in.status) == 0);
}

TEST_CASE("bridge: the JSON status is valid JSON whatever text a peer put in last_error",
          "[bridge]") {
  bridge::OutStatus out;
  out.forwarded = 7;
  // REFUSE reasons come from the network: quotes, control bytes and bytes that are not UTF-8.
  out.last_error = "the peer refused our schema: \"x\"\n\x01\xff\xfe";
  const std::string o = bridge::to_json(out);
  CHECK(o.find("\"forwarded\":7") != std::string::npos);
  CHECK(o.find("\"side\":\"out\"") == 1);  // first, in the documented order
  CHECK(o.find('\n') == std::string::npos);
  CHECK(o.find("\\\"x\\\"") != std::string::npos);
  CHECK(o.find("\\u0001") != std::string::npos);
  CHECK(o.find("\xff") == std::string::npos);  // replaced, U+FFFD
  CHECK(o.find("\xef\xbf\xbd") != std::string::npos);
  bridge::InStatus in;
  in.rejected_verify = 3;
  in.last_error = "\xc3";  // a cut UTF-8 sequence
  const std::string i = bridge::to_json(in);
  CHECK(i.find("\"rejected_verify\":3") != std::string::npos);
  CHECK(i.find("\"last_error\":\"\xef\xbf\xbd\"") != std::string::npos);
}
