// A read-only observer of an spsc ring: sees the records between the consumer's published head
// and the producer's tail without taking the consumer role and without moving the head, so it
// never takes a record away from the consumer or space away from the producer.
//
// The records it sees are not its own: the consumer may release one, and the producer overwrite
// it, while the observer copies it. So every record is copied into private memory first, and then
// the consumer's head is re-checked (after an acquire fence): while the head has not passed the
// record's position, the producer cannot have reached it (the producer writes only below
// head + capacity), so the copy is exactly what was committed. Otherwise the copy is dropped and
// the observer reports the skipped range and continues at the head.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include <flatring/segment.hpp>
#include <flatring/typed.hpp>

namespace flatring::tool {

struct Observed {
  enum class Kind {
    record,   ///< `bytes` (private, 16-byte aligned) is the record at `position`
    not_yet,  ///< nothing committed at `position` yet
    skipped,  ///< the consumer released [position, end) before it could be copied
    corrupt,  ///< the shared state at `position` is impossible; nothing can be read past it
  };
  Kind kind = Kind::not_yet;
  std::uint64_t position = 0;
  std::uint64_t end = 0;
  std::span<const std::byte> bytes;
};

class Observer {
 public:
  /// Claims a peer slot as an observer (it shows in `flatring ls`; no role is taken).
  /// \throws ToolError(unsupported) for a mode other than spsc; Error(no_free_slot).
  explicit Observer(Ring ring);

  /// Positions the observer so that next() starts with the last `n` records now in the ring
  /// (fewer if the ring holds fewer); n == 0 starts after them, with the next record committed.
  void start_at_last(std::size_t n);

  /// The next record, or why there is none. Valid until the next call.
  [[nodiscard]] Observed next();

  [[nodiscard]] std::uint64_t position() const noexcept { return pos_; }

 private:
  struct Frame {
    std::uint64_t size = 0;    ///< bytes the record occupies; 0: nothing committed yet (or bad)
    std::uint64_t length = 0;  ///< payload bytes
    bool padding = false;
    bool bad = false;          ///< the frame word is impossible here
  };
  /// The committed frame at `pos`, read once and checked.
  [[nodiscard]] Frame frame_at(std::uint64_t pos) const noexcept;
  /// Loads and checks the consumer's head; false when it is impossible.
  [[nodiscard]] bool load_head(std::uint64_t& head) const noexcept;

  Ring ring_;
  Attachment self_;
  const layout::Control* ctrl_;
  const std::byte* data_;
  std::uint64_t capacity_;
  std::uint64_t mask_;
  std::uint64_t max_record_;
  std::uint64_t pos_ = 0;
  flatring::detail::AlignedBuffer copy_;
};

}  // namespace flatring::tool
