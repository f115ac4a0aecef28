// flatring.Producer: bytes-like objects into a ring of any mode, copied once, straight into the
// shared ring.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <pybind11/pybind11.h>

#include "any_endpoint.hpp"
#include "endpoint_base.hpp"
#include "schema_arg.hpp"

namespace flatring::python {

class Producer {
 public:
  /// `schema`: the caller's, already checked against the ring (open_ring); used by send_json.
  Producer(Ring ring, std::optional<Schema> schema);

  /// One record, waiting up to `timeout` (None: forever) for space. \throws Timeout, TooLarge,
  /// PeerDead/NoConsumer, CorruptRing, SegmentLost.
  void send(pybind11::handle data, pybind11::handle timeout);
  /// multiprocessing's send_bytes(buf, offset=0, size=None): bytes [offset, offset + size) of
  /// `data` as one record, waiting for space. \throws ValueError as multiprocessing does.
  void send_part(pybind11::handle data, Py_ssize_t offset, pybind11::handle size);
  /// One record if there is room now: True, or False when the ring is full.
  bool try_send(pybind11::handle data);
  /// Every item of `items`, in order, within one `timeout`; returns how many were sent. On an
  /// exception the items before the failing one have been sent (the exception's `sent`).
  std::size_t send_many(pybind11::handle items, pybind11::handle timeout);
  /// The record `json` describes, built by FlatBuffers' parser with the schema.
  void send_json(std::string_view json, pybind11::handle timeout);

  void close();
  [[nodiscard]] bool closed() const noexcept { return ep_.closed(); }
  [[nodiscard]] const Ring& ring() const noexcept { return ep_.ring(); }
  [[nodiscard]] const std::optional<Schema>& schema() const noexcept { return schema_; }
  [[nodiscard]] std::uint32_t slot_pid() const noexcept { return ep_.slot_pid(); }
  [[nodiscard]] std::uint64_t max_record_size() const noexcept {
    return ep_.ring().info().max_record_size;
  }
  /// Attaches now (the constructor attaches lazily, on first use).
  void attach();

 private:
  AnyWriter& writer();
  Status write_one(AnyWriter& w, std::span<const std::byte> bytes, const Deadline& d);
  void check(Status s);

  Attached<AnyWriter> ep_;
  std::optional<Schema> schema_;
  std::unique_ptr<JsonCodec> json_;
  bool seen_consumer_ = false;  // a census while blocked found a live consumer
};

}  // namespace flatring::python
