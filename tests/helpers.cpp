#include "helpers.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <sys/wait.h>
#include <unistd.h>

namespace fr_test {

std::string unique_name(const std::string& tag) {
  static std::atomic<int> counter{0};
  return "frtest-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

pid_t spawn(const std::function<int()>& body) {
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    int rc = 99;
    try {
      rc = body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child failed: %s\n", e.what());
    }
    std::fflush(nullptr);
    ::_exit(rc);
  }
  return pid;
}

int join(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

void fill_pattern(std::span<std::byte> out, std::uint64_t seq) {
  std::uint64_t x = seq * 0x9E3779B97F4A7C15ull + 1;
  std::size_t i = 0;
  for (; i + 8 <= out.size(); i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(out.data() + i, &x, 8);
  }
  for (; i < out.size(); ++i) out[i] = static_cast<std::byte>(seq + i);
}

bool check_pattern(std::span<const std::byte> in, std::uint64_t seq) {
  std::vector<std::byte> expect(in.size());
  fill_pattern(expect, seq);
  return in.size() == 0 || std::memcmp(in.data(), expect.data(), in.size()) == 0;
}

void build_msg(flatbuffers::FlatBufferBuilder& fbb, std::uint64_t seq, std::size_t size) {
  fbb.Clear();
  std::uint8_t* p = nullptr;
  auto vec = fbb.CreateUninitializedVector(size, &p);
  fill_pattern({reinterpret_cast<std::byte*>(p), size}, seq);
  fbb.Finish(flatring::test::CreateMsg(fbb, seq, vec), flatring::test::MsgIdentifier());
}

std::uint64_t scaled(std::uint64_t n) { return n * FLATRING_STRESS_SCALE; }

void shrink(const std::string& name, off_t size) {
  REQUIRE(::truncate(flatring::Ring::path_of(name).c_str(), size) == 0);
}

}  // namespace fr_test
