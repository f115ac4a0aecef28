// Message-queue peers: `boost-mq` (boost::interprocess::message_queue) and `posix-mq` (mq_open).
// Both use the queue's own blocking send and receive; the receiver copies each message into its
// own buffer and checks it.
#include "transport.hpp"

#include <boost/date_time/posix_time/posix_time_types.hpp>
#include <boost/interprocess/ipc/message_queue.hpp>

#include <fmt/format.h>

#include <fcntl.h>
#include <mqueue.h>

#include <cerrno>
#include <fstream>
#include <memory>
#include <vector>

namespace bench {
namespace {

namespace bip = boost::interprocess;

// Queue depth: enough to stream without lock-step, bounded in memory.
unsigned queue_depth(std::size_t payload) {
  return unsigned(std::clamp<std::size_t>((16u << 20) / std::max<std::size_t>(payload, 1), 2, 256));
}

// ---------------------------------------------------------------- boost-mq

// The queue's blocking wait (a process-shared condition variable) cannot be interrupted, so a
// full (empty) queue is waited on with timed_send (timed_receive) in 100 ms steps that check the
// other process; the common path is one try_send (try_receive), the same work as send (receive).
boost::posix_time::ptime soon() {
  return boost::posix_time::microsec_clock::universal_time() + boost::posix_time::milliseconds(100);
}

class BoostMqSender {
 public:
  BoostMqSender(Peer& peer, const std::string& name, std::size_t payload)
      : peer_(&peer), mq_(bip::open_only, name.c_str()), buf_(payload) {
    fill_pattern(buf_.data(), buf_.size());
  }
  void send(std::uint64_t seq) {
    stamp(buf_.data(), buf_.size(), seq);
    if (mq_.try_send(buf_.data(), buf_.size(), 0)) [[likely]]
      return;
    while (!mq_.timed_send(buf_.data(), buf_.size(), 0, soon())) peer_->check_now();
  }

 private:
  Peer* peer_;
  bip::message_queue mq_;
  std::vector<std::byte> buf_;
};

class BoostMqReceiver {
 public:
  BoostMqReceiver(Peer& peer, const std::string& name, std::size_t payload)
      : peer_(&peer), mq_(bip::open_only, name.c_str()), buf_(payload) {}
  void recv(std::uint64_t seq) {
    bip::message_queue::size_type got = 0;
    unsigned prio = 0;
    if (!mq_.try_receive(buf_.data(), buf_.size(), got, prio)) [[unlikely]] {
      while (!mq_.timed_receive(buf_.data(), buf_.size(), got, prio, soon())) peer_->check_now();
    }
    check(buf_.data(), got, buf_.size(), seq);
  }

 private:
  Peer* peer_;
  bip::message_queue mq_;
  std::vector<std::byte> buf_;
};

class BoostMqChannel {
 public:
  explicit BoostMqChannel(const ChannelConfig& cfg)
      : name_(cfg.name), payload_(cfg.payload), cleanup_(NameKind::shm, "/" + cfg.name) {
    bip::message_queue::remove(name_.c_str());
    try {
      // Created here, before the fork; both processes open it by name afterwards.
      bip::message_queue mq(bip::create_only, name_.c_str(), queue_depth(payload_), payload_);
    } catch (const bip::interprocess_exception& e) {
      throw SkipCase(fmt::format("boost message_queue({} x {} B): {}", queue_depth(payload_),
                                 payload_, e.what()));
    }
  }
  ~BoostMqChannel() { bip::message_queue::remove(name_.c_str()); }
  BoostMqChannel(const BoostMqChannel&) = delete;
  BoostMqChannel& operator=(const BoostMqChannel&) = delete;

  BoostMqSender sender(Peer& peer) { return BoostMqSender(peer, name_, payload_); }
  BoostMqReceiver receiver(Peer& peer) { return BoostMqReceiver(peer, name_, payload_); }
  static std::optional<std::string> unsupported(std::size_t, Pattern) { return std::nullopt; }

 private:
  std::string name_;
  std::size_t payload_;
  CleanupName cleanup_;
};

// ---------------------------------------------------------------- posix-mq

long read_long(const char* path, long fallback) {
  std::ifstream f(path);
  long v = fallback;
  if (!(f >> v)) return fallback;
  return v;
}

class PosixMqEnd {
 public:
  PosixMqEnd(Peer& peer, const std::string& name, int flags, std::size_t payload)
      : peer_(&peer), buf_(payload) {
    mq_ = ::mq_open(name.c_str(), flags);
    if (mq_ == mqd_t(-1)) fail_errno("mq_open " + name);
    fill_pattern(buf_.data(), buf_.size());
  }
  PosixMqEnd(PosixMqEnd&& o) noexcept : peer_(o.peer_), mq_(o.mq_), buf_(std::move(o.buf_)) {
    o.mq_ = mqd_t(-1);
  }
  PosixMqEnd(const PosixMqEnd&) = delete;
  PosixMqEnd& operator=(const PosixMqEnd&) = delete;
  ~PosixMqEnd() {
    if (mq_ != mqd_t(-1)) ::mq_close(mq_);
  }

  void send(std::uint64_t seq) {
    stamp(buf_.data(), buf_.size(), seq);
    while (::mq_send(mq_, reinterpret_cast<const char*>(buf_.data()), buf_.size(), 0) != 0) {
      if (errno != EINTR) fail_errno("mq_send");
      peer_->check_now();
    }
  }
  void recv(std::uint64_t seq) {
    ssize_t n;
    while ((n = ::mq_receive(mq_, reinterpret_cast<char*>(buf_.data()), buf_.size(), nullptr)) <
           0) {
      if (errno != EINTR) fail_errno("mq_receive");
      peer_->check_now();
    }
    check(buf_.data(), std::size_t(n), buf_.size(), seq);
  }

 private:
  Peer* peer_;
  mqd_t mq_;
  std::vector<std::byte> buf_;
};

class PosixMqChannel {
 public:
  explicit PosixMqChannel(const ChannelConfig& cfg)
      : name_("/" + cfg.name), payload_(cfg.payload), cleanup_(NameKind::mq, name_) {
    ::mq_unlink(name_.c_str());
    mq_attr attr{};
    attr.mq_maxmsg =
        std::min<long>(read_long("/proc/sys/fs/mqueue/msg_max", 10), queue_depth(payload_));
    attr.mq_msgsize = long(payload_);
    const mqd_t q = ::mq_open(name_.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600, &attr);
    if (q == mqd_t(-1))
      throw SkipCase(fmt::format("mq_open({} msgs x {} B): {}", attr.mq_maxmsg, payload_,
                                 std::strerror(errno)));
    ::mq_close(q);
  }
  ~PosixMqChannel() { ::mq_unlink(name_.c_str()); }
  PosixMqChannel(const PosixMqChannel&) = delete;
  PosixMqChannel& operator=(const PosixMqChannel&) = delete;

  PosixMqEnd sender(Peer& peer) { return PosixMqEnd(peer, name_, O_WRONLY | O_CLOEXEC, payload_); }
  PosixMqEnd receiver(Peer& peer) {
    return PosixMqEnd(peer, name_, O_RDONLY | O_CLOEXEC, payload_);
  }

  static std::optional<std::string> unsupported(std::size_t payload, Pattern) {
    const long max = read_long("/proc/sys/fs/mqueue/msgsize_max", 8192);
    if (long(payload) > max)
      return fmt::format("message size {} exceeds /proc/sys/fs/mqueue/msgsize_max = {}", payload,
                         max);
    return std::nullopt;
  }

 private:
  std::string name_;
  std::size_t payload_;
  CleanupName cleanup_;
};

}  // namespace

void add_mq_transports(TransportList& out) {
  out.push_back(std::make_unique<ChannelTransport<BoostMqChannel>>("boost-mq"));
  out.push_back(std::make_unique<ChannelTransport<PosixMqChannel>>("posix-mq"));
}

}  // namespace bench
