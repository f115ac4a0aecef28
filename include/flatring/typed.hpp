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
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <flatbuffers/flatbuffers.h>

#include "flatring/broadcast.hpp"
#include "flatring/endpoint.hpp"
#include "flatring/in_place.hpp"
#include "flatring/mode.hpp"
#include "flatring/mpmc.hpp"
#include "flatring/mpsc.hpp"
#include "flatring/schema.hpp"
#include "flatring/segment.hpp"
#include "flatring/spsc.hpp"
#include "flatring/status.hpp"

namespace flatring {

/// Names a root type's schema. Declare it once per root type with FLATRING_SCHEMA, at global
/// namespace scope, after including the flatc-generated header.
template <class Root>
struct schema_traits;

namespace detail {

/// "app::Order" (as spelled in FLATRING_SCHEMA) to FlatBuffers' "app.Order".
[[nodiscard]] std::string dotted_name(std::string_view cxx_spelling);

/// The root type's fully qualified name: from the generated code when it was made with
/// --gen-name-strings (as flatring_add_schema does), else from the spelling in FLATRING_SCHEMA, so
/// that generated code made without it (e.g. Debian's flatbuffers/reflection_generated.h) works
/// with no trait written by hand.
template <class Root>
std::string_view root_name(std::string_view spelled) {
  if constexpr (requires { Root::GetFullyQualifiedName(); }) {
    return Root::GetFullyQualifiedName();
  } else {
    static const std::string name = dotted_name(spelled);
    return name;
  }
}

/// The root type's binary schema, when flatring_add_schema embedded it beside the generated code
/// (found by argument-dependent lookup of flatring_binary_schema(const Root*)); else empty.
template <class Root>
std::span<const std::uint8_t> embedded_binary_schema() {
  if constexpr (requires(const Root* r) { flatring_binary_schema(r); }) {
    return flatring_binary_schema(static_cast<const Root*>(nullptr));
  } else {
    return {};
  }
}

}  // namespace detail

/// FLATRING_SCHEMA(app::Order, app::OrderIdentifier())
#define FLATRING_SCHEMA(ROOT, IDENTIFIER)                                                 \
  template <>                                                                             \
  struct flatring::schema_traits<ROOT> {                                                  \
    static const char* file_identifier() { return IDENTIFIER; }                           \
    static std::string_view name() { return ::flatring::detail::root_name<ROOT>(#ROOT); } \
    static std::span<const std::uint8_t> binary_schema() {                                \
      return ::flatring::detail::embedded_binary_schema<ROOT>();                          \
    }                                                                                     \
  }

/// The SchemaId recorded in a ring created for `Root`: its file identifier and root type name.
template <class Root>
[[nodiscard]] SchemaId schema_of() {
  return SchemaId::of(schema_traits<Root>::name(), schema_traits<Root>::file_identifier());
}

/// The binary schema of `Root` (verified once), or an empty Schema when the generated code does
/// not embed one. \throws Error as Schema::from_bfbs, for an embedded schema that is not one.
template <class Root>
[[nodiscard]] const Schema& binary_schema_of() {
  static const Schema schema = [] {
    const auto bfbs = schema_traits<Root>::binary_schema();
    return bfbs.empty() ? Schema{} : Schema::from_bfbs(bfbs);
  }();
  return schema;
}

/// Creates a ring for records of `Root`: its identity goes into the header and, when the
/// generated code embeds it, its binary schema into the schema area.
template <class Root>
[[nodiscard]] Ring create_ring(std::string_view name, const RingOptions& options) {
  const Schema& schema = binary_schema_of<Root>();
  if (schema.empty()) return Ring::create(name, options, schema_of<Root>());
  return Ring::create(name, options, schema);
}

namespace detail {
/// Checks that `ring` holds records `mine` can read: the root type and file identifier (`want`)
/// and, when both sides have a binary schema, FlatBuffers' evolution rules (check_compatible).
/// \throws Error(wrong_schema) naming the first incompatibility.
SchemaMatch require_schema(const Ring& ring, const SchemaId& want, const Schema& mine);
}  // namespace detail

/// Opens a ring and checks that it holds records of `Root` (detail::require_schema).
/// \throws Error(wrong_schema) if it does not; Ring::open's errors.
template <class Root>
[[nodiscard]] Ring open_ring(std::string_view name, OpenOptions options = {}) {
  Ring ring = Ring::open(name, options);
  (void)detail::require_schema(ring, schema_of<Root>(), binary_schema_of<Root>());
  return ring;
}

namespace detail {

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
      : match_(detail::require_schema(ring, schema_of<Root>(), binary_schema_of<Root>())),
        writer_(std::move(ring), wait) {}

  /// How this producer's schema relates to the ring's (identical, or a compatible evolution).
  [[nodiscard]] SchemaMatch schema_match() const noexcept { return match_; }

  /// Copies the finished buffer into the ring (one copy). ok, full, too_large, corrupt, or
  /// invalid_state when the buffer was not finished with Root's file identifier.
  [[nodiscard]] Status try_send(const flatbuffers::FlatBufferBuilder& fbb) noexcept {
    if (!has_identifier(fbb)) return Status::invalid_state;
    return writer_.try_write(detail::bytes_of(fbb));
  }

  /// try_send, waiting up to `timeout` for space (see Writer::write for the extra outcomes).
  [[nodiscard]] Status send(const flatbuffers::FlatBufferBuilder& fbb,
                            std::chrono::nanoseconds timeout) {
    if (!has_identifier(fbb)) return Status::invalid_state;
    return writer_.write(detail::bytes_of(fbb), timeout);
  }

  /// Builds one record directly in the ring, so each byte is written once: reserves room for a
  /// record of about `hint` bytes, calls `build(flatbuffers::FlatBufferBuilder&)`, which creates
  /// the record's objects and returns the root's flatbuffers::Offset<Root>, finishes it with
  /// Root's file identifier and commits it in place (Writer::commit_at). The builder is this
  /// producer's, reused for every record: no allocation, no growth, while the record fits the
  /// hint. A record larger than the hint is finished on the heap and copied in, as try_send
  /// does (the fallback: one allocation and one copy). The `hint` bytes minus the record's size
  /// (plus 16) are dead space in the ring until the record is released, so choose the hint near
  /// the records' real size. Outcomes: those of try_send (nothing is written unless ok); if
  /// `build` throws, the reservation is dropped and the exception propagates. The builder and
  /// everything it returned are valid during `build` only.
  template <class Build>
  [[nodiscard]] Status try_build(std::size_t hint, Build&& build) {
    return build_with(writer_.try_reserve(reservation_for(hint)), std::forward<Build>(build),
                      [&](std::span<const std::byte> b) { return writer_.try_write(b); });
  }

  /// try_build, waiting up to `timeout` for space (see Writer::write for the extra outcomes).
  template <class Build>
  [[nodiscard]] Status build(std::size_t hint, Build&& build, std::chrono::nanoseconds timeout) {
    const auto deadline = detail::deadline_after(timeout);
    return build_with(writer_.reserve(reservation_for(hint), timeout), std::forward<Build>(build),
                      [&](std::span<const std::byte> b) {
                        const auto now = detail::Clock::now();
                        return writer_.write(b, now < deadline ? deadline - now
                                                               : std::chrono::nanoseconds{0});
                      });
  }

  /// The raw writer underneath (for reserve/commit of pre-built bytes).
  [[nodiscard]] Writer<M>& raw() noexcept { return writer_; }

 private:
  // The reservation for a record of about `hint` bytes: the offset word's 16 bytes, then the
  // builder's block, a multiple of 16 so the buffer's end is 16-byte aligned.
  [[nodiscard]] std::size_t reservation_for(std::size_t hint) const noexcept {
    const std::size_t max = static_cast<std::size_t>(writer_.max_record_size()) & ~std::size_t{15};
    const std::size_t want = hint > max ? max : (hint + layout::kMinOffset + 15) & ~std::size_t{15};
    return want > max ? max : want;
  }

  template <class Build, class Fallback>
  Status build_with(Result<std::span<std::byte>> r, Build&& build, Fallback&& fallback) {
    fbb_.reset();  // the last record's builder lets go of its block before the next one is set
    if (!r) return r.status();
    const std::size_t used = r->size();
    const std::size_t block = used > layout::kMinOffset ? used - layout::kMinOffset : 0;
    alloc_.set_block(r->data() + layout::kMinOffset, block);
    // FlatBuffers aligns relative to the buffer's end, which is the block's (16-byte aligned)
    // end. Finishing with a minimum alignment of 16 (TrackMinAlign, below) pads the buffer's
    // front so that its size is a multiple of 16: it starts 16-byte aligned, as every record
    // does, and its offset word is a multiple of 16 (what readers require).
    fbb_.emplace(block == 0 ? 1024 : block, &alloc_, false, layout::kRecordAlign);
    flatbuffers::Offset<Root> root;
    try {
      root = build(*fbb_);
    } catch (...) {
      writer_.abort();
      fbb_.reset();
      throw;
    }
    fbb_->TrackMinAlign(layout::kRecordAlign);
    fbb_->Finish(root, schema_traits<Root>::file_identifier());
    const std::uint8_t* p = fbb_->GetBufferPointer();
    const std::size_t offset =
        static_cast<std::size_t>(p - reinterpret_cast<std::uint8_t*>(r->data()));
    if (alloc_.in_block(p) && (offset & detail::kAlignMask) == 0)
      return writer_.commit_at(offset, used);
    // The fallback: the record outgrew the hint and was finished on the heap.
    writer_.abort();
    const Status s = fallback(detail::bytes_of(*fbb_));
    fbb_.reset();  // frees the heap buffer; the next record starts in the ring again
    return s;
  }

  static bool has_identifier(const flatbuffers::FlatBufferBuilder& fbb) noexcept {
    const char* id = schema_traits<Root>::file_identifier();
    if (id == nullptr || id[0] == '\0') return true;
    if (fbb.GetSize() < sizeof(flatbuffers::uoffset_t) + flatbuffers::kFileIdentifierLength)
      return false;
    return flatbuffers::BufferHasIdentifier(fbb.GetBufferPointer(), id);
  }
  SchemaMatch match_;
  Writer<M> writer_;
  detail::InPlaceAllocator alloc_;
  std::optional<flatbuffers::FlatBufferBuilder> fbb_;
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

/// What a batched receive (Consumer::poll, DynamicConsumer::poll) did.
struct PollCount {
  std::size_t delivered = 0;  ///< verified records handed to the callback
  std::size_t rejected = 0;   ///< records that failed verification: counted and skipped
  /// ok when the batch filled `max`; otherwise why it stopped early (empty, corrupt,
  /// abandoned: Reader::last_status).
  Status status = Status::ok;
};

namespace detail {

/// The receive path every verifying consumer shares (Consumer<Root, M>, DynamicConsumer<M>): the
/// record is copied into private memory and released (or, with in_place, kept in the ring), then
/// `verify(bytes)` runs once on exactly the bytes the caller will read; a record that fails is
/// counted and skipped. \pre one thread at a time.
template <Mode M>
class VerifyingReader {
 public:
  VerifyingReader(Ring ring, const ConsumerOptions& options)
      : reader_(std::move(ring), options.wait), options_(options) {}

  /// The verified bytes of the next record from `r` (a try_read or read of reader()), or why
  /// there are none: its status, or verify_failed.
  template <class Verify>
  Result<std::span<const std::byte>> accept(Result<RecordView> r, Verify&& verify) noexcept {
    current_ = {};
    redelivered_ = false;
    if (!r) return r.status();
    std::span<const std::byte> bytes = r->bytes;
    if (!options_.in_place) {
      std::byte* copy = nullptr;
      try {
        copy = scratch_.get(bytes.size() == 0 ? 1 : bytes.size());
      } catch (const std::bad_alloc&) {
        return fail();
      }
      std::memcpy(copy, bytes.data(), bytes.size());
      bytes = {copy, bytes.size()};
      reader_.release();  // the copy is ours: the ring slot can go back to the producer now
    }
    // The Verifier asserts on buffers of 2 GiB and more: reject them before it sees them.
    if (bytes.size() >= FLATBUFFERS_MAX_BUFFER_SIZE || !verify(bytes)) return fail();
    current_ = bytes;
    redelivered_ = r->redelivered;
    return bytes;
  }

  /// Up to `max` records, each verified exactly as accept() does and handed to
  /// `on_record(std::span<const std::byte>)`; a record that fails verification is counted and
  /// skipped, and the batch goes on. The read position is published once for the whole batch
  /// (Reader::poll), so the producers see the batch's space freed at its end.
  template <class Verify, class F>
  PollCount poll(Verify&& verify, F&& on_record, std::size_t max) {
    reader_.release();  // a record an in_place receive still holds
    current_ = {};
    redelivered_ = false;
    PollCount n;
    n.delivered = reader_.poll(
        [&](std::span<const std::byte> bytes) {
          if (!options_.in_place) {
            std::byte* copy = nullptr;
            try {
              copy = scratch_.get(bytes.size() == 0 ? 1 : bytes.size());
            } catch (const std::bad_alloc&) {
              copy = nullptr;
            }
            if (copy == nullptr) {
              reject(n);
              return;
            }
            std::memcpy(copy, bytes.data(), bytes.size());
            bytes = {copy, bytes.size()};
          }
          if (bytes.size() >= FLATBUFFERS_MAX_BUFFER_SIZE || !verify(bytes)) {
            reject(n);
            return;
          }
          on_record(bytes);
        },
        max);
    n.delivered -= n.rejected;
    n.status = n.delivered + n.rejected < max ? reader_.last_status() : Status::ok;
    return n;
  }

  [[nodiscard]] Reader<M>& reader() noexcept { return reader_; }
  [[nodiscard]] const ConsumerOptions& options() const noexcept { return options_; }
  [[nodiscard]] std::span<const std::byte> current() const noexcept { return current_; }
  [[nodiscard]] bool redelivered() const noexcept { return redelivered_; }

 private:
  Status fail() noexcept {
    reader_.attachment().count(layout::verify_failures);
    reader_.release();
    return Status::verify_failed;
  }

  void reject(PollCount& n) noexcept {
    reader_.attachment().count(layout::verify_failures);
    ++n.rejected;
  }

  Reader<M> reader_;
  ConsumerOptions options_;
  AlignedBuffer scratch_;
  std::span<const std::byte> current_;
  bool redelivered_ = false;
};

}  // namespace detail

/// Receives verified records of `Root` from a ring of mode `M` (through a Reader<M>). The pointer a
/// receive returns stays valid until the next receive on this consumer (or its destruction).
/// \pre one thread at a time.
template <class Root, Mode M = Mode::spsc>
class Consumer {
 public:
  /// \throws Error(wrong_schema) if the ring does not hold records this Root can read (see
  ///   detail::require_schema); the Reader's errors.
  explicit Consumer(Ring ring, ConsumerOptions options = {})
      : match_(detail::require_schema(ring, schema_of<Root>(), binary_schema_of<Root>())),
        rx_(std::move(ring), options) {}

  /// How this consumer's schema relates to the ring's: identical, or a compatible evolution
  /// (endpoint_newer: fields this consumer knows and the ring's producers do not read as their
  /// defaults; ring_newer: fields the ring's schema added are invisible to this consumer).
  [[nodiscard]] SchemaMatch schema_match() const noexcept { return match_; }

  /// The next verified record. empty; corrupt (the ring's shared state is bad; see
  /// Reader::recover); verify_failed (the record was not a valid Root and has been skipped:
  /// the next call returns the next record).
  [[nodiscard]] Result<const Root*> try_receive() noexcept {
    rx_.reader().release();
    return root_of(rx_.accept(rx_.reader().try_read(), verifier()));
  }

  /// try_receive, waiting up to `timeout`. Extra outcomes: timed_out, peer_dead.
  [[nodiscard]] Result<const Root*> receive(std::chrono::nanoseconds timeout) {
    rx_.reader().release();
    return root_of(rx_.accept(rx_.reader().read(timeout), verifier()));
  }

  /// The batched receive: calls `on_record(const Root&)` for up to `max` verified records and
  /// publishes the read position once for the batch (one head store, not one per record). Copy
  /// mode stays copy-then-verify: each record is copied out before it is verified. A record that
  /// fails verification is counted and skipped; the rest of the batch is delivered. The
  /// reference is valid during the call only. Never blocks.
  template <class F>
  PollCount poll(F&& on_record, std::size_t max) {
    return rx_.poll(
        verifier(),
        [&](std::span<const std::byte> b) {
          on_record(*flatbuffers::GetRoot<Root>(reinterpret_cast<const std::uint8_t*>(b.data())));
        },
        max);
  }

  /// The bytes of the record last returned (verified), valid as long as the pointer.
  [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return rx_.current(); }
  /// mpmc: the record last returned was delivered again because a consumer died holding it
  /// (RecordView::redelivered; at-least-once). A consumer holds a record until its next receive
  /// only with ConsumerOptions::in_place; a copying consumer releases it before verifying.
  [[nodiscard]] bool redelivered() const noexcept { return rx_.redelivered(); }
  [[nodiscard]] Reader<M>& raw() noexcept { return rx_.reader(); }
  [[nodiscard]] const ConsumerOptions& options() const noexcept { return rx_.options(); }

 private:
  auto verifier() const noexcept {
    return [this](std::span<const std::byte> b) {
      // A fresh verifier per record, with this consumer's limits and Root's file identifier.
      flatbuffers::Verifier v(reinterpret_cast<const std::uint8_t*>(b.data()), b.size(),
                              rx_.options().max_depth, rx_.options().max_tables);
      return v.VerifyBuffer<Root>(schema_traits<Root>::file_identifier());
    };
  }
  static Result<const Root*> root_of(Result<std::span<const std::byte>> b) noexcept {
    if (!b) return b.status();
    return flatbuffers::GetRoot<Root>(reinterpret_cast<const std::uint8_t*>(b->data()));
  }

  SchemaMatch match_;
  detail::VerifyingReader<M> rx_;
};

}  // namespace flatring
