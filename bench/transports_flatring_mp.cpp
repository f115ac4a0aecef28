// The multi-party flatring rows:
//   flatring-mpsc          2 producer processes (Writer<flatring::Mode::mpsc>::write) -> 1 consumer
//   (Reader<flatring::Mode::mpsc>) flatring-broadcast     1 producer
//   (Writer<flatring::Mode::broadcast>::write) -> 2 consumer processes, each
//                          receiving and checking every message
//   flatring-mpmc          2 producers (Writer<flatring::Mode::mpmc>::write) -> 2 consumers
//   (Reader<flatring::Mode::mpmc>) that share
//                          the messages
//   flatring-mpsc-4p       4 producers -> 1 consumer: 5 processes on the reference VM's 2 cores
//   flatring-mpmc-4p4c     4 producers -> 4 consumers: 8 processes on 2 cores
// The first three are throughput only. The mpmc rows also have a latency pattern, the worker-pool
// shape: the parent (the client) sends a request over an mpmc ring to 2 (4p4c: 4) worker
// processes; the one that takes it checks it and sends it back over an mpsc ring.
//
// Every process uses the blocking calls (spin 50 µs, then futex): with more processes than cores a
// busy-polling process can spin away the time slice of the one it waits for. No process is pinned
// (the scheduler spreads them; a taskset the run was started under holds). The extra producers /
// consumers / workers are forked by the harness's parent; the harness's child is the first
// consumer (worker). An extra producer waits for its share of a round on a futex, not spinning.
//
// Checks: a message carries (per-producer seq << 8 | producer) in its first 8 bytes and the
// complement in its last 8, and every length is checked. mpsc and broadcast consumers see every
// message of every producer and check each producer's exact sequence. mpmc consumers split the
// messages: each checks that every producer's numbers increase (consumers claim in ring order) and
// tallies, per producer, a count and a sum of a 64-bit hash of the numbers; after every round the
// parent checks that the tallies of all consumers add up to exactly what each producer sent, so a
// lost, repeated or altered message fails the case. In the latency pattern the client checks that
// each reply is its request, and each worker checks length, complement and increasing numbers.
//
// msgs/s counts messages produced (for broadcast, each message is delivered to both consumers).
// The end of an mpmc round is when the last of its messages is received by any consumer: every
// consumer adds its batches to a shared count, and the one whose batch completes the round stamps
// the time. The harness's child reports that count's growth as its progress.
#include "transport.hpp"

#include <flatring/flatring.hpp>

#include <fmt/format.h>

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bit>
#include <climits>
#include <optional>
#include <thread>
#include <vector>

namespace bench {
namespace {

using namespace std::chrono_literals;
constexpr auto kSlice = 100ms;  // a blocking call returns after this to check the other processes
// mpmc: the harness's child waits no longer than this before it looks whether the other consumers
// finished the round (only delays the next round, not the measured end).
constexpr auto kChildSlice = 1ms;
constexpr unsigned kMaxSide = 8;  // producers, consumers or workers in one row

enum class Mode { mpsc, broadcast, mpmc };

struct Shape {
  Mode mode;
  unsigned producers;
  unsigned consumers;  // mpmc latency: the workers
};

[[noreturn]] void fail_status(const char* what, flatring::Status s) {
  throw BenchError(fmt::format("flatring: {}: {}", what, flatring::to_string(s)));
}

// splitmix64: a sum of these over a set of sequence numbers changes when one is lost, repeated or
// replaced (barring a 2^-64 coincidence), which a count or a plain sum alone does not guarantee.
constexpr std::uint64_t mix(std::uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// What one mpmc consumer received from each producer, for the parent's end-of-round check.
struct alignas(64) Tally {
  std::atomic<std::uint64_t> count[kMaxSide];
  std::atomic<std::uint64_t> hash[kMaxSide];
};

// Words shared with the extra processes (forked by the harness's parent).
struct HelperControl {
  alignas(64)
      std::atomic<std::uint64_t> quota[kMaxSide];  // messages each extra producer must have sent
  alignas(64) std::atomic<std::uint32_t> go{
      0};  // futex word: bumped after quota changes and at stop
  alignas(64) std::atomic<std::uint64_t> consumed{0};  // mpmc: messages received by all consumers
  std::atomic<std::uint64_t> target{0};                // mpmc: `consumed` once this round is done
  std::atomic<std::int64_t> end_ns{0};                 // mpmc: when `consumed` reached `target`
  Tally tally[kMaxSide];
  alignas(64) std::atomic<std::uint32_t> ready{0};  // extra processes attached
  std::atomic<std::uint32_t> stop{0};
  std::atomic<std::uint32_t> failed{0};
  char message[512]{};
};

// Checks the messages one consumer receives. exact (mpsc, broadcast): the consumer gets every
// message, so each producer's next number is known. shared (mpmc): numbers increase with gaps.
class Checker {
 public:
  Checker(std::size_t payload, unsigned producers, bool shared)
      : payload_(payload),
        shared_(shared),
        next_(producers, 0),
        count_(producers, 0),
        hash_(producers, 0) {}

  void operator()(std::span<const std::byte> b) {
    std::uint64_t head = 0, tail = 0;
    if (b.size() == payload_) {
      std::memcpy(&head, b.data(), 8);
      std::memcpy(&tail, b.data() + b.size() - 8, 8);
      const std::uint64_t p = head & 0xFF, seq = head >> 8;
      const bool known = tail == ~head && p < next_.size();
      if (known && (seq == next_[p] || (shared_ && seq > next_[p]))) [[likely]] {
        next_[p] = seq + 1;
        ++count_[p];
        hash_[p] += mix(seq);
        return;
      }
      if (known && shared_)
        throw BenchError(fmt::format("bad message: producer {} seq {} after seq {} at one mpmc "
                                     "consumer (repeated or reordered)",
                                     p, seq, next_[p] - 1));
      fail_message(p < next_.size() ? (next_[p] << 8 | p) : head, head, tail, payload_, b.size());
    }
    fail_message(0, head, tail, payload_, b.size());
  }

  // Stores the tally for the parent; published by the release add to HelperControl::consumed.
  void publish(Tally& t) const noexcept {
    for (std::size_t p = 0; p < next_.size(); ++p) {
      // Relaxed: only this consumer writes its tally; the add to `consumed` (release) that follows
      // publishes it.
      t.count[p].store(count_[p], std::memory_order_relaxed);
      t.hash[p].store(hash_[p], std::memory_order_relaxed);
    }
  }

 private:
  std::size_t payload_;
  bool shared_;
  std::vector<std::uint64_t> next_, count_, hash_;
};

// What the producers of an mpmc row sent, against what the consumers tallied.
class Ledger {
 public:
  explicit Ledger(unsigned producers)
      : sent_(producers, 0), hashed_(producers, 0), hash_(producers, 0) {}
  void sent(unsigned p, std::uint64_t n) noexcept {
    sent_[p] += n;
  }  // in the timed loop: no hashing

  // After a round (every consumer's add to `consumed` acquired): throws unless the consumers'
  // tallies add up to exactly what each producer sent.
  void verify(const HelperControl& hc, unsigned consumers) {
    for (unsigned p = 0; p < sent_.size(); ++p) {
      for (; hashed_[p] < sent_[p]; ++hashed_[p]) hash_[p] += mix(hashed_[p]);
      std::uint64_t count = 0, hash = 0;
      std::string each;
      for (unsigned c = 0; c < consumers; ++c) {
        // Relaxed: ordered by the round's handoff (see above).
        const std::uint64_t n = hc.tally[c].count[p].load(std::memory_order_relaxed);
        count += n;
        hash += hc.tally[c].hash[p].load(std::memory_order_relaxed);
        each += fmt::format("{}{}", c == 0 ? "" : " + ", n);
      }
      if (count != sent_[p])
        throw BenchError(
            fmt::format("mpmc: producer {} sent {} messages, the consumers received {} ({})", p,
                        sent_[p], count, each));
      if (hash != hash_[p])
        throw BenchError(
            fmt::format("mpmc: producer {} sent {} messages and the consumers received as many, "
                        "but not the same sequence numbers (one lost, another repeated or altered)",
                        p, sent_[p]));
    }
  }

 private:
  std::vector<std::uint64_t> sent_, hashed_, hash_;
};

// mpmc: adds a consumer's batch to the messages all consumers received; the consumer whose batch
// completes the round stamps its end time.
void count_consumed(HelperControl& hc, std::uint64_t k) noexcept {
  // Relaxed: the round's target was stored before its first message was sent and this consumer
  // acquired one of them from the ring, so it cannot see an older target; the next round's target
  // is stored only after this add completed the current round.
  const std::uint64_t target = hc.target.load(std::memory_order_relaxed);
  // Release: publishes the tally stored before it; partner of the child's acquire load.
  const std::uint64_t before = hc.consumed.fetch_add(k, std::memory_order_release);
  // Release: partner of the parent's acquire load, which waits for a non-zero stamp.
  if (before < target && before + k >= target) hc.end_ns.store(now_ns(), std::memory_order_release);
}

// Writes one record, waiting in slices; on_timeout() checks the other processes between them.
template <class W, class OnTimeout>
void write_record(W& w, std::span<const std::byte> b, std::chrono::nanoseconds slice,
                  OnTimeout&& on_timeout) {
  for (;;) {
    const flatring::Status s = w.write(b, slice);
    if (s == flatring::Status::ok) [[likely]]
      return;
    if (s != flatring::Status::timed_out) fail_status("write", s);
    on_timeout();
  }
}

// Sends messages of producer `id`, continuing its sequence.
template <class W>
class Sender {
 public:
  Sender(W& w, std::size_t payload, unsigned id) : w_(&w), buf_(payload), id_(id) {
    fill_pattern(buf_.data(), buf_.size());
  }
  template <class Check>
  void send(Check&& check) {
    // --inject-fault SEQ: producer 0 skips number SEQ (its message SEQ carries SEQ + 1 and the
    // sequence goes on from there), which only the mpmc rows' end-of-round tally can catch.
    if (id_ == 0 && seq_ == g_fault_seq) [[unlikely]]
      ++seq_;
    const std::uint64_t head = seq_++ << 8 | id_;
    std::memcpy(buf_.data(), &head, 8);
    const std::uint64_t tail = ~head;
    std::memcpy(buf_.data() + buf_.size() - 8, &tail, 8);
    write_record(*w_, buf_, kSlice, check);
  }

 private:
  W* w_;
  std::vector<std::byte> buf_;
  unsigned id_;
  std::uint64_t seq_ = 0;
};

// Receives between 1 and `max` messages (0 after a timed-out wait), checking each.
template <class R, class OnTimeout>
std::uint64_t receive_some(R& r, Checker& check, std::uint64_t max, std::chrono::nanoseconds slice,
                           OnTimeout&& on_timeout) {
  auto first = r.read(slice);
  if (!first) {
    if (first.status() != flatring::Status::timed_out) fail_status("read", first.status());
    on_timeout();
    return 0;
  }
  check(first->bytes);
  r.release();
  const std::size_t more = std::size_t(std::min<std::uint64_t>(max - 1, 63));
  return 1 + (more == 0 ? 0 : r.poll([&](std::span<const std::byte> b) { check(b); }, more));
}

// An mpmc consumer's batch: received, tallied, counted.
template <class OnTimeout>
void consume_mpmc(flatring::Reader<flatring::Mode::mpmc>& r, Checker& check, HelperControl& hc,
                  unsigned index, std::chrono::nanoseconds slice, OnTimeout&& on_timeout) {
  const std::uint64_t k = receive_some(r, check, 64, slice, on_timeout);
  if (k == 0) return;
  check.publish(hc.tally[index]);
  count_consumed(hc, k);
}

// A worker of the latency pattern: takes a request from the mpmc ring, checks it, sends it back
// over the mpsc ring.
class Worker {
 public:
  Worker(const std::string& requests, const std::string& replies, std::size_t payload)
      : req_(flatring::Ring::open(requests)),
        rep_(flatring::Ring::open(replies)),
        payload_(payload) {}

  // Serves one request if one comes within `slice`; otherwise calls on_timeout() and returns false.
  template <class OnTimeout>
  bool serve_one(std::chrono::nanoseconds slice, OnTimeout&& on_timeout) {
    auto rec = req_.read(slice);
    if (!rec) {
      if (rec.status() != flatring::Status::timed_out) fail_status("read", rec.status());
      on_timeout();
      return false;
    }
    const std::span<const std::byte> b = rec->bytes;
    std::uint64_t seq = 0, tail = 0;
    if (b.size() == payload_) {
      std::memcpy(&seq, b.data(), 8);
      std::memcpy(&tail, b.data() + b.size() - 8, 8);
    }
    // One request is in flight at a time, so the numbers one worker gets increase.
    if (b.size() != payload_ || tail != ~seq || (served_ && seq <= last_))
      throw BenchError(fmt::format(
          "bad request: length {} (expected {}), seq {}, tail {:#x}, this worker's previous seq {}",
          b.size(), payload_, seq, tail, served_ ? fmt::format("{}", last_) : "none"));
    last_ = seq;
    served_ = true;
    write_record(rep_, b, slice, on_timeout);
    req_.release();
    return true;
  }

 private:
  flatring::Reader<flatring::Mode::mpmc> req_;
  flatring::Writer<flatring::Mode::mpsc> rep_;
  std::size_t payload_;
  std::uint64_t last_ = 0;
  bool served_ = false;
};

flatring::Ring create_ring(const std::string& name, std::size_t payload, flatring::Mode mode) {
  flatring::RingOptions o;
  o.max_record_size = payload;
  o.capacity = std::max<std::uint64_t>(
      std::bit_ceil(2 * flatring::layout::frame_size(payload) + 16), 4u << 20);
  o.mode = mode;
  flatring::Ring::remove(name);  // a leftover of a killed run with the same pid
  return flatring::Ring::create(name, o);
}

// The extra processes, stopped (or killed) when the case ends.
class Helpers {
 public:
  explicit Helpers(HelperControl& hc) : hc_(&hc) {}
  ~Helpers() {
    hc_->stop.store(1, std::memory_order_release);
    // Release: partner of the idle producers' acquire load of `go` before they sleep on it.
    hc_->go.fetch_add(1, std::memory_order_release);
    flatring::wait::futex_wake(hc_->go, INT_MAX);
    for (pid_t pid : pids_) {
      int status = 0;
      // A helper blocked on a full ring (its consumer gone) is killed rather than waited for.
      for (int i = 0; i < 100 && ::waitpid(pid, &status, WNOHANG) == 0; ++i)
        std::this_thread::sleep_for(10ms);
      if (::kill(pid, 0) == 0) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
      }
    }
  }
  Helpers(const Helpers&) = delete;
  Helpers& operator=(const Helpers&) = delete;

  // Forks a helper running body(); an exception ends it (quietly once the case is over).
  template <class F>
  void spawn(F&& body) {
    std::fflush(nullptr);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) fail_errno("fork");
    if (pid == 0) {
      // Dies with the parent (a watchdog exit, a signal): nothing else would stop an idle helper.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) _exit(9);
      try {
        body();
      } catch (const std::exception& e) {
        if (stopped()) _exit(0);  // interrupted by the end
        std::snprintf(hc_->message, sizeof hc_->message, "%s", e.what());
        hc_->failed.store(1, std::memory_order_release);
        _exit(1);
      }
      _exit(0);
    }
    pids_.push_back(pid);
    ++spawned_;
  }

  bool stopped() const noexcept { return hc_->stop.load(std::memory_order_acquire) != 0; }
  void throw_if_stopped() const {
    if (stopped()) throw BenchError("stopped");
  }
  void check() const {
    if (hc_->failed.load(std::memory_order_acquire) != 0)
      throw BenchError(std::string("helper: ") + hc_->message);
  }

  // Waits until every helper attached; `watch` checks the harness's child meanwhile.
  template <class Watch>
  void wait_ready(Watch&& watch) const {
    while (hc_->ready.load(std::memory_order_acquire) < spawned_) {
      watch();
      check();
      std::this_thread::sleep_for(1ms);
    }
  }

 private:
  HelperControl* hc_;
  std::vector<pid_t> pids_;
  std::uint32_t spawned_ = 0;
};

class MpTransport final : public Transport {
 public:
  MpTransport(std::string name, Shape shape) : name_(std::move(name)), shape_(shape) {}
  const std::string& name() const override { return name_; }
  std::optional<std::string> unsupported(std::size_t payload, Pattern p) const override {
    if (p == Pattern::latency && shape_.mode != Mode::mpmc)
      return "throughput only (one producer side, one consumer side)";
    if (payload > (1u << 20)) return "up to 1 MiB records";
    return std::nullopt;
  }

  ThroughputResult run_throughput(const CaseSpec& spec) override {
    const std::string ring_name = unique_name("mp");
    flatring::RemoveGuard guard(ring_name);
    CleanupName cleanup(NameKind::file, flatring::Ring::path_of(ring_name));
    const flatring::Mode mode = shape_.mode == Mode::mpsc        ? flatring::Mode::mpsc
                                : shape_.mode == Mode::broadcast ? flatring::Mode::broadcast
                                                                 : flatring::Mode::mpmc;
    auto ring = create_ring(ring_name, spec.payload, mode);
    SharedMemory shm(sizeof(HelperControl));
    auto* hc = new (shm.get()) HelperControl{};
    const std::size_t payload = spec.payload;

    return run_forked(
        spec,
        [&](ChildSide& c) {  // the (first) consumer
          restore_affinity();
          auto on_timeout = [&] { c.peer().check_now(); };
          Checker check(payload, shape_.producers, shape_.mode == Mode::mpmc);
          if (shape_.mode == Mode::mpsc) {
            flatring::Reader<flatring::Mode::mpsc> r(flatring::Ring::open(ring_name));
            c.serve_batched([&](std::uint64_t, std::uint64_t max) {
              return receive_some(r, check, max, kSlice, on_timeout);
            });
          } else if (shape_.mode == Mode::broadcast) {
            flatring::Reader<flatring::Mode::broadcast> r(flatring::Ring::open(ring_name));
            c.serve_batched([&](std::uint64_t, std::uint64_t max) {
              return receive_some(r, check, max, kSlice, on_timeout);
            });
          } else {
            flatring::Reader<flatring::Mode::mpmc> r(flatring::Ring::open(ring_name));
            std::uint64_t seen = 0;
            c.serve_batched([&](std::uint64_t, std::uint64_t) {
              consume_mpmc(r, check, *hc, 0, kChildSlice, on_timeout);
              return progress(*hc, seen);
            });
          }
        },
        [&](ParentSide& p) {
          restore_affinity();
          Helpers helpers(*hc);
          const unsigned extra_producers = shape_.producers - 1;  // the parent is the last producer
          for (unsigned i = 0; i < extra_producers; ++i)
            helpers.spawn([&, i] { extra_producer(ring_name, payload, *hc, helpers, i); });
          for (unsigned i = 1; i < shape_.consumers; ++i)
            helpers.spawn([&, i] { extra_consumer(ring_name, payload, *hc, helpers, i); });
          auto check = [&] {
            p.peer().check_now();
            helpers.check();
          };
          helpers.wait_ready([&] { p.peer().check_now(); });
          if (shape_.mode == Mode::broadcast) {
            flatring::Writer<flatring::Mode::broadcast> w(flatring::Ring::open(ring_name));
            Sender<flatring::Writer<flatring::Mode::broadcast>> s(w, payload, 0);
            return drive(
                p, spec,
                [&](std::uint64_t n) {
                  for (std::uint64_t k = 0; k < n; ++k) s.send(check);
                },
                [](std::int64_t t_child) { return t_child; });
          }
          auto send_with = [&](auto& w) {
            Sender<std::remove_reference_t<decltype(w)>> s(w, payload, extra_producers);
            Ledger ledger(shape_.producers);
            std::uint64_t target = 0;
            const bool mpmc = shape_.mode == Mode::mpmc;
            return drive(
                p, spec,
                [&](std::uint64_t n) {
                  if (mpmc) {
                    // Relaxed: the stamp of the previous round was acquired (end below); these
                    // stores reach the consumers before this round's messages (ring release / quota
                    // release).
                    hc->end_ns.store(0, std::memory_order_relaxed);
                    hc->target.store(target += n, std::memory_order_relaxed);
                  }
                  const std::uint64_t share = n / shape_.producers;
                  for (unsigned i = 0; i < extra_producers; ++i) {
                    // Release: partner of the extra producer's acquire load of its quota.
                    hc->quota[i].fetch_add(share, std::memory_order_release);
                    ledger.sent(i, share);
                  }
                  if (extra_producers != 0) {
                    // Release: partner of the idle producers' acquire load of `go` before they
                    // sleep.
                    hc->go.fetch_add(1, std::memory_order_release);
                    flatring::wait::futex_wake(hc->go, INT_MAX);
                  }
                  const std::uint64_t own = n - share * extra_producers;
                  ledger.sent(extra_producers, own);
                  for (std::uint64_t k = 0; k < own; ++k) s.send(check);
                },
                [&](std::int64_t t_child) {
                  if (!mpmc) return t_child;
                  std::int64_t t_end;
                  // Acquire: partner of the stamping consumer's release; the round is done (the
                  // child saw `consumed` reach the target), only the stamp's store may still be on
                  // its way.
                  while ((t_end = hc->end_ns.load(std::memory_order_acquire)) == 0) {
                    check();
                    std::this_thread::sleep_for(20us);
                  }
                  ledger.verify(*hc, shape_.consumers);
                  return t_end;
                });
          };
          // The producers' endpoint type is the ring's mode (mpsc or mpmc).
          if (mode == flatring::Mode::mpsc) {
            flatring::Writer<flatring::Mode::mpsc> w(flatring::Ring::open(ring_name));
            return send_with(w);
          }
          flatring::Writer<flatring::Mode::mpmc> w(flatring::Ring::open(ring_name));
          return send_with(w);
        });
  }

  // The worker pool (mpmc rows only): requests over an mpmc ring, replies over an mpsc ring.
  LatencyResult run_latency(const CaseSpec& spec) override {
    if (shape_.mode != Mode::mpmc) throw SkipCase("throughput only");
    const std::string req_name = unique_name("req"), rep_name = unique_name("rep");
    flatring::RemoveGuard req_guard(req_name), rep_guard(rep_name);
    CleanupName req_cleanup(NameKind::file, flatring::Ring::path_of(req_name));
    CleanupName rep_cleanup(NameKind::file, flatring::Ring::path_of(rep_name));
    auto req_ring = create_ring(req_name, spec.payload, flatring::Mode::mpmc);
    auto rep_ring = create_ring(rep_name, spec.payload, flatring::Mode::mpsc);
    SharedMemory shm(sizeof(HelperControl));
    auto* hc = new (shm.get()) HelperControl{};
    const std::size_t payload = spec.payload;

    return run_forked(
        spec,
        [&](ChildSide& c) {  // the first worker
          restore_affinity();
          Worker w(req_name, rep_name, payload);
          auto on_timeout = [&] { c.peer().check_now(); };
          std::uint64_t seen = 0;
          c.serve_batched([&](std::uint64_t, std::uint64_t) {
            if (w.serve_one(kChildSlice, on_timeout)) count_consumed(*hc, 1);
            return progress(*hc, seen);
          });
        },
        [&](ParentSide& p) {  // the client
          restore_affinity();
          Helpers helpers(*hc);
          for (unsigned i = 1; i < shape_.consumers; ++i)
            helpers.spawn([&] {
              Worker w(req_name, rep_name, payload);
              hc->ready.fetch_add(1, std::memory_order_release);
              while (!helpers.stopped())
                if (w.serve_one(kSlice, [&] { helpers.throw_if_stopped(); }))
                  count_consumed(*hc, 1);
            });
          auto check = [&] {
            p.peer().check_now();
            helpers.check();
          };
          helpers.wait_ready([&] { p.peer().check_now(); });
          flatring::Writer<flatring::Mode::mpmc> req(flatring::Ring::open(req_name));
          flatring::Reader<flatring::Mode::mpsc> rep(flatring::Ring::open(rep_name));
          std::vector<std::byte> buf(payload);
          fill_pattern(buf.data(), buf.size());
          return drive_latency(p, spec, [&](std::uint64_t seq) {
            stamp(buf.data(), buf.size(), seq);
            write_record(req, buf, kSlice, check);
            for (;;) {
              auto r = rep.read(kSlice);
              if (r) [[likely]] {
                bench::check(r->bytes.data(), r->bytes.size(), payload, seq);
                rep.release();
                return;
              }
              if (r.status() != flatring::Status::timed_out) fail_status("read", r.status());
              check();
            }
          });
        });
  }

 private:
  // mpmc: how many messages all consumers (workers) received since the last call, the harness's
  // child's progress in the round (never more than the round has left: only the round's messages
  // exist).
  static std::uint64_t progress(HelperControl& hc, std::uint64_t& seen) noexcept {
    // Acquire: partner of every consumer's add (release): their tallies reach the parent through
    // the child's end-of-round handoff.
    const std::uint64_t total = hc.consumed.load(std::memory_order_acquire);
    const std::uint64_t k = total - seen;
    seen = total;
    return k;
  }

  // An extra producer: sends its quota, sleeping on `go` while it has none.
  void extra_producer(const std::string& ring_name, std::size_t payload, HelperControl& hc,
                      const Helpers& helpers, unsigned i) const {
    auto ring = flatring::Ring::open(ring_name);
    if (ring.info().mode == flatring::Mode::mpsc) {
      flatring::Writer<flatring::Mode::mpsc> w(ring);
      return extra_producer_loop(w, payload, hc, helpers, i);
    }
    flatring::Writer<flatring::Mode::mpmc> w(ring);
    extra_producer_loop(w, payload, hc, helpers, i);
  }

  template <class W>
  static void extra_producer_loop(W& w, std::size_t payload, HelperControl& hc,
                                  const Helpers& helpers, unsigned i) {
    Sender<W> s(w, payload, i);
    hc.ready.fetch_add(1, std::memory_order_release);
    std::uint64_t sent = 0;
    auto stopped = [&] { helpers.throw_if_stopped(); };
    for (;;) {
      // Acquire: partner of the parent's release add to `go`, after the quota it announces.
      const std::uint32_t go = hc.go.load(std::memory_order_acquire);
      if (helpers.stopped()) return;
      if (sent < hc.quota[i].load(std::memory_order_acquire)) {
        s.send(stopped);
        ++sent;
        continue;
      }
      (void)flatring::wait::futex_wait(hc.go, go, kSlice);
    }
  }

  // An extra consumer: broadcast checks everything, mpmc takes its share.
  void extra_consumer(const std::string& ring_name, std::size_t payload, HelperControl& hc,
                      const Helpers& helpers, unsigned i) const {
    auto stopped = [&] { helpers.throw_if_stopped(); };
    if (shape_.mode == Mode::broadcast) {
      flatring::Reader<flatring::Mode::broadcast> r(flatring::Ring::open(ring_name));
      hc.ready.fetch_add(1, std::memory_order_release);
      Checker check(payload, 1, false);
      while (!helpers.stopped()) (void)receive_some(r, check, 64, kSlice, stopped);
      return;
    }
    flatring::Reader<flatring::Mode::mpmc> r(flatring::Ring::open(ring_name));
    hc.ready.fetch_add(1, std::memory_order_release);
    Checker check(payload, shape_.producers, true);
    while (!helpers.stopped()) consume_mpmc(r, check, hc, i, kSlice, stopped);
  }

  // Warm-up and calibration rounds, then one timed round. round(n) sends n messages on this side;
  // end(t_child) turns the child's end stamp into the round's end time (and checks the round).
  template <class Round, class End>
  static ThroughputResult drive(ParentSide& p, const CaseSpec& spec, Round&& round, End&& end) {
    auto run = [&](std::uint64_t n) {
      const std::int64_t t0 = now_ns();
      const std::int64_t t1 = end(p.round(n, [&] { round(n); }));
      return std::max(double(t1 - t0) * 1e-9, 1e-7);
    };
    const double rate = calibrate(spec, initial_round(spec.payload), 1u << 30, run);
    const std::uint64_t timed =
        std::clamp<std::uint64_t>(std::uint64_t(rate * spec.budget_s), 8, 4'000'000'000ull);
    return {timed, run(timed)};
  }

  std::string name_;
  Shape shape_;
};

}  // namespace

void add_flatring_mp_transports(TransportList& out) {
  out.push_back(std::make_unique<MpTransport>("flatring-mpsc", Shape{Mode::mpsc, 2, 1}));
  out.push_back(std::make_unique<MpTransport>("flatring-broadcast", Shape{Mode::broadcast, 1, 2}));
  out.push_back(std::make_unique<MpTransport>("flatring-mpmc", Shape{Mode::mpmc, 2, 2}));
  // One producer and one consumer: what each mode's protocol costs by itself, beside spsc's
  // `flatring` row, with no process oversubscribing the 2 CPUs.
  out.push_back(std::make_unique<MpTransport>("flatring-mpsc-1p", Shape{Mode::mpsc, 1, 1}));
  out.push_back(std::make_unique<MpTransport>("flatring-mpmc-1p1c", Shape{Mode::mpmc, 1, 1}));
  out.push_back(
      std::make_unique<MpTransport>("flatring-broadcast-1c", Shape{Mode::broadcast, 1, 1}));
  out.push_back(std::make_unique<MpTransport>("flatring-mpsc-4p", Shape{Mode::mpsc, 4, 1}));
  out.push_back(std::make_unique<MpTransport>("flatring-mpmc-4p4c", Shape{Mode::mpmc, 4, 4}));
}

}  // namespace bench
