#include "schema_file.hpp"

#include <flatbuffers/idl.h>
#include <fmt/format.h>

#include "exit_codes.hpp"

namespace flatring::tool {

namespace {

std::string one_line(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

std::string strip_prefix(std::string s, std::string_view prefix) {
  if (s.rfind(prefix, 0) == 0) s.erase(0, prefix.size());
  return s;
}

}  // namespace

SchemaFile::SchemaFile(Schema schema, bool pretty) : verifier_(std::move(schema)) {
  flatbuffers::IDLOptions opts;
  opts.strict_json = true;             // quoted field names: real JSON
  opts.indent_step = pretty ? 2 : -1;  // -1: one line per record
  opts.output_default_scalars_in_json = true;
  opts.natural_utf8 = true;
  parser_ = std::make_unique<flatbuffers::Parser>(opts);
  const auto bfbs = verifier_.schema().bfbs();
  // The bytes were verified as a reflection.Schema already (Schema::from_bfbs); Deserialize
  // verifies them again and rebuilds the parser's tables from them.
  if (bfbs.empty() || !parser_->Deserialize(bfbs.data(), bfbs.size())) {
    throw ToolError(Exit::schema,
                    fmt::format("FlatBuffers cannot load the binary schema of {} for JSON",
                                verifier_.schema().root_name()));
  }
  if (parser_->root_struct_def_ == nullptr) {
    throw ToolError(Exit::schema,
                    "the binary schema names no root type FlatBuffers can use for JSON");
  }
  // The parser finishes ParseJson's buffers with its file identifier; it must be the schema's.
  parser_->file_identifier_ = verifier_.schema().file_identifier();
}

SchemaFile::~SchemaFile() = default;

std::vector<std::uint8_t> SchemaFile::from_json(const std::string& json) {
  if (!parser_->ParseJson(json.c_str())) {
    // "1: 12: error: unknown field: x": the line and column are in our re-serialized copy of the
    // record, not in the user's input, so only the message is kept.
    std::string m = one_line(parser_->error_);
    if (const auto p = m.find("error: "); p != std::string::npos) m.erase(0, p + 7);
    throw ToolError(Exit::bad_input, m);
  }
  const auto& b = parser_->builder_;
  return {b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize()};
}

bool SchemaFile::to_json(std::span<const std::byte> bytes, std::string& out,
                         std::string& why) const {
  if (!verifier_.verify(bytes)) {
    // Why, for the message only: the verdict is RecordVerifier's.
    const auto* buf = reinterpret_cast<const std::uint8_t*>(bytes.data());
    const std::string& ident = file_identifier();
    if (bytes.size() >= FLATBUFFERS_MAX_BUFFER_SIZE) {
      why = "larger than a FlatBuffer can be";
    } else if (!ident.empty() && (bytes.size() < sizeof(flatbuffers::uoffset_t) +
                                                     flatbuffers::kFileIdentifierLength ||
                                  !flatbuffers::BufferHasIdentifier(buf, ident.c_str()))) {
      why = fmt::format("file identifier is not '{}'", ident);
    } else {
      why = fmt::format("not a valid {} (FlatBuffers verification failed)", root_name());
    }
    return false;
  }
  out.clear();
  if (!flatbuffers::GenerateText(*parser_, bytes.data(), &out)) {
    why = "verified, but not printable as JSON (a string is not valid UTF-8)";
    return false;
  }
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return true;
}

// ---------------------------------------------------------------- loading and checking

Schema load_schema_file(const std::string& path, const std::string& root_type) {
  Schema schema;
  try {
    schema = Schema::from_file(path, {}, root_type);
  } catch (const Error& e) {
    std::string m = one_line(strip_prefix(e.what(), "flatring schema: "));
    if (m.rfind("cannot read", 0) == 0) {
      throw ToolError(Exit::schema, fmt::format("cannot read schema file '{}'", path));
    }
    m = strip_prefix(std::move(m), "'" + path + "': ");
    throw ToolError(Exit::schema, fmt::format("schema '{}': {}", path, m));
  }
  // A .fbs's root type was set by the parser (fully qualified, so it ends with what was asked
  // for); a .bfbs's is fixed.
  const std::string& root = schema.root_name();
  if (!root_type.empty() && root != root_type &&
      !(root.size() > root_type.size() && root.ends_with("." + root_type))) {
    throw ToolError(Exit::schema,
                    fmt::format("schema '{}': its root type is {}; --root-type {} cannot change a "
                                "binary schema's root type",
                                path, root, root_type));
  }
  return schema;
}

Schema schema_for_ring(const SegmentInfo& ring, const std::string& path,
                       const std::string& root_type, const char* command) {
  const Schema& stored = ring.stored_schema;
  if (path.empty()) {
    if (!stored.empty()) return stored;
    if (ring.schema.raw()) {
      throw ToolError(Exit::schema,
                      fmt::format("ring '{}' is a raw ring (no schema): its records are not "
                                  "FlatBuffers, so {} has no JSON form for them",
                                  ring.name, command));
    }
    throw ToolError(Exit::schema,
                    fmt::format("ring '{}' stores no schema (only its identity, {}): pass its .fbs "
                                "or .bfbs with --schema",
                                ring.name, describe(ring.schema)));
  }
  Schema mine = load_schema_file(path, root_type);
  const SchemaId id = SchemaId::of(mine.root_name(), mine.file_identifier());
  if (!(ring.schema == id)) {
    throw ToolError(
        Exit::schema,
        fmt::format("schema mismatch: ring '{}' holds {}{}, the schema's root type {} is {}",
                    ring.name, describe(ring.schema),
                    stored.empty() ? "" : " (" + stored.root_name() + ")", mine.root_name(),
                    describe(id)));
  }
  if (!stored.empty()) {
    const SchemaCheck check = check_compatible(stored, mine);
    if (!check.compatible) {
      throw ToolError(
          Exit::schema,
          fmt::format("schema mismatch: '{}' is not compatible with the schema stored in "
                      "ring '{}': {}",
                      path, ring.name, check.why));
    }
  }
  return mine;
}

std::string root_type_of(const SegmentInfo& ring) { return ring.stored_schema.root_name(); }

std::string describe(const SchemaId& id) {
  if (id.raw()) return "raw";
  return fmt::format("{}/{:016x}", id.identifier().empty() ? "-" : id.identifier(), id.hash);
}

}  // namespace flatring::tool
