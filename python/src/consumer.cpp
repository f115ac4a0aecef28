#include "consumer.hpp"

#include <cstdint>
#include <cstring>
#include <utility>

namespace py = pybind11;

namespace flatring::python {

Consumer::Consumer(Ring ring, std::optional<Schema> schema, bool eof)
    : ep_(std::move(ring)), schema_(std::move(schema)), eof_(eof) {
  const SegmentInfo& info = ep_.ring().info();
  const Schema& use = schema_ ? *schema_ : info.stored_schema;
  if (use.empty()) {
    if (!info.schema.raw()) {
      raise_error("WrongSchema", "wrong_schema",
                  "flatring ring '" + info.name + "': holds records of '" +
                      info.schema.identifier() +
                      "' but stores no binary schema to verify them with; pass schema=");
    }
    return;  // a raw ring: bytes are delivered as they are
  }
  if (!RecordVerifier::supports(use)) {
    raise_error("WrongSchema", "wrong_schema",
                "flatring ring '" + info.name + "': " + use.root_name() +
                    " has a vector of unions, which the reflection verifier cannot check safely");
  }
  verifier_.emplace(use);
}

AnyReader& Consumer::reader() {
  if (ep_.forked()) {
    ep_.after_fork();
    view_.abandon();
    (void)json_.release();
    if (ready_) ready_->abandon();
    (void)ready_.release();  // closed its own descriptors; the WaitFd is the parent's
  }
  return ep_.get();
}

void Consumer::attach() {
  CallLock lock(ep_.mutex());
  (void)reader();
}

void Consumer::release_view(AnyReader& r) {
  if (!view_.active()) return;
  view_.close();  // throws BufferError while something still uses the record
  r.release();
}

void Consumer::release() {
  CallLock lock(ep_.mutex());
  AnyReader& r = reader();
  release_view(r);
  refresh(r);
}

int Consumer::fileno() {
  CallLock lock(ep_.mutex());
  AnyReader& r = reader();
  if (!ready_) ready_ = std::make_unique<Readiness>(r);
  if (!view_.active()) ready_->update(r);
  return ready_->fd();
}

void Consumer::close() {
  if (ep_.forked()) {
    ep_.after_fork();
    view_.abandon();
  }
  CallLock lock(ep_.mutex());
  if (view_.active()) view_.close();  // throws BufferError: the consumer stays open
  ready_.reset();                     // before the reader, as WaitFd requires
  ep_.close();
}

std::string Consumer::recover() {
  CallLock lock(ep_.mutex());
  AnyReader& r = reader();
  release_view(r);
  return std::string(to_string(r.recover()));
}

Result<RecordView> Consumer::read_slice(AnyReader& r, std::chrono::nanoseconds t) {
  Result<RecordView> got = r.read(t);
  if (got.status() == Status::peer_dead && !eof_) return Status::timed_out;  // wait on
  if (got.status() != Status::timed_out || !eof_) return got;
  // Reader::read reports peer_dead once a producer it saw while waiting has gone. A producer
  // that sent everything and detached before this consumer ever waited was never seen there:
  // the records it sent (or a census while it lived) show that it existed, so its absence now is
  // the end of the stream (what EOFError is for multiprocessing users), not a wait for a
  // producer still to come.
  const PeerCensus c = census(ep_.ring(), layout::Role::producer);
  if (c.alive != 0) seen_producer_ = true;
  else if (seen_producer_) return Status::peer_dead;
  return got;
}

std::optional<RecordView> Consumer::next(AnyReader& r, const Deadline* d) {
  for (;;) {
    Result<RecordView> got = r.try_read();
    if (!got && got.status() == Status::empty && d != nullptr) {
      got = spin_held([&] { return r.try_read(); }, Status::empty);
      if (!got && got.status() == Status::empty)
        got = block_until(*d, [&](std::chrono::nanoseconds t) { return read_slice(r, t); });
    }
    if (got) {
      seen_producer_ = true;
      return *got;
    }
    switch (got.status()) {
      case Status::empty: return std::nullopt;
      case Status::abandoned: ++abandoned_; continue;  // a dead producer's claim: go on
      default: raise_status(got.status(), ep_.name());
    }
  }
}

bool Consumer::verify(std::span<const std::byte> bytes) {
  if (!verifier_) return true;
  // The FlatBuffers verifier asserts on buffers of 2 GiB and more: reject them before.
  if (bytes.size() >= FLATBUFFERS_MAX_BUFFER_SIZE) return false;
  if ((reinterpret_cast<std::uintptr_t>(bytes.data()) & 7) != 0) {
    // The verifier checks scalar alignment relative to the buffer: give it an aligned copy.
    std::byte* copy = scratch_.get(bytes.size());
    std::memcpy(copy, bytes.data(), bytes.size());
    bytes = {copy, bytes.size()};
  }
  return verifier_->verify(bytes);
}

void Consumer::reject(AnyReader& r, const RecordView& v) {
  r.attachment().count(layout::verify_failures);
  ++rejected_;
  const std::string what = "position " + std::to_string(v.position) + ", " +
                           std::to_string(v.bytes.size()) + " bytes, schema " +
                           (verifier_ ? verifier_->schema().root_name() : std::string("-"));
  raise_status(Status::verify_failed, ep_.name(), what);
}

py::object Consumer::take_bytes(AnyReader& r, const RecordView& v, bool keep_bad) {
  const std::size_t n = v.bytes.size();
  // Allocated with the GIL; on failure (MemoryError) the record stays held for the next call.
  PyObject* raw = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(n));
  if (raw == nullptr) throw py::error_already_set();
  py::object out = py::reinterpret_steal<py::object>(raw);
  auto* dst = reinterpret_cast<std::byte*>(PyBytes_AS_STRING(raw));
  bool ok = false;
  const auto copy_verify = [&] {
    if (n != 0) std::memcpy(dst, v.bytes.data(), n);
    ok = verify({dst, n});  // the copy is what Python reads: verify exactly that
    if (ok || !keep_bad) r.release();
  };
  if (n >= kNoGilBytes) {
    py::gil_scoped_release nogil;
    copy_verify();
  } else {
    copy_verify();
  }
  redelivered_ = v.redelivered;
  if (ok) return out;
  if (keep_bad) return py::object();
  reject(r, v);
}

py::object Consumer::receive(py::handle timeout) {
  const Deadline d(timeout);
  CallLock lock(ep_.mutex());
  AnyReader& r = reader();
  release_view(r);
  const std::optional<RecordView> v = next(r, &d);
  py::object b = take_bytes(r, *v, false);
  refresh(r);
  return b;
}

py::object Consumer::try_receive() {
  CallLock lock(ep_.mutex());
  AnyReader& r = reader();
  release_view(r);
  const std::optional<RecordView> v = next(r, nullptr);
  if (!v) {
    refresh(r);
    return py::none();
  }
  py::object b = take_bytes(r, *v, false);
  refresh(r);
  return b;
}

py::object Consumer::receive_view(py::handle self, py::handle timeout, bool block) {
  const Deadline d(timeout);
  CallLock lock(ep_.mutex());
  AnyReader& r = reader();
  release_view(r);
  const std::optional<RecordView> v = next(r, block ? &d : nullptr);
  if (!v) return py::none();
  bool ok = false;
  if (v->bytes.size() >= kNoGilBytes) {
    py::gil_scoped_release nogil;
    ok = verify(v->bytes);
  } else {
    ok = verify(v->bytes);
  }
  redelivered_ = v->redelivered;
  if (!ok) {
    r.release();
    reject(r, *v);
  }
  return view_.open(self, ep_.ring(), v->bytes.data(), v->bytes.size());
}

py::list Consumer::receive_many(std::size_t max, py::handle timeout, bool block) {
  const Deadline d(timeout);
  CallLock lock(ep_.mutex());
  AnyReader& r = reader();
  release_view(r);
  py::list out;
  if (max == 0) return out;
  std::optional<RecordView> v = next(r, block ? &d : nullptr);
  while (v) {
    // A record that fails verification after others were taken stays held: the next call
    // raises VerifyError for it, so no good record of this batch is lost to the exception.
    py::object b = take_bytes(r, *v, /*keep_bad=*/out.size() != 0);
    if (!b) break;
    out.append(std::move(b));
    if (out.size() >= max) break;
    v = next(r, nullptr);
  }
  refresh(r);
  return out;
}

py::object Consumer::receive_into(py::handle into, Py_ssize_t offset, py::handle timeout) {
  const Deadline d(timeout);
  Py_buffer buf{};
  if (PyObject_GetBuffer(into.ptr(), &buf, PyBUF_WRITABLE) != 0) throw py::error_already_set();
  const std::unique_ptr<Py_buffer, void (*)(Py_buffer*)> hold(&buf, PyBuffer_Release);
  if (offset < 0) throw py::value_error("negative offset");
  if (offset > buf.len) throw py::value_error("offset too large");
  CallLock lock(ep_.mutex());
  AnyReader& r = reader();
  release_view(r);
  const std::optional<RecordView> v = next(r, &d);
  const std::size_t n = v->bytes.size();
  if (n > static_cast<std::size_t>(buf.len - offset)) return take_bytes(r, *v, false);
  auto* dst = static_cast<std::byte*>(buf.buf) + offset;
  bool ok = false;
  const auto copy_verify = [&] {
    if (n != 0) std::memcpy(dst, v->bytes.data(), n);
    r.release();
    ok = verify({dst, n});
  };
  if (n >= kNoGilBytes) {
    py::gil_scoped_release nogil;
    copy_verify();
  } else {
    copy_verify();
  }
  redelivered_ = v->redelivered;
  if (!ok) reject(r, *v);
  refresh(r);
  return py::int_(n);
}

py::str Consumer::receive_json(py::handle timeout) {
  const Deadline d(timeout);
  CallLock lock(ep_.mutex());
  AnyReader& r = reader();
  release_view(r);
  if (!verifier_) {
    raise_error("WrongSchema", "wrong_schema",
                "flatring ring '" + ep_.name() + "': receive_json needs a schema (a raw ring)");
  }
  if (!json_) json_ = std::make_unique<JsonCodec>(verifier_->schema());
  const std::optional<RecordView> v = next(r, &d);
  const std::size_t n = v->bytes.size();
  std::byte* copy = scratch_.get(n == 0 ? 1 : n);
  if (n != 0) std::memcpy(copy, v->bytes.data(), n);
  r.release();
  redelivered_ = v->redelivered;
  if (!verify({copy, n})) reject(r, *v);
  refresh(r);
  return py::str(json_->generate({copy, n}));
}

bool Consumer::poll(py::handle timeout) {
  const Deadline d(timeout);
  CallLock lock(ep_.mutex());
  AnyReader& r = reader();
  release_view(r);
  const bool wait = d.forever() || d.slice().count() > 0;
  for (;;) {
    Result<RecordView> got = r.try_read();  // holds the record: the next receive returns it
    if (!got && got.status() == Status::empty && wait) {
      got = block_until(d, [&](std::chrono::nanoseconds t) { return read_slice(r, t); });
    }
    if (got) {
      seen_producer_ = true;
      refresh(r);
      return true;
    }
    switch (got.status()) {
      case Status::empty:
        // poll(0): no wait, but the end of the stream is reported as a blocking read would.
        if (eof_ && seen_producer_ && census(ep_.ring(), layout::Role::producer).alive == 0)
          raise_status(Status::peer_dead, ep_.name());
        refresh(r);
        return false;
      case Status::timed_out: refresh(r); return false;
      case Status::abandoned: ++abandoned_; continue;
      default: raise_status(got.status(), ep_.name());
    }
  }
}

}  // namespace flatring::python
