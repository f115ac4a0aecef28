// flatring bridge out|in|keygen: rings across hosts over ZeroMQ (docs/bridge.md).
#include "commands_bridge.hpp"

#include <cstdio>
#include <fstream>

#include <flatring/bridge.hpp>

#include "commands.hpp"
#include "exit_codes.hpp"

namespace flatring::tool {

namespace {

using namespace flatring::bridge;

Exit exit_for(Reason r) noexcept {
  switch (r) {
    case Reason::bad_address:
    case Reason::insecure:
    case Reason::bad_key: return Exit::usage;
    case Reason::no_schema:
    case Reason::refused_schema: return Exit::schema;
    case Reason::busy: return Exit::busy;
    case Reason::bad_state: return Exit::bad_ring;
    case Reason::refused_auth: return Exit::refused;
    case Reason::zmq: return Exit::failure;
  }
  return Exit::failure;
}

// Writes the status atomically (a reader never sees half a file) and, with --json, prints it.
struct StatusSink {
  const BridgeOptions& o;
  void operator()(const std::string& json) const {
    if (o.json) {
      std::printf("%s\n", json.c_str());
      std::fflush(stdout);
    }
    if (!o.status_file.empty()) {
      const std::string tmp = o.status_file + ".tmp";
      {
        std::ofstream f(tmp, std::ios::trunc);
        f << json << "\n";
      }
      std::rename(tmp.c_str(), o.status_file.c_str());
    }
  }
};

void notice(const std::string& m) {
  std::fprintf(stderr, "flatring bridge: %s\n", m.c_str());
  std::fflush(stderr);
}

Security security_of(const BridgeOptions& o, bool server) {
  Security s;
  s.curve = !o.no_curve;
  if (!s.curve) return s;
  if (o.key.empty()) {
    throw BridgeError(Reason::bad_key, "CURVE is on: give --key FILE.key (flatring bridge keygen)");
  }
  s.keys = read_key_pair(o.key);
  if (server) {
    for (const auto& a : o.allow) s.allowed_keys.push_back(read_public_key(a));
  } else {
    if (o.server_key.empty())
      throw BridgeError(Reason::bad_key, "CURVE is on: give --server-key FILE.pub");
    s.server_key = read_public_key(o.server_key);
  }
  return s;
}

void run_out(const BridgeOptions& b) {
  OutOptions o;
  o.ring = b.ring;
  o.to = b.to;
  o.security = security_of(b, false);
  o.window_records = b.window;
  o.window_bytes = b.window_bytes;
  o.timeout = std::chrono::milliseconds(static_cast<long>(b.timeout * 1000));
  o.status_interval = std::chrono::milliseconds(static_cast<long>(b.status_interval * 1000));
  StatusSink sink{b};
  o.on_status = [&](const OutStatus& s) { sink(to_json(s)); };
  o.on_log = notice;
  Out out(std::move(o));
  notice("out: ring '" + b.ring + "' to " + b.to + (b.no_curve ? " (plaintext)" : " (CURVE)"));
  out.run([] { return stop_requested(); });
}

void run_in(const BridgeOptions& b) {
  InOptions o;
  o.ring = b.ring;
  o.bind = b.bind;
  o.security = security_of(b, true);
  o.state_file = b.state_file;
  o.raw = b.raw;
  o.status_interval = std::chrono::milliseconds(static_cast<long>(b.status_interval * 1000));
  StatusSink sink{b};
  o.on_status = [&](const InStatus& s) { sink(to_json(s)); };
  o.on_log = notice;
  In in(std::move(o));
  InStatus first = in.status();
  sink(to_json(first));
  notice("in: ring '" + b.ring + "' on " + in.bound() + (b.no_curve ? " (plaintext)" : " (CURVE)"));
  in.run([] { return stop_requested(); });
}

void run_keygen(const BridgeOptions& b) {
  const KeyPair k = generate_keys();
  write_keys(b.base, k);
  if (b.json) {
    std::printf("{\"key\":\"%s.key\",\"public\":\"%s.pub\",\"public_key\":\"%s\"}\n",
                b.base.c_str(), b.base.c_str(), k.public_key.c_str());
  } else {
    std::printf("wrote %s.key (secret, 0600) and %s.pub\npublic key: %s\n", b.base.c_str(),
                b.base.c_str(), k.public_key.c_str());
  }
}

}  // namespace

BridgeCommands add_bridge_commands(CLI::App& app, BridgeOptions& o) {
  auto* br = app.add_subcommand(
      "bridge", "Carry a ring's records to a ring on another host, verified and authenticated");
  br->require_subcommand(1);
  auto common = [&](CLI::App* s) {
    s->add_option("ring", o.ring, "Ring name")->required();
    s->add_option("--key", o.key, "Our CURVE key pair (a .key from flatring bridge keygen)");
    s->add_flag("--no-curve", o.no_curve,
                "Plaintext, no authentication: refused unless the address is loopback");
    s->add_flag("--json", o.json, "Print the status as JSON lines, every --status-interval");
    s->add_option("--status-file", o.status_file, "Keep the latest JSON status in this file");
    s->add_option("--status-interval", o.status_interval, "Seconds between status reports")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
  };
  BridgeCommands c;
  c.out = br->add_subcommand("out", "Read RING and forward its records to a bridge in");
  common(c.out);
  c.out->add_option("--to", o.to, "The bridge in's endpoint, tcp://HOST:PORT")->required();
  c.out->add_option("--server-key", o.server_key, "The bridge in's public key (.pub)");
  c.out->add_option("--window", o.window, "Records in flight before an acknowledgement")
      ->capture_default_str();
  c.out->add_option("--window-bytes", o.window_bytes, "Bytes in flight (at least one record)")
      ->transform(CLI::AsSizeValue(false))
      ->capture_default_str();
  c.out
      ->add_option("--timeout", o.timeout,
                   "Seconds without an answer before the peer is reported unreachable")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  c.in = br->add_subcommand("in", "Receive records, verify them against RING's schema, commit");
  common(c.in);
  c.in->add_option("--bind", o.bind, "Endpoint to listen on (port 0: any free port)")
      ->capture_default_str();
  c.in->add_option("--allow", o.allow, "A client public key (.pub) to accept; repeat for more");
  c.in->add_option("--state-file", o.state_file,
                   "Where the last committed sequence per source is kept "
                   "(default /dev/shm/flatring-bridge.RING.state)");
  c.in->add_flag("--raw", o.raw,
                 "Accept a ring without a stored schema: records are only length-capped");
  c.keygen = br->add_subcommand("keygen", "Write a CURVE key pair: BASE.key (0600) and BASE.pub");
  c.keygen->add_option("base", o.base, "Path without extension")->required();
  c.keygen->add_flag("--json", o.json, "Print the result as JSON");
  return c;
}

void run_bridge(const BridgeCommands& c, const BridgeOptions& o) {
  try {
    if (*c.out) run_out(o);
    else if (*c.in) run_in(o);
    else if (*c.keygen) run_keygen(o);
  } catch (const BridgeError& e) {
    std::string m = e.what();
    if (m.rfind("flatring bridge: ", 0) == 0) m.erase(0, 17);
    throw ToolError(exit_for(e.reason()), "bridge: " + m);
  }
}

}  // namespace flatring::tool
