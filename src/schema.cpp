#include "flatring/schema.hpp"

#include <flatbuffers/idl.h>
#include <flatbuffers/reflection.h>
#include <flatbuffers/reflection_generated.h>
#include <flatbuffers/util.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>

#include "flatring/segment.hpp"

namespace flatring {

namespace {

[[noreturn]] void fail(Errc code, const std::string& what) {
  throw Error(code, "flatring schema: " + what);
}

bool verify_schema(std::span<const std::uint8_t> b, std::uint32_t depth, std::uint32_t tables) {
  flatbuffers::Verifier v(b.data(), b.size(), depth, tables);
  return reflection::VerifySchemaBuffer(v);
}

// As a .fbs spells it: "ulong", "string" (reflection's own names, lower-cased).
std::string base_type_name(reflection::BaseType t) {
  const auto i = static_cast<std::size_t>(t);
  if (i > static_cast<std::size_t>(reflection::MaxBaseType)) return "?";
  std::string n = reflection::EnumNamesBaseType()[i];
  for (char& c : n) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return n;
}

// "int", "string", "[ubyte]", "app.Order", "[app.Item]", "app.Color" (an enum-typed int).
std::string type_name(const reflection::Schema& s, const reflection::Type& t) {
  auto named = [&](reflection::BaseType b, std::int32_t index) -> std::string {
    if ((b == reflection::Obj) && index >= 0 && s.objects() != nullptr &&
        static_cast<std::uint32_t>(index) < s.objects()->size()) {
      return s.objects()->Get(static_cast<std::uint32_t>(index))->name()->str();
    }
    if (b != reflection::Obj && index >= 0 && s.enums() != nullptr &&
        static_cast<std::uint32_t>(index) < s.enums()->size()) {
      return s.enums()->Get(static_cast<std::uint32_t>(index))->name()->str();
    }
    return base_type_name(b);
  };
  if (t.base_type() == reflection::Vector) return "[" + named(t.element(), t.index()) + "]";
  if (t.base_type() == reflection::Array) {
    return "[" + named(t.element(), t.index()) + ":" + std::to_string(t.fixed_length()) + "]";
  }
  return named(t.base_type(), t.index());
}

std::string fnv_hex(std::uint64_t h) {
  std::ostringstream o;
  o << std::hex << h;
  return o.str();
}

}  // namespace

struct Schema::Impl {
  std::vector<std::uint8_t> bytes;
  std::uint64_t hash = 0;
  std::string root_name;
  std::string file_identifier;
  const reflection::Schema* schema = nullptr;  // into `bytes`
  const reflection::Object* root = nullptr;
};

Schema Schema::from_bfbs(std::span<const std::uint8_t> bfbs, const SchemaLimits& limits) {
  if (bfbs.size() > limits.max_size) {
    fail(Errc::schema_too_large, "the binary schema is " + std::to_string(bfbs.size()) +
                                     " bytes; at most " + std::to_string(limits.max_size) +
                                     " are accepted");
  }
  auto impl = std::make_shared<Impl>();
  // The private copy first: everything below reads only it (8-byte aligned: vector storage).
  impl->bytes.assign(bfbs.begin(), bfbs.end());
  const std::span<const std::uint8_t> mine(impl->bytes);
  if (mine.size() >= FLATBUFFERS_MAX_BUFFER_SIZE ||
      !verify_schema(mine, limits.max_depth, limits.max_tables)) {
    // The same bytes with no depth limit: if they pass, nesting was the only problem.
    if (mine.size() < FLATBUFFERS_MAX_BUFFER_SIZE &&
        verify_schema(mine, std::numeric_limits<std::uint32_t>::max() / 2, limits.max_tables)) {
      fail(Errc::schema_too_deep,
           "the binary schema nests deeper than " + std::to_string(limits.max_depth) + " levels");
    }
    fail(Errc::corrupt_schema, "not a binary schema (reflection.Schema, identifier BFBS): the "
                               "FlatBuffers verifier refused its " +
                                   std::to_string(mine.size()) + " bytes");
  }
  impl->schema = reflection::GetSchema(mine.data());
  impl->root = impl->schema->root_table();
  if (impl->root == nullptr || impl->root->name() == nullptr) {
    fail(Errc::schema_no_root, "the binary schema declares no root type (root_type)");
  }
  impl->root_name = impl->root->name()->str();
  if (impl->schema->file_ident() != nullptr)
    impl->file_identifier = impl->schema->file_ident()->str();
  impl->hash = fnv1a64(std::string_view(reinterpret_cast<const char*>(mine.data()), mine.size()));
  Schema s;
  s.impl_ = std::move(impl);
  return s;
}

Schema Schema::from_fbs_file(const std::string& path, const std::vector<std::string>& include_dirs,
                             std::string_view root_type) {
  std::string text;
  if (!flatbuffers::LoadFile(path.c_str(), false, &text)) {
    fail(Errc::invalid_schema, "cannot read '" + path + "'");
  }
  std::vector<std::string> dirs{flatbuffers::StripFileName(path)};
  dirs.insert(dirs.end(), include_dirs.begin(), include_dirs.end());
  std::vector<const char*> cdirs;
  for (const auto& d : dirs) cdirs.push_back(d.c_str());
  cdirs.push_back(nullptr);
  flatbuffers::IDLOptions opts;
  opts.binary_schema_comments = false;
  flatbuffers::Parser parser(opts);
  if (!parser.Parse(text.c_str(), cdirs.data(), path.c_str())) {
    fail(Errc::invalid_schema, "'" + path + "': " + parser.error_);
  }
  if (!root_type.empty() && !parser.SetRootType(std::string(root_type).c_str())) {
    fail(Errc::invalid_schema, "'" + path + "' has no table '" + std::string(root_type) + "'");
  }
  if (parser.root_struct_def_ == nullptr) {
    fail(Errc::schema_no_root, "'" + path + "' declares no root_type (pass the root type)");
  }
  parser.Serialize();
  return from_bfbs({parser.builder_.GetBufferPointer(), parser.builder_.GetSize()});
}

Schema Schema::from_file(const std::string& path, const std::vector<std::string>& include_dirs,
                         std::string_view root_type) {
  std::string bytes;
  if (!flatbuffers::LoadFile(path.c_str(), true, &bytes)) {
    fail(Errc::invalid_schema, "cannot read '" + path + "'");
  }
  const bool binary = bytes.size() >= 8 && std::memcmp(bytes.data() + 4, "BFBS", 4) == 0;
  if (!binary) return from_fbs_file(path, include_dirs, root_type);
  return from_bfbs({reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()});
}

std::span<const std::uint8_t> Schema::bfbs() const noexcept {
  return impl_ ? std::span<const std::uint8_t>(impl_->bytes) : std::span<const std::uint8_t>{};
}
std::uint64_t Schema::hash() const noexcept { return impl_ ? impl_->hash : 0; }
const std::string& Schema::root_name() const noexcept {
  static const std::string none;
  return impl_ ? impl_->root_name : none;
}
const std::string& Schema::file_identifier() const noexcept {
  static const std::string none;
  return impl_ ? impl_->file_identifier : none;
}
const reflection::Schema& Schema::reflection() const noexcept { return *impl_->schema; }
const reflection::Object& Schema::root() const noexcept { return *impl_->root; }

std::string Schema::describe() const {
  if (!impl_) return "";
  const reflection::Schema& s = *impl_->schema;
  std::ostringstream o;
  o << "// binary schema, " << impl_->bytes.size() << " bytes, fnv1a64 " << fnv_hex(impl_->hash)
    << "\n";
  if (s.enums() != nullptr) {
    for (const auto* e : *s.enums()) {
      o << (e->is_union() ? "union " : "enum ") << e->name()->str();
      if (!e->is_union() && e->underlying_type() != nullptr) {
        o << " : " << base_type_name(e->underlying_type()->base_type());
      }
      o << " {";
      if (e->values() != nullptr) {
        const char* sep = " ";
        for (const auto* v : *e->values()) {
          o << sep << v->name()->str() << " = " << v->value();
          sep = ", ";
        }
      }
      o << " }\n";
    }
  }
  if (s.objects() != nullptr) {
    for (const auto* obj : *s.objects()) {
      o << (obj->is_struct() ? "struct " : "table ") << obj->name()->str() << " {\n";
      std::vector<const reflection::Field*> fields;
      if (obj->fields() != nullptr) fields.assign(obj->fields()->begin(), obj->fields()->end());
      std::sort(fields.begin(), fields.end(),
                [](const auto* a, const auto* b) { return a->id() < b->id(); });
      for (const auto* f : fields) {
        o << "  " << f->name()->str() << ": " << type_name(s, *f->type());
        const auto bt = f->type()->base_type();
        if (bt >= reflection::Bool && bt <= reflection::ULong && f->default_integer() != 0) {
          o << " = " << f->default_integer();
        } else if ((bt == reflection::Float || bt == reflection::Double) &&
                   f->default_real() != 0) {
          o << " = " << f->default_real();
        }
        o << " (id: " << f->id() << (f->deprecated() ? ", deprecated" : "")
          << (f->required() ? ", required" : "") << ");\n";
      }
      o << "}\n";
    }
  }
  o << "root_type " << impl_->root_name << ";\n";
  if (!impl_->file_identifier.empty())
    o << "file_identifier \"" << impl_->file_identifier << "\";\n";
  return o.str();
}

// ---------------------------------------------------------------- compatibility

std::string_view to_string(SchemaMatch m) noexcept {
  switch (m) {
    case SchemaMatch::identical: return "identical";
    case SchemaMatch::endpoint_newer: return "endpoint_newer";
    case SchemaMatch::ring_newer: return "ring_newer";
    case SchemaMatch::identity_only: return "identity_only";
  }
  return "unknown";
}

namespace {

const reflection::Object* find_object(const reflection::Schema& s,
                                      const flatbuffers::String* name) {
  return s.objects() != nullptr ? s.objects()->LookupByKey(name->c_str()) : nullptr;
}

// The first way in which `newer` is not a safe evolution of `older` (by name, per table both
// hold): a field of the older one missing, or its id, type or default changed. "" when none;
// then FlatBuffers' own Parser::ConformTo has the last word. `older_is` and `newer_is` name the
// sides in the message ("the ring", "this endpoint").
std::string evolution_issue(const Schema& older, const Schema& newer, const char* older_is,
                            const char* newer_is) {
  const reflection::Schema& o = older.reflection();
  const reflection::Schema& n = newer.reflection();
  if (o.objects() == nullptr) return "";
  for (const auto* oo : *o.objects()) {
    const reflection::Object* no = find_object(n, oo->name());
    if (no == nullptr || oo->fields() == nullptr) continue;  // a table the newer one dropped
    std::vector<const reflection::Field*> fields(oo->fields()->begin(), oo->fields()->end());
    std::sort(fields.begin(), fields.end(),
              [](const auto* a, const auto* b) { return a->id() < b->id(); });
    for (const auto* of : fields) {
      const std::string where = "field " + oo->name()->str() + "." + of->name()->str();
      const reflection::Field* nf =
          no->fields() != nullptr ? no->fields()->LookupByKey(of->name()->c_str()) : nullptr;
      if (nf == nullptr) {
        return where + " is in " + older_is + "'s schema but missing from " + newer_is +
               "'s (a field is deprecated, never removed)";
      }
      if (nf->id() != of->id()) {
        return where + " has id " + std::to_string(of->id()) + " in " + older_is +
               "'s schema and " + std::to_string(nf->id()) + " in " + newer_is +
               "'s (ids are reordered or a field was " + "removed before it)";
      }
      const std::string ot = type_name(o, *of->type()), nt = type_name(n, *nf->type());
      if (ot != nt || of->type()->base_type() != nf->type()->base_type()) {
        return where + " changed type: " + ot + " in " + older_is + "'s schema, " + nt + " in " +
               newer_is + "'s";
      }
      if (of->default_integer() != nf->default_integer() ||
          of->default_real() != nf->default_real()) {
        return where + " changed its default value";
      }
    }
  }
  return "";
}

std::unique_ptr<flatbuffers::Parser> parser_of(const Schema& s) {
  auto p = std::make_unique<flatbuffers::Parser>();
  const auto b = s.bfbs();
  if (!p->Deserialize(b.data(), b.size())) return nullptr;
  return p;
}

// "" if `newer` is a safe evolution of `older`, else the first issue.
std::string conforms(const Schema& older, const Schema& newer, const char* older_is,
                     const char* newer_is) {
  std::string issue = evolution_issue(older, newer, older_is, newer_is);
  if (!issue.empty()) return issue;
  auto po = parser_of(older), pn = parser_of(newer);
  if (!po || !pn) return "FlatBuffers could not load the binary schemas for comparison";
  issue = pn->ConformTo(*po);
  if (!issue.empty()) return "FlatBuffers' evolution rules: " + issue;
  return "";
}

}  // namespace

SchemaCheck check_compatible(const Schema& ring, const Schema& endpoint) {
  if (ring.empty() || endpoint.empty()) return {true, SchemaMatch::identity_only, {}};
  if (ring.root_name() != endpoint.root_name()) {
    return {false, SchemaMatch::identical,
            "the ring's root type is " + ring.root_name() + ", this endpoint's is " +
                endpoint.root_name()};
  }
  if (ring.file_identifier() != endpoint.file_identifier()) {
    return {false, SchemaMatch::identical,
            "the ring's file identifier is '" + ring.file_identifier() + "', this endpoint's is '" +
                endpoint.file_identifier() + "'"};
  }
  const auto a = ring.bfbs(), b = endpoint.bfbs();
  if (a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin())) {
    return {true, SchemaMatch::identical, {}};
  }
  // Each direction: is one a safe evolution of the other? Both: the same schema field by field
  // (the bytes may differ with the tool that serialized them).
  std::string forward = conforms(ring, endpoint, "the ring", "this endpoint");
  const bool backward = conforms(endpoint, ring, "this endpoint", "the ring").empty();
  if (forward.empty())
    return {true, backward ? SchemaMatch::identical : SchemaMatch::endpoint_newer, {}};
  if (backward) return {true, SchemaMatch::ring_newer, {}};
  return {false, SchemaMatch::identical, std::move(forward)};
}

// ---------------------------------------------------------------- RecordVerifier

bool RecordVerifier::verify(std::span<const std::byte> bytes) const noexcept {
  if (schema_.empty() || bytes.size() >= FLATBUFFERS_MAX_BUFFER_SIZE ||
      bytes.size() < sizeof(flatbuffers::uoffset_t)) {
    return false;
  }
  const auto* buf = reinterpret_cast<const std::uint8_t*>(bytes.data());
  const std::string& id = schema_.file_identifier();
  if (!id.empty()) {
    if (bytes.size() < sizeof(flatbuffers::uoffset_t) + flatbuffers::kFileIdentifierLength ||
        !flatbuffers::BufferHasIdentifier(buf, id.c_str())) {
      return false;
    }
  }
  try {
    return flatbuffers::Verify(schema_.reflection(), schema_.root(), buf, bytes.size(),
                               limits_.max_depth, limits_.max_tables);
  } catch (...) {
    return false;  // the reflection verifier allocates nothing, but never let it escape
  }
}

}  // namespace flatring
