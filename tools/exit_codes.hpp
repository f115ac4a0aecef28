// The flatring tool's exit codes and the one error type its commands throw.
//
// Each failure class has its own code so scripts can tell "no such ring" from "bad input" without
// parsing messages. docs/cli.md lists them; keep the two in step.
#pragma once

#include <stdexcept>
#include <string>

#include <flatring/status.hpp>

namespace flatring::tool {

enum class Exit : int {
  ok = 0,
  failure = 1,    ///< anything not listed below (an OS error, an unexpected exception)
  usage = 2,      ///< bad command line
  not_found = 3,  ///< no ring with that name
  bad_ring = 4,   ///< the ring cannot be used: not flatring, corrupt, unsafe, wrong mode
  schema =
      5,  ///< the schema file does not load, is not the ring's or not compatible with it; no schema
  bad_input = 6,  ///< JSON that is malformed, does not fit the schema, or is too large
  busy = 7,       ///< live peers (rm) or the role is held by a live process (send, tail --consume)
  not_delivered = 8,  ///< send: the ring stayed full (timed out, no consumer, consumer died)
  unsupported = 9,    ///< the ring's mode has no implementation in this build
  refused = 10,       ///< bridge: the peer refused our key or the security handshake
};

/// A failure with its exit code. The message is one line and names what is wrong.
class ToolError : public std::runtime_error {
 public:
  ToolError(Exit code, const std::string& message) : std::runtime_error(message), code_(code) {}
  [[nodiscard]] Exit code() const noexcept { return code_; }

 private:
  Exit code_;
};

/// The exit code for a set-up error from the library.
[[nodiscard]] Exit exit_for(Errc e) noexcept;

}  // namespace flatring::tool
