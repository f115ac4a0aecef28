// Test helpers: unique ring names, child processes, deterministic payloads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <sys/types.h>
#include <vector>

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

}  // namespace fr_test
