// A FlatBuffers schema loaded at run time from a .fbs file: JSON in, verified JSON out.
//
// Uses FlatBuffers' own parser and text generator (flatbuffers::Parser, GenerateText). Records
// read from a ring are untrusted: to_json() verifies a buffer against the reflection form of the
// schema (flatbuffers::Verify with depth and table limits) and checks the file identifier before
// the text generator walks it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <flatring/segment.hpp>

namespace flatbuffers {
class Parser;
}

namespace flatring::tool {

class SchemaFile {
 public:
  /// Loads and parses `path` (includes are resolved next to it). `root_type` overrides the
  /// schema's root_type when not empty. `pretty` indents the JSON that to_json produces.
  /// \throws ToolError(schema) naming the file and FlatBuffers' message.
  SchemaFile(const std::string& path, const std::string& root_type, bool pretty);
  ~SchemaFile();
  SchemaFile(const SchemaFile&) = delete;
  SchemaFile& operator=(const SchemaFile&) = delete;

  /// e.g. "flatring.test.Msg"
  [[nodiscard]] const std::string& root_name() const noexcept { return root_name_; }
  [[nodiscard]] const std::string& file_identifier() const noexcept;
  /// Computed exactly as schema_of<Root>() does for the flatc-generated type.
  [[nodiscard]] const SchemaId& id() const noexcept { return id_; }

  /// Builds one finished FlatBuffer (with the file identifier) from one JSON object.
  /// \throws ToolError(bad_input) with FlatBuffers' message.
  [[nodiscard]] std::vector<std::uint8_t> from_json(const std::string& json);

  /// Writes the record as JSON to `out`; false, with `why` set, when it fails verification or
  /// cannot be printed. `bytes` must be 16-byte aligned private memory.
  [[nodiscard]] bool to_json(std::span<const std::byte> bytes, std::string& out, std::string& why) const;

 private:
  std::unique_ptr<flatbuffers::Parser> parser_;
  std::vector<std::uint8_t> reflection_;  // the schema in reflection form, for flatbuffers::Verify
  std::string root_name_;
  SchemaId id_;
};

/// Checks that a ring holds records of this schema.
/// \throws ToolError(schema) naming both identities.
void require_same_schema(const SegmentInfo& ring, const SchemaFile& schema);

/// "FRTM/3f2a...": printable identity for messages and tables.
[[nodiscard]] std::string describe(const SchemaId& id);

}  // namespace flatring::tool
