// fork(): a child must not use its parent's peer slots as its own. Every endpoint remembers the
// fork generation it attached in; a forked child sees a newer generation, leaves the inherited
// C++ endpoint alone (never used, never destroyed: destroying it would free the parent's slot)
// and attaches afresh, as itself.
#pragma once

#include <atomic>
#include <cstdint>

namespace flatring::python {

namespace detail {
inline std::atomic<std::uint64_t> fork_generation{0};
}

/// Incremented in the child after every fork() (pthread_atfork), so 0 in a process that was never
/// forked. A relaxed load: the child's handler runs before any other code in the child.
inline std::uint64_t fork_generation() noexcept {
  return detail::fork_generation.load(std::memory_order_relaxed);
}

/// Installs the pthread_atfork child handler. Once, at import.
void install_fork_handler();

}  // namespace flatring::python
