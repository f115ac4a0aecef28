// Shared vocabulary of flatring-bench: patterns, case parameters, results, the message layout
// every transport uses, and the error types that make a run fail loudly.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace bench {

enum class Pattern { throughput, latency };

std::string_view to_string(Pattern p) noexcept;
std::optional<Pattern> parse_pattern(std::string_view s) noexcept;

// Smallest payload the harness accepts: the sequence number is stored in the first and the last
// eight bytes of every message.
inline constexpr std::size_t min_payload = 16;

// Parameters of one case (transport x pattern x payload size).
struct CaseSpec {
  std::size_t payload = 64;
  Pattern pattern = Pattern::throughput;
  double budget_s = 0.3;     // wall time aimed at for the timed round
  double warmup_s = 0.05;    // minimum untimed warm-up before it
  double watchdog_s = 60.0;  // a case that takes longer than this is killed, the run fails
  int producer_cpu = -1;     // -1: not pinned
  int consumer_cpu = -1;
};

struct ThroughputResult {
  std::uint64_t messages = 0;
  double seconds = 0;
};

struct LatencyResult {
  std::uint64_t round_trips = 0;
  std::uint64_t p50_ns = 0;
  std::uint64_t p99_ns = 0;
  std::uint64_t p999_ns = 0;
};

// One row of the report (a measured or skipped case).
struct CaseResult {
  std::string transport;
  Pattern pattern = Pattern::throughput;
  std::size_t payload = 0;
  std::optional<std::string> skipped;  // reason, when the case did not run
  ThroughputResult tp{};
  LatencyResult lat{};

  double msgs_per_s() const noexcept {
    return tp.seconds > 0 ? double(tp.messages) / tp.seconds : 0;
  }
  double mb_per_s() const noexcept {
    return tp.seconds > 0 ? double(tp.messages) * double(payload) / tp.seconds / 1e6 : 0;
  }
};

// A message failed its check, a peer died, a call failed: the run must fail (non-zero exit).
struct BenchError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The case cannot run here (e.g. a kernel limit); reported and skipped, the run goes on.
struct SkipCase : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void fail_errno(std::string_view what);  // throws BenchError with strerror(errno)
[[noreturn]] void fail_message(std::uint64_t expected_seq, std::uint64_t got_head,
                               std::uint64_t got_tail, std::size_t expected_len,
                               std::size_t got_len);

// ---- message layout: payload[0..8) = seq, payload[len-8..len) = ~seq, the rest a fill pattern.

// Self-test of the checks (hidden --inject-fault SEQ): the message with this sequence number is
// sent with a wrong one, and the run must fail. ~0 (never) unless asked for.
extern std::uint64_t g_fault_seq;

inline void stamp(std::byte* msg, std::size_t len, std::uint64_t seq) noexcept {
  if (seq == g_fault_seq) [[unlikely]]
    seq ^= 0x5A;
  const std::uint64_t tail = ~seq;
  std::memcpy(msg, &seq, sizeof seq);
  std::memcpy(msg + len - sizeof tail, &tail, sizeof tail);
}

void fill_pattern(std::byte* msg, std::size_t len) noexcept;

// Checks length, head and tail of a received message; throws BenchError on any mismatch.
inline void check(const std::byte* msg, std::size_t len, std::size_t expected_len,
                  std::uint64_t seq) {
  std::uint64_t head = 0, tail = 0;
  if (len == expected_len && len >= min_payload) {
    std::memcpy(&head, msg, sizeof head);
    std::memcpy(&tail, msg + len - sizeof tail, sizeof tail);
    if (head == seq && tail == ~seq) [[likely]]
      return;
  }
  fail_message(seq, head, tail, expected_len, len);
}

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

inline std::int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Keeps the compiler from dropping a computation whose result is otherwise unused.
template <class T>
inline void do_not_optimize(T const& v) noexcept {
  asm volatile("" : : "r,m"(v) : "memory");
}
inline void clobber_memory() noexcept { asm volatile("" : : : "memory"); }

std::string format_size(std::size_t bytes);                 // "64 B", "1 KiB", "16 MiB"
std::optional<std::size_t> parse_size(std::string_view s);  // "64", "1KiB", "64K", "1M", "16MiB"

}  // namespace bench
