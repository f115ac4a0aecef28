// flatring-worker-pool: a dispatcher and N worker processes wired with three kinds of ring.
//
//   tasks     one mpmc ring (dispatcher -> all workers): work sharing, each task goes to exactly
//             one worker while workers live; a task whose worker dies holding it is delivered
//             again to a live worker (at-least-once, Consumer::redelivered())
//   results   one mpsc ring (all workers -> dispatcher)
//   control   one broadcast ring (dispatcher -> every worker): shutdown
//
// A third of the way through, the dispatcher sends a task flagged to stall before its result; two
// thirds through, one flagged to stall after it. The worker that receives such a task reports that
// it holds it and stops; the dispatcher SIGKILLs it and starts a replacement, as a pool supervisor
// would. Nothing is re-sent: the tasks ring hands the dead worker's task to a live worker, flagged
// redelivered. The dispatcher keeps its own books (a task id is accepted once; the redelivered
// copy of a task whose result already arrived gives a duplicate, ignored) and exits 0 only when
// every task has exactly one accepted, verified result and each killed worker's task came back
// exactly once.
//
// Usage: flatring-worker-pool [--workers N] [--tasks N] [--no-kill]
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <utility>
#include <vector>

#include <flatring/flatring.hpp>

#include "control_generated.h"
#include "result_generated.h"
#include "task_generated.h"

FLATRING_SCHEMA(pool::Task, pool::TaskIdentifier());
FLATRING_SCHEMA(pool::Result, pool::ResultIdentifier());
FLATRING_SCHEMA(pool::Control, pool::ControlIdentifier());

using namespace std::chrono_literals;

namespace {

// Build hints (Producer::build writes each record in place, in the ring): a little above what a
// Task, Result and Control take (about 48, 64 and 24 bytes), so none takes the copying fallback.
constexpr std::size_t kTaskHint = 64;
constexpr std::size_t kResultHint = 80;
constexpr std::size_t kControlHint = 48;

// The work: Collatz steps of `input`, repeated so a task takes some microseconds.
std::uint64_t work(std::uint64_t input) {
  std::uint64_t steps = 0;
  for (int round = 0; round < 20; ++round) {
    for (std::uint64_t x = input + static_cast<std::uint64_t>(round) + 1; x != 1; ++steps) {
      x = (x % 2 == 0) ? x / 2 : 3 * x + 1;
    }
  }
  return steps;
}

std::uint64_t input_of(std::uint64_t id) { return 1000 + id; }

std::string str(flatring::Status s) { return std::string(flatring::to_string(s)); }

struct Names {
  std::string base;
  std::string tasks() const { return base + ".tasks"; }
  std::string results() const { return base + ".results"; }
  std::string control() const { return base + ".control"; }
};

// ---------------------------------------------------------------- worker

// The victim says it holds task `id`, then holds it (the task stays claimed in the ring: it is
// not released before the next receive) and listens only for the end: the dispatcher's SIGKILL,
// a shutdown, or the dispatcher's death.
int stall(flatring::Consumer<pool::Control, flatring::Mode::broadcast>& control,
          flatring::Producer<pool::Result, flatring::Mode::mpsc>& results, std::uint64_t id,
          unsigned index) {
  auto said = results.build(
      kResultHint,
      [&](flatbuffers::FlatBufferBuilder& fbb) {
        return pool::CreateResult(fbb, id, index, 0, false, /*stalling=*/true);
      },
      10s);
  if (said != flatring::Status::ok) return 1;
  for (;;) {
    auto c = control.receive(1s);
    if (c && (*c)->command() == pool::Command::Shutdown) return 0;
    if (c.status() == flatring::Status::peer_dead) return 1;
  }
}

int run_worker(const Names& names, unsigned index) {
  using namespace flatring;
  // Join the control ring first: the dispatcher relies on a broadcast only once every worker
  // listens to it (a broadcast consumer sees what is sent after it joined).
  Consumer<pool::Control, flatring::Mode::broadcast> control(
      open_ring<pool::Control>(names.control()));
  // In place: a received task stays held in the ring until the next receive, i.e. until its
  // result is sent. If this worker dies before that, the ring delivers the task again to another
  // worker. (A copying consumer releases the record before it even verifies it.) In place reads
  // trust the task producer not to rewrite a record after it was verified: here that is the
  // pool's own dispatcher.
  Consumer<pool::Task, flatring::Mode::mpmc> tasks(open_ring<pool::Task>(names.tasks()),
                                                   {.in_place = true});
  Producer<pool::Result, flatring::Mode::mpsc> results(open_ring<pool::Result>(names.results()));
  for (;;) {
    if (auto c = control.try_receive(); c && (*c)->command() == pool::Command::Shutdown) {
      // The last task is still held (released by the next receive). A consumer that goes away
      // holding a record has not said it is done with it: the ring would deliver it again.
      tasks.raw().release();
      return 0;
    }
    // The timeout bounds how late a shutdown is seen; each one also runs the ring's recovery of
    // tasks that dead workers held.
    auto task = tasks.receive(5ms);
    if (task.status() == Status::timed_out || task.status() == Status::empty ||
        task.status() == Status::abandoned) {
      continue;
    }
    if (!task) {  // peer_dead: the dispatcher is gone; anything else is a broken ring
      std::fprintf(stderr, "worker %u: tasks: %s\n", index, str(task.status()).c_str());
      return 1;
    }
    const pool::Task& t = **task;
    const bool redelivered = tasks.redelivered();
    const pool::Stall victim = redelivered ? pool::Stall::None : t.stall();
    if (victim == pool::Stall::BeforeResult) return stall(control, results, t.id(), index);
    // Built in place in the results ring (each byte written once); the hint fits a Result.
    const Status s = results.build(
        kResultHint,
        [&](flatbuffers::FlatBufferBuilder& fbb) {
          return pool::CreateResult(fbb, t.id(), index, work(t.input()), redelivered);
        },
        10s);
    if (s != Status::ok) {
      std::fprintf(stderr, "worker %u: results: %s\n", index, str(s).c_str());
      return 1;
    }
    if (victim == pool::Stall::AfterResult) return stall(control, results, t.id(), index);
  }
}

pid_t start_worker(const Names& names, unsigned index) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork: " + std::string(std::strerror(errno)));
  if (pid == 0) {
    int rc = 1;
    try {
      rc = run_worker(names, index);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "worker %u: %s\n", index, e.what());
    }
    std::fflush(nullptr);
    ::_exit(rc);  // not exit(): the dispatcher's endpoints, copied by fork, are not ours to close
  }
  return pid;
}

// ---------------------------------------------------------------- dispatcher

struct Worker {
  pid_t pid = 0;
  bool alive = true;
  std::uint64_t accepted = 0;  // results of this worker that were accepted
};

class Dispatcher {
 public:
  Dispatcher(Names names, unsigned n_workers, std::uint64_t n_tasks, bool kill_one)
      : names_(std::move(names)),
        n_tasks_(n_tasks),
        stall_before_(kill_one ? n_tasks / 3 : n_tasks),
        stall_after_(kill_one ? 2 * n_tasks / 3 : n_tasks),
        state_(n_tasks, State::unsent),
        held_by_dead_(n_tasks, false),
        // Sizes: a task or result record is under 64 bytes, so each 64 KiB ring holds about a
        // thousand; one shutdown record is all the control ring ever carries.
        tasks_ring_(flatring::create_ring<pool::Task>(
            names_.tasks(), {.capacity = 1 << 16, .mode = flatring::Mode::mpmc})),
        tasks_guard_(names_.tasks()),
        results_ring_(flatring::create_ring<pool::Result>(
            names_.results(), {.capacity = 1 << 16, .mode = flatring::Mode::mpsc})),
        results_guard_(names_.results()),
        control_ring_(flatring::create_ring<pool::Control>(
            names_.control(), {.capacity = 1 << 12, .mode = flatring::Mode::broadcast})),
        control_guard_(names_.control()),
        tasks_(tasks_ring_),
        results_(results_ring_),
        control_(control_ring_) {
    for (unsigned i = 0; i < n_workers; ++i) workers_.push_back({start_worker(names_, i)});
  }

  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // On an error path: no worker outlives the dispatcher.
  ~Dispatcher() {
    for (const Worker& w : workers_) {
      if (!w.alive) continue;
      ::kill(w.pid, SIGKILL);
      ::waitpid(w.pid, nullptr, 0);
    }
  }

  int run() {
    std::printf("dispatcher: %zu workers, %llu tasks over one mpmc ring\n", workers_.size(),
                ull(n_tasks_));
    // Also wait for the tasks killed workers held: the ring delivers each again, and the books
    // account for it (a result, or a duplicate ignored).
    while ((accepted_ < n_tasks_ || awaiting_ != 0) && failures_ == 0) {
      const bool sent = send_some();
      bool got = false;
      // Drain a batch of results; wait a little only when there was nothing to do.
      for (int k = 0; k < 256; ++k) {
        auto r = (k == 0 && !sent) ? results_.receive(1ms) : results_.try_receive();
        if (!take(std::move(r))) break;
        got = true;
      }
      if (!sent && !got) supervise();
    }
    shut_down();
    // Anything still in the results ring answers a task already accepted (a duplicate).
    while (take(results_.try_receive())) {
    }
    report();
    // With the two victims: both killed, both tasks back once, the AfterResult one a duplicate.
    const bool victims = stall_before_ < n_tasks_;
    bool all = failures_ == 0 && kills_ == (victims ? 2u : 0u) && redelivered_ == kills_ &&
               duplicates_ == (victims ? 1u : 0u);
    for (State s : state_) all = all && s == State::accepted;
    return all ? 0 : 1;
  }

 private:
  enum class State : unsigned char { unsent, sent, accepted };

  pool::Stall stall_of(std::uint64_t id) const {
    if (id == stall_before_) return pool::Stall::BeforeResult;
    if (id == stall_after_) return pool::Stall::AfterResult;
    return pool::Stall::None;
  }

  static unsigned long long ull(std::uint64_t v) { return static_cast<unsigned long long>(v); }

  // Sends fresh tasks until the ring is full (a bounded batch, so results keep flowing back).
  bool send_some() {
    bool any = false;
    for (int k = 0; k < 256 && next_ < n_tasks_; ++k) {
      const flatring::Status s =
          tasks_.try_build(kTaskHint, [&](flatbuffers::FlatBufferBuilder& fbb) {
            return pool::CreateTask(fbb, next_, input_of(next_), stall_of(next_));
          });
      if (s == flatring::Status::full) break;
      if (s != flatring::Status::ok) throw std::runtime_error("tasks: " + str(s));
      state_[next_++] = State::sent;
      any = true;
    }
    return any;
  }

  // Handles one receive outcome; false when there was no result (empty, timed out).
  bool take(flatring::Result<const pool::Result*> r) {
    if (r.status() == flatring::Status::abandoned) {  // a worker died inside its results claim
      ++abandoned_;
      return true;
    }
    if (r.status() == flatring::Status::empty || r.status() == flatring::Status::timed_out)
      return false;
    if (!r) throw std::runtime_error("results: " + str(r.status()));
    const pool::Result& res = **r;
    const std::uint64_t id = res.id();
    if (id >= n_tasks_ || state_[id] == State::unsent || res.worker() >= workers_.size()) {
      throw std::runtime_error("a result for task " + std::to_string(id) + " that was never sent");
    }
    if (res.stalling()) {
      kill_stalled(res.worker(), id);
      return true;
    }
    ++results_seen_;
    if (res.value() != work(input_of(id)))
      throw std::runtime_error("a wrong value for task " + std::to_string(id));
    if (res.redelivered()) {
      ++redelivered_;
      if (held_by_dead_[id]) {
        held_by_dead_[id] = false;
        --awaiting_;
      }
    }
    if (state_[id] == State::accepted) {
      ++duplicates_;
      return true;
    }
    state_[id] = State::accepted;
    ++accepted_;
    ++workers_[res.worker()].accepted;
    return true;
  }

  // The victim holds task `id` and waits: kill it, then start a replacement, as a pool
  // supervisor would after waitpid. The task itself needs nothing from us.
  void kill_stalled(unsigned index, std::uint64_t id) {
    Worker& w = workers_[index];
    if (!w.alive) throw std::runtime_error("a stall report from a worker that is gone");
    ::kill(w.pid, SIGKILL);
    ::waitpid(w.pid, nullptr, 0);
    w.alive = false;
    ++kills_;
    if (!held_by_dead_[id]) {
      held_by_dead_[id] = true;
      ++awaiting_;
    }
    std::printf("dispatcher: worker %u (pid %d) holds task %llu and stalls: SIGKILL\n", index,
                static_cast<int>(w.pid), ull(id));
    const auto fresh = static_cast<unsigned>(workers_.size());
    workers_.push_back({start_worker(names_, fresh)});
    std::printf("dispatcher: started worker %u (pid %d) in its place\n", fresh,
                static_cast<int>(workers_.back().pid));
  }

  // The pool's own supervision: a worker that exits on its own is a failure (workers only stop
  // when told to); its held task would still come back from the ring.
  void supervise() {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      if (workers_[i].pid != pid || !workers_[i].alive) continue;
      workers_[i].alive = false;
      ++failures_;
      std::fprintf(stderr, "dispatcher: worker %zu (pid %d) exited unexpectedly (status %d)\n", i,
                   static_cast<int>(pid), status);
    }
  }

  std::size_t live() const {
    std::size_t n = 0;
    for (const Worker& w : workers_) n += w.alive ? 1 : 0;
    return n;
  }

  // Every live worker must be listening before the shutdown is broadcast (a replacement may
  // still be starting).
  void shut_down() {
    while (failures_ == 0 &&
           flatring::census(control_ring_, flatring::layout::Role::consumer).alive < live()) {
      supervise();
      std::this_thread::sleep_for(1ms);
    }
    const flatring::Status s = control_.build(
        kControlHint,
        [](flatbuffers::FlatBufferBuilder& fbb) {
          return pool::CreateControl(fbb, pool::Command::Shutdown);
        },
        10s);
    if (s != flatring::Status::ok) {
      std::fprintf(stderr, "dispatcher: control: %s\n", str(s).c_str());
      ++failures_;
    }
    for (Worker& w : workers_) {
      if (!w.alive) continue;
      if (s != flatring::Status::ok) ::kill(w.pid, SIGKILL);
      int status = 0;
      ::waitpid(w.pid, &status, 0);
      w.alive = false;
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failures_;
    }
  }

  void report() const {
    std::printf("dispatcher: results per worker:");
    for (std::size_t i = 0; i < workers_.size(); ++i)
      std::printf(" %zu:%llu", i, ull(workers_[i].accepted));
    std::printf("\n");
    std::printf("dispatcher: tasks %llu, results %llu (%llu accepted and verified), tasks "
                "redelivered %llu, "
                "duplicate results ignored %llu, abandoned result claims %llu, workers killed %u, "
                "worker failures %u\n",
                ull(n_tasks_), ull(results_seen_), ull(accepted_), ull(redelivered_),
                ull(duplicates_), ull(abandoned_), kills_, failures_);
  }

  Names names_;
  std::uint64_t n_tasks_;
  std::uint64_t stall_before_, stall_after_;  // n_tasks_: none
  std::vector<State> state_;
  std::vector<bool> held_by_dead_;  // a killed worker held it; its redelivered result is due
  std::uint64_t awaiting_ = 0;      // how many of those
  flatring::Ring tasks_ring_;
  flatring::RemoveGuard tasks_guard_;
  flatring::Ring results_ring_;
  flatring::RemoveGuard results_guard_;
  flatring::Ring control_ring_;
  flatring::RemoveGuard control_guard_;
  flatring::Producer<pool::Task, flatring::Mode::mpmc> tasks_;
  flatring::Consumer<pool::Result, flatring::Mode::mpsc> results_;
  flatring::Producer<pool::Control, flatring::Mode::broadcast> control_;
  std::vector<Worker> workers_;
  std::uint64_t next_ = 0, accepted_ = 0, results_seen_ = 0, redelivered_ = 0, duplicates_ = 0,
                abandoned_ = 0;
  unsigned kills_ = 0, failures_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress lines appear as they happen, even in a pipe
  unsigned n_workers = 3;
  std::uint64_t n_tasks = 20'000;
  bool kill_one = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--workers" && i + 1 < argc)
      n_workers = static_cast<unsigned>(std::strtoul(argv[++i], nullptr, 10));
    else if (a == "--tasks" && i + 1 < argc) n_tasks = std::strtoull(argv[++i], nullptr, 10);
    else if (a == "--no-kill") kill_one = false;
    else {
      std::fprintf(stderr, "usage: %s [--workers N] [--tasks N] [--no-kill]\n", argv[0]);
      return 2;
    }
  }
  if (n_workers < 2 || n_workers > 16 || n_tasks < (kill_one ? 3u : 1u)) {
    std::fprintf(stderr, "need 2..16 workers and at least 3 tasks (1 with --no-kill)\n");
    return 2;
  }
  try {
    Dispatcher d(Names{"worker-pool-" + std::to_string(::getpid())}, n_workers, n_tasks, kill_one);
    return d.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dispatcher: %s\n", e.what());
    return 1;
  }
}
