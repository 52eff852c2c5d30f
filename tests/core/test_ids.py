"""Buffered random UUIDs: valid version-4 ids, never repeated across threads or a fork."""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor

from service.core.ids import uuid4


def test_ids_are_version_4_uuids() -> None:
    for _ in range(600):  # more than one buffer's worth
        parsed = uuid.UUID(uuid4())
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_ids_do_not_repeat_across_threads() -> None:
    with ThreadPoolExecutor(8) as pool:
        batches = list(pool.map(lambda _: [uuid4() for _ in range(2_000)], range(8)))
    ids = [i for batch in batches for i in batch]
    assert len(set(ids)) == len(ids) == 16_000


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    uuid4()  # the parent's buffer is filled
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child process
        os.close(read)
        os.write(write, uuid4().encode())
        os._exit(0)
    os.close(write)
    from_child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(child, 0)
    assert from_child != uuid4()
    assert uuid.UUID(from_child).version == 4
