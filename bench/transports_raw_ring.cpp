// The raw-ring reference row: the simplest SPSC byte ring there can be, so that every run shows
// flatring against it. An anonymous MAP_SHARED mapping made before the fork and prefaulted
// (MAP_POPULATE); the head and the tail on lines of their own; each record an 8-byte length word
// and the payload, padded to 8 bytes; a length of ~0 says "wrapped: go to offset 0". No
// verification, no liveness, no waiting (both sides spin), no recovery: the floor, not a peer.
//   producer: wait until tail + need - head <= capacity (head cached, reloaded with acquire when
//             the cache says full); copy the payload; store the length; tail.store(release)
//   consumer: read below the tail it loaded with acquire (cached); head.store(release) once per
//             batch of received records
#include "transport.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>
#include <vector>

namespace bench {
namespace {

constexpr std::uint64_t kWrapped = ~std::uint64_t{0};
constexpr std::size_t kLine = 128;

struct alignas(kLine) RawRingControl {
  alignas(kLine) std::atomic<std::uint64_t> head{0};  // written by the consumer only
  alignas(kLine) std::atomic<std::uint64_t> tail{0};  // written by the producer only
};

constexpr std::uint64_t frame_of(std::size_t payload) { return (8 + payload + 7) & ~7ull; }

class RawRingChannel {
 public:
  explicit RawRingChannel(const ChannelConfig& cfg)
      : payload_(cfg.payload),
        // As flatring's rows: room for two records and at least 4 MiB.
        capacity_(std::max<std::uint64_t>(std::bit_ceil(2 * frame_of(cfg.payload)), 4u << 20)),
        size_(sizeof(RawRingControl) + capacity_) {
    void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED) fail_errno("mmap");
    ctrl_ = new (p) RawRingControl();
    data_ = static_cast<std::byte*>(p) + sizeof(RawRingControl);
  }
  RawRingChannel(const RawRingChannel&) = delete;
  RawRingChannel& operator=(const RawRingChannel&) = delete;
  ~RawRingChannel() { ::munmap(ctrl_, size_); }

  static std::optional<std::string> unsupported(std::size_t, Pattern) { return std::nullopt; }

  class Sender {
   public:
    Sender(Peer& peer, const RawRingChannel& ch)
        : peer_(&peer), ch_(&ch), buf_(ch.payload_), frame_(frame_of(ch.payload_)) {
      fill_pattern(buf_.data(), buf_.size());
    }
    void send(std::uint64_t seq) {
      stamp(buf_.data(), buf_.size(), seq);
      const std::uint64_t cap = ch_->capacity_;
      std::uint64_t offset = tail_ & (cap - 1);
      const std::uint64_t pad = frame_ > cap - offset ? cap - offset : 0;
      while (tail_ + pad + frame_ - head_cache_ > cap) {
        // Acquire: pairs with the consumer's release of head; the space below is read.
        head_cache_ = ch_->ctrl_->head.load(std::memory_order_acquire);
        if (tail_ + pad + frame_ - head_cache_ <= cap) break;
        cpu_relax();
        peer_->spin_check();
      }
      if (pad != 0) {
        std::memcpy(ch_->data_ + offset, &kWrapped, sizeof kWrapped);
        tail_ += pad;
        offset = 0;
      }
      const std::uint64_t len = buf_.size();
      std::memcpy(ch_->data_ + offset + 8, buf_.data(), len);
      std::memcpy(ch_->data_ + offset, &len, sizeof len);
      tail_ += frame_;
      // Release: publishes the length words and payloads below the new tail.
      ch_->ctrl_->tail.store(tail_, std::memory_order_release);
    }

   private:
    Peer* peer_;
    const RawRingChannel* ch_;
    std::vector<std::byte> buf_;
    std::uint64_t frame_;
    std::uint64_t tail_ = 0;
    std::uint64_t head_cache_ = 0;
  };

  class Receiver {
   public:
    Receiver(Peer& peer, const RawRingChannel& ch) : peer_(&peer), ch_(&ch) {}
    void recv(std::uint64_t seq) { (void)recv_many(seq, 1); }
    // Receives and checks 1..max records.
    std::uint64_t recv_many(std::uint64_t seq, std::uint64_t max) {
      const std::uint64_t cap = ch_->capacity_;
      std::uint64_t got = 0;
      while (got == 0) {
        while (head_ == tail_cache_) {
          // Acquire: pairs with the producer's release of tail.
          tail_cache_ = ch_->ctrl_->tail.load(std::memory_order_acquire);
          if (head_ != tail_cache_) break;
          cpu_relax();
          peer_->spin_check();
        }
        got = take(seq, max, cap);
      }
      // Release: the consumer is done reading below the new head.
      ch_->ctrl_->head.store(head_, std::memory_order_release);
      return got;
    }

   private:
    std::uint64_t take(std::uint64_t seq, std::uint64_t max, std::uint64_t cap) {
      std::uint64_t got = 0;
      while (got < max && head_ != tail_cache_) {
        const std::uint64_t offset = head_ & (cap - 1);
        std::uint64_t len;
        std::memcpy(&len, ch_->data_ + offset, sizeof len);
        if (len == kWrapped) {
          head_ += cap - offset;
          continue;
        }
        check(ch_->data_ + offset + 8, len, ch_->payload_, seq + got);
        head_ += frame_of(len);
        ++got;
      }
      return got;
    }

    Peer* peer_;
    const RawRingChannel* ch_;
    std::uint64_t head_ = 0;
    std::uint64_t tail_cache_ = 0;
  };

  Sender sender(Peer& peer) { return Sender(peer, *this); }
  Receiver receiver(Peer& peer) { return Receiver(peer, *this); }

 private:
  std::size_t payload_;
  std::uint64_t capacity_;
  std::size_t size_;
  RawRingControl* ctrl_ = nullptr;
  std::byte* data_ = nullptr;
};

}  // namespace

void add_raw_ring_transports(TransportList& out) {
  out.push_back(std::make_unique<ChannelTransport<RawRingChannel>>("raw-ring"));
}

}  // namespace bench
