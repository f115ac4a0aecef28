#include "schema_file.hpp"

#include <flatbuffers/idl.h>
#include <flatbuffers/reflection.h>
#include <flatbuffers/util.h>
#include <fmt/format.h>

#include <filesystem>

#include "exit_codes.hpp"

namespace flatring::tool {

namespace {

std::string one_line(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

}  // namespace

SchemaFile::SchemaFile(const std::string& path, const std::string& root_type, bool pretty) {
  flatbuffers::IDLOptions opts;
  opts.strict_json = true;  // quoted field names: real JSON
  opts.indent_step = pretty ? 2 : -1;  // -1: one line per record
  opts.output_default_scalars_in_json = true;
  opts.natural_utf8 = true;
  parser_ = std::make_unique<flatbuffers::Parser>(opts);

  std::string source;
  if (!flatbuffers::LoadFile(path.c_str(), false, &source)) {
    throw ToolError(Exit::schema, fmt::format("cannot read schema file '{}'", path));
  }
  const std::string dir = std::filesystem::path(path).parent_path().string();
  const std::string include_dir = dir.empty() ? std::string("./") : dir + "/";
  const char* includes[] = {include_dir.c_str(), nullptr};
  if (!parser_->Parse(source.c_str(), includes, path.c_str())) {
    throw ToolError(Exit::schema, fmt::format("schema '{}': {}", path, one_line(parser_->error_)));
  }
  if (!root_type.empty() && !parser_->SetRootType(root_type.c_str())) {
    throw ToolError(Exit::schema, fmt::format("schema '{}': no table named '{}'", path, root_type));
  }
  const flatbuffers::StructDef* root = parser_->root_struct_def_;
  if (root == nullptr) {
    throw ToolError(Exit::schema,
                    fmt::format("schema '{}' declares no root_type (name one with --root-type)", path));
  }
  root_name_ = root->defined_namespace != nullptr
                   ? root->defined_namespace->GetFullyQualifiedName(root->name)
                   : root->name;
  id_ = SchemaId::of(root_name_, parser_->file_identifier_);

  parser_->Serialize();
  const auto& b = parser_->builder_;
  reflection_.assign(b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize());
}

SchemaFile::~SchemaFile() = default;

const std::string& SchemaFile::file_identifier() const noexcept { return parser_->file_identifier_; }

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

bool SchemaFile::to_json(std::span<const std::byte> bytes, std::string& out, std::string& why) const {
  const auto* buf = reinterpret_cast<const std::uint8_t*>(bytes.data());
  // The verifier asserts on buffers of 2 GiB and more: reject them before it sees them.
  if (bytes.size() >= FLATBUFFERS_MAX_BUFFER_SIZE) {
    why = "larger than a FlatBuffer can be";
    return false;
  }
  const std::string& ident = parser_->file_identifier_;
  if (!ident.empty()) {
    if (bytes.size() < sizeof(flatbuffers::uoffset_t) + flatbuffers::kFileIdentifierLength ||
        !flatbuffers::BufferHasIdentifier(buf, ident.c_str())) {
      why = fmt::format("file identifier is not '{}'", ident);
      return false;
    }
  }
  const reflection::Schema* schema = reflection::GetSchema(reflection_.data());
  if (schema->root_table() == nullptr ||
      !flatbuffers::Verify(*schema, *schema->root_table(), buf, bytes.size())) {
    why = fmt::format("not a valid {} (FlatBuffers verification failed)", root_name_);
    return false;
  }
  out.clear();
  if (!flatbuffers::GenerateText(*parser_, buf, &out)) {
    why = "verified, but not printable as JSON (a string is not valid UTF-8)";
    return false;
  }
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return true;
}

std::string describe(const SchemaId& id) {
  if (id.raw()) return "raw";
  return fmt::format("{}/{:016x}", id.identifier().empty() ? "-" : id.identifier(), id.hash);
}

void require_same_schema(const SegmentInfo& ring, const SchemaFile& schema) {
  if (ring.schema == schema.id()) return;
  throw ToolError(Exit::schema,
                  fmt::format("schema mismatch: ring '{}' holds {}, the schema's root type {} is {}",
                              ring.name, describe(ring.schema), schema.root_name(),
                              describe(schema.id())));
}

}  // namespace flatring::tool
