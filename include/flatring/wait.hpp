// Waiting on a 32-bit word in shared memory with futex(2). Shared (not FUTEX_PRIVATE): the word is
// in a MAP_SHARED mapping and the waker is another process.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>

namespace flatring::wait {

/// unsupported: the kernel lacks the call (futex_waitv before Linux 5.16).
enum class WaitResult { woken, timed_out, value_changed, interrupted, unsupported };

/// Sleeps while `*word == expected`, at most `timeout`. Spurious returns are possible: callers
/// re-check their condition.
WaitResult futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected,
                      std::chrono::nanoseconds timeout) noexcept;

/// One word of a futex_waitv: sleep while `*word == expected`.
struct WaitWord {
  std::atomic<std::uint32_t>* word;
  std::uint32_t expected;
};
/// futex_waitv(2) takes at most this many words (FUTEX_WAITV_MAX).
inline constexpr std::size_t kMaxWaitWords = 128;

/// Sleeps while every word holds its expected value, at most `timeout`: one futex_waitv(2) call
/// over shared (not FUTEX_PRIVATE) 32-bit words, with an absolute CLOCK_MONOTONIC deadline. A
/// FUTEX_WAKE on any of the words ends it. unsupported (ENOSYS) on kernels before 5.16, and for
/// more than kMaxWaitWords words: the caller falls back. \pre !words.empty()
WaitResult futex_waitv(std::span<const WaitWord> words, std::chrono::nanoseconds timeout) noexcept;

/// Wakes up to `count` sleepers on `word`. Returns how many were woken.
int futex_wake(std::atomic<std::uint32_t>& word, int count) noexcept;

// ---- Asymmetric fences for the sleep handshake ----
// A waker publishes progress and then checks `waiters`; a sleeper registers in `waiters` and then
// re-checks the progress. Either side needs a store-load fence between its two steps, or both may
// miss each other. Wakers run on every commit, sleepers only before a futex sleep, so the cost is
// moved to the sleeper: wakers use a compiler-only fence, sleepers membarrier(2)
// MEMBARRIER_CMD_GLOBAL_EXPEDITED, which runs a full barrier on every CPU currently executing a
// registered process. That pairing is as strong as seq_cst fences on both sides (the userspace-RCU
// and folly asymmetric-barrier argument). Processes that cannot register fall back to real fences.

/// Registers this process for expedited global membarrier (once per process; re-done after
/// fork). Returns true when wakers in this process may use the light fence.
bool register_waker() noexcept;

/// The waker's fence: compiler-only when `registered`, else a full fence.
inline void waker_fence(bool registered) noexcept {
  if (registered) std::atomic_signal_fence(std::memory_order_seq_cst);
  else std::atomic_thread_fence(std::memory_order_seq_cst);
}

/// The sleeper's fence. Returns false when membarrier is unavailable; then it has issued a full
/// fence only, which does not cover registered wakers, and the caller must bound its sleep.
bool sleeper_fence() noexcept;

/// One spin-loop pause (x86 `pause`), polite to the sibling hyperthread.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

}  // namespace flatring::wait
