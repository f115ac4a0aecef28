#include "fast_methods.hpp"

#include <exception>
#include <new>

#include "consumer.hpp"
#include "errors.hpp"
#include "producer.hpp"

namespace py = pybind11;

namespace flatring::python {
namespace {

/// The C++ object of a pybind11 instance of class T. \pre `self` is an instance of T's class
/// (the method descriptor checks that before calling us).
template <class T>
T& self_of(PyObject* self) {
  auto* inst = reinterpret_cast<py::detail::instance*>(self);
  if (inst->simple_layout && inst->simple_holder_constructed) {
    return *static_cast<T*>(inst->simple_value_holder[0]);
  }
  return py::handle(self).cast<T&>();
}

/// Sets the Python error for the exception in flight (what pybind11's dispatcher would do).
void set_python_error() noexcept {
  try {
    throw;
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (const py::builtin_exception& e) {
    e.set_error();
  } catch (const Error& e) {
    set_error_for(e);
  } catch (const std::bad_alloc&) {
    PyErr_NoMemory();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  } catch (...) {
    PyErr_SetString(PyExc_RuntimeError, "flatring: unknown C++ exception");
  }
}

/// Parses (positional..., keywords...) into `out` by parameter name. Returns false with a
/// TypeError set when they do not fit.
bool parse(const char* fn, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames,
           const char* const* names, Py_ssize_t nparams, Py_ssize_t required, PyObject** out) {
  for (Py_ssize_t i = 0; i < nparams; ++i) out[i] = nullptr;
  if (nargs > nparams) {
    PyErr_Format(PyExc_TypeError, "%s() takes at most %zd arguments (%zd given)", fn, nparams,
                 nargs);
    return false;
  }
  for (Py_ssize_t i = 0; i < nargs; ++i) out[i] = args[i];
  const Py_ssize_t nkw = kwnames == nullptr ? 0 : PyTuple_GET_SIZE(kwnames);
  for (Py_ssize_t k = 0; k < nkw; ++k) {
    PyObject* key = PyTuple_GET_ITEM(kwnames, k);
    Py_ssize_t i = 0;
    for (; i < nparams; ++i) {
      if (PyUnicode_CompareWithASCIIString(key, names[i]) == 0) break;
    }
    if (i == nparams) {
      PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fn, key);
      return false;
    }
    if (out[i] != nullptr) {
      PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fn, names[i]);
      return false;
    }
    out[i] = args[nargs + k];
  }
  for (Py_ssize_t i = 0; i < required; ++i) {
    if (out[i] == nullptr) {
      PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fn, names[i]);
      return false;
    }
  }
  return true;
}

py::handle or_none(PyObject* o) { return o == nullptr ? py::handle(Py_None) : py::handle(o); }

PyObject* producer_send(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kw) {
  static const char* const names[] = {"data", "timeout"};
  PyObject* a[2];
  if (!parse("send", args, nargs, kw, names, 2, 1, a)) return nullptr;
  try {
    self_of<Producer>(self).send(a[0], or_none(a[1]));
    Py_RETURN_NONE;
  } catch (...) {
    set_python_error();
    return nullptr;
  }
}

PyObject* producer_send_bytes(PyObject* self, PyObject* const* args, Py_ssize_t nargs,
                              PyObject* kw) {
  static const char* const names[] = {"buf", "offset", "size"};
  PyObject* a[3];
  if (!parse("send_bytes", args, nargs, kw, names, 3, 1, a)) return nullptr;
  try {
    Producer& p = self_of<Producer>(self);
    if (a[1] == nullptr && (a[2] == nullptr || a[2] == Py_None)) {
      p.send(a[0], py::none());
    } else {
      const Py_ssize_t offset = a[1] == nullptr ? 0 : py::cast<Py_ssize_t>(py::handle(a[1]));
      p.send_part(a[0], offset, or_none(a[2]));
    }
    Py_RETURN_NONE;
  } catch (...) {
    set_python_error();
    return nullptr;
  }
}

PyObject* producer_try_send(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kw) {
  static const char* const names[] = {"data"};
  PyObject* a[1];
  if (!parse("try_send", args, nargs, kw, names, 1, 1, a)) return nullptr;
  try {
    return PyBool_FromLong(self_of<Producer>(self).try_send(a[0]) ? 1 : 0);
  } catch (...) {
    set_python_error();
    return nullptr;
  }
}

PyObject* consumer_receive(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kw) {
  static const char* const names[] = {"timeout"};
  PyObject* a[1];
  if (!parse("receive", args, nargs, kw, names, 1, 0, a)) return nullptr;
  try {
    return self_of<Consumer>(self).receive(or_none(a[0])).release().ptr();
  } catch (...) {
    set_python_error();
    return nullptr;
  }
}

PyObject* consumer_recv_bytes(PyObject* self, PyObject* const* args, Py_ssize_t nargs,
                              PyObject* kw) {
  static const char* const names[] = {"maxlength"};
  PyObject* a[1];
  if (!parse("recv_bytes", args, nargs, kw, names, 1, 0, a)) return nullptr;
  try {
    Py_ssize_t max = -1;
    if (a[0] != nullptr && a[0] != Py_None) {
      max = py::cast<Py_ssize_t>(py::handle(a[0]));
      if (max < 0) throw py::value_error("negative maxlength");
    }
    py::object b = self_of<Consumer>(self).receive(py::none());
    if (max >= 0 && PyBytes_GET_SIZE(b.ptr()) > max) {
      PyErr_SetString(PyExc_OSError, "bad message length");
      return nullptr;
    }
    return b.release().ptr();
  } catch (...) {
    set_python_error();
    return nullptr;
  }
}

PyObject* consumer_try_receive(PyObject* self, PyObject* const* args, Py_ssize_t nargs,
                               PyObject* kw) {
  PyObject* a[1];
  if (!parse("try_receive", args, nargs, kw, nullptr, 0, 0, a)) return nullptr;
  try {
    return self_of<Consumer>(self).try_receive().release().ptr();
  } catch (...) {
    set_python_error();
    return nullptr;
  }
}

#define FR_FAST(f) reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(f))
PyMethodDef producer_methods[] = {
    {"send", FR_FAST(producer_send), METH_FASTCALL | METH_KEYWORDS,
     "send(data, timeout=None)\n\nSends one bytes-like record, waiting up to `timeout` seconds "
     "(None: forever) for space. Raises Timeout, TooLarge, PeerDead, ..."},
    {"send_bytes", FR_FAST(producer_send_bytes), METH_FASTCALL | METH_KEYWORDS,
     "send_bytes(buf, offset=0, size=None)\n\nmultiprocessing's send_bytes: bytes "
     "[offset, offset + size) of a bytes-like object as one record, waiting for space."},
    {"try_send", FR_FAST(producer_try_send), METH_FASTCALL | METH_KEYWORDS,
     "try_send(data) -> bool\n\nSends one record if there is room now; False when the ring is "
     "full."},
};
PyMethodDef consumer_methods[] = {
    {"receive", FR_FAST(consumer_receive), METH_FASTCALL | METH_KEYWORDS,
     "receive(timeout=None) -> bytes\n\nThe next record, verified (copy-then-verify). Raises "
     "Timeout, VerifyError (the record was skipped), PeerDead, ..."},
    {"recv_bytes", FR_FAST(consumer_recv_bytes), METH_FASTCALL | METH_KEYWORDS,
     "recv_bytes(maxlength=None) -> bytes\n\nmultiprocessing's recv_bytes: the next record; "
     "OSError if it is longer than maxlength (it is dropped)."},
    {"try_receive", FR_FAST(consumer_try_receive), METH_FASTCALL | METH_KEYWORDS,
     "try_receive() -> bytes | None\n\nThe next record if there is one now."},
};
#undef FR_FAST

void install(py::handle cls, PyMethodDef* defs, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    PyObject* d = PyDescr_NewMethod(reinterpret_cast<PyTypeObject*>(cls.ptr()), &defs[i]);
    if (d == nullptr) throw py::error_already_set();
    const int rc = PyObject_SetAttrString(cls.ptr(), defs[i].ml_name, d);
    Py_DECREF(d);
    if (rc != 0) throw py::error_already_set();
  }
}

}  // namespace

void install_fast_methods(py::handle producer_class, py::handle consumer_class) {
  install(producer_class, producer_methods, std::size(producer_methods));
  install(consumer_class, consumer_methods, std::size(consumer_methods));
}

}  // namespace flatring::python
