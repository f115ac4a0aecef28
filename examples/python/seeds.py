#!/usr/bin/python3
"""The two failures flatring exists to remove, side by side with flatring's answer.

1. A 65,537-byte message sent with pickle over a pipe (pickle.dump into an unbuffered os.pipe,
   pickle.load out of it: ../shared/repro/pickle_over_pipe.py) fails with "pickle data was
   truncated", and the reader no longer knows where the next message starts. Through
   flatring.Pipe the same message arrives whole, and so does the next one.

2. A malicious pickle (one whose loading runs a command) sent to a consumer. With
   multiprocessing's Connection.recv() the command runs. A flatring consumer never unpickles:
   on a raw ring the payload arrives as inert bytes; on a ring with a schema it fails
   verification and is skipped (VerifyError). Nothing runs.

Exit status 0 when all of this is seen as described.

    python3 examples/python/seeds.py
"""

import multiprocessing as mp
import os
import pickle
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _gen  # noqa: E402

import flatring  # noqa: E402

SIZE = 65_537
ok = True


def check(cond, what):
    global ok
    print("  %s %s" % ("ok:  " if cond else "FAIL:", what))
    ok = ok and cond


# ---- 1. a message above the pipe's capacity ----
print("1. a %d-byte message" % SIZE)
recv_fd, send_fd = os.pipe()
read_end, write_end = os.fdopen(recv_fd, "rb", 0), os.fdopen(send_fd, "wb", 0)
message = "0" * SIZE
sender = threading.Thread(target=lambda: (pickle.dump(message, write_end, -1),
                                          pickle.dump("next", write_end, -1)))
sender.start()
try:
    pickle.load(read_end)
    failed = None
except Exception as e:  # pickle.UnpicklingError: pickle data was truncated
    failed = e
check(failed is not None and "truncated" in str(failed),
      "pickle over a pipe: %s: %s" % (type(failed).__name__, failed))
try:
    nxt = pickle.load(read_end)  # the stream is now read from the middle of the first message
except Exception as e:
    nxt = e
check(nxt != "next", "  ...and the next pickle.load does not find the next message: %r"
      % (str(nxt)[:40],))
sender.join()
read_end.close()
write_end.close()

a, b = flatring.Pipe()
a.send_bytes(message.encode())
a.send_bytes(b"next")
got = b.recv_bytes()
check(got == message.encode(), "flatring.Pipe: %d bytes arrived intact" % len(got))
check(b.recv_bytes() == b"next", "  ...and the next message is the next message")


# ---- 2. a malicious pickle ----
print("2. a malicious pickle payload")
marker = os.path.join(tempfile.mkdtemp(prefix="flatring-seeds-"), "the-command-ran")


class Exploit:
    def __reduce__(self):  # loading this runs `touch <marker>`
        return (os.system, ("touch %s" % marker,))


payload = pickle.dumps(Exploit())

# multiprocessing: Connection.recv() unpickles whatever arrives.
r, w = mp.Pipe()
w.send_bytes(payload)  # what a hostile peer can write into the pipe
r.recv()
check(os.path.exists(marker), "multiprocessing Connection.recv(): the command RAN (%s exists)"
      % marker)
os.remove(marker)

# flatring, raw ring: bytes stay bytes.
a, b = flatring.Pipe()
a.send_bytes(payload)
got = b.recv_bytes()
check(isinstance(got, bytes) and got == payload and not os.path.exists(marker),
      "flatring.Pipe: delivered as %d inert bytes; nothing ran" % len(got))
try:
    a.send(Exploit())  # and flatring never pickles on the way out either
    check(False, "flatring.Connection.send pickled an object")
except TypeError:
    check(True, "flatring.Connection.send(obj) refuses to pickle: TypeError")

# flatring, a ring with a schema: the payload is not an Order and never reaches Python.
_gen.ensure("app")
from app import Order  # noqa: E402

order_fbs = os.path.join(_gen.EXAMPLES, "schema", "order.fbs")
a, b = flatring.Pipe(schema=order_fbs)
a.send_bytes(payload)
a.send_json('{"id": 1, "symbol": "SAFE"}')
try:
    b.recv_bytes()
    check(False, "a pickle passed verification as an app.Order")
except flatring.VerifyError as e:
    check(not os.path.exists(marker), "flatring.Pipe(schema=order.fbs): VerifyError (%s)"
          % str(e).split(": ", 1)[1][:60])
o = Order.Order.GetRootAs(b.recv_bytes(), 0)
check(o.Symbol() == b"SAFE", "  ...and the next record arrives: Order(id=%d, symbol=%s)"
      % (o.Id(), o.Symbol().decode()))
os.rmdir(os.path.dirname(marker))
print("seeds: all as described" if ok else "seeds: FAILED")
sys.exit(0 if ok else 1)
