#include "flatring/wait.hpp"

#include <cerrno>
#include <climits>
#include <ctime>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace flatring::wait {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t),
              "futex(2) operates on a plain 32-bit word");

WaitResult futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected,
                      std::chrono::nanoseconds timeout) noexcept {
  if (timeout.count() <= 0) return WaitResult::timed_out;
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(timeout.count() / 1'000'000'000);
  ts.tv_nsec = static_cast<long>(timeout.count() % 1'000'000'000);
  // FUTEX_WAIT's timeout is relative (CLOCK_MONOTONIC).
  long rc = ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT, expected, &ts,
                      nullptr, 0);
  if (rc == 0) return WaitResult::woken;
  switch (errno) {
    case ETIMEDOUT: return WaitResult::timed_out;
    case EAGAIN: return WaitResult::value_changed;
    default: return WaitResult::interrupted;
  }
}

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif

namespace {
// The kernel's struct futex_waitv (include/uapi/linux/futex.h, 5.16), spelled out so that older
// headers build; its layout is the kernel ABI.
struct KernelWaitv {
  std::uint64_t val;
  std::uint64_t uaddr;
  std::uint32_t flags;
  std::uint32_t reserved;
};
static_assert(sizeof(KernelWaitv) == 24, "struct futex_waitv is 24 bytes");
constexpr std::uint32_t kFutex2SizeU32 = 0x02;  // FUTEX2_SIZE_U32; no FUTEX2_PRIVATE: shared words
}  // namespace

WaitResult futex_waitv(std::span<const WaitWord> words, std::chrono::nanoseconds timeout) noexcept {
  if (timeout.count() <= 0) return WaitResult::timed_out;
  if (words.empty() || words.size() > kMaxWaitWords) return WaitResult::unsupported;
  KernelWaitv v[kMaxWaitWords];
  for (std::size_t i = 0; i < words.size(); ++i) {
    v[i] = KernelWaitv{words[i].expected, reinterpret_cast<std::uintptr_t>(words[i].word),
                       kFutex2SizeU32, 0};
  }
  // futex_waitv's timeout is absolute, on the clock named by the last argument.
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  const std::int64_t ns = now.tv_nsec + timeout.count() % 1'000'000'000;
  timespec at{};
  at.tv_sec =
      static_cast<time_t>(now.tv_sec + timeout.count() / 1'000'000'000 + ns / 1'000'000'000);
  at.tv_nsec = static_cast<long>(ns % 1'000'000'000);
  long rc =
      ::syscall(SYS_futex_waitv, v, static_cast<unsigned>(words.size()), 0u, &at, CLOCK_MONOTONIC);
  if (rc >= 0) return WaitResult::woken;
  switch (errno) {
    case ETIMEDOUT: return WaitResult::timed_out;
    case EAGAIN: return WaitResult::value_changed;
    case ENOSYS: return WaitResult::unsupported;
    default: return WaitResult::interrupted;
  }
}

int futex_wake(std::atomic<std::uint32_t>& word, int count) noexcept {
  long rc = ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE, count,
                      nullptr, nullptr, 0);
  return rc < 0 ? 0 : static_cast<int>(rc);
}

namespace {
std::atomic<pid_t> registered_pid{0};
std::atomic<int> membarrier_state{0};  // 0 unknown, 1 available, -1 unavailable

long membarrier(int cmd) noexcept { return ::syscall(SYS_membarrier, cmd, 0u, 0); }
}  // namespace

bool register_waker() noexcept {
  const pid_t self = ::getpid();
  if (registered_pid.load(std::memory_order_acquire) == self) return true;
  if (membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) != 0) return false;
  registered_pid.store(self, std::memory_order_release);
  return true;
}

bool sleeper_fence() noexcept {
  if (membarrier_state.load(std::memory_order_relaxed) >= 0) {
    if (membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0) {
      membarrier_state.store(1, std::memory_order_relaxed);
      return true;
    }
    // Only a definite "no" is remembered; anything else is tried again next time.
    if (errno == ENOSYS || errno == EINVAL || errno == EPERM) {
      membarrier_state.store(-1, std::memory_order_relaxed);
    }
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return false;
}

}  // namespace flatring::wait
