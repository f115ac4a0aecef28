// Sends a few records from one process to another through the installed flatring package.
// Exits 0 only if every record arrives verified, in order, with its content.
#include <chrono>
#include <cstdio>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

#include <flatring/flatring.hpp>

#include "greeting_generated.h"

FLATRING_SCHEMA(pkg::Greeting, pkg::GreetingIdentifier());

using namespace std::chrono_literals;

namespace {

constexpr std::uint64_t kRecords = 5;

std::string text_of(std::uint64_t id) { return "hello " + std::to_string(id); }

int consume(const std::string& name) {
  flatring::Consumer<pkg::Greeting> consumer(flatring::open_ring<pkg::Greeting>(name));
  for (std::uint64_t id = 0; id < kRecords; ++id) {
    auto msg = consumer.receive(30s);
    if (!msg) {
      std::fprintf(stderr, "receive %llu: %s\n", static_cast<unsigned long long>(id),
                   std::string(flatring::to_string(msg.status())).c_str());
      return 2;
    }
    if ((*msg)->id() != id || (*msg)->text() == nullptr || (*msg)->text()->str() != text_of(id)) {
      std::fprintf(stderr, "record %llu has the wrong content\n",
                   static_cast<unsigned long long>(id));
      return 3;
    }
  }
  return 0;
}

}  // namespace

int main() {
  const std::string name = "flatring-package-test-" + std::to_string(::getpid());
  flatring::RemoveGuard guard(name);
  auto ring = flatring::create_ring<pkg::Greeting>(name, {.capacity = 1 << 16});

  const pid_t child = ::fork();
  if (child == 0) ::_exit(consume(name));

  flatring::Producer<pkg::Greeting> producer(ring);
  flatbuffers::FlatBufferBuilder fbb;
  for (std::uint64_t id = 0; id < kRecords; ++id) {
    fbb.Clear();
    fbb.Finish(pkg::CreateGreeting(fbb, id, fbb.CreateString(text_of(id))),
               pkg::GreetingIdentifier());
    if (const auto s = producer.send(fbb, 30s); s != flatring::Status::ok) {
      std::fprintf(stderr, "send %llu: %s\n", static_cast<unsigned long long>(id),
                   std::string(flatring::to_string(s)).c_str());
      ::kill(child, SIGKILL);
      ::waitpid(child, nullptr, 0);
      return 1;
    }
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "consumer failed (status %d)\n", status);
    return 1;
  }
  std::printf("package test: %llu records sent and received through the installed flatring\n",
              static_cast<unsigned long long>(kRecords));
  return 0;
}
