// What the broadcast and mpsc consumers share: the record held between read and release, batched
// polling, statistics, and counting each corrupt position once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <utility>

#include "flatring/layout.hpp"
#include "flatring/ring.hpp"
#include "flatring/segment.hpp"
#include "flatring/status.hpp"

namespace flatring::detail {

/// CRTP base of BroadcastReader, MpscReader and MpmcReader. `Byte` is `const std::byte` for a consumer that
/// reads the record area through the read-only mapping, `std::byte` for one that writes it (mpsc
/// zeroes what it consumed). `Derived` provides, privately (befriend the base):
///   Result<RecordView> next() noexcept       the record at head_ (via hold()), or why there is none
///   void step(std::uint64_t extent) noexcept move head_ past `extent` bytes
///   void publish() noexcept                  publish head_ and wake sleeping producers
/// Not thread-safe: \pre every method is called from one thread at a time.
template <class Derived, class Byte>
class ReaderCore {
 public:
  /// The next record, without releasing it (calling again returns the same record).
  [[nodiscard]] Result<RecordView> try_read() noexcept {
    if (held_) return RecordView{held_view_, head_, held_redelivered_};
    return derived().next();
  }

  /// Releases the record returned by try_read/read.
  void release() noexcept {
    if (!held_) return;
    consume_held();
    derived().publish();
  }

  /// Calls `on_record(std::span<const std::byte>)` for up to `max` records, releasing each after
  /// the call; publishes once at the end. Returns how many were delivered; stops early at empty
  /// or corrupt (last_status()).
  template <class F>
  std::size_t poll(F&& on_record, std::size_t max) {
    std::size_t n = 0;
    while (n < max) {
      auto r = try_read();
      if (!r) break;
      on_record(r->bytes);
      consume_held();
      ++n;
    }
    if (n != 0) derived().publish();
    return n;
  }

  /// Status of the last read attempt that found no record (empty, corrupt, abandoned).
  [[nodiscard]] Status last_status() const noexcept { return last_status_; }
  /// Position of the next record to read.
  [[nodiscard]] std::uint64_t position() const noexcept { return head_; }
  [[nodiscard]] std::uint64_t max_record_size() const noexcept { return max_record_; }
  [[nodiscard]] const Ring& ring() const noexcept { return ring_; }
  [[nodiscard]] const Attachment& attachment() const noexcept { return self_; }

 protected:
  /// \pre the caller checked the ring's mode.
  ReaderCore(Ring ring, bool exclusive, WaitOptions wait)
      : ring_(std::move(ring)),
        self_(ring_, layout::Role::consumer, exclusive),
        wait_(wait),
        ctrl_(&ring_.control()),
        capacity_(ring_.info().capacity),
        mask_(capacity_ - 1),
        max_record_(ring_.info().max_record_size) {
    if constexpr (std::is_const_v<Byte>) data_ = ring_.data();
    else data_ = ring_.writable_data();
  }

  Result<RecordView> corrupt() noexcept {
    if (corrupt_at_ != head_) {  // count each bad position once, however often it is polled
      corrupt_at_ = head_;
      self_.count(layout::corrupt_records);
    }
    last_status_ = Status::corrupt;
    return Status::corrupt;
  }

  Result<RecordView> empty() noexcept {
    last_status_ = Status::empty;
    return Status::empty;
  }

  /// Holds the checked record of `len` payload bytes at `offset`, taking `extent` ring bytes.
  RecordView hold(std::uint64_t offset, std::uint64_t len, std::uint64_t extent,
                  bool redelivered = false) noexcept {
    held_view_ = std::span<const std::byte>(data_ + offset + layout::kRecordHeaderSize, len);
    held_frame_ = extent;
    held_ = true;
    held_redelivered_ = redelivered;
    return RecordView{held_view_, head_, redelivered};
  }

  /// True at most about twice per liveness interval: gates the recovery step (it makes syscalls)
  /// that a blocking read runs when it wakes without a record.
  bool recovery_due() noexcept {
    const auto now = Clock::now();
    if (now < next_recovery_) return false;
    next_recovery_ = now + wait_.liveness_interval / 2;
    return true;
  }

  /// This consumer's statistics, published with each head publication.
  void store_counters() noexcept {
    self_.slot().counter[layout::records_read].store(records_, std::memory_order_relaxed);
    self_.slot().counter[layout::bytes_read].store(bytes_, std::memory_order_relaxed);
  }

  Ring ring_;
  Attachment self_;
  WaitOptions wait_;
  layout::Control* ctrl_;
  Byte* data_ = nullptr;
  std::uint64_t capacity_;
  std::uint64_t mask_;
  std::uint64_t max_record_;
  std::uint64_t head_ = 0;
  std::uint64_t tail_cache_ = 0;
  Status last_status_ = Status::empty;
  bool held_ = false;
  bool held_redelivered_ = false;
  Clock::time_point next_recovery_{};

 private:
  Derived& derived() noexcept { return static_cast<Derived&>(*this); }

  void consume_held() noexcept {
    derived().step(held_frame_);
    ++records_;
    bytes_ += held_view_.size();
    held_ = false;
  }

  std::uint64_t held_frame_ = 0;
  std::span<const std::byte> held_view_;
  std::uint64_t corrupt_at_ = ~std::uint64_t{0};
  std::uint64_t records_ = 0;
  std::uint64_t bytes_ = 0;
};

}  // namespace flatring::detail
