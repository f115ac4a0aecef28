// Reads every field of a verified fuzz_schema::Record into one number, so that the fuzzer makes the
// reads happen (and the sanitizers watch them) and two consumers' views can be compared.
#pragma once

#include <bit>
#include <cstdint>

#include "fuzz_msg_generated.h"
#include <flatring/typed.hpp>

FLATRING_SCHEMA(flatring::fuzz_schema::Record, flatring::fuzz_schema::RecordIdentifier());

namespace fuzz {

inline std::uint64_t mix(std::uint64_t h, std::uint64_t v) { return (h ^ v) * 0x100000001b3ull; }

inline std::uint64_t digest(std::uint64_t h, const flatbuffers::String* s) {
  if (s == nullptr) return mix(h, 1);
  for (flatbuffers::uoffset_t i = 0; i < s->size(); ++i)
    h = mix(h, static_cast<std::uint8_t>(s->c_str()[i]));
  return mix(h, s->size());
}

inline std::uint64_t digest(std::uint64_t h, const flatring::fuzz_schema::Leaf* leaf) {
  if (leaf == nullptr) return mix(h, 2);
  h = digest(h, leaf->name());
  if (const auto* v = leaf->values()) {
    for (auto x : *v) h = mix(h, static_cast<std::uint64_t>(x));
  }
  return h;
}

inline std::uint64_t digest(const flatring::fuzz_schema::Record* r) {
  namespace fs = flatring::fuzz_schema;
  std::uint64_t h = mix(0xcbf29ce484222325ull, r->seq());
  if (const fs::Point* p = r->point()) {
    h = mix(h, static_cast<std::uint64_t>(p->x()));
    h = mix(h, std::bit_cast<std::uint64_t>(p->y()));  // the bits: any double, NaN included
  }
  h = digest(h, r->name());
  if (const auto* tags = r->tags()) {
    for (const auto* s : *tags) h = digest(h, s);
  }
  if (const auto* leaves = r->leaves()) {
    for (const auto* l : *leaves) h = digest(h, l);
  }
  h = digest(h, r->child());
  h = mix(h, static_cast<std::uint64_t>(r->choice_type()));
  h = digest(h, r->choice_as_Leaf());
  if (const fs::Alt* a = r->choice_as_Alt()) h = digest(mix(h, a->tag()), a->text());
  if (r->blob() != nullptr) h = digest(h, r->blob_nested_root());
  if (const auto* f = r->flags()) {
    for (auto b : *f) h = mix(h, b ? 3 : 4);
  }
  return h;
}

}  // namespace fuzz
