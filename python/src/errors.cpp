#include "errors.hpp"

#include <exception>

namespace py = pybind11;

namespace flatring::python {
namespace {

py::module_& errors_module() {
  // Leaked on purpose: the translator may run during interpreter shutdown.
  static py::module_* m = new py::module_(py::module_::import("flatring._errors"));
  return *m;
}

/// The flatring._errors class for a set-up error code.
const char* class_of(Errc e) noexcept {
  switch (e) {
    case Errc::not_found: return "NotFound";
    case Errc::already_exists: return "AlreadyExists";
    case Errc::permission_denied:
    case Errc::unsafe_owner:
    case Errc::unsafe_permissions: return "PermissionDenied";
    case Errc::invalid_name:
    case Errc::invalid_options: return "InvalidArgument";
    case Errc::wrong_schema: return "WrongSchema";
    case Errc::invalid_schema:
    case Errc::corrupt_schema:
    case Errc::schema_too_large:
    case Errc::schema_too_deep:
    case Errc::schema_no_root: return "SchemaError";
    case Errc::wrong_mode: return "WrongMode";
    case Errc::not_flatring:
    case Errc::wrong_version:
    case Errc::size_mismatch:
    case Errc::corrupt_header:
    case Errc::corrupt_state: return "CorruptSegment";
    case Errc::role_taken: return "RoleTaken";
    case Errc::no_free_slot: return "NoFreeSlot";
    case Errc::system_error: return "SystemCallError";
  }
  return "Error";
}

const char* class_of(Status s) noexcept {
  switch (s) {
    case Status::too_large: return "TooLarge";
    case Status::corrupt: return "CorruptRing";
    case Status::verify_failed: return "VerifyError";
    case Status::timed_out: return "Timeout";
    case Status::peer_dead: return "PeerDead";
    case Status::no_consumer: return "NoConsumer";
    case Status::segment_lost: return "SegmentLost";
    case Status::abandoned: return "Abandoned";
    default: return "Error";
  }
}

std::string explain(Status s) {
  switch (s) {
    case Status::too_large:
      return "record larger than the ring's max_record_size; nothing was sent";
    case Status::corrupt:
      return "the ring's shared state failed a check at the read position; nothing was read "
             "(recover() skips to the producer's position, dropping what lies between)";
    case Status::verify_failed:
      return "a record failed verification against the schema; it was skipped, the next "
             "receive goes on";
    case Status::timed_out: return "timed out";
    case Status::peer_dead:
      return "the peer is gone: it died or detached, and everything it published has been read";
    case Status::no_consumer: return "the ring is full and no live consumer is attached";
    case Status::segment_lost:
      return "the segment was shrunk under this process; nothing more can be exchanged";
    case Status::invalid_state: return "invalid state (API misuse)";
    default: return std::string(to_string(s));
  }
}

void set_error(const char* cls, std::string_view code, const std::string& message) {
  py::object type = errors_module().attr(cls);
  py::object exc = type(message);
  exc.attr("code") = py::str(code.data(), code.size());
  PyErr_SetObject(type.ptr(), exc.ptr());
}

}  // namespace

void raise_error(const char* cls, std::string_view code, const std::string& message) {
  set_error(cls, code, message);
  throw py::error_already_set();
}

void raise_status(Status s, std::string_view ring, std::string_view detail) {
  std::string msg = "flatring ring '" + std::string(ring) + "': " + explain(s);
  if (!detail.empty()) msg += " (" + std::string(detail) + ")";
  raise_error(class_of(s), to_string(s), msg);
}

void set_error_for(const Error& e) { set_error(class_of(e.code()), to_string(e.code()), e.what()); }

void register_errors(py::module_& m) {
  (void)errors_module();
  m.attr("_errors") = errors_module();
  py::register_exception_translator([](std::exception_ptr p) {
    if (!p) return;
    try {
      std::rethrow_exception(p);
    } catch (const Error& e) {
      set_error(class_of(e.code()), to_string(e.code()), e.what());
    }
  });
}

}  // namespace flatring::python
