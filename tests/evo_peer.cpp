// A producer or consumer built from one version of the evolution schema (tests/schema/evo_v1.fbs
// or evo_v2.fbs): two separately built programs with the same root type, run by
// tests/test_schema.cpp as real processes.
//
//   flatring_evo_vN produce NAME MODE COUNT   sends COUNT records (waits for a consumer first)
//   flatring_evo_vN consume NAME MODE COUNT   receives COUNT records and checks every field it
//                                             knows; prints the schema match
// Exit 0 on success; 2 usage, 3 wrong_schema at attach (the message goes to stderr), 4 a record
// that is not what was sent, 5 a send or receive that failed.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include EVO_HEADER
#include <flatring/flatring.hpp>

FLATRING_SCHEMA(flatring::evo::Order, flatring::evo::OrderIdentifier());

namespace {

using namespace std::chrono_literals;
using flatring::Mode;
using flatring::Status;
using flatring::evo::Order;

constexpr int kVersion = EVO_VERSION;

std::string symbol_of(std::uint64_t i) { return "S" + std::to_string(i % 97); }

template <Mode M>
int produce(const std::string& name, std::uint64_t count) {
  flatring::Producer<Order, M> producer(flatring::open_ring<Order>(name));
  // A broadcast consumer sees only what is committed after it joined.
  if constexpr (M == Mode::broadcast) {
    const auto until = std::chrono::steady_clock::now() + 30s;
    while (flatring::census(producer.raw().ring(), flatring::layout::Role::consumer).alive == 0) {
      if (std::chrono::steady_clock::now() > until) return 5;
      std::this_thread::sleep_for(1ms);
    }
  }
  flatbuffers::FlatBufferBuilder fbb;
  for (std::uint64_t i = 0; i < count; ++i) {
    fbb.Clear();
    const auto sym = fbb.CreateString(symbol_of(i));
    flatring::evo::OrderBuilder ob(fbb);
    ob.add_id(i);
    ob.add_symbol(sym);
    ob.add_qty(static_cast<std::int32_t>(i * 3));
#if EVO_VERSION >= 2
    ob.add_price(static_cast<double>(i) + 0.25);
#endif
    fbb.Finish(ob.Finish(), flatring::evo::OrderIdentifier());
    if (producer.send(fbb, 30s) != Status::ok) return 5;
  }
  return 0;
}

template <Mode M>
int consume(const std::string& name, std::uint64_t count, const std::string& producer_version) {
  flatring::Consumer<Order, M> consumer(flatring::open_ring<Order>(name));
  std::printf("match %s\n", std::string(flatring::to_string(consumer.schema_match())).c_str());
  std::fflush(stdout);
  std::uint64_t next = 0;
  while (next < count) {
    auto got = consumer.receive(30s);
    if (got.status() == Status::abandoned) continue;
    if (!got) {
      std::fprintf(stderr, "receive: %s\n", std::string(flatring::to_string(got.status())).c_str());
      return 5;
    }
    const Order& o = **got;
    if (o.id() != next || o.symbol() == nullptr || o.symbol()->str() != symbol_of(next) ||
        o.qty() != static_cast<std::int32_t>(next * 3)) {
      std::fprintf(stderr, "record %llu: wrong old fields\n",
                   static_cast<unsigned long long>(next));
      return 4;
    }
#if EVO_VERSION >= 2
    // A v1 producer never wrote price: the v2 reader sees the schema's default.
    const double want = producer_version == "1" ? 1.5 : static_cast<double>(next) + 0.25;
    if (o.price() != want) {
      std::fprintf(stderr, "record %llu: price %f, want %f\n",
                   static_cast<unsigned long long>(next), o.price(), want);
      return 4;
    }
#else
    (void)producer_version;
#endif
    ++next;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s produce|consume NAME MODE COUNT [PRODUCER_VERSION]\n", argv[0]);
    return 2;
  }
  const std::string what = argv[1], name = argv[2];
  const auto mode = flatring::parse_mode(argv[3]);
  const std::uint64_t count = std::strtoull(argv[4], nullptr, 10);
  const std::string producer_version = argc > 5 ? argv[5] : std::to_string(kVersion);
  if (!mode || (what != "produce" && what != "consume")) return 2;
  try {
    return flatring::visit_mode(*mode, [&](auto m) {
      return what == "produce" ? produce<m()>(name, count)
                               : consume<m()>(name, count, producer_version);
    });
  } catch (const flatring::Error& e) {
    std::fprintf(stderr, "%s: %s\n", std::string(flatring::to_string(e.code())).c_str(), e.what());
    return e.code() == flatring::Errc::wrong_schema ? 3 : 6;
  }
}
