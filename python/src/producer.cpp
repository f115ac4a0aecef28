#include "producer.hpp"

#include <utility>

namespace py = pybind11;

namespace flatring::python {

Ring open_ring(const std::string& name, const std::optional<Schema>& schema,
               std::optional<Mode> mode) {
  OpenOptions options;
  options.expect_mode = mode;
  Ring ring = Ring::open(name, options);
  if (schema) {
    (void)flatring::detail::require_schema(
        ring, SchemaId::of(schema->root_name(), schema->file_identifier()), *schema);
  }
  return ring;
}

Producer::Producer(Ring ring, std::optional<Schema> schema)
    : ep_(std::move(ring)), schema_(std::move(schema)) {}

AnyWriter& Producer::writer() {
  if (ep_.forked()) {
    ep_.after_fork();
    (void)json_.release();  // may have been in use by another thread of the parent
  }
  return ep_.get();
}

void Producer::attach() {
  CallLock lock(ep_.mutex());
  (void)writer();
}

void Producer::close() {
  if (ep_.forked()) ep_.after_fork();
  CallLock lock(ep_.mutex());
  ep_.close();
}

void Producer::check(Status s) {
  if (s != Status::ok) raise_status(s, ep_.name());
}

Status Producer::write_one(AnyWriter& w, std::span<const std::byte> bytes, const Deadline& d) {
  Status s;
  if (bytes.size() >= kNoGilBytes) {
    py::gil_scoped_release nogil;
    s = w.try_write(bytes);
  } else {
    s = w.try_write(bytes);
  }
  if (s != Status::full) return s;
  if (bytes.size() < kNoGilBytes) {
    s = spin_held([&] { return w.try_write(bytes); }, Status::full);
    if (s != Status::full) return s;
  }
  if (!seen_consumer_ && census(ep_.ring(), layout::Role::consumer).alive != 0)
    seen_consumer_ = true;
  return block_until(d, [&](std::chrono::nanoseconds t) {
    const Status r = w.write(bytes, t);
    // A full ring and no consumer attached: one may still come (the other end of a Pipe attaches
    // when the child first uses it), so wait on; once a consumer was there and all have gone,
    // it is the end (NoConsumer, a BrokenPipeError). A dead consumer is peer_dead at once.
    if (r == Status::no_consumer && !seen_consumer_) return Status::timed_out;
    if (r == Status::timed_out && census(ep_.ring(), layout::Role::consumer).alive != 0)
      seen_consumer_ = true;
    return r;
  });
}

void Producer::send(py::handle data, py::handle timeout) {
  const Deadline d(timeout);
  BytesArg bytes(data);
  CallLock lock(ep_.mutex());
  check(write_one(writer(), bytes.span(), d));
}

void Producer::send_part(py::handle data, Py_ssize_t offset, py::handle size) {
  BytesArg bytes(data);
  const auto all = bytes.span();
  const auto n = static_cast<Py_ssize_t>(all.size());
  if (offset < 0) throw py::value_error("offset is negative");
  if (n < offset) throw py::value_error("buffer length < offset");
  Py_ssize_t len = n - offset;
  if (!size.is_none()) {
    len = py::cast<Py_ssize_t>(size);
    if (len < 0) throw py::value_error("size is negative");
    if (offset + len > n) throw py::value_error("buffer length < offset + size");
  }
  const Deadline d = Deadline::none();
  CallLock lock(ep_.mutex());
  check(write_one(writer(),
                  all.subspan(static_cast<std::size_t>(offset), static_cast<std::size_t>(len)), d));
}

bool Producer::try_send(py::handle data) {
  BytesArg bytes(data);
  CallLock lock(ep_.mutex());
  AnyWriter& w = writer();
  Status s;
  if (bytes.span().size() >= kNoGilBytes) {
    py::gil_scoped_release nogil;
    s = w.try_write(bytes.span());
  } else {
    s = w.try_write(bytes.span());
  }
  if (s == Status::full) return false;
  check(s);
  return true;
}

std::size_t Producer::send_many(py::handle items, py::handle timeout) {
  const Deadline d(timeout);
  CallLock lock(ep_.mutex());
  AnyWriter& w = writer();
  std::size_t sent = 0;
  try {
    for (py::handle item : py::iter(items)) {
      BytesArg bytes(item);
      check(write_one(w, bytes.span(), d));
      ++sent;
    }
  } catch (py::error_already_set& e) {
    if (e.matches(PyExc_Exception)) {
      try {
        e.value().attr("sent") = sent;
      } catch (py::error_already_set&) {
      }
    }
    throw;
  }
  return sent;
}

void Producer::send_json(std::string_view json, py::handle timeout) {
  const Deadline d(timeout);
  CallLock lock(ep_.mutex());
  AnyWriter& w = writer();
  if (!json_) {
    const Schema& s = schema_ ? *schema_ : ep_.ring().info().stored_schema;
    if (s.empty()) {
      raise_error("WrongSchema", "wrong_schema",
                  "flatring ring '" + ep_.name() +
                      "': send_json needs a schema (the ring stores none and none was given)");
    }
    json_ = std::make_unique<JsonCodec>(s);
  }
  check(write_one(w, json_->parse(json), d));
}

}  // namespace flatring::python
