"""The multiprocessing shapes: Pipe/Connection and Queue, passed to children under every start
method; fork's rule for peer slots; Queue's Full/Empty exactly where multiprocessing.Queue raises
them; Ctrl-C during a blocked receive; dead peers."""

import multiprocessing as mp
import os
import queue
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import flatring

METHODS = ["fork", "spawn", "forkserver"]


# ---------------------------------------------------------------- Pipe / Connection


def test_pipe_duplex_and_simplex():
    a, b = flatring.Pipe()
    a.send_bytes(b"ping")
    assert b.recv_bytes() == b"ping"
    b.send_bytes(bytearray(b"pong"))
    assert a.recv_bytes() == b"pong"
    r, w = flatring.Pipe(duplex=False)
    assert r.readable and not r.writable and w.writable and not w.readable
    w.send_bytes(b"0123456789", 2, 3)
    assert r.recv_bytes() == b"234"
    with pytest.raises(OSError):
        r.send_bytes(b"x")
    with pytest.raises(OSError):
        w.recv_bytes()
    with pytest.raises(ValueError):
        w.send_bytes(b"abc", 2, 5)


def test_connection_methods():
    a, b = flatring.Pipe()
    assert not b.poll()
    a.send_bytes(b"x" * 100)
    assert b.poll() and b.poll(1.0)
    assert b.recv_bytes(maxlength=100) == b"x" * 100
    buf = bytearray(8)
    a.send_bytes(b"abc")
    assert b.recv_bytes_into(buf, 2) == 3 and buf[2:5] == b"abc"
    a.send_bytes(b"too long for the buffer")
    with pytest.raises(mp.BufferTooShort) as e:
        b.recv_bytes_into(buf)
    assert e.value.args[0] == b"too long for the buffer"
    a.send(b"bytes only")
    assert b.recv() == b"bytes only"
    with pytest.raises(TypeError, match="never pickles"):
        a.send({"a": 1})
    a.close()
    assert a.closed
    with pytest.raises(OSError):
        a.send_bytes(b"closed")
    with pytest.raises(EOFError):
        b.recv_bytes()  # the other end is closed and everything it sent has been received
    assert b.poll()  # ... which poll() reports as "ready" (recv then raises EOFError)


def test_pipe_carries_65537_bytes_where_pickle_over_a_pipe_fails():
    a, b = flatring.Pipe()
    msg = os.urandom(65_537)
    a.send_bytes(msg)
    assert b.recv_bytes() == msg


def test_pipe_with_schema(order_fbs):
    from helpers import order, read_order

    a, b = flatring.Pipe(schema=order_fbs)
    a.send_bytes(order(5))
    a.send_bytes(b"not an order at all")
    a.send_json('{"id": 6}')
    assert read_order(b.recv_bytes()).Id() == 5
    with pytest.raises(flatring.VerifyError):
        b.recv_bytes()
    assert '"id": 6' in b.recv_json()


def test_pipe_rings_are_removed_with_the_pipe():
    import gc

    a, b = flatring.Pipe()
    names = {a._tx_name, a._rx_name}
    assert all(flatring.exists(n) for n in names)
    a.close()
    assert all(flatring.exists(n) for n in names)  # b still uses them
    del a, b
    gc.collect()
    assert not any(flatring.exists(n) for n in names)


# ---------------------------------------------------------------- Queue


def outcomes(q):
    """The outcome of each call of a fixed sequence on a maxsize=2 queue."""
    out = []

    def do(f):
        try:
            f()
            out.append("ok")
        except queue.Full:
            out.append("Full")
        except queue.Empty:
            out.append("Empty")

    do(lambda: q.get_nowait())
    do(lambda: q.get(block=False))
    do(lambda: q.get(timeout=0.05))
    do(lambda: q.get(True, 0))
    do(lambda: q.put(b"1"))
    do(lambda: q.put(b"2", timeout=1))
    do(lambda: q.put_nowait(b"3"))
    do(lambda: q.put(b"3", block=False))
    do(lambda: q.put(b"3", timeout=0.05))
    do(lambda: q.put(b"3", True, 0))
    out.append(q.qsize())
    out.append(q.full())
    do(lambda: out.append(q.get(timeout=5)))
    do(lambda: out.append(q.get(True, 5)))
    do(lambda: q.get_nowait())
    do(lambda: q.get(timeout=0.05))
    do(lambda: q.put(b"4"))
    do(lambda: out.append(q.get(timeout=5)))
    q.close()
    try:
        q.put(b"5")
        out.append("put after close ok")
    except ValueError:
        out.append("ValueError")
    return out


def test_queue_full_and_empty_where_multiprocessing_raises_them():
    expected = ["Empty", "Empty", "Empty", "Empty", "ok", "ok", "Full", "Full", "Full", "Full",
                2, True, b"1", "ok", b"2", "ok", "Empty", "Empty", "ok", b"4", "ok", "ValueError"]
    assert outcomes(mp.get_context("fork").Queue(2)) == expected
    assert outcomes(flatring.Queue(2)) == expected


def test_queue_unbounded_is_bounded_by_capacity():
    q = flatring.Queue(capacity=4096)
    n = 0
    with pytest.raises(queue.Full):
        while True:
            q.put_nowait(b"x" * 64)
            n += 1
    assert n > 10 and q.qsize() == n and not q.empty()
    assert q.get_many(1000) == [b"x" * 64] * n
    assert q.empty()
    with pytest.raises(queue.Empty):
        q.get_many(10, timeout=0.05)
    assert q.put_many([b"a", b"b"]) == 2
    assert q.get_many(10) == [b"a", b"b"]
    with pytest.raises(TypeError):
        q.put({"not": "bytes"})


def test_queue_between_processes():
    q = flatring.Queue()
    ctx = mp.get_context("fork")
    ps = [ctx.Process(target=put_range, args=(q, i, 1000)) for i in range(3)]
    for p in ps:
        p.start()
    got = [q.get(timeout=30) for _ in range(3000)]
    for p in ps:
        p.join(30)
        assert p.exitcode == 0
    assert sorted(got) == sorted(b"%d:%d" % (i, s) for i in range(3) for s in range(1000))


def put_range(q, i, n):
    for s in range(n):
        q.put(b"%d:%d" % (i, s))


# ---------------------------------------------------------------- start methods


def child_echo(conn, q, raw_tx):
    data = conn.recv_bytes()
    conn.send_bytes(data[::-1])
    q.put(b"queued " + data)
    raw_tx.send(b"raw " + data)
    conn.send_bytes(str(os.getpid()).encode())


@pytest.mark.parametrize("method", METHODS)
def test_objects_pass_to_children_under_every_start_method(name, method):
    ctx = mp.get_context(method)
    parent, child = flatring.Pipe()
    q = flatring.Queue()
    ring = flatring.create(name, capacity=1 << 16, mode="mpsc")
    rx = ring.consumer()
    tx = flatring.open(name).producer(lazy=True)  # attached by the child, not here
    p = ctx.Process(target=child_echo, args=(child, q, tx))
    p.start()
    parent.send_bytes(b"hello")
    assert parent.recv_bytes() == b"olleh"
    assert q.get(timeout=30) == b"queued hello"
    assert rx.receive(timeout=30) == b"raw hello"
    assert int(parent.recv_bytes()) == p.pid
    p.join(30)
    assert p.exitcode == 0
    with pytest.raises(EOFError):
        parent.recv_bytes()


def test_pickles_carry_names_not_contents():
    import pickle

    a, b = flatring.Pipe()
    a.send_bytes(b"secret payload")
    blob = pickle.dumps(b)
    assert b"secret payload" not in blob and b._rx_name.encode() in blob


def test_unpickled_ring_is_reopened_with_all_checks(name, order_fbs):
    import pickle

    ring = flatring.create(name, capacity=4096, schema=order_fbs)
    blob = pickle.dumps(flatring.open(name, schema=order_fbs))
    flatring.remove(name)
    with pytest.raises(flatring.NotFound):
        pickle.loads(blob)
    flatring.create(name, capacity=4096)  # same name, now a raw ring: the schema check refuses
    with pytest.raises(flatring.WrongSchema):
        pickle.loads(blob)
    del ring


# ---------------------------------------------------------------- fork and peer slots


def test_forked_child_does_not_inherit_the_parents_peer_slot(name):
    ring = flatring.create(name, capacity=1 << 16, mode="mpmc")
    tx, rx = ring.producer(), ring.consumer()
    parent = os.getpid()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: uses the endpoints it inherited
        code = 1
        try:
            tx.send(b"from the child")
            ok = tx.slot_pid == os.getpid() != parent
            peers = flatring.open(name).peers()
            mine = [p for p in peers if p["pid"] == os.getpid()]
            theirs = [p for p in peers if p["pid"] == parent]
            ok = ok and len(mine) == 1 and sorted(p["role"] for p in theirs) == ["consumer", "producer"]
            rx.close()  # closing the inherited consumer must not free the parent's slot
            code = 0 if ok else 2
        finally:
            os.write(w, b"x")
            os._exit(code)
    os.read(r, 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sorted((p["pid"], p["role"]) for p in ring.peers() if p["alive"]) == [
        (parent, "consumer"),
        (parent, "producer"),
    ]
    tx.send(b"from the parent")
    assert rx.receive(timeout=5) == b"from the child"
    assert rx.receive(timeout=5) == b"from the parent"
    assert tx.slot_pid == parent and rx.slot_pid == parent


def test_forked_child_cannot_take_an_exclusive_role_the_parent_holds(name):
    ring = flatring.create(name, capacity=4096)
    tx = ring.producer()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            tx.send(b"x")
        except flatring.RoleTaken:
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    tx.send(b"still mine")
    assert ring.consumer().receive(timeout=5) == b"still mine"


# ---------------------------------------------------------------- Ctrl-C and dead peers

SIGINT_CHILD = textwrap.dedent(
    """
    import sys, time, flatring
    what, name = sys.argv[1], sys.argv[2]
    if what == "receive":
        rx = flatring.open(name).consumer()
        call = rx.receive
    elif what == "queue":
        q = flatring.Queue()
        call = q.get
    else:
        a, b = flatring.Pipe()
        call = b.recv_bytes
    print("ready", flush=True)
    try:
        call()
    except KeyboardInterrupt:
        sys.exit(42)
    sys.exit(1)
    """
)


@pytest.mark.parametrize("what", ["receive", "queue", "pipe"])
def test_ctrl_c_interrupts_a_blocked_receive(name, what):
    flatring.create(name, capacity=4096)
    child = subprocess.Popen(
        [sys.executable, "-c", SIGINT_CHILD, what, name], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "ready"
    time.sleep(0.3)  # let it block
    child.send_signal(signal.SIGINT)
    # A generous bound: the slices are 50 ms; this only catches "never".
    assert child.wait(timeout=5) == 42


def send_then_die(name, n):
    tx = flatring.open(name).producer()
    for i in range(n):
        tx.send(b"%d" % i)
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize("mode", ["spsc", "mpsc", "mpmc", "broadcast"])
def test_dead_producer_is_a_clear_exception(name, mode):
    ring = flatring.create(name, capacity=4096, mode=mode)
    rx = ring.consumer()
    p = mp.get_context("fork").Process(target=send_then_die, args=(name, 3))
    p.start()
    assert [rx.receive(timeout=30) for _ in range(3)] == [b"0", b"1", b"2"]
    p.join(30)
    assert p.exitcode == -signal.SIGKILL
    with pytest.raises(flatring.PeerDead):
        rx.receive(timeout=30)


def attach_then_die(name):
    rx = flatring.open(name).consumer()
    rx.poll()
    os.kill(os.getpid(), signal.SIGKILL)


def test_dead_consumer_is_a_clear_exception_for_a_waiting_producer(name):
    ring = flatring.create(name, capacity=4096)
    tx = ring.producer()
    p = mp.get_context("fork").Process(target=attach_then_die, args=(name,))
    p.start()
    p.join(30)
    while tx.try_send(b"z" * 200):
        pass
    with pytest.raises(flatring.PeerDead):
        tx.send(b"z" * 200, timeout=30)
