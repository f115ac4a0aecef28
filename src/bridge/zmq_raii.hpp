// Thin RAII over libzmq's C API, for the bridge only. Set-up errors throw BridgeError(zmq) naming
// the call; the hot path returns what libzmq says.
#pragma once

#include <zmq.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <utility>

#include "flatring/bridge.hpp"

namespace flatring::bridge::zmq {

[[noreturn]] inline void fail(const std::string& what) {
  throw BridgeError(Reason::zmq, "flatring bridge: " + what + ": " + zmq_strerror(zmq_errno()));
}

class Context {
 public:
  Context() : ctx_(zmq_ctx_new()) {
    if (ctx_ == nullptr) fail("zmq_ctx_new");
  }
  ~Context() {
    if (ctx_ != nullptr) zmq_ctx_term(ctx_);
  }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  [[nodiscard]] void* get() const noexcept { return ctx_; }

 private:
  void* ctx_;
};

class Socket {
 public:
  Socket(const Context& ctx, int type) : s_(zmq_socket(ctx.get(), type)) {
    if (s_ == nullptr) fail("zmq_socket");
    set(ZMQ_LINGER, 0);  // a stopped bridge leaves nothing queued behind: it is resent anyway
  }
  ~Socket() { close(); }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  void close() noexcept {
    if (s_ != nullptr) zmq_close(s_);
    s_ = nullptr;
  }
  [[nodiscard]] void* get() const noexcept { return s_; }

  void set(int option, int value) {
    if (zmq_setsockopt(s_, option, &value, sizeof value) != 0)
      fail("zmq_setsockopt " + std::to_string(option));
  }
  void set64(int option, std::int64_t value) {
    if (zmq_setsockopt(s_, option, &value, sizeof value) != 0)
      fail("zmq_setsockopt " + std::to_string(option));
  }
  void set_bytes(int option, const void* data, std::size_t n) {
    if (zmq_setsockopt(s_, option, data, n) != 0) fail("zmq_setsockopt " + std::to_string(option));
  }
  void set_string(int option, const std::string& v) { set_bytes(option, v.data(), v.size()); }
  void bind(const std::string& endpoint) {
    if (zmq_bind(s_, endpoint.c_str()) != 0) fail("cannot bind " + endpoint);
  }
  void connect(const std::string& endpoint) {
    if (zmq_connect(s_, endpoint.c_str()) != 0) fail("cannot connect to " + endpoint);
  }
  [[nodiscard]] std::string last_endpoint() const {
    char buf[256];
    std::size_t n = sizeof buf;
    if (zmq_getsockopt(s_, ZMQ_LAST_ENDPOINT, buf, &n) != 0) fail("ZMQ_LAST_ENDPOINT");
    return std::string(buf, n != 0 && buf[n - 1] == '\0' ? n - 1 : n);
  }
  [[nodiscard]] bool more() const noexcept {
    int v = 0;
    std::size_t n = sizeof v;
    return zmq_getsockopt(s_, ZMQ_RCVMORE, &v, &n) == 0 && v != 0;
  }

 private:
  void* s_;
};

/// One message part.
class Msg {
 public:
  Msg() noexcept { zmq_msg_init(&m_); }
  explicit Msg(std::size_t n) {
    if (zmq_msg_init_size(&m_, n) != 0) fail("zmq_msg_init_size");
  }
  ~Msg() { zmq_msg_close(&m_); }
  Msg(const Msg&) = delete;
  Msg& operator=(const Msg&) = delete;
  Msg(Msg&& o) noexcept {
    zmq_msg_init(&m_);
    zmq_msg_move(&m_, &o.m_);
  }
  Msg& operator=(Msg&& o) noexcept {
    if (this != &o) zmq_msg_move(&m_, &o.m_);
    return *this;
  }
  [[nodiscard]] std::byte* data() noexcept { return static_cast<std::byte*>(zmq_msg_data(&m_)); }
  [[nodiscard]] std::span<const std::byte> bytes() noexcept {
    return {static_cast<const std::byte*>(zmq_msg_data(&m_)), zmq_msg_size(&m_)};
  }
  [[nodiscard]] std::size_t size() noexcept { return zmq_msg_size(&m_); }
  [[nodiscard]] bool more() const noexcept { return zmq_msg_more(&m_) != 0; }
  /// Sends (and empties) the message. False on EAGAIN (with ZMQ_DONTWAIT) or another error.
  bool send(Socket& s, int flags) noexcept { return zmq_msg_send(&m_, s.get(), flags) >= 0; }
  bool recv(Socket& s, int flags) noexcept { return zmq_msg_recv(&m_, s.get(), flags) >= 0; }

 private:
  zmq_msg_t m_;
};

inline bool send_bytes(Socket& s, std::span<const std::byte> b, int flags) noexcept {
  return zmq_send(s.get(), b.data(), b.size(), flags) >= 0;
}

/// Waits up to `timeout_ms` for input on any of `n` sockets; returns the revents bitmask per
/// socket in `ready` (bit i: socket i readable).
inline unsigned poll_in(void* const* sockets, int n, long timeout_ms) {
  zmq_pollitem_t items[4];
  for (int i = 0; i < n; ++i) items[i] = zmq_pollitem_t{sockets[i], 0, ZMQ_POLLIN, 0};
  if (zmq_poll(items, n, timeout_ms) <= 0) return 0;
  unsigned ready = 0;
  for (int i = 0; i < n; ++i) {
    if (items[i].revents & ZMQ_POLLIN) ready |= 1u << i;
  }
  return ready;
}

/// Drains and discards the rest of a multipart message.
inline void skip_rest(Socket& s) noexcept {
  while (s.more()) {
    Msg m;
    if (!m.recv(s, ZMQ_DONTWAIT)) return;
  }
}

}  // namespace flatring::bridge::zmq
