// The bridge's frames on the wire. Every message is one ZeroMQ part: a 24-byte header, then a
// body. Everything is little-endian and read with memcpy into locals; every length is checked
// against what was actually received before it is used. Nothing from the network is trusted.
//
//   HELLO    Out->In   a = source id, b = source max_record_size; body: SchemaId (4 + 8 bytes)
//                      then the source ring's binary schema (may be empty)
//   WELCOME  In->Out   a = last sequence committed from this source (kNone: none),
//                      b = the ring's max_record_size; body: how the schemas matched (text)
//   REFUSE   In->Out   a = RefuseCode; body: why (text)
//   DATA     Out->In   body: entries {seq, prev, len, flags} (32 bytes) + payload, padded to 8
//   ACK      In->Out   a = last sequence committed (cumulative), b = records rejected so far
//   RESEND   In->Out   a = last sequence committed: resend everything after it (a gap was seen)
//
// A sequence number is the record's position in the source ring: unique, and growing in the
// order the Out sends. `prev` is the sequence of the entry sent before it (kNone for the first
// ever), so the In can tell a gap (entries lost with a dropped connection) from a duplicate.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>

namespace flatring::bridge::wire {

inline constexpr std::uint32_t kMagic = 0x31425246;  // "FRB1"
inline constexpr std::uint64_t kNone = ~std::uint64_t{0};
inline constexpr std::size_t kHeaderSize = 24;
inline constexpr std::size_t kEntrySize = 32;
/// Small records are packed into one DATA message up to this many bytes (one encryption and one
/// ZeroMQ message for many records); a larger record travels alone.
inline constexpr std::size_t kBatchBytes = 64 * 1024;
/// What a message may carry beyond its payload (header + one entry), for ZMQ_MAXMSGSIZE.
inline constexpr std::size_t kOverhead = kHeaderSize + kEntrySize;

enum class Type : std::uint8_t { hello = 1, welcome, refuse, data, ack, resend };

enum class RefuseCode : std::uint64_t { schema = 1, no_session = 2, bad_hello = 3 };

/// Entry flag: the payload was not sent because it is larger than the receiver's ring accepts
/// (the receiver counts it as oversized and moves on, exactly as if it had been sent).
inline constexpr std::uint64_t kOmitted = 1;

struct Header {
  Type type{};
  std::uint64_t a = 0;
  std::uint64_t b = 0;
};

struct Entry {
  std::uint64_t seq = 0;
  std::uint64_t prev = 0;
  std::uint64_t len = 0;
  std::uint64_t flags = 0;
};

inline void put64(std::byte* p, std::uint64_t v) noexcept { std::memcpy(p, &v, 8); }
inline std::uint64_t get64(const std::byte* p) noexcept {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

inline void put_header(std::byte* p, const Header& h) noexcept {
  const std::uint32_t magic = kMagic;
  std::memcpy(p, &magic, 4);
  p[4] = static_cast<std::byte>(h.type);
  p[5] = p[6] = p[7] = std::byte{0};
  put64(p + 8, h.a);
  put64(p + 16, h.b);
}

/// The header of a received message, or nothing when it is not one of ours.
inline std::optional<Header> get_header(std::span<const std::byte> m) noexcept {
  if (m.size() < kHeaderSize) return std::nullopt;
  std::uint32_t magic;
  std::memcpy(&magic, m.data(), 4);
  const auto t = static_cast<std::uint8_t>(m[4]);
  if (magic != kMagic || t < 1 || t > 6 || m[5] != std::byte{0} || m[6] != std::byte{0} ||
      m[7] != std::byte{0})
    return std::nullopt;
  return Header{static_cast<Type>(t), get64(m.data() + 8), get64(m.data() + 16)};
}

inline void put_entry(std::byte* p, const Entry& e) noexcept {
  put64(p, e.seq);
  put64(p + 8, e.prev);
  put64(p + 16, e.len);
  put64(p + 24, e.flags);
}

constexpr std::uint64_t padded(std::uint64_t n) noexcept { return (n + 7) & ~std::uint64_t{7}; }

/// Walks the entries of a DATA body. next() yields each entry with its payload (empty when
/// omitted), or stops: at the end (ok), or at the first entry that does not fit the body or has
/// unknown flags (malformed: the rest of the message is dropped).
class EntryReader {
 public:
  explicit EntryReader(std::span<const std::byte> body) noexcept : body_(body) {}

  struct Item {
    Entry entry;
    std::span<const std::byte> payload;
  };
  std::optional<Item> next() noexcept {
    if (malformed_ || at_ == body_.size()) return std::nullopt;
    const std::size_t left = body_.size() - at_;
    if (left < kEntrySize) return fail();
    const std::byte* p = body_.data() + at_;
    Entry e{get64(p), get64(p + 8), get64(p + 16), get64(p + 24)};
    if ((e.flags & ~kOmitted) != 0) return fail();
    std::uint64_t carried = 0;
    if ((e.flags & kOmitted) == 0) {
      if (e.len > left - kEntrySize) return fail();
      carried = padded(e.len);
      if (carried > left - kEntrySize) carried = left - kEntrySize;  // last entry: padding optional
    }
    at_ += kEntrySize + carried;
    return Item{e, (e.flags & kOmitted) ? std::span<const std::byte>{}
                                        : std::span<const std::byte>(p + kEntrySize, e.len)};
  }
  [[nodiscard]] bool malformed() const noexcept { return malformed_; }

 private:
  std::optional<Item> fail() noexcept {
    malformed_ = true;
    return std::nullopt;
  }
  std::span<const std::byte> body_;
  std::size_t at_ = 0;
  bool malformed_ = false;
};

}  // namespace flatring::bridge::wire
