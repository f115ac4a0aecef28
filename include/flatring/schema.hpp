// A ring's stored schema: the root type's binary schema (.bfbs, a reflection::Schema), checked as
// untrusted input, and the compatibility check between two schemas by FlatBuffers' evolution
// rules.
//
// The binary schema comes from generated code (flatc --bfbs-gen-embed, which flatring_add_schema
// turns on), from a .fbs (FlatBuffers' own Parser) or from a .bfbs file. A Schema always holds a
// private, verified copy: nothing is ever read twice from shared memory or from a file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "flatring/status.hpp"

namespace reflection {
struct Schema;
struct Object;
}  // namespace reflection

namespace flatring {

/// Limits for checking a binary schema that came from an untrusted place (a segment, a file, the
/// network).
struct SchemaLimits {
  /// Largest binary schema accepted. A typical schema is a few KiB.
  std::size_t max_size = 1u << 20;
  /// Nesting depth and table count limits of the FlatBuffers verifier run over the schema itself.
  std::uint32_t max_depth = 64;
  std::uint32_t max_tables = 100'000;
};

/// A verified binary schema with a root type. Cheap to copy (shared, immutable).
class Schema {
 public:
  /// Checks `bfbs` as untrusted input and keeps a private copy. \throws Error with
  /// schema_too_large (above limits.max_size), schema_too_deep (nesting beyond limits.max_depth),
  /// corrupt_schema (not a reflection.Schema buffer) or schema_no_root (no root type).
  [[nodiscard]] static Schema from_bfbs(std::span<const std::uint8_t> bfbs,
                                        const SchemaLimits& limits = {});
  /// Parses a .fbs file with FlatBuffers' Parser (includes are looked up beside it and in
  /// `include_dirs`). `root_type` overrides the file's root_type. \throws Error(invalid_schema)
  /// naming the parser's error, or as from_bfbs.
  [[nodiscard]] static Schema from_fbs_file(const std::string& path,
                                            const std::vector<std::string>& include_dirs = {},
                                            std::string_view root_type = {});
  /// Reads a .fbs or a .bfbs file, chosen by its contents (a .bfbs carries identifier "BFBS").
  [[nodiscard]] static Schema from_file(const std::string& path,
                                        const std::vector<std::string>& include_dirs = {},
                                        std::string_view root_type = {});

  explicit Schema() = default;  // explicit: `{}` in Ring::create means a SchemaId

  [[nodiscard]] bool empty() const noexcept { return impl_ == nullptr; }
  /// The binary schema's bytes (a private copy).
  [[nodiscard]] std::span<const std::uint8_t> bfbs() const noexcept;
  /// FNV-1a 64 of the bytes: what the segment header stores next to them.
  [[nodiscard]] std::uint64_t hash() const noexcept;
  /// The root table's fully qualified name, e.g. "app.Order".
  [[nodiscard]] const std::string& root_name() const noexcept;
  /// The file identifier the schema declares ("" when none).
  [[nodiscard]] const std::string& file_identifier() const noexcept;
  /// The schema, for FlatBuffers' reflection API. \pre !empty()
  [[nodiscard]] const reflection::Schema& reflection() const noexcept;
  /// The root table. \pre !empty()
  [[nodiscard]] const reflection::Object& root() const noexcept;

  /// A readable, .fbs-like listing of the schema (namespaces, enums, structs, tables with field
  /// ids, types and defaults, root_type, file_identifier), for `flatring schema`.
  [[nodiscard]] std::string describe() const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

/// How an endpoint's schema relates to the schema stored in the ring.
enum class SchemaMatch : std::uint8_t {
  identical,       ///< the same schema: byte for byte, or field by field (each side conforms
                   ///< to the other; the bytes may differ with the tool that serialized them)
  endpoint_newer,  ///< the endpoint's schema is a compatible evolution of the ring's: fields it
                   ///< added are invisible to the ring's older readers, and read as their defaults
                   ///< in records from the ring's older writers
  ring_newer,      ///< the ring's schema is a compatible evolution of the endpoint's: the endpoint
                   ///< does not see the fields the ring's schema added
  identity_only,   ///< one side has no binary schema: only the root type name and file identifier
                   ///< were compared
};

[[nodiscard]] std::string_view to_string(SchemaMatch m) noexcept;

/// The outcome of a compatibility check: a match, or why there is none.
struct SchemaCheck {
  bool compatible = false;
  SchemaMatch match = SchemaMatch::identical;
  /// When not compatible: the first incompatibility, naming the table and field.
  std::string why;
};

/// Compares `endpoint` with `ring` by FlatBuffers' evolution rules, in both directions
/// (Parser::ConformTo, plus: the root types are the same, no field of the older schema is missing
/// from the newer one, field ids, types and defaults are unchanged).
[[nodiscard]] SchemaCheck check_compatible(const Schema& ring, const Schema& endpoint);

/// Verifies records against a schema with FlatBuffers' reflection verifier
/// (flatbuffers::Verify over reflection::Schema): for consumers without generated code (tools,
/// bindings, the bridge). Thread-safe (no state besides the schema).
class RecordVerifier {
 public:
  struct Limits {
    std::uint32_t max_depth = 64;
    std::uint32_t max_tables = 1'000'000;
  };
  RecordVerifier() = default;
  /// A verifier for records of `schema`. When !supports(schema), verify() refuses every record.
  RecordVerifier(Schema schema, Limits limits);
  explicit RecordVerifier(Schema schema) : RecordVerifier(std::move(schema), Limits{}) {}

  /// False for a schema the reflection verifier cannot check safely: one with a vector of unions.
  /// FlatBuffers 2.0.8's flatbuffers::Verify does not check such a vector against its type vector,
  /// so one hostile record (a short or missing type vector) fails an assertion or reads out of
  /// bounds (found by fuzz/fuzz_schema.cpp; fuzz/known_bugs/schema-union-vector-short-types).
  /// Generated code's verifiers do check them: use Consumer<Root, M> for such schemas.
  [[nodiscard]] static bool supports(const Schema& schema) noexcept;

  /// True when `bytes` is a valid buffer of the schema's root type, carrying its file identifier
  /// (when the schema declares one), and each nested flatbuffer in it (a `[ubyte]` field with the
  /// nested_flatbuffer attribute) a valid buffer of its table, as generated code verifies them.
  /// Only a binary schema with builtin attributes says which fields are nested flatbuffers
  /// (flatring_add_schema and Schema::from_fbs_file make them so; `flatc --schema` needs
  /// --bfbs-builtins): without them such a field is checked as plain bytes, and a reader of its
  /// nested root must verify it first. Never reads outside `bytes`: for a schema with table or
  /// union fields, whose places FlatBuffers 2.0.8's reflection verifier reads before checking
  /// them (up to 64 KiB past the buffer), the record is verified in a copy private to the calling
  /// thread (its size plus 64 KiB, kept for the thread's next record) and those places are checked
  /// to lie inside the record. \pre `bytes` is 8-byte aligned (FlatBuffers' own verifier checks
  /// the alignment of scalars).
  [[nodiscard]] bool verify(std::span<const std::byte> bytes) const noexcept;
  [[nodiscard]] const Schema& schema() const noexcept { return schema_; }

 private:
  Schema schema_;
  Limits limits_;
  bool supported_ = false;
  bool nested_ = false;  // the schema has nested flatbuffers: each is verified too
  // The schema has table or union fields, whose places FlatBuffers 2.0.8's reflection verifier
  // reads unchecked: records are verified in a private copy with room after it, and those places
  // are checked (src/schema.cpp, kReflectionOverread).
  bool padded_ = false;
};

}  // namespace flatring
