"""flatring: verified FlatBuffers records over a lock-free shared-memory ring, from Python.

A drop-in for multiprocessing's pipes and queues that never unpickles: every record is bytes, or
a FlatBuffer verified in C++ against the ring's schema before Python sees it.

    import flatring
    a, b = flatring.Pipe()
    a.send_bytes(b"hello")
    assert b.recv_bytes() == b"hello"

See docs/python.md.
"""

from ._errors import *  # noqa: F401,F403
from ._errors import __all__ as _error_names
from ._flatring import (  # noqa: F401
    MAX_PEERS,
    DEFAULT_CAPACITY,
    Consumer as _Consumer,
    Producer as _Producer,
    Ring,
    create,
    exists,
    list_rings,
    open,
    remove,
)

from ._mp import Connection, Pipe, Queue  # noqa: E402

Producer = _Producer
Consumer = _Consumer

__all__ = list(_error_names) + [
    "Ring",
    "Producer",
    "Consumer",
    "Pipe",
    "Queue",
    "Connection",
    "create",
    "open",
    "remove",
    "exists",
    "list_rings",
    "MAX_PEERS",
    "DEFAULT_CAPACITY",
]
