#include "link.hpp"

#include <zmq.h>

#include <cstring>

namespace flatring::bridge {

std::uint64_t ring_identity(const SegmentInfo& info) noexcept {
  return fnv1a64(info.name + ":" + std::to_string(info.created_unix_ns) + ":" +
                 std::to_string(info.creator.pid) + ":" + std::to_string(info.creator.start_time));
}

void check_endpoint(const std::string& endpoint, const Security& security, const char* role) {
  const bool tcp = endpoint.rfind("tcp://", 0) == 0;
  const bool ipc = endpoint.rfind("ipc://", 0) == 0;
  if ((!tcp && !ipc) || (tcp && endpoint.find(':', 6) == std::string::npos)) {
    throw BridgeError(Reason::bad_address, "flatring bridge: " + std::string(role) + " '" +
                                               endpoint + "' is not tcp://HOST:PORT or ipc://PATH");
  }
  if (!security.curve && !is_loopback(endpoint)) {
    throw BridgeError(Reason::insecure,
                      "flatring bridge: refusing plaintext (--no-curve) on " + endpoint +
                          ", which is not a loopback address: records would cross the network "
                          "unauthenticated and unencrypted");
  }
}

void common_options(zmq::Socket& s, std::uint64_t max_message) {
  s.set(ZMQ_HEARTBEAT_IVL, 1000);
  s.set(ZMQ_HEARTBEAT_TIMEOUT, 5000);
  s.set(ZMQ_HEARTBEAT_TTL, 5000);
  s.set(ZMQ_RECONNECT_IVL, 100);
  s.set(ZMQ_RECONNECT_IVL_MAX, 1000);
  s.set(ZMQ_HANDSHAKE_IVL, 5000);
  s.set64(ZMQ_MAXMSGSIZE, static_cast<std::int64_t>(max_message));
}

Monitor::Monitor(const zmq::Context& ctx, zmq::Socket& watched, const std::string& name)
    : pair_(ctx, ZMQ_PAIR) {
  const std::string ep = "inproc://flatring-bridge-monitor-" + name;
  if (zmq_socket_monitor(watched.get(), ep.c_str(),
                         ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                             ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
                             ZMQ_EVENT_DISCONNECTED) != 0) {
    zmq::fail("zmq_socket_monitor");
  }
  pair_.connect(ep);
}

Monitor::Event Monitor::next() noexcept {
  zmq::Msg head;
  if (!head.recv(pair_, ZMQ_DONTWAIT)) return {};
  Event e;
  if (head.size() >= 6) {
    std::memcpy(&e.event, head.data(), 2);
    std::memcpy(&e.value, head.data() + 2, 4);
  }
  zmq::skip_rest(pair_);
  return e;
}

ZapHandler::ZapHandler(const zmq::Context& ctx, const std::vector<std::string>& allowed_z85)
    : rep_(ctx, ZMQ_REP) {
  for (const auto& k : allowed_z85) {
    std::string bin(32, '\0');
    if (k.size() != 40 ||
        zmq_z85_decode(reinterpret_cast<std::uint8_t*>(bin.data()), k.c_str()) == nullptr) {
      throw BridgeError(Reason::bad_key, "flatring bridge: bad allowed public key '" + k + "'");
    }
    allowed_.push_back(std::move(bin));
  }
  // Bound before the server socket binds, so that no handshake can happen without it.
  rep_.bind("inproc://zeromq.zap.01");
  thread_ = std::thread([this] { serve(); });
}

ZapHandler::~ZapHandler() {
  stop_.store(true, std::memory_order_relaxed);
  thread_.join();
}

void ZapHandler::serve() noexcept {
  void* s = rep_.get();
  while (!stop_.load(std::memory_order_relaxed)) {
    if (zmq::poll_in(&s, 1, 100) == 0) continue;
    // version, request id, domain, address, routing id, mechanism, credentials...
    std::vector<std::string> parts;
    for (;;) {
      zmq::Msg m;
      if (!m.recv(rep_, ZMQ_DONTWAIT)) break;
      if (parts.size() < 16) {
        auto b = m.bytes();
        parts.emplace_back(reinterpret_cast<const char*>(b.data()), b.size());
      }
      if (!m.more()) break;
    }
    if (parts.empty()) continue;
    bool ok = false;
    if (parts.size() >= 7 && parts[0] == "1.0" && parts[5] == "CURVE" && parts[6].size() == 32) {
      for (const auto& k : allowed_) ok = ok || k == parts[6];
    }
    if (!ok) refused_.fetch_add(1, std::memory_order_relaxed);
    const std::string id = parts.size() > 1 ? parts[1] : std::string();
    const char* code = ok ? "200" : "400";
    const char* text = ok ? "OK" : "public key not allowed";
    auto send = [&](const std::string& v, bool more) {
      zmq_send(s, v.data(), v.size(), more ? ZMQ_SNDMORE : 0);
    };
    send("1.0", true);
    send(id, true);
    send(code, true);
    send(text, true);
    send("", true);
    send("", false);
  }
}

}  // namespace flatring::bridge
