// How a ring is shared: the four modes, their names, and one dispatch from a runtime mode to the
// endpoint types of that mode.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>

namespace flatring {

/// How a ring is shared. Recorded in the header at create; an endpoint of another mode is refused
/// (Errc::wrong_mode). The values are part of the segment layout.
enum class Mode : std::uint32_t {
  spsc = 1,       ///< one producer, one consumer (the default)
  mpsc = 2,       ///< many producers, one consumer
  mpmc = 3,       ///< many producers, many consumers, each record to exactly one consumer
  broadcast = 4,  ///< one producer, many consumers, every consumer sees every record
};

inline constexpr std::array<Mode, 4> kModes{Mode::spsc, Mode::mpsc, Mode::mpmc, Mode::broadcast};

/// "spsc", "mpsc", "mpmc", "broadcast"; "unknown" for a value that is none of them (a mode read
/// from a segment is untrusted).
[[nodiscard]] constexpr std::string_view to_string(Mode m) noexcept {
  switch (m) {
    case Mode::spsc: return "spsc";
    case Mode::mpsc: return "mpsc";
    case Mode::mpmc: return "mpmc";
    case Mode::broadcast: return "broadcast";
  }
  return "unknown";
}

/// The mode named `s` (as to_string writes it), or nothing.
[[nodiscard]] constexpr std::optional<Mode> parse_mode(std::string_view s) noexcept {
  for (Mode m : kModes) {
    if (to_string(m) == s) return m;
  }
  return std::nullopt;
}

/// True when the mode admits one producer at a time (a second live one is Errc::role_taken).
[[nodiscard]] constexpr bool exclusive_producer(Mode m) noexcept {
  return m == Mode::spsc || m == Mode::broadcast;
}
/// True when the mode admits one consumer at a time (a second live one is Errc::role_taken).
[[nodiscard]] constexpr bool exclusive_consumer(Mode m) noexcept {
  return m == Mode::spsc || m == Mode::mpsc;
}

/// Calls `f(std::integral_constant<Mode, M>{})` for the runtime mode `m`, so that code written
/// once over `Writer<M>` / `Reader<M>` runs for a ring of any mode:
///   visit_mode(ring.info().mode, [&](auto mode) { Reader<mode()> r(ring); ... });
/// \pre `m` is one of kModes (a Ring's info().mode always is: open checks it).
template <class F>
decltype(auto) visit_mode(Mode m, F&& f) {
  switch (m) {
    case Mode::mpsc: return std::forward<F>(f)(std::integral_constant<Mode, Mode::mpsc>{});
    case Mode::mpmc: return std::forward<F>(f)(std::integral_constant<Mode, Mode::mpmc>{});
    case Mode::broadcast:
      return std::forward<F>(f)(std::integral_constant<Mode, Mode::broadcast>{});
    case Mode::spsc: break;
  }
  return std::forward<F>(f)(std::integral_constant<Mode, Mode::spsc>{});
}

}  // namespace flatring
