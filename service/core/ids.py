"""Time-ordered (version 7) UUIDs from buffered kernel randomness.

Decision ids and audit event ids are keys of rows that are only ever appended. A random
(version 4) key lands each insert on a random page of its index, so every row of a
committed group dirtied a page of its own, written out whole: on SQLite to the WAL, on
PostgreSQL as a full-page image after each checkpoint. An RFC 9562 version-7 UUID starts
with the Unix time in milliseconds, so new keys go to the end of the index, a group's keys
onto a page or two. The other 74 bits are random, so ids stay unguessable; what an id
tells about its creation time the row it names records anyway.

`uuid.uuid4()` reads 16 bytes with a getrandom() system call each time, and the call
releases the GIL: on the decision path (a decision id and an audit event id per decision)
each one handed the interpreter to another thread and then waited to get it back. Here a
thread reads 4 KiB at a time and cuts 409 ids' randomness out of it: the same kernel
CSPRNG output, one system call per 409 ids. A forked child starts with an empty buffer,
so that it never repeats its parent's ids.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_BATCH = 4090  # bytes of randomness read at once: 409 ids' 10 bytes each
_RANDOM_BYTES = 10  # 80 bits drawn per id, of which the version and variant leave 74
# Version 7 in bits 76-79, the RFC 9562 variant (0b10) in bits 62-63.
_VERSION_AND_VARIANT = 0x7 << 76 | 0b10 << 62
_RANDOM_MASK = ~(0xF << 76 | 0b11 << 62) & ((1 << 80) - 1)


class _Buffer(threading.local):
    def __init__(self) -> None:
        self.data = b""
        self.offset = 0


_buffer = _Buffer()


def _forget_after_fork() -> None:
    global _buffer
    _buffer = _Buffer()


os.register_at_fork(after_in_child=_forget_after_fork)


def uuid7() -> str:
    """A random RFC 9562 version-7 UUID (Unix time in milliseconds first), as its
    canonical string."""
    buffer = _buffer
    offset = buffer.offset
    if offset >= len(buffer.data):
        buffer.data, offset = os.urandom(_BATCH), 0
    buffer.offset = offset + _RANDOM_BYTES
    random = int.from_bytes(buffer.data[offset : offset + _RANDOM_BYTES], "big")
    milliseconds = time.time_ns() // 1_000_000
    return str(uuid.UUID(int=milliseconds << 80 | _VERSION_AND_VARIANT | random & _RANDOM_MASK))
