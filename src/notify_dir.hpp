// The directory of a ring's WaitFd sockets: where it is, how it is made and checked, and its
// removal. Private; used by the segment (Ring::notify_dir, Ring::remove) and by WaitFd.
#pragma once

#include <string>
#include <string_view>

#include "flatring/segment.hpp"
#include "flatring/status.hpp"

namespace flatring::detail {

/// "/dev/shm/flatring-wait.<name>": never a segment name (those start "flatring."), never a path
/// read from the segment.
[[nodiscard]] std::string notify_dir_path(std::string_view name);

struct DirOpen {
  int fd = -1;
  Errc code = Errc::system_error;
  std::string why;
};

/// Opens (with `create`: makes when missing) the notification directory of the ring `info`
/// describes: a real directory (no symlink) owned by this uid or the segment's owner, with no
/// permission bits beyond those the segment grants (0700 for a 0600 segment; group or other bits
/// with the sticky bit when the segment has them).
[[nodiscard]] DirOpen open_notify_dir(const SegmentInfo& info, bool create) noexcept;

/// Removes the directory and the sockets in it (names of digits only). For Ring::remove.
void remove_notify_dir(std::string_view name) noexcept;

/// Closes the waker's connected sockets to the WaitFds under directory descriptor `dir` (see
/// notify_armed), before the mapping that owns `dir` closes it. For the mapping's destructor.
void forget_notify_dir(int dir) noexcept;

}  // namespace flatring::detail
