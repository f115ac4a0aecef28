// A read-only observer of a ring: sees the committed records without taking a role and without
// publishing a position, so it never takes a record away from a consumer, and never holds the
// producer back.
//
// The records it sees are not its own: the producer may overwrite one while the observer copies
// it. So every record is copied into private memory first, and then (after an acquire fence) the
// observer checks that the producer cannot have reached the record during the copy:
//  - spsc: the producer writes only below head + capacity, so while the consumer's head has not
//    passed the record, no byte of the copy can come from a newer record.
//  - broadcast: the producer writes only below (slowest consumer cursor) + capacity, and with no
//    consumer attached only within two maximum frames past its published tail; so the record is
//    intact while a consumer cursor is at or below it, or while the tail is far enough behind.
// Otherwise the copy is dropped and the observer reports the skipped range and resumes at a known
// record boundary (the head, the slowest cursor, or the tail).
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
  /// \throws ToolError(unsupported) for a mode other than spsc and broadcast; Error(no_free_slot).
  explicit Observer(Ring ring);

  /// Positions the observer so that next() starts with the last `n` records now in the ring
  /// (fewer if the ring holds fewer); n == 0 starts after them, with the next record committed.
  /// The records in the ring are those not yet released by the (slowest) consumer; a broadcast
  /// ring with no consumer attached has no known record boundary but its tail, so none.
  void start_at_last(std::size_t n);

  /// The next record, or why there is none. Valid until the next call.
  [[nodiscard]] Observed next();

  [[nodiscard]] std::uint64_t position() const noexcept { return pos_; }

 private:
  struct Frame {
    std::uint64_t size = 0;    ///< bytes the record occupies; 0: nothing committed yet (or bad)
    std::uint64_t length = 0;  ///< the record's bytes
    std::uint64_t start = 0;   ///< where they start in the payload area (built in place)
    bool padding = false;
    bool bad = false;  ///< the frame word is impossible here
  };
  /// The committed frame at `pos`, read once and checked. `tail` bounds it (broadcast: loaded
  /// before, since frame words at or past the tail may be last lap's); 0 means load it after.
  [[nodiscard]] Frame frame_at(std::uint64_t pos, std::uint64_t tail) const noexcept;
  /// The producer's published tail, checked for alignment.
  [[nodiscard]] bool load_tail(std::uint64_t& tail) const noexcept;
  /// Where the intact records begin, a record boundary: the spsc consumer's head; the slowest
  /// broadcast consumer's cursor, or the tail when there is none. False when impossible.
  [[nodiscard]] bool load_start(std::uint64_t& start) const noexcept;
  /// broadcast: the smallest plausible consumer cursor, or `tail` when there is none.
  [[nodiscard]] std::uint64_t slowest_cursor(std::uint64_t tail) const noexcept;
  /// After the acquire fence: can the producer have written into the record at `pos`?
  [[nodiscard]] bool intact(std::uint64_t pos) const noexcept;
  /// The record at pos_ is lost: report it and move on to the next intact boundary.
  [[nodiscard]] Observed resync();

  Ring ring_;
  Attachment self_;
  const layout::Control* ctrl_;
  const std::byte* data_;
  std::uint64_t capacity_;
  std::uint64_t mask_;
  std::uint64_t max_record_;
  bool broadcast_;
  std::uint64_t in_flight_;  // broadcast: how far past its published tail the producer may write
  std::uint64_t pos_ = 0;
  flatring::detail::AlignedBuffer copy_;
};

}  // namespace flatring::tool
