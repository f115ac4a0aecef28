#!/usr/bin/python3
"""flatring's Python Pipe and Queue against multiprocessing's, in one run, across two processes.

For each message size (64 B, 1 KiB, 64 KiB, 1 MiB) a forked producer sends M messages and the
parent receives them; the figure is messages per second from the start signal to the last
message received. Transports:

    flatring.Pipe            send_bytes / recv_bytes                     (per message)
    flatring.Pipe batched    send_many / recv_many, 64 per call (fewer above 4 KiB: 256 KiB)
    flatring.Queue           put / get                                   (per message)
    flatring.Queue batched   put_many / get_many, as above
    mp.Pipe + pickle         Connection.send(obj) / recv()               (the pickling default)
    mp.Pipe send_bytes       Connection.send_bytes / recv_bytes
    mp.Queue                 put / get                                   (pickles, feeder thread)

Every transport runs once per round, in an order that alternates between rounds; the report is
the median over the rounds with the range (min-max), and the ratios of the medians. Beside the
rate it reports the CPU time each message cost both processes (user + system, from getrusage):
on a shared, loaded machine the rate measures the share of the CPUs the processes got as much
as the transports, the CPU cost much less so.

    python3 bench/python/bench.py [--rounds 5] [--sizes 64,1024,65536,1048576] [--json out.json]
                                  [--scale 1.0]
"""

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import time

import flatring

ctx = mp.get_context("fork")
BATCH = 64
CAPACITY = 8 << 20  # room for 1 MiB messages (max_record_size = capacity / 2 - 64)
COUNTS = {64: 200_000, 1024: 100_000, 65536: 4_000, 1 << 20: 300}


def batch_of(size):
    """Messages per batched call: 64, or fewer for large messages (a batch of 64 MiB would only
    measure the allocator's fresh pages)."""
    return max(1, min(BATCH, (256 << 10) // size))


def chunks(payload, n):
    b = batch_of(len(payload))
    full, rest = divmod(n, b)
    for _ in range(full):
        yield [payload] * b
    if rest:
        yield [payload] * rest


# ---- producers (run in the forked child) ----


def flatring_producer(send, send_many, go, size, n, batched):
    """Pipe (send_bytes, send_many) or Queue (put, put_many): bound methods, passed by fork."""
    payload = b"x" * size
    go.wait()
    if batched:
        for c in chunks(payload, n):
            send_many(c)
    else:
        for _ in range(n):
            send(payload)


def mp_pipe_producer(conn, go, size, n, pickled):
    payload = b"x" * size
    go.wait()
    send = conn.send if pickled else conn.send_bytes
    for _ in range(n):
        send(payload)


def mp_queue_producer(q, go, size, n):
    payload = b"x" * size
    go.wait()
    for _ in range(n):
        q.put(payload)
    q.close()
    q.join_thread()


# ---- one measurement: returns (messages per second, CPU seconds per message) ----


def measure(kind, size, n):
    go = ctx.Event()
    if kind.startswith("flatring.Pipe"):
        rx, tx = flatring.Pipe(duplex=False, capacity=CAPACITY)
        batched = kind.endswith("batched")
        p = ctx.Process(target=flatring_producer,
                        args=(tx.send_bytes, tx.send_many, go, size, n, batched))
        if batched:
            def drain():
                got = 0
                while got < n:
                    got += len(rx.recv_many(batch_of(size)))
        else:
            def drain():
                recv = rx.recv_bytes
                for _ in range(n):
                    recv()
    elif kind.startswith("flatring.Queue"):
        q = flatring.Queue(capacity=CAPACITY)
        batched = kind.endswith("batched")
        p = ctx.Process(target=flatring_producer, args=(q.put, q.put_many, go, size, n, batched))
        if batched:
            def drain():
                got = 0
                while got < n:
                    got += len(q.get_many(batch_of(size)))
        else:
            def drain():
                get = q.get
                for _ in range(n):
                    get()
    elif kind.startswith("mp.Pipe"):
        rx, tx = ctx.Pipe(duplex=False)
        pickled = kind.endswith("pickle")
        p = ctx.Process(target=mp_pipe_producer, args=(tx, go, size, n, pickled))

        def drain():
            recv = rx.recv if pickled else rx.recv_bytes
            for _ in range(n):
                recv()
    else:
        q = ctx.Queue()
        p = ctx.Process(target=mp_queue_producer, args=(q, go, size, n))

        def drain():
            get = q.get
            for _ in range(n):
                get()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p.start()
    time.sleep(0.05)  # let the child attach and wait
    c0 = time.process_time()
    t0 = time.perf_counter()
    go.set()
    drain()
    t1 = time.perf_counter()
    c1 = time.process_time()
    p.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.exitcode != 0:
        raise RuntimeError("%s producer exited with %s" % (kind, p.exitcode))
    child = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return n / (t1 - t0), ((c1 - c0) + child) / n


KINDS = [
    "flatring.Pipe",
    "flatring.Pipe batched",
    "flatring.Queue",
    "flatring.Queue batched",
    "mp.Pipe + pickle",
    "mp.Pipe send_bytes",
    "mp.Queue",
]

RATIOS = [  # (what, numerator, denominator, target or None)
    ("Pipe vs mp.Pipe + pickle", "flatring.Pipe", "mp.Pipe + pickle"),
    ("Pipe vs mp.Pipe send_bytes", "flatring.Pipe", "mp.Pipe send_bytes"),
    ("Pipe batched vs mp.Pipe + pickle", "flatring.Pipe batched", "mp.Pipe + pickle"),
    ("Queue vs mp.Queue", "flatring.Queue", "mp.Queue"),
    ("Queue batched vs mp.Queue", "flatring.Queue batched", "mp.Queue"),
]
TARGETS = {  # issue 14's targets: (ratio name, size) -> minimum
    ("Pipe vs mp.Pipe + pickle", 64): 8,
    ("Pipe vs mp.Pipe send_bytes", 64): 4,
    ("Pipe batched vs mp.Pipe + pickle", 64): 20,
    ("Pipe vs mp.Pipe + pickle", 1 << 20): 10,
}


def human(size):
    return "%d MiB" % (size >> 20) if size >= 1 << 20 else "%d KiB" % (size >> 10) if size >= 1024 else "%d B" % size


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sizes", default="64,1024,65536,1048576")
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies the message counts")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    results = {}
    cpus = {}
    for r in range(a.rounds):
        order = KINDS if r % 2 == 0 else KINDS[::-1]
        for size in sizes:
            n = max(50, int(COUNTS.get(size, 1000) * a.scale))
            for kind in order:
                rate, cpu = measure(kind, size, n)
                results.setdefault((kind, size), []).append(rate)
                cpus.setdefault((kind, size), []).append(cpu)
        print("round %d/%d done" % (r + 1, a.rounds), file=sys.stderr)

    print("flatring Python benchmark: %s, %s, %d cores, Python %s; medians of %d rounds "
          "(min-max), messages/s" % (platform.node(), platform.processor() or platform.machine(),
                                     os.cpu_count(), platform.python_version(), a.rounds))
    out = {"machine": {"node": platform.node(), "cpus": os.cpu_count(),
                       "python": platform.python_version(), "load": os.getloadavg()},
           "rounds": a.rounds, "rates": [], "ratios": []}
    print("%-24s" % "transport" + "".join("%28s" % human(s) for s in sizes))
    for kind in KINDS:
        line = "%-24s" % kind
        for size in sizes:
            v = results[(kind, size)]
            med = statistics.median(v)
            line += "%28s" % ("%.0f (%.0f-%.0f)" % (med, min(v), max(v)))
            out["rates"].append({"transport": kind, "size": size, "median": med,
                                 "min": min(v), "max": max(v), "runs": v})
        print(line)
    print()
    # Each round's ratio (both rows ran in that round, minutes apart at most), then the median
    # over the rounds with the range: the absolute rates swing between rounds more than ratios do.
    print("%-34s" % "ratio: median over rounds (min-max)" + "".join("%24s" % human(s) for s in sizes))
    for what, num, den in RATIOS:
        line = "%-34s" % what
        for size in sizes:
            per_round = [a / b for a, b in zip(results[(num, size)], results[(den, size)])]
            ratio = statistics.median(per_round)
            target = TARGETS.get((what, size))
            mark = "" if target is None else (" >=%d%s" % (target, "" if ratio >= target else "!"))
            line += "%24s" % ("%.1fx (%.1f-%.1f)%s" % (ratio, min(per_round), max(per_round), mark))
            out["ratios"].append({"ratio": what, "size": size, "value": ratio,
                                  "min": min(per_round), "max": max(per_round),
                                  "runs": per_round, "target": target})
        print(line)
    print("(>=N: the issue's target; ! marks a missed one)")
    print()
    print("CPU time per message, both processes (user + system), microseconds: medians (min-max)")
    print("%-24s" % "transport" + "".join("%28s" % human(s) for s in sizes))
    for kind in KINDS:
        line = "%-24s" % kind
        for size in sizes:
            v = [c * 1e6 for c in cpus[(kind, size)]]
            line += "%28s" % ("%.2f (%.2f-%.2f)" % (statistics.median(v), min(v), max(v)))
            out.setdefault("cpu_us", []).append({"transport": kind, "size": size,
                                                 "median": statistics.median(v), "min": min(v),
                                                 "max": max(v)})
        print(line)
    print("%-34s" % "CPU cost ratio (mp / flatring)" + "".join("%12s" % human(s) for s in sizes))
    for what, num, den in RATIOS:
        line = "%-34s" % what
        for size in sizes:
            r = statistics.median(cpus[(den, size)]) / statistics.median(cpus[(num, size)])
            line += "%12s" % ("%.1fx" % r)
            out["ratios"].append({"ratio": what + " (CPU per message)", "size": size, "value": r})
        print(line)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
