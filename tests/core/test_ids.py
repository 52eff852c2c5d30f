"""Buffered time-ordered UUIDs: valid version-7 ids in time order, never repeated across
threads or a fork."""

from __future__ import annotations

import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from service.core.ids import uuid7


def test_ids_are_version_7_uuids_carrying_their_time() -> None:
    before = time.time_ns() // 1_000_000
    ids = [uuid7() for _ in range(1_000)]  # more than one buffer's worth
    after = time.time_ns() // 1_000_000
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert before <= parsed.int >> 80 <= after


def test_ids_of_later_milliseconds_sort_after_earlier_ones() -> None:
    earlier = [uuid7() for _ in range(50)]
    time.sleep(0.002)
    later = [uuid7() for _ in range(50)]
    assert max(earlier) < min(later)


def test_the_random_bits_vary() -> None:
    """Within one millisecond only the 74 random bits tell ids apart."""
    ids = [uuid.UUID(uuid7()).int for _ in range(2_000)]
    random_bits = {i & ((1 << 62) - 1) for i in ids}
    assert len(random_bits) == len(ids)
    assert len({(i >> 64) & 0xFFF for i in ids}) > 1_000  # rand_a, 12 bits


def test_ids_do_not_repeat_across_threads() -> None:
    with ThreadPoolExecutor(8) as pool:
        batches = list(pool.map(lambda _: [uuid7() for _ in range(2_000)], range(8)))
    ids = [i for batch in batches for i in batch]
    assert len(set(ids)) == len(ids) == 16_000


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    uuid7()  # the parent's buffer is filled
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child process
        os.close(read)
        os.write(write, uuid7().encode())
        os._exit(0)
    os.close(write)
    from_child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(child, 0)
    assert from_child != uuid7()
    assert uuid.UUID(from_child).version == 7
