// Helpers for the multi-process ring tests: words shared across fork, and polling for a condition.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <sys/mman.h>
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
    if (std::chrono::steady_clock::now() > stop) throw std::runtime_error("wait_for: gave up after a minute");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace fr_test
