// Keys, addresses, names and the JSON status of the bridge.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "flatring/bridge.hpp"

namespace flatring::bridge {

std::string_view to_string(Reason r) noexcept {
  switch (r) {
    case Reason::bad_address: return "bad_address";
    case Reason::insecure: return "insecure";
    case Reason::bad_key: return "bad_key";
    case Reason::no_schema: return "no_schema";
    case Reason::busy: return "busy";
    case Reason::bad_state: return "bad_state";
    case Reason::refused_schema: return "refused_schema";
    case Reason::refused_auth: return "refused_auth";
    case Reason::zmq: return "zmq";
  }
  return "unknown";
}

std::string_view to_string(LinkState s) noexcept {
  switch (s) {
    case LinkState::connecting: return "connecting";
    case LinkState::connected: return "connected";
    case LinkState::unreachable: return "unreachable";
  }
  return "unknown";
}

namespace {

[[noreturn]] void key_error(const std::string& what) {
  throw BridgeError(Reason::bad_key, "flatring bridge: " + what);
}

bool valid_z85_key(const std::string& k) {
  if (k.size() != 40) return false;
  std::uint8_t bin[32];
  return zmq_z85_decode(bin, k.c_str()) != nullptr;
}

void write_exclusive(const std::string& path, const std::string& text, mode_t mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) key_error("cannot create " + path + ": " + std::strerror(errno));
  ::fchmod(fd, mode);  // whatever the umask
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  if (!ok) key_error("cannot write " + path);
}

// "key = value" lines; '#' starts a comment.
std::string field(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    auto trim = [](std::string s) {
      const auto b = s.find_first_not_of(" \t\r");
      const auto e = s.find_last_not_of(" \t\r");
      return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
    };
    if (trim(line.substr(0, eq)) == name) return trim(line.substr(eq + 1));
  }
  return {};
}

std::string read_small_file(const std::string& path, bool secret) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) key_error("cannot open key file " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > 4096) {
    ::close(fd);
    key_error(path + " is not a key file");
  }
  if (secret && (st.st_mode & 077) != 0) {
    ::close(fd);
    key_error(path + " holds a secret key and is readable by others (chmod 600 it)");
  }
  std::string text(static_cast<std::size_t>(st.st_size), '\0');
  const ssize_t n = ::read(fd, text.data(), text.size());
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size())) key_error("cannot read " + path);
  return text;
}

}  // namespace

KeyPair generate_keys() {
  char pub[41], sec[41];
  if (zmq_curve_keypair(pub, sec) != 0) key_error("zmq_curve_keypair failed (no CURVE in libzmq?)");
  return KeyPair{pub, sec};
}

void write_keys(const std::string& base, const KeyPair& keys) {
  if (!valid_z85_key(keys.public_key) || !valid_z85_key(keys.secret_key)) key_error("bad key pair");
  const std::string pub =
      "# flatring bridge public key (CURVE, Z85)\npublic-key = " + keys.public_key + "\n";
  write_exclusive(base + ".key",
                  "# flatring bridge key pair (CURVE, Z85): keep this file secret\npublic-key = " +
                      keys.public_key + "\nsecret-key = " + keys.secret_key + "\n",
                  0600);
  try {
    write_exclusive(base + ".pub", pub, 0644);
  } catch (...) {
    ::unlink((base + ".key").c_str());
    throw;
  }
}

KeyPair read_key_pair(const std::string& path) {
  const std::string text = read_small_file(path, true);
  KeyPair k{field(text, "public-key"), field(text, "secret-key")};
  if (!valid_z85_key(k.public_key) || !valid_z85_key(k.secret_key))
    key_error(path + " holds no key pair (write one with flatring bridge keygen)");
  // The public key must be the secret key's: a mismatched pair fails the handshake obscurely.
  char derived[41];
  if (zmq_curve_public(derived, k.secret_key.c_str()) != 0 || k.public_key != derived)
    key_error(path + ": the public key is not the secret key's");
  return k;
}

std::string read_public_key(const std::string& path) {
  const std::string text = read_small_file(path, false);
  std::string k = field(text, "public-key");
  if (!valid_z85_key(k)) key_error(path + " holds no public key");
  return k;
}

bool is_loopback(std::string_view endpoint) noexcept {
  if (endpoint.substr(0, 6) == "ipc://") return true;
  if (endpoint.substr(0, 6) != "tcp://") return false;
  std::string_view hp = endpoint.substr(6);
  std::string_view host;
  if (!hp.empty() && hp[0] == '[') {
    const auto close = hp.find(']');
    if (close == std::string_view::npos) return false;
    host = hp.substr(1, close - 1);
  } else {
    const auto colon = hp.rfind(':');
    if (colon == std::string_view::npos) return false;
    host = hp.substr(0, colon);
  }
  if (host == "localhost" || host == "::1") return true;
  // 127.0.0.0/8, written as a dotted quad.
  if (host.substr(0, 4) != "127.") return false;
  int dots = 0;
  for (char c : host) {
    if (c == '.') ++dots;
    else if (c < '0' || c > '9') return false;
  }
  return dots == 3;
}

namespace {
// Insertion order kept (ordered_json); text that is not UTF-8 (last_error may quote what a peer
// sent) is replaced, not passed through into invalid JSON.
std::string dump(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}
}  // namespace

std::string to_json(const OutStatus& s) {
  return dump({{"side", "out"},
               {"state", std::string(to_string(s.state))},
               {"peer", s.peer},
               {"forwarded", s.forwarded},
               {"resent", s.resent},
               {"acknowledged", s.acknowledged},
               {"remote_rejected", s.remote_rejected},
               {"reconnects", s.reconnects},
               {"in_flight", s.in_flight},
               {"in_flight_bytes", s.in_flight_bytes},
               {"source_corrupt", s.source_corrupt},
               {"last_error", s.last_error}});
}

std::string to_json(const InStatus& s) {
  return dump({{"side", "in"},
               {"bound", s.bound},
               {"sessions", s.sessions},
               {"received", s.received},
               {"committed", s.committed},
               {"committed_bytes", s.committed_bytes},
               {"duplicates", s.duplicates},
               {"rejected_malformed", s.rejected_malformed},
               {"rejected_oversized", s.rejected_oversized},
               {"rejected_verify", s.rejected_verify},
               {"rejected_out_of_order", s.rejected_out_of_order},
               {"rejected_no_session", s.rejected_no_session},
               {"refused_schema", s.refused_schema},
               {"refused_auth", s.refused_auth},
               {"handshake_failed", s.handshake_failed},
               {"acks", s.acks},
               {"full_waits", s.full_waits},
               {"last_error", s.last_error}});
}

}  // namespace flatring::bridge
