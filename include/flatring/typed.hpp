// The FlatBuffers layer: typed producers and consumers of one fixed root type.
//
// A Consumer<Root> never hands out a pointer into bytes that have not passed flatbuffers::Verifier
// (a fresh verifier per record, explicit depth and table limits, the file identifier checked, the
// length taken from the record's slot, which the ring has already clamped to max_record_size).
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <new>
#include <span>
#include <string_view>

#include <flatbuffers/flatbuffers.h>

#include "flatring/broadcast.hpp"
#include "flatring/endpoint.hpp"
#include "flatring/mode.hpp"
#include "flatring/mpmc.hpp"
#include "flatring/mpsc.hpp"
#include "flatring/spsc.hpp"
#include "flatring/segment.hpp"
#include "flatring/status.hpp"

namespace flatring {

/// Names a root type's schema. Declare it once per root type with FLATRING_SCHEMA, at global
/// namespace scope, after including the flatc-generated header (generated with
/// --gen-name-strings, as flatring_add_schema does).
template <class Root>
struct schema_traits;

/// FLATRING_SCHEMA(app::Order, app::OrderIdentifier())
#define FLATRING_SCHEMA(ROOT, IDENTIFIER)                                                         \
  template <>                                                                                   \
  struct flatring::schema_traits<ROOT> {                                                        \
    static const char* file_identifier() { return IDENTIFIER; }                                 \
    static std::string_view name() { return ROOT::GetFullyQualifiedName(); }                    \
  }

/// The SchemaId recorded in a ring created for `Root`.
template <class Root>
[[nodiscard]] SchemaId schema_of() {
  return SchemaId::of(schema_traits<Root>::name(), schema_traits<Root>::file_identifier());
}

/// Creates a ring for records of `Root` (its schema identity goes into the header).
template <class Root>
[[nodiscard]] Ring create_ring(std::string_view name, const RingOptions& options) {
  return Ring::create(name, options, schema_of<Root>());
}

/// Opens a ring and checks that it holds records of `Root`.
/// \throws Error(wrong_schema) if it does not.
template <class Root>
[[nodiscard]] Ring open_ring(std::string_view name, OpenOptions options = {}) {
  options.expect_schema = schema_of<Root>();
  return Ring::open(name, options);
}

namespace detail {

inline void require_schema(const Ring& ring, const SchemaId& want) {
  if (!(ring.info().schema == want)) {
    throw Error(Errc::wrong_schema, "flatring ring '" + ring.info().name + "': holds schema '" +
                                        ring.info().schema.identifier() +
                                        "', this endpoint's root type is '" + want.identifier() +
                                        "' (or its name hash differs)");
  }
}

inline std::span<const std::byte> bytes_of(const flatbuffers::FlatBufferBuilder& fbb) noexcept {
  return {reinterpret_cast<const std::byte*>(fbb.GetBufferPointer()), fbb.GetSize()};
}

/// Private, 16-byte aligned scratch memory for copy-then-verify. Grows, never shrinks.
class AlignedBuffer {
 public:
  std::byte* get(std::size_t n) {
    if (n > size_) {
      std::size_t grown = std::max<std::size_t>(n, size_ * 2);
      data_.reset(static_cast<std::byte*>(::operator new[](grown, std::align_val_t{16})));
      size_ = grown;
    }
    return data_.get();
  }

 private:
  struct Free {
    void operator()(std::byte* p) const noexcept { ::operator delete[](p, std::align_val_t{16}); }
  };
  std::unique_ptr<std::byte, Free> data_;
  std::size_t size_ = 0;
};

}  // namespace detail

/// Sends finished FlatBuffers of `Root` into a ring of mode `M` (through a Writer<M>).
/// \pre one thread at a time.
template <class Root, Mode M = Mode::spsc>
class Producer {
 public:
  /// \throws Error(wrong_schema) if the ring was not created for Root; the Writer's errors.
  explicit Producer(Ring ring, WaitOptions wait = {})
      : writer_((detail::require_schema(ring, schema_of<Root>()), ring), wait) {}

  /// Copies the finished buffer into the ring (one copy). ok, full, too_large, corrupt, or
  /// invalid_state when the buffer was not finished with Root's file identifier.
  [[nodiscard]] Status try_send(const flatbuffers::FlatBufferBuilder& fbb) noexcept {
    if (!has_identifier(fbb)) return Status::invalid_state;
    return writer_.try_write(detail::bytes_of(fbb));
  }

  /// try_send, waiting up to `timeout` for space (see Writer::write for the extra outcomes).
  [[nodiscard]] Status send(const flatbuffers::FlatBufferBuilder& fbb, std::chrono::nanoseconds timeout) {
    if (!has_identifier(fbb)) return Status::invalid_state;
    return writer_.write(detail::bytes_of(fbb), timeout);
  }

  /// The raw writer underneath (for reserve/commit of pre-built bytes).
  [[nodiscard]] Writer<M>& raw() noexcept { return writer_; }

 private:
  static bool has_identifier(const flatbuffers::FlatBufferBuilder& fbb) noexcept {
    const char* id = schema_traits<Root>::file_identifier();
    if (id == nullptr || id[0] == '\0') return true;
    if (fbb.GetSize() < sizeof(flatbuffers::uoffset_t) + flatbuffers::kFileIdentifierLength) return false;
    return flatbuffers::BufferHasIdentifier(fbb.GetBufferPointer(), id);
  }
  Writer<M> writer_;
};

/// How a Consumer verifies.
struct ConsumerOptions {
  /// false (default): copy each record into private memory, then verify and read the copy. Safe
  /// against a producer that rewrites a record after it was verified (TOCTOU): nothing the
  /// producer does later can change what the caller reads.
  /// true: verify and read in place, in the shared ring, saving the copy. Only for producers you
  /// trust: a hostile producer could rewrite offsets between verification and use.
  bool in_place = false;
  flatbuffers::uoffset_t max_depth = 64;
  flatbuffers::uoffset_t max_tables = 1'000'000;
  WaitOptions wait{};
};

/// Receives verified records of `Root` from a ring of mode `M` (through a Reader<M>). The pointer a
/// receive returns stays valid until the next receive on this consumer (or its destruction).
/// \pre one thread at a time.
template <class Root, Mode M = Mode::spsc>
class Consumer {
 public:
  /// \throws Error(wrong_schema) if the ring was not created for Root; the Reader's errors.
  explicit Consumer(Ring ring, ConsumerOptions options = {})
      : reader_((detail::require_schema(ring, schema_of<Root>()), ring), options.wait),
        options_(options) {}

  /// The next verified record. empty; corrupt (the ring's shared state is bad; see
  /// Reader::recover); verify_failed (the record was not a valid Root and has been skipped:
  /// the next call returns the next record).
  [[nodiscard]] Result<const Root*> try_receive() noexcept {
    reader_.release();
    return accept(reader_.try_read());
  }

  /// try_receive, waiting up to `timeout`. Extra outcomes: timed_out, peer_dead.
  [[nodiscard]] Result<const Root*> receive(std::chrono::nanoseconds timeout) {
    reader_.release();
    return accept(reader_.read(timeout));
  }

  /// The bytes of the record last returned (verified), valid as long as the pointer.
  [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return current_; }
  /// mpmc: the record last returned was delivered again because a consumer died holding it
  /// (RecordView::redelivered; at-least-once). A consumer holds a record until its next receive
  /// only with ConsumerOptions::in_place; a copying consumer releases it before verifying.
  [[nodiscard]] bool redelivered() const noexcept { return redelivered_; }
  [[nodiscard]] Reader<M>& raw() noexcept { return reader_; }
  [[nodiscard]] const ConsumerOptions& options() const noexcept { return options_; }

 private:
  Result<const Root*> accept(Result<RecordView> r) noexcept {
    current_ = {};
    redelivered_ = false;
    if (!r) return r.status();
    std::span<const std::byte> bytes = r->bytes;
    if (!options_.in_place) {
      std::byte* copy = nullptr;
      try {
        copy = scratch_.get(bytes.size() == 0 ? 1 : bytes.size());
      } catch (const std::bad_alloc&) {
        reader_.release();
        return fail();
      }
      std::memcpy(copy, bytes.data(), bytes.size());
      bytes = {copy, bytes.size()};
      reader_.release();  // the copy is ours: the ring slot can go back to the producer now
    }
    const auto* buf = reinterpret_cast<const std::uint8_t*>(bytes.data());
    // The Verifier asserts on buffers of 2 GiB and more: reject them before it sees them.
    if (bytes.size() >= FLATBUFFERS_MAX_BUFFER_SIZE) return fail();
    flatbuffers::Verifier verifier(buf, bytes.size(), options_.max_depth, options_.max_tables);
    if (!verifier.VerifyBuffer<Root>(schema_traits<Root>::file_identifier())) return fail();
    current_ = bytes;
    redelivered_ = r->redelivered;
    return flatbuffers::GetRoot<Root>(buf);
  }

  Result<const Root*> fail() noexcept {
    reader_.attachment().count(layout::verify_failures);
    reader_.release();
    return Status::verify_failed;
  }

  Reader<M> reader_;
  ConsumerOptions options_;
  detail::AlignedBuffer scratch_;
  std::span<const std::byte> current_;
  bool redelivered_ = false;
};

}  // namespace flatring
