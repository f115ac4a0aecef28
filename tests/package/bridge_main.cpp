// Sends a few records from one ring to another through flatring::bridge (an In and an Out over
// CURVE on loopback, in threads of this process), linked from the installed package. Exits 0
// only if every record arrives verified, in order, with its content.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <unistd.h>

#include <flatring/bridge.hpp>
#include <flatring/flatring.hpp>

#include "greeting_generated.h"

FLATRING_SCHEMA(pkg::Greeting, pkg::GreetingIdentifier());

using namespace std::chrono_literals;
namespace bridge = flatring::bridge;

int main() {
  constexpr std::uint64_t kRecords = 5;
  const std::string base = "flatring-package-bridge-" + std::to_string(::getpid());
  const std::string from = base + "-from", to = base + "-to";
  flatring::RemoveGuard g1(from), g2(to);
  auto source = flatring::create_ring<pkg::Greeting>(from, {.capacity = 1 << 16});
  auto far = flatring::create_ring<pkg::Greeting>(to, {.capacity = 1 << 16});
  const std::string state = "/tmp/" + base + ".state";

  const bridge::KeyPair server = bridge::generate_keys(), client = bridge::generate_keys();
  bridge::In in({.ring = to,
                 .bind = "tcp://127.0.0.1:0",
                 .security = {.keys = server, .allowed_keys = {client.public_key}},
                 .state_file = state});
  bridge::Out out({.ring = from,
                   .to = in.bound(),
                   .security = {.keys = client, .server_key = server.public_key}});
  std::atomic<bool> stop{false};
  std::thread tin([&] { in.run([&] { return stop.load(); }); });
  std::thread tout([&] { out.run([&] { return stop.load(); }); });

  flatring::Producer<pkg::Greeting> producer(source);
  flatring::Consumer<pkg::Greeting> consumer(far);
  flatbuffers::FlatBufferBuilder fbb;
  int rc = 0;
  for (std::uint64_t id = 0; id < kRecords && rc == 0; ++id) {
    fbb.Clear();
    const std::string text = "over the bridge " + std::to_string(id);
    fbb.Finish(pkg::CreateGreeting(fbb, id, fbb.CreateString(text)), pkg::GreetingIdentifier());
    if (producer.send(fbb, 30s) != flatring::Status::ok) rc = 1;
    auto msg = consumer.receive(30s);
    if (!msg) {
      std::fprintf(stderr, "receive %llu: %s\n", static_cast<unsigned long long>(id),
                   std::string(flatring::to_string(msg.status())).c_str());
      rc = 2;
    } else if ((*msg)->id() != id || (*msg)->text() == nullptr || (*msg)->text()->str() != text) {
      std::fprintf(stderr, "record %llu has the wrong content\n",
                   static_cast<unsigned long long>(id));
      rc = 3;
    }
  }
  stop = true;
  tout.join();
  tin.join();
  ::unlink(state.c_str());
  if (rc == 0) {
    std::printf("package test: %llu records crossed flatring::bridge from the installed package\n",
                static_cast<unsigned long long>(kRecords));
  }
  return rc;
}
