// The typed layer's out-of-line pieces: root type names and the schema check at attach.
#include <string>

#include "flatring/typed.hpp"

namespace flatring::detail {

std::string dotted_name(std::string_view cxx) {
  std::string out;
  for (std::size_t i = 0; i < cxx.size(); ++i) {
    const char c = cxx[i];
    if (c == ' ' || c == '\t' || c == '\n') continue;
    if (c == ':' && i + 1 < cxx.size() && cxx[i + 1] == ':') {
      if (!out.empty()) out.push_back('.');  // a leading "::" names the global namespace
      ++i;
      continue;
    }
    out.push_back(c);
  }
  return out;
}

SchemaMatch require_schema(const Ring& ring, const SchemaId& want, const Schema& mine) {
  const SegmentInfo& info = ring.info();
  const Schema& stored = info.stored_schema;
  auto refuse = [&](const std::string& why) -> SchemaMatch {
    throw Error(Errc::wrong_schema, "flatring ring '" + info.name + "': " + why);
  };
  if (!(info.schema == want)) {
    if (info.schema.raw())
      return refuse("a raw ring (no schema); this endpoint's root type is '" +
                    (mine.empty() ? want.identifier() : mine.root_name()) + "'");
    if (!stored.empty() && !mine.empty()) {
      return refuse("the ring holds " + stored.root_name() + " (identifier '" +
                    info.schema.identifier() + "'), this endpoint's root type is " +
                    mine.root_name() + " (identifier '" + want.identifier() + "')");
    }
    return refuse("holds schema '" + info.schema.identifier() +
                  "', this endpoint's root type is '" + want.identifier() +
                  "' (or its name hash differs)");
  }
  const SchemaCheck c = check_compatible(stored, mine);
  if (!c.compatible) return refuse("incompatible schema: " + c.why);
  return c.match;
}

}  // namespace flatring::detail
