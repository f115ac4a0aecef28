// The network rows, over TCP loopback (docs/bridge.md).
//   zmq-push-pull        plain ZeroMQ PUSH/PULL, CURVE off: zmq_send of the payload, zmq_recv into
//                        a buffer (the baseline a user would write by hand).
//   zmq-push-pull-curve  the same with CURVE on (a server key pair, a client key pair).
//   flatring-bridge      ring to ring: the sender's Producer<Sample> commits into ring A, a
//                        bridge::Out thread in the same process forwards it, a bridge::In thread in
//                        the receiving process verifies each record against ring B's schema and
//                        commits it, the receiver's Consumer<Sample> verifies it again and reads
//                        it. CURVE on, ZAP allow-list, acknowledged windowed delivery: what
//                        `flatring bridge out|in` do.
// Throughput: senders busy-poll on `full` (ring) or block in zmq_send (PUSH, at its high-water
// mark); receivers as their rows' consumers. Latency: a ping-pong through two such channels.
#include "transport.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.h>

#include <flatring/bridge.hpp>
#include <flatring/flatring.hpp>

#include "bench_generated.h"

#include <fmt/format.h>

#include <atomic>
#include <thread>
#include <vector>

FLATRING_SCHEMA(flatring_bench::Sample, flatring_bench::SampleIdentifier());

namespace bench {
namespace {

using namespace std::chrono_literals;

// A free loopback port, found by binding port 0 (the case then binds it again: a tiny race with
// other programs, acceptable for a benchmark).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) fail_errno("socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t n = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n) != 0) {
    ::close(fd);
    fail_errno("bind 127.0.0.1:0");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

[[noreturn]] void fail_zmq(const char* what) {
  throw BenchError(fmt::format("zmq: {}: {}", what, zmq_strerror(zmq_errno())));
}

struct Keys {
  flatring::bridge::KeyPair server = flatring::bridge::generate_keys();
  flatring::bridge::KeyPair client = flatring::bridge::generate_keys();
};

// ---------------------------------------------------------------- plain PUSH/PULL

class ZmqSocket {
 public:
  ZmqSocket(int type, const Keys* curve, bool server) : ctx_(zmq_ctx_new()) {
    s_ = zmq_socket(ctx_, type);
    if (s_ == nullptr) fail_zmq("zmq_socket");
    int v = 0;
    zmq_setsockopt(s_, ZMQ_LINGER, &v, sizeof v);
    if (curve != nullptr) {
      if (server) {
        v = 1;
        zmq_setsockopt(s_, ZMQ_CURVE_SERVER, &v, sizeof v);
        zmq_setsockopt(s_, ZMQ_CURVE_SECRETKEY, curve->server.secret_key.data(), 40);
      } else {
        zmq_setsockopt(s_, ZMQ_CURVE_SERVERKEY, curve->server.public_key.data(), 40);
        zmq_setsockopt(s_, ZMQ_CURVE_PUBLICKEY, curve->client.public_key.data(), 40);
        zmq_setsockopt(s_, ZMQ_CURVE_SECRETKEY, curve->client.secret_key.data(), 40);
      }
    }
  }
  ~ZmqSocket() {
    zmq_close(s_);
    zmq_ctx_term(ctx_);
  }
  ZmqSocket(const ZmqSocket&) = delete;
  ZmqSocket& operator=(const ZmqSocket&) = delete;
  ZmqSocket(ZmqSocket&& o) noexcept : ctx_(o.ctx_), s_(o.s_) { o.ctx_ = o.s_ = nullptr; }
  void* get() const noexcept { return s_; }

 private:
  void* ctx_;
  void* s_;
};

template <bool Curve>
class ZmqChannel {
 public:
  explicit ZmqChannel(const ChannelConfig& cfg)
      : cfg_(cfg), endpoint_(fmt::format("tcp://127.0.0.1:{}", free_port())) {}

  static std::optional<std::string> unsupported(std::size_t, Pattern) { return std::nullopt; }

  class Sender {
   public:
    Sender(Peer& peer, const ZmqChannel& ch)
        : peer_(&peer), s_(ZMQ_PUSH, Curve ? &ch.keys_ : nullptr, false), buf_(ch.cfg_.payload) {
      fill_pattern(buf_.data(), buf_.size());
      int t = 100;  // a blocked send wakes to check the other process
      zmq_setsockopt(s_.get(), ZMQ_SNDTIMEO, &t, sizeof t);
      if (zmq_connect(s_.get(), ch.endpoint_.c_str()) != 0) fail_zmq("connect");
    }
    void send(std::uint64_t seq) {
      stamp(buf_.data(), buf_.size(), seq);
      while (zmq_send(s_.get(), buf_.data(), buf_.size(), 0) < 0) {
        if (zmq_errno() != EAGAIN && zmq_errno() != EINTR) fail_zmq("zmq_send");
        peer_->check_now();
      }
    }

   private:
    Peer* peer_;
    ZmqSocket s_;
    std::vector<std::byte> buf_;
  };

  class Receiver {
   public:
    Receiver(Peer& peer, const ZmqChannel& ch)
        : peer_(&peer),
          s_(ZMQ_PULL, Curve ? &ch.keys_ : nullptr, true),
          buf_(ch.cfg_.payload + 1),
          payload_(ch.cfg_.payload) {
      int t = 100;
      zmq_setsockopt(s_.get(), ZMQ_RCVTIMEO, &t, sizeof t);
      if (zmq_bind(s_.get(), ch.endpoint_.c_str()) != 0) fail_zmq("bind");
    }
    void recv(std::uint64_t seq) {
      int n;
      while ((n = zmq_recv(s_.get(), buf_.data(), buf_.size(), 0)) < 0) {
        if (zmq_errno() != EAGAIN && zmq_errno() != EINTR) fail_zmq("zmq_recv");
        peer_->check_now();
      }
      check(buf_.data(), static_cast<std::size_t>(n), payload_, seq);
    }

   private:
    Peer* peer_;
    ZmqSocket s_;
    std::vector<std::byte> buf_;
    std::size_t payload_;
  };

  Sender sender(Peer& peer) { return Sender(peer, *this); }
  Receiver receiver(Peer& peer) { return Receiver(peer, *this); }

 private:
  ChannelConfig cfg_;
  std::string endpoint_;
  Keys keys_;
};

// ---------------------------------------------------------------- the bridge

constexpr std::size_t kTypedOverhead = 256;

// A bridge::Out or bridge::In on a thread of its own, stopped and joined on destruction.
template <class Side>
class BridgeThread {
 public:
  template <class Options>
  explicit BridgeThread(Options o) : side_(std::move(o)) {
    thread_ = std::thread([this] {
      try {
        side_.run([this] { return stop_.load(std::memory_order_relaxed); });
      } catch (const std::exception& e) {
        error_ = e.what();
        failed_.store(true);
      }
    });
  }
  ~BridgeThread() {
    stop_.store(true);
    thread_.join();
  }
  void check() const {
    if (failed_.load()) throw BenchError("bridge: " + error_);
  }

 private:
  Side side_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> failed_{false};
  std::string error_;
  std::thread thread_;
};

class BridgeChannel {
 public:
  explicit BridgeChannel(const ChannelConfig& cfg)
      : cfg_(cfg),
        a_(cfg.name + "-a"),
        b_(cfg.name + "-b"),
        ga_(a_),
        gb_(b_),
        ca_(NameKind::file, flatring::Ring::path_of(a_)),
        cb_(NameKind::file, flatring::Ring::path_of(b_)),
        state_("/dev/shm/flatring-bridge." + b_ + ".state"),
        cs_(NameKind::file, state_),
        endpoint_(fmt::format("tcp://127.0.0.1:{}", free_port())) {
    flatring::RingOptions o;
    o.max_record_size = cfg.payload + kTypedOverhead;
    o.capacity = std::max<std::uint64_t>(std::bit_ceil(4 * (o.max_record_size + 64)), 1u << 20);
    for (const auto& n : {a_, b_}) {
      flatring::Ring::remove(n);
      (void)flatring::create_ring<flatring_bench::Sample>(n, o);
    }
    std::remove(state_.c_str());
  }
  ~BridgeChannel() { std::remove(state_.c_str()); }

  static std::optional<std::string> unsupported(std::size_t, Pattern) { return std::nullopt; }

  class Sender {
   public:
    Sender(Peer& peer, const BridgeChannel& ch)
        : peer_(&peer),
          p_(flatring::open_ring<flatring_bench::Sample>(ch.a_)),
          out_(out_options(ch)),
          fbb_(ch.cfg_.payload + kTypedOverhead),
          src_(ch.cfg_.payload) {
      fill_pattern(src_.data(), src_.size());
    }
    void send(std::uint64_t seq) {
      stamp(src_.data(), src_.size(), seq);
      fbb_.Clear();
      auto vec = fbb_.CreateVector(reinterpret_cast<const std::uint8_t*>(src_.data()), src_.size());
      flatring_bench::FinishSampleBuffer(fbb_, flatring_bench::CreateSample(fbb_, seq, vec));
      for (;;) {
        const flatring::Status s = p_.try_send(fbb_);
        if (s == flatring::Status::ok) [[likely]]
          return;
        if (s != flatring::Status::full)
          throw BenchError(fmt::format("try_send: {}", flatring::to_string(s)));
        std::this_thread::yield();  // the Out thread needs the core to free space
        out_.check();
        peer_->spin_check();
      }
    }

   private:
    static flatring::bridge::OutOptions out_options(const BridgeChannel& ch) {
      flatring::bridge::OutOptions o;
      o.ring = ch.a_;
      o.to = ch.endpoint_;
      o.security.keys = ch.keys_.client;
      o.security.server_key = ch.keys_.server.public_key;
      return o;
    }
    Peer* peer_;
    flatring::Producer<flatring_bench::Sample> p_;
    BridgeThread<flatring::bridge::Out> out_;
    flatbuffers::FlatBufferBuilder fbb_;
    std::vector<std::byte> src_;
  };

  class Receiver {
   public:
    Receiver(Peer& peer, const BridgeChannel& ch)
        : peer_(&peer),
          in_(in_options(ch)),
          c_(flatring::open_ring<flatring_bench::Sample>(ch.b_)),
          payload_(ch.cfg_.payload) {}
    void recv(std::uint64_t seq) {
      for (;;) {
        auto r = c_.receive(100ms);
        if (r) [[likely]] {
          const auto* v = (*r)->payload();
          if ((*r)->seq() != seq || v == nullptr)
            throw BenchError(fmt::format("bad record: expected seq {}, got {}", seq, (*r)->seq()));
          check(reinterpret_cast<const std::byte*>(v->data()), v->size(), payload_, seq);
          return;
        }
        if (r.status() != flatring::Status::timed_out)
          throw BenchError(fmt::format("receive: {}", flatring::to_string(r.status())));
        in_.check();
        peer_->check_now();
      }
    }

   private:
    static flatring::bridge::InOptions in_options(const BridgeChannel& ch) {
      flatring::bridge::InOptions o;
      o.ring = ch.b_;
      o.bind = ch.endpoint_;
      o.state_file = ch.state_;
      o.security.keys = ch.keys_.server;
      o.security.allowed_keys = {ch.keys_.client.public_key};
      return o;
    }
    Peer* peer_;
    BridgeThread<flatring::bridge::In> in_;
    flatring::Consumer<flatring_bench::Sample> c_;
    std::size_t payload_;
  };

  Sender sender(Peer& peer) { return Sender(peer, *this); }
  Receiver receiver(Peer& peer) { return Receiver(peer, *this); }

 private:
  ChannelConfig cfg_;
  std::string a_, b_;
  flatring::RemoveGuard ga_, gb_;
  CleanupName ca_, cb_;
  std::string state_;
  CleanupName cs_;
  std::string endpoint_;
  Keys keys_;
};

}  // namespace

void add_zmq_transports(TransportList& out) {
  out.push_back(std::make_unique<ChannelTransport<BridgeChannel>>("flatring-bridge"));
  out.push_back(std::make_unique<ChannelTransport<ZmqChannel<true>>>("zmq-push-pull-curve"));
  out.push_back(std::make_unique<ChannelTransport<ZmqChannel<false>>>("zmq-push-pull"));
}

}  // namespace bench
