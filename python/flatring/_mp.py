"""Drop-in shapes for multiprocessing users: Pipe, Connection and Queue over flatring rings.

Nothing here pickles or unpickles a message: every message is bytes (or a FlatBuffer verified in
C++ against the schema). The objects themselves pickle by ring name, so they can be handed to
child processes under every start method; the child reopens the rings with all of open's checks.
"""

import itertools
import os
import queue
import secrets
import weakref
from multiprocessing import BufferTooShort

from . import _errors
from ._flatring import create as _create
from ._flatring import open as _open
from ._flatring import remove as _remove

_counter = itertools.count()


def _unique_name(kind):
    # pid, a per-process counter and random bits: unique across processes and across a pid's
    # reuse, well inside the 200-character limit of ring names.
    return "py%d-%s%d-%s" % (os.getpid(), kind, next(_counter), secrets.token_hex(4))


class _Owner:
    """Removes the names of the rings a Pipe() or Queue() created, once the creating process
    has let go of every object that uses them (or exits). Children never remove them."""

    def __init__(self, names):
        self._finalizer = weakref.finalize(self, _remove_names, os.getpid(), tuple(names))


def _remove_names(pid, names):
    if os.getpid() != pid:
        return
    for n in names:
        _remove(n)


class Connection:
    """One end of a flatring.Pipe(): multiprocessing.connection.Connection's byte methods over
    an spsc ring per direction. There is no pickling recv(): send() and recv() carry bytes-like
    objects only (and send_json/recv_json records of the schema)."""

    def __init__(self, tx, rx, schema=None, _owner=None, _attach=False):
        self._tx_name = tx
        self._rx_name = rx
        self._schema = schema
        self._owner = _owner
        self._tx = None
        self._rx = None
        # Endpoints attach on first use, so that the end a parent hands to a forked child, and
        # never uses itself, does not hold the ring's roles in the parent.
        if tx is not None:
            self._tx = _open(tx, schema=schema).producer(lazy=not _attach)
        if rx is not None:
            self._rx = _open(rx, schema=schema).consumer(lazy=not _attach)
        self._closed = False
        # The hot paths are the C++ methods themselves, with multiprocessing's signatures (the
        # class's methods below say the same in Python, for read-only or write-only ends).
        if self._tx is not None:
            self.send_bytes = self._tx.send_bytes
        if self._rx is not None:
            self.recv_bytes = self._rx.recv_bytes

    # ---- multiprocessing.connection.Connection ----

    @property
    def closed(self):
        return self._closed

    @property
    def readable(self):
        return self._rx is not None

    @property
    def writable(self):
        return self._tx is not None

    def _check_closed(self):
        if self._closed:
            raise _errors.Closed("handle is closed")

    def _writer(self):
        if self._tx is None:
            self._check_closed()
            raise OSError("connection is read-only")
        return self._tx

    def _reader(self):
        if self._rx is None:
            self._check_closed()
            raise OSError("connection is write-only")
        return self._rx

    def send_bytes(self, buf, offset=0, size=None):
        """Sends the bytes of a bytes-like object (or buf[offset:offset + size]) as one
        message. Blocks while the ring is full; copies once, into the ring."""
        self._writer().send_bytes(buf, offset, size)

    def recv_bytes(self, maxlength=None):
        """Receives one message as bytes; blocks until there is one. EOFError (PeerDead) when
        the other end is gone and everything it sent has been received."""
        return self._reader().recv_bytes(maxlength)

    def recv_bytes_into(self, buffer, offset=0):
        """Receives one message into a writable buffer at `offset` and returns its length.
        BufferTooShort (carrying the whole message) when it does not fit."""
        got = self._reader().receive_into(buffer, offset)
        if isinstance(got, int):
            return got
        raise BufferTooShort(got)

    def send_many(self, bufs):
        """Sends every bytes-like object of an iterable, in order; returns how many (a flatring
        extension: one call, one lock, one GIL round for the whole batch)."""
        return self._writer().send_many(bufs)

    def recv_many(self, max=64, timeout=None):
        """Up to `max` messages (a list of bytes): waits up to `timeout` for the first, then
        takes what is there (a flatring extension)."""
        return self._reader().receive_many(max, timeout)

    def send(self, obj):
        """Sends a bytes-like object. Unlike multiprocessing, objects are never pickled."""
        try:
            self._writer().send(obj)
        except TypeError:
            raise TypeError(
                "flatring.Connection.send carries bytes-like objects, never pickles: "
                "serialize %r yourself (JSON, FlatBuffers, ...) or use send_json"
                % type(obj).__name__
            ) from None

    def recv(self):
        """Receives one message as bytes (never unpickled)."""
        return self._reader().receive()

    def send_json(self, text):
        """Sends the record the JSON text describes (needs a schema)."""
        self._writer().send_json(text)

    def recv_json(self):
        """Receives one record as JSON text (needs a schema)."""
        return self._reader().receive_json()

    def poll(self, timeout=0.0):
        """True if a message can be received now, or within `timeout` seconds (None: wait
        forever). Also True once the other end is gone, so that recv raises EOFError."""
        try:
            return self._reader().poll(timeout)
        except _errors.PeerDead:
            return True

    def fileno(self):
        """A file descriptor that becomes readable when a message may be there."""
        return self._reader().fileno()

    def close(self):
        if self._closed:
            return
        self._closed = True
        for e in (self._tx, self._rx):
            if e is not None:
                e.close()
        self._owner = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __reduce__(self):
        self._check_closed()
        return (_reopen_connection, (self._tx_name, self._rx_name, self._schema_state()))

    def _schema_state(self):
        return self._schema  # the binary schema's bytes, or None

    def __repr__(self):
        return "<flatring.Connection tx=%r rx=%r%s>" % (
            self._tx_name,
            self._rx_name,
            " closed" if self._closed else "",
        )


def _reopen_connection(tx, rx, schema):
    return Connection(tx, rx, schema, _attach=True)


def Pipe(duplex=True, *, capacity=1 << 20, max_record_size=0, schema=None):
    """Returns a pair (conn1, conn2) of Connection objects, as multiprocessing.Pipe does: with
    duplex, both ends send and receive; without, conn1 only receives and conn2 only sends.

    capacity: bytes of each direction's ring (a power of two); max_record_size: the largest
    message (0: capacity / 2 - 64); schema: None for raw bytes, or a .fbs/.bfbs path or binary
    schema bytes, and then every message is a verified FlatBuffer of that schema."""
    names = [_unique_name("pipe")]
    if duplex:
        names.append(_unique_name("pipe"))
    rings = []
    try:
        for n in names:
            rings.append(
                _create(n, capacity=capacity, max_record_size=max_record_size, schema=schema)
            )
    except BaseException:
        for n in names[: len(rings)]:
            _remove(n)
        raise
    owner = _Owner(names)
    bfbs = rings[0].schema if schema is not None else None
    if duplex:
        a, b = names
        return Connection(a, b, bfbs, owner), Connection(b, a, bfbs, owner)
    return Connection(None, names[0], bfbs, owner), Connection(names[0], None, bfbs, owner)


class Queue:
    """multiprocessing.Queue's shape over an mpmc ring: any process may put and get; each item
    goes to exactly one getter. Items are bytes-like (never pickled).

    maxsize > 0 bounds the number of items as multiprocessing.Queue does (with a second ring of
    maxsize tokens); maxsize 0 bounds them only by the ring's capacity (put then blocks, or
    raises queue.Full, when the ring is full, where multiprocessing buffers in a feeder thread
    without limit)."""

    def __init__(self, maxsize=0, *, capacity=1 << 20, max_record_size=0, schema=None):
        if maxsize < 0:
            maxsize = 0
        self._maxsize = maxsize
        names = [_unique_name("queue")]
        if maxsize:
            names.append(_unique_name("tokens"))
        rings = []
        try:
            rings.append(
                _create(names[0], capacity=capacity, max_record_size=max_record_size,
                        mode="mpmc", schema=schema)
            )
            if maxsize:
                cap = 4096
                while cap < 64 * maxsize:  # a 1-byte token takes 32 bytes; keep half free
                    cap *= 2
                rings.append(_create(names[1], capacity=cap, max_record_size=16, mode="mpmc"))
                tokens = rings[1].producer()
                for _ in range(maxsize):
                    tokens.send(b"\0")
                tokens.close()
        except BaseException:
            for n in names[: len(rings)]:
                _remove(n)
            raise
        self._owner = _Owner(names)
        self._setup(names[0], names[1] if maxsize else None, rings[0].schema if schema is not None else None)

    def _setup(self, name, tokens, schema):
        self._name = name
        self._tokens_name = tokens
        self._schema = schema
        self._ring = _open(name, schema=schema)
        self._tx = self._ring.producer(lazy=True)
        self._rx = self._ring.consumer(lazy=True, eof=False)  # get() waits, as a queue's does
        if tokens is not None:
            t = _open(tokens)
            self._take = t.consumer(lazy=True, eof=False)
            self._give = t.producer(lazy=True)
        else:
            self._take = self._give = None
        self._closed = False

    def __reduce__(self):
        if self._closed:
            raise ValueError("Queue %r is closed" % self)
        return (_reopen_queue, (self._name, self._tokens_name, self._maxsize, self._schema))

    def _check_closed(self):
        if self._closed:
            raise _errors.Closed("Queue %r is closed" % self)

    def put(self, obj, block=True, timeout=None):
        """Puts one bytes-like item. queue.Full if there is no room (block=False), or none
        came within `timeout` seconds."""
        self._check_closed()
        if not block:
            timeout = 0.0
        if self._take is not None:
            if block:
                try:
                    self._take.receive(timeout)
                except _errors.Timeout:
                    raise queue.Full from None
            elif self._take.try_receive() is None:
                raise queue.Full
        try:
            if block:
                self._tx.send(obj, timeout)
            elif not self._tx.try_send(obj):
                raise queue.Full
        except _errors.Timeout:
            self._give_back(1)
            raise queue.Full from None
        except BaseException:
            self._give_back(1)
            raise

    def put_nowait(self, obj):
        return self.put(obj, False)

    def get(self, block=True, timeout=None):
        """Gets one item as bytes. queue.Empty if there is none (block=False), or none came
        within `timeout` seconds."""
        self._check_closed()
        if block:
            try:
                item = self._rx.receive(timeout)
            except _errors.Timeout:
                raise queue.Empty from None
        else:
            item = self._rx.try_receive()
            if item is None:
                raise queue.Empty
        self._give_back(1)
        return item

    def get_nowait(self):
        return self.get(False)

    def put_many(self, items, block=True, timeout=None):
        """Puts every item, in order; returns how many. On queue.Full, the exception's `sent`
        says how many were put."""
        self._check_closed()
        if self._take is None:
            try:
                if block:
                    return self._tx.send_many(items, timeout)
                return self._tx.send_many(items, 0.0)
            except _errors.Timeout as e:
                full = queue.Full()
                full.sent = getattr(e, "sent", 0)
                raise full from None
        n = 0
        try:
            for item in items:
                self.put(item, block, timeout)
                n += 1
        except queue.Full as e:
            e.sent = n
            raise
        return n

    def get_many(self, max=64, block=True, timeout=None):
        """Up to `max` items (a list of bytes): waits for the first as get() does, then takes
        what is there."""
        self._check_closed()
        if block:
            try:
                items = self._rx.receive_many(max, timeout)
            except _errors.Timeout:
                raise queue.Empty from None
        else:
            items = self._rx.try_receive_many(max)
            if not items:
                raise queue.Empty
        self._give_back(len(items))
        return items

    def _give_back(self, n):
        if self._give is not None:
            for _ in range(n):
                self._give.send(b"\0")

    def qsize(self):
        """Approximate number of items in the queue (from the ring's counters)."""
        s = self._ring.stats()
        return max(0, s["records_written"] - s["records_read"])

    def empty(self):
        return self.qsize() == 0

    def full(self):
        return self._maxsize > 0 and self.qsize() >= self._maxsize

    def close(self):
        """This process will put and get no more (its endpoints detach)."""
        if self._closed:
            return
        self._closed = True
        for e in (self._tx, self._rx, self._take, self._give):
            if e is not None:
                e.close()
        self._owner = None

    def join_thread(self):
        """No feeder thread to join: put() has copied the item into the ring when it returns."""

    def cancel_join_thread(self):
        """No feeder thread (see join_thread)."""

    @property
    def name(self):
        return self._name

    def __repr__(self):
        return "<flatring.Queue %r maxsize=%d>" % (self._name, self._maxsize)


def _reopen_queue(name, tokens, maxsize, schema):
    q = Queue.__new__(Queue)
    q._maxsize = maxsize
    q._owner = None
    q._setup(name, tokens, schema)
    return q
