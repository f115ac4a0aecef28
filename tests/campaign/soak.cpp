// soak: many records through one ring across processes, every one checked.
//   flatring-campaign soak --mode M --records N [--producers P] [--consumers C] [--typed]
//                          [--capacity BYTES] [--inject skip|duplicate]
// Producer processes write {producer, seq} records (tests/mp_helpers.hpp: every byte derived from
// the tag; --typed: a verified flatring::test::Msg whose seq field carries the tag and whose
// payload bytes are derived from it). Consumer processes check every record:
//   - spsc, mpsc, broadcast: each consumer gets each producer's records exactly in order, none
//     missing, none twice (broadcast: every consumer gets every record);
//   - mpmc: within each consumer a producer's records arrive in increasing order, and a shared
//     bitmap (one bit per record) proves each record was delivered exactly once overall.
// Typed consumers run copy-then-verify (Consumer::poll): a record failing verification fails the
// soak. A consumer that gets nothing for 30 s while records are missing reports a hang.
// --inject makes each consumer drop (skip) or count twice (duplicate) producer 0's middle record:
// a control run that must fail, to show the checks can.
// Consumers poll in batches (Reader::poll, Consumer::poll); when a poll finds nothing they mostly
// sleep 50 us and let the ring fill, and every 16th time block in read/receive: a consumer that
// always blocks on an oversubscribed machine makes the producer wake it for nearly every record,
// and the soak would measure futex(2) instead of the ring.
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <optional>
#include <span>
#include <thread>
#include <vector>

#include "campaign.hpp"
#include "mp_helpers.hpp"

using namespace flatring;
using namespace std::chrono_literals;

namespace campaign {
namespace {

enum Exit : int {
  kWrongStatus = 10,
  kBadRecord = 11,
  kOutOfOrder = 12,
  kDuplicate = 13,
  kRejected = 14,
  kHang = 15,
};

constexpr std::uint64_t kSeqBits = 40;  // typed: Msg::seq = producer << 40 | seq
constexpr std::uint64_t kSeqMask = (std::uint64_t{1} << kSeqBits) - 1;

// A fault the consumers fake on purpose (--inject), to show the checks catch it: the run must fail.
enum class Inject { none, skip, duplicate };

struct Plan {
  Mode mode;
  bool typed;
  Inject inject = Inject::none;
  std::uint32_t producers;
  std::uint32_t consumers;
  std::uint64_t per_producer;
  std::string name;
  [[nodiscard]] std::uint64_t total() const { return per_producer * producers; }
  [[nodiscard]] bool exact() const { return mode != Mode::mpmc; }  // every consumer gets all
};

// Words shared by the soak's processes: [0] deliveries counted, [1] consumers attached, then the
// mpmc bitmap (one bit per record, producer-major).
class SoakShared {
 public:
  explicit SoakShared(const Plan& plan)
      : words_(2 + (plan.mode == Mode::mpmc ? plan.total() / 64 + 1 : 0)),
        per_(plan.per_producer) {}
  std::atomic<std::uint64_t>& delivered() const { return words_[0]; }
  std::atomic<std::uint64_t>& attached() const { return words_[1]; }
  /// Marks record {p, s}; false if it was marked already (a duplicate).
  bool mark(std::uint32_t p, std::uint64_t s) const {
    const std::uint64_t bit = p * per_ + s;
    const std::uint64_t m = std::uint64_t{1} << (bit % 64);
    return (words_[2 + bit / 64].fetch_or(m, std::memory_order_relaxed) & m) == 0;
  }
  [[nodiscard]] std::uint64_t marked(std::uint64_t total) const {
    std::uint64_t n = 0;
    for (std::uint64_t w = 0; w * 64 < total; ++w) n += __builtin_popcountll(words_[2 + w].load());
    return n;
  }

 private:
  fr_test::SharedWords words_;
  std::uint64_t per_;
};

// Per-consumer sequence check.
class Checker {
 public:
  Checker(const Plan& plan, const SoakShared& shared)
      : plan_(plan), shared_(shared), next_(plan.producers, 0) {}
  /// 0, or the Exit code of the first bad record.
  int check(std::uint32_t producer, std::uint64_t seq) {
    if (producer >= plan_.producers || seq >= plan_.per_producer) return kBadRecord;
    if (producer == 0 && seq == plan_.per_producer / 2 && plan_.inject != Inject::none) {
      if (plan_.inject == Inject::skip) return 0;        // as if this record had never arrived
      if (int rc = check_one(producer, seq)) return rc;  // duplicate: counted twice
    }
    return check_one(producer, seq);
  }

 private:
  int check_one(std::uint32_t producer, std::uint64_t seq) {
    if (plan_.exact()) {
      if (seq != next_[producer]) {
        std::fprintf(stderr, "soak: producer %u seq %" PRIu64 " where %" PRIu64 " was due\n",
                     producer, seq, next_[producer]);
        return seq < next_[producer] ? kDuplicate : kOutOfOrder;
      }
    } else {
      if (seq < next_[producer]) return kOutOfOrder;
      if (!shared_.mark(producer, seq)) return kDuplicate;
    }
    next_[producer] = seq + 1;
    return 0;
  }

 public:
  int check_raw(std::span<const std::byte> bytes) {
    const auto tag = fr_test::tagged_of(bytes);
    return tag ? check(tag->producer, tag->seq) : kBadRecord;
  }
  int check_typed(const flatring::test::Msg& msg) {
    const std::uint64_t seq = msg.seq() & kSeqMask;
    const auto producer = static_cast<std::uint32_t>(msg.seq() >> kSeqBits);
    const auto* p = msg.payload();
    if (p == nullptr || p->size() != seq % 48) return kBadRecord;
    for (std::uint32_t i = 0; i < p->size(); ++i) {
      if (p->Get(i) != static_cast<std::uint8_t>(seq * 31 + producer + i)) return kBadRecord;
    }
    return check(producer, seq);
  }

 private:
  const Plan& plan_;
  const SoakShared& shared_;
  std::vector<std::uint64_t> next_;
};

void build(flatbuffers::FlatBufferBuilder& fbb, std::uint32_t producer, std::uint64_t seq) {
  fbb.Clear();
  std::uint8_t* bytes = nullptr;
  const auto n = static_cast<std::size_t>(seq % 48);
  auto vec = fbb.CreateUninitializedVector(n, &bytes);
  for (std::size_t i = 0; i < n; ++i) bytes[i] = static_cast<std::uint8_t>(seq * 31 + producer + i);
  fbb.Finish(flatring::test::CreateMsg(fbb, std::uint64_t{producer} << kSeqBits | seq, vec),
             flatring::test::MsgIdentifier());
}

template <Mode M>
int produce(const Plan& plan, const SoakShared& shared, std::uint32_t producer) {
  const Ring ring = Ring::open(plan.name);
  while (shared.attached().load() < plan.consumers) std::this_thread::sleep_for(1ms);
  auto report = [&](Status s, std::uint64_t seq) {
    std::fprintf(stderr, "soak producer %u: %s at seq %" PRIu64 "\n", producer,
                 std::string(to_string(s)).c_str(), seq);
    return int{kWrongStatus};
  };
  if (plan.typed) {
    Producer<flatring::test::Msg, M> out(ring);
    flatbuffers::FlatBufferBuilder fbb;
    for (std::uint64_t seq = 0; seq < plan.per_producer; ++seq) {
      build(fbb, producer, seq);
      if (const Status s = out.send(fbb, 30s); s != Status::ok) return report(s, seq);
    }
    return 0;
  }
  Writer<M> out(ring);
  std::byte buf[64];
  for (std::uint64_t seq = 0; seq < plan.per_producer; ++seq) {
    const std::size_t size = fr_test::make_tagged(buf, producer, seq);
    if (const Status s = out.write({buf, size}, 30s); s != Status::ok) return report(s, seq);
  }
  return 0;
}

template <Mode M>
int consume(const Plan& plan, const SoakShared& shared) {
  const Ring ring = Ring::open(plan.name);
  Checker checker(plan, shared);
  std::uint64_t mine = 0;
  std::uint64_t empties = 0;  // polls that found nothing
  int error = 0;
  auto done = [&] {
    return plan.exact() ? mine == plan.total() : shared.delivered().load() >= plan.total();
  };
  auto idle_since = std::chrono::steady_clock::now();
  // One step: a batch, or one record waited for. False when the soak is over for this consumer.
  auto account = [&](std::size_t n) {
    mine += n;
    shared.delivered().fetch_add(n, std::memory_order_relaxed);
    idle_since = std::chrono::steady_clock::now();
  };
  auto waited = [&](Status s) -> int {  // a read that brought nothing
    if (s != Status::timed_out && s != Status::peer_dead) {
      std::fprintf(stderr, "soak consumer: %s\n", std::string(to_string(s)).c_str());
      return kWrongStatus;
    }
    if (!done() && std::chrono::steady_clock::now() - idle_since > 30s) return kHang;
    return 0;
  };
  if (plan.typed) {
    Consumer<flatring::test::Msg, M> in(ring);
    shared.attached().fetch_add(1);
    while (!done()) {
      const PollCount n = in.poll(
          [&](const flatring::test::Msg& m) {
            if (error == 0) error = checker.check_typed(m);
          },
          256);
      if (n.rejected != 0) return kRejected;
      if (error != 0) return error;
      if (n.delivered != 0) {
        account(n.delivered);
        continue;
      }
      if (++empties % 16 != 0) {  // mostly let the ring fill (a polling consumer) ...
        std::this_thread::sleep_for(50us);
        continue;
      }
      auto got = in.receive(200ms);  // ... and now and then block, as a blocking one does
      if (got) {
        if (int rc = checker.check_typed(**got)) return rc;
        account(1);
      } else if (got.status() == Status::verify_failed) {
        return kRejected;
      } else if (int rc = waited(got.status())) {
        return rc;
      }
    }
    return 0;
  }
  Reader<M> in(ring);
  shared.attached().fetch_add(1);
  while (!done()) {
    const std::size_t n = in.poll(
        [&](std::span<const std::byte> b) {
          if (error == 0) error = checker.check_raw(b);
        },
        256);
    if (error != 0) return error;
    if (n != 0) {
      account(n);
      continue;
    }
    if (++empties % 16 != 0) {
      std::this_thread::sleep_for(50us);
      continue;
    }
    auto got = in.read(200ms);
    if (got) {
      if (int rc = checker.check_raw(got->bytes)) return rc;
      in.release();
      account(1);
    } else if (int rc = waited(got.status())) {
      return rc;
    }
  }
  return 0;
}

template <Mode M>
int run(const Plan& plan, std::uint64_t capacity) {
  RingName name(std::string("soak-") + std::string(to_string(M)));
  Plan p = plan;
  p.name = name.str();
  const Ring ring = create_ring<flatring::test::Msg>(p.name, {.capacity = capacity, .mode = M});
  const SoakShared shared(p);
  const auto start = std::chrono::steady_clock::now();
  std::vector<pid_t> kids;
  for (std::uint32_t c = 0; c < p.consumers; ++c)
    kids.push_back(spawn([&] { return consume<M>(p, shared); }));
  for (std::uint32_t w = 0; w < p.producers; ++w)
    kids.push_back(spawn([&, w] { return produce<M>(p, shared, w); }));

  const std::uint64_t expected = p.exact() ? p.total() * p.consumers : p.total();
  std::vector<int> codes(kids.size(), 0);
  std::size_t running = kids.size();
  bool failed = false;
  auto last_report = start;
  while (running != 0) {
    std::this_thread::sleep_for(20ms);
    for (std::size_t i = 0; i < kids.size(); ++i) {
      if (kids[i] < 0) continue;
      if (const int rc = exited(kids[i]); rc != 0) {
        codes[i] = rc >= 1000 ? rc - 1000 : rc;  // an exit code, or 128 + signal
        kids[i] = -1;
        --running;
        failed = failed || rc != 1000;
      }
    }
    if (failed) {  // the others would wait for a peer that is gone: stop them
      for (pid_t& k : kids) {
        if (k < 0) continue;
        ::kill(k, SIGKILL);
        join(k);
        k = -1;
      }
      running = 0;
    }
    if (std::chrono::steady_clock::now() - last_report > 5s) {
      last_report = std::chrono::steady_clock::now();
      const double t = seconds_since(start);
      const std::uint64_t d = shared.delivered().load();
      const double rate = static_cast<double>(d) / t;
      std::fprintf(stderr,
                   "  soak %s%s: %.1f%% (%" PRIu64 " of %" PRIu64 " deliveries), %.2f M/s, "
                   "ETA %.0f s\n",
                   std::string(to_string(M)).c_str(), p.typed ? " typed" : "",
                   100.0 * static_cast<double>(d) / static_cast<double>(expected), d, expected,
                   rate / 1e6, rate > 0 ? static_cast<double>(expected - d) / rate : 0.0);
    }
  }
  const double seconds = seconds_since(start);
  const std::uint64_t delivered = shared.delivered().load();
  std::uint64_t missing = 0;
  if (!failed) {
    missing = p.mode == Mode::mpmc ? p.total() - shared.marked(p.total()) : expected - delivered;
  }
  const bool ok = !failed && missing == 0 && delivered == expected;
  std::string codes_json = "[";
  for (std::size_t i = 0; i < codes.size(); ++i) {
    codes_json += (i ? ", " : "") + std::to_string(codes[i]);
  }
  codes_json += "]";
  Json j;
  j.add("part", "soak")
      .add("mode", to_string(M))
      .add("typed", p.typed)
      .add("producers", std::uint64_t{p.producers})
      .add("consumers", std::uint64_t{p.consumers})
      .add("capacity", capacity)
      .add("records", p.total())
      .add("deliveries", delivered)
      .add("missing", missing)
      .add("seconds", seconds)
      .add("records_per_second", static_cast<double>(p.total()) / seconds)
      .add_raw("exit_codes", codes_json)  // consumers first, then producers; 0 = passed
      .add("ok", ok);
  std::printf("%s\n", j.str().c_str());
  return ok ? 0 : 1;
}

}  // namespace

int soak_main(const Args& args) {
  const Mode mode = args.mode();
  const bool multi_producer = mode == Mode::mpsc || mode == Mode::mpmc;
  const bool multi_consumer = mode == Mode::mpmc || mode == Mode::broadcast;
  Plan plan{};
  plan.mode = mode;
  plan.typed = args.flag("typed");
  plan.producers = static_cast<std::uint32_t>(args.num("producers", multi_producer ? 2 : 1));
  plan.consumers = static_cast<std::uint32_t>(args.num("consumers", multi_consumer ? 2 : 1));
  if (plan.producers == 0 || plan.consumers == 0 || (!multi_producer && plan.producers != 1) ||
      (!multi_consumer && plan.consumers != 1)) {
    throw std::invalid_argument("--producers/--consumers: not possible in this mode");
  }
  const std::uint64_t records = args.num("records", 1'000'000);
  plan.per_producer = (records + plan.producers - 1) / plan.producers;
  if (plan.per_producer > kSeqMask) throw std::invalid_argument("--records: too many");
  const std::uint64_t capacity = args.num("capacity", 1u << 20);
  const std::string inject = args.str("inject", "none");
  if (inject == "skip") plan.inject = Inject::skip;
  else if (inject == "duplicate") plan.inject = Inject::duplicate;
  else if (inject != "none") throw std::invalid_argument("--inject: skip or duplicate");
  return visit_mode(mode, [&](auto m) { return run<decltype(m)::value>(plan, capacity); });
}

}  // namespace campaign
