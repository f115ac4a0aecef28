#!/usr/bin/python3
"""A worker pool on flatring rings, the Python twin of examples/worker_pool/worker_pool.cpp.

A dispatcher and N multiprocessing workers:
    tasks    mpmc       dispatcher -> workers   each task to exactly one worker
    results  mpsc       workers -> dispatcher   one result per task, tagged with the task id
    control  broadcast  dispatcher -> workers   shutdown

Every record is a FlatBuffer (examples/worker_pool/schema), verified in C++ before Python reads
it. A third of the way through, the dispatcher sends a task flagged to stall before its result;
two thirds through, one flagged to stall after it. The worker that takes such a task reports that
it holds it and stops; the dispatcher SIGKILLs it and starts a replacement, and re-sends nothing:
the tasks ring delivers the dead worker's task again to a live worker (flagged redelivered). The
dispatcher accepts one result per task id and ignores duplicates. Exit status 0 only if every
task has exactly one accepted result with the right value, each killed worker's task came back
exactly once, and every other worker exited 0.

    python3 examples/python/worker_pool.py [--workers 3] [--tasks 5000] [--no-kill]
                                           [--start-method fork|spawn|forkserver]
"""

import argparse
import multiprocessing as mp
import os
import signal
import sys
import time

import flatbuffers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _gen  # noqa: E402

_gen.ensure("pool")
import flatring  # noqa: E402
from pool import Command, Control, Result, Stall, Task  # noqa: E402

SCHEMA = os.path.join(_gen.EXAMPLES, "worker_pool", "schema")


def work(x):
    """The work: something the dispatcher can recompute to check every result."""
    return (x * 2654435761 + 12345) % (1 << 61)


def build_result(task_id, worker, value, redelivered=False, stalling=False):
    fbb = flatbuffers.Builder(64)
    Result.ResultStart(fbb)
    Result.ResultAddId(fbb, task_id)
    Result.ResultAddWorker(fbb, worker)
    Result.ResultAddValue(fbb, value)
    Result.ResultAddRedelivered(fbb, redelivered)
    Result.ResultAddStalling(fbb, stalling)
    fbb.Finish(Result.ResultEnd(fbb), file_identifier=b"WPRS")
    return fbb.Output()


# ---------------------------------------------------------------- the worker


def worker(index, names):
    # Join the control ring first: the dispatcher counts its consumers before it broadcasts.
    control = flatring.open(names["control"], schema=os.path.join(SCHEMA, "control.fbs")).consumer()
    tasks = flatring.open(names["tasks"], schema=os.path.join(SCHEMA, "task.fbs")).consumer(eof=False)
    results = flatring.open(names["results"], schema=os.path.join(SCHEMA, "result.fbs")).producer()
    while True:
        if control.try_receive() is not None:  # Shutdown (the only command)
            tasks.release()  # a clean exit gives back nothing it still holds
            return 0
        try:
            # The view holds the task in the ring until the next receive: if this worker dies
            # before its result is sent, the ring delivers the task again to a live worker.
            view = tasks.receive_view(timeout=0.005)
        except flatring.Timeout:
            continue
        t = Task.Task.GetRootAs(view, 0)
        redelivered = tasks.redelivered
        victim = Stall.Stall.None_ if redelivered else t.Stall()
        if victim == Stall.Stall.BeforeResult:
            return stall(control, results, t.Id(), index)
        results.send(build_result(t.Id(), index, work(t.Input()), redelivered))
        if victim == Stall.Stall.AfterResult:
            return stall(control, results, t.Id(), index)


def stall(control, results, task_id, index):
    """Reports that this worker holds `task_id` and waits (for its SIGKILL, or a shutdown)."""
    results.send(build_result(task_id, index, 0, stalling=True))
    control.receive()
    return 0


def worker_main(index, names):
    sys.exit(worker(index, names))


# ---------------------------------------------------------------- the dispatcher


class Dispatcher:
    def __init__(self, workers, tasks, kill, ctx):
        self.ctx = ctx
        base = "pypool-%d" % os.getpid()
        self.names = {k: "%s.%s" % (base, k) for k in ("tasks", "results", "control")}
        self.rings = [
            flatring.create(self.names["tasks"], capacity=1 << 16, mode="mpmc",
                            schema=os.path.join(SCHEMA, "task.fbs")),
            flatring.create(self.names["results"], capacity=1 << 16, mode="mpsc",
                            schema=os.path.join(SCHEMA, "result.fbs")),
            flatring.create(self.names["control"], capacity=1 << 12, mode="broadcast",
                            schema=os.path.join(SCHEMA, "control.fbs")),
        ]
        self.tasks_tx = self.rings[0].producer()
        self.results_rx = self.rings[1].consumer(eof=False)  # workers come and go
        self.control_tx = self.rings[2].producer()
        self.n_tasks = tasks
        self.stall_before = tasks // 3 if kill else tasks
        self.stall_after = 2 * tasks // 3 if kill else tasks
        self.state = [0] * tasks  # 0 unsent, 1 sent, 2 accepted
        self.held_by_dead = set()
        self.workers = {}  # index -> Process
        self.next_index = 0
        self.kills = self.redelivered = self.duplicates = self.results = 0
        self.failures = 0
        self.n_accepted = 0
        self.per_worker = {}
        for _ in range(workers):
            self.start_worker()

    def start_worker(self):
        i = self.next_index
        self.next_index += 1
        p = self.ctx.Process(target=worker_main, args=(i, self.names), name="worker-%d" % i)
        p.start()
        self.workers[i] = p
        return i, p

    def task(self, i):
        stall = Stall.Stall.None_
        if i == self.stall_before:
            stall = Stall.Stall.BeforeResult
        elif i == self.stall_after:
            stall = Stall.Stall.AfterResult
        fbb = flatbuffers.Builder(64)
        Task.TaskStart(fbb)
        Task.TaskAddId(fbb, i)
        Task.TaskAddInput(fbb, i * 7919)
        Task.TaskAddStall(fbb, stall)
        fbb.Finish(Task.TaskEnd(fbb), file_identifier=b"WPTK")
        return fbb.Output()

    def run(self):
        print("dispatcher: %d workers, %d tasks over one mpmc ring" % (len(self.workers), self.n_tasks))
        sent = 0
        pending = None
        while sent < self.n_tasks or self.accepted() < self.n_tasks or self.held_by_dead:
            progressed = False
            while sent < self.n_tasks:
                if pending is None:
                    pending = self.task(sent)
                if not self.tasks_tx.try_send(pending):
                    break  # the ring is full: take results first
                self.state[sent] = 1
                sent += 1
                pending = None
                progressed = True
            try:
                batch = self.results_rx.receive_many(256, timeout=0 if progressed else 0.01)
            except flatring.Timeout:
                batch = []
            for b in batch:
                self.on_result(Result.Result.GetRootAs(b, 0))
            self.reap_failures()
        self.shutdown()
        return self.report()

    def accepted(self):
        return self.n_accepted

    def on_result(self, r):
        self.results += 1
        tid = r.Id()
        if r.Stalling():
            self.kill_stalled(r.Worker(), tid)
            return
        if r.Redelivered():
            self.redelivered += 1
            self.held_by_dead.discard(tid)
        if not 0 <= tid < self.n_tasks or self.state[tid] == 0:
            raise RuntimeError("a result for task %d, which was never sent" % tid)
        if self.state[tid] == 2:
            self.duplicates += 1
            return
        if r.Value() != work(tid * 7919):
            raise RuntimeError("task %d: wrong value %d" % (tid, r.Value()))
        self.state[tid] = 2
        self.n_accepted += 1
        self.per_worker[r.Worker()] = self.per_worker.get(r.Worker(), 0) + 1

    def kill_stalled(self, index, tid):
        p = self.workers.pop(index)
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        self.kills += 1
        self.held_by_dead.add(tid)
        print("dispatcher: worker %d (pid %d) holds task %d and stalls: SIGKILL" % (index, p.pid, tid))
        i, q = self.start_worker()
        print("dispatcher: started worker %d (pid %d) in its place" % (i, q.pid))

    def reap_failures(self):
        for i, p in list(self.workers.items()):
            if p.exitcode is not None:
                print("dispatcher: worker %d exited unexpectedly (%s)" % (i, p.exitcode))
                self.failures += 1
                del self.workers[i]
                self.start_worker()

    def shutdown(self):
        # A broadcast reaches only the consumers attached when it is sent: wait for all of them.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            alive = [p for p in self.rings[2].peers() if p["role"] == "consumer" and p["alive"]]
            if len(alive) >= len(self.workers):
                break
            time.sleep(0.01)
        b = flatbuffers.Builder(16)
        Control.ControlStart(b)
        Control.ControlAddCommand(b, Command.Command.Shutdown)
        b.Finish(Control.ControlEnd(b), file_identifier=b"WPCT")
        self.control_tx.send(b.Output())
        for p in self.workers.values():
            p.join(30)
            if p.exitcode != 0:
                self.failures += 1

    def report(self):
        accepted = self.state.count(2)
        print("dispatcher: results per worker: " +
              " ".join("%d:%d" % kv for kv in sorted(self.per_worker.items())))
        print("dispatcher: tasks %d, results %d (%d accepted and verified), tasks redelivered %d, "
              "duplicate results ignored %d, workers killed %d, worker failures %d"
              % (self.n_tasks, self.results, accepted, self.redelivered, self.duplicates,
                 self.kills, self.failures))
        victims = self.stall_before < self.n_tasks
        ok = (accepted == self.n_tasks and self.failures == 0
              and self.kills == (2 if victims else 0) and self.redelivered == self.kills)
        for r in self.rings:
            r.remove()
        return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--tasks", type=int, default=5000)
    ap.add_argument("--no-kill", action="store_true")
    ap.add_argument("--start-method", default="fork", choices=["fork", "spawn", "forkserver"])
    a = ap.parse_args()
    d = Dispatcher(a.workers, a.tasks, not a.no_kill, mp.get_context(a.start_method))
    try:
        return d.run()
    except BaseException:
        for p in d.workers.values():
            p.kill()
        for r in d.rings:
            r.remove()
        raise


if __name__ == "__main__":
    sys.exit(main())
