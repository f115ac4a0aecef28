// fileno() for a consumer: a descriptor that is readable while a receive would not wait, for
// multiprocessing.connection.wait, selectors and asyncio's add_reader.
#pragma once

#include <memory>

#include "any_endpoint.hpp"

namespace flatring::python {

/// An epoll descriptor over the reader's WaitFd (issue 13: readable once a producer commits after
/// arm(), or a watched producer exits) and an eventfd this side sets when it already knows that a
/// record (or an outcome, such as the end of the stream) is there. update() re-derives which of
/// the two applies; the consumer calls it from fileno() and after every receive.
class Readiness {
 public:
  /// \throws Error as WaitFd's constructor; Error(system_error) when a descriptor cannot be made.
  explicit Readiness(AnyReader& r);
  ~Readiness();
  Readiness(const Readiness&) = delete;
  Readiness& operator=(const Readiness&) = delete;

  [[nodiscard]] int fd() const noexcept { return ep_; }
  /// Readable now if `r` has a record or an outcome to report; otherwise arms the WaitFd.
  /// \pre the reader's thread (the consumer's lock held).
  void update(AnyReader& r) noexcept;
  /// After fork: the WaitFd belongs to the parent's endpoint; forget it without its destructor
  /// (which would remove the parent's notification socket).
  void abandon() noexcept;

 private:
  void set(bool ready) noexcept;

  std::unique_ptr<WaitFd> wait_;
  int ep_ = -1;
  int ev_ = -1;
  bool ready_ = false;
};

}  // namespace flatring::python
