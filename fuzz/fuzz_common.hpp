// Shared by the libFuzzer targets: a byte reader over the input and a per-process scratch ring.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <unistd.h>

#include <flatring/flatring.hpp>

namespace fuzz {

/// Reads fixed-size values off the front of the input; once it runs out, every take is zero, so
/// any input (including the empty one) is a complete program.
class Input {
 public:
  Input(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  template <class T>
  T take() noexcept {
    T v{};
    const std::size_t n = std::min(sizeof v, size_ - pos_);
    std::memcpy(&v, data_ + pos_, n);
    pos_ += n;
    return v;
  }
  /// Up to `n` bytes (fewer at the end of the input).
  std::span<const std::uint8_t> bytes(std::size_t n) noexcept {
    n = std::min(n, size_ - pos_);
    std::span<const std::uint8_t> out(data_ + pos_, n);
    pos_ += n;
    return out;
  }
  [[nodiscard]] bool empty() const noexcept { return pos_ == size_; }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

/// A name of this process's own for target `tag`, removed again at exit.
inline std::string scratch_name(const std::string& tag) {
  static std::string name;
  name = "fuzz-" + tag + "-" + std::to_string(::getpid());
  flatring::Ring::remove(name);
  std::atexit([] { flatring::Ring::remove(name); });
  return name;
}

/// Resets `ring` to a fresh image: the control area but the header (which open validated and
/// nothing re-reads) and the whole record area are zeroed.
inline void reset_image(flatring::Ring& ring) {
  auto* ctrl = reinterpret_cast<std::byte*>(&ring.control());
  std::memset(static_cast<void*>(ctrl + sizeof(flatring::layout::SegmentHeader)), 0,
              flatring::layout::kRingOffset - sizeof(flatring::layout::SegmentHeader));
  std::memset(ring.writable_data(), 0, ring.info().capacity);
}

/// Says which check failed, then stops the run (libFuzzer reports it as a crash). Out of line and
/// never inlined, so that each check keeps its own call site: the compiler merges the traps of one
/// function into one instruction, and a crash report could not say which check it was.
[[noreturn, gnu::noinline, gnu::cold]] inline void check_failed(const char* what, const char* file,
                                                                int line) noexcept {
  std::fprintf(stderr, "FUZZ_CHECK failed at %s:%d: %s\n", file, line, what);
  __builtin_trap();
}

/// Stops the run when an invariant the library promises fails.
#define FUZZ_CHECK(cond)                                          \
  do {                                                            \
    if (!(cond)) ::fuzz::check_failed(#cond, __FILE__, __LINE__); \
  } while (0)

/// Every byte of a record a Reader<> hands out must lie inside the ring (the mapping at `base`: the
/// read-only one, or the writable one for an mpmc consumer); touching them all makes an
/// out-of-range view fault here rather than go unnoticed.
inline void touch(const flatring::Ring& ring, std::span<const std::byte> b, const std::byte* base) {
  const auto lo = reinterpret_cast<std::uintptr_t>(base);
  const auto p = reinterpret_cast<std::uintptr_t>(b.data());
  FUZZ_CHECK(p >= lo && p + b.size() <= lo + ring.info().capacity);
  FUZZ_CHECK(b.size() <= ring.info().max_record_size);
  FUZZ_CHECK(p % flatring::layout::kRecordAlign == 0);
  std::uint8_t sum = 0;
  for (std::byte x : b) sum = static_cast<std::uint8_t>(sum + std::to_integer<std::uint8_t>(x));
  asm volatile("" : : "r"(sum));
}

inline void touch(const flatring::Ring& ring, std::span<const std::byte> b) {
  touch(ring, b, ring.data());
}

}  // namespace fuzz
