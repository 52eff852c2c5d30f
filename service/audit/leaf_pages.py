"""Pages of recomputed leaf hashes, read in this process or by worker processes.

Verification spends nearly all its time re-encoding events (`leaves.row_leaf_hash`), which
holds the GIL; for a large log, worker processes hash contiguous ranges of rows while this
process builds the tree from their pages, in seq order. On PostgreSQL every worker imports
the verifier's exported snapshot, so all of them read the same consistent log.
"""

from __future__ import annotations

import multiprocessing
import re
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from service.audit.leaves import LEAF, SEQ, LeafRow, fetch_leaf_rows, row_leaf_hash
from service.core.database import build_engine

__all__ = [
    "KEEP",
    "LeafPage",
    "export_snapshot",
    "hash_rows",
    "local_pages",
    "parallel_pages",
]

KEEP = 64  # mismatching rows kept per page, to tell reordering from editing
_PAGE = 20_000
_RANGE = 100_000  # rows per worker task
_ZERO = bytes(32)
_SNAPSHOT_ID = re.compile(r"[0-9A-F]+-[0-9A-F]+-[0-9]+")


@dataclass(slots=True)
class LeafPage:
    """Recomputed leaf hashes of consecutive rows, and the rows that did not match."""

    seqs: list[int] = field(default_factory=list)
    digests: list[bytes] = field(default_factory=list)
    mismatched: list[LeafRow] = field(default_factory=list)
    mismatch_count: int = 0
    unencodable: list[int] = field(default_factory=list)
    times: dict[int, list[str]] = field(default_factory=dict)  # block -> [first, last]

    def absorb(self, other: LeafPage) -> None:
        """Append the next page's leaves to this one."""
        self.seqs += other.seqs
        self.digests += other.digests
        self.mismatched += other.mismatched[: KEEP - len(self.mismatched)]
        self.mismatch_count += other.mismatch_count
        self.unencodable += other.unencodable
        for block, (first, last) in other.times.items():
            span = self.times.setdefault(block, [first, last])
            span[0], span[1] = min(span[0], first), max(span[1], last)


def hash_rows(rows: list[LeafRow], block_level: int) -> LeafPage:
    """Recompute each row's leaf hash and compare it with the stored one; note the first
    and last time of each block of 2**block_level events."""
    page = LeafPage(seqs=[row[SEQ] for row in rows])
    digests, times = page.digests, page.times
    for row in rows:
        moment = row[2]
        span = times.get(row[SEQ] >> block_level)
        if span is None:
            times[row[SEQ] >> block_level] = [moment, moment]
        elif moment < span[0]:
            span[0] = moment
        elif moment > span[1]:
            span[1] = moment
        try:
            digest = row_leaf_hash(row)
        except ValueError:
            page.unencodable.append(row[SEQ])
            digest = _ZERO
        if digest != row[LEAF]:
            page.mismatch_count += 1
            if len(page.mismatched) < KEEP:
                page.mismatched.append(tuple(row))
        digests.append(digest)
    return page


def local_pages(
    session: Session, start: int, end: int | None, block_level: int
) -> Iterator[LeafPage]:
    """Pages of rows with seq in [start, end), read and hashed here."""
    after = start
    while end is None or after < end:
        rows = fetch_leaf_rows(session, after, end, _PAGE)
        if not rows:
            return
        after = rows[-1][SEQ] + 1
        yield hash_rows(rows, block_level)


_engines: dict[str, Engine] = {}


def _hash_range(url: str, snapshot: str | None, start: int, end: int, block_level: int) -> LeafPage:
    """Worker task: hash rows [start, end) in one read transaction (on `snapshot`)."""
    engine = _engines.get(url)
    if engine is None:
        engine = _engines[url] = build_engine(url, 1)
    with Session(engine) as session:
        if snapshot is not None:
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            if not _SNAPSHOT_ID.fullmatch(snapshot):
                raise ValueError("not a PostgreSQL snapshot id")
            # The command takes no bind parameters; the id's format was checked above.
            session.execute(text(f"SET TRANSACTION SNAPSHOT '{snapshot}'"))
        pages = list(local_pages(session, start, end, block_level))
        session.rollback()
    merged = LeafPage()
    for page in pages:
        merged.absorb(page)
    return merged


def export_snapshot(session: Session) -> str | None:
    """The session's PostgreSQL snapshot id, for workers to share (None on SQLite)."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    return str(session.execute(text("SELECT pg_export_snapshot()")).scalar_one())


def parallel_pages(
    url: str, snapshot: str | None, start: int, end: int, workers: int, block_level: int
) -> Iterator[LeafPage]:
    """Pages of rows [start, end) hashed by `workers` processes, yielded in seq order."""
    ranges = [(a, min(a + _RANGE, end)) for a in range(start, end, _RANGE)]
    context = multiprocessing.get_context("spawn")  # no forked copies of open connections
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        # A bounded window of tasks in flight keeps memory flat however long the log is.
        in_flight: deque[Future[LeafPage]] = deque()
        for a, b in ranges:
            in_flight.append(pool.submit(_hash_range, url, snapshot, a, b, block_level))
            if len(in_flight) > 2 * workers:
                yield in_flight.popleft().result()
        while in_flight:
            yield in_flight.popleft().result()
