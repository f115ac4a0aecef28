// A ring's record schema at run time: JSON in, verified JSON out.
//
// The schema is a flatring::Schema: the binary schema stored in the ring (layout version 2), or
// one loaded from a .fbs or .bfbs file given with --schema. FlatBuffers' own parser and text
// generator do the JSON (a flatbuffers::Parser loaded from the binary schema with
// Parser::Deserialize; ParseJson, GenerateText). Records read from a ring are untrusted: to_json()
// verifies a buffer with flatring::RecordVerifier (FlatBuffers' reflection verifier with depth and
// table limits, plus the file identifier) before the text generator walks it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <flatring/schema.hpp>
#include <flatring/segment.hpp>

namespace flatbuffers {
class Parser;
}

namespace flatring::tool {

class SchemaFile {
 public:
  /// JSON through `schema` (\pre !schema.empty()). `pretty` indents the JSON that to_json
  /// produces. \throws ToolError(schema) when FlatBuffers cannot load the binary schema.
  SchemaFile(Schema schema, bool pretty);
  ~SchemaFile();
  SchemaFile(const SchemaFile&) = delete;
  SchemaFile& operator=(const SchemaFile&) = delete;

  [[nodiscard]] const Schema& schema() const noexcept { return verifier_.schema(); }
  /// e.g. "flatring.test.Msg"
  [[nodiscard]] const std::string& root_name() const noexcept { return schema().root_name(); }
  [[nodiscard]] const std::string& file_identifier() const noexcept {
    return schema().file_identifier();
  }
  /// Computed exactly as schema_of<Root>() does for the flatc-generated type.
  [[nodiscard]] SchemaId id() const noexcept {
    return SchemaId::of(root_name(), file_identifier());
  }

  /// Builds one finished FlatBuffer (with the file identifier) from one JSON object.
  /// \throws ToolError(bad_input) with FlatBuffers' message.
  [[nodiscard]] std::vector<std::uint8_t> from_json(const std::string& json);

  /// Writes the record as JSON to `out`; false, with `why` set, when it fails verification or
  /// cannot be printed. `bytes` must be 16-byte aligned private memory.
  [[nodiscard]] bool to_json(std::span<const std::byte> bytes, std::string& out,
                             std::string& why) const;

 private:
  RecordVerifier verifier_;
  std::unique_ptr<flatbuffers::Parser> parser_;
};

/// Loads the schema file given with --schema: a .fbs (FlatBuffers' parser; includes are looked
/// up beside it) or a .bfbs, chosen by its contents. `root_type` overrides a .fbs's root_type; a
/// .bfbs's root type cannot be changed, so it must name that one.
/// \throws ToolError(schema) naming the file and what is wrong with it.
[[nodiscard]] Schema load_schema_file(const std::string& path, const std::string& root_type);

/// The schema `command` ("tail", "send") reads or writes ring `ring`'s records with:
///  - no `path`: the ring's stored schema; \throws ToolError(schema) when it stores none;
///  - a `path`: that file (load_schema_file), after checking that its root type and file
///    identifier are the ring's (the identity in the header) and, when the ring stores a schema,
///    that the two are compatible (flatring::check_compatible); \throws ToolError(schema) naming
///    the first incompatibility.
[[nodiscard]] Schema schema_for_ring(const SegmentInfo& ring, const std::string& path,
                                     const std::string& root_type, const char* command);

/// The root type name a ring's records have, for tables: from its stored schema; "" when it
/// stores none.
[[nodiscard]] std::string root_type_of(const SegmentInfo& ring);

/// "FRTM/3f2a...": printable identity for messages and tables.
[[nodiscard]] std::string describe(const SchemaId& id);

}  // namespace flatring::tool
