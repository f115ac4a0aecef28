// Zero-copy record views: a read-only memoryview of a record in the shared ring, whose lifetime
// the consumer enforces. The memoryview's exporter counts the buffers it has handed out; the
// consumer releases the record only once the memoryview is released and nothing made from it (a
// slice, a NumPy array) is alive, and then invalidates the exporter. Touching a released
// memoryview raises ValueError; receiving while a slice is alive raises BufferError. Nothing can
// read the record's memory after the ring may have reused it.
#pragma once

#include <cstddef>

#include <pybind11/pybind11.h>

#include <flatring/segment.hpp>

namespace flatring::python {

struct RecordBuffer;

/// What a consumer keeps of the view it handed out. \pre the GIL is held for every use.
class HeldView {
 public:
  HeldView() = default;
  HeldView(const HeldView&) = delete;
  HeldView& operator=(const HeldView&) = delete;
  ~HeldView();

  /// A memoryview of `n` bytes at `p` (in `ring`'s mapping, which it keeps mapped), owned by
  /// `owner` (the consumer's Python object, kept alive while the exporter lives).
  /// \pre !active()
  pybind11::object open(pybind11::handle owner, const Ring& ring, const std::byte* p,
                        std::size_t n);

  /// True between open() and a successful close().
  [[nodiscard]] bool active() const noexcept { return active_; }

  /// Releases the memoryview, checks that no buffer made from it is alive and invalidates the
  /// exporter. \throws BufferError (nothing changed: the record stays held) if something made from
  /// the view still uses it.
  void close();

  /// After fork: forget the view without checking (the record belongs to the parent's endpoint).
  void abandon() noexcept;

  /// Called by the exporter's destructor.
  void exporter_gone(RecordBuffer* b) noexcept {
    if (buffer_ == b) buffer_ = nullptr;
  }

 private:
  RecordBuffer* buffer_ = nullptr;  // borrowed: the exporter tells us when it goes
  PyObject* view_ref_ = nullptr;    // a weak reference to the memoryview
  bool active_ = false;
};

/// Registers the exporter type. Once, at import.
void register_record_buffer(pybind11::module_& m);

}  // namespace flatring::python
