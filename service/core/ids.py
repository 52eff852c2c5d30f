"""Random (version 4) UUIDs from buffered kernel randomness.

`uuid.uuid4()` reads 16 bytes with a getrandom() system call each time, and the call
releases the GIL: on the decision path (a decision id and an audit event id per decision)
each one handed the interpreter to another thread and then waited to get it back. Here a
thread reads 4 KiB at a time and cuts 256 UUIDs out of it: the same kernel CSPRNG output,
one system call per 256 ids. A forked child starts with an empty buffer, so that it never
repeats its parent's ids.
"""

from __future__ import annotations

import os
import threading
import uuid

_BATCH = 4096  # bytes of randomness read at once: 256 UUIDs


class _Buffer(threading.local):
    def __init__(self) -> None:
        self.data = b""
        self.offset = 0


_buffer = _Buffer()


def _forget_after_fork() -> None:
    global _buffer
    _buffer = _Buffer()


os.register_at_fork(after_in_child=_forget_after_fork)


def uuid4() -> str:
    """A random RFC 9562 version-4 UUID, as its canonical string."""
    buffer = _buffer
    offset = buffer.offset
    if offset >= len(buffer.data):
        buffer.data, offset = os.urandom(_BATCH), 0
    buffer.offset = offset + 16
    return str(uuid.UUID(bytes=buffer.data[offset : offset + 16], version=4))
