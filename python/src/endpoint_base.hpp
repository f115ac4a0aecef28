// What the Python producer and consumer share: the ring and the caller's schema (what attaching
// again needs, after fork or from a pickle), the per-object call lock, fork detection, and
// bytes-like arguments.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <string>

#include <pybind11/pybind11.h>

#include <flatring/flatring.hpp>

#include "blocking.hpp"
#include "errors.hpp"
#include "fork.hpp"

namespace flatring::python {

/// Opens `name` with all of Ring::open's checks, and checks its schema against `schema` when
/// given (the root type, the file identifier and FlatBuffers' evolution rules, as C++ endpoints
/// do). \throws flatring::Error (WrongSchema, WrongMode, NotFound, ...).
Ring open_ring(const std::string& name, const std::optional<Schema>& schema,
               std::optional<Mode> mode = std::nullopt);

/// A contiguous bytes-like argument, borrowed for the call (no copy).
class BytesArg {
 public:
  explicit BytesArg(pybind11::handle obj) {
    if (PyObject_GetBuffer(obj.ptr(), &view_, PyBUF_SIMPLE) != 0)
      throw pybind11::error_already_set();
  }
  ~BytesArg() { PyBuffer_Release(&view_); }
  BytesArg(const BytesArg&) = delete;
  BytesArg& operator=(const BytesArg&) = delete;
  [[nodiscard]] std::span<const std::byte> span() const noexcept {
    return {static_cast<const std::byte*>(view_.buf), static_cast<std::size_t>(view_.len)};
  }

 private:
  Py_buffer view_{};
};

/// The endpoint `E` (AnyWriter or AnyReader) of one Python object, attached lazily, once per
/// process: after fork() the child's first call attaches a new endpoint of its own and the
/// inherited one is left untouched (it is the parent's; destroying it would free the parent's
/// slot).
template <class E>
class Attached {
 public:
  explicit Attached(Ring ring) : ring_(std::move(ring)), gen_(fork_generation()) {}
  ~Attached() {
    if (gen_ != fork_generation()) (void)e_.release();  // the parent's: leave it alone
  }
  Attached(const Attached&) = delete;
  Attached& operator=(const Attached&) = delete;

  /// True when this process forked since the endpoint attached: call after_fork() before
  /// anything else. \pre the GIL is held.
  [[nodiscard]] bool forked() const noexcept { return gen_ != fork_generation(); }
  /// Forgets the parent's endpoint and lock (another thread of the parent may have held it).
  void after_fork() {
    (void)e_.release();
    new (&mu_) std::timed_mutex();
    gen_ = fork_generation();
  }

  /// The endpoint, attaching it first if needed. \throws Closed after close(); the attach errors.
  E& get() {
    if (!e_) {
      if (closed_)
        raise_error("Closed", "closed",
                    "flatring ring '" + ring_.info().name + "': this endpoint is closed");
      e_ = E::attach(ring_, endpoint_wait_options());
    }
    return *e_;
  }
  [[nodiscard]] bool attached() const noexcept { return e_ != nullptr; }
  void close() noexcept {
    closed_ = true;
    e_.reset();
  }
  [[nodiscard]] bool closed() const noexcept { return closed_; }
  [[nodiscard]] std::timed_mutex& mutex() noexcept { return mu_; }
  [[nodiscard]] const Ring& ring() const noexcept { return ring_; }
  [[nodiscard]] const std::string& name() const noexcept { return ring_.info().name; }
  /// The pid recorded in this endpoint's peer slot (0 before it attached).
  [[nodiscard]] std::uint32_t slot_pid() const noexcept {
    return e_ ? e_->attachment().slot().pid.load(std::memory_order_relaxed) : 0;
  }

 private:
  Ring ring_;
  std::unique_ptr<E> e_;
  std::uint64_t gen_;
  std::timed_mutex mu_;
  bool closed_ = false;
};

}  // namespace flatring::python
