// The flatring rows.
//   flatring             Writer::try_write (one copy in), Reader<> reads in place.
//   flatring-zero-copy   Writer::try_reserve + commit: the producer writes the payload in place
//                        (a memset of the whole payload plus the sequence stamps: building in
//                        place, no source buffer to copy from), Reader<> reads in place.
//   flatring-typed       Producer<Sample>::try_build builds a Sample {seq, payload} directly in
//                        the ring (the payload copied into the record once: the row's one copy,
//                        as in `flatring`); Consumer<Sample> verifies in place
//                        (ConsumerOptions::in_place) and reads seq and payload.
//   flatring-typed-copy  the same, the consumer with default ConsumerOptions: it copies each record
//                        to private memory, then verifies and reads the copy.
//   flatring-typed-send  a private FlatBufferBuilder (reused: Clear() keeps its buffer) builds the
//                        Sample, Producer::try_send copies it in (two writes of every byte); the
//                        consumer as in flatring-typed.
// Throughput: the producer busy-polls on `full`, the consumer busy-polls with a batch per call, one
// head publication per batch (raw rows: Reader::poll; typed rows: Consumer::poll). Latency: the
// receiving side of both directions uses the blocking, spin-then-sleep receive (Reader::read /
// Consumer::receive with a timeout); sends never find the ring full in a ping-pong.
#include "flatring_common.hpp"
#include "transport.hpp"

#include <flatring/flatring.hpp>

#include "bench_generated.h"

#include <fmt/format.h>

#include <bit>
#include <optional>
#include <vector>

FLATRING_SCHEMA(flatring_bench::Sample, flatring_bench::SampleIdentifier());

namespace bench {
namespace {

using namespace std::chrono_literals;

enum class Kind { copy, zero_copy, typed, typed_copy, typed_send };

constexpr bool typed(Kind k) {
  return k == Kind::typed || k == Kind::typed_copy || k == Kind::typed_send;
}

// A blocking call returns after this long without a record to check the other process.
constexpr auto kWaitSlice = 100ms;

// Room for the FlatBuffers framing around a Sample's payload (root offset, identifier, vtable,
// table, vector length, alignment).
constexpr std::size_t kTypedOverhead = 256;
// The build hint above the payload: a Sample's framing is about 40 bytes; the hint's excess is
// dead space in the ring (Producer::try_build).
constexpr std::size_t kBuildSlack = 64;

std::uint64_t max_record_for(Kind k, std::size_t payload) {
  return typed(k) ? payload + kTypedOverhead : payload;
}

// ---------------------------------------------------------------- raw senders

class ZeroCopySender {
 public:
  ZeroCopySender(Peer& peer, flatring::Ring ring, std::size_t payload)
      : peer_(&peer), w_(std::move(ring)), payload_(payload) {}
  void send(std::uint64_t seq) {
    for (;;) {
      auto r = w_.try_reserve(payload_);
      if (r) [[likely]] {
        std::byte* p = r->data();
        std::memset(p, int(seq & 0xFF), payload_);
        stamp(p, payload_, seq);
        const flatring::Status s = w_.commit(payload_);
        if (s != flatring::Status::ok) fail_status("commit", s);
        return;
      }
      if (r.status() != flatring::Status::full) fail_status("try_reserve", r.status());
      cpu_relax();
      peer_->spin_check();
    }
  }

 private:
  Peer* peer_;
  flatring::Writer<> w_;
  std::size_t payload_;
};

// ---------------------------------------------------------------- raw receiver

class RawReceiver {
 public:
  RawReceiver(Peer& peer, flatring::Ring ring, std::size_t payload)
      : peer_(&peer), r_(std::move(ring)), payload_(payload) {}

  // Latency: the blocking read (spin, then futex).
  void recv(std::uint64_t seq) {
    for (;;) {
      auto rec = r_.read(kWaitSlice);
      if (rec) [[likely]] {
        check(rec->bytes.data(), rec->bytes.size(), payload_, seq);
        r_.release();
        return;
      }
      if (rec.status() != flatring::Status::timed_out) fail_status("read", rec.status());
      peer_->check_now();
    }
  }

  // Throughput: a batch per call, busy-polling while the ring is empty.
  std::uint64_t recv_many(std::uint64_t seq, std::uint64_t max) {
    return poll_checked(r_, payload_, seq, max, [&] {
      cpu_relax();
      peer_->spin_check();
    });
  }

 private:
  Peer* peer_;
  flatring::Reader<> r_;
  std::size_t payload_;
};

// ---------------------------------------------------------------- typed

// Builds each Sample in the ring (in_place) or in a private builder, then copies it in.
class TypedSender {
 public:
  TypedSender(Peer& peer, flatring::Ring ring, std::size_t payload, bool in_place)
      : peer_(&peer),
        p_(std::move(ring)),
        fbb_(payload + kTypedOverhead),
        src_(payload),
        in_place_(in_place) {
    fill_pattern(src_.data(), src_.size());
  }
  void send(std::uint64_t seq) {
    stamp(src_.data(), src_.size(), seq);
    auto build = [&](flatbuffers::FlatBufferBuilder& fbb) {
      auto vec = fbb.CreateVector(reinterpret_cast<const std::uint8_t*>(src_.data()), src_.size());
      return flatring_bench::CreateSample(fbb, seq, vec);
    };
    if (!in_place_) {
      fbb_.Clear();  // keeps its buffer: no allocation per message
      flatring_bench::FinishSampleBuffer(fbb_, build(fbb_));
    }
    for (;;) {
      const flatring::Status s =
          in_place_ ? p_.try_build(src_.size() + kBuildSlack, build) : p_.try_send(fbb_);
      if (s == flatring::Status::ok) [[likely]]
        return;
      if (s != flatring::Status::full) fail_status(in_place_ ? "try_build" : "try_send", s);
      cpu_relax();
      peer_->spin_check();
    }
  }

 private:
  Peer* peer_;
  flatring::Producer<flatring_bench::Sample> p_;
  flatbuffers::FlatBufferBuilder fbb_;
  std::vector<std::byte> src_;
  bool in_place_;
};

class TypedReceiver {
 public:
  TypedReceiver(Peer& peer, flatring::Ring ring, std::size_t payload, bool in_place,
                Pattern pattern)
      : peer_(&peer),
        c_(std::move(ring), options(in_place)),
        payload_(payload),
        blocking_(pattern == Pattern::latency) {}

  void recv(std::uint64_t seq) {
    for (;;) {
      auto r = blocking_ ? c_.receive(kWaitSlice) : c_.try_receive();
      if (r) [[likely]] {
        check_sample(**r, seq);
        return;
      }
      const flatring::Status st = r.status();
      if (st == flatring::Status::empty) {
        cpu_relax();
        peer_->spin_check();
      } else if (st == flatring::Status::timed_out) {
        peer_->check_now();
      } else {
        fail_status(blocking_ ? "receive" : "try_receive", st);
      }
    }
  }

  // Throughput: a verified batch per call (Consumer::poll), busy-polling while the ring is empty.
  std::uint64_t recv_many(std::uint64_t seq, std::uint64_t max) {
    const std::size_t batch = std::size_t(std::min<std::uint64_t>(max, kPollBatch));
    for (;;) {
      std::uint64_t got = 0;
      const flatring::PollCount n = c_.poll(
          [&](const flatring_bench::Sample& s) {
            check_sample(s, seq + got);
            ++got;
          },
          batch);
      if (n.rejected != 0) fail_status("poll", flatring::Status::verify_failed);
      if (n.delivered != 0) [[likely]]
        return n.delivered;
      if (n.status != flatring::Status::empty) fail_status("poll", n.status);
      cpu_relax();
      peer_->spin_check();
    }
  }

 private:
  void check_sample(const flatring_bench::Sample& s, std::uint64_t seq) const {
    const auto* v = s.payload();
    if (s.seq() != seq || v == nullptr)
      throw BenchError(fmt::format("bad record: expected seq {}, got seq {}{}", seq, s.seq(),
                                   v ? "" : " and no payload"));
    check(reinterpret_cast<const std::byte*>(v->data()), v->size(), payload_, seq);
  }
  static flatring::ConsumerOptions options(bool in_place) {
    flatring::ConsumerOptions o;
    o.in_place = in_place;
    return o;
  }
  Peer* peer_;
  flatring::Consumer<flatring_bench::Sample> c_;
  std::size_t payload_;
  bool blocking_;
};

// ---------------------------------------------------------------- channel

template <Kind K>
class FlatringChannel {
 public:
  explicit FlatringChannel(const ChannelConfig& cfg)
      : cfg_(cfg), guard_(cfg.name), cleanup_(NameKind::file, flatring::Ring::path_of(cfg.name)) {
    flatring::RingOptions o;
    o.max_record_size = max_record_for(K, cfg.payload);
    o.capacity = capacity_for(o.max_record_size);
    flatring::Ring::remove(cfg.name);  // a leftover of a killed run with the same pid
    try {
      if constexpr (typed(K)) ring_ = flatring::create_ring<flatring_bench::Sample>(cfg.name, o);
      else ring_ = flatring::Ring::create(cfg.name, o);
    } catch (const flatring::Error& e) {
      throw BenchError(fmt::format("flatring: create '{}' ({} B ring, records up to {} B): {}",
                                   cfg.name, o.capacity, o.max_record_size, e.what()));
    }
  }

  static std::optional<std::string> unsupported(std::size_t, Pattern) { return std::nullopt; }

  // Both ends open the ring by name after the fork, as two unrelated processes would.
  auto sender(Peer& peer) {
    if constexpr (K == Kind::copy) return CopySender(peer, open(), cfg_.payload);
    else if constexpr (K == Kind::zero_copy) return ZeroCopySender(peer, open(), cfg_.payload);
    else return TypedSender(peer, open(), cfg_.payload, K != Kind::typed_send);
  }
  auto receiver(Peer& peer) {
    if constexpr (typed(K))
      return TypedReceiver(peer, open(), cfg_.payload, K != Kind::typed_copy, cfg_.pattern);
    else return RawReceiver(peer, open(), cfg_.payload);
  }

 private:
  flatring::Ring open() const {
    if constexpr (typed(K)) return flatring::open_ring<flatring_bench::Sample>(cfg_.name);
    else return flatring::Ring::open(cfg_.name);
  }

  ChannelConfig cfg_;
  flatring::RemoveGuard guard_;
  CleanupName cleanup_;
  flatring::Ring ring_;
};

}  // namespace

void add_flatring_mp_transports(TransportList&);  // transports_flatring_mp.cpp

void add_flatring_transports(TransportList& out) {
  out.push_back(std::make_unique<ChannelTransport<FlatringChannel<Kind::copy>>>("flatring"));
  out.push_back(
      std::make_unique<ChannelTransport<FlatringChannel<Kind::zero_copy>>>("flatring-zero-copy"));
  out.push_back(std::make_unique<ChannelTransport<FlatringChannel<Kind::typed>>>("flatring-typed"));
  out.push_back(
      std::make_unique<ChannelTransport<FlatringChannel<Kind::typed_copy>>>("flatring-typed-copy"));
  out.push_back(
      std::make_unique<ChannelTransport<FlatringChannel<Kind::typed_send>>>("flatring-typed-send"));
  add_flatring_mp_transports(out);
}

}  // namespace bench
