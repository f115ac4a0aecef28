// Chaos: producer and consumer processes SIGKILLed at random points (mid-commit, mid-verify, while
// blocked on a futex), replaced by new processes that take the roles over, round after round.
//
// A ledger in a shared anonymous mapping (not in the ring) records what happened:
//   - a producer reserves a sequence number (next_seq) before it sends the record, and marks it
//     committed after send returned ok. A death in between leaves a number that may or may not
//     have been committed: such a record may be delivered, but need not be.
//   - a consumer checks each record (verified, payload derived from its seq), marks it delivered,
//     and only then releases it (the typed in-place consumer releases at the next receive). A
//     death between receiving and releasing makes the next consumer get that record again: spsc
//     takeover resumes at the published head (at-least-once across consumer deaths).
// Checked: every record marked committed is delivered; within one consumer the sequence numbers
// only grow; a new consumer starts no earlier than the last record its predecessors marked
// (so only that one record can come twice, and only after a consumer death); every byte is right;
// no process exits on its own (a hang past a timeout or a wrong status makes it exit non-zero);
// the final drain finishes within its timeout.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <optional>
#include <random>
#include <sys/mman.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include "helpers.hpp"

using namespace flatring;
using namespace std::chrono_literals;
using flatring::test::Msg;
using fr_test::unique_name;

namespace {

constexpr std::uint64_t kMaxSeq = 1u << 23;

struct Ledger {
  std::atomic<std::uint64_t> next_seq;     // next number a producer may use
  std::atomic<std::uint64_t> last_marked;  // highest seq any consumer marked delivered, + 1
  std::atomic<std::uint64_t> checked;      // records a consumer checked and marked
  std::atomic<std::uint8_t> committed[kMaxSeq];
  std::atomic<std::uint8_t> delivered[kMaxSeq];
};

Ledger* make_ledger() {
  void* p = ::mmap(nullptr, sizeof(Ledger), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  REQUIRE(p != MAP_FAILED);
  return static_cast<Ledger*>(p);  // zero pages: every counter and flag starts at 0
}

// Exit codes of a chaos child that stopped on its own (it never should).
enum Exit : int { kWrongStatus = 10, kOutOfOrder = 11, kBadPayload = 12, kLedgerFull = 13 };

int producer_main(const Ring& ring, Ledger& ledger, bool typed) {
  const WaitOptions wait{.spin = 20us, .liveness_interval = 20ms};
  Producer<Msg> producer(ring, wait);
  flatbuffers::FlatBufferBuilder fbb;
  for (;;) {
    // Reserve the number first: a death after the commit can then never reuse it.
    const std::uint64_t seq = ledger.next_seq.fetch_add(1);
    if (seq >= kMaxSeq) return kLedgerFull;
    fr_test::build_msg(fbb, seq, seq % 300);
    for (;;) {
      Status s = Status::ok;
      if (typed) {
        s = producer.send(fbb, 5s);
      } else {  // zero-copy: reserve, fill, commit
        auto span = producer.raw().reserve(fbb.GetSize(), 5s);
        if (span) {
          std::memcpy(span->data(), fbb.GetBufferPointer(), fbb.GetSize());
          s = producer.raw().commit(fbb.GetSize());
        } else {
          s = span.status();
        }
      }
      if (s == Status::ok) break;
      // No consumer (killed, not yet replaced) or a slow one: try the same record again.
      if (s != Status::timed_out && s != Status::no_consumer && s != Status::peer_dead) {
        std::fprintf(stderr, "chaos producer: %s\n", std::string(to_string(s)).c_str());
        return kWrongStatus;
      }
    }
    ledger.committed[seq].store(1);
  }
}

// Checks one received record against the ledger and marks it delivered; 0 or an Exit code.
// `last` is the previous seq this consumer took; `floor` is last_marked when it started.
int accept(Ledger& ledger, const Msg* msg, std::optional<std::uint64_t>& last, std::uint64_t floor) {
  const std::uint64_t seq = msg->seq();
  if (seq >= kMaxSeq) return kBadPayload;
  const auto* p = msg->payload();
  if (p == nullptr || p->size() != seq % 300 ||
      !fr_test::check_pattern({reinterpret_cast<const std::byte*>(p->data()), p->size()}, seq)) {
    return kBadPayload;
  }
  // The first record may be the one a dead predecessor marked but did not release; after that,
  // sequence numbers only grow.
  if (last ? seq <= *last : seq + 1 < floor) {
    std::fprintf(stderr, "chaos consumer: seq %llu out of order\n", static_cast<unsigned long long>(seq));
    return kOutOfOrder;
  }
  last = seq;
  ledger.delivered[seq].fetch_add(1);
  std::uint64_t seen = ledger.last_marked.load();
  while (seen < seq + 1 && !ledger.last_marked.compare_exchange_weak(seen, seq + 1)) {
  }
  ledger.checked.fetch_add(1);
  return 0;
}

// Consumes until killed, or (drain) until nothing has arrived for a while.
int consumer_main(const Ring& ring, Ledger& ledger, bool typed, bool drain) {
  const WaitOptions wait{.spin = 20us, .liveness_interval = 20ms};
  const auto idle = drain ? 300ms : 5s;
  const std::uint64_t floor = ledger.last_marked.load();
  std::optional<std::uint64_t> last;
  auto ordered = [&](const Msg* m) { return accept(ledger, m, last, floor); };
  for (;;) {
    if (typed) {
      Consumer<Msg> consumer(ring, ConsumerOptions{.in_place = true, .wait = wait});
      for (;;) {
        auto got = consumer.receive(idle);  // releases the previous record first
        if (got) {
          if (int rc = ordered(*got)) return rc;
          continue;
        }
        if (got.status() == Status::peer_dead) continue;  // the producer was killed: wait on
        if (drain && got.status() == Status::timed_out) return 0;
        std::fprintf(stderr, "chaos consumer: %s\n", std::string(to_string(got.status())).c_str());
        return kWrongStatus;
      }
    }
    Reader reader(ring, wait);
    for (;;) {
      auto got = reader.read(idle);
      if (got) {
        const auto* buf = reinterpret_cast<const std::uint8_t*>(got->bytes.data());
        flatbuffers::Verifier v(buf, got->bytes.size());
        if (!v.VerifyBuffer<Msg>(flatring::test::MsgIdentifier())) return kBadPayload;
        if (int rc = ordered(flatbuffers::GetRoot<Msg>(buf))) return rc;
        reader.release();  // only after the mark
        continue;
      }
      if (got.status() == Status::peer_dead) continue;
      if (drain && got.status() == Status::timed_out) return 0;
      std::fprintf(stderr, "chaos consumer: %s\n", std::string(to_string(got.status())).c_str());
      return kWrongStatus;
    }
  }
}

// waitpid with a deadline: -1 if the child is still running after `limit` (it is then killed).
int join_within(pid_t pid, std::chrono::milliseconds limit) {
  const auto stop = std::chrono::steady_clock::now() + limit;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (std::chrono::steady_clock::now() >= stop) {
      ::kill(pid, SIGKILL);
      fr_test::join(pid);
      return -1;
    }
    std::this_thread::sleep_for(2ms);
  }
}

// 0 while the child runs; its exit code (or 128+signal) once it has stopped on its own.
int exited(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, WNOHANG) != pid) return 0;
  return WIFEXITED(status) ? 1000 + WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

TEST_CASE("chaos: producers and consumers SIGKILLed at random points lose no committed record",
          "[chaos]") {
  const std::uint64_t capacity = GENERATE(std::uint64_t{4096}, std::uint64_t{1} << 16);
  const int rounds = static_cast<int>(fr_test::scaled(200));
  const auto seed = std::random_device{}();
  CAPTURE(capacity, rounds, seed);
  std::mt19937 rng(seed);
  const auto name = unique_name("chaos");
  RemoveGuard guard(name);
  auto ring = create_ring<Msg>(name, {.capacity = capacity});
  Ledger* ledger = make_ledger();

  int generation = 0;
  auto start_producer = [&] {
    const bool typed = (generation++ % 2) == 0;
    return fr_test::spawn([&, typed] { return producer_main(ring, *ledger, typed); });
  };
  auto start_consumer = [&] {
    const bool typed = (generation++ % 2) == 0;
    return fr_test::spawn([&, typed] { return consumer_main(ring, *ledger, typed, false); });
  };
  pid_t producer = start_producer();
  pid_t consumer = start_consumer();
  int producer_kills = 0;
  int consumer_kills = 0;
  int self_exits = 0;
  for (int round = 0; round < rounds; ++round) {
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20'000));
    for (pid_t p : {producer, consumer}) {
      if (int rc = exited(p); rc != 0) {
        ++self_exits;
        FAIL_CHECK("a chaos child stopped on its own: " << rc);
      }
    }
    const auto victim = rng() % 3;  // 0 producer, 1 consumer, 2 both
    if (victim != 1) {
      ::kill(producer, SIGKILL);
      CHECK(fr_test::join(producer) == 128 + SIGKILL);
      ++producer_kills;
    }
    if (victim != 0) {
      ::kill(consumer, SIGKILL);
      CHECK(fr_test::join(consumer) == 128 + SIGKILL);
      ++consumer_kills;
    }
    // Sometimes leave a role vacant for a while, so the other side blocks and is killed there.
    if (victim != 1) producer = start_producer();
    if (rng() % 4 == 0) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20'000));
    if (victim != 0) consumer = start_consumer();
    if (ledger->next_seq.load() >= kMaxSeq - 100'000) break;
  }
  ::kill(producer, SIGKILL);
  fr_test::join(producer);
  ++producer_kills;
  ::kill(consumer, SIGKILL);
  fr_test::join(consumer);
  ++consumer_kills;

  // Drain what is left with a consumer that is not killed.
  pid_t drainer = fr_test::spawn([&] { return consumer_main(ring, *ledger, false, true); });
  CHECK(join_within(drainer, 120s) == 0);

  std::uint64_t committed = 0;
  std::uint64_t lost = 0;
  std::uint64_t redelivered = 0;
  std::uint64_t uncertain = 0;  // reserved by a producer that died before marking it
  const std::uint64_t reserved = std::min(ledger->next_seq.load(), kMaxSeq);
  for (std::uint64_t s = 0; s < reserved; ++s) {
    const bool c = ledger->committed[s].load() != 0;
    const unsigned d = ledger->delivered[s].load();
    committed += c;
    if (c && d == 0) ++lost;
    if (!c) ++uncertain;
    if (d > 1) redelivered += d - 1;
  }
  std::printf("chaos capacity=%llu seed=%u: %d rounds, %d producer kills, %d consumer kills, "
              "%llu records committed, %llu deliveries checked, %llu redelivered after a consumer "
              "death, %llu numbers reserved by a producer killed mid-send, %llu lost\n",
              static_cast<unsigned long long>(capacity), seed, rounds, producer_kills,
              consumer_kills, static_cast<unsigned long long>(committed),
              static_cast<unsigned long long>(ledger->checked.load()),
              static_cast<unsigned long long>(redelivered), static_cast<unsigned long long>(uncertain),
              static_cast<unsigned long long>(lost));
  CHECK(self_exits == 0);
  CHECK(lost == 0);
  CHECK(committed > 0);
  // At most one record (the one held when it died) comes again per consumer death.
  CHECK(redelivered <= static_cast<std::uint64_t>(consumer_kills));
  const auto& c = ring.control();
  CHECK(c.retired.value[layout::corrupt_records].load() == 0);
  CHECK(c.retired.value[layout::verify_failures].load() == 0);
  ::munmap(ledger, sizeof(Ledger));
}
