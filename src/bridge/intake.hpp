// The In's handling of what arrives from the network, without the network: one received message
// (its bytes, from a peer known by its routing id) is decoded, its entries checked for order
// against the state file, verified against the ring's schema and committed into the local ring.
// In (in.cpp) feeds it from its ZeroMQ socket; fuzz/fuzz_frames.cpp feeds it arbitrary bytes, so
// the fuzzer runs exactly the code the In runs. Every byte of a message is untrusted.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "flatring/bridge.hpp"
#include "flatring/flatring.hpp"
#include "state.hpp"
#include "wire.hpp"

namespace flatring::bridge {

struct Sink;  // the local ring's producer, whatever its mode (intake.cpp)

class Intake {
 public:
  /// A reply to the peer `id`: a frame header {type, a, b} and a text body.
  using Reply = std::function<void(const std::string& id, wire::Type type, std::uint64_t a,
                                   std::uint64_t b, const std::string& text)>;
  struct Hooks {
    Reply reply;
    /// Called on each round of waiting for room in a full ring (back-pressure), after the peers
    /// were acknowledged: the In polls its other sockets there.
    std::function<void()> waiting;
    std::function<void(const std::string&)> on_log;
  };

  /// Attaches to `ring` as a producer and opens `state_file` (locked). \throws BridgeError
  /// (no_schema: the ring stores no schema and `raw` is off, or one RecordVerifier cannot check;
  /// busy, bad_state: the state file) or flatring::Error from the ring.
  Intake(Ring ring, const std::string& state_file, bool raw, Hooks hooks);
  ~Intake();
  Intake(const Intake&) = delete;
  Intake& operator=(const Intake&) = delete;

  /// One message from peer `id` (the bytes of its one ZeroMQ part). `stop` is asked while the
  /// ring is full; when it says stop, the record waiting for room is not taken (the peer sends it
  /// again) and stopping() turns true.
  void on_message(const std::string& id, std::span<const std::byte> message,
                  const std::function<bool()>& stop);
  /// A message that is not one part from one peer (counted as malformed).
  void on_bad_framing() noexcept { st_.rejected_malformed++; }
  /// The acknowledgements, resend requests and refusals due after a batch of messages.
  void flush_replies();

  [[nodiscard]] std::uint64_t max_record() const noexcept { return max_record_; }
  [[nodiscard]] bool stopping() const noexcept { return stopping_; }
  [[nodiscard]] InStatus& status() noexcept { return st_; }
  [[nodiscard]] const InStatus& status() const noexcept { return st_; }

 private:
  struct Session {
    std::uint64_t source = 0;
    SourceEntry* entry = nullptr;
    std::uint64_t rejected = 0;
    bool ack_due = false;
    bool resend_due = false;
  };

  SourceEntry* entry_for(std::uint64_t source);
  void log(const std::string& m);
  void reply(const std::string& id, wire::Type t, std::uint64_t a, std::uint64_t b,
             const std::string& text = {});
  void on_hello(const std::string& id, const wire::Header& h, std::span<const std::byte> body);
  std::optional<std::span<std::byte>> room(std::size_t n, const std::function<bool()>& stop);
  void skip(Session& s, std::uint64_t seq) noexcept;
  bool on_entry(Session& s, const wire::EntryReader::Item& it, const std::function<bool()>& stop);
  void on_data(const std::string& id, std::span<const std::byte> body,
               const std::function<bool()>& stop);

  std::string ring_name_;
  Hooks hooks_;
  Ring ring_;
  std::uint64_t max_record_ = 0;
  Schema schema_;  // empty for a raw ring
  RecordVerifier verifier_;
  std::unique_ptr<Sink> sink_;
  std::unique_ptr<StateFile> state_;
  InStatus st_;
  std::map<std::string, Session> sessions_;  // by ZeroMQ routing id
  std::vector<std::string> no_session_ids_;  // to tell once per batch
  bool stopping_ = false;
};

}  // namespace flatring::bridge
