// Test helpers: unique ring names, child processes, deterministic payloads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <sys/types.h>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "test_msg_generated.h"
#include "test_other_generated.h"
#include <flatring/flatring.hpp>

FLATRING_SCHEMA(flatring::test::Msg, flatring::test::MsgIdentifier());
FLATRING_SCHEMA(flatring::test::Other, flatring::test::OtherIdentifier());

namespace fr_test {

/// A name no other test (or concurrent ctest process) uses.
std::string unique_name(const std::string& tag);

/// Runs `body` in a forked child; the child exits with body's return value (or 99 on exception).
pid_t spawn(const std::function<int()>& body);
/// Waits for `pid` and returns its exit code (128+signal if killed).
int join(pid_t pid);

/// Fills `out` with bytes derived from `seq`, so the receiver can check every byte.
void fill_pattern(std::span<std::byte> out, std::uint64_t seq);
/// True if `in` is exactly fill_pattern(seq).
bool check_pattern(std::span<const std::byte> in, std::uint64_t seq);

/// A finished Msg with `seq` and a pattern payload of `size` bytes.
void build_msg(flatbuffers::FlatBufferBuilder& fbb, std::uint64_t seq, std::size_t size);

/// The finished bytes of a builder.
inline std::span<const std::byte> detail_bytes(const flatbuffers::FlatBufferBuilder& fbb) {
  return {reinterpret_cast<const std::byte*>(fbb.GetBufferPointer()), fbb.GetSize()};
}

/// Scales stress sizes: FLATRING_STRESS_SCALE from CMake.
std::uint64_t scaled(std::uint64_t n);

/// Shrinks the segment file of ring `name` to `size` bytes, as a hostile peer with write access
/// to it can (the SIGBUS guard's case).
void shrink(const std::string& name, off_t size);

/// The code of the flatring::Error that `f()` throws, or nothing when it returns normally (any
/// other exception propagates). The one way tests ask "which error?":
///   CHECK(error_code([&] { Reader<> r(ring); }) == Errc::role_taken);
/// A call that throws nothing compares unequal to every code, so it can never pass by accident.
/// No Catch macros inside: safe in a forked child.
template <class F>
std::optional<flatring::Errc> error_code(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const flatring::Error& e) {
    return e.code();
  }
  return std::nullopt;
}

/// The flatring::Error that `f()` throws, for checks on its message too. FAILs the test when
/// nothing is thrown (not for forked children: Catch macros belong to the parent).
template <class F>
flatring::Error error_of(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const flatring::Error& e) {
    return e;
  }
  FAIL("no flatring::Error thrown");
  return flatring::Error(flatring::Errc::system_error, "not reached");
}

}  // namespace fr_test

// Failure messages name codes and outcomes ("role_taken", "no error thrown"), not numbers.
namespace Catch {
template <>
struct StringMaker<flatring::Errc> {
  static std::string convert(flatring::Errc e) { return std::string(flatring::to_string(e)); }
};
template <>
struct StringMaker<std::optional<flatring::Errc>> {
  static std::string convert(const std::optional<flatring::Errc>& e) {
    return e ? std::string(flatring::to_string(*e)) : std::string("no error thrown");
  }
};
template <>
struct StringMaker<flatring::Status> {
  static std::string convert(flatring::Status s) { return std::string(flatring::to_string(s)); }
};
}  // namespace Catch
