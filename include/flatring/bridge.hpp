// flatring::bridge: verified records between rings on different hosts, over ZeroMQ.
//
//   ring A --Reader--> Out ==ZeroMQ (CURVE)==> In --Writer--> ring B
//
// Out reads records from a local ring and forwards them; In verifies each one against its own
// ring's stored schema and commits it. A record leaves ring A (is released, with
// Reader::keep/release_to) only after In committed it into ring B and acknowledged it, so killing
// either process loses nothing. Records carry their position in ring A as a sequence number and In
// keeps the last one committed per source in a state file beside ring B, so it drops what it
// already has after a reconnect or a restart of either side. docs/bridge.md has the protocol, the
// guarantees and their limits; docs/security.md the threat model.
//
// A separate library (flatring::bridge): the core library does not depend on ZeroMQ.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace flatring::bridge {

/// Why a bridge could not start or stopped. Each is a distinct, documented outcome.
enum class Reason : std::uint8_t {
  bad_address,     ///< the endpoint is not tcp://HOST:PORT (or ipc://PATH)
  insecure,        ///< plaintext (CURVE off) to or on an address that is not loopback
  bad_key,         ///< a key file is missing, unreadable, too open (a .key must be 0600) or bad
  no_schema,       ///< In: the ring stores no schema to verify with (and raw was not allowed), or
                   ///< one the reflection verifier cannot check (RecordVerifier::supports)
  busy,            ///< In: another bridge holds the ring's state file
  bad_state,       ///< In: the state file is not one of ours or belongs to another ring
  refused_schema,  ///< the peer's schema is incompatible (check_compatible), or its identity
  refused_auth,    ///< Out: the server did not accept our key (ZAP), or the CURVE handshake
                   ///< failed (e.g. CURVE on at one end only)
  zmq,             ///< ZeroMQ refused a setting or the bind (the message names it)
};

[[nodiscard]] std::string_view to_string(Reason r) noexcept;

class BridgeError : public std::runtime_error {
 public:
  BridgeError(Reason r, const std::string& what) : std::runtime_error(what), reason_(r) {}
  [[nodiscard]] Reason reason() const noexcept { return reason_; }

 private:
  Reason reason_;
};

/// A CURVE key pair as Z85 text (40 characters each).
struct KeyPair {
  std::string public_key;
  std::string secret_key;
};

/// A fresh key pair (zmq_curve_keypair).
[[nodiscard]] KeyPair generate_keys();
/// Writes `base`.key (both keys, mode 0600, created exclusively) and `base`.pub (the public key,
/// 0644). \throws BridgeError(bad_key) if either exists or cannot be written.
void write_keys(const std::string& base, const KeyPair& keys);
/// Reads a .key file written by write_keys. \throws BridgeError(bad_key) when it is missing,
/// readable by group or others, or not a key pair.
[[nodiscard]] KeyPair read_key_pair(const std::string& path);
/// Reads a public key from a .pub (or .key) file. \throws BridgeError(bad_key).
[[nodiscard]] std::string read_public_key(const std::string& path);

/// True for tcp:// on 127.0.0.0/8, ::1 or localhost, and for ipc:// (a local socket file).
[[nodiscard]] bool is_loopback(std::string_view endpoint) noexcept;

/// CURVE settings. CURVE is on unless `curve` is false, which is refused for any address that is
/// not loopback.
struct Security {
  bool curve = true;
  KeyPair keys;                           ///< our own pair (Out: client, In: server)
  std::string server_key;                 ///< Out: the In's public key
  std::vector<std::string> allowed_keys;  ///< In: the client public keys it accepts (ZAP)
};

/// Where a bridge's link stands.
enum class LinkState : std::uint8_t {
  connecting,   ///< handshake sent, no answer yet
  connected,    ///< the peer accepted us; records flow
  unreachable,  ///< no answer within the timeout (still retrying)
};
[[nodiscard]] std::string_view to_string(LinkState s) noexcept;

/// Out's counters (records unless named bytes).
struct OutStatus {
  LinkState state = LinkState::connecting;
  std::string peer;
  std::uint64_t forwarded = 0;        ///< records sent, resends included
  std::uint64_t resent = 0;           ///< of those, sent again after a reconnect or a gap
  std::uint64_t acknowledged = 0;     ///< records the peer confirmed and we released
  std::uint64_t remote_rejected = 0;  ///< of those, records the peer rejected (as it reports)
  std::uint64_t reconnects = 0;       ///< handshakes after the first
  std::uint64_t in_flight = 0;        ///< records sent and not yet acknowledged (the window)
  std::uint64_t in_flight_bytes = 0;
  std::uint64_t source_corrupt = 0;  ///< read attempts that found the local ring corrupt
  std::string last_error;            ///< the last thing that went wrong, for humans
};

/// In's counters.
struct InStatus {
  std::string bound;                        ///< the endpoint actually bound (port resolved)
  std::uint64_t sessions = 0;               ///< handshakes accepted
  std::uint64_t received = 0;               ///< record entries received
  std::uint64_t committed = 0;              ///< records committed into the ring
  std::uint64_t duplicates = 0;             ///< entries already committed (dropped, acknowledged)
  std::uint64_t rejected_malformed = 0;     ///< messages that are not a bridge frame (dropped)
  std::uint64_t rejected_oversized = 0;     ///< records above the ring's max_record_size (skipped)
  std::uint64_t rejected_verify = 0;        ///< records that failed verification (skipped)
  std::uint64_t rejected_out_of_order = 0;  ///< entries after a gap (dropped; resend asked)
  std::uint64_t rejected_no_session = 0;    ///< records from a peer without a handshake
  std::uint64_t refused_schema = 0;         ///< handshakes refused for an incompatible schema
  std::uint64_t refused_auth = 0;           ///< CURVE clients whose key is not allowed (ZAP)
  std::uint64_t handshake_failed = 0;       ///< ZMTP handshakes that failed (e.g. plaintext client)
  std::uint64_t acks = 0;                   ///< acknowledgements sent
  std::uint64_t full_waits = 0;             ///< times the ring was full (back-pressure on the peer)
  std::uint64_t committed_bytes = 0;
  std::string last_error;
};

/// The status as one JSON object (for --json and --status-file).
[[nodiscard]] std::string to_json(const OutStatus& s);
[[nodiscard]] std::string to_json(const InStatus& s);

struct OutOptions {
  std::string ring;  ///< the local ring to read (any mode; see docs/bridge.md for broadcast/mpmc)
  std::string to;    ///< tcp://HOST:PORT of the In
  Security security;
  /// The window: records and bytes sent and not yet acknowledged (at least one record always).
  std::uint32_t window_records = 4096;
  std::uint64_t window_bytes = 32u << 20;
  /// No answer for this long (to the handshake, or with records in flight): the link is reported
  /// unreachable and the handshake is sent again (which resends the unacknowledged records).
  std::chrono::milliseconds timeout{5000};
  std::chrono::milliseconds status_interval{1000};
  std::function<void(const OutStatus&)> on_status;  ///< every status_interval, and at the end
  std::function<void(const std::string&)> on_log;   ///< one-line notices (unreachable, ...)
};

/// Reads a local ring and forwards its records to an In. One per source ring and destination.
class Out {
 public:
  /// Opens the ring as a consumer and sets the link up (CURVE unless disabled). \throws
  /// BridgeError (bad_address, insecure, bad_key, zmq) or flatring::Error from the ring.
  explicit Out(OutOptions options);
  ~Out();
  Out(const Out&) = delete;
  Out& operator=(const Out&) = delete;
  /// Forwards until `stop()` returns true. Unacknowledged records stay in the ring (they are sent
  /// again by the next Out). \throws BridgeError(refused_schema, refused_auth) when the peer
  /// refuses us.
  void run(const std::function<bool()>& stop);
  [[nodiscard]] OutStatus status() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct InOptions {
  std::string ring;                           ///< the local ring to commit into (any mode)
  std::string bind = "tcp://127.0.0.1:5790";  ///< port 0 or *: chosen by the OS (see bound)
  Security security;
  /// Where the last committed sequence per source is kept; default
  /// /dev/shm/flatring-bridge.<ring>.state.
  std::string state_file;
  /// Accept a ring without a stored schema: records are then only length-capped, and the peer's
  /// schema identity must equal the ring's. Off by default.
  bool raw = false;
  std::chrono::milliseconds status_interval{1000};
  std::function<void(const InStatus&)> on_status;
  std::function<void(const std::string&)> on_log;
};

/// Receives records from Outs, verifies each against the local ring's schema and commits it.
class In {
 public:
  /// Opens the ring as a producer, the state file, and binds. \throws BridgeError (bad_address,
  /// insecure, bad_key, no_schema, busy, bad_state, zmq) or flatring::Error from the ring.
  explicit In(InOptions options);
  ~In();
  In(const In&) = delete;
  In& operator=(const In&) = delete;
  /// The endpoint bound, with the port resolved.
  [[nodiscard]] const std::string& bound() const noexcept;
  /// Receives until `stop()` returns true.
  void run(const std::function<bool()>& stop);
  [[nodiscard]] InStatus status() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace flatring::bridge
