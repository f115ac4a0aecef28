// Outcomes. The hot path returns a Status (or a Result carrying one); set-up throws
// flatring::Error.
#pragma once

#include <cassert>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace flatring {

/// What a ring operation did. Every value but `ok` is something the caller must handle; they are
/// distinct so that "try again later" (full, empty, timed_out) is never confused with "this record
/// was bad and was skipped" (verify_failed, abandoned) or "the shared state is broken" (corrupt).
enum class Status : std::uint8_t {
  ok = 0,
  full,           ///< not enough free space now; nothing was written
  empty,          ///< no committed record now
  too_large,      ///< record larger than the ring's max_record_size; nothing was written
  corrupt,        ///< shared state failed a check (bad length slot, impossible position); nothing
                  ///< was read. The reader stays put; see Reader::recover()
  verify_failed,  ///< the record failed FlatBuffers verification; it was skipped
  timed_out,      ///< the blocking call's timeout passed
  abandoned,      ///< what blocked the read position was given up and skipped: a claim whose
                  ///< producer died or gave it up (mpsc/mpmc), or a corrupt range (recover())
  peer_dead,      ///< the peer on the other side died; its slot was reclaimed, the ring goes on
  no_consumer,    ///< ring full and no live consumer is attached
  invalid_state,  ///< API misuse, e.g. commit without reserve; nothing was done
  segment_lost,   ///< a peer shrank the segment under this process; its pages now read as zeros
                  ///< and nothing more can be exchanged. See Ring::lost()
};

/// Human-readable name of a Status, e.g. "verify_failed".
[[nodiscard]] std::string_view to_string(Status s) noexcept;

/// A value or a Status explaining why there is none. A small stand-in for std::expected (C++23).
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) noexcept : value_(std::move(value)), status_(Status::ok) {}    // NOLINT
  Result(Status s) noexcept : value_{}, status_(s) { assert(s != Status::ok); }  // NOLINT

  [[nodiscard]] bool has_value() const noexcept { return status_ == Status::ok; }
  explicit operator bool() const noexcept { return has_value(); }
  [[nodiscard]] Status status() const noexcept { return status_; }

  /// \pre has_value()
  T& operator*() noexcept {
    assert(has_value());
    return value_;
  }
  const T& operator*() const noexcept {
    assert(has_value());
    return value_;
  }
  T* operator->() noexcept {
    assert(has_value());
    return &value_;
  }
  const T* operator->() const noexcept {
    assert(has_value());
    return &value_;
  }
  /// \throws std::logic_error when there is no value.
  T& value() {
    if (!has_value())
      throw std::logic_error("flatring::Result has no value: " + std::string(to_string(status_)));
    return value_;
  }

 private:
  T value_;
  Status status_;
};

/// Why a set-up call (create, open, attach) failed.
enum class Errc : std::uint8_t {
  invalid_name,       ///< name empty, too long, or with characters outside [A-Za-z0-9._-]
  invalid_options,    ///< capacity/max_record_size/permissions out of range
  already_exists,     ///< create: the name is taken (create is exclusive)
  not_found,          ///< open: no segment with that name
  permission_denied,  ///< the OS refused access
  not_flatring,       ///< the segment does not start with flatring's magic (foreign or unready)
  wrong_version,      ///< built for another layout version
  wrong_schema,       ///< the ring's schema identity differs from the caller's root type
  wrong_mode,         ///< the ring's mode is not the endpoint's (e.g. a Reader<mpmc> on spsc)
  size_mismatch,      ///< the segment's real size does not match its header (truncated/grown)
  corrupt_header,     ///< a header field is out of range or inconsistent
  corrupt_state,      ///< positions in the control area are impossible
  role_taken,         ///< an exclusive role (the producer in spsc and broadcast, the consumer
                      ///< in spsc and mpsc) is held by a live process
  no_free_slot,       ///< all peer slots are held by live processes
  unsafe_owner,       ///< the segment belongs to another uid (see OpenOptions::allow_foreign_owner)
  unsafe_permissions,  ///< group/world-writable, or not a regular file
  system_error,        ///< an unexpected OS error; the message carries errno's text
  invalid_schema,      ///< a .fbs schema given to flatring did not parse (the parser's message)
  corrupt_schema,      ///< a binary schema is not a reflection.Schema buffer, or the segment's
                       ///< copy does not match the hash in its header
  schema_too_large,    ///< a binary schema's length is above the limit (or past its area)
  schema_too_deep,     ///< a binary schema nests deeper than the verifier's depth limit
  schema_no_root,      ///< a binary schema has no root type
};

[[nodiscard]] std::string_view to_string(Errc e) noexcept;

/// Thrown by set-up calls. what() names the ring and what is wrong.
class Error : public std::runtime_error {
 public:
  Error(Errc code, const std::string& message) : std::runtime_error(message), code_(code) {}
  [[nodiscard]] Errc code() const noexcept { return code_; }

 private:
  Errc code_;
};

}  // namespace flatring
