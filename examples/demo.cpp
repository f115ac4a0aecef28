// flatring-demo: one program, two processes. The parent creates a ring and streams Order records
// of mixed sizes (64 B to 4 MiB, far above the 64 KiB pipe capacity); the forked child opens the
// ring by name, receives verified records, checks every sequence number and every payload byte,
// and prints a summary. One garbage record is injected on purpose through the raw writer: the
// consumer reports it as a verification failure and carries on with the next record.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include <flatring/flatring.hpp>

#include "order_generated.h"

FLATRING_SCHEMA(app::Order, app::OrderIdentifier());

using namespace std::chrono_literals;

namespace {

constexpr std::uint64_t kRecords = 20'000;
constexpr std::uint64_t kGarbageAt = 10'000;

std::size_t blob_size(std::uint64_t seq) {
  switch (seq % 100) {
    case 7: return 65'537;                                       // one byte over the pipe capacity
    case 42: return 1u << 20;                                    // 1 MiB
    case 99: return (seq % 1000 == 999) ? (4u << 20) : 200'000;  // now and then 4 MiB
    default: return 16 + (seq * 131) % 4096;
  }
}

std::uint8_t blob_byte(std::uint64_t seq, std::size_t i) {
  return static_cast<std::uint8_t>((seq * 31 + i * 7) ^ (i >> 8));
}

std::uint64_t fnv(const std::uint8_t* p, std::size_t n) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

int consume(const std::string& name) {
  flatring::Consumer<app::Order> consumer(flatring::open_ring<app::Order>(name));
  std::uint64_t expect = 0, bytes = 0, failures = 0, bad = 0;
  const auto start = std::chrono::steady_clock::now();
  while (expect < kRecords) {
    auto msg = consumer.receive(10s);
    if (msg.status() == flatring::Status::verify_failed) {
      ++failures;  // reported, skipped; the stream stays in sync
      continue;
    }
    if (!msg) {
      std::fprintf(stderr, "consumer: %s at record %llu\n",
                   std::string(flatring::to_string(msg.status())).c_str(),
                   static_cast<unsigned long long>(expect));
      return 1;
    }
    const app::Order* order = *msg;
    const auto* blob = order->blob();
    bool ok = order->id() == expect && blob != nullptr && blob->size() == blob_size(expect) &&
              order->symbol() != nullptr && order->symbol()->string_view() == "AAPL" &&
              fnv(blob->data(), blob->size()) == order->checksum();
    for (std::size_t i = 0; ok && blob != nullptr && i < blob->size(); i += 4093) {
      ok = blob->Get(static_cast<flatbuffers::uoffset_t>(i)) == blob_byte(expect, i);
    }
    if (!ok) ++bad;
    bytes += consumer.bytes().size();
    ++expect;
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("consumer: %llu records, %.1f MiB in %.3f s (%.0f records/s, %.0f MiB/s)\n",
              static_cast<unsigned long long>(expect), static_cast<double>(bytes) / (1 << 20), secs,
              static_cast<double>(expect) / secs, static_cast<double>(bytes) / (1 << 20) / secs);
  std::printf("consumer: %llu bad records, %llu verification failures (expected 1, injected)\n",
              static_cast<unsigned long long>(bad), static_cast<unsigned long long>(failures));
  return (bad == 0 && failures == 1) ? 0 : 1;
}

}  // namespace

int main() {
  const std::string name = "demo-" + std::to_string(::getpid());
  flatring::RemoveGuard guard(name);
  auto ring =
      flatring::create_ring<app::Order>(name, {.capacity = 32u << 20, .max_record_size = 8u << 20});
  std::printf("ring %s: %s, capacity 32 MiB, max record 8 MiB\n", name.c_str(),
              flatring::Ring::path_of(name).c_str());

  std::fflush(nullptr);  // or the child prints the parent's buffered lines again
  pid_t child = ::fork();
  if (child == 0) {
    int rc = 1;
    try {
      rc = consume(name);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "consumer: %s\n", e.what());
    }
    std::fflush(nullptr);
    ::_exit(rc);
  }

  flatring::Producer<app::Order> producer(ring);
  std::uint64_t sent_bytes = 0;
  for (std::uint64_t seq = 0; seq < kRecords; ++seq) {
    if (seq == kGarbageAt) {
      const char junk[] = "not a flatbuffer, and certainly not a pickle";
      auto s = producer.raw().write(std::as_bytes(std::span(junk)), 10s);
      if (s != flatring::Status::ok) return 1;
    }
    const std::size_t n = blob_size(seq);
    // Built in place, straight into the ring: the hint is the blob plus room for the rest.
    auto s = producer.build(
        n + 128,
        [&](flatbuffers::FlatBufferBuilder& fbb) {
          std::uint8_t* p = nullptr;
          auto blob = fbb.CreateUninitializedVector(n, &p);
          for (std::size_t i = 0; i < n; ++i) p[i] = blob_byte(seq, i);
          auto symbol = fbb.CreateString("AAPL");
          return app::CreateOrder(fbb, seq, symbol, 100, blob, fnv(p, n));
        },
        10s);
    if (s != flatring::Status::ok) {
      std::fprintf(stderr, "producer: %s at record %llu\n",
                   std::string(flatring::to_string(s)).c_str(),
                   static_cast<unsigned long long>(seq));
      ::kill(child, SIGKILL);
      return 1;
    }
    sent_bytes += n;
  }
  std::printf("producer: %llu records built in place, %.1f MiB of blobs, sizes 16 B to 4 MiB\n",
              static_cast<unsigned long long>(kRecords),
              static_cast<double>(sent_bytes) / (1 << 20));
  int status = 0;
  ::waitpid(child, &status, 0);
  const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  std::printf("%s\n", ok ? "demo: OK, every record checked" : "demo: FAILED");
  return ok ? 0 : 1;
}
