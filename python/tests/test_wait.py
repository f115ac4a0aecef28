"""fileno(): multiprocessing.connection.wait, selectors and asyncio's add_reader on flatring
Connections and Consumers (the per-endpoint descriptor of issue 13's WaitFd)."""

import asyncio
import multiprocessing as mp
import multiprocessing.connection
import os
import selectors
import signal
import time

import pytest

import flatring

fork = mp.get_context("fork")


def send_later(conn, delay, messages):
    time.sleep(delay)
    for m in messages:
        conn.send_bytes(m)


def test_wait_on_several_connections():
    pairs = [flatring.Pipe() for _ in range(3)]
    readers = [a for a, _ in pairs]
    assert multiprocessing.connection.wait(readers, timeout=0.05) == []
    p = fork.Process(target=send_later, args=(pairs[1][1], 0.2, [b"one", b"two"]))
    p.start()
    ready = multiprocessing.connection.wait(readers, timeout=30)
    assert ready == [readers[1]]
    assert readers[1].recv_bytes() == b"one"
    assert multiprocessing.connection.wait(readers, timeout=30) == [readers[1]]
    assert readers[1].recv_bytes() == b"two"
    p.join(30)
    assert p.exitcode == 0


def test_wait_mixes_with_multiprocessing_connections():
    a, b = flatring.Pipe()
    r, w = mp.Pipe(duplex=False)
    w.send_bytes(b"from multiprocessing")
    assert multiprocessing.connection.wait([a, r], timeout=5) == [r]
    b.send_bytes(b"from flatring")
    assert set(multiprocessing.connection.wait([a, r], timeout=5)) == {a, r}


def test_selectors_loop_receives_everything():
    a, b = flatring.Pipe()
    n = 2000
    p = fork.Process(target=send_later, args=(b, 0.05, [b"%d" % i for i in range(n)]))
    p.start()
    sel = selectors.DefaultSelector()
    sel.register(a, selectors.EVENT_READ)
    got = []
    deadline = time.monotonic() + 60
    while len(got) < n and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=5):
            while key.fileobj.poll():
                got.append(key.fileobj.recv_bytes())
                if len(got) == n:
                    break
    assert got == [b"%d" % i for i in range(n)]
    p.join(30)
    sel.close()


def test_fd_is_readable_when_the_peer_dies():
    a, b = flatring.Pipe()
    p = fork.Process(target=die_holding, args=(b,))
    p.start()
    assert multiprocessing.connection.wait([a], timeout=30) == [a]
    assert a.recv_bytes() == b"last words"
    p.join(30)
    assert multiprocessing.connection.wait([a], timeout=30) == [a]  # readable: EOF
    with pytest.raises(EOFError):
        a.recv_bytes()


def die_holding(conn):
    conn.send_bytes(b"last words")
    time.sleep(0.2)
    os.kill(os.getpid(), signal.SIGKILL)


def test_asyncio_add_reader(name):
    ring = flatring.create(name, capacity=1 << 16, mode="mpsc")
    rx = ring.consumer()
    n = 500
    ps = [fork.Process(target=produce, args=(name, i, n)) for i in range(2)]

    async def main():
        loop = asyncio.get_running_loop()
        got = []
        done = loop.create_future()

        def on_readable():
            while (b := rx.try_receive()) is not None:
                got.append(b)
            rx.fileno()  # re-arm (a receive re-arms too; try_receive found the ring empty)
            if len(got) == 2 * n and not done.done():
                done.set_result(None)

        loop.add_reader(rx.fileno(), on_readable)
        for p in ps:
            p.start()
        await asyncio.wait_for(done, 60)
        loop.remove_reader(rx.fileno())
        return got

    got = asyncio.run(main())
    for p in ps:
        p.join(30)
    assert sorted(got) == sorted(b"%d:%d" % (i, s) for i in range(2) for s in range(n))


def produce(name, i, n):
    tx = flatring.open(name).producer()
    for s in range(n):
        tx.send(b"%d:%d" % (i, s))
        if s % 100 == 0:
            time.sleep(0.001)


def test_poll_with_timeout_uses_the_descriptor():
    a, b = flatring.Pipe()
    a.fileno()
    assert not a.poll(0.05)
    b.send_bytes(b"x")
    assert a.poll(5) and a.recv_bytes() == b"x"
