"""The log's Merkle tree in the database: stored perfect subtrees, tree heads and proofs.

`audit_subtrees` holds the hash of every complete, aligned perfect subtree at level
>= MIN_LEVEL (blocks of 256 leaves and up; ~2/256 rows per event). It is filled when a
tree head is signed, never on the decision path, and only ever as a whole prefix: one
signing inserts every complete node of the first `size` leaves in the same transaction as
the head, so "all nodes of level MIN_LEVEL below index k are stored" holds for some k, and
any signed head's nodes are all present. Inserts are idempotent (ON CONFLICT DO NOTHING,
in key order so concurrent signers never deadlock) and the values are deterministic, so
two signers at once store the same rows; the head's primary key is its size.

Before signing, every leaf not yet covered by a stored block is recomputed from its row
and compared with the stored leaf hash: the service never signs over an altered event.

Proofs cost two or three queries: a dry run of the RFC 9162 generator records which stored
nodes and leaf ranges it will need, those are fetched at once, then the real run hashes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from service.audit import merkle
from service.audit.leaves import LEAF, SEQ, fetch_leaf_rows, row_leaf_hash
from service.audit.merkle import SubtreeCache, SubtreeHasher
from service.audit.models import AuditEvent, AuditHead, TreeHead
from service.audit.signing import SigningKey, tree_head_payload
from service.audit.tree_models import AuditBlockTime, AuditSubtree
from service.core.errors import AccordError

__all__ = [
    "MIN_LEVEL",
    "HeadPlan",
    "LogIntegrityError",
    "consistency_path",
    "decomposition",
    "fetch_nodes",
    "fold",
    "head_at",
    "inclusion_path",
    "insert_ignoring_conflicts",
    "latest_head",
    "log_size",
    "plan_head",
    "read_leaf_hashes",
    "store_head",
    "time_span",
]

MIN_LEVEL = 8
_PAGE = 10_000
_IN_CHUNK = 400
_PLACEHOLDER = bytes(32)
Node = tuple[int, int]


class LogIntegrityError(AccordError):
    status, slug, title = 409, "audit-log-integrity", "The audit log does not verify"


def insert_ignoring_conflicts(session: Session, model: type[Any]) -> Any:
    """INSERT … ON CONFLICT DO NOTHING for the session's dialect."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model).on_conflict_do_nothing()
    return sqlite.insert(model).on_conflict_do_nothing()


def log_size(session: Session) -> int:
    """The number of events appended (committed, as this transaction sees it)."""
    return int(session.scalar(select(AuditHead.size).where(AuditHead.id == 1)) or 0)


def latest_head(session: Session) -> TreeHead | None:
    """The signed tree head of the largest size, if any."""
    return session.scalars(select(TreeHead).order_by(TreeHead.size.desc()).limit(1)).first()


def head_at(session: Session, size: int) -> TreeHead | None:
    """The signed tree head of exactly `size` leaves, if any."""
    return session.scalars(select(TreeHead).where(TreeHead.size == size)).first()


def decomposition(size: int, min_level: int) -> tuple[list[Node], int]:
    """The perfect blocks (level >= min_level) that MTH of `size` leaves splits into, and
    where the remaining tail of fewer than 2**min_level leaves starts."""
    blocks: list[Node] = []
    position = 0
    for level in range(size.bit_length() - 1, min_level - 1, -1):
        if size >> level & 1:
            blocks.append((level, position >> level))
            position += 1 << level
    return blocks, position


def fold(parts: Sequence[bytes]) -> bytes:
    """Combine perfect-subtree hashes of decreasing size from the right (RFC 9162 split)."""
    if not parts:
        return merkle.EMPTY_ROOT
    digest = parts[-1]
    for part in reversed(parts[:-1]):
        digest = merkle.node_hash(part, digest)
    return digest


def fetch_nodes(session: Session, keys: Iterable[Node]) -> dict[Node, bytes]:
    """Stored subtree hashes for these (level, index) keys; absent keys are left out."""
    wanted = sorted(set(keys))
    found: dict[Node, bytes] = {}
    for start in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[start : start + _IN_CHUNK]
        rows = session.execute(
            select(AuditSubtree.level, AuditSubtree.node_index, AuditSubtree.hash).where(
                tuple_(AuditSubtree.level, AuditSubtree.node_index).in_(chunk)
            )
        )
        found.update(((level, index), digest) for level, index, digest in rows)
    return found


def read_leaf_hashes(session: Session, start: int, end: int) -> list[bytes]:
    """The stored leaf hashes of events [start, end); refuses a range with gaps."""
    rows = session.execute(
        select(AuditEvent.seq, AuditEvent.leaf_hash)
        .where(AuditEvent.seq >= start, AuditEvent.seq < end)
        .order_by(AuditEvent.seq)
    ).all()
    if len(rows) != end - start or (rows and (rows[0][0] != start or rows[-1][0] != end - 1)):
        raise LogIntegrityError(f"events are missing between {start} and {end}; run verify")
    return [bytes(digest) for _, digest in rows]


def _checked_leaves(session: Session, start: int, end: int) -> Iterator[tuple[bytes, str]]:
    """Leaf hashes of [start, end) recomputed from the rows and checked against the stored,
    each with the event's time."""
    expected = start
    while expected < end:
        rows = fetch_leaf_rows(session, expected, end, _PAGE)
        if not rows:
            break
        for row in rows:
            if row[SEQ] != expected:
                raise LogIntegrityError(f"event {expected} is missing; run verify")
            try:
                digest = row_leaf_hash(row)
            except ValueError as exc:
                raise LogIntegrityError(f"event {expected} cannot be encoded") from exc
            if digest != row[LEAF]:
                raise LogIntegrityError(f"event {expected} does not match its leaf hash")
            expected += 1
            yield digest, row[2]
    if expected != end:
        raise LogIntegrityError(f"event {expected} is missing; run verify")


def _stored_prefix(session: Session) -> int:
    top = session.scalar(
        select(func.max(AuditSubtree.node_index)).where(AuditSubtree.level == MIN_LEVEL)
    )
    return 0 if top is None else (int(top) + 1) << MIN_LEVEL


def _stored_times_prefix(session: Session) -> int:
    top = session.scalar(select(func.max(AuditBlockTime.node_index)))
    return 0 if top is None else (int(top) + 1) << MIN_LEVEL


def time_span(session: Session, since: str | None, until: str | None) -> tuple[int, int, int]:
    """(lo, hi, indexed): events with occurred_at in [since, until) all have seq in
    [lo, hi) or seq >= indexed, the end of the blocks whose times are stored."""
    indexed = _stored_times_prefix(session)
    overlapping = select(AuditBlockTime.node_index)
    if since is not None:
        overlapping = overlapping.where(AuditBlockTime.last_at >= since)
    if until is not None:
        overlapping = overlapping.where(AuditBlockTime.first_at < until)
    order = AuditBlockTime.node_index
    first = session.scalar(overlapping.order_by(order).limit(1))
    last = session.scalar(overlapping.order_by(order.desc()).limit(1))
    if first is None or last is None:
        return indexed, indexed, indexed
    return int(first) << MIN_LEVEL, (int(last) + 1) << MIN_LEVEL, indexed


@dataclass(frozen=True, slots=True)
class HeadPlan:
    """A computed, not yet signed, tree head and the subtree rows it adds."""

    size: int
    root: bytes
    nodes: dict[Node, bytes]
    times: dict[int, tuple[str, str]]  # level-MIN_LEVEL block -> (first, last) occurred_at


def plan_head(session: Session, size: int) -> HeadPlan:
    """Compute MTH of the first `size` leaves, reading only what is not stored yet."""
    m = MIN_LEVEL
    filled = _stored_prefix(session)
    if filled > size:
        raise LogIntegrityError("stored subtrees cover more events than the log holds")
    # Block times are filled alongside level-MIN_LEVEL subtrees; a damaged index is rebuilt
    # from where it stops (its rows are append-only, so only missing ones are added).
    filled = min(filled, _stored_times_prefix(session))
    full_end = (size >> m) << m
    new: dict[Node, bytes] = {}
    times: dict[int, tuple[str, str]] = {}
    block: list[bytes] = []
    moments: list[str] = []
    tail: list[bytes] = []
    for position, (digest, moment) in enumerate(_checked_leaves(session, filled, size), filled):
        if position >= full_end:
            tail.append(digest)
            continue
        block.append(digest)
        moments.append(moment)
        if len(block) == 1 << m:
            new[(m, position >> m)] = merkle.root(block)
            times[position >> m] = (min(moments), max(moments))
            block, moments = [], []
    blocks, _ = decomposition(size, m)
    # Stored nodes this extension builds on: at most one left sibling per level, plus the
    # root's blocks that lie wholly inside the stored prefix.
    needed = {b for b in blocks if b[1] < filled >> b[0]}
    for level in range(m + 1, size.bit_length()):
        below = filled >> (level - 1)
        if below & 1 and (filled >> level) < (size >> level):
            needed.add((level - 1, below - 1))
    known = fetch_nodes(session, needed)
    for level, index in needed - known.keys():  # only if rows were removed from the store
        start, end = index << level, (index + 1) << level
        known[(level, index)] = merkle.root([d for d, _ in _checked_leaves(session, start, end)])
    known.update(new)
    for level in range(m + 1, size.bit_length()):
        for index in range(filled >> level, size >> level):
            left, right = known[(level - 1, 2 * index)], known[(level - 1, 2 * index + 1)]
            known[(level, index)] = new[(level, index)] = merkle.node_hash(left, right)
    parts = [known[b] for b in blocks]
    if tail:
        parts.append(merkle.root(tail))
    return HeadPlan(size, fold(parts), new, times)


def store_head(session: Session, plan: HeadPlan, key: SigningKey, signed_at: str) -> TreeHead:
    """Store the plan's subtrees and its signed head; a concurrent signer's head wins."""
    rows = [
        {"level": level, "node_index": index, "hash": digest}
        for (level, index), digest in sorted(plan.nodes.items())
    ]
    statement = insert_ignoring_conflicts(session, AuditSubtree)
    for start in range(0, len(rows), 1_000):
        session.execute(statement, rows[start : start + 1_000])
    times = [
        {"node_index": index, "first_at": first, "last_at": last}
        for index, (first, last) in sorted(plan.times.items())
    ]
    statement = insert_ignoring_conflicts(session, AuditBlockTime)
    for start in range(0, len(times), 1_000):
        session.execute(statement, times[start : start + 1_000])
    payload = tree_head_payload(plan.size, plan.root, signed_at)
    session.execute(
        insert_ignoring_conflicts(session, TreeHead).values(
            size=plan.size,
            root_hash=plan.root,
            signed_at=signed_at,
            key_id=key.key_id,
            signature=key.sign(payload),
        )
    )
    head = head_at(session, plan.size)
    if head is None or head.root_hash != plan.root:
        raise LogIntegrityError(f"a different tree head of size {plan.size} is stored")
    return head


# --------------------------------------------------------------------------- proofs


class _Recorder:
    """A PerfectSubtreeStore that only notes which nodes a proof asks for."""

    def __init__(self) -> None:
        self.keys: set[Node] = set()

    def get(self, level: int, index: int) -> bytes | None:
        self.keys.add((level, index))
        return _PLACEHOLDER

    def put(self, level: int, index: int, digest: bytes) -> None:
        """Nothing to keep."""


class _Prefetched:
    """Stored nodes fetched up front; a miss (a damaged store) falls back to the database."""

    def __init__(self, session: Session, nodes: dict[Node, bytes]) -> None:
        self.session = session
        self.nodes = nodes

    def get(self, level: int, index: int) -> bytes | None:
        if (level, index) not in self.nodes:
            self.nodes.update(fetch_nodes(self.session, [(level, index)]))
        return self.nodes.get((level, index))

    def put(self, level: int, index: int, digest: bytes) -> None:
        self.nodes[(level, index)] = digest


def _merged(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(r for r in ranges if r[0] < r[1]):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _read_ranges(session: Session, ranges: list[tuple[int, int]]) -> dict[int, bytes]:
    """Stored leaf hashes of several seq ranges in one query; refuses gaps."""
    if not ranges:
        return {}
    seq = AuditEvent.seq
    rows = session.execute(
        select(seq, AuditEvent.leaf_hash).where(
            or_(*(and_(seq >= start, seq < end) for start, end in ranges))
        )
    ).all()
    leaves = {int(s): bytes(digest) for s, digest in rows}
    if len(leaves) != sum(end - start for start, end in ranges):
        raise LogIntegrityError("events are missing from the log; run verify")
    return leaves


def _with_store(session: Session, generate: Callable[[SubtreeHasher], list[bytes]]) -> list[bytes]:
    recorder, reads = _Recorder(), []

    def note(start: int, end: int) -> list[bytes]:
        reads.append((start, end))
        return []

    generate(SubtreeCache(note, recorder, MIN_LEVEL))
    leaves = _read_ranges(session, _merged(reads))

    def read(start: int, end: int) -> list[bytes]:
        try:
            return [leaves[i] for i in range(start, end)]
        except KeyError:  # outside what the dry run predicted (a damaged store)
            return read_leaf_hashes(session, start, end)

    store = _Prefetched(session, fetch_nodes(session, recorder.keys))
    return generate(SubtreeCache(read, store, MIN_LEVEL))


def inclusion_path(session: Session, index: int, size: int) -> list[bytes]:
    """RFC 9162 PATH(index, D[0:size]) from the stored tree."""
    return _with_store(session, lambda subtree: merkle.inclusion_proof(index, size, subtree))


def consistency_path(session: Session, first: int, second: int) -> list[bytes]:
    """RFC 9162 PROOF(first, D[0:second]) from the stored tree."""
    return _with_store(session, lambda subtree: merkle.consistency_proof(first, second, subtree))
