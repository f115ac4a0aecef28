// flatring-worker-pool: a dispatcher and N worker processes wired with three kinds of ring.
//
//   tasks     one spsc ring per worker (dispatcher -> worker): the dispatcher chooses the worker,
//             so it always knows which tasks a worker holds
//   results   one mpsc ring (all workers -> dispatcher)
//   control   one broadcast ring (dispatcher -> every worker): shutdown
//
// Part way through, the dispatcher SIGKILLs worker 0 while it holds tasks. The pool carries on:
// the dispatcher re-sends the tasks that never got a result to the other workers, ignores a
// duplicate result (a task the dead worker finished but whose result was read after its death),
// and counts a result claim the dead worker left half-written (the results ring reports it as
// abandoned). At the end every task has exactly one accepted, verified result.
//
// Usage: flatring-worker-pool [--workers N] [--tasks N] [--no-kill]
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <optional>
#include <set>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
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

struct Names {
  std::string base;
  std::string results() const { return base + ".results"; }
  std::string control() const { return base + ".control"; }
  std::string tasks(unsigned worker) const { return base + ".tasks." + std::to_string(worker); }
};

// ---------------------------------------------------------------- worker

int run_worker(const Names& names, unsigned index) {
  using namespace flatring;
  // Join the control ring first: the dispatcher starts only when every worker listens to it.
  BroadcastConsumer<pool::Control> control(open_ring<pool::Control>(names.control()));
  Consumer<pool::Task> tasks(open_ring<pool::Task>(names.tasks(index)));
  MpscProducer<pool::Result> results(open_ring<pool::Result>(names.results()));
  flatbuffers::FlatBufferBuilder fbb;
  for (;;) {
    if (auto c = control.try_receive(); c && (*c)->command() == pool::Command::Shutdown) return 0;
    auto task = tasks.receive(5ms);
    if (task.status() == Status::timed_out || task.status() == Status::empty) continue;
    if (!task) {
      std::fprintf(stderr, "worker %u: tasks: %s\n", index, std::string(to_string(task.status())).c_str());
      return 1;
    }
    fbb.Clear();
    pool::FinishResultBuffer(fbb, pool::CreateResult(fbb, (*task)->id(), index, work((*task)->input())));
    const Status s = results.send(fbb, 10s);
    if (s != Status::ok) {
      std::fprintf(stderr, "worker %u: results: %s\n", index, std::string(to_string(s)).c_str());
      return 1;
    }
  }
}

// ---------------------------------------------------------------- dispatcher

struct Worker {
  pid_t pid = 0;
  std::optional<flatring::Producer<pool::Task>> tasks;
  std::set<std::uint64_t> holding;  // sent, no result yet
  bool alive = true;
};

int run_dispatcher(const Names& names, unsigned n_workers, std::uint64_t n_tasks, bool kill_one) {
  using namespace flatring;
  RingOptions small{.capacity = 1 << 16};
  auto control_ring = create_ring<pool::Control>(names.control(), {.capacity = 1 << 12, .mode = Mode::broadcast});
  RemoveGuard control_guard(names.control());
  auto results_ring = create_ring<pool::Result>(names.results(), {.capacity = 1 << 16, .mode = Mode::mpsc});
  RemoveGuard results_guard(names.results());
  std::deque<RemoveGuard> task_guards;  // a deque: RemoveGuard does not move
  for (unsigned i = 0; i < n_workers; ++i) {
    (void)create_ring<pool::Task>(names.tasks(i), small);
    task_guards.emplace_back(names.tasks(i));
  }
  BroadcastProducer<pool::Control> control(control_ring);
  MpscConsumer<pool::Result> results(results_ring);

  std::vector<Worker> workers(n_workers);
  for (unsigned i = 0; i < n_workers; ++i) {
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
      int rc = 1;
      try {
        rc = run_worker(names, i);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "worker %u: %s\n", i, e.what());
      }
      std::fflush(nullptr);
      ::_exit(rc);
    }
    workers[i].pid = pid;
    workers[i].tasks.emplace(open_ring<pool::Task>(names.tasks(i)));
  }
  while (census(control_ring, layout::Role::consumer).alive < n_workers) std::this_thread::sleep_for(1ms);

  std::deque<std::uint64_t> to_send;  // re-sends first, then fresh tasks
  std::uint64_t next_fresh = 0, accepted = 0, duplicates = 0, abandoned = 0, resent = 0;
  std::vector<bool> done(n_tasks, false);
  unsigned rr = 0;
  bool killed = !kill_one;
  constexpr std::size_t kWindow = 16;  // tasks in flight per worker
  flatbuffers::FlatBufferBuilder fbb;

  while (accepted < n_tasks) {
    // Hand out work, round robin over live workers with room in their window.
    for (unsigned k = 0; k < n_workers; ++k) {
      Worker& w = workers[(rr + k) % n_workers];
      if (!w.alive || w.holding.size() >= kWindow) continue;
      std::uint64_t id;
      if (!to_send.empty()) id = to_send.front();
      else if (next_fresh < n_tasks) id = next_fresh;
      else break;
      fbb.Clear();
      pool::FinishTaskBuffer(fbb, pool::CreateTask(fbb, id, 1000 + id));
      if (w.tasks->try_send(fbb) != Status::ok) continue;  // full: next worker
      if (!to_send.empty()) to_send.pop_front();
      else ++next_fresh;
      w.holding.insert(id);
    }
    ++rr;

    // Collect results.
    auto r = results.receive(1ms);
    if (r) {
      const pool::Result* res = *r;
      const std::uint64_t id = res->id();
      if (id >= n_tasks || res->worker() >= n_workers || res->value() != work(1000 + id)) {
        std::fprintf(stderr, "dispatcher: bad result for task %llu\n", static_cast<unsigned long long>(id));
        return 1;
      }
      workers[res->worker()].holding.erase(id);
      if (done[id]) {
        ++duplicates;
      } else {
        done[id] = true;
        ++accepted;
      }
    } else if (r.status() == Status::abandoned) {
      ++abandoned;  // a worker died inside its claim on the results ring
    } else if (r.status() != Status::timed_out) {
      std::fprintf(stderr, "dispatcher: results: %s\n", std::string(to_string(r.status())).c_str());
      return 1;
    }

    // A third of the way through, kill worker 0 in the middle of its work.
    if (!killed && accepted >= n_tasks / 3 && !workers[0].holding.empty()) {
      Worker& victim = workers[0];
      ::kill(victim.pid, SIGKILL);
      ::waitpid(victim.pid, nullptr, 0);
      victim.alive = false;
      victim.tasks.reset();
      killed = true;
      std::printf("dispatcher: SIGKILLed worker 0 (pid %d) holding %zu tasks; re-sending them\n",
                  static_cast<int>(victim.pid), victim.holding.size());
      for (std::uint64_t id : victim.holding) {
        if (!done[id]) {
          to_send.push_back(id);
          ++resent;
        }
      }
      victim.holding.clear();
    }
  }

  // Every task has one accepted result: tell everyone to stop.
  fbb.Clear();
  pool::FinishControlBuffer(fbb, pool::CreateControl(fbb, pool::Command::Shutdown));
  if (control.send(fbb, 10s) != Status::ok) return 1;
  int failures = 0;
  for (unsigned i = 0; i < n_workers; ++i) {
    if (!workers[i].alive) continue;
    int status = 0;
    ::waitpid(workers[i].pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failures;
  }
  // Results still in the ring are duplicates of accepted ones (re-sent tasks finished twice).
  while (auto r = results.try_receive()) ++duplicates;
  std::printf("dispatcher: %llu tasks, %u workers: %llu results accepted and verified, %llu re-sent, "
              "%llu duplicate results ignored, %llu abandoned result claims, %d worker failures\n",
              static_cast<unsigned long long>(n_tasks), n_workers,
              static_cast<unsigned long long>(accepted), static_cast<unsigned long long>(resent),
              static_cast<unsigned long long>(duplicates), static_cast<unsigned long long>(abandoned),
              failures);
  const bool all = std::all_of(done.begin(), done.end(), [](bool d) { return d; });
  return all && failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  unsigned n_workers = 3;
  std::uint64_t n_tasks = 20'000;
  bool kill_one = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--workers" && i + 1 < argc) n_workers = static_cast<unsigned>(std::strtoul(argv[++i], nullptr, 10));
    else if (a == "--tasks" && i + 1 < argc) n_tasks = std::strtoull(argv[++i], nullptr, 10);
    else if (a == "--no-kill") kill_one = false;
    else {
      std::fprintf(stderr, "usage: %s [--workers N] [--tasks N] [--no-kill]\n", argv[0]);
      return 2;
    }
  }
  if (n_workers < 2 || n_workers > 16 || n_tasks == 0) {
    std::fprintf(stderr, "need 2..16 workers (one is killed) and at least one task\n");
    return 2;
  }
  const Names names{"worker-pool-" + std::to_string(::getpid())};
  try {
    return run_dispatcher(names, n_workers, n_tasks, kill_one);
  } catch (const flatring::Error& e) {
    std::fprintf(stderr, "dispatcher: %s\n", e.what());
    return 1;
  }
}
