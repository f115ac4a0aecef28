// The receiving bridge: records from the network, verified, committed into the local ring.
#include <zmq.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>

#include "flatring/bridge.hpp"
#include "flatring/flatring.hpp"
#include "link.hpp"
#include "state.hpp"
#include "wire.hpp"

namespace flatring::bridge {

namespace {

/// The local ring's producer, whatever its mode.
struct Sink {
  virtual ~Sink() = default;
  virtual Result<std::span<std::byte>> reserve(std::size_t n, std::chrono::nanoseconds t) = 0;
  virtual Status commit(std::size_t n) = 0;
  virtual void abort() = 0;
  [[nodiscard]] virtual std::uint64_t position() const = 0;
  /// spsc and broadcast: one producer, so position() after attaching is exactly where the last
  /// commit ended (see state.hpp).
  [[nodiscard]] virtual bool exact() const = 0;
};

template <Mode M>
struct SinkOf final : Sink {
  explicit SinkOf(Ring r) : w(std::move(r)) {}
  Result<std::span<std::byte>> reserve(std::size_t n, std::chrono::nanoseconds t) override {
    return w.reserve(n, t);
  }
  Status commit(std::size_t n) override { return w.commit(n); }
  void abort() override { w.abort(); }
  std::uint64_t position() const override { return w.position(); }
  bool exact() const override { return exclusive_producer(M); }
  Writer<M> w;
};

std::string default_state_file(const std::string& ring) {
  return "/dev/shm/flatring-bridge." + ring + ".state";
}

}  // namespace

struct In::Impl {
  InOptions o;
  Ring ring;
  std::uint64_t max_record;
  Schema schema;  // empty for a raw ring
  RecordVerifier verifier;
  std::unique_ptr<Sink> sink;
  std::unique_ptr<StateFile> state;
  zmq::Context ctx;
  std::unique_ptr<ZapHandler> zap;
  zmq::Socket router;
  std::unique_ptr<Monitor> monitor;
  InStatus st;
  Clock::time_point next_status{};

  struct Session {
    std::uint64_t source = 0;
    SourceEntry* entry = nullptr;
    std::uint64_t rejected = 0;
    bool ack_due = false;
    bool resend_due = false;
  };
  std::map<std::string, Session> sessions;  // by ZeroMQ routing id
  std::vector<std::string> no_session_ids;  // to tell once per batch
  bool stopping = false;

  explicit Impl(InOptions opt)
      : o(std::move(opt)), router((check_endpoint(o.bind, o.security, "bind"), ctx), ZMQ_ROUTER) {
    ring = Ring::open(o.ring);
    const SegmentInfo& info = ring.info();
    max_record = info.max_record_size;
    schema = info.stored_schema;
    if (schema.empty() && !o.raw) {
      throw BridgeError(Reason::no_schema,
                        "flatring bridge: ring '" + o.ring +
                            "' stores no schema to verify records with (create it with --schema, "
                            "or accept length-capped raw records with --raw)");
    }
    if (!schema.empty()) {
      if (!RecordVerifier::supports(schema)) {
        throw BridgeError(Reason::no_schema, "flatring bridge: ring '" + o.ring +
                                                 "': " + schema.root_name() +
                                                 " cannot be verified by reflection (a vector of "
                                                 "unions, see RecordVerifier::supports)");
      }
      verifier = RecordVerifier(schema);
    }
    state = std::make_unique<StateFile>(
        o.state_file.empty() ? default_state_file(o.ring) : o.state_file, ring_identity(info));
    sink = visit_mode(info.mode, [&](auto mode) -> std::unique_ptr<Sink> {
      return std::make_unique<SinkOf<mode()>>(ring);
    });

    common_options(router, std::max<std::uint64_t>(max_record, wire::kBatchBytes) + 4096);
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
    st.bound = router.last_endpoint();
  }

  // The entry of `source`. A record whose commit a kill interrupted (state.hpp) is settled here:
  // committed, or not (then the peer sends it again).
  SourceEntry* entry_for(std::uint64_t source) {
    SourceEntry* e = state->entry(source);
    if (e != nullptr && e->pending != 0) {
      const bool committed = (e->has_last != 0 && e->pending_seq <= e->last) ||
                             (sink->exact() && sink->position() > e->pending_pos);
      StateFile::settle(*e, committed);
    }
    return e;
  }

  void log(const std::string& m) {
    st.last_error = m;
    if (o.on_log) o.on_log(m);
  }

  void reply(const std::string& id, wire::Type t, std::uint64_t a, std::uint64_t b,
             const std::string& text = {}) {
    zmq::Msg body(wire::kHeaderSize + text.size());
    wire::put_header(body.data(), {t, a, b});
    if (!text.empty()) std::memcpy(body.data() + wire::kHeaderSize, text.data(), text.size());
    if (zmq_send(router.get(), id.data(), id.size(), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) return;
    (void)body.send(router, ZMQ_DONTWAIT);
  }

  static std::uint64_t last_of(const SourceEntry& e) noexcept {
    return e.has_last ? e.last : wire::kNone;
  }

  void on_hello(const std::string& id, const wire::Header& h, std::span<const std::byte> body) {
    if (body.size() < 12) {
      st.rejected_malformed++;
      reply(id, wire::Type::refuse, static_cast<std::uint64_t>(wire::RefuseCode::bad_hello), 0,
            "malformed hello");
      return;
    }
    SchemaId peer_id;
    std::memcpy(peer_id.file_identifier, body.data(), 4);
    std::memcpy(&peer_id.hash, body.data() + 4, 8);
    const auto bfbs = body.subspan(12);
    std::string match;
    std::string why;
    const SchemaId& mine = ring.info().schema;
    if (!schema.empty() && !bfbs.empty()) {
      try {
        const Schema theirs =
            Schema::from_bfbs({reinterpret_cast<const std::uint8_t*>(bfbs.data()), bfbs.size()});
        const SchemaCheck c = check_compatible(schema, theirs);
        if (c.compatible) match = std::string(to_string(c.match));
        else why = c.why;
      } catch (const Error& e) {
        why = std::string("their schema is not a valid binary schema: ") + e.what();
      }
    } else if (peer_id == mine) {
      match = "identity_only";
    } else {
      why = "schema identity differs: theirs " +
            (peer_id.raw() ? std::string("raw") : "'" + peer_id.identifier() + "'") + ", ours " +
            (mine.raw() ? std::string("raw") : "'" + mine.identifier() + "'");
    }
    if (match.empty()) {
      st.refused_schema++;
      log("refused a peer: incompatible schema: " + why);
      reply(id, wire::Type::refuse, static_cast<std::uint64_t>(wire::RefuseCode::schema), 0, why);
      return;
    }
    SourceEntry* e = entry_for(h.a);
    if (e == nullptr) {
      reply(id, wire::Type::refuse, static_cast<std::uint64_t>(wire::RefuseCode::bad_hello), 0,
            "too many sources for one ring");
      return;
    }
    Session& s = sessions[id];
    s = Session{h.a, e, 0, false, false};
    st.sessions++;
    reply(id, wire::Type::welcome, last_of(*e), max_record, match);
  }

  // Waits for room for `n` bytes; false when stopped meanwhile (the record is then not taken:
  // the peer sends it again).
  std::optional<std::span<std::byte>> room(std::size_t n, const std::function<bool()>& stop) {
    bool counted = false;
    for (;;) {
      auto r = sink->reserve(n, std::chrono::milliseconds(100));
      if (r) return *r;
      switch (r.status()) {
        case Status::full:
        case Status::timed_out:
        case Status::no_consumer:
        case Status::peer_dead:
          if (!counted) st.full_waits++;
          counted = true;
          break;
        default: log("ring '" + o.ring + "': " + std::string(to_string(r.status()))); break;
      }
      // Back-pressure: we read nothing more from the network meanwhile, but tell the peers we
      // live, so that they wait rather than resend.
      for (auto& [id, s] : sessions) reply(id, wire::Type::ack, last_of(*s.entry), s.rejected);
      poll_side();
      if (stop()) {
        stopping = true;
        return std::nullopt;
      }
    }
  }

  void skip(Session& s, std::uint64_t seq) noexcept {
    StateFile::done(*s.entry, seq);
    s.rejected++;
  }

  // One entry of a DATA message. False when the rest of the message is to be dropped.
  bool on_entry(Session& s, const wire::EntryReader::Item& it, const std::function<bool()>& stop) {
    const wire::Entry& e = it.entry;
    st.received++;
    SourceEntry& se = *s.entry;
    if (se.has_last && e.seq <= se.last) {
      st.duplicates++;
      s.ack_due = true;
      return true;
    }
    if (e.prev != last_of(se) || e.seq == wire::kNone) {
      st.rejected_out_of_order++;
      s.resend_due = true;
      return true;  // count the rest too; each is out of order after this one
    }
    s.ack_due = true;
    if ((e.flags & wire::kOmitted) != 0 || e.len > max_record) {
      st.rejected_oversized++;
      skip(s, e.seq);
      return true;
    }
    auto at = room(e.len, stop);
    if (!at) return false;
    StateFile::begin(se, e.seq, sink->position());
    std::memcpy(at->data(), it.payload.data(), e.len);
    // Verified where it will be read: the reservation is 16-byte aligned, as the verifier wants,
    // and nobody sees it before the commit.
    if (!schema.empty() && !verifier.verify(std::span<const std::byte>(at->data(), e.len))) {
      sink->abort();
      st.rejected_verify++;
      skip(s, e.seq);
      return true;
    }
    const Status c = sink->commit(e.len);
    if (c != Status::ok) {
      log("ring '" + o.ring + "': commit failed: " + std::string(to_string(c)));
      StateFile::settle(se, false);
      stopping = c == Status::segment_lost;
      return false;
    }
    StateFile::done(se, e.seq);
    st.committed++;
    st.committed_bytes += e.len;
    return true;
  }

  void on_data(const std::string& id, std::span<const std::byte> body,
               const std::function<bool()>& stop) {
    auto found = sessions.find(id);
    if (found == sessions.end()) {
      st.rejected_no_session++;
      if (std::find(no_session_ids.begin(), no_session_ids.end(), id) == no_session_ids.end())
        no_session_ids.push_back(id);
      return;
    }
    Session& s = found->second;
    wire::EntryReader entries(body);
    while (auto it = entries.next()) {
      if (!on_entry(s, *it, stop)) return;
    }
    if (entries.malformed()) st.rejected_malformed++;
  }

  // One message from the router: [routing id][body], nothing more.
  void on_message(const std::function<bool()>& stop) {
    zmq::Msg idm;
    if (!idm.recv(router, ZMQ_DONTWAIT)) return;
    auto idb = idm.bytes();
    const std::string id(reinterpret_cast<const char*>(idb.data()), idb.size());
    if (!idm.more()) {
      st.rejected_malformed++;
      return;
    }
    zmq::Msg body;
    if (!body.recv(router, ZMQ_DONTWAIT)) return;
    if (body.more()) {
      zmq::skip_rest(router);
      st.rejected_malformed++;
      return;
    }
    const auto b = body.bytes();
    const auto h = wire::get_header(b);
    if (!h) {
      st.rejected_malformed++;
      return;
    }
    const auto rest = b.subspan(wire::kHeaderSize);
    switch (h->type) {
      case wire::Type::hello: on_hello(id, *h, rest); break;
      case wire::Type::data: on_data(id, rest, stop); break;
      default: st.rejected_malformed++; break;  // only an In sends the others
    }
  }

  void flush_replies() {
    for (auto& [id, s] : sessions) {
      if (s.resend_due) {
        reply(id, wire::Type::resend, last_of(*s.entry), s.rejected);
        st.acks++;
      } else if (s.ack_due) {
        reply(id, wire::Type::ack, last_of(*s.entry), s.rejected);
        st.acks++;
      }
      s.ack_due = s.resend_due = false;
    }
    for (const auto& id : no_session_ids) {
      reply(id, wire::Type::refuse, static_cast<std::uint64_t>(wire::RefuseCode::no_session), 0,
            "no session: send hello");
    }
    no_session_ids.clear();
  }

  // The monitor's events and the periodic status: also while waiting for room in the ring.
  void poll_side() {
    for (;;) {
      const Monitor::Event ev = monitor->next();
      if (ev.event == 0) break;
      if (ev.event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ||
          ev.event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        st.handshake_failed++;
    }
    const auto now = Clock::now();
    if (now >= next_status) {
      next_status = now + o.status_interval;
      if (o.on_status) o.on_status(snapshot());
    }
  }

  InStatus snapshot() const {
    InStatus s = st;
    if (zap) s.refused_auth = zap->refused();
    return s;
  }

  void run(const std::function<bool()>& stop) {
    void* socks[2] = {router.get(), monitor->socket().get()};
    while (!stopping && !stop()) {
      const unsigned ready = zmq::poll_in(socks, 2, 100);
      if (ready & 1u) {
        // A batch: as many messages as are waiting (bounded), then one ack per session.
        for (int i = 0; i < 256 && !stopping; ++i) {
          on_message(stop);
          int ev = 0;
          std::size_t n = sizeof ev;
          if (zmq_getsockopt(router.get(), ZMQ_EVENTS, &ev, &n) != 0 || !(ev & ZMQ_POLLIN)) break;
        }
        flush_replies();
      }
      poll_side();
    }
    if (o.on_status) o.on_status(snapshot());
  }
};

In::In(InOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
In::~In() = default;
const std::string& In::bound() const noexcept { return impl_->st.bound; }
void In::run(const std::function<bool()>& stop) { impl_->run(stop); }
InStatus In::status() const { return impl_->snapshot(); }

}  // namespace flatring::bridge
