// Waiting on a 32-bit word in shared memory with futex(2). Shared (not FUTEX_PRIVATE): the word is
// in a MAP_SHARED mapping and the waker is another process.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace flatring::wait {

enum class WaitResult { woken, timed_out, value_changed, interrupted };

/// Sleeps while `*word == expected`, at most `timeout`. Spurious returns are possible: callers
/// re-check their condition.
WaitResult futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected,
                      std::chrono::nanoseconds timeout) noexcept;

/// Wakes up to `count` sleepers on `word`. Returns how many were woken.
int futex_wake(std::atomic<std::uint32_t>& word, int count) noexcept;

/// One spin-loop pause (x86 `pause`), polite to the sibling hyperthread.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

}  // namespace flatring::wait
