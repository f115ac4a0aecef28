"""flatring's exceptions.

Every exception flatring raises is a ``flatring.Error``, and also the builtin exception a Python
programmer would catch for the same situation: ``NotFound`` is a ``FileNotFoundError``,
``Timeout`` a ``TimeoutError``, ``PeerDead`` an ``EOFError`` and a ``BrokenPipeError`` (what
``multiprocessing.connection.Connection`` raises when the other end is gone). ``code`` holds the
C++ outcome's name (``flatring::Errc`` or ``flatring::Status``), e.g. ``"wrong_schema"``.
"""


class Error(Exception):
    """Base class of flatring's exceptions. ``code``: the C++ outcome's name."""

    code = "error"


# ---- set-up: creating, opening, attaching (flatring::Errc) ----


class NotFound(Error, FileNotFoundError):
    """open: no ring with that name (not_found)."""


class AlreadyExists(Error, FileExistsError):
    """create: the name is taken (already_exists)."""


class PermissionDenied(Error, PermissionError):
    """The OS refused access, or the segment belongs to another user or is group/world-writable
    (permission_denied, unsafe_owner, unsafe_permissions)."""


class InvalidArgument(Error, ValueError):
    """A bad name, capacity, max_record_size or permission (invalid_name, invalid_options)."""


class SchemaError(Error):
    """A schema that cannot be used: a .fbs that does not parse, a .bfbs that is not a binary
    schema, too large or too deep, without a root type (invalid_schema, corrupt_schema,
    schema_too_large, schema_too_deep, schema_no_root)."""


class WrongSchema(SchemaError):
    """The ring holds records of another schema, or an incompatible version of it
    (wrong_schema). The message names the first incompatibility."""


class WrongMode(Error):
    """The ring's mode is not the one asked for (wrong_mode)."""


class CorruptSegment(Error):
    """The segment is not a flatring ring, another layout version, truncated, or its header or
    positions are impossible (not_flatring, wrong_version, size_mismatch, corrupt_header,
    corrupt_state)."""


class RoleTaken(Error):
    """An exclusive role (the producer of spsc and broadcast rings, the consumer of spsc and mpsc
    rings) is held by a live process (role_taken)."""


class NoFreeSlot(Error):
    """Every peer slot of the ring (32) is held by a live process (no_free_slot)."""


class SystemCallError(Error, OSError):
    """An unexpected OS error (system_error)."""


# ---- the hot path (flatring::Status) ----


class VerifyError(Error):
    """A record failed verification against the schema (verify_failed). It has been skipped:
    the next receive returns the next record."""


class TooLarge(Error, ValueError):
    """A record larger than the ring's max_record_size (too_large); nothing was sent."""


class Timeout(Error, TimeoutError):
    """A blocking call's timeout passed (timed_out)."""


class PeerDead(Error, EOFError, BrokenPipeError):
    """The other side is gone (peer_dead): a consumer finds no live producer left once it has
    read everything published; a producer waiting for space finds its consumer dead."""


class NoConsumer(PeerDead):
    """The ring is full and no live consumer is attached (no_consumer)."""


class CorruptRing(Error):
    """The ring's shared state failed a check at the read position; nothing was read
    (corrupt). ``Consumer.recover()`` skips to the producer's position."""


class SegmentLost(Error):
    """A peer shrank the segment under this process; nothing more can be exchanged
    (segment_lost)."""


class Abandoned(Error):
    """Internal: a dead producer's claim was skipped (abandoned). Receive calls go on to the next
    record and count it in ``Consumer.abandoned``; this class is never raised by them."""


class Closed(Error, ValueError, OSError):
    """The object was closed (like a closed multiprocessing Connection or Queue)."""


__all__ = [n for n, v in list(globals().items()) if isinstance(v, type) and issubclass(v, Error)]

for _cls in list(globals().values()):
    if isinstance(_cls, type) and issubclass(_cls, Error):
        _cls.__module__ = "flatring"  # shown as flatring.NotFound in tracebacks
del _cls
