// Schemas from Python values, and JSON through a schema (FlatBuffers' own parser and text
// generator, driven by the binary schema).
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <pybind11/pybind11.h>

#include <flatring/schema.hpp>

namespace flatbuffers {
class Parser;
}

namespace flatring::python {

/// The schema a Python `schema=` argument names: None (nothing), a path (str or os.PathLike) to
/// a .fbs or .bfbs file, or the bytes of a binary schema (any bytes-like object).
/// \throws flatring::Error as Schema::from_file / from_bfbs (SchemaError), TypeError.
std::optional<Schema> schema_from_arg(pybind11::handle arg);

/// JSON to records and back with FlatBuffers' Parser loaded from a binary schema (strict JSON
/// out). \pre one thread at a time.
class JsonCodec {
 public:
  /// \throws Error(invalid_schema) if FlatBuffers cannot load the binary schema.
  explicit JsonCodec(const Schema& schema);
  ~JsonCodec();
  JsonCodec(const JsonCodec&) = delete;
  JsonCodec& operator=(const JsonCodec&) = delete;

  /// The record `json` describes, as a finished FlatBuffer of the root type (valid until the
  /// next call). \throws ValueError naming the parser's error.
  std::span<const std::byte> parse(std::string_view json);
  /// The JSON text of a record. \pre `record` was verified against the schema.
  /// \throws ValueError when the generator fails.
  std::string generate(std::span<const std::byte> record);

 private:
  std::unique_ptr<flatbuffers::Parser> parser_;
};

}  // namespace flatring::python
