// The cores' out-of-line members (endpoint.hpp), instantiated once per mode in that mode's .cpp.
// Private.
#pragma once

#include "block.hpp"
#include "flatring/endpoint.hpp"

namespace flatring::detail {

template <class Policy>
ProducerCore<Policy>::ProducerCore(Ring ring, Mode mode, const char* who, WaitOptions wait)
    : ring_((require_mode(ring, mode, who), std::move(ring))),
      self_(ring_, layout::Role::producer, exclusive_producer(mode)),
      wait_(wait),
      ctrl_(&ring_.control()),
      data_(ring_.writable_data()),
      capacity_(ring_.info().capacity),
      mask_(capacity_ - 1),
      max_record_(ring_.info().max_record_size) {
  if constexpr (Policy::kHandshake == Handshake::asymmetric) fast_fence_ = wait::register_waker();
  // The first lap must not fault page by page on the hot path (OpenOptions::prefault).
  ring_.prefault(true);
}

template <class Policy>
Result<std::span<std::byte>> ProducerCore<Policy>::reserve(std::size_t n,
                                                           std::chrono::nanoseconds timeout) {
  auto r = try_reserve(n);
  if (r.status() != Status::full) return r;
  self_.count(layout::full_waits);
  // A lost segment reads as an empty ring: room is found, in private zero pages. Say why instead.
  auto attempt = [&]() -> Result<std::span<std::byte>> {
    auto got = try_reserve(n);
    if (got && ring_.lost_fast()) {
      abort();
      return Status::segment_lost;
    }
    return got;
  };
  return block<Policy::kHandshake>(
      attempt, [&](std::memory_order order) { return policy().room(n, order); },
      [&](bool final) { return final ? Status::full : wait_check(); }, Status::full, ctrl_->space,
      self_, wait_, timeout);
}

template <class Policy, bool Writes>
ConsumerCore<Policy, Writes>::ConsumerCore(Ring ring, Mode mode, const char* who, WaitOptions wait)
    : ring_((require_mode(ring, mode, who), std::move(ring))),
      self_(ring_, layout::Role::consumer, exclusive_consumer(mode)),
      wait_(wait),
      ctrl_(&ring_.control()),
      capacity_(ring_.info().capacity),
      mask_(capacity_ - 1),
      max_record_(ring_.info().max_record_size) {
  if constexpr (Writes) data_ = ring_.writable_data();
  else data_ = ring_.data();
  if constexpr (Policy::kHandshake == Handshake::asymmetric) fast_fence_ = wait::register_waker();
  ring_.prefault(Writes);  // OpenOptions::prefault
}

template <class Policy, bool Writes>
Result<RecordView> ConsumerCore<Policy, Writes>::read(std::chrono::nanoseconds timeout) {
  auto r = try_read();
  if (r.status() != Status::empty) return r;
  self_.count(layout::empty_waits);
  return block<Policy::kHandshake>([&] { return try_read(); },
                                   [&](std::memory_order order) { return policy().ready(order); },
                                   [&](bool final) { return wait_check(final, false); },
                                   Status::empty, ctrl_->data, self_, wait_, timeout);
}

}  // namespace flatring::detail
