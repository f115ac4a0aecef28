#include "intake.hpp"

#include <algorithm>
#include <cstring>

#include "link.hpp"

namespace flatring::bridge {

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

namespace {

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

std::uint64_t last_of(const SourceEntry& e) noexcept { return e.has_last ? e.last : wire::kNone; }

}  // namespace

Intake::Intake(Ring ring, const std::string& state_file, bool raw, Hooks hooks)
    : ring_name_(ring.info().name), hooks_(std::move(hooks)), ring_(std::move(ring)) {
  const SegmentInfo& info = ring_.info();
  max_record_ = info.max_record_size;
  schema_ = info.stored_schema;
  if (schema_.empty() && !raw) {
    throw BridgeError(Reason::no_schema,
                      "flatring bridge: ring '" + ring_name_ +
                          "' stores no schema to verify records with (create it with --schema, "
                          "or accept length-capped raw records with --raw)");
  }
  if (!schema_.empty()) {
    if (!RecordVerifier::supports(schema_)) {
      throw BridgeError(Reason::no_schema, "flatring bridge: ring '" + ring_name_ +
                                               "': " + schema_.root_name() +
                                               " cannot be verified by reflection (a vector of "
                                               "unions, see RecordVerifier::supports)");
    }
    verifier_ = RecordVerifier(schema_);
  }
  state_ = std::make_unique<StateFile>(state_file, ring_identity(info));
  sink_ = visit_mode(info.mode, [&](auto mode) -> std::unique_ptr<Sink> {
    return std::make_unique<SinkOf<mode()>>(ring_);
  });
}

Intake::~Intake() = default;

// The entry of `source`. A record whose commit a kill interrupted (state.hpp) is settled here:
// committed, or not (then the peer sends it again).
SourceEntry* Intake::entry_for(std::uint64_t source) {
  SourceEntry* e = state_->entry(source);
  if (e != nullptr && e->pending != 0) {
    const bool committed = (e->has_last != 0 && e->pending_seq <= e->last) ||
                           (sink_->exact() && sink_->position() > e->pending_pos);
    StateFile::settle(*e, committed);
  }
  return e;
}

void Intake::log(const std::string& m) {
  st_.last_error = m;
  if (hooks_.on_log) hooks_.on_log(m);
}

void Intake::reply(const std::string& id, wire::Type t, std::uint64_t a, std::uint64_t b,
                   const std::string& text) {
  if (hooks_.reply) hooks_.reply(id, t, a, b, text);
}

void Intake::on_hello(const std::string& id, const wire::Header& h,
                      std::span<const std::byte> body) {
  if (body.size() < 12) {
    st_.rejected_malformed++;
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
  const SchemaId& mine = ring_.info().schema;
  if (!schema_.empty() && !bfbs.empty()) {
    try {
      const Schema theirs =
          Schema::from_bfbs({reinterpret_cast<const std::uint8_t*>(bfbs.data()), bfbs.size()});
      const SchemaCheck c = check_compatible(schema_, theirs);
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
    st_.refused_schema++;
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
  Session& s = sessions_[id];
  s = Session{h.a, e, 0, false, false};
  st_.sessions++;
  reply(id, wire::Type::welcome, last_of(*e), max_record_, match);
}

// Waits for room for `n` bytes; nothing when stopped meanwhile (the record is then not taken:
// the peer sends it again).
std::optional<std::span<std::byte>> Intake::room(std::size_t n, const std::function<bool()>& stop) {
  bool counted = false;
  for (;;) {
    auto r = sink_->reserve(n, std::chrono::milliseconds(100));
    if (r) return *r;
    switch (r.status()) {
      case Status::full:
      case Status::timed_out:
      case Status::no_consumer:
      case Status::peer_dead:
        if (!counted) st_.full_waits++;
        counted = true;
        break;
      default: log("ring '" + ring_name_ + "': " + std::string(to_string(r.status()))); break;
    }
    // Back-pressure: we read nothing more from the network meanwhile, but tell the peers we
    // live, so that they wait rather than resend.
    for (auto& [id, s] : sessions_) reply(id, wire::Type::ack, last_of(*s.entry), s.rejected);
    if (hooks_.waiting) hooks_.waiting();
    if (stop()) {
      stopping_ = true;
      return std::nullopt;
    }
  }
}

void Intake::skip(Session& s, std::uint64_t seq) noexcept {
  StateFile::done(*s.entry, seq);
  s.rejected++;
}

// One entry of a DATA message. False when the rest of the message is to be dropped.
bool Intake::on_entry(Session& s, const wire::EntryReader::Item& it,
                      const std::function<bool()>& stop) {
  const wire::Entry& e = it.entry;
  st_.received++;
  SourceEntry& se = *s.entry;
  if (se.has_last && e.seq <= se.last) {
    st_.duplicates++;
    s.ack_due = true;
    return true;
  }
  if (e.prev != last_of(se) || e.seq == wire::kNone) {
    st_.rejected_out_of_order++;
    s.resend_due = true;
    return true;  // count the rest too; each is out of order after this one
  }
  s.ack_due = true;
  if ((e.flags & wire::kOmitted) != 0 || e.len > max_record_) {
    st_.rejected_oversized++;
    skip(s, e.seq);
    return true;
  }
  auto at = room(e.len, stop);
  if (!at) return false;
  StateFile::begin(se, e.seq, sink_->position());
  std::memcpy(at->data(), it.payload.data(), e.len);
  // Verified where it will be read: the reservation is 16-byte aligned, as the verifier wants,
  // and nobody sees it before the commit.
  if (!schema_.empty() && !verifier_.verify(std::span<const std::byte>(at->data(), e.len))) {
    sink_->abort();
    st_.rejected_verify++;
    skip(s, e.seq);
    return true;
  }
  const Status c = sink_->commit(e.len);
  if (c != Status::ok) {
    log("ring '" + ring_name_ + "': commit failed: " + std::string(to_string(c)));
    StateFile::settle(se, false);
    stopping_ = c == Status::segment_lost;
    return false;
  }
  StateFile::done(se, e.seq);
  st_.committed++;
  st_.committed_bytes += e.len;
  return true;
}

void Intake::on_data(const std::string& id, std::span<const std::byte> body,
                     const std::function<bool()>& stop) {
  auto found = sessions_.find(id);
  if (found == sessions_.end()) {
    st_.rejected_no_session++;
    if (std::find(no_session_ids_.begin(), no_session_ids_.end(), id) == no_session_ids_.end())
      no_session_ids_.push_back(id);
    return;
  }
  Session& s = found->second;
  wire::EntryReader entries(body);
  while (auto it = entries.next()) {
    if (!on_entry(s, *it, stop)) return;
  }
  if (entries.malformed()) st_.rejected_malformed++;
}

void Intake::on_message(const std::string& id, std::span<const std::byte> message,
                        const std::function<bool()>& stop) {
  const auto h = wire::get_header(message);
  if (!h) {
    st_.rejected_malformed++;
    return;
  }
  const auto rest = message.subspan(wire::kHeaderSize);
  switch (h->type) {
    case wire::Type::hello: on_hello(id, *h, rest); break;
    case wire::Type::data: on_data(id, rest, stop); break;
    default: st_.rejected_malformed++; break;  // only an In sends the others
  }
}

void Intake::flush_replies() {
  for (auto& [id, s] : sessions_) {
    if (s.resend_due) {
      reply(id, wire::Type::resend, last_of(*s.entry), s.rejected);
      st_.acks++;
    } else if (s.ack_due) {
      reply(id, wire::Type::ack, last_of(*s.entry), s.rejected);
      st_.acks++;
    }
    s.ack_due = s.resend_due = false;
  }
  for (const auto& id : no_session_ids_) {
    reply(id, wire::Type::refuse, static_cast<std::uint64_t>(wire::RefuseCode::no_session), 0,
          "no session: send hello");
  }
  no_session_ids_.clear();
}

}  // namespace flatring::bridge
