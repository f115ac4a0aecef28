#include "readiness.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

namespace flatring::python {

Readiness::Readiness(AnyReader& r) : wait_(r.wait_fd()) {
  ep_ = ::epoll_create1(EPOLL_CLOEXEC);
  ev_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  bool ok = ep_ >= 0 && ev_ >= 0;
  for (int fd : {wait_->fd(), ev_}) {
    if (!ok) break;
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.fd = fd;
    ok = ::epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &e) == 0;
  }
  if (!ok) {
    const std::string why = std::strerror(errno);
    if (ep_ >= 0) ::close(ep_);
    if (ev_ >= 0) ::close(ev_);
    throw Error(Errc::system_error, "flatring: fileno(): " + why);
  }
}

Readiness::~Readiness() {
  if (ep_ >= 0) ::close(ep_);
  if (ev_ >= 0) ::close(ev_);
}

void Readiness::set(bool ready) noexcept {
  if (ready == ready_) return;
  std::uint64_t v = 1;
  if (ready) {
    (void)!::write(ev_, &v, sizeof v);
  } else {
    (void)!::read(ev_, &v, sizeof v);
  }
  ready_ = ready;
}

void Readiness::update(AnyReader& r) noexcept {
  const Result<RecordView> got = r.try_read();  // holds a record: the next receive returns it
  if (got || got.status() != Status::empty) {
    set(true);
    return;
  }
  const Status s = wait_->arm();  // empty: armed; the WaitFd becomes readable on the next commit
  set(s != Status::empty);
}

void Readiness::abandon() noexcept {
  (void)wait_.release();
  ::close(ep_);
  ::close(ev_);
  ep_ = ev_ = -1;
}

}  // namespace flatring::python
