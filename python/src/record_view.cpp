#include "record_view.hpp"

#include <new>

namespace py = pybind11;

namespace flatring::python {

/// The exporter behind a record's memoryview.
struct RecordBuffer {
  PyObject_HEAD const std::byte* ptr;
  Py_ssize_t len;
  Py_ssize_t exports;  // buffers handed out and not yet released
  bool valid;          // false once the consumer has released the record
  HeldView* holder;    // the consumer's HeldView, or null once it let go of us
  PyObject* owner;     // the consumer's Python object (strong)
  Ring* ring;          // keeps the mapping alive while a buffer may still point into it
};

namespace {

PyTypeObject* buffer_type = nullptr;

int rb_getbuffer(PyObject* self, Py_buffer* view, int flags) {
  auto* b = reinterpret_cast<RecordBuffer*>(self);
  if (!b->valid) {
    PyErr_SetString(PyExc_BufferError,
                    "flatring: this record has been released; its memory may be reused");
    view->obj = nullptr;
    return -1;
  }
  if (PyBuffer_FillInfo(view, self, const_cast<std::byte*>(b->ptr), b->len, /*readonly=*/1,
                        flags) != 0)
    return -1;
  ++b->exports;
  return 0;
}

void rb_releasebuffer(PyObject* self, Py_buffer*) {
  --reinterpret_cast<RecordBuffer*>(self)->exports;
}

void rb_dealloc(PyObject* self) {
  auto* b = reinterpret_cast<RecordBuffer*>(self);
  if (b->holder != nullptr) b->holder->exporter_gone(b);
  delete b->ring;
  PyObject* owner = b->owner;
  PyTypeObject* tp = Py_TYPE(self);
  tp->tp_free(self);
  Py_DECREF(tp);
  Py_XDECREF(owner);
}

PyType_Slot rb_slots[] = {
    {Py_bf_getbuffer, reinterpret_cast<void*>(rb_getbuffer)},
    {Py_bf_releasebuffer, reinterpret_cast<void*>(rb_releasebuffer)},
    {Py_tp_dealloc, reinterpret_cast<void*>(rb_dealloc)},
    {Py_tp_doc, const_cast<char*>("The exporter of a flatring record view (internal).")},
    {0, nullptr},
};

PyType_Spec rb_spec = {"flatring._flatring._RecordBuffer", sizeof(RecordBuffer), 0,
                       Py_TPFLAGS_DEFAULT, rb_slots};

/// Detaches the exporter from its consumer and from the record.
void invalidate(RecordBuffer* b) noexcept {
  b->valid = false;
  b->ptr = nullptr;
  b->len = 0;
  b->holder = nullptr;
  Py_CLEAR(b->owner);
}

}  // namespace

py::object HeldView::open(py::handle owner, const Ring& ring, const std::byte* p, std::size_t n) {
  auto* b = PyObject_New(RecordBuffer, buffer_type);
  if (b == nullptr) throw py::error_already_set();
  b->ptr = p;
  b->len = static_cast<Py_ssize_t>(n);
  b->exports = 0;
  b->valid = true;
  b->holder = this;
  b->owner = owner.inc_ref().ptr();
  b->ring = new (std::nothrow) Ring(ring);
  py::object exporter = py::reinterpret_steal<py::object>(reinterpret_cast<PyObject*>(b));
  if (b->ring == nullptr) throw std::bad_alloc();
  PyObject* mv = PyMemoryView_FromObject(exporter.ptr());
  if (mv == nullptr) throw py::error_already_set();
  py::object view = py::reinterpret_steal<py::object>(mv);
  view_ref_ = PyWeakref_NewRef(mv, nullptr);
  if (view_ref_ == nullptr) {
    invalidate(b);
    throw py::error_already_set();
  }
  buffer_ = b;
  active_ = true;
  return view;
}

void HeldView::close() {
  if (!active_) return;
  if (view_ref_ != nullptr) {
    PyObject* mv = PyWeakref_GetObject(view_ref_);  // borrowed
    if (mv != nullptr && mv != Py_None) {
      py::object keep = py::reinterpret_borrow<py::object>(mv);
      PyObject* res = PyObject_CallMethod(mv, "release", nullptr);
      if (res == nullptr) {
        // memoryview.release() refuses while buffers exported from the view itself are alive.
        PyErr_Clear();
        PyErr_SetString(PyExc_BufferError,
                        "flatring: the previous record's memoryview still has buffers made from "
                        "it (e.g. a NumPy array); delete them before the next receive");
        throw py::error_already_set();
      }
      Py_DECREF(res);
    }
  }
  if (buffer_ != nullptr && buffer_->exports > 0) {
    PyErr_SetString(PyExc_BufferError,
                    "flatring: a slice or other view of the previous record is still alive; "
                    "delete or release it before the next receive (its memory goes back to the "
                    "ring then)");
    throw py::error_already_set();
  }
  if (buffer_ != nullptr) invalidate(buffer_);
  buffer_ = nullptr;
  Py_CLEAR(view_ref_);
  active_ = false;
}

void HeldView::abandon() noexcept {
  if (buffer_ != nullptr) {
    buffer_->holder = nullptr;
    buffer_->valid = false;  // no new buffers; existing ones are the parent's business
  }
  buffer_ = nullptr;
  Py_CLEAR(view_ref_);
  active_ = false;
}

HeldView::~HeldView() {
  if (buffer_ != nullptr) invalidate(buffer_);
  Py_CLEAR(view_ref_);
}

void register_record_buffer(py::module_& m) {
  PyObject* t = PyType_FromSpec(&rb_spec);
  if (t == nullptr) throw py::error_already_set();
  buffer_type = reinterpret_cast<PyTypeObject*>(t);
  m.attr("_RecordBuffer") = py::reinterpret_borrow<py::object>(t);  // keeps one reference
}

}  // namespace flatring::python
