#include "flatring/schema.hpp"

#include <flatbuffers/idl.h>
#include <flatbuffers/reflection.h>
#include <flatbuffers/reflection_generated.h>
#include <flatbuffers/util.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <new>
#include <set>
#include <sstream>
#include <string_view>

#include "flatring/segment.hpp"
#include "test_hooks.hpp"

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

// ---- well-formedness: what the FlatBuffers verifier does not check about a reflection.Schema
//
// VerifySchemaBuffer checks only that the bytes are a sound buffer. FlatBuffers' own users of a
// schema (the reflection verifier flatbuffers::Verify, Parser::Deserialize and ConformTo) trust
// its contents as flatc wrote them: an out-of-range object or enum index, a base type None or out
// of range, duplicate or out-of-range field ids, a struct layout that disagrees with its size, or
// a field both required and optional make them index out of bounds, dereference null or fail an
// assertion (live in Debian's libflatbuffers) -- all reachable from a hostile ring's schema area
// (found by fuzz/fuzz_schema.cpp). Everything checked here holds for flatc's output. Base types
// are read as numbers: a byte outside the enum is no reflection::BaseType value.

int base_of(const reflection::Type& t) { return static_cast<int>(t.base_type()); }
int element_of(const reflection::Type& t) { return static_cast<int>(t.element()); }
bool is_scalar(int t) { return t >= reflection::UType && t <= reflection::Double; }

// The bytes a scalar takes in a struct (FlatBuffers' SizeOf).
std::size_t scalar_size(int t) {
  switch (t) {
    case reflection::Short:
    case reflection::UShort: return 2;
    case reflection::Int:
    case reflection::UInt:
    case reflection::Float: return 4;
    case reflection::Long:
    case reflection::ULong:
    case reflection::Double: return 8;
    default: return 1;
  }
}

std::string_view view(const flatbuffers::String* s) { return {s->c_str(), s->size()}; }

// No two elements of `v` share a name (Parser::Deserialize frees a duplicate that its symbol
// table still holds: a use after free).
template <class T, class Name>
bool unique(const flatbuffers::Vector<flatbuffers::Offset<T>>* v, Name name) {
  if (v == nullptr) return true;
  std::set<std::string_view> seen;
  for (const T* e : *v) {
    if (!seen.insert(name(*e)).second) return false;
  }
  return true;
}
bool unique_keys(const flatbuffers::Vector<flatbuffers::Offset<reflection::KeyValue>>* attrs) {
  return unique(attrs, [](const reflection::KeyValue& kv) { return view(kv.key()); });
}
template <class T>
bool unique_names(const flatbuffers::Vector<flatbuffers::Offset<T>>* v) {
  return unique(v, [](const T& e) { return view(e.name()); });
}
// Sorted by name, without repeats or NULs, as flatc writes a vector keyed by name: LookupByKey
// (strcmp, binary search) then finds exactly what FlatBuffers' Parser finds by name, so the
// field-by-field comparison sees every pair of tables that ConformTo compares.
template <class T>
bool sorted_names(const flatbuffers::Vector<flatbuffers::Offset<T>>& v) {
  std::string_view last;
  for (flatbuffers::uoffset_t i = 0; i < v.size(); ++i) {
    const std::string_view n = view(v.Get(i)->name());
    if (n.find('\0') != std::string_view::npos || (i != 0 && !(last < n))) return false;
    last = n;
  }
  return true;
}

class WellFormed {
 public:
  explicit WellFormed(const reflection::Schema& s)
      : s_(s), objects_(s.objects()->size()), enums_(s.enums()->size()) {}

  // "" when well formed, else what is wrong.
  std::string check() const {
    if (!sorted_names(*s_.objects()) || !sorted_names(*s_.enums())) {
      return "types not sorted by name";
    }
    // Objects and enums are types of one namespace.
    std::set<std::string_view> types;
    for (const auto* o : *s_.objects()) {
      if (!types.insert(view(o->name())).second) return "two types named " + o->name()->str();
    }
    for (const auto* e : *s_.enums()) {
      if (!types.insert(view(e->name())).second) return "two types named " + e->name()->str();
    }
    // Parser::Deserialize walks each file's included_filenames without a null check (a SEGV,
    // found by the campaign's fuzz_frames in a bridge hello); flatc always writes the vector.
    if (s_.fbs_files() != nullptr) {
      for (const auto* f : *s_.fbs_files()) {
        if (f->included_filenames() == nullptr)
          return "file " + f->filename()->str() + " has no list of included files";
      }
    }
    if (!unique_names(s_.services())) return "two services of one name";
    if (s_.services() != nullptr) {
      for (const auto* sv : *s_.services()) {
        if (!unique_keys(sv->attributes()) || !unique_names(sv->calls())) {
          return "service " + sv->name()->str() + ": duplicate names";
        }
        if (sv->calls() == nullptr) continue;
        for (const auto* c : *sv->calls()) {
          if (!unique_keys(c->attributes()))
            return "service " + sv->name()->str() + ": duplicate names";
        }
      }
    }
    for (const auto* e : *s_.enums()) {
      std::string why = check_enum(*e);
      if (!why.empty()) return "enum " + e->name()->str() + ": " + why;
    }
    for (const auto* o : *s_.objects()) {
      std::string why = check_object(*o);
      if (!why.empty()) return o->name()->str() + ": " + why;
    }
    if (const auto* root = s_.root_table(); root != nullptr) {
      if (root->is_struct()) return "the root type " + root->name()->str() + " is a struct";
      std::string why = check_object(*root);  // need not be one of objects()
      if (!why.empty()) return root->name()->str() + ": " + why;
    }
    return "";
  }

 private:
  static bool in_range(const reflection::Type& t) {
    return base_of(t) >= 0 && base_of(t) < reflection::MaxBaseType && element_of(t) >= 0 &&
           element_of(t) < reflection::MaxBaseType;
  }
  bool object(std::int32_t i) const { return i >= 0 && static_cast<std::uint32_t>(i) < objects_; }
  bool enum_or_none(std::int32_t i) const {
    return i >= -1 && i < static_cast<std::int64_t>(enums_);
  }
  bool union_(std::int32_t i) const {
    return i >= 0 && static_cast<std::uint32_t>(i) < enums_ &&
           s_.enums()->Get(static_cast<std::uint32_t>(i))->is_union();
  }
  const reflection::Object& object_at(std::int32_t i) const {
    return *s_.objects()->Get(static_cast<std::uint32_t>(i));
  }

  std::string check_enum(const reflection::Enum& e) const {
    if (!unique_keys(e.attributes()) || !unique_names(e.values())) return "duplicate names";
    const reflection::Type& u = *e.underlying_type();
    if (!in_range(u) || base_of(u) < reflection::UType || base_of(u) > reflection::ULong ||
        !enum_or_none(u.index())) {
      return "its underlying type is not an integer";
    }
    if (!e.is_union()) return "";
    for (const auto* v : *e.values()) {
      const reflection::Type* t = v->union_type();
      const bool ok = t != nullptr && in_range(*t) &&
                      ((v->value() == 0 && base_of(*t) == reflection::None) ||
                       (base_of(*t) == reflection::Obj && object(t->index())) ||
                       base_of(*t) == reflection::String);
      if (!ok) return "union member " + v->name()->str() + " has no valid type";
    }
    return "";
  }

  // A table's field: any type but None and Array; vectors of anything but vectors and arrays.
  std::string check_table_field(const reflection::Type& t) const {
    if (!in_range(t)) return "base type out of range";
    const int b = base_of(t);
    const int el = b == reflection::Vector ? element_of(t) : b;
    if (is_scalar(el)) return enum_or_none(t.index()) ? "" : "index out of range";
    switch (el) {
      case reflection::String: return "";
      case reflection::Obj: return object(t.index()) ? "" : "index out of range";
      case reflection::Union: return union_(t.index()) ? "" : "not a union";
      default:
        return (b == reflection::Vector ? "a vector of " : "base type ") +
               base_type_name(static_cast<reflection::BaseType>(el));
    }
  }

  // A struct's field: a scalar, a struct, or an array of either. Its size in the struct, or 0.
  std::size_t struct_field_size(const reflection::Type& t) const {
    if (!in_range(t)) return 0;
    auto inline_size = [&](int b) -> std::size_t {
      if (is_scalar(b) && b != reflection::UType) {
        return enum_or_none(t.index()) ? scalar_size(b) : 0;
      }
      if (b == reflection::Obj && object(t.index()) && object_at(t.index()).is_struct() &&
          object_at(t.index()).bytesize() > 0) {
        return static_cast<std::size_t>(object_at(t.index()).bytesize());
      }
      return 0;
    };
    if (base_of(t) != reflection::Array) return inline_size(base_of(t));
    return inline_size(element_of(t)) * t.fixed_length();
  }

  std::string check_object(const reflection::Object& o) const {
    const auto& fields = *o.fields();
    if (!unique_keys(o.attributes())) return "duplicate names";
    if (!sorted_names(fields)) return "fields not sorted by name";
    // Field ids: each of 0 .. n-1 once (Parser::Deserialize indexes an array of n by them).
    std::vector<const reflection::Field*> by_id(fields.size(), nullptr);
    if (std::count_if(fields.begin(), fields.end(), [](const auto* f) { return f->key(); }) > 1) {
      return "more than one key field";
    }
    for (const auto* f : fields) {
      if (f->id() >= by_id.size() || by_id[f->id()] != nullptr) {
        return "field " + f->name()->str() + " has a duplicate or out-of-range id";
      }
      by_id[f->id()] = f;
      if (!unique_keys(f->attributes())) return "field " + f->name()->str() + ": duplicate names";
      if (f->required() && f->optional()) {
        return "field " + f->name()->str() + " is both required and optional";
      }
    }
    if (!o.is_struct()) {
      // flatc writes 0; FlatBuffers' Parser asserts it.
      if (o.bytesize() != 0) return "a table with a size";
      for (const auto* f : by_id) {
        if (f->offset() != 4 + 2 * f->id()) {
          return "field " + f->name()->str() + " is not at the offset of its id";
        }
        std::string why = check_table_field(*f->type());
        if (!why.empty()) return "field " + f->name()->str() + ": " + why;
      }
      return "";
    }
    // A struct: its fields in id order from offset 0, padded to the struct's size exactly as
    // FlatBuffers' Parser recomputes it (it asserts that the two agree).
    if (by_id.empty() || by_id[0]->offset() != 0) return "a struct starts with a field";
    if (o.minalign() < 1 || !std::has_single_bit(static_cast<std::uint32_t>(o.minalign()))) {
      return "alignment " + std::to_string(o.minalign());
    }
    std::size_t size = 0;
    for (std::size_t i = 0; i < by_id.size(); ++i) {
      const reflection::Field& f = *by_id[i];
      const std::size_t n = struct_field_size(*f.type());
      if (n == 0) return "field " + f.name()->str() + " is not a scalar, struct or array";
      size += n;
      if (i + 1 < by_id.size()) {
        const int gap = by_id[i + 1]->offset() - f.offset();
        if (gap < 0 || static_cast<std::size_t>(gap) < n) {
          return "field " + f.name()->str() + " overlaps the next";
        }
        size += static_cast<std::size_t>(gap) - n;
      } else {
        size += (~size + 1) & (static_cast<std::size_t>(o.minalign()) - 1);
      }
    }
    if (size != static_cast<std::size_t>(o.bytesize())) {
      return "the struct's size disagrees with its fields";
    }
    return "";
  }

  const reflection::Schema& s_;
  std::uint32_t objects_;
  std::uint32_t enums_;
};

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
  if (std::string why = WellFormed(*impl->schema).check(); !why.empty()) {
    fail(Errc::corrupt_schema, "the binary schema is not well formed: " + why);
  }
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
  opts.binary_schema_builtins = true;  // nested_flatbuffer, for RecordVerifier
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

// The element of `v` named `name`, or null. A linear scan over string views: schemas are small,
// and FlatBuffers' LookupByKey (bsearch + strcmp) trips GCC 12's -Wstringop-overread under ASan.
template <class T>
const T* find_named(const flatbuffers::Vector<flatbuffers::Offset<T>>* v,
                    const flatbuffers::String* name) {
  if (v == nullptr || name == nullptr) return nullptr;
  const std::string_view want(name->c_str(), name->size());
  for (const T* e : *v) {
    if (e->name() != nullptr && std::string_view(e->name()->c_str(), e->name()->size()) == want) {
      return e;
    }
  }
  return nullptr;
}

const reflection::Object* find_object(const reflection::Schema& s,
                                      const flatbuffers::String* name) {
  return find_named(s.objects(), name);
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
      const reflection::Field* nf = find_named(no->fields(), of->name());
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
      // By name, and by kind: an enum named like a base type is not that type.
      const reflection::Type &otype = *of->type(), &ntype = *nf->type();
      if (ot != nt || otype.base_type() != ntype.base_type() ||
          otype.element() != ntype.element() || (otype.index() < 0) != (ntype.index() < 0)) {
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

namespace {
bool has_union_vector(const reflection::Object& o) {
  if (o.fields() == nullptr) return false;
  return std::any_of(o.fields()->begin(), o.fields()->end(), [](const reflection::Field* f) {
    return f->type()->base_type() == reflection::Vector &&
           f->type()->element() == reflection::Union;
  });
}
bool is_nested_flatbuffer(const reflection::Field& f) {
  return f.type()->base_type() == reflection::Vector && f.type()->element() == reflection::UByte &&
         f.attributes() != nullptr && f.attributes()->LookupByKey("nested_flatbuffer") != nullptr;
}

// A field FlatBuffers 2.0.8's reflection verifier reads before it checks that the read is inside
// the buffer (see kReflectionOverread): a table (not a struct) or a union.
bool is_unchecked_offset_field(const reflection::Schema& schema, const reflection::Field& f) {
  const reflection::Type& type = *f.type();
  if (type.base_type() == reflection::Union) return true;
  if (type.base_type() != reflection::Obj || schema.objects() == nullptr) return false;
  const std::int32_t i = type.index();
  return i >= 0 && static_cast<std::uint32_t>(i) < schema.objects()->size() &&
         !schema.objects()->Get(static_cast<flatbuffers::uoffset_t>(i))->is_struct();
}

// True if some field of some object of `schema` satisfies `pred(const reflection::Field&)`.
template <class Pred>
bool any_field(const reflection::Schema& schema, Pred&& pred) {
  if (schema.objects() == nullptr) return false;
  return std::any_of(schema.objects()->begin(), schema.objects()->end(),
                     [&](const reflection::Object* o) {
                       return o->fields() != nullptr &&
                              std::any_of(o->fields()->begin(), o->fields()->end(),
                                          [&](const reflection::Field* f) { return pred(*f); });
                     });
}

// FlatBuffers 2.0.8's reflection verifier (VerifyObject in its src/reflection.cpp) reads two
// things before it checks that they lie inside the buffer: the type byte of a union field, and the
// offset word of a table or union field, each at the table's start plus the field's vtable entry
// (up to 65,535). It uses what it read only as offsets it then checks, but the read itself lands
// up to 64 KiB past the record's end: outside the mapping when the record ends the ring (found by
// the campaign's fuzz_frames, a SEGV in flatbuffers::Verify). And a field that lies outside the
// buffer can pass (a union type byte read as 0 from outside, "none"), after which generated code
// reads it out of bounds. So RecordVerifier verifies such schemas' records in a private copy with
// this much readable room after it, and NestedCheck checks those fields' places itself.
constexpr std::size_t kReflectionOverread = 65535 + sizeof(flatbuffers::uoffset_t) + 16;

// This thread's copy of the record under verification, 16-byte aligned, with
// kReflectionOverread zero bytes after it. Grows to the largest record verified on the thread,
// never shrinks. The bytes after the record are zero every time, not what a longer record verified
// before left there: what the reflection verifier reads past the end (values it then checks) is
// the same for a record whatever came before it, so a verdict never depends on the thread's
// history (and a fuzzer's finding reproduces alone). nullptr if memory for it cannot be had.
const std::uint8_t* padded_copy(std::span<const std::byte> bytes) noexcept {
  struct Scratch {
    std::byte* p = nullptr;
    std::size_t capacity = 0;
    std::size_t used = 0;  // [used, capacity) is zero
    ~Scratch() { ::operator delete[](p, std::align_val_t{16}); }
  };
  thread_local Scratch s;
  const std::size_t need = bytes.size() + kReflectionOverread;
  if (need > s.capacity) {
    auto* q = static_cast<std::byte*>(::operator new[](need, std::align_val_t{16}, std::nothrow));
    if (q == nullptr) return nullptr;
    std::memset(q, 0, need);
    ::operator delete[](s.p, std::align_val_t{16});
    s.p = q;
    s.capacity = need;
    s.used = 0;
  }
  std::memcpy(s.p, bytes.data(), bytes.size());
  // At most what the previous copy wrote past this one: never more than that copy cost.
  if (s.used > bytes.size()) std::memset(s.p + bytes.size(), 0, s.used - bytes.size());
  s.used = bytes.size();
  return reinterpret_cast<const std::uint8_t*>(s.p);
}

// FlatBuffers 2.0.8's reflection verifier checks a `[ubyte] (nested_flatbuffer: "T")` field as
// plain bytes, while generated code verifies those bytes as a buffer of T, and its accessor
// (field_nested_root()) reads them as one: a record the reflection verifier passed could make
// generated code read out of bounds (found by fuzz/fuzz_frames.cpp). NestedCheck walks a record
// flatbuffers::Verify has passed and verifies each nested flatbuffer as its table, as generated
// code does. It also checks the places of table and union fields that flatbuffers::Verify read
// unchecked (kReflectionOverread). Table visits and nested bytes count against a budget: offsets
// may alias, and one record must not cost much more than its size.
class NestedCheck {
 public:
  NestedCheck(const reflection::Schema& s, const RecordVerifier::Limits& limits,
              const std::uint8_t* buf, std::size_t size)
      : s_(s),
        limits_(limits),
        tables_left_(limits.max_tables),
        bytes_left_(16 * size + 4096),
        lo_(reinterpret_cast<std::uintptr_t>(buf)),
        hi_(lo_ + size) {}

  bool table(const reflection::Object& obj, const flatbuffers::Table& t, std::uint32_t depth) {
    if (tables_left_ == 0 || depth > limits_.max_depth) return false;
    --tables_left_;
    if (obj.fields() == nullptr) return true;
    for (const reflection::Field* f : *obj.fields()) {
      const reflection::Type& type = *f->type();
      // The places flatbuffers::Verify read without checking (kReflectionOverread), checked
      // before anything here reads them: the offset word, and a union's type byte in the slot
      // before it (the slot arithmetic VerifyObject uses).
      if (is_unchecked_offset_field(s_, *f) &&
          (!inside(t, f->offset(), sizeof(flatbuffers::uoffset_t)) ||
           (type.base_type() == reflection::Union &&
            !inside(
                t,
                static_cast<flatbuffers::voffset_t>(f->offset() - sizeof(flatbuffers::voffset_t)),
                1)))) {
        return false;
      }
      if (type.base_type() == reflection::Obj) {
        const reflection::Object* o = object(type.index());
        if (o == nullptr) return false;
        if (o->is_struct()) continue;  // a struct holds no vectors
        const flatbuffers::Table* sub = flatbuffers::GetFieldT(t, *f);
        if (sub != nullptr && !table(*o, *sub, depth + 1)) return false;
      } else if (type.base_type() == reflection::Union) {
        const reflection::Object* o = union_member(obj, *f, t);
        const flatbuffers::Table* sub = flatbuffers::GetFieldT(t, *f);
        if (o != nullptr && sub != nullptr && !table(*o, *sub, depth + 1)) return false;
      } else if (type.base_type() == reflection::Vector && type.element() == reflection::Obj) {
        const reflection::Object* o = object(type.index());
        if (o == nullptr) return false;
        if (o->is_struct()) continue;
        const auto* v =
            t.GetPointer<const flatbuffers::Vector<flatbuffers::Offset<flatbuffers::Table>>*>(
                f->offset());
        if (v == nullptr) continue;
        for (const flatbuffers::Table* sub : *v) {
          if (!table(*o, *sub, depth + 1)) return false;
        }
      } else if (is_nested_flatbuffer(*f)) {
        const auto* v = t.GetPointer<const flatbuffers::Vector<std::uint8_t>*>(f->offset());
        if (v != nullptr && !nested(nested_type(obj, *f), *v, depth + 1)) return false;
      }
    }
    return true;
  }

 private:
  // True if field slot `slot` of `t` is absent, or its `n` bytes lie inside the buffer being
  // walked. The vtable itself was checked by flatbuffers::Verify.
  bool inside(const flatbuffers::Table& t, flatbuffers::voffset_t slot, std::size_t n) const {
    const flatbuffers::voffset_t fo = t.GetOptionalFieldOffset(slot);
    if (fo == 0) return true;
    const std::uintptr_t p = reinterpret_cast<std::uintptr_t>(&t) + fo;
    return p >= lo_ && p <= hi_ && n <= hi_ - p;
  }

  const reflection::Object* object(std::int32_t index) const noexcept {
    const auto* objects = s_.objects();
    if (objects == nullptr || index < 0 || static_cast<std::uint32_t>(index) >= objects->size())
      return nullptr;
    return objects->Get(static_cast<flatbuffers::uoffset_t>(index));
  }

  // The table a union field holds in `t` (nullptr: none, unknown, or not a table).
  const reflection::Object* union_member(const reflection::Object& owner,
                                         const reflection::Field& f,
                                         const flatbuffers::Table& t) const {
    const auto* enums = s_.enums();
    const std::int32_t e = f.type()->index();
    if (enums == nullptr || e < 0 || static_cast<std::uint32_t>(e) >= enums->size()) return nullptr;
    const reflection::Field* type_field = owner.fields()->LookupByKey(
        (f.name()->str() + flatbuffers::UnionTypeFieldSuffix()).c_str());
    if (type_field == nullptr) return nullptr;
    const auto utype = flatbuffers::GetFieldI<std::uint8_t>(t, *type_field);
    if (utype == 0 || enums->Get(static_cast<flatbuffers::uoffset_t>(e))->values() == nullptr)
      return nullptr;
    const reflection::EnumVal* v =
        enums->Get(static_cast<flatbuffers::uoffset_t>(e))->values()->LookupByKey(utype);
    if (v == nullptr || v->union_type() == nullptr ||
        v->union_type()->base_type() != reflection::Obj)
      return nullptr;
    const reflection::Object* o = object(v->union_type()->index());
    return o != nullptr && !o->is_struct() ? o : nullptr;
  }

  // The table named by the attribute, looked up as flatc does: in the owner's namespace, then
  // in each enclosing one.
  const reflection::Object* nested_type(const reflection::Object& owner,
                                        const reflection::Field& f) const {
    const auto* value = f.attributes()->LookupByKey("nested_flatbuffer")->value();
    const std::string name = value == nullptr ? std::string() : value->str();
    if (name.empty() || s_.objects() == nullptr) return nullptr;
    std::string ns = owner.name()->str();
    for (;;) {
      const auto dot = ns.rfind('.');
      ns = dot == std::string::npos ? std::string() : ns.substr(0, dot);
      const std::string full = ns.empty() ? name : ns + "." + name;
      if (const auto* o = s_.objects()->LookupByKey(full.c_str())) return o;
      if (ns.empty()) return nullptr;
    }
  }

  bool nested(const reflection::Object* type, const flatbuffers::Vector<std::uint8_t>& bytes,
              std::uint32_t depth) {
    if (type == nullptr || type->is_struct() || bytes.size() > bytes_left_ ||
        bytes.size() < sizeof(flatbuffers::uoffset_t))
      return false;
    bytes_left_ -= bytes.size();
    if (!flatbuffers::Verify(s_, *type, bytes.data(), bytes.size(), limits_.max_depth,
                             limits_.max_tables))
      return false;
    // Inside the nested buffer, the bounds are its own.
    const std::uintptr_t lo = lo_, hi = hi_;
    lo_ = reinterpret_cast<std::uintptr_t>(bytes.data());
    hi_ = lo_ + bytes.size();
    const bool ok = table(*type, *flatbuffers::GetAnyRoot(bytes.data()), depth);
    lo_ = lo;
    hi_ = hi;
    return ok;
  }

  const reflection::Schema& s_;
  RecordVerifier::Limits limits_;
  std::uint64_t tables_left_;
  std::uint64_t bytes_left_;
  std::uintptr_t lo_;  // the buffer being walked: the record, or a nested flatbuffer in it
  std::uintptr_t hi_;
};
}  // namespace

bool RecordVerifier::supports(const Schema& schema) noexcept {
  if (schema.empty()) return false;
  if (has_union_vector(schema.root())) return false;
  const auto* objects = schema.reflection().objects();
  return objects == nullptr ||
         std::none_of(objects->begin(), objects->end(),
                      [](const reflection::Object* o) { return has_union_vector(*o); });
}

RecordVerifier::RecordVerifier(Schema schema, Limits limits)
    : schema_(std::move(schema)),
      limits_(limits),
      supported_(supports(schema_)),
      nested_(supported_ && any_field(schema_.reflection(), is_nested_flatbuffer)),
      padded_(supported_ && any_field(schema_.reflection(), [this](const reflection::Field& f) {
                return is_unchecked_offset_field(schema_.reflection(), f);
              })) {}

bool RecordVerifier::verify(std::span<const std::byte> bytes) const noexcept {
  if (!supported_ || bytes.size() >= FLATBUFFERS_MAX_BUFFER_SIZE ||
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
  FLATRING_TEST_HOOK(mid_verify);
  if (padded_) {
    buf = padded_copy(bytes);  // see kReflectionOverread
    if (buf == nullptr) return false;
  }
  try {
    if (!flatbuffers::Verify(schema_.reflection(), schema_.root(), buf, bytes.size(),
                             limits_.max_depth, limits_.max_tables))
      return false;
    return !(nested_ || padded_) || NestedCheck(schema_.reflection(), limits_, buf, bytes.size())
                                        .table(schema_.root(), *flatbuffers::GetAnyRoot(buf), 1);
  } catch (...) {
    return false;  // the reflection verifier allocates nothing, but never let it escape
  }
}

}  // namespace flatring
