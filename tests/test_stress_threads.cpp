// Threaded stress: one Writer<> thread and one Reader<> thread in one process, started together by
// a barrier, over several capacities and both the polling and the blocking (futex) paths. Written
// for ThreadSanitizer (scripts/sanitize.sh runs exactly the [threads] tag under TSan); the
// cross-process versions of these checks are in test_process.cpp.
//
// Every record carries its sequence number and a payload derived from it; the reader checks no
// loss, no duplicate, order, and every byte.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "helpers.hpp"

using namespace flatring;
using namespace std::chrono_literals;
using fr_test::unique_name;

namespace {

enum class Path { polling, blocking, zero_copy_batched };

const char* path_name(Path p) {
  switch (p) {
    case Path::polling: return "polling";
    case Path::blocking: return "blocking";
    case Path::zero_copy_batched: return "zero_copy_batched";
  }
  return "?";
}

// Sizes cycle through small and large records so the ring wraps at many offsets.
std::size_t size_of(std::uint64_t seq, std::size_t max) {
  const std::size_t span = std::min<std::size_t>(max - 8, 600);
  return 8 + static_cast<std::size_t>((seq * 37) % (span + 1));
}

void encode(std::span<std::byte> out, std::uint64_t seq) {
  std::memcpy(out.data(), &seq, 8);
  for (std::size_t i = 8; i < out.size(); ++i) out[i] = static_cast<std::byte>(seq * 31 + i);
}

// "" when `bytes` is record `expect`, else what is wrong.
std::string check(std::span<const std::byte> bytes, std::uint64_t expect, std::size_t max) {
  if (bytes.size() < 8) return "short record at " + std::to_string(expect);
  std::uint64_t seq = 0;
  std::memcpy(&seq, bytes.data(), 8);
  if (seq != expect) {
    return "expected seq " + std::to_string(expect) + ", got " + std::to_string(seq) +
           (seq < expect ? " (duplicate or reorder)" : " (loss)");
  }
  if (bytes.size() != size_of(seq, max)) return "wrong size at " + std::to_string(seq);
  for (std::size_t i = 8; i < bytes.size(); ++i) {
    if (bytes[i] != static_cast<std::byte>(seq * 31 + i))
      return "bad byte at " + std::to_string(seq);
  }
  return {};
}

struct Outcome {
  std::string producer_error;
  std::string consumer_error;
  std::uint64_t delivered = 0;
};

Outcome run(Ring& ring, Path path, std::uint64_t count) {
  const WaitOptions wait{.spin = path == Path::blocking ? 0ns : 20us, .liveness_interval = 100ms};
  Writer<> w(ring, wait);
  Reader<> r(ring, wait);
  const std::size_t max = static_cast<std::size_t>(w.max_record_size());
  Outcome out;
  std::barrier start(2);

  std::thread producer([&] {
    std::vector<std::byte> buf(max);
    start.arrive_and_wait();
    for (std::uint64_t seq = 0; seq < count; ++seq) {
      const std::size_t n = size_of(seq, max);
      Status s = Status::ok;
      if (path == Path::zero_copy_batched) {
        auto span = w.reserve(n, 30s);
        if (!span) {
          s = span.status();
        } else {
          encode(span->first(n), seq);
          s = w.commit(n);
        }
      } else if (path == Path::blocking) {
        encode({buf.data(), n}, seq);
        s = w.write({buf.data(), n}, 30s);
      } else {
        encode({buf.data(), n}, seq);
        while ((s = w.try_write({buf.data(), n})) == Status::full) std::this_thread::yield();
      }
      if (s != Status::ok) {
        out.producer_error = "write " + std::to_string(seq) + ": " + std::string(to_string(s));
        return;
      }
    }
  });

  std::thread consumer([&] {
    start.arrive_and_wait();
    std::uint64_t expect = 0;
    while (expect < count) {
      if (path == Path::zero_copy_batched) {
        std::string err;
        const std::size_t got = r.poll(
            [&](std::span<const std::byte> bytes) {
              if (err.empty()) err = check(bytes, expect, max);
              ++expect;
            },
            64);
        if (!err.empty()) {
          out.consumer_error = err;
          return;
        }
        if (got == 0) {
          if (r.last_status() != Status::empty) {
            out.consumer_error = "poll: " + std::string(to_string(r.last_status()));
            return;
          }
          std::this_thread::yield();
        }
        continue;
      }
      Result<RecordView> rec = path == Path::blocking ? r.read(30s) : r.try_read();
      if (!rec) {
        if (path == Path::polling && rec.status() == Status::empty) {
          std::this_thread::yield();
          continue;
        }
        out.consumer_error =
            "read " + std::to_string(expect) + ": " + std::string(to_string(rec.status()));
        return;
      }
      std::string err = check(rec->bytes, expect, max);
      if (!err.empty()) {
        out.consumer_error = err;
        return;
      }
      r.release();
      ++expect;
    }
    out.delivered = expect;
  });

  producer.join();
  consumer.join();
  // Nothing extra after the last record: a duplicate at the end would show up here.
  if (out.consumer_error.empty() && r.try_read().status() != Status::empty) {
    out.consumer_error = "a record beyond the last one was readable";
  }
  return out;
}

}  // namespace

TEST_CASE("threaded writer and reader: no loss, no duplicate, order kept, at every capacity",
          "[threads]") {
  const std::uint64_t capacity =
      GENERATE(std::uint64_t{4096}, std::uint64_t{1} << 14, std::uint64_t{1} << 20);
  const Path path = GENERATE(Path::polling, Path::blocking, Path::zero_copy_batched);
  const std::uint64_t count = fr_test::scaled(100'000);
  CAPTURE(capacity, path_name(path), count);
  const auto name = unique_name("threads");
  RemoveGuard guard(name);
  auto ring = Ring::create(name, {.capacity = capacity});
  Outcome out = run(ring, path, count);
  CHECK(out.producer_error == "");
  CHECK(out.consumer_error == "");
  CHECK(out.delivered == count);
  const auto& c = ring.control();
  CHECK(c.retired.value[layout::records_written].load() == count);
  CHECK(c.retired.value[layout::records_read].load() == count);
  CHECK(c.retired.value[layout::corrupt_records].load() == 0);
}
