// Is a process alive? pid plus its start time, so a recycled pid never passes for the old process.
#pragma once

#include <cstdint>
#include <sys/types.h>

namespace flatring {

/// The identity of a process: its pid and its start time in clock ticks since boot
/// (/proc/<pid>/stat field 22). Two processes never share both.
struct ProcessToken {
  std::uint32_t pid = 0;
  std::uint64_t start_time = 0;
};

/// This process's token (cached after the first call; re-read after fork()).
[[nodiscard]] ProcessToken self_process() noexcept;

/// Start time of `pid`, or 0 if there is no such process (or /proc is unreadable).
[[nodiscard]] std::uint64_t process_start_time(std::uint32_t pid) noexcept;

/// True when `token` names a process that is still running. Values usually come from shared
/// memory (untrusted): only kill(pid, 0) and a /proc read are done with them, never a real signal.
/// A zombie counts as dead: it can no longer touch the segment.
[[nodiscard]] bool is_alive(const ProcessToken& token) noexcept;

}  // namespace flatring
