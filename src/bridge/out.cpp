// The sending bridge: records from the local ring, forwarded in a window of unacknowledged ones
// that stay in the ring (Reader::keep) until the In confirms them (Reader::release_to).
#include <zmq.h>

#include <algorithm>
#include <memory>
#include <random>
#include <vector>

#include "flatring/bridge.hpp"
#include "flatring/flatring.hpp"
#include "link.hpp"
#include "wire.hpp"

namespace flatring::bridge {

namespace {

/// The local ring's consumer, whatever its mode.
struct Source {
  virtual ~Source() = default;
  /// try_read when `t` is 0, else read(t).
  virtual Result<RecordView> read(std::chrono::nanoseconds t) = 0;
  /// Moves past the held record without freeing it (mpmc: nothing; the record stays held).
  virtual void keep() = 0;
  /// Frees the kept records below `end` (mpmc: releases the held record).
  virtual void release_to(std::uint64_t end) = 0;
  [[nodiscard]] virtual std::uint64_t position() const = 0;
  /// False for mpmc, whose consumers hold one record at a time: a window of one.
  [[nodiscard]] virtual bool keeps() const = 0;
  virtual Status recover() = 0;
};

template <Mode M>
struct SourceOf final : Source {
  explicit SourceOf(Ring ring) : r(std::move(ring)) {}
  static constexpr bool kKeeps = requires(Reader<M> & x) { x.keep(); };
  Result<RecordView> read(std::chrono::nanoseconds t) override {
    return t.count() == 0 ? r.try_read() : r.read(t);
  }
  void keep() override {
    if constexpr (kKeeps) r.keep();
  }
  void release_to(std::uint64_t end) override {
    if constexpr (kKeeps) r.release_to(end);
    else r.release();
  }
  std::uint64_t position() const override { return r.position(); }
  bool keeps() const override { return kKeeps; }
  Status recover() override { return r.recover(); }
  Reader<M> r;
};

std::string random_routing_id() {
  std::random_device rd;
  std::string id = "frb-";
  for (int i = 0; i < 12; ++i) id += static_cast<char>('a' + rd() % 26);
  return id;
}

}  // namespace

struct Out::Impl {
  OutOptions o;
  Ring ring;
  std::unique_ptr<Source> src;
  std::uint64_t source_id = 0;
  std::uint64_t window = 1;
  zmq::Context ctx;
  zmq::Socket dealer;
  std::unique_ptr<Monitor> monitor;
  OutStatus st;

  struct Flight {
    std::uint64_t seq;
    std::uint64_t end;  // the source position just past it, for release_to
    std::span<const std::byte> bytes;
    bool sent;
  };
  // The window, oldest first: a ring of slots that grows (doubling) only when the window reaches
  // a size it never had, so a steady stream allocates nothing (a std::deque allocated a block
  // every dozen records as the window slid).
  class Window {
   public:
    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    Flight& front() noexcept { return slots_[head_]; }
    Flight& operator[](std::size_t i) noexcept { return slots_[(head_ + i) & (slots_.size() - 1)]; }
    void push_back(const Flight& f) {
      if (size_ == slots_.size()) grow();
      (*this)[size_++] = f;
    }
    void pop_front() noexcept {
      head_ = (head_ + 1) & (slots_.size() - 1);
      --size_;
    }

   private:
    void grow() {
      std::vector<Flight> bigger(std::max<std::size_t>(16, 2 * slots_.size()));
      for (std::size_t i = 0; i < size_; ++i) bigger[i] = (*this)[i];
      slots_ = std::move(bigger);
      head_ = 0;
    }
    std::vector<Flight> slots_;  // a power of two in size
    std::size_t head_ = 0;
    std::size_t size_ = 0;
  };
  Window fl;
  std::size_t cursor = 0;  // fl[0, cursor) are sent on the current session
  std::uint64_t remote_last = wire::kNone;
  std::uint64_t remote_max = 0;
  std::uint64_t rejected_base = 0;  // remote_rejected from earlier sessions
  bool connected = false;
  bool ever_connected = false;
  bool hello_due = true;
  // The source ring read corrupt and recover() could not move past it: wait() then sleeps on the
  // socket instead of retrying the ring at once (a corrupt read returns at once), and the position
  // is logged once.
  bool source_stuck = false;
  std::uint64_t stuck_logged_at = wire::kNone;
  // handshake_at: when the current handshake round began (sent or not: with ZMQ_IMMEDIATE a
  // hello is only taken once a connection is up).
  Clock::time_point handshake_at{}, heard_at{}, next_status{}, next_unreachable_log{};

  std::vector<std::byte> batch;
  std::size_t batch_count = 0;

  explicit Impl(OutOptions opt)
      : o(std::move(opt)), dealer((check_endpoint(o.to, o.security, "peer"), ctx), ZMQ_DEALER) {
    ring = Ring::open(o.ring);
    source_id = ring_identity(ring.info());
    src = visit_mode(ring.info().mode, [&](auto mode) -> std::unique_ptr<Source> {
      return std::make_unique<SourceOf<mode()>>(ring);
    });
    window = src->keeps() ? std::max<std::uint32_t>(o.window_records, 1) : 1;
    st.peer = o.to;
    common_options(dealer, 64 * 1024);  // the In's replies are small
    dealer.set(ZMQ_IMMEDIATE, 1);       // nothing queued towards a peer that is not there
    dealer.set(ZMQ_SNDHWM, static_cast<int>(std::min<std::uint64_t>(window + 64, 1 << 20)));
    dealer.set_string(ZMQ_ROUTING_ID, random_routing_id());
    if (o.security.curve) {
      if (o.security.server_key.empty())
        throw BridgeError(Reason::bad_key, "flatring bridge: CURVE is on and no server key given");
      dealer.set_string(ZMQ_CURVE_SERVERKEY, o.security.server_key);
      dealer.set_string(ZMQ_CURVE_PUBLICKEY, o.security.keys.public_key);
      dealer.set_string(ZMQ_CURVE_SECRETKEY, o.security.keys.secret_key);
    }
    monitor = std::make_unique<Monitor>(
        ctx, dealer, "out-" + std::to_string(reinterpret_cast<std::uintptr_t>(this)));
    dealer.connect(o.to);
    batch.reserve(wire::kBatchBytes + wire::kOverhead);
  }

  void log(const std::string& m) {
    st.last_error = m;
    if (o.on_log) o.on_log(m);
  }

  void send_hello(Clock::time_point now) {
    const SegmentInfo& info = ring.info();
    const auto bfbs =
        info.stored_schema.empty() ? std::span<const std::uint8_t>{} : info.stored_schema.bfbs();
    zmq::Msg m(wire::kHeaderSize + 12 + bfbs.size());
    wire::put_header(m.data(), {wire::Type::hello, source_id, info.max_record_size});
    std::memcpy(m.data() + wire::kHeaderSize, info.schema.file_identifier, 4);
    std::memcpy(m.data() + wire::kHeaderSize + 4, &info.schema.hash, 8);
    if (!bfbs.empty()) std::memcpy(m.data() + wire::kHeaderSize + 12, bfbs.data(), bfbs.size());
    (void)now;
    if (m.send(dealer, ZMQ_DONTWAIT)) hello_due = false;
  }

  void release_acked(std::uint64_t last) {
    if (last == wire::kNone) return;
    bool any = false;
    std::uint64_t end = 0;
    while (!fl.empty() && fl.front().seq <= last) {
      end = fl.front().end;
      st.in_flight_bytes -= fl.front().bytes.size();
      fl.pop_front();
      if (cursor > 0) --cursor;
      st.acknowledged++;
      any = true;
    }
    if (any) src->release_to(end);
    st.in_flight = fl.size();
  }

  void lost_link(const std::string& why, Clock::time_point now) {
    connected = false;
    hello_due = true;
    handshake_at = now;
    st.state = LinkState::unreachable;
    if (now >= next_unreachable_log) {
      log(why);
      next_unreachable_log = now + o.timeout;
    }
  }

  [[noreturn]] void refused(Reason r, const std::string& why) {
    log(why);
    throw BridgeError(r, "flatring bridge: " + why);
  }

  // Replies from the In. True if any came.
  bool drain_input(Clock::time_point now) {
    bool any = false;
    for (int i = 0; i < 1024; ++i) {
      zmq::Msg m;
      if (!m.recv(dealer, ZMQ_DONTWAIT)) break;
      any = true;
      if (m.more()) {
        zmq::skip_rest(dealer);
        continue;
      }
      const auto b = m.bytes();
      const auto h = wire::get_header(b);
      if (!h) continue;  // not ours: ignored (an authenticated In sends only frames)
      heard_at = now;
      const auto text = b.subspan(wire::kHeaderSize);
      const std::string why(reinterpret_cast<const char*>(text.data()),
                            std::min<std::size_t>(text.size(), 1024));
      switch (h->type) {
        case wire::Type::welcome:
          if (ever_connected && !connected) st.reconnects++;
          ever_connected = connected = true;
          st.state = LinkState::connected;
          remote_last = h->a;
          remote_max = h->b;
          rejected_base = st.remote_rejected;
          release_acked(remote_last);
          cursor = 0;  // everything still in flight goes again on this session
          break;
        case wire::Type::ack:
          if (!connected) break;
          if (h->a != wire::kNone) remote_last = h->a;
          release_acked(h->a);
          st.remote_rejected = rejected_base + h->b;
          break;
        case wire::Type::resend:
          if (!connected) break;
          remote_last = h->a;
          release_acked(h->a);
          cursor = 0;
          break;
        case wire::Type::refuse:
          switch (static_cast<wire::RefuseCode>(h->a)) {
            case wire::RefuseCode::schema:
              refused(Reason::refused_schema, "the peer refused our schema: " + why);
            case wire::RefuseCode::no_session:
              if (connected) {
                connected = false;
                hello_due = true;
                handshake_at = now;
                st.state = LinkState::connecting;
                log("the peer does not know our session (it restarted?): handshake again");
              }
              break;
            default: refused(Reason::busy, "the peer refused the handshake: " + why);
          }
          break;
        default: break;
      }
    }
    return any;
  }

  void check_monitor() {
    for (;;) {
      const Monitor::Event ev = monitor->next();
      if (ev.event == 0) return;
      if (ev.event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
        refused(Reason::refused_auth, "the peer " + o.to + " did not accept our key (status " +
                                          std::to_string(ev.value) + ")");
      }
      if (ev.event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
        refused(
            Reason::refused_auth, "the security handshake with " + o.to + " failed (ZMTP error 0x" +
                                      [&] {
                                        char b[16];
                                        std::snprintf(b, sizeof b, "%x", ev.value);
                                        return std::string(b);
                                      }() +
                                      "; CURVE on at one end only, or the wrong server key?)");
      }
    }
  }

  bool flush() {
    if (batch_count == 0) return true;
    const bool ok = zmq::send_bytes(dealer, batch, ZMQ_DONTWAIT);
    if (ok) {
      for (std::size_t i = 0; i < batch_count; ++i) {
        Flight& f = fl[cursor + i];
        st.forwarded++;
        if (f.sent) st.resent++;
        f.sent = true;
      }
      cursor += batch_count;
    }
    batch.clear();
    batch_count = 0;
    return ok;
  }

  // Adds fl[cursor + batch_count] to the batch (or sends it alone when large). False when the
  // socket takes nothing now.
  bool add(std::size_t i) {
    const Flight& f = fl[i];
    const std::uint64_t prev = i == 0 ? remote_last : fl[i - 1].seq;
    const bool omit = remote_max != 0 && f.bytes.size() > remote_max;
    const std::uint64_t body = omit ? 0 : wire::padded(f.bytes.size());
    const wire::Entry e{f.seq, prev, f.bytes.size(), omit ? wire::kOmitted : 0};
    if (wire::kEntrySize + body > wire::kBatchBytes / 2) {
      if (!flush()) return false;
      zmq::Msg m(wire::kHeaderSize + wire::kEntrySize + (omit ? 0 : f.bytes.size()));
      wire::put_header(m.data(), {wire::Type::data, 0, 0});
      wire::put_entry(m.data() + wire::kHeaderSize, e);
      if (!omit) std::memcpy(m.data() + wire::kOverhead, f.bytes.data(), f.bytes.size());
      if (!m.send(dealer, ZMQ_DONTWAIT)) return false;
      Flight& g = fl[cursor];
      st.forwarded++;
      if (g.sent) st.resent++;
      g.sent = true;
      ++cursor;
      return true;
    }
    if (batch.size() + wire::kEntrySize + body > wire::kBatchBytes && !flush()) return false;
    if (batch.empty()) {
      batch.resize(wire::kHeaderSize);
      wire::put_header(batch.data(), {wire::Type::data, 0, 0});
    }
    const std::size_t at = batch.size();
    batch.resize(at + wire::kEntrySize + body);
    wire::put_entry(batch.data() + at, e);
    if (!omit) {
      std::memcpy(batch.data() + at + wire::kEntrySize, f.bytes.data(), f.bytes.size());
      std::memset(batch.data() + at + wire::kEntrySize + f.bytes.size(), 0, body - f.bytes.size());
    }
    ++batch_count;
    return true;
  }

  // Sends what is unsent in the window, then new records while the window has room.
  bool pump() {
    bool progress = false;
    while (cursor + batch_count < fl.size()) {
      if (!add(cursor + batch_count)) return progress;
      progress = true;
    }
    while (fl.size() < window && st.in_flight_bytes < o.window_bytes) {
      auto r = src->read(std::chrono::nanoseconds::zero());
      if (!r) {
        if (r.status() == Status::corrupt) {
          st.source_corrupt++;
          const Status fixed = src->recover();
          // abandoned: it moved past the bad bytes; ok: a record is held, the next read has it.
          if (fixed == Status::abandoned || fixed == Status::ok) continue;
          source_stuck = true;
          if (stuck_logged_at != src->position()) {
            stuck_logged_at = src->position();
            log("the source ring is corrupt at position " + std::to_string(stuck_logged_at) +
                " and cannot be repaired here: retrying every 20 ms (flatring stat shows it)");
          }
        } else if (r.status() == Status::abandoned) {
          continue;
        }
        break;
      }
      const std::uint64_t seq = r->position;
      src->keep();
      if (remote_last != wire::kNone && seq <= remote_last && fl.empty()) {
        // The In has it already (a record we sent before a restart): free it now.
        src->release_to(src->position());
        st.acknowledged++;
        progress = true;
        continue;
      }
      fl.push_back(Flight{seq, src->position(), r->bytes, false});
      st.in_flight_bytes += r->bytes.size();
      st.in_flight = fl.size();
      progress = true;
      if (!add(fl.size() - 1)) break;
    }
    if (!flush()) {
      // Not taken now (the peer went away or the queue is full): the batch goes again later.
    }
    return progress;
  }

  void wait() {
    const bool room =
        !source_stuck && connected && fl.size() < window && st.in_flight_bytes < o.window_bytes;
    source_stuck = false;
    if (room) {
      // Wait on the ring (futex); shorter while acknowledgements are due on the socket.
      auto r = src->read(fl.empty() ? std::chrono::milliseconds(20) : std::chrono::milliseconds(1));
      (void)r;  // a record stays held for pump(); other outcomes are seen there again
      return;
    }
    void* socks[2] = {dealer.get(), monitor->socket().get()};
    (void)zmq::poll_in(socks, 2, 20);
  }

  void run(const std::function<bool()>& stop) {
    heard_at = handshake_at = Clock::now();
    while (!stop()) {
      const auto now = Clock::now();
      if (hello_due) send_hello(now);
      bool progress = drain_input(now);
      check_monitor();
      if (connected) progress = pump() || progress;
      if (!connected && now - handshake_at >= o.timeout) {
        lost_link("no answer from " + o.to + " within " + std::to_string(o.timeout.count()) +
                      " ms (still trying)",
                  now);
      } else if (connected && !fl.empty() && now - heard_at >= o.timeout) {
        lost_link("no acknowledgement from " + o.to + " within " +
                      std::to_string(o.timeout.count()) + " ms (still trying)",
                  now);
      }
      if (!connected && st.state == LinkState::connected) st.state = LinkState::connecting;
      if (now >= next_status) {
        next_status = now + o.status_interval;
        if (o.on_status) o.on_status(st);
      }
      if (!progress) wait();
    }
    if (o.on_status) o.on_status(st);
  }
};

Out::Out(OutOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Out::~Out() = default;
void Out::run(const std::function<bool()>& stop) { impl_->run(stop); }
OutStatus Out::status() const { return impl_->st; }

}  // namespace flatring::bridge
