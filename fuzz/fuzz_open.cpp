// Fuzz target: Ring::open over arbitrary segment files.
//
// The input becomes the whole segment file (header, control area, records). Checked: open either
// throws flatring::Error or returns a ring whose info agrees with the file and with the layout's
// limits; a ring that opens can be attached to (or refused with Error) and drained without a fault.
#include "fuzz_common.hpp"

#include <chrono>
#include <fcntl.h>

namespace {

using namespace flatring;

const std::string& name() {
  static const std::string n = fuzz::scratch_name("open");
  return n;
}

void write_file(const std::uint8_t* data, std::size_t size) {
  const int fd =
      ::open(Ring::path_of(name()).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600);
  FUZZ_CHECK(fd >= 0);
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::write(fd, data + done, size - done);
    FUZZ_CHECK(n > 0);
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
}

void drain(const Ring& ring) {
  using namespace std::chrono_literals;
  Reader<> reader(ring, WaitOptions{.spin = 0ns, .liveness_interval = 1ms});
  for (int i = 0; i < 64; ++i) {
    auto v = reader.try_read();
    if (v) {
      fuzz::touch(ring, v->bytes);
      reader.release();
    } else if (v.status() == Status::corrupt) {
      // The recovery verb: skips to the producer's tail (abandoned) or finds it impossible too.
      const Status s = reader.recover();
      FUZZ_CHECK(s == Status::abandoned || s == Status::corrupt || s == Status::ok ||
                 s == Status::empty);
      if (s != Status::abandoned && s != Status::ok) return;
    } else {
      return;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  write_file(data, size);
  try {
    Ring ring = Ring::open(name());
    const SegmentInfo& info = ring.info();
    FUZZ_CHECK(info.segment_size == size);
    // Layout version 2 and later: the record area follows the schema area (none: at kRingOffset).
    const std::uint64_t stored = info.stored_schema.bfbs().size();
    FUZZ_CHECK(info.ring_offset == layout::ring_offset_for(stored) &&
               info.ring_offset + info.capacity == size);
    if (!info.stored_schema.empty()) (void)info.stored_schema.describe();
    FUZZ_CHECK(info.max_record_size != 0 &&
               info.max_record_size <= max_record_size_for(info.capacity));
    if (info.mode == Mode::spsc) drain(ring);
  } catch (const Error&) {
    // Refused, with a reason: the expected outcome for almost every input.
  }
  return 0;
}
