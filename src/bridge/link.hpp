// What both sides of the bridge share: identities, socket set-up, the monitor, the ZAP handler.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "flatring/bridge.hpp"
#include "flatring/segment.hpp"
#include "zmq_raii.hpp"

namespace flatring::bridge {

using Clock = std::chrono::steady_clock;

/// A ring's identity across processes: its name, creation time and creator. A ring removed and
/// created again under the same name is another ring (its positions start again).
[[nodiscard]] std::uint64_t ring_identity(const SegmentInfo& info) noexcept;

/// tcp://HOST:PORT or ipc://PATH, and CURVE off only on loopback. \throws BridgeError.
void check_endpoint(const std::string& endpoint, const Security& security, const char* role);

/// Options both sides set: ZMTP heartbeats (a dead peer is noticed without traffic), fast
/// reconnects, and a cap on the size of any message ZeroMQ accepts (`max_message`).
void common_options(zmq::Socket& s, std::uint64_t max_message);

/// The handshake events of a socket, from zmq_socket_monitor over an inproc PAIR.
class Monitor {
 public:
  Monitor(const zmq::Context& ctx, zmq::Socket& watched, const std::string& name);
  struct Event {
    std::uint16_t event = 0;
    std::uint32_t value = 0;
  };
  /// The next event, without waiting; event 0 when there is none.
  Event next() noexcept;
  [[nodiscard]] zmq::Socket& socket() noexcept { return pair_; }

 private:
  zmq::Socket pair_;
};

/// The ZAP handler (RFC 27) of a CURVE server: accepts a client only if its public key is one
/// of `allowed`. Runs on its own thread until destroyed.
class ZapHandler {
 public:
  ZapHandler(const zmq::Context& ctx, const std::vector<std::string>& allowed_z85);
  ~ZapHandler();
  ZapHandler(const ZapHandler&) = delete;
  ZapHandler& operator=(const ZapHandler&) = delete;
  [[nodiscard]] std::uint64_t refused() const noexcept {
    return refused_.load(std::memory_order_relaxed);
  }

 private:
  void serve() noexcept;
  zmq::Socket rep_;
  std::vector<std::string> allowed_;  // 32-byte binary keys
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> refused_{0};
  std::thread thread_;
};

}  // namespace flatring::bridge
