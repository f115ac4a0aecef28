// Helpers for the multi-process ring tests: words shared across fork, and polling for a condition.
#pragma once

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <stdexcept>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <thread>

namespace fr_test {

/// `n` atomic words in an anonymous MAP_SHARED mapping, made before fork: parent and children see
/// the same words (barriers, per-consumer tallies).
class SharedWords {
 public:
  explicit SharedWords(std::size_t n) : n_(n) {
    void* p = ::mmap(nullptr, n * sizeof(std::atomic<std::uint64_t>), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("mmap shared words");
    words_ = static_cast<std::atomic<std::uint64_t>*>(p);  // zero-filled: atomics start at 0
  }
  SharedWords(const SharedWords&) = delete;
  SharedWords& operator=(const SharedWords&) = delete;
  ~SharedWords() { ::munmap(words_, n_ * sizeof(std::atomic<std::uint64_t>)); }
  std::atomic<std::uint64_t>& operator[](std::size_t i) const noexcept { return words_[i]; }
  [[nodiscard]] std::size_t size() const noexcept { return n_; }

 private:
  std::size_t n_;
  std::atomic<std::uint64_t>* words_;
};

/// Polls `done()` every millisecond. Throws after a minute: a hung test fails instead of hanging.
template <class F>
void wait_for(F&& done) {
  const auto stop = std::chrono::steady_clock::now() + std::chrono::minutes(1);
  while (!done()) {
    if (std::chrono::steady_clock::now() > stop)
      throw std::runtime_error("wait_for: gave up after a minute");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

/// A record tagged {producer, seq}: producer (4 bytes), seq (8 bytes), then 4 + seq % 40 bytes
/// derived from both. Writes it to `out` (room for 64 bytes) and returns its size.
inline std::size_t make_tagged(std::byte* out, std::uint32_t producer, std::uint64_t seq) {
  const std::size_t size = 16 + (seq % 40);
  std::memcpy(out, &producer, 4);
  std::memcpy(out + 4, &seq, 8);
  for (std::size_t i = 12; i < size; ++i) out[i] = static_cast<std::byte>(seq * 31 + producer + i);
  return size;
}

struct Tag {
  std::uint32_t producer;
  std::uint64_t seq;
};

/// The tag of a record made by make_tagged, or nothing if any byte is wrong.
inline std::optional<Tag> tagged_of(std::span<const std::byte> b) {
  if (b.size() < 16) return std::nullopt;
  Tag t{};
  std::memcpy(&t.producer, b.data(), 4);
  std::memcpy(&t.seq, b.data() + 4, 8);
  if (b.size() != 16 + (t.seq % 40)) return std::nullopt;
  for (std::size_t i = 12; i < b.size(); ++i) {
    if (b[i] != static_cast<std::byte>(t.seq * 31 + t.producer + i)) return std::nullopt;
  }
  return t;
}

/// How many times each record {producer, seq} was delivered, counted across processes (one shared
/// word per record): exactly-once and at-least-once checks read it after the children exit.
class Tally {
 public:
  Tally(std::uint32_t producers, std::uint64_t per_producer)
      : producers_(producers), per_(per_producer), words_(producers * per_producer) {}
  /// False if `t` names no record of this tally (a malformed tag).
  [[nodiscard]] bool fits(const Tag& t) const noexcept {
    return t.producer < producers_ && t.seq < per_;
  }
  /// Counts one delivery of `t`; returns how many there were before it. \pre fits(t).
  std::uint64_t add(const Tag& t) const noexcept {
    return words_[t.producer * per_ + t.seq].fetch_add(1);
  }
  [[nodiscard]] std::uint64_t count(std::uint32_t producer, std::uint64_t seq) const noexcept {
    return words_[producer * per_ + seq].load();
  }

 private:
  std::uint32_t producers_;
  std::uint64_t per_;
  SharedWords words_;
};

/// Owns a child process that never exits on its own (one parked in a hook or a pause loop): kills
/// and reaps it when the test is done with it, or when the test fails half-way (a failed REQUIRE
/// or an exception), so that no such child outlives its test.
class ParkedChild {
 public:
  explicit ParkedChild(pid_t pid) : pid_(pid) {}
  ParkedChild(const ParkedChild&) = delete;
  ParkedChild& operator=(const ParkedChild&) = delete;
  ~ParkedChild() { (void)kill_and_join(); }
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  /// SIGKILLs the child and reaps it: its exit code, or 128 + signal (128 + SIGKILL expected).
  int kill_and_join() noexcept {
    if (pid_ <= 0) return -1;
    ::kill(pid_, SIGKILL);
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, 0);
    pid_ = -1;
    if (r < 0) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  pid_t pid_;
};

}  // namespace fr_test
