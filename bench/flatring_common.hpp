// What the flatring rows share (transports_flatring.cpp, transports_flatring_wait.cpp): the ring
// size, the error report, the copying sender and the checked batch receive.
#pragma once

#include "common.hpp"
#include "harness.hpp"

#include <flatring/flatring.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <vector>

namespace bench {

[[noreturn]] inline void fail_status(const char* what, flatring::Status s) {
  throw BenchError(fmt::format("flatring: {}: {}", what, flatring::to_string(s)));
}

// The smallest power of two that takes two maximum records (RingOptions' rule), at least 4 MiB:
// small records get room for tens of thousands in flight (on the 2-vCPU reference VM a 4 MiB ring
// streamed 64 B records faster than 1 MiB, and a larger one only added variance), 1 MiB payloads a
// 4 MiB ring, 16 MiB payloads a 64 MiB ring.
inline std::uint64_t capacity_for(std::uint64_t max_record) {
  const std::uint64_t need = 2 * flatring::layout::frame_size(max_record) + 16;
  return std::max<std::uint64_t>(std::bit_ceil(need), 4u << 20);
}

// Writer::try_write (one copy in), busy-polling on full.
class CopySender {
 public:
  CopySender(Peer& peer, flatring::Ring ring, std::size_t payload)
      : peer_(&peer), w_(std::move(ring)), buf_(payload) {
    fill_pattern(buf_.data(), buf_.size());
  }
  void send(std::uint64_t seq) {
    stamp(buf_.data(), buf_.size(), seq);
    for (;;) {
      const flatring::Status s = w_.try_write(buf_);
      if (s == flatring::Status::ok) [[likely]]
        return;
      if (s != flatring::Status::full) fail_status("try_write", s);
      cpu_relax();
      peer_->spin_check();
    }
  }

 private:
  Peer* peer_;
  flatring::Writer<> w_;
  std::vector<std::byte> buf_;
};

// Throughput: one Reader::poll batch of at most `max` records (and kPollBatch), each checked
// against sequence `seq` onwards; `on_empty()` runs while the ring is empty (a spin or a sleep).
inline constexpr std::uint64_t kPollBatch = 64;
template <class OnEmpty>
std::uint64_t poll_checked(flatring::Reader<>& r, std::size_t payload, std::uint64_t seq,
                           std::uint64_t max, OnEmpty&& on_empty) {
  const std::size_t batch = std::size_t(std::min<std::uint64_t>(max, kPollBatch));
  for (;;) {
    std::uint64_t got = 0;
    const std::size_t n = r.poll(
        [&](std::span<const std::byte> b) {
          check(b.data(), b.size(), payload, seq + got);
          ++got;
        },
        batch);
    if (n != 0) [[likely]]
      return n;
    if (r.last_status() != flatring::Status::empty) fail_status("poll", r.last_status());
    on_empty();
  }
}

}  // namespace bench
