// Byte-stream peers: `pipe` and `unix-stream` (AF_UNIX SOCK_STREAM socketpair).
// Framing: a 4-byte length prefix, then the payload. The sender writes prefix and payload with one
// writev (looping over partial writes); the receiver reads exactly 4 bytes, then exactly the
// payload, into its own buffer, and checks it. Blocking fds throughout.
#include "transport.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <vector>

namespace bench {
namespace {

void write_all(Peer& peer, int fd, const std::byte* hdr, std::size_t hlen, const std::byte* data,
               std::size_t len) {
  iovec iov[2] = {{const_cast<std::byte*>(hdr), hlen}, {const_cast<std::byte*>(data), len}};
  iovec* v = iov;
  int cnt = 2;
  while (cnt > 0) {
    const ssize_t n = ::writev(fd, v, cnt);
    if (n < 0) {
      if (errno != EINTR) fail_errno("writev");
      peer.check_now();
      continue;
    }
    auto left = std::size_t(n);
    while (cnt > 0 && left >= v->iov_len) {
      left -= v->iov_len;
      ++v;
      --cnt;
    }
    if (cnt > 0) {
      v->iov_base = static_cast<char*>(v->iov_base) + left;
      v->iov_len -= left;
    }
  }
}

void read_exact(Peer& peer, int fd, std::byte* dst, std::size_t len) {
  while (len > 0) {
    const ssize_t n = ::read(fd, dst, len);
    if (n > 0) {
      dst += n;
      len -= std::size_t(n);
    } else if (n == 0) {
      throw BenchError("read: the other end closed the stream");
    } else if (errno != EINTR) {
      fail_errno("read");
    } else {
      peer.check_now();
    }
  }
}

class FdSender {
 public:
  FdSender(Peer& peer, int fd, std::size_t payload) : peer_(&peer), fd_(fd), buf_(payload) {
    fill_pattern(buf_.data(), buf_.size());
  }
  void send(std::uint64_t seq) {
    const auto len = std::uint32_t(buf_.size());
    std::byte hdr[4];
    std::memcpy(hdr, &len, sizeof len);
    stamp(buf_.data(), buf_.size(), seq);
    write_all(*peer_, fd_, hdr, sizeof hdr, buf_.data(), buf_.size());
  }

 private:
  Peer* peer_;
  int fd_;
  std::vector<std::byte> buf_;
};

class FdReceiver {
 public:
  FdReceiver(Peer& peer, int fd, std::size_t payload) : peer_(&peer), fd_(fd), buf_(payload) {}
  void recv(std::uint64_t seq) {
    std::uint32_t len = 0;
    read_exact(*peer_, fd_, reinterpret_cast<std::byte*>(&len), sizeof len);
    if (len != buf_.size()) fail_message(seq, 0, 0, buf_.size(), len);
    read_exact(*peer_, fd_, buf_.data(), len);
    check(buf_.data(), len, buf_.size(), seq);
  }

 private:
  Peer* peer_;
  int fd_;
  std::vector<std::byte> buf_;
};

// One direction over a pair of fds; the unused end is closed in each process after the fork.
class FdChannel {
 public:
  FdChannel(const FdChannel&) = delete;
  FdChannel& operator=(const FdChannel&) = delete;
  ~FdChannel() {
    if (r_ >= 0) ::close(r_);
    if (w_ >= 0) ::close(w_);
  }
  FdSender sender(Peer& peer) {
    close_end(r_);
    return FdSender(peer, w_, payload_);
  }
  FdReceiver receiver(Peer& peer) {
    close_end(w_);
    return FdReceiver(peer, r_, payload_);
  }
  static std::optional<std::string> unsupported(std::size_t payload, Pattern) {
    if (payload > 0xFFFFFFFFu) return "payload does not fit the 4-byte length prefix";
    return std::nullopt;
  }

 protected:
  explicit FdChannel(std::size_t payload) : payload_(payload) {}
  static void close_end(int& fd) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  std::size_t payload_;
  int r_ = -1, w_ = -1;
};

class PipeChannel : public FdChannel {
 public:
  explicit PipeChannel(const ChannelConfig& cfg) : FdChannel(cfg.payload) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) fail_errno("pipe2");
    r_ = fds[0];
    w_ = fds[1];
    // Give the pipe the largest buffer an unprivileged process may ask for (default 64 KiB,
    // /proc/sys/fs/pipe-max-size, usually 1 MiB): the pipe at its best, not at its default.
    long max = 1 << 20;
    std::ifstream f("/proc/sys/fs/pipe-max-size");
    if (f >> max) max = std::min(max, long(1) << 20);
    (void)::fcntl(w_, F_SETPIPE_SZ, int(max));
  }
};

class UnixStreamChannel : public FdChannel {
 public:
  explicit UnixStreamChannel(const ChannelConfig& cfg) : FdChannel(cfg.payload) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) fail_errno("socketpair");
    w_ = sv[0];
    r_ = sv[1];
    ::shutdown(w_, SHUT_RD);
    ::shutdown(r_, SHUT_WR);
  }
};

}  // namespace

void add_stream_transports(TransportList& out) {
  out.push_back(std::make_unique<ChannelTransport<PipeChannel>>("pipe"));
  out.push_back(std::make_unique<ChannelTransport<UnixStreamChannel>>("unix-stream"));
}

}  // namespace bench
