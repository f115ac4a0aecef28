// Reference rows, the ceilings the transports are measured against:
//   memcpy              single-thread copy bandwidth at each size (throughput pattern, mb_per_s),
//                       pinned to the producer CPU, source and destination touched beforehand.
//   cacheline-pingpong  round trip of one cache line between the two processes: one atomic in an
//                       anonymous MAP_SHARED mapping, the parent stores 2k+1 and spins until the
//                       child, which spins on it, stores 2k+2; both check the value they get
//                       (latency pattern, 64 B only).
#include "transport.hpp"

#include <sched.h>

#include <atomic>
#include <new>
#include <vector>

namespace bench {
namespace {

class MemcpyReference final : public Transport {
 public:
  const std::string& name() const override { return name_; }
  bool reference() const override { return true; }

  std::optional<std::string> unsupported(std::size_t, Pattern p) const override {
    if (p != Pattern::throughput) return "reference row: throughput only";
    return std::nullopt;
  }

  ThroughputResult run_throughput(const CaseSpec& spec) override {
    cpu_set_t saved;
    CPU_ZERO(&saved);
    sched_getaffinity(0, sizeof saved, &saved);
    if (spec.producer_cpu >= 0) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(spec.producer_cpu, &one);
      sched_setaffinity(0, sizeof one, &one);
    }
    std::vector<std::byte> src(spec.payload), dst(spec.payload);
    fill_pattern(src.data(), src.size());
    fill_pattern(dst.data(), dst.size());
    const std::size_t len = spec.payload;
    auto copies = [&](std::uint64_t n) {
      const auto t0 = std::chrono::steady_clock::now();
      for (std::uint64_t i = 0; i < n; ++i) {
        std::memcpy(dst.data(), src.data(), len);
        clobber_memory();
      }
      return std::max(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                      1e-7);
    };
    const double rate = calibrate(spec, initial_round(len), 1ull << 34, copies);
    const std::uint64_t timed =
        std::clamp<std::uint64_t>(std::uint64_t(rate * spec.budget_s), 8, 1ull << 36);
    const double s = copies(timed);
    sched_setaffinity(0, sizeof saved, &saved);
    return {timed, s};
  }

  LatencyResult run_latency(const CaseSpec&) override {
    throw BenchError("memcpy: no latency pattern");
  }

 private:
  std::string name_ = "memcpy";
};

class CachelinePingpong final : public Transport {
 public:
  const std::string& name() const override { return name_; }
  bool reference() const override { return true; }

  std::optional<std::string> unsupported(std::size_t payload, Pattern p) const override {
    if (p != Pattern::latency) return "reference row: latency only";
    if (payload != 64) return "reference row: one cache line, measured at 64 B only";
    return std::nullopt;
  }

  ThroughputResult run_throughput(const CaseSpec&) override {
    throw BenchError("cacheline-pingpong: no throughput pattern");
  }

  LatencyResult run_latency(const CaseSpec& spec) override {
    SharedMemory mem(4096);
    auto* line = new (mem.get()) std::atomic<std::uint64_t>(0);
    return run_forked(
        spec,
        [&](ChildSide& c) {
          Peer& peer = c.peer();
          c.serve([&](std::uint64_t seq) {
            // Wait for the line to change, then check it carries this round trip's value.
            std::uint64_t v;
            while ((v = line->load(std::memory_order_acquire)) == 2 * seq) {
              cpu_relax();
              peer.spin_check();
            }
            if (v != 2 * seq + 1) fail_message(seq, v, 0, 8, 8);
            line->store(v + 1, std::memory_order_release);
          });
        },
        [&](ParentSide& p) {
          Peer& peer = p.peer();
          return drive_latency(p, spec, [&](std::uint64_t seq) {
            const std::uint64_t ping = 2 * seq + 1 + (seq == g_fault_seq ? 2 : 0);
            line->store(ping, std::memory_order_release);
            std::uint64_t v;
            while ((v = line->load(std::memory_order_acquire)) == ping) {
              cpu_relax();
              peer.spin_check();
            }
            if (v != 2 * seq + 2) fail_message(seq, v, 0, 8, 8);
          });
        });
  }

 private:
  std::string name_ = "cacheline-pingpong";
};

}  // namespace

void add_reference_transports(TransportList& out) {
  out.push_back(std::make_unique<MemcpyReference>());
  out.push_back(std::make_unique<CachelinePingpong>());
}

}  // namespace bench
