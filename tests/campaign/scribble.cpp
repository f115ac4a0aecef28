// scribble: a hostile peer process rewriting the segment under live endpoints, in any mode.
//   flatring-campaign scribble --mode M --seconds S [--epochs E] [--seed N]
// Each epoch (S / E seconds; E defaults to one per 10 s) makes a fresh ring (4 KiB and 64 KiB in
// turn) and a victim process attached to it with a Writer<M> and a Reader<M> (odd epochs: a typed
// Producer<Msg, M> and Consumer<Msg, M>) that writes, reserves, commits, reads, polls, releases
// and recovers at random, with timeouts of 1 ms, and re-opens the ring now and then. A scribbler
// process maps the whole segment file read-write and rewrites it meanwhile, in bursts: random
// bytes anywhere (header, control area, schema area, records), random words and extreme values
// (0, ~0, 2^63, the capacity, near-valid positions) in the control area, and random or
// near-valid frame words and extents in record headers. At the end of the epoch it shrinks the
// file: to 0, to 4 KiB, or into the record area, in turn.
// Passes when: the victim never dies by a signal; every call returns an outcome documented for it
// (a writer never reports empty or verify_failed, a raw reader never full, too_large, no_consumer
// or verify_failed, nobody invalid_state); every record view lies inside the record area;
// Ring::open on the scribbled segment throws nothing but flatring::Error; the victim keeps making
// calls (a heartbeat it bumps per call stalling for 30 s is a hang); and after the shrink both its
// reader and its writer report segment_lost (within 30 s), and Ring::lost() is true.
#include <array>
#include <atomic>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <random>
#include <sys/mman.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "campaign.hpp"
#include "mp_helpers.hpp"

using namespace flatring;
using namespace std::chrono_literals;

namespace campaign {
namespace {

constexpr std::size_t kStatuses = 16;

enum Exit : int {
  kWrongStatus = 20,        // an outcome not documented for that call
  kOutsideView = 21,        // a record view outside the record area
  kNoLoss = 22,             // no segment_lost after the shrink
  kNotLost = 23,            // Ring::lost() false after segment_lost
  kShortReservation = 24,   // a reservation smaller than asked for
  kPartialLossSeen = 30,    // passed: a partial shrink; Ring::lost() but not both sides told yet
  kPartialLossUnseen = 31,  // passed: a partial shrink no call touched
};

// Shared words: [0] phase (0 scribbling, 1 shrunk), [1] heartbeat, [2] attached, [3] records
// delivered, [4] re-opens that threw flatring::Error, [5] scribbler writes, then the outcomes of
// the writer's calls and of the reader's calls (kStatuses each).
constexpr std::size_t kPhase = 0, kBeat = 1, kAttached = 2, kDelivered = 3, kOpenErrors = 4,
                      kWrites = 5, kShrunkTo = 6, kWriterOutcomes = 7,
                      kReaderOutcomes = 7 + kStatuses, kWords = 7 + 2 * kStatuses;

bool writer_outcome_ok(Status s) {
  return s != Status::empty && s != Status::verify_failed && s != Status::invalid_state;
}
bool reader_outcome_ok(Status s, bool typed) {
  return s != Status::full && s != Status::too_large && s != Status::no_consumer &&
         s != Status::invalid_state && (typed || s != Status::verify_failed);
}

class Victim {
 public:
  Victim(const fr_test::SharedWords& w, std::uint64_t seed) : w_(w), rng_(seed) {}
  int bad(const char* call, Status s) {
    std::fprintf(stderr, "scribble victim: %s returned %s\n", call,
                 std::string(to_string(s)).c_str());
    return kWrongStatus;
  }
  /// Once Ring::lost() is true, a try_read/read/try_write/... that fails says segment_lost
  /// (docs/security.md, "SIGBUS defence"), except too_large (the record's size is checked before
  /// the ring is looked at); `lost_before` is lost() before the call.
  int after_loss(Status s, const char* call, bool lost_before) {
    if (!lost_before || s == Status::ok || s == Status::segment_lost || s == Status::too_large)
      return 0;
    std::fprintf(stderr, "scribble victim: after the loss, ");
    return bad(call, s);
  }
  int writer(Status s, const char* call) {
    w_[kWriterOutcomes + static_cast<std::size_t>(s) % kStatuses].fetch_add(1);
    if (s == Status::segment_lost) writer_lost = true;
    return writer_outcome_ok(s) ? 0 : bad(call, s);
  }
  int reader(Status s, const char* call, bool typed) {
    w_[kReaderOutcomes + static_cast<std::size_t>(s) % kStatuses].fetch_add(1);
    if (s == Status::segment_lost) reader_lost = true;
    if (s == Status::ok) w_[kDelivered].fetch_add(1);
    return reader_outcome_ok(s, typed) ? 0 : bad(call, s);
  }
  std::size_t size() {  // mostly small, sometimes 0 or far too large
    const auto r = rng_() % 16;
    return r == 0 ? 0 : r == 1 ? 1u << 20 : rng_() % 300;
  }
  std::uint64_t next() { return rng_(); }
  bool writer_lost = false;
  bool reader_lost = false;

 private:
  const fr_test::SharedWords& w_;
  std::mt19937_64 rng_;
};

const WaitOptions kFast{.spin = 0ns, .liveness_interval = 1ms};

// Inside one of the record area's mappings (spsc and broadcast readers read the read-only one,
// mpsc and mpmc readers the writable one, which they zero).
template <class R>
bool inside(const R& reader, std::span<const std::byte> b) {
  const std::uint64_t cap = reader.ring().info().capacity;
  for (const std::byte* lo :
       {reader.ring().data(), static_cast<const std::byte*>(reader.ring().writable_data())}) {
    if (b.data() >= lo && b.data() + b.size() <= lo + cap) return true;
  }
  std::fprintf(stderr, "scribble victim: a view of %zu bytes at %p, outside both mappings\n",
               b.size(), static_cast<const void*>(b.data()));
  return false;
}

// One raw call at random; 0 or an Exit code.
template <Mode M>
int raw_step(Victim& v, Writer<M>& w, Reader<M>& r, bool lost_phase) {
  static std::vector<std::byte> buf(1u << 20, std::byte{0x5A});
  const std::uint64_t op = v.next() % (lost_phase ? 3 : 9);
  const bool lost = lost_phase && r.ring().lost();
  switch (op) {
    case 0: {
      const Status st = w.try_write({buf.data(), v.size()});
      if (int rc = v.after_loss(st, "try_write", lost)) return rc;
      return v.writer(st, "try_write");
    }
    case 1: {
      auto got = r.try_read();
      if (got && !inside(r, got->bytes)) return kOutsideView;
      if (got) r.release();
      if (int rc = v.after_loss(got.status(), "try_read", lost)) return rc;
      return v.reader(got.status(), "try_read", false);
    }
    case 2: {
      auto got = r.read(1ms);
      if (got && !inside(r, got->bytes)) return kOutsideView;
      if (got) r.release();
      if (int rc = v.after_loss(got.status(), "read", lost)) return rc;
      return v.reader(got.status(), "read", false);
    }
    case 3: return v.writer(w.write({buf.data(), v.size()}, 1ms), "write");
    case 4:
    case 5: {
      const std::size_t n = v.size();
      auto span = op == 4 ? w.try_reserve(n) : w.reserve(n, 1ms);
      if (!span) return v.writer(span.status(), "reserve");
      if (span->size() < n) return kShortReservation;
      std::memset(span->data(), 0x33, n);
      if (v.next() % 8 == 0) {
        w.abort();
        return 0;
      }
      return v.writer(w.commit(n == 0 ? 0 : v.next() % (n + 1)), "commit");
    }
    case 6: {
      bool views = true;
      (void)r.poll([&](std::span<const std::byte> b) { views = views && inside(r, b); }, 8);
      if (!views) return kOutsideView;
      return v.reader(r.last_status(), "poll", false);
    }
    case 7: return v.reader(r.recover(), "recover", false);
    default: return 0;
  }
}

template <Mode M>
int typed_step(Victim& v, const Ring& ring, Producer<flatring::test::Msg, M>& p,
               Consumer<flatring::test::Msg, M>& c, flatbuffers::FlatBufferBuilder& fbb,
               bool lost_phase) {
  const std::uint64_t op = v.next() % (lost_phase ? 3 : 6);
  const bool lost = lost_phase && ring.lost();
  switch (op) {
    case 0:
    case 4: {
      fbb.Clear();
      std::uint8_t* bytes = nullptr;
      const std::size_t n = v.size() % 400;
      auto vec = fbb.CreateUninitializedVector(n, &bytes);
      std::memset(bytes, 7, n);
      fbb.Finish(flatring::test::CreateMsg(fbb, v.next(), vec), flatring::test::MsgIdentifier());
      const Status st = op == 0 ? p.try_send(fbb) : p.send(fbb, 1ms);
      if (int rc = v.after_loss(st, "send", lost)) return rc;
      return v.writer(st, "send");
    }
    case 1:
    case 2: {
      auto got = op == 1 ? c.try_receive() : c.receive(1ms);
      if (got) {  // verified: every field may be read
        const auto* payload = (*got)->payload();
        volatile std::uint64_t sink = (*got)->seq() + (payload ? payload->size() : 0);
        (void)sink;
      }
      if (int rc = v.after_loss(got.status(), "receive", lost)) return rc;
      return v.reader(got.status(), "receive", true);
    }
    case 3: {
      const PollCount n = c.poll(
          [](const flatring::test::Msg& m) {
            volatile std::uint64_t sink = m.seq();
            (void)sink;
          },
          8);
      return v.reader(n.status, "poll", true);
    }
    default: return 0;
  }
}

template <Mode M>
int victim_main(const std::string& name, const fr_test::SharedWords& w, bool typed,
                std::uint64_t seed) {
  const Ring ring = Ring::open(name);
  Victim v(w, seed);
  std::optional<Writer<M>> raw_w;
  std::optional<Reader<M>> raw_r;
  std::optional<Producer<flatring::test::Msg, M>> tp;
  std::optional<Consumer<flatring::test::Msg, M>> tc;
  if (typed) {
    tp.emplace(ring, kFast);
    tc.emplace(ring, ConsumerOptions{.wait = kFast});
  } else {
    raw_w.emplace(ring, kFast);
    raw_r.emplace(ring, kFast);
  }
  flatbuffers::FlatBufferBuilder fbb;
  w[kAttached].store(1);
  std::uint64_t ops = 0;
  auto step = [&](bool lost_phase) {
    ++ops;
    w[kBeat].fetch_add(1, std::memory_order_relaxed);
    if (!lost_phase && ops % 512 == 0) {  // the scribbled segment through open
      try {
        (void)Ring::open(name);
      } catch (const flatring::Error&) {
        w[kOpenErrors].fetch_add(1);
      }
    }
    return typed ? typed_step<M>(v, ring, *tp, *tc, fbb, lost_phase)
                 : raw_step<M>(v, *raw_w, *raw_r, lost_phase);
  };
  while (w[kPhase].load() == 0) {
    if (int rc = step(false)) return rc;
  }
  // A shrink to 0 takes every page: each call faults, and both sides must say segment_lost (30 s:
  // a hang guard). A shrink that leaves pages (4 KiB: the first control page; or half the record
  // area) is seen only by a call that touches a lost page or blocks (docs/security.md, "SIGBUS
  // defence"); on a scribbled ring most calls stop at `corrupt` first. Then the victim tries for
  // a while, and the run counts whether it saw the loss; the rule above (once lost, failures say
  // segment_lost) holds throughout.
  const bool whole = w[kShrunkTo].load() == 0;
  const auto give_up = std::chrono::steady_clock::now() + (whole ? 30s : 2s);
  while (!(v.reader_lost && v.writer_lost)) {
    if (std::chrono::steady_clock::now() > give_up) {
      if (!whole) return ring.lost() ? kPartialLossSeen : kPartialLossUnseen;
      std::fprintf(stderr,
                   "scribble victim: no segment_lost after the shrink to 0 (reader %d, "
                   "writer %d)\n",
                   v.reader_lost, v.writer_lost);
      return kNoLoss;
    }
    if (int rc = step(true)) return rc;
  }
  return ring.lost() ? 0 : kNotLost;
}

// Rewrites the segment file `name` until `until`, then shrinks it.
int scribbler_main(const std::string& name, const SegmentInfo& info, const fr_test::SharedWords& w,
                   std::chrono::steady_clock::time_point until, std::uint64_t seed,
                   std::uint64_t epoch) {
  const int fd = ::open(Ring::path_of(name).c_str(), O_RDWR);
  if (fd < 0) return 2;
  struct stat st {};
  if (::fstat(fd, &st) != 0) return 3;
  const auto size = static_cast<std::size_t>(st.st_size);
  auto* base =
      static_cast<std::byte*>(::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  if (base == MAP_FAILED) return 4;
  std::mt19937_64 rng(seed);
  const std::uint64_t cap = info.capacity;
  const std::uint64_t ring_at = info.ring_offset;
  auto word = [&](std::size_t at) -> std::uint64_t& {
    return *reinterpret_cast<std::uint64_t*>(base + (at & ~std::size_t{7}));
  };
  auto extreme = [&](std::uint64_t current) -> std::uint64_t {
    switch (rng() % 10) {
      case 0: return 0;
      case 1: return ~std::uint64_t{0};
      case 2: return std::uint64_t{1} << 63;
      case 3: return cap;
      case 4: return cap - 1;
      case 5: return current + 16;
      case 6: return current - 16;
      case 7: return current + cap;
      case 8: return current + cap + 16;
      default: return current + 1;
    }
  };
  std::uint64_t writes = 0;
  while (std::chrono::steady_clock::now() < until) {
    const int burst = 1 + static_cast<int>(rng() % 32);
    for (int i = 0; i < burst; ++i, ++writes) {
      const std::uint64_t v = rng();
      switch (v % 10) {
        case 0: base[rng() % size] = static_cast<std::byte>(rng()); break;  // any byte
        case 1: base[256 + rng() % (8192 - 256)] = static_cast<std::byte>(rng()); break;
        case 2:
        case 3: {  // a word of the control area: random or extreme
          std::uint64_t& x = word(256 + rng() % (8192 - 256));
          __atomic_store_n(&x, (v & 1) ? rng() : extreme(__atomic_load_n(&x, __ATOMIC_RELAXED)),
                           __ATOMIC_RELAXED);
          break;
        }
        case 4:
        case 5: {  // a frame word: any type, a length often almost right
          const std::uint64_t at = ring_at + (rng() % cap & ~std::uint64_t{15});
          const std::uint64_t len = (v & 2) ? ((v >> 16) & 0x3F0) : rng();
          const std::uint64_t frame = ((v >> 8) % 8) << 56 | (len & ((1ull << 48) - 1));
          __atomic_store_n(&word(at), (v & 4) ? frame : rng(), __ATOMIC_RELAXED);
          break;
        }
        case 6: {  // an extent or offset word (aux)
          const std::uint64_t at = ring_at + (rng() % cap & ~std::uint64_t{15}) + 8;
          __atomic_store_n(&word(at), (v & 1) ? ((v >> 16) & 0x7F0) : extreme(0), __ATOMIC_RELAXED);
          break;
        }
        case 7: {  // any word of the record area
          __atomic_store_n(&word(ring_at + rng() % cap), rng(), __ATOMIC_RELAXED);
          break;
        }
        case 8: base[rng() % 256] = static_cast<std::byte>(rng()); break;  // the header
        default: break;
      }
    }
    w[kWrites].store(writes, std::memory_order_relaxed);
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 500));
  }
  ::munmap(base, size);
  const off_t sizes[] = {0, 4096, static_cast<off_t>(ring_at + cap / 2)};
  const off_t to = sizes[epoch % 3];  // with raw/typed (epoch % 2): each pairing in 6 epochs
  w[kShrunkTo].store(static_cast<std::uint64_t>(to));
  if (::ftruncate(fd, to) != 0) return 5;
  ::close(fd);
  w[kPhase].store(1);
  return 0;
}

template <Mode M>
int run(const Args& args) {
  const std::uint64_t seconds = std::max<std::uint64_t>(1, args.num("seconds", 60));
  const std::uint64_t epochs = std::max<std::uint64_t>(1, args.num("epochs", (seconds + 9) / 10));
  const auto seed = args.num("seed", std::random_device{}());
  const auto per_epoch = std::chrono::milliseconds(seconds * 1000 / epochs);
  const auto start = std::chrono::steady_clock::now();
  std::array<std::uint64_t, kStatuses> writer_outcomes{}, reader_outcomes{};
  std::uint64_t delivered = 0, open_errors = 0, writes = 0, beats = 0, passed = 0;
  std::uint64_t lost_seen = 0, seen_partly = 0, unseen = 0;  // how each passed shrink ended
  std::vector<std::string> failures;
  for (std::uint64_t e = 0; e < epochs; ++e) {
    const bool typed = e % 2 == 1;
    const std::uint64_t capacity = e % 4 < 2 ? 4096 : 1u << 16;
    RingName name(std::string("scribble-") + std::string(to_string(M)));
    const Ring ring =
        create_ring<flatring::test::Msg>(name.str(), {.capacity = capacity, .mode = M});
    const fr_test::SharedWords w(kWords);
    const pid_t victim = spawn([&] {
      ::signal(SIGSEGV, SIG_DFL);  // a fault ends the victim with the signal
      return victim_main<M>(name.str(), w, typed, seed + e);
    });
    const auto attach_by = std::chrono::steady_clock::now() + 30s;
    while (w[kAttached].load() == 0 && exited(victim) == 0 &&
           std::chrono::steady_clock::now() < attach_by)
      std::this_thread::sleep_for(1ms);
    const auto until = std::chrono::steady_clock::now() + per_epoch;
    const pid_t scribbler =
        spawn([&] { return scribbler_main(name.str(), ring.info(), w, until, seed * 7 + e, e); });
    // Watchdog: the victim bumps its heartbeat per call; 30 s without one is a hang.
    int victim_rc = 0;
    std::uint64_t beat = 0;
    auto beat_at = std::chrono::steady_clock::now();
    for (;;) {
      if (const int rc = exited(victim); rc != 0) {
        victim_rc = rc == 1000 ? 0 : rc;
        break;
      }
      if (const std::uint64_t b = w[kBeat].load(); b != beat) {
        beat = b;
        beat_at = std::chrono::steady_clock::now();
      } else if (std::chrono::steady_clock::now() - beat_at > 30s) {
        ::kill(victim, SIGKILL);
        join(victim);
        victim_rc = -1;
        break;
      }
      std::this_thread::sleep_for(5ms);
    }
    const int scribbler_rc = join_within(scribbler, 60s);
    std::string why;
    const bool partial_unseen = victim_rc == 1000 + kPartialLossUnseen;
    if (victim_rc == 1000 + kPartialLossSeen || partial_unseen) {
      ++(partial_unseen ? unseen : seen_partly);
      victim_rc = 0;
    } else if (victim_rc == 0) {
      ++lost_seen;
    }
    if (victim_rc == -1) why = "victim hung (no call returned for 30 s)";
    else if (victim_rc > 128 && victim_rc < 1000)
      why = "victim died by signal " + std::to_string(victim_rc - 128);
    else if (victim_rc != 0) why = "victim exited " + std::to_string(victim_rc - 1000);
    else if (scribbler_rc != 0) why = "scribbler exited " + std::to_string(scribbler_rc);
    if (!why.empty()) {
      failures.push_back("epoch " + std::to_string(e) + (typed ? " typed" : " raw") + ", " +
                         std::to_string(capacity) + "-byte ring shrunk to " +
                         std::to_string(w[kShrunkTo].load()) + ": " + why);
    } else {
      ++passed;
    }
    for (std::size_t i = 0; i < kStatuses; ++i) {
      writer_outcomes[i] += w[kWriterOutcomes + i].load();
      reader_outcomes[i] += w[kReaderOutcomes + i].load();
    }
    delivered += w[kDelivered].load();
    open_errors += w[kOpenErrors].load();
    writes += w[kWrites].load();
    beats += w[kBeat].load();
    std::fprintf(
        stderr, "  scribble %s: epoch %" PRIu64 " of %" PRIu64 " %s, ETA %.0f s\n",
        std::string(to_string(M)).c_str(), e + 1, epochs, why.empty() ? "passed" : why.c_str(),
        static_cast<double>(epochs - e - 1) * static_cast<double>(per_epoch.count()) / 1000.0);
  }
  auto outcomes = [](const std::array<std::uint64_t, kStatuses>& o) {
    std::string s = "{";
    bool any = false;
    for (std::size_t i = 0; i < kStatuses; ++i) {
      if (o[i] == 0) continue;
      s += std::string(any ? ", " : "") + json_string(to_string(static_cast<Status>(i))) + ": " +
           std::to_string(o[i]);
      any = true;
    }
    return s + "}";
  };
  std::string why = "[";
  for (std::size_t i = 0; i < failures.size(); ++i)
    why += (i ? ", " : "") + json_string(failures[i]);
  why += "]";
  const bool ok = failures.empty();
  Json j;
  j.add("part", "scribble")
      .add("mode", to_string(M))
      .add("seed", std::uint64_t{seed})
      .add("epochs", epochs)
      .add("epochs_passed", passed)
      .add("shrinks_segment_lost_both_sides", lost_seen)
      .add("shrinks_lost_one_side", seen_partly)
      .add("partial_shrinks_not_touched", unseen)
      .add("scribbler_writes", writes)
      .add("victim_calls", beats)
      .add("records_delivered", delivered)
      .add("open_refusals", open_errors)
      .add_raw("writer_outcomes", outcomes(writer_outcomes))
      .add_raw("reader_outcomes", outcomes(reader_outcomes))
      .add("seconds", seconds_since(start))
      .add_raw("failures", why)
      .add("ok", ok);
  std::printf("%s\n", j.str().c_str());
  return ok ? 0 : 1;
}

}  // namespace

int scribble_main(const Args& args) {
  return visit_mode(args.mode(), [&](auto m) { return run<decltype(m)::value>(args); });
}

}  // namespace campaign
