// The rows where the receiver waits from outside a flatring call (issue 13), and the idle-CPU
// table.
//   flatring-fd               the receiver sleeps in epoll_wait on a WaitFd (no spinning: what an
//                             event loop does): try_read, arm(), epoll_wait, again.
//   flatring-waitset          the receiver sleeps in a WaitSet over its ring and two idle rings
//                             (default WaitOptions: spin 50 us, then one futex_waitv on three
//                             words).
//   flatring-waitset-nospin   the same WaitSet with spin 0: every message is a futex_waitv sleep.
// Senders try_write (one copy in, CopySender), as the `flatring` row; their commit wakes the
// receiver.
// Throughput: the receiver drains a batch with Reader::poll, then waits the same way.
//
// --idle-cpu SECONDS (run_idle_cpu): CPU time and wake-ups per idle second of a receiver blocked on
// an empty ring with a live producer, measured with getrusage(RUSAGE_SELF) in the waiting process.
#include "flatring_common.hpp"
#include "transport.hpp"

#include <flatring/flatring.hpp>

#include <fmt/format.h>

#include <array>
#include <bit>
#include <cerrno>
#include <chrono>
#include <memory>
#include <optional>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace bench {
namespace {

using namespace std::chrono_literals;
using flatring::Status;

enum class Wait { fd, waitset, waitset_nospin };

constexpr auto kWaitSlice = 100ms;  // a wait returns after this long to check the other process

// Sleeps until the reader may have a record: in epoll on its WaitFd, or in a WaitSet.
class Waiter {
 public:
  Waiter(Wait how, flatring::Reader<>& reader, std::vector<flatring::Reader<>>& idle) : how_(how) {
    if (how == Wait::fd) {
      fd_.emplace(reader);
      ep_ = ::epoll_create1(EPOLL_CLOEXEC);
      epoll_event ev{};
      ev.events = EPOLLIN;
      if (ep_ < 0 || ::epoll_ctl(ep_, EPOLL_CTL_ADD, fd_->fd(), &ev) != 0)
        throw BenchError("flatring-fd: epoll set-up failed");
    } else {
      set_.emplace(flatring::WaitOptions{
          .spin = how == Wait::waitset_nospin ? 0ns : flatring::WaitOptions{}.spin});
      (void)set_->add(reader);
      for (auto& r : idle) (void)set_->add(r);
    }
  }
  Waiter(const Waiter&) = delete;
  Waiter& operator=(const Waiter&) = delete;
  ~Waiter() {
    if (ep_ >= 0) ::close(ep_);
  }

  // Returns false when the slice passed without a wake-up.
  bool wait(Peer& peer, std::chrono::milliseconds slice) {
    if (how_ == Wait::fd) {
      const Status s = fd_->arm();
      if (s == Status::ok) return true;
      if (s != Status::empty) fail_status("WaitFd::arm", s);
      epoll_event ev{};
      const int n = ::epoll_wait(ep_, &ev, 1, static_cast<int>(slice.count()));
      if (n < 0 && errno != EINTR) throw BenchError("flatring-fd: epoll_wait failed");
      if (n <= 0) peer.check_now();
      return n > 0;
    }
    const Status s = set_->wait(slice);
    if (s == Status::timed_out) {
      peer.check_now();
      return false;
    }
    if (s != Status::ok) fail_status("WaitSet::wait", s);
    for (const flatring::Ready& r : set_->ready()) {
      if (r.status != Status::ok) fail_status("WaitSet::wait (entry)", r.status);
    }
    return true;
  }

 private:
  Wait how_;
  std::optional<flatring::WaitFd> fd_;
  std::optional<flatring::WaitSet> set_;
  int ep_ = -1;
};

class Receiver {
 public:
  Receiver(Peer& peer, Wait how, flatring::Ring ring, std::vector<flatring::Ring> idle,
           std::size_t payload)
      : peer_(&peer),
        r_(std::move(ring), flatring::WaitOptions{.spin = 0ns}),
        idle_(open_idle(idle)),
        waiter_(std::make_unique<Waiter>(how, r_, idle_)),
        payload_(payload) {}

  void recv(std::uint64_t seq) {
    for (;;) {
      auto rec = r_.try_read();
      if (rec) [[likely]] {
        check(rec->bytes.data(), rec->bytes.size(), payload_, seq);
        r_.release();
        return;
      }
      if (rec.status() != Status::empty) fail_status("try_read", rec.status());
      (void)waiter_->wait(*peer_, kWaitSlice);
    }
  }

  std::uint64_t recv_many(std::uint64_t seq, std::uint64_t max) {
    return poll_checked(r_, payload_, seq, max, [&] { (void)waiter_->wait(*peer_, kWaitSlice); });
  }

 private:
  static std::vector<flatring::Reader<>> open_idle(std::vector<flatring::Ring>& rings) {
    std::vector<flatring::Reader<>> out;
    out.reserve(rings.size());
    for (auto& r : rings) out.emplace_back(std::move(r));
    return out;
  }
  Peer* peer_;
  flatring::Reader<> r_;
  std::vector<flatring::Reader<>> idle_;  // never written: the WaitSet sleeps on them too
  std::unique_ptr<Waiter> waiter_;        // holds references into r_ and idle_: not movable
  std::size_t payload_;
};

template <Wait W>
class WaitChannel {
 public:
  explicit WaitChannel(const ChannelConfig& cfg)
      : cfg_(cfg),
        names_{cfg.name, cfg.name + "-i1", cfg.name + "-i2"},
        guards_{flatring::RemoveGuard(names_[0]), flatring::RemoveGuard(names_[1]),
                flatring::RemoveGuard(names_[2])} {
    flatring::RingOptions o;
    o.max_record_size = cfg.payload;
    o.capacity = capacity_for(o.max_record_size);
    const std::size_t n = W == Wait::fd ? 1 : 3;
    for (std::size_t i = 0; i < n; ++i) {
      flatring::Ring::remove(names_[i]);  // a leftover of a killed run with the same pid
      try {
        rings_.push_back(flatring::Ring::create(
            names_[i], i == 0 ? o : flatring::RingOptions{.capacity = 4096}));
      } catch (const flatring::Error& e) {
        throw BenchError(fmt::format("flatring: create '{}': {}", names_[i], e.what()));
      }
    }
  }

  static std::optional<std::string> unsupported(std::size_t, Pattern) { return std::nullopt; }

  CopySender sender(Peer& peer) {
    return CopySender(peer, flatring::Ring::open(cfg_.name), cfg_.payload);
  }
  Receiver receiver(Peer& peer) {
    std::vector<flatring::Ring> idle;
    for (std::size_t i = 1; i < rings_.size(); ++i) idle.push_back(flatring::Ring::open(names_[i]));
    return Receiver(peer, W, flatring::Ring::open(cfg_.name), std::move(idle), cfg_.payload);
  }

 private:
  ChannelConfig cfg_;
  std::array<std::string, 3> names_;
  std::array<flatring::RemoveGuard, 3> guards_;
  std::vector<flatring::Ring> rings_;
};

// ---------------------------------------------------------------- idle CPU

enum class Idle { read, fd, waitset, pipe };

struct IdleResult {
  double cpu_us_per_s = 0;
  double wakeups_per_s = 0;
};

// In a child: blocks for `seconds` on an empty ring (or pipe) whose producer lives in the parent,
// and measures its own CPU time and voluntary context switches (one per wake-up) while it waits.
IdleResult idle_child(Idle how, const std::string& name, int pipe_rd, double seconds) {
  flatring::Reader<> reader(flatring::Ring::open(name));
  std::optional<flatring::WaitFd> fd;
  std::optional<flatring::WaitSet> set;
  int ep = -1;
  if (how == Idle::fd) {
    fd.emplace(reader);
    ep = ::epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    (void)::epoll_ctl(ep, EPOLL_CTL_ADD, fd->fd(), &ev);
  } else if (how == Idle::waitset) {
    set.emplace();
    (void)set->add(reader);
  }
  const auto span =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(seconds));
  rusage before{}, after{};
  ::getrusage(RUSAGE_SELF, &before);
  const auto start = std::chrono::steady_clock::now();
  const auto end = start + span;
  for (auto now = start; now < end; now = std::chrono::steady_clock::now()) {
    const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(end - now);
    switch (how) {
      case Idle::read: (void)reader.read(left); break;
      case Idle::fd:
        if (fd->arm() == Status::empty) {
          epoll_event ev{};
          (void)::epoll_wait(ep, &ev, 1, static_cast<int>(left.count() / 1'000'000 + 1));
        }
        break;
      case Idle::waitset: (void)set->wait(left); break;
      case Idle::pipe: {
        pollfd p{pipe_rd, POLLIN, 0};
        (void)::poll(&p, 1, static_cast<int>(left.count() / 1'000'000 + 1));
        break;
      }
    }
  }
  ::getrusage(RUSAGE_SELF, &after);
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  auto us = [](const timeval& t) { return double(t.tv_sec) * 1e6 + double(t.tv_usec); };
  const double cpu =
      us(after.ru_utime) + us(after.ru_stime) - us(before.ru_utime) - us(before.ru_stime);
  if (ep >= 0) ::close(ep);
  return {cpu / elapsed, double(after.ru_nvcsw - before.ru_nvcsw) / elapsed};
}

}  // namespace

void add_flatring_wait_transports(TransportList& out) {
  out.push_back(std::make_unique<ChannelTransport<WaitChannel<Wait::fd>>>("flatring-fd"));
  out.push_back(std::make_unique<ChannelTransport<WaitChannel<Wait::waitset>>>("flatring-waitset"));
  out.push_back(std::make_unique<ChannelTransport<WaitChannel<Wait::waitset_nospin>>>(
      "flatring-waitset-nospin"));
}

int run_idle_cpu(double seconds) {
  struct Row {
    Idle how;
    const char* name;
    const char* what;
  };
  const Row rows[] = {
      {Idle::read, "flatring read()", "Reader::read, spin 50 us then futex; liveness every 100 ms"},
      {Idle::fd, "flatring-fd", "epoll_wait on a WaitFd; no timer behind the fd"},
      {Idle::waitset, "flatring-waitset", "WaitSet::wait (futex_waitv); liveness every 100 ms"},
      {Idle::pipe, "pipe", "poll() on an empty pipe: the kernel's own sleep"},
  };
  fmt::print("idle CPU: a receiver blocked {:.1f} s on an empty ring with a live producer "
             "(getrusage in the waiting process)\n",
             seconds);
  fmt::print("{:<18} {:>16} {:>14}  {}\n", "waiter", "CPU us / idle s", "wake-ups / s",
             "what waits");
  for (const Row& row : rows) {
    const std::string name = unique_name("idle");
    flatring::RemoveGuard guard(name);
    flatring::Ring ring = flatring::Ring::create(name, flatring::RingOptions{.capacity = 4096});
    flatring::Writer<> writer(ring);  // alive and silent: nobody dies, nothing arrives
    int data[2], result[2];
    if (::pipe(data) != 0 || ::pipe(result) != 0) throw BenchError("pipe failed");
    const pid_t pid = ::fork();
    if (pid == 0) {
      IdleResult r{};
      try {
        r = idle_child(row.how, name, data[0], seconds);
      } catch (...) {
        r.cpu_us_per_s = -1;
      }
      (void)!::write(result[1], &r, sizeof r);
      ::_exit(0);
    }
    IdleResult r{};
    const bool got = ::read(result[0], &r, sizeof r) == sizeof r;
    int status = 0;
    ::waitpid(pid, &status, 0);
    for (int f : {data[0], data[1], result[0], result[1]}) ::close(f);
    if (!got || r.cpu_us_per_s < 0) throw BenchError(fmt::format("idle-cpu: {} failed", row.name));
    fmt::print("{:<18} {:>16.1f} {:>14.1f}  {}\n", row.name, r.cpu_us_per_s, r.wakeups_per_s,
               row.what);
  }
  return 0;
}

}  // namespace bench
