// Verified records without generated code: a consumer that verifies every record against a
// binary schema with FlatBuffers' reflection verifier. The path of tools, bindings and the bridge.
#pragma once

#include <chrono>
#include <cstddef>
#include <span>
#include <utility>

#include "flatring/mode.hpp"
#include "flatring/schema.hpp"
#include "flatring/segment.hpp"
#include "flatring/typed.hpp"

namespace flatring {

/// Receives records of a ring of mode `M`, each verified against a schema with
/// flatbuffers::Verify over reflection::Schema (RecordVerifier), with ConsumerOptions' depth and
/// table limits and its copy-then-verify default, exactly as Consumer<Root, M> does with generated
/// code. The span a receive returns stays valid until the next receive. \pre one thread at a time.
template <Mode M = Mode::spsc>
class DynamicConsumer {
 public:
  /// Verifies with `schema`, the caller's own: it never adopts the ring's. The ring must hold the
  /// same root type, and its stored schema (when it has one) must be compatible
  /// (check_compatible). \throws Error(wrong_schema) naming the incompatibility, or for a schema
  /// RecordVerifier cannot check safely (RecordVerifier::supports); the Reader's.
  DynamicConsumer(Ring ring, Schema schema, ConsumerOptions options = {})
      : match_(detail::require_schema(
            ring, SchemaId::of(schema.root_name(), schema.file_identifier()), schema)),
        verifier_((require_supported(ring, schema), std::move(schema)),
                  RecordVerifier::Limits{options.max_depth, options.max_tables}),
        rx_(std::move(ring), options) {}

  /// Verifies with the schema stored in the ring. This trusts whoever created the ring to have
  /// stored the schema its producers write (the stored schema itself was checked as untrusted
  /// input at open: length, hash, verifier). Records are still verified one by one, so a
  /// hostile schema can at worst make bad records pass as valid under that schema, never make
  /// this process read outside them. \throws Error(wrong_schema) if the ring stores no schema.
  static DynamicConsumer with_ring_schema(Ring ring, ConsumerOptions options = {}) {
    Schema stored = ring.info().stored_schema;
    if (stored.empty()) {
      throw Error(Errc::wrong_schema,
                  "flatring ring '" + ring.info().name + "': stores no schema to verify with");
    }
    return DynamicConsumer(std::move(ring), std::move(stored), options);
  }

  /// The next verified record's bytes (a FlatBuffer of the schema's root type). empty; corrupt
  /// (see Reader::recover); verify_failed (skipped: the next call returns the next record).
  [[nodiscard]] Result<std::span<const std::byte>> try_receive() noexcept {
    rx_.reader().release();
    return rx_.accept(rx_.reader().try_read(), verify());
  }

  /// try_receive, waiting up to `timeout`. Extra outcomes: timed_out, peer_dead, abandoned.
  [[nodiscard]] Result<std::span<const std::byte>> receive(std::chrono::nanoseconds timeout) {
    rx_.reader().release();
    return rx_.accept(rx_.reader().read(timeout), verify());
  }

  /// The batched receive: `on_record(std::span<const std::byte>)` for up to `max` verified
  /// records, the read position published once (see Consumer::poll). Never blocks.
  template <class F>
  PollCount poll(F&& on_record, std::size_t max) {
    return rx_.poll(verify(), std::forward<F>(on_record), max);
  }

  [[nodiscard]] const Schema& schema() const noexcept { return verifier_.schema(); }
  [[nodiscard]] SchemaMatch schema_match() const noexcept { return match_; }
  [[nodiscard]] bool redelivered() const noexcept { return rx_.redelivered(); }
  [[nodiscard]] Reader<M>& raw() noexcept { return rx_.reader(); }
  [[nodiscard]] const ConsumerOptions& options() const noexcept { return rx_.options(); }

 private:
  auto verify() const noexcept {
    return [this](std::span<const std::byte> b) { return verifier_.verify(b); };
  }

  static void require_supported(const Ring& ring, const Schema& schema) {
    if (!RecordVerifier::supports(schema)) {
      throw Error(Errc::wrong_schema, "flatring ring '" + ring.info().name +
                                          "': " + schema.root_name() +
                                          " has a vector of unions, which the reflection verifier "
                                          "cannot check safely (RecordVerifier::supports)");
    }
  }

  SchemaMatch match_;
  RecordVerifier verifier_;
  detail::VerifyingReader<M> rx_;
};

}  // namespace flatring
