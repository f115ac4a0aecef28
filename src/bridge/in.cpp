// The receiving bridge: records from the network, verified, committed into the local ring. The
// socket side is here; what a received message does is intake.cpp.
#include <zmq.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "flatring/bridge.hpp"
#include "intake.hpp"
#include "link.hpp"
#include "wire.hpp"

namespace flatring::bridge {

namespace {

std::string default_state_file(const std::string& ring) {
  return "/dev/shm/flatring-bridge." + ring + ".state";
}

}  // namespace

struct In::Impl {
  InOptions o;
  std::unique_ptr<Intake> intake;
  zmq::Context ctx;
  std::unique_ptr<ZapHandler> zap;
  zmq::Socket router;
  std::unique_ptr<Monitor> monitor;
  std::string bound;
  Clock::time_point next_status{};

  explicit Impl(InOptions opt)
      : o(std::move(opt)), router((check_endpoint(o.bind, o.security, "bind"), ctx), ZMQ_ROUTER) {
    intake = std::make_unique<Intake>(
        Ring::open(o.ring), o.state_file.empty() ? default_state_file(o.ring) : o.state_file, o.raw,
        Intake::Hooks{[this](const std::string& id, wire::Type t, std::uint64_t a, std::uint64_t b,
                             const std::string& text) { reply(id, t, a, b, text); },
                      [this] { poll_side(); }, o.on_log});

    common_options(router, std::max<std::uint64_t>(intake->max_record(), wire::kBatchBytes) + 4096);
    router.set(ZMQ_ROUTER_MANDATORY, 1);  // an ack to a gone peer fails loudly, never silently
    router.set(ZMQ_ROUTER_HANDOVER, 1);   // a reconnecting Out takes its routing id back
    if (o.security.curve) {
      if (o.security.allowed_keys.empty()) {
        throw BridgeError(Reason::bad_key,
                          "flatring bridge: CURVE is on and no client key is allowed (--allow)");
      }
      zap = std::make_unique<ZapHandler>(ctx, o.security.allowed_keys);
      router.set(ZMQ_CURVE_SERVER, 1);
      router.set_string(ZMQ_CURVE_SECRETKEY, o.security.keys.secret_key);
      router.set_string(ZMQ_ZAP_DOMAIN, "flatring-bridge");
    }
    monitor = std::make_unique<Monitor>(
        ctx, router, "in-" + std::to_string(reinterpret_cast<std::uintptr_t>(this)));
    router.bind(o.bind);
    bound = intake->status().bound = router.last_endpoint();
  }

  void reply(const std::string& id, wire::Type t, std::uint64_t a, std::uint64_t b,
             const std::string& text) {
    zmq::Msg body(wire::kHeaderSize + text.size());
    wire::put_header(body.data(), {t, a, b});
    if (!text.empty()) std::memcpy(body.data() + wire::kHeaderSize, text.data(), text.size());
    if (zmq_send(router.get(), id.data(), id.size(), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) return;
    (void)body.send(router, ZMQ_DONTWAIT);
  }

  // One message from the router: [routing id][body], nothing more.
  void on_message(const std::function<bool()>& stop) {
    zmq::Msg idm;
    if (!idm.recv(router, ZMQ_DONTWAIT)) return;
    auto idb = idm.bytes();
    const std::string id(reinterpret_cast<const char*>(idb.data()), idb.size());
    if (!idm.more()) {
      intake->on_bad_framing();
      return;
    }
    zmq::Msg body;
    if (!body.recv(router, ZMQ_DONTWAIT)) return;
    if (body.more()) {
      zmq::skip_rest(router);
      intake->on_bad_framing();
      return;
    }
    intake->on_message(id, body.bytes(), stop);
  }

  // The monitor's events and the periodic status: also while waiting for room in the ring.
  void poll_side() {
    for (;;) {
      const Monitor::Event ev = monitor->next();
      if (ev.event == 0) break;
      if (ev.event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ||
          ev.event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        intake->status().handshake_failed++;
    }
    const auto now = Clock::now();
    if (now >= next_status) {
      next_status = now + o.status_interval;
      if (o.on_status) o.on_status(snapshot());
    }
  }

  InStatus snapshot() const {
    InStatus s = intake->status();
    if (zap) s.refused_auth = zap->refused();
    return s;
  }

  void run(const std::function<bool()>& stop) {
    void* socks[2] = {router.get(), monitor->socket().get()};
    while (!intake->stopping() && !stop()) {
      const unsigned ready = zmq::poll_in(socks, 2, 100);
      if (ready & 1u) {
        // A batch: as many messages as are waiting (bounded), then one ack per session.
        for (int i = 0; i < 256 && !intake->stopping(); ++i) {
          on_message(stop);
          int ev = 0;
          std::size_t n = sizeof ev;
          if (zmq_getsockopt(router.get(), ZMQ_EVENTS, &ev, &n) != 0 || !(ev & ZMQ_POLLIN)) break;
        }
        intake->flush_replies();
      }
      poll_side();
    }
    if (o.on_status) o.on_status(snapshot());
  }
};

In::In(InOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
In::~In() = default;
const std::string& In::bound() const noexcept { return impl_->bound; }
void In::run(const std::function<bool()>& stop) { impl_->run(stop); }
InStatus In::status() const { return impl_->snapshot(); }

}  // namespace flatring::bridge
