// Fuzz target: the wait words and WaitFd / WaitSet under a hostile peer.
//
// A real 4 KiB spsc ring is created once. Each input resets its control area and record area,
// attaches a Reader<> and a Writer<>, gives each a WaitFd and puts both in a WaitSet, then runs up
// to 256 operations taken from the input: the endpoints' calls (try_write, try_read + release,
// arm, disarm, a poll of each fd with timeout 0, WaitSet::wait with timeout 0 or, twice per input
// at most, 1 ms) interleaved with a hostile peer's stores to the wait words (futex, waiters,
// notify, sleepers of both wait lines) and to the other peer slots (pid, start time, role: what a
// WaitFd turns into pidfds).
// Checked: arm() and wait() return only their documented outcomes; a record written is read back
// intact; nothing hangs (every timeout is 0 or 1 ms); no descriptor is leaked (the count of open
// descriptors stays within the waker's per-slot sockets after every input). The seeds in
// fuzz/corpus/wait/ are hand-written programs in this format (an honest exchange, a full ring,
// hostile words, forged peer slots).
#include "fuzz_common.hpp"

#include <chrono>
#include <dirent.h>
#include <optional>
#include <poll.h>

namespace {

using namespace flatring;
using namespace std::chrono_literals;

constexpr int kMaxSteps = 256;
constexpr int kTimedWaits = 2;  // WaitSet::wait(1ms) per input; the others wait 0

Ring& ring() {
  static Ring r = Ring::create(fuzz::scratch_name("wait"), {.capacity = 4096});
  return r;
}

std::size_t open_fds() {
  std::size_t n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (::readdir(d) != nullptr) ++n;
    ::closedir(d);
  }
  return n;
}

bool fd_ready(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1;
}

std::atomic<std::uint32_t>& wait_word(layout::Control& c, std::uint8_t which) {
  layout::WaitLine& l = (which & 4) != 0 ? c.space : c.data;
  switch (which % 4) {
    case 0: return l.futex;
    case 1: return l.waiters;
    case 2: return l.notify;
    default: return l.sleepers;
  }
}

void run(fuzz::Input& in, Ring& r) {
  layout::Control& c = r.control();
  Reader<> reader(r, WaitOptions{.spin = 0ns, .liveness_interval = 1ms});
  Writer<> writer(r, WaitOptions{.spin = 0ns, .liveness_interval = 1ms});
  WaitFd rfd(reader);
  WaitFd wfd(writer, 64);
  WaitSet set(WaitOptions{.spin = 0ns, .liveness_interval = 1ms});
  (void)set.add(reader);
  (void)set.add(writer, 64);
  std::uint64_t written = 0, read = 0;
  int timed_waits = 0;
  for (int step = 0; step < kMaxSteps && !in.empty(); ++step) {
    const std::uint8_t op = in.take<std::uint8_t>();
    switch (op % 10) {
      case 0:  // hostile: a wait word
        wait_word(c, in.take<std::uint8_t>()).store(in.take<std::uint32_t>());
        break;
      case 1: {  // hostile: another peer slot (what the WaitFds watch)
        const std::uint32_t i = in.take<std::uint8_t>() % layout::kMaxPeers;
        if (i == reader.attachment().index() || i == writer.attachment().index()) break;
        layout::PeerSlot& s = c.peers[i];
        switch (in.take<std::uint8_t>() % 3) {
          case 0: s.pid.store(in.take<std::uint32_t>()); break;
          case 1: s.start_time.store(in.take<std::uint64_t>()); break;
          default: s.role.store(in.take<std::uint8_t>() % 4); break;
        }
        break;
      }
      case 2: {
        const std::uint64_t v = written;
        if (writer.try_write({reinterpret_cast<const std::byte*>(&v), sizeof v}) == Status::ok) {
          ++written;
        }
        break;
      }
      case 3: {
        auto got = reader.try_read();
        if (got) {
          std::uint64_t v = ~std::uint64_t{0};
          FUZZ_CHECK(got->bytes.size() == sizeof v);
          std::memcpy(&v, got->bytes.data(), sizeof v);
          FUZZ_CHECK(v == read);
          ++read;
          reader.release();
        } else {
          FUZZ_CHECK(got.status() == Status::empty);
        }
        break;
      }
      case 4: {
        const Status s = rfd.arm();
        FUZZ_CHECK(s == Status::empty || s == Status::ok || s == Status::peer_dead);
        // Armed means nothing was there at the re-check; records are only ours.
        if (s == Status::empty) FUZZ_CHECK(read == written);
        break;
      }
      case 5: {
        const Status s = wfd.arm();
        FUZZ_CHECK(s == Status::full || s == Status::ok || s == Status::peer_dead ||
                   s == Status::no_consumer);
        break;
      }
      case 6:
        if ((op & 0x10) != 0) rfd.disarm();
        else wfd.disarm();
        break;
      case 7:
        (void)fd_ready(rfd.fd());
        (void)fd_ready(wfd.fd());
        break;
      case 8: {
        // At most kTimedWaits real sleeps per input: each costs a millisecond of wall time, and
        // an input made of them would slow the whole run to a few hundred executions a second.
        const bool timed = (op & 0x10) != 0 && timed_waits < kTimedWaits;
        timed_waits += timed ? 1 : 0;
        const Status s = set.wait(timed ? 1ms : 0ns);
        FUZZ_CHECK(s == Status::ok || s == Status::timed_out);
        for (const Ready& e : set.ready()) {
          FUZZ_CHECK(e.status == Status::ok || e.status == Status::peer_dead ||
                     e.status == Status::no_consumer);
        }
        break;
      }
      default: {  // a blocking call on the hostile words ends at its deadline
        auto got = reader.read(0ns);
        FUZZ_CHECK(got || got.status() == Status::timed_out || got.status() == Status::empty ||
                   got.status() == Status::peer_dead);
        if (got) {
          ++read;
          reader.release();
        }
        break;
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Ring& r = ring();
  static const std::size_t baseline = [&] {
    // The per-process waker socket and the ring's cached directory descriptor exist after the
    // first wake-up: make them before counting.
    fuzz::Input warm(nullptr, 0);
    run(warm, r);
    Reader<> reader(r);
    WaitFd w(reader);
    Writer<> writer(r);
    (void)w.arm();
    const std::uint64_t v = 0;
    (void)writer.try_write({reinterpret_cast<const std::byte*>(&v), sizeof v});
    return open_fds();
  }();
  fuzz::reset_image(r);
  fuzz::Input in(data, size);
  try {
    run(in, r);
  } catch (const Error&) {
    // Set-up refused (e.g. a forged owner word): a documented outcome.
  }
  // The waker's connected sockets (one per slot it has woken, kept with the ring's mapping) are
  // bounded by the peer slots; anything beyond is a leak.
  FUZZ_CHECK(open_fds() <= baseline + layout::kMaxPeers);
  return 0;
}
