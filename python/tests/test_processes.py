"""Every mode across real processes (forked with multiprocessing): 10^5 tagged records per mode
with per-producer order, no loss and no duplicate; records of 65,537 B, 1 MiB and 64 MiB byte for
byte; a garbage record mid-stream."""

import multiprocessing as mp

import pytest

import flatring
from helpers import order, pattern, read_order, tag, untag

N = 100_000
BATCH = 500
fork = mp.get_context("fork")


def produce(name, producer_id, n):
    ring = flatring.open(name)
    tx = ring.producer()
    for base in range(0, n, BATCH):
        tx.send_many([tag(producer_id, s) for s in range(base, min(n, base + BATCH))])
    tx.close()


def consume(name, expect, result_name, joined=None):
    """Receives `expect` records; checks per-producer order; sends back a seen-bitmap per
    producer over a raw result ring (the first byte of each result is the producer id).
    `joined` is released once the consumer is attached: a broadcast consumer sees only what is
    committed after its consumer() returned (its slot shows in peers() a little earlier)."""
    rx = flatring.open(name).consumer()
    if joined is not None:
        joined.release()
    seen = {}
    last = {}
    got = 0
    while got < expect:
        for b in rx.receive_many(1024, timeout=30):
            p, s = untag(b)
            assert s > last.get(p, -1), "producer %d: %d after %d" % (p, s, last.get(p, -1))
            last[p] = s
            seen.setdefault(p, bytearray(N)).__setitem__(s, 1)
            got += 1
    tx = flatring.open(result_name).producer()
    for p, bits in seen.items():
        tx.send(bytes([p]) + bytes(bits))
    tx.close()
    rx.close()


def run(procs):
    for p in procs:
        p.start()
    return procs


def join_all(procs):
    for p in procs:
        p.join(120)
        assert p.exitcode == 0, "%s exited with %s" % (p.name, p.exitcode)


def check_bitmaps(results, producers, copies):
    """Every producer's N records arrived `copies` times in all (once per mpmc record, once per
    broadcast consumer)."""
    counts = {p: bytearray(N) for p in range(producers)}
    for r in results:
        p, bits = r[0], r[1:]
        acc = counts[p]
        for i in range(N):
            acc[i] += bits[i]
    for p in range(producers):
        assert bytes(counts[p]) == bytes([copies]) * N, "producer %d: lost or duplicated" % p


@pytest.mark.parametrize(
    "mode,producers,consumers",
    [("spsc", 1, 1), ("mpsc", 2, 1), ("mpmc", 2, 2), ("broadcast", 1, 2)],
)
def test_sequences_across_processes(names, mode, producers, consumers):
    name, results = names(), names()
    flatring.create(name, capacity=1 << 20, mode=mode)
    res = flatring.create(results, capacity=1 << 22, mode="mpsc")
    res_rx = res.consumer()
    per_consumer = None if mode == "mpmc" else N * producers
    joined = fork.Semaphore(0)
    procs = []
    for c in range(consumers):
        if mode == "mpmc":
            procs.append(fork.Process(target=consume_until_dry, args=(name, results)))
        else:
            procs.append(fork.Process(target=consume, args=(name, per_consumer, results, joined)))
    run(procs)
    if mode == "broadcast":  # its consumers see only what comes after they joined
        for _ in range(consumers):
            assert joined.acquire(timeout=60), "a consumer did not attach"
    prods = run([fork.Process(target=produce, args=(name, p, N)) for p in range(producers)])
    join_all(prods)
    join_all(procs)
    out = []
    while True:
        b = res_rx.try_receive()
        if b is None:
            break
        out.append(b)
    copies = consumers if mode == "broadcast" else 1
    check_bitmaps(out, producers, copies)


def consume_until_dry(name, result_name):
    """mpmc: receives until the producers are gone and the ring is drained (PeerDead)."""
    rx = flatring.open(name).consumer()
    seen = {}
    last = {}
    try:
        while True:
            for b in rx.receive_many(1024, timeout=30):
                p, s = untag(b)
                assert s > last.get(p, -1)
                last[p] = s
                seen.setdefault(p, bytearray(N)).__setitem__(s, 1)
    except flatring.PeerDead:
        pass
    tx = flatring.open(result_name).producer()
    for p, bits in seen.items():
        tx.send(bytes([p]) + bytes(bits))


def send_sizes(name, sizes):
    tx = flatring.open(name).producer()
    for i, n in enumerate(sizes):
        tx.send(pattern(n, i))


@pytest.mark.parametrize("mode", ["spsc", "mpsc", "mpmc", "broadcast"])
def test_large_records_byte_for_byte(name, mode):
    sizes = [65_537, 1 << 20, 64 << 20, 65_537]
    # 2 * frame(64 MiB) + 16 must fit: a 256 MiB ring, not prefaulted (only what is written is
    # touched).
    ring = flatring.create(name, capacity=1 << 28, mode=mode, prefault=False)
    rx = ring.consumer()
    p = fork.Process(target=send_sizes, args=(name, sizes))
    p.start()
    for i, n in enumerate(sizes):
        got = rx.receive(timeout=60)
        assert len(got) == n
        assert got == pattern(n, i), "record %d (%d bytes) differs" % (i, n)
    p.join(60)
    assert p.exitcode == 0


def send_with_garbage(name):
    tx = flatring.open(name).producer()
    tx.send(order(1))
    tx.send(b"\x07" * 64)  # garbage, not an Order
    tx.send(order(2))


@pytest.mark.parametrize("mode", ["spsc", "mpsc", "mpmc", "broadcast"])
def test_garbage_mid_stream_across_processes(name, order_fbs, mode):
    ring = flatring.create(name, capacity=1 << 16, mode=mode, schema=order_fbs)
    rx = ring.consumer()
    p = fork.Process(target=send_with_garbage, args=(name,))
    p.start()
    assert read_order(rx.receive(timeout=30)).Id() == 1
    with pytest.raises(flatring.VerifyError):
        rx.receive(timeout=30)
    assert read_order(rx.receive(timeout=30)).Id() == 2
    p.join(30)
    assert p.exitcode == 0
    with pytest.raises(flatring.PeerDead):
        rx.receive(timeout=30)
