// A ring's raw endpoints behind one interface, so that the Python module handles rings of every
// mode with one class per role (the mode is chosen at run time, from the segment's header).
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <span>

#include <flatring/flatring.hpp>
#include <flatring/wait_fd.hpp>

namespace flatring::python {

/// Writer<M> for a mode chosen at run time. \pre one thread at a time (the caller serializes).
class AnyWriter {
 public:
  virtual ~AnyWriter() = default;
  [[nodiscard]] virtual Status try_write(std::span<const std::byte> payload) noexcept = 0;
  [[nodiscard]] virtual Status write(std::span<const std::byte> payload,
                                     std::chrono::nanoseconds timeout) = 0;
  [[nodiscard]] virtual Result<std::span<std::byte>> try_reserve(std::size_t n) noexcept = 0;
  [[nodiscard]] virtual Result<std::span<std::byte>> reserve(std::size_t n,
                                                             std::chrono::nanoseconds timeout) = 0;
  virtual Status commit(std::size_t used) noexcept = 0;
  virtual void abort() noexcept = 0;
  [[nodiscard]] virtual const Attachment& attachment() const noexcept = 0;
  [[nodiscard]] virtual std::uint64_t max_record_size() const noexcept = 0;

  /// A writer of `ring`'s own mode. \throws Error as the Writer's constructor.
  static std::unique_ptr<AnyWriter> attach(const Ring& ring, const WaitOptions& wait);
};

/// Reader<M> for a mode chosen at run time. \pre one thread at a time (the caller serializes).
class AnyReader {
 public:
  virtual ~AnyReader() = default;
  [[nodiscard]] virtual Result<RecordView> try_read() noexcept = 0;
  [[nodiscard]] virtual Result<RecordView> read(std::chrono::nanoseconds timeout) = 0;
  virtual void release() noexcept = 0;
  virtual Status recover() noexcept = 0;
  [[nodiscard]] virtual const Attachment& attachment() const noexcept = 0;
  /// The pollable descriptor of this reader (issue 13's WaitFd). \throws Error as WaitFd's.
  [[nodiscard]] virtual std::unique_ptr<WaitFd> wait_fd() = 0;

  /// A reader of `ring`'s own mode. \throws Error as the Reader's constructor.
  static std::unique_ptr<AnyReader> attach(const Ring& ring, const WaitOptions& wait);
};

}  // namespace flatring::python
