// flatring.Consumer: records from a ring of any mode, each verified in C++ against the schema
// before Python sees it: copied into a new bytes object and verified there (the default), or
// verified in place and lent out as a zero-copy memoryview (receive_view).
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include <pybind11/pybind11.h>

#include "any_endpoint.hpp"
#include "endpoint_base.hpp"
#include "readiness.hpp"
#include "record_view.hpp"
#include "schema_arg.hpp"

namespace flatring::python {

class Consumer {
 public:
  /// `schema`: the caller's, already checked against the ring (open_ring); None verifies with
  /// the ring's stored schema, or not at all on a raw ring. \throws WrongSchema for a ring that
  /// names a schema but stores none (and none was given), or one the verifier cannot check.
  /// `eof`: a blocking receive raises PeerDead once every producer it knew of has gone and
  /// everything they sent has been received (a stream's end, multiprocessing's EOFError). Without
  /// it a receive waits for producers still to come (a queue's get).
  Consumer(Ring ring, std::optional<Schema> schema, bool eof = true);

  /// The next record as bytes, waiting up to `timeout` (None: forever). \throws Timeout,
  /// VerifyError (the record was skipped), PeerDead, CorruptRing, SegmentLost.
  pybind11::object receive(pybind11::handle timeout);
  /// The next record if there is one now, else None.
  pybind11::object try_receive();
  /// The next record as a read-only memoryview into the ring, verified in place. It stays valid
  /// until the next receive (or release()/close()), which releases it.
  pybind11::object receive_view(pybind11::handle self, pybind11::handle timeout, bool block);
  /// Up to `max` records: waits up to `timeout` for the first, then takes what is there.
  pybind11::list receive_many(std::size_t max, pybind11::handle timeout, bool block);
  /// Copies the next record into the writable buffer `into` at `offset` and verifies it there;
  /// returns its length (int), or, when it does not fit, the record as bytes (consumed).
  pybind11::object receive_into(pybind11::handle into, Py_ssize_t offset, pybind11::handle timeout);
  /// The next record as JSON text (FlatBuffers' text generator with the schema).
  pybind11::str receive_json(pybind11::handle timeout);
  /// True when a record can be received (waits up to `timeout` for one).
  bool poll(pybind11::handle timeout);
  /// A descriptor that is readable while a receive would not wait (a record is there, or the
  /// end of the stream is to be reported). Each receive keeps it current. \throws Error as
  /// WaitFd's constructor.
  int fileno();
  /// Releases the record lent by receive_view. \throws BufferError while views of it are alive.
  void release();
  /// Reader::recover(): unsticks the read position after CorruptRing (dropping records), takes
  /// over a dead consumer's record (mpmc), or skips a dead producer's claim. Returns the status
  /// name ("ok", "empty", "abandoned", "corrupt").
  std::string recover();
  void close();
  void attach();

  [[nodiscard]] bool closed() const noexcept { return ep_.closed(); }
  [[nodiscard]] const Ring& ring() const noexcept { return ep_.ring(); }
  [[nodiscard]] const std::optional<Schema>& schema() const noexcept { return schema_; }
  [[nodiscard]] bool eof() const noexcept { return eof_; }
  [[nodiscard]] bool verifies() const noexcept { return verifier_.has_value(); }
  [[nodiscard]] bool redelivered() const noexcept { return redelivered_; }
  [[nodiscard]] std::uint64_t abandoned() const noexcept { return abandoned_; }
  [[nodiscard]] std::uint64_t rejected() const noexcept { return rejected_; }
  [[nodiscard]] std::uint32_t slot_pid() const noexcept { return ep_.slot_pid(); }

 private:
  AnyReader& reader();
  /// The next record, held by the reader; nothing when `d` is null and none is there now.
  std::optional<RecordView> next(AnyReader& r, const Deadline* d);
  /// One slice of a blocking read (GIL released), ending the stream once every producer that
  /// was there has gone.
  Result<RecordView> read_slice(AnyReader& r, std::chrono::nanoseconds t);
  /// True when `bytes` passes the verifier (always, on a raw ring).
  bool verify(std::span<const std::byte> bytes);
  /// Copies the held record into a new bytes object, verifies the copy and releases the record.
  /// A record that fails raises VerifyError, or with `keep_bad` stays held and gives null.
  pybind11::object take_bytes(AnyReader& r, const RecordView& v, bool keep_bad);
  [[noreturn]] void reject(AnyReader& r, const RecordView& v);
  void release_view(AnyReader& r);
  /// Keeps fileno()'s descriptor current after a receive (no-op until fileno() was called).
  void refresh(AnyReader& r) noexcept {
    if (ready_ && !view_.active()) ready_->update(r);
  }

  Attached<AnyReader> ep_;
  std::optional<Schema> schema_;
  std::optional<RecordVerifier> verifier_;
  std::unique_ptr<JsonCodec> json_;
  flatring::detail::AlignedBuffer scratch_;
  HeldView view_;
  std::unique_ptr<Readiness> ready_;  // made by the first fileno()
  bool redelivered_ = false;
  bool seen_producer_ = false;
  bool eof_ = true;  // a record arrived, or a census found a live producer
  std::uint64_t abandoned_ = 0;
  std::uint64_t rejected_ = 0;
};

}  // namespace flatring::python
