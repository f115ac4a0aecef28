// The Transport interface every row of the report implements, and ChannelTransport, the adapter
// that turns a one-way *channel* into both patterns over two processes.
//
// Adding a row: write a Channel (below) and register ChannelTransport<YourChannel> in one of the
// add_*_transports functions, or implement Transport directly for shapes that are not one producer
// and one consumer (e.g. several producers: use run_forked/drive_* from harness.hpp as building
// blocks).
//
// A Channel is constructed in the parent before the fork (create the named object, pipe, ...;
// throw SkipCase if the case cannot run here) and provides
//   static std::optional<std::string> unsupported(std::size_t payload, Pattern);
//   Sender   sender(Peer&);    // after the fork, in the sending process
//   Receiver receiver(Peer&);  // after the fork, in the receiving process
// with Sender::send(std::uint64_t seq) sending one payload-sized message that carries seq (use
// stamp()), and Receiver::recv(std::uint64_t seq) receiving one and check()ing it. Both may spin;
// spinning code calls Peer::spin_check(). Receiver::recv must block in the transport's waiting
// receive when ChannelConfig::pattern is latency if the transport has one. A Receiver may also
// have std::uint64_t recv_many(std::uint64_t first_seq, std::uint64_t max) (receive and check
// 1..max messages) which the throughput pattern then uses instead of recv.
#pragma once

#include "common.hpp"
#include "harness.hpp"

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace bench {

class Transport {
 public:
  virtual ~Transport() = default;
  virtual const std::string& name() const = 0;
  // A reason when the case cannot run (printed, reported as skipped), nullopt otherwise.
  virtual std::optional<std::string> unsupported(std::size_t payload, Pattern p) const = 0;
  virtual ThroughputResult run_throughput(const CaseSpec&) = 0;
  virtual LatencyResult run_latency(const CaseSpec&) = 0;
  // Reference rows (memcpy, cacheline-pingpong): cells they do not support are left out quietly.
  virtual bool reference() const { return false; }
};

using TransportList = std::vector<std::unique_ptr<Transport>>;

struct ChannelConfig {
  std::size_t payload = 0;
  Pattern pattern = Pattern::throughput;
  std::string name;  // unique per channel, valid as a ring / queue / shm name
};

template <class Channel>
class ChannelTransport final : public Transport {
 public:
  explicit ChannelTransport(std::string name) : name_(std::move(name)) {}

  const std::string& name() const override { return name_; }

  std::optional<std::string> unsupported(std::size_t payload, Pattern p) const override {
    return Channel::unsupported(payload, p);
  }

  ThroughputResult run_throughput(const CaseSpec& spec) override {
    Channel fwd(ChannelConfig{spec.payload, spec.pattern, unique_name("tp")});
    return run_forked(
        spec,
        [&](ChildSide& c) {
          auto rx = fwd.receiver(c.peer());
          if constexpr (requires { rx.recv_many(std::uint64_t{}, std::uint64_t{}); })
            c.serve_batched(
                [&](std::uint64_t seq, std::uint64_t max) { return rx.recv_many(seq, max); });
          else c.serve([&](std::uint64_t seq) { rx.recv(seq); });
        },
        [&](ParentSide& p) {
          auto tx = fwd.sender(p.peer());
          return drive_throughput(p, spec, [&](std::uint64_t seq) { tx.send(seq); });
        });
  }

  LatencyResult run_latency(const CaseSpec& spec) override {
    Channel ping(ChannelConfig{spec.payload, spec.pattern, unique_name("ping")});
    Channel pong(ChannelConfig{spec.payload, spec.pattern, unique_name("pong")});
    return run_forked(
        spec,
        [&](ChildSide& c) {
          auto rx = ping.receiver(c.peer());
          auto tx = pong.sender(c.peer());
          c.serve([&](std::uint64_t seq) {
            rx.recv(seq);
            tx.send(seq);
          });
        },
        [&](ParentSide& p) {
          auto tx = ping.sender(p.peer());
          auto rx = pong.receiver(p.peer());
          return drive_latency(p, spec, [&](std::uint64_t seq) {
            tx.send(seq);
            rx.recv(seq);
          });
        });
  }

 private:
  std::string name_;
};

// Registration, in report order.
void add_flatring_transports(TransportList&);  // transports_flatring.cpp
// transports_flatring_wait.cpp: flatring-fd, flatring-waitset, flatring-waitset-nospin
void add_flatring_wait_transports(TransportList&);
// transports_flatring_wait.cpp: the --idle-cpu table (CPU and wake-ups per idle second)
int run_idle_cpu(double seconds);
void add_stream_transports(TransportList&);  // transports_stream.cpp: pipe, unix-stream
void add_mq_transports(TransportList&);      // transports_mq.cpp: boost-mq, posix-mq
// transports_reference.cpp: memcpy, cacheline-pingpong
void add_reference_transports(TransportList&);
void add_raw_ring_transports(TransportList&);  // transports_raw_ring.cpp: raw-ring
// transports_zmq.cpp: flatring-bridge, zmq-push-pull-curve, zmq-push-pull (with flatring::bridge)
void add_zmq_transports(TransportList&);

}  // namespace bench
