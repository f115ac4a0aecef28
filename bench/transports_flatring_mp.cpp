// The multi-party flatring rows (throughput only):
//   flatring-mpsc          2 producer processes (MpscWriter::write) -> 1 consumer (MpscReader)
//   flatring-broadcast     1 producer (BroadcastWriter::write) -> 2 consumer processes, each
//                          receiving and checking every message
//   flatring-mpsc-4p       4 producers -> 1 consumer: 5 processes on the reference VM's 2 cores,
//                          the oversubscribed case
// Every process uses the blocking calls (spin 50 µs, then futex): with more processes than cores a
// busy-polling process can spin away the time slice of the one it waits for. No process is pinned
// (the scheduler spreads them). The extra producers / consumers are forked by the harness's
// parent; the harness's child is the (first) consumer. A message carries (per-producer seq << 8 |
// producer) in its first 8 bytes and the complement in its last 8; each consumer checks per-
// producer order and every length. msgs/s counts messages produced (for broadcast, each message is
// delivered to both consumers).
#include "transport.hpp"

#include <flatring/flatring.hpp>

#include <fmt/format.h>

#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bit>
#include <functional>
#include <optional>
#include <thread>
#include <vector>

namespace bench {
namespace {

using namespace std::chrono_literals;
constexpr auto kSlice = 100ms;  // a blocking call returns after this to check the other processes

enum class Mode { mpsc, broadcast };

struct Shape {
  Mode mode;
  unsigned producers;
  unsigned consumers;
};

[[noreturn]] void fail_status(const char* what, flatring::Status s) {
  throw BenchError(fmt::format("flatring: {}: {}", what, flatring::to_string(s)));
}

void unpin() noexcept {
  cpu_set_t all;
  CPU_ZERO(&all);
  for (int c = 0; c < CPU_SETSIZE; ++c) CPU_SET(c, &all);
  sched_setaffinity(0, sizeof all, &all);
}

// Words shared with the extra processes (forked by the harness's parent).
struct HelperControl {
  alignas(64) std::atomic<std::uint64_t> quota[8];  // messages each extra producer must have sent
  alignas(64) std::atomic<std::uint32_t> ready{0};  // extra processes attached
  std::atomic<std::uint32_t> stop{0};
  std::atomic<std::uint32_t> failed{0};
  char message[512]{};
};

// Per-producer order checker for one consumer.
class Checker {
 public:
  Checker(std::size_t payload, unsigned producers) : payload_(payload), next_(producers, 0) {}
  void operator()(std::span<const std::byte> b) {
    std::uint64_t head = 0, tail = 0;
    if (b.size() == payload_) {
      std::memcpy(&head, b.data(), 8);
      std::memcpy(&tail, b.data() + b.size() - 8, 8);
      const std::uint64_t p = head & 0xFF;
      if (tail == ~head && p < next_.size() && head >> 8 == next_[p]) [[likely]] {
        ++next_[p];
        return;
      }
      const std::uint64_t want = p < next_.size() ? (next_[p] << 8 | p) : head;
      fail_message(want, head, tail, payload_, b.size());
    }
    fail_message(0, head, tail, payload_, b.size());
  }

 private:
  std::size_t payload_;
  std::vector<std::uint64_t> next_;
};

// Sends messages of producer `id`, continuing its sequence.
template <class W>
class Sender {
 public:
  Sender(W& w, std::size_t payload, unsigned id) : w_(&w), buf_(payload), id_(id) { fill_pattern(buf_.data(), buf_.size()); }
  void send(const std::function<void()>& check) {
    const std::uint64_t head = seq_++ << 8 | id_;
    std::memcpy(buf_.data(), &head, 8);
    const std::uint64_t tail = ~head;
    std::memcpy(buf_.data() + buf_.size() - 8, &tail, 8);
    for (;;) {
      const flatring::Status s = w_->write(buf_, kSlice);
      if (s == flatring::Status::ok) [[likely]]
        return;
      if (s != flatring::Status::timed_out) fail_status("write", s);
      check();
    }
  }

 private:
  W* w_;
  std::vector<std::byte> buf_;
  unsigned id_;
  std::uint64_t seq_ = 0;
};

// Receives between 1 and `max` messages (0 after a timed-out wait), checking each.
template <class R>
std::uint64_t receive_some(R& r, Checker& check, std::uint64_t max, const std::function<void()>& on_timeout) {
  auto first = r.read(kSlice);
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

class MpTransport final : public Transport {
 public:
  MpTransport(std::string name, Shape shape) : name_(std::move(name)), shape_(shape) {}
  const std::string& name() const override { return name_; }
  std::optional<std::string> unsupported(std::size_t payload, Pattern p) const override {
    if (p != Pattern::throughput) return "throughput only (one producer side, one consumer side)";
    if (payload > (1u << 20)) return "up to 1 MiB records";
    return std::nullopt;
  }
  LatencyResult run_latency(const CaseSpec&) override { throw SkipCase("throughput only"); }

  ThroughputResult run_throughput(const CaseSpec& spec) override {
    const std::string ring_name = unique_name("mp");
    flatring::RemoveGuard guard(ring_name);
    CleanupName cleanup(NameKind::file, flatring::Ring::path_of(ring_name));
    flatring::RingOptions o;
    o.max_record_size = spec.payload;
    o.capacity = std::max<std::uint64_t>(std::bit_ceil(2 * flatring::layout::frame_size(spec.payload) + 16), 4u << 20);
    o.mode = shape_.mode == Mode::mpsc ? flatring::Mode::mpsc : flatring::Mode::broadcast;
    flatring::Ring::remove(ring_name);
    auto ring = flatring::Ring::create(ring_name, o);
    SharedMemory shm(sizeof(HelperControl));
    auto* hc = new (shm.get()) HelperControl{};
    const std::size_t payload = spec.payload;

    return run_forked(
        spec,
        [&](ChildSide& c) {  // the (first) consumer
          unpin();
          auto on_timeout = [&] { c.peer().check_now(); };
          Checker check(payload, shape_.producers);
          if (shape_.mode == Mode::mpsc) {
            flatring::MpscReader r(flatring::Ring::open(ring_name));
            c.serve_batched([&](std::uint64_t, std::uint64_t max) { return receive_some(r, check, max, on_timeout); });
          } else {
            flatring::BroadcastReader r(flatring::Ring::open(ring_name));
            c.serve_batched([&](std::uint64_t, std::uint64_t max) { return receive_some(r, check, max, on_timeout); });
          }
        },
        [&](ParentSide& p) {
          unpin();
          Helpers helpers(*hc);
          const unsigned extra = shape_.mode == Mode::mpsc ? shape_.producers - 1 : shape_.consumers - 1;
          for (unsigned i = 0; i < extra; ++i) helpers.spawn([&, i] { helper(ring_name, payload, *hc, i); });
          auto check = [&] {
            p.peer().check_now();
            helpers.check();
          };
          while (hc->ready.load(std::memory_order_acquire) < extra) {
            check();
            std::this_thread::sleep_for(1ms);
          }
          if (shape_.mode == Mode::mpsc) {
            flatring::MpscWriter w(flatring::Ring::open(ring_name));
            Sender<flatring::MpscWriter> s(w, payload, extra);  // the parent is the last producer
            return drive(p, spec, [&](std::uint64_t n) {
              const std::uint64_t share = n / shape_.producers;
              for (unsigned i = 0; i < extra; ++i) hc->quota[i].fetch_add(share, std::memory_order_release);
              for (std::uint64_t k = 0; k < n - share * extra; ++k) s.send(check);
            });
          }
          flatring::BroadcastWriter w(flatring::Ring::open(ring_name));
          Sender<flatring::BroadcastWriter> s(w, payload, 0);
          return drive(p, spec, [&](std::uint64_t n) {
            for (std::uint64_t k = 0; k < n; ++k) s.send(check);
          });
        });
  }

 private:
  // The extra processes, stopped (or killed) when the case ends.
  class Helpers {
   public:
    explicit Helpers(HelperControl& hc) : hc_(&hc) {}
    ~Helpers() {
      hc_->stop.store(1, std::memory_order_release);
      for (pid_t pid : pids_) {
        int status = 0;
        // A helper blocked on a full ring (its consumer gone) is killed rather than waited for.
        for (int i = 0; i < 100 && ::waitpid(pid, &status, WNOHANG) == 0; ++i) std::this_thread::sleep_for(10ms);
        if (::kill(pid, 0) == 0) {
          ::kill(pid, SIGKILL);
          ::waitpid(pid, &status, 0);
        }
      }
    }
    template <class F>
    void spawn(F&& body) {
      std::fflush(nullptr);
      const pid_t pid = ::fork();
      if (pid < 0) fail_errno("fork");
      if (pid == 0) {
        try {
          body();
        } catch (const std::exception& e) {
          if (hc_->stop.load(std::memory_order_acquire) != 0) _exit(0);  // interrupted by the end
          std::snprintf(hc_->message, sizeof hc_->message, "%s", e.what());
          hc_->failed.store(1, std::memory_order_release);
          _exit(1);
        }
        _exit(0);
      }
      pids_.push_back(pid);
    }
    void check() const {
      if (hc_->failed.load(std::memory_order_acquire) != 0) throw BenchError(std::string("helper: ") + hc_->message);
    }

   private:
    HelperControl* hc_;
    std::vector<pid_t> pids_;
  };

  // An extra producer (mpsc: sends its quota) or an extra consumer (broadcast: checks everything).
  void helper(const std::string& ring_name, std::size_t payload, HelperControl& hc, unsigned i) const {
    auto stopped = [&] { return hc.stop.load(std::memory_order_acquire) != 0; };
    auto check = [&] {
      if (stopped()) throw BenchError("stopped");
    };
    if (shape_.mode == Mode::mpsc) {
      flatring::MpscWriter w(flatring::Ring::open(ring_name));
      Sender<flatring::MpscWriter> s(w, payload, i);
      hc.ready.fetch_add(1, std::memory_order_release);
      std::uint64_t sent = 0;
      while (!stopped()) {
        if (sent == hc.quota[i].load(std::memory_order_acquire)) {
          cpu_relax();
          continue;
        }
        s.send(check);
        ++sent;
      }
      return;
    }
    flatring::BroadcastReader r(flatring::Ring::open(ring_name));
    hc.ready.fetch_add(1, std::memory_order_release);
    Checker checker(payload, 1);
    while (!stopped()) (void)receive_some(r, checker, 64, [] {});
  }

  template <class Round>
  static ThroughputResult drive(ParentSide& p, const CaseSpec& spec, Round&& round) {
    auto run = [&](std::uint64_t n) {
      const std::int64_t t0 = now_ns();
      const std::int64_t t1 = p.round(n, [&] { round(n); });
      return std::max(double(t1 - t0) * 1e-9, 1e-7);
    };
    const double rate = calibrate(spec, initial_round(spec.payload), 1u << 30, run);
    const std::uint64_t timed = std::clamp<std::uint64_t>(std::uint64_t(rate * spec.budget_s), 8, 4'000'000'000ull);
    return {timed, run(timed)};
  }

  std::string name_;
  Shape shape_;
};

}  // namespace

void add_flatring_mp_transports(TransportList& out) {
  out.push_back(std::make_unique<MpTransport>("flatring-mpsc", Shape{Mode::mpsc, 2, 1}));
  out.push_back(std::make_unique<MpTransport>("flatring-broadcast", Shape{Mode::broadcast, 1, 2}));
  out.push_back(std::make_unique<MpTransport>("flatring-mpsc-4p", Shape{Mode::mpsc, 4, 1}));
}

}  // namespace bench
