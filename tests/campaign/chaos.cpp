// chaos: producer and consumer processes SIGKILLed, round after round, in any mode.
//   flatring-campaign chaos --mode M --kills K [--capacity BYTES] [--seed S] [--hook-odds N]
//                           [--inject loss]
// --inject loss: every consumer drops (does not count) one committed record, the first from seq 100
// on that a consumer gets (broadcast: the witness), a control run that must fail with "lost", to
// show the checks can.
// Processes per mode: spsc 1 producer + 1 consumer; mpsc 2 + 1; mpmc 2 + 3; broadcast 1 producer +
// 2 consumers that are killed + 1 witness consumer that never is. Each round kills (kind counted):
//   random       after a random 0-20 ms, a producer, a consumer, or both;
//   hook         a process that parked itself at a stop inside a call, then waits to be killed:
//                the library's test seams (src/test_hooks.hpp: after_claim = mid-claim, mid_copy,
//                mid_release, mid_unblock, mid_verify = inside RecordVerifier::verify), and
//                between filling a reservation and committing it (before_commit) or between
//                counting a record and releasing it (holding). Each call reaching a stop parks
//                with odds 1 in --hook-odds (mid_unblock: 1 in 4; mid_verify: 8 times the odds);
//   asleep       the other side is SIGSTOPped until the victim sleeps inside a waiting call, then
//                the victim is killed there: in the ring's futex (asleep: a blocking read or
//                write, seen in the WaitLine's waiters word), in WaitSet::wait (asleep_wait_set),
//                or in poll(2) on an armed WaitFd (asleep_wait_fd). "Sleeps" means the process
//                marked the call in the ledger just before it and the kernel has it asleep.
// How each process waits depends on its generation: producers block in reserve/write, or use
// try_reserve/try_write and sleep in a WaitSet or on a WaitFd when full; consumers block in
// read, or use try_read and sleep in a WaitSet or on a WaitFd, or poll (try_read + recover()).
// Records are flatring::test::Msg FlatBuffers (the ring stores its schema) whose payload is the
// tagged bytes; half the consumer generations check each with RecordVerifier (the library's
// typed verification, in place in the ring, before the record is counted), the others with
// generated code's verifier.
// A ledger outside the ring (a shared anonymous mapping) records each sequence number: reserved
// (next_seq) before the write, committed after the write returned ok; delivered fresh / again per
// consumer; the record a consumer holds (counted, not yet released) in its slot's holding word,
// which the parent reads after each kill (dead_held).
// Checked, per the guarantees (README "Guarantees", docs/design.md, docs/design-mp.md):
//   - no loss: every committed record is delivered (broadcast: to the witness, exactly once);
//   - spsc, mpsc: a record comes a second time only if a killed consumer held it (resume at the
//     published head), at most once per consumer kill, and intact (mpsc: a record the dead
//     consumer had begun to zero is skipped, never delivered damaged);
//   - mpmc: never twice unflagged; flagged copies (redelivered) only of records a killed consumer
//     held, at most one per consumer kill;
//   - per producer, fresh records reach each consumer in commit order; broadcast consumers see
//     sequence numbers only grow, skipping only numbers never committed;
//   - uncommitted numbers at most one per producer kill; abandoned claims too, and in mpsc also
//     one per consumer kill (zeroed records a killed consumer had not yet published are skipped as
//     an unwritten claim);
//   - no hang: a consumer idle for 10 s, a producer whose write fails other than by timing out
//     or finding no (live) consumer, or a drain that does not finish within 120 s fails the run;
//   - after the drain, head == tail (and mpmc's read cursor), no corrupt record counted.
#include <atomic>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include <poll.h>

#include <fstream>

#include "campaign.hpp"
#include "mp_helpers.hpp"
#include "test_hooks.hpp"  // src/: the library's private test seams

using namespace flatring;
using namespace std::chrono_literals;

namespace campaign {
namespace {

constexpr std::uint64_t kMaxSeq = 1u << 24;
constexpr std::uint32_t kMaxGenerations = 1u << 14;
constexpr std::size_t kSlots = 8;  // process slots: producers, then consumers

enum Stop : std::uint32_t {
  kRandom = 0,
  kAfterClaim,
  kMidCopy,
  kBeforeCommit,
  kMidRelease,
  kMidUnblock,
  kHolding,
  kAsleep,
  kMidVerify,
  kAsleepWaitSet,
  kAsleepWaitFd,
  kKinds,
};
constexpr const char* kStopNames[kKinds] = {
    "random",  "after_claim", "mid_copy",   "before_commit",   "mid_release",   "mid_unblock",
    "holding", "asleep",      "mid_verify", "asleep_wait_set", "asleep_wait_fd"};

enum Exit : int {
  kWrongStatus = 10,
  kOutOfOrder = 11,
  kBadPayload = 12,
  kLedgerFull = 13,
  kDuplicate = 14,
  kLost = 16,
  kHang = 17,
};

struct Ledger {
  std::atomic<std::uint64_t> next_seq;
  std::atomic<std::uint64_t> checked;
  std::atomic<std::uint64_t> abandoned;
  std::atomic<std::uint64_t> draining;          // broadcast: the witness may stop when idle
  std::atomic<std::uint64_t> witness_attached;  // broadcast
  std::atomic<std::uint64_t> injected;          // --inject loss: seq + 1 dropped
  std::atomic<std::uint64_t> holding[kSlots];   // seq + 1 counted, not yet released
  std::atomic<std::uint64_t> parked[kSlots];    // Stop + 1 where the slot's process parked
  std::atomic<std::uint64_t> sleeping[kSlots];  // Stop + 1 while it sleeps in that call
  std::atomic<std::uint8_t> committed[kMaxSeq];
  std::atomic<std::uint8_t> fresh[kMaxSeq];
  std::atomic<std::uint8_t> again[kMaxSeq];
  std::atomic<std::uint8_t> dead_held[kMaxSeq];
  std::atomic<std::uint8_t> witness[kMaxSeq];
};

// The child's own state for the hooks (plain function pointers without arguments).
Ledger* g_ledger = nullptr;
std::size_t g_slot = 0;
std::uint64_t g_odds = 20'000;
std::mt19937_64 g_rng;

[[noreturn]] void park(Stop where) {
  g_ledger->parked[g_slot].store(where + 1);
  for (;;) ::pause();
}
void maybe_park(Stop where, std::uint64_t odds) {
  if (g_rng() % odds == 0) park(where);
}
template <Stop S>
void hook() {
  // mid_unblock is reached only in recovery, mid_verify once per verified record (a fraction of
  // what reaches the other stops): higher odds, so that each is hit in every mode.
  maybe_park(S, S == kMidUnblock  ? 4
                : S == kMidVerify ? std::max<std::uint64_t>(1, g_odds / 8)
                                  : g_odds);
}

const WaitOptions kWait{.spin = 20us, .liveness_interval = 20ms};

// Marks the slot as sleeping in a waiting call of kind `where` while it lives.
struct Asleep {
  explicit Asleep(Stop where) { g_ledger->sleeping[g_slot].store(where + 1); }
  ~Asleep() { g_ledger->sleeping[g_slot].store(0); }
  Asleep(const Asleep&) = delete;
  Asleep& operator=(const Asleep&) = delete;
};

// How a process waits when its ring is full (producers) or empty (consumers).
enum class Wait { blocking, wait_set, wait_fd, polling };
Wait producer_wait(std::uint32_t generation) { return static_cast<Wait>((generation / 2) % 3); }
Wait consumer_wait(std::uint32_t generation) { return static_cast<Wait>(generation % 4); }

// One sleep in a WaitSet or on a WaitFd (poll(2)) until the endpoint may be ready. ok: try
// again; otherwise what the wait reports (timed_out, peer_dead, no_consumer, abandoned, ...).
class Sleeper {
 public:
  template <class Endpoint>
  Sleeper(Wait how, Endpoint& endpoint, std::uint64_t bytes) : how_(how), set_(kWait) {
    if (how == Wait::wait_set) {
      if constexpr (requires { endpoint.wait_target(bytes); }) set_.add(endpoint, bytes);
      else set_.add(endpoint);
    } else if constexpr (requires { endpoint.wait_target(bytes); }) {
      fd_.emplace(endpoint, bytes);
    } else {
      fd_.emplace(endpoint);
    }
  }

  Status sleep(std::chrono::milliseconds limit) {
    if (how_ == Wait::wait_set) {
      Asleep mark(kAsleepWaitSet);
      const Status s = set_.wait(limit);
      if (s != Status::ok) return s;
      for (const Ready& r : set_.ready()) {
        if (r.status != Status::ok) return r.status;
      }
      return Status::ok;
    }
    const Status armed = fd_->arm();
    if (armed != Status::empty && armed != Status::full) return armed;  // ok: try again now
    Asleep mark(kAsleepWaitFd);
    pollfd p{fd_->fd(), POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(limit.count())) == 0 ? Status::timed_out : Status::ok;
  }

 private:
  Wait how_;
  WaitSet set_;
  std::optional<WaitFd> fd_;
};

// A chaos record: a Msg {seq, payload = the tagged bytes}. Its size.
std::size_t make_record(std::byte* out, std::size_t room, flatbuffers::FlatBufferBuilder& fbb,
                        std::uint32_t producer, std::uint64_t seq) {
  std::byte tagged[64];
  const std::size_t n = fr_test::make_tagged(tagged, producer, seq);
  fbb.Clear();
  fbb.Finish(flatring::test::CreateMsg(
                 fbb, seq, fbb.CreateVector(reinterpret_cast<const std::uint8_t*>(tagged), n)),
             flatring::test::MsgIdentifier());
  if (fbb.GetSize() > room) throw std::logic_error("chaos: record buffer too small");
  std::memcpy(out, fbb.GetBufferPointer(), fbb.GetSize());
  return fbb.GetSize();
}

// The tag of a chaos record, verified by `verifier` (RecordVerifier, in place) or, without one,
// by generated code's verifier; nothing if it does not verify or any byte is wrong.
std::optional<fr_test::Tag> tag_of(std::span<const std::byte> b, const RecordVerifier* verifier) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(b.data());
  if (verifier != nullptr) {
    if (!verifier->verify(b)) return std::nullopt;
  } else {
    flatbuffers::Verifier v(p, b.size());
    if (!flatring::test::VerifyMsgBuffer(v)) return std::nullopt;
  }
  const auto* m = flatring::test::GetMsg(p);
  if (m->payload() == nullptr) return std::nullopt;
  auto t = fr_test::tagged_of(
      {reinterpret_cast<const std::byte*>(m->payload()->data()), m->payload()->size()});
  if (!t || t->seq != m->seq()) return std::nullopt;
  return t;
}

struct Setup {
  bool inject_loss = false;
  Mode mode;
  std::string name;
  std::uint32_t producers;
  std::uint32_t consumers;  // killed ones (broadcast: plus the witness in slot kSlots - 1)
};

template <Mode M>
int producer_main(const Setup& s, Ledger& ledger, std::uint32_t generation) {
  Writer<M> w(Ring::open(s.name), kWait);
  test_hooks::after_claim = hook<kAfterClaim>;
  test_hooks::mid_copy = hook<kMidCopy>;
  const bool zero_copy = generation % 2 == 0;
  const bool slow = generation % 4 == 0;  // 50 us inside each claim: random kills land there
  const Wait how = producer_wait(generation);
  std::byte buf[192];
  std::optional<Sleeper> sleeper;
  if (how != Wait::blocking) sleeper.emplace(how, w, sizeof buf);
  flatbuffers::FlatBufferBuilder fbb(256);
  for (;;) {
    const std::uint64_t seq = ledger.next_seq.fetch_add(1);  // first: never reused after a death
    if (seq >= kMaxSeq) return kLedgerFull;
    const std::size_t size = make_record(buf, sizeof buf, fbb, generation, seq);
    auto reserve = [&]() -> Result<std::span<std::byte>> {
      if (sleeper) return w.try_reserve(size);
      Asleep mark(kAsleep);
      return w.reserve(size, 5s);
    };
    auto write = [&]() -> Status {
      if (sleeper) return w.try_write({buf, size});
      Asleep mark(kAsleep);
      return w.write({buf, size}, 5s);
    };
    for (;;) {
      Status st = Status::ok;
      if (zero_copy) {
        auto span = reserve();
        if (span) {
          std::memcpy(span->data(), buf, size);
          maybe_park(kBeforeCommit, g_odds);
          if (slow) std::this_thread::sleep_for(50us);
          st = w.commit(size);
        } else {
          st = span.status();
        }
      } else {
        st = write();
      }
      if (st == Status::ok) break;
      if (st == Status::full && sleeper) {  // the try_ calls: sleep until there may be room
        st = sleeper->sleep(5000ms);
        if (st == Status::ok) continue;
      }
      // No (live) consumer, or a slow or stopped one: the same record again.
      if (st != Status::timed_out && st != Status::no_consumer && st != Status::peer_dead) {
        std::fprintf(stderr, "chaos %s producer: %s\n", std::string(to_string(M)).c_str(),
                     std::string(to_string(st)).c_str());
        return kWrongStatus;
      }
    }
    ledger.committed[seq].store(1);
  }
}

// try_read, and recover() when empty (what a polling caller does), until `idle` passes.
template <Mode M>
Result<RecordView> poll_next(Reader<M>& r, std::chrono::nanoseconds idle) {
  const auto stop = std::chrono::steady_clock::now() + idle;
  for (;;) {
    auto got = r.try_read();
    if (got.status() != Status::empty) return got;
    const Status u = r.recover();
    if (u == Status::ok) continue;
    if (u != Status::empty) return u;
    if (std::chrono::steady_clock::now() >= stop) return Status::timed_out;
    std::this_thread::sleep_for(200us);
  }
}

// The next record as the generation waits for it, within `idle`.
template <Mode M>
Result<RecordView> next_record(Reader<M>& r, Wait how, Sleeper* sleeper,
                               std::chrono::milliseconds idle) {
  if (how == Wait::polling) return poll_next<M>(r, idle);
  if (how == Wait::blocking) {
    Asleep mark(kAsleep);
    return r.read(idle);
  }
  const auto stop = std::chrono::steady_clock::now() + idle;
  for (;;) {
    auto got = r.try_read();
    if (got.status() != Status::empty) return got;
    const auto left =
        std::chrono::ceil<std::chrono::milliseconds>(stop - std::chrono::steady_clock::now());
    if (left <= 0ms) return Status::timed_out;
    const Status s = sleeper->sleep(left);
    if (s != Status::ok) return s;
  }
}

enum class Role { killed, witness, drainer };

// What a wedged ring looks like (stderr): positions, the frame words from the head on, the peers.
void print_state(const Ring& ring, const char* why) {
  const auto& c = ring.control();
  const std::uint64_t mask = ring.info().capacity - 1;
  const std::uint64_t head = c.consumer.head.load(), next = c.consumer.next.load(),
                      tail = c.producer.tail.load();
  std::fprintf(stderr, "chaos state (%s): head %" PRIu64 " next %" PRIu64 " tail %" PRIu64 "\n",
               why, head, next, tail);
  for (std::uint64_t pos = head; pos < std::min(tail, head + 512); pos += layout::kRecordAlign) {
    const auto& h = detail::header_at(ring.data(), pos & mask);
    const std::uint64_t w = h.frame.load();
    if (w == 0) continue;
    std::fprintf(stderr,
                 "  frame at %" PRIu64 ": type %u flags %#" PRIx64 " length %" PRIu64
                 " aux %" PRIu64 "\n",
                 pos, static_cast<unsigned>(layout::frame_type(w)), layout::frame_flags(w),
                 layout::frame_length(w), detail::load_aux(h));
  }
  for (const auto& p : c.peers) {
    if (p.pid.load() == 0) continue;
    std::fprintf(stderr, "  peer pid %u role %u cursor %" PRIu64 "\n", p.pid.load(), p.role.load(),
                 p.cursor.load());
  }
}

// True while `pid` sleeps in the kernel (state S in /proc/<pid>/stat).
bool kernel_asleep(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const auto at = stat.rfind(')');
  return at != std::string::npos && at + 2 < stat.size() && stat[at + 2] == 'S';
}

template <Mode M>
int consumer_main(const Setup& s, Ledger& ledger, std::uint32_t generation, Role role) {
  Reader<M> r(Ring::open(s.name), kWait);
  if (role == Role::witness) ledger.witness_attached.store(1);
  if (role == Role::killed) {  // the witness and the drainer must finish
    test_hooks::mid_release = hook<kMidRelease>;
    test_hooks::mid_unblock = hook<kMidUnblock>;
    test_hooks::mid_verify = hook<kMidVerify>;
  }
  const Wait how = consumer_wait(generation);
  std::optional<Sleeper> sleeper;
  if (how == Wait::wait_set || how == Wait::wait_fd) sleeper.emplace(how, r, 0);
  std::optional<RecordVerifier> verifier;
  if (generation % 8 >= 4) verifier.emplace(r.ring().info().stored_schema);
  const bool slow = role == Role::killed && generation % 3 == 0;
  const bool drain = role == Role::drainer;
  std::vector<std::uint64_t> next(kMaxGenerations, 0);  // per producer: lowest fresh seq allowed
  std::optional<std::uint64_t> last;                    // broadcast, spsc: the previous seq
  if (role == Role::witness) last = ~std::uint64_t{0};  // attached before any record: from 0
  auto idle_since = std::chrono::steady_clock::now();
  // Numbers in (from, to) never appear: none of them may have been committed.
  auto skipped_ok = [&](std::uint64_t from, std::uint64_t to) {
    for (std::uint64_t k = from + 1; k < to; ++k) {
      if (ledger.committed[k].load() != 0) {
        std::fprintf(stderr, "chaos %s consumer: committed seq %" PRIu64 " skipped\n",
                     std::string(to_string(M)).c_str(), k);
        return false;
      }
    }
    return true;
  };
  for (;;) {
    auto got = next_record<M>(r, how, sleeper ? &*sleeper : nullptr, 100ms);
    if (got.status() == Status::abandoned) {
      if (ledger.abandoned.fetch_add(1) > kMaxGenerations) return kHang;  // more than producers
      continue;
    }
    if (!got) {
      if (got.status() != Status::timed_out && got.status() != Status::peer_dead) {
        std::fprintf(stderr, "chaos %s consumer: %s\n", std::string(to_string(M)).c_str(),
                     std::string(to_string(got.status())).c_str());
        if (got.status() == Status::corrupt) print_state(r.ring(), "corrupt");
        return kWrongStatus;
      }
      const auto idle = std::chrono::steady_clock::now() - idle_since;
      const bool may_stop = drain || (role == Role::witness && ledger.draining.load() != 0);
      if (may_stop && idle > 500ms) {
        std::fprintf(stderr, "  chaos %s: %s stops (wait %u, last %s)\n",
                     std::string(to_string(M)).c_str(), drain ? "drainer" : "witness",
                     static_cast<unsigned>(how), std::string(to_string(got.status())).c_str());
        return 0;
      }
      if (idle > 10s) return kHang;
      continue;
    }
    idle_since = std::chrono::steady_clock::now();
    const auto tag = tag_of(got->bytes, verifier ? &*verifier : nullptr);
    if (!tag || tag->seq >= kMaxSeq || tag->producer >= kMaxGenerations) {
      return kBadPayload;
    }
    const std::uint64_t seq = tag->seq;
    if (s.inject_loss && seq >= 100) {  // the control: as if it had never arrived
      // The first record from seq 100 on that a consumer gets (so one that was committed; seq 100
      // itself may be a number a killed producer never committed) is the one every consumer drops;
      // in broadcast the witness picks it, since only its losses are checked.
      std::uint64_t none = 0;
      if (M != Mode::broadcast || role != Role::killed)
        ledger.injected.compare_exchange_strong(none, seq + 1);
      if (ledger.injected.load() == seq + 1) {
        r.release();
        continue;
      }
    }
    if (role == Role::killed) {
      ledger.holding[g_slot].store(seq + 1);  // before counting: a kill after the count finds it
    }
    if (M == Mode::broadcast) {
      if (last && *last != ~std::uint64_t{0} && seq <= *last) return kOutOfOrder;
      if (last && !skipped_ok(*last, seq)) return kLost;
      last = seq;
      if (role != Role::killed && ledger.witness[seq].fetch_add(1) != 0) return kDuplicate;
    } else if (M == Mode::mpmc) {
      if (got->redelivered) {
        ledger.again[seq].fetch_add(1);
      } else {
        if (seq < next[tag->producer]) return kOutOfOrder;
        next[tag->producer] = seq + 1;
        if (ledger.fresh[seq].fetch_add(1) != 0) return kDuplicate;
      }
    } else if (ledger.fresh[seq].fetch_add(1) != 0) {  // spsc, mpsc: a copy of a held record
      ledger.again[seq].fetch_add(1);
    } else {
      if (seq < next[tag->producer]) return kOutOfOrder;
      next[tag->producer] = seq + 1;
      if (M == Mode::spsc) {  // one producer at a time: numbers only grow, gaps never committed
        if (last && !skipped_ok(*last, seq)) return kLost;
        last = seq;
      }
    }
    ledger.checked.fetch_add(1);
    if (role == Role::killed) maybe_park(kHolding, g_odds);
    if (slow) std::this_thread::sleep_for(100us);
    r.release();  // only after the count
    if (role == Role::killed) ledger.holding[g_slot].store(0);
  }
}

template <Mode M>
int run(const Args& args) {
  const std::uint64_t target_kills = args.num("kills", 1000);
  const std::uint64_t capacity = args.num("capacity", 4096);
  const auto seed = static_cast<std::uint32_t>(args.num("seed", std::random_device{}()));
  g_odds = std::max<std::uint64_t>(1, args.num("hook-odds", 20'000));
  RingName name(std::string("chaos-") + std::string(to_string(M)));
  Setup s{false, M, name.str(), 1, 1};
  const std::string inject = args.str("inject", "none");
  if (inject != "none" && inject != "loss") throw std::invalid_argument("--inject: loss");
  s.inject_loss = inject == "loss";
  if (M == Mode::mpsc || M == Mode::mpmc) s.producers = 2;
  if (M == Mode::mpmc) s.consumers = 3;
  if (M == Mode::broadcast) s.consumers = 2;
  const Ring ring = create_ring<flatring::test::Msg>(s.name, {.capacity = capacity, .mode = M});
  auto* ledger = shared_zeroed<Ledger>();
  g_ledger = ledger;
  std::mt19937 rng(seed);
  const auto start = std::chrono::steady_clock::now();

  std::uint32_t generation = 0;
  std::vector<pid_t> pids(kSlots, -1);
  auto is_producer = [&](std::size_t slot) { return slot < s.producers; };
  auto start_slot = [&](std::size_t slot, Role role) {
    const std::uint32_t g = generation++;
    ledger->parked[slot].store(0);
    pids[slot] = spawn([&, slot, g, role] {
      g_slot = slot;
      g_rng.seed(seed * 1000003ull + g);
      if (g >= kMaxGenerations) return int{kLedgerFull};
      return is_producer(slot) ? producer_main<M>(s, *ledger, g)
                               : consumer_main<M>(s, *ledger, g, role);
    });
  };
  const std::size_t first_consumer = s.producers;
  const std::size_t end_consumer = s.producers + s.consumers;
  constexpr std::size_t kWitness = kSlots - 1;
  if (M == Mode::broadcast) {  // before any record, so it must see every one
    start_slot(kWitness, Role::witness);
    const auto stop = std::chrono::steady_clock::now() + 30s;
    while (ledger->witness_attached.load() == 0 && std::chrono::steady_clock::now() < stop)
      std::this_thread::sleep_for(1ms);
  }
  for (std::size_t i = 0; i < end_consumer; ++i) start_slot(i, Role::killed);

  std::uint64_t kills[kKinds] = {};
  std::uint64_t producer_kills = 0, consumer_kills = 0, self_exits = 0, stalls = 0;
  std::string first_failure;
  auto total_kills = [&] { return producer_kills + consumer_kills; };
  // SIGKILLs slot `i` and reaps it; a consumer's held record is noted before any replacement.
  auto kill_slot = [&](std::size_t i, Stop kind) {
    if (pids[i] < 0) return;
    ::kill(pids[i], SIGKILL);
    ::kill(pids[i], SIGCONT);  // a stopped process dies only once it runs
    const int rc = join(pids[i]);
    pids[i] = -1;
    if (rc != 128 + SIGKILL) {
      ++self_exits;
      if (first_failure.empty()) first_failure = "a child ended with " + std::to_string(rc);
    }
    ++kills[kind];
    if (is_producer(i)) {
      ++producer_kills;
      return;
    }
    ++consumer_kills;
    if (const std::uint64_t h = ledger->holding[i].exchange(0); h != 0) {
      ledger->dead_held[h - 1].store(1);
    }
  };
  auto signal_group = [&](std::size_t from, std::size_t to, int sig) {
    for (std::size_t i = from; i < to; ++i) {
      if (pids[i] > 0) ::kill(pids[i], sig);
    }
  };
  // Where slot `i` sleeps, waiting up to `limit` for it: the call it marked in the ledger just
  // before sleeping, once the kernel has it asleep (a futex sleep also shows in `line`'s
  // waiters); kRandom if it does not sleep within `limit`.
  auto asleep_in = [&](std::size_t i, const layout::WaitLine& line,
                       std::chrono::milliseconds limit) {
    const auto stop = std::chrono::steady_clock::now() + limit;
    for (;;) {
      const std::uint64_t at = ledger->sleeping[i].load();
      if (at != 0 && kernel_asleep(pids[i]) && (at - 1 != kAsleep || line.waiters.load() != 0))
        return static_cast<Stop>(at - 1);
      if (std::chrono::steady_clock::now() >= stop) return kRandom;
      std::this_thread::sleep_for(1ms);
    }
  };

  std::uint64_t last_checked = 0;
  auto last_progress = std::chrono::steady_clock::now();
  auto last_report = start;
  std::uint64_t rounds = 0;
  while (total_kills() < target_kills && self_exits == 0) {
    ++rounds;
    for (std::size_t i = 0; i < kSlots; ++i) {
      if (pids[i] < 0) continue;
      if (const int rc = exited(pids[i]); rc != 0) {
        ++self_exits;
        pids[i] = -1;
        if (first_failure.empty())
          first_failure = "slot " + std::to_string(i) +
                          " stopped on its own: " + std::to_string(rc >= 1000 ? rc - 1000 : rc) +
                          (rc >= 1000 ? " (exit code)" : " (signal + 128)");
        print_state(ring, "a child stopped");
      }
    }
    if (self_exits != 0) break;
    // Parked at a stop: killed there.
    for (std::size_t i = 0; i < end_consumer; ++i) {
      const std::uint64_t p = ledger->parked[i].load();
      if (p != 0) {
        kill_slot(i, static_cast<Stop>(p - 1));
        start_slot(i, Role::killed);
      }
    }
    const auto what = rng() % 10;
    const std::size_t victim_p = rng() % s.producers;
    const std::size_t victim_c = first_consumer + rng() % s.consumers;
    if (what < 6) {  // random point: a producer, a consumer, or both
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20'000));
      const auto who = rng() % 3;
      if (who != 1) kill_slot(victim_p, kRandom);
      if (who != 0) kill_slot(victim_c, kRandom);
      if (rng() % 4 == 0) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20'000));
      if (who != 1) start_slot(victim_p, Role::killed);
      if (who != 0) start_slot(victim_c, Role::killed);
    } else if (what < 8) {  // let the stops park someone
      std::this_thread::sleep_for(30ms);
    } else if (what == 8) {  // a producer asleep on a full ring: stop every consumer
      signal_group(first_consumer, end_consumer, SIGSTOP);
      if (M == Mode::broadcast) signal_group(kWitness, kWitness + 1, SIGSTOP);
      kill_slot(victim_p, asleep_in(victim_p, ring.control().space, 300ms));
      start_slot(victim_p, Role::killed);
      if (M == Mode::broadcast) signal_group(kWitness, kWitness + 1, SIGCONT);
      signal_group(first_consumer, end_consumer, SIGCONT);
    } else {  // a consumer asleep on an empty ring: stop every producer
      signal_group(0, s.producers, SIGSTOP);
      kill_slot(victim_c, asleep_in(victim_c, ring.control().data, 300ms));
      start_slot(victim_c, Role::killed);
      signal_group(0, s.producers, SIGCONT);
    }
    if (const std::uint64_t c = ledger->checked.load(); c != last_checked) {
      last_checked = c;
      last_progress = std::chrono::steady_clock::now();
    } else if (std::chrono::steady_clock::now() - last_progress > 30s) {
      ++stalls;  // nothing delivered for 30 s of rounds: wedged
      if (first_failure.empty()) first_failure = "no record delivered for 30 s";
      print_state(ring, "stalled");
      break;
    }
    if (ledger->next_seq.load() >= kMaxSeq - 200'000 || generation + 16 >= kMaxGenerations) break;
    if (std::chrono::steady_clock::now() - last_report > 5s) {
      last_report = std::chrono::steady_clock::now();
      const double t = seconds_since(start);
      const double rate = static_cast<double>(total_kills()) / t;
      std::fprintf(
          stderr,
          "  chaos %s: %" PRIu64 " of %" PRIu64 " kills, %" PRIu64 " records checked, ETA %.0f s\n",
          std::string(to_string(M)).c_str(), total_kills(), target_kills, ledger->checked.load(),
          rate > 0
              ? static_cast<double>(target_kills - std::min(target_kills, total_kills())) / rate
              : 0.0);
    }
  }
  for (std::size_t i = 0; i < end_consumer; ++i) kill_slot(i, kRandom);

  // Drain with a consumer that is not killed (broadcast: the witness finishes).
  int drain_rc = 0;
  if (M == Mode::broadcast) {
    ledger->draining.store(1);
    drain_rc = pids[kWitness] > 0 ? join_within(pids[kWitness], 120s) : -2;
    pids[kWitness] = -1;
  } else {
    start_slot(kWitness, Role::drainer);
    std::fprintf(stderr, "  chaos %s: draining (pid %d)\n", std::string(to_string(M)).c_str(),
                 pids[kWitness]);
    drain_rc = join_within(pids[kWitness], 120s);
    pids[kWitness] = -1;
  }
  if (drain_rc != 0) print_state(ring, "after the drain");

  std::uint64_t committed = 0, lost = 0, uncertain = 0, again = 0, unexplained = 0;
  const std::uint64_t reserved = std::min(ledger->next_seq.load(), kMaxSeq);
  for (std::uint64_t q = 0; q < reserved; ++q) {
    const bool c = ledger->committed[q].load() != 0;
    const unsigned f = ledger->fresh[q].load();
    const unsigned a = ledger->again[q].load();
    committed += c;
    if (!c) ++uncertain;
    const bool delivered = M == Mode::broadcast ? ledger->witness[q].load() != 0 : f + a != 0;
    if (c && !delivered) ++lost;
    again += a;
    if (a != 0 && f != 0 && ledger->dead_held[q].load() == 0) ++unexplained;
  }
  const auto& ctl = ring.control();
  const bool drained = M == Mode::broadcast ||
                       (ctl.consumer.head.load() == ctl.producer.tail.load() &&
                        (M != Mode::mpmc || ctl.consumer.next.load() == ctl.producer.tail.load()));
  if (!drained) print_state(ring, "not drained");
  const std::uint64_t corrupt = ctl.retired.value[layout::corrupt_records].load();
  const std::uint64_t abandoned = ledger->abandoned.load();
  std::vector<std::string> failures;
  auto expect = [&](bool ok, const std::string& what) {
    if (!ok) failures.push_back(what);
  };
  expect(self_exits == 0 && stalls == 0, first_failure.empty() ? "a child failed" : first_failure);
  expect(drain_rc == 0, "the drain ended with " + std::to_string(drain_rc));
  expect(committed > 0, "nothing committed");
  expect(lost == 0, std::to_string(lost) + " committed records lost");
  expect(again <= consumer_kills, "more copies than consumer kills");
  expect(unexplained == 0, std::to_string(unexplained) + " copies no killed consumer held");
  expect(uncertain <= producer_kills, "more uncommitted numbers than producer kills");
  expect(abandoned <= producer_kills + (M == Mode::mpsc ? consumer_kills : 0),
         "more abandoned claims than producer kills (mpsc: and consumer kills)");
  expect(drained, "the ring is not empty after the drain");
  expect(corrupt == 0, "corrupt records counted");
  const bool ok = failures.empty();
  std::string kinds = "{";
  for (std::uint32_t k = 0; k < kKinds; ++k) {
    kinds += std::string(k ? ", " : "") + "\"" + kStopNames[k] + "\": " + std::to_string(kills[k]);
  }
  kinds += "}";
  std::string why = "[";
  for (std::size_t i = 0; i < failures.size(); ++i) {
    why += (i ? ", " : "") + json_string(failures[i]);
  }
  why += "]";
  Json j;
  j.add("part", "chaos")
      .add("mode", to_string(M))
      .add("capacity", capacity)
      .add("seed", std::uint64_t{seed})
      .add("rounds", rounds)
      .add("kills", total_kills())
      .add("producer_kills", producer_kills)
      .add("consumer_kills", consumer_kills)
      .add_raw("kills_by_point", kinds)
      .add("committed", committed)
      .add("deliveries_checked", ledger->checked.load())
      .add("redelivered", again)
      .add("abandoned", abandoned)
      .add("uncommitted_numbers", uncertain)
      .add("lost", lost)
      .add("seconds", seconds_since(start))
      .add_raw("failures", why)
      .add("ok", ok);
  std::printf("%s\n", j.str().c_str());
  release_shared(ledger, sizeof(Ledger));
  return ok ? 0 : 1;
}

}  // namespace

int chaos_main(const Args& args) {
  return visit_mode(args.mode(), [&](auto m) { return run<decltype(m)::value>(args); });
}

}  // namespace campaign
