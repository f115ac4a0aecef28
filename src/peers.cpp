// The one liveness check of a blocked endpoint, and the set-up errors every endpoint shares.
#include <string>

#include "flatring/endpoint.hpp"

namespace flatring::detail {

Status check_peers(const Ring& ring, PeerRule rule, bool& seen_producer) noexcept {
  const layout::Role other =
      rule == PeerRule::needs_producer ? layout::Role::producer : layout::Role::consumer;
  // Slot contents are untrusted: census only uses them for kill(pid, 0) and /proc lookups.
  const PeerCensus c = census(ring, other);
  if (c.dead != 0) ring.reap_dead_peers();
  switch (rule) {
    case PeerRule::needs_consumer:
      if (c.alive != 0) return Status::ok;
      return c.dead != 0 ? Status::peer_dead : Status::no_consumer;
    case PeerRule::lossless: return Status::ok;  // reaped consumers stop holding us back
    case PeerRule::needs_producer:
      if (c.alive != 0) {
        seen_producer = true;
        return Status::ok;
      }
      return c.dead != 0 || seen_producer ? Status::peer_dead : Status::ok;
  }
  return Status::ok;
}

void throw_corrupt_state(const Ring& ring, const std::string& what) {
  throw Error(Errc::corrupt_state, "flatring ring '" + ring.info().name + "': " + what);
}

void require_mode(const Ring& ring, Mode want, const char* who) {
  if (ring.info().mode != want) {
    throw Error(Errc::wrong_mode, "flatring ring '" + ring.info().name + "': a " + who + "<" +
                                      std::string(to_string(want)) +
                                      "> needs a ring of that mode; this ring's mode is " +
                                      std::string(to_string(ring.info().mode)));
  }
}

}  // namespace flatring::detail
