// Building FlatBuffers directly in ring memory: the allocator behind Producer::try_build / build.
//
// FlatBuffers' builder writes back to front: it allocates one block, fills it from the end, and
// the finished buffer is the last GetSize() bytes of the block. So a producer reserves a record
// sized by a hint, hands the builder the reservation as its block (this allocator), and commits
// with Writer::commit_at, which records where in the reservation the finished buffer starts (the
// record's offset word, layout::kOffsetFlag). Every byte of the record is written once, by the
// builder. When the record outgrows the hint, the builder's next growth moves it to the heap
// (an ordinary FlatBuffers reallocation); the producer then drops the reservation and copies the
// finished buffer in, as send() does: the fallback.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>

#include <flatbuffers/allocator.h>

namespace flatring::detail {

/// A flatbuffers::Allocator over one block of ring memory at a time, falling back to the heap.
/// The block's end is the end of the buffer, so a builder that stays inside it finishes in place.
/// \pre one thread at a time (the producer's).
class InPlaceAllocator final : public flatbuffers::Allocator {
 public:
  /// The next record's block: `size` bytes at `begin` (both multiples of 16), or none (size 0).
  void set_block(std::byte* begin, std::size_t size) noexcept {
    begin_ = size == 0 ? nullptr : reinterpret_cast<std::uint8_t*>(begin);
    end_ = size == 0 ? nullptr : begin_ + size;
  }

  /// True when `p` (the finished buffer) lies in the current block.
  [[nodiscard]] bool in_block(const std::uint8_t* p) const noexcept {
    return begin_ != nullptr && p >= begin_ && p < end_;
  }

  std::uint8_t* allocate(std::size_t size) override {
    if (fits(size)) return end_ - size;
    return static_cast<std::uint8_t*>(::operator new (size, std::align_val_t{kAlign}));
  }

  void deallocate(std::uint8_t* p, std::size_t /*size*/) override {
    if (!in_block(p)) ::operator delete (p, std::align_val_t{kAlign});
  }

  // Growth inside the block keeps the back (the buffer so far) where it is, since the block's end
  // does not move, and moves only the front (the builder's scratch: vtable offsets, a few words).
  std::uint8_t* reallocate_downward(std::uint8_t* old_p, std::size_t old_size, std::size_t new_size,
                                    std::size_t in_use_back, std::size_t in_use_front) override {
    if (in_block(old_p) && fits(new_size)) {
      std::uint8_t* p = end_ - new_size;
      std::memmove(p, old_p, in_use_front);
      return p;
    }
    auto* p = static_cast<std::uint8_t*>(::operator new (new_size, std::align_val_t{kAlign}));
    memcpy_downward(old_p, old_size, p, new_size, in_use_back, in_use_front);
    deallocate(old_p, old_size);
    return p;
  }

 private:
  static constexpr std::size_t kAlign = 16;
  [[nodiscard]] bool fits(std::size_t size) const noexcept {
    return begin_ != nullptr && size <= static_cast<std::size_t>(end_ - begin_);
  }

  std::uint8_t* begin_ = nullptr;
  std::uint8_t* end_ = nullptr;
};

}  // namespace flatring::detail
