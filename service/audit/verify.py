"""Full verification of the audit log: every leaf, every signed head, every stored subtree.

One pass over the events in seq order recomputes each leaf hash from the row's columns
(`leaves.row_leaf_hash`) and feeds it to a streaming RFC 9162 tree, whose root is taken at
every signed head's size. Problems, ordered by the first event they concern:

    edited         an event's content no longer matches its leaf hash, or (when the leaf
                   hash was rewritten too) a signed head no longer matches a range of events
    missing        an event was deleted (a gap in seq, or later events renumbered down)
    inserted       a row the log never appended (beyond audit_head, or earlier ones pushed up)
    reordered      two events exchanged positions
    truncated      events at the end are gone (fewer rows than audit_head or a signed head)
    bad_signature  a head's signature does not verify, or its key is not trusted
    root_mismatch  a validly signed head matches no recomputation and cannot be localised
    subtree_mismatch  a stored subtree or block time disagrees with the events (proofs or
                   time-bounded searches would be wrong)

Because every head's root is recomputed from the same leaves, heads that verify are
consistent with one another: each later head only appended to the earlier ones.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.audit import keys as signing_keys
from service.audit import merkle, tree
from service.audit.leaf_pages import (
    KEEP,
    LeafPage,
    export_snapshot,
    local_pages,
    parallel_pages,
)
from service.audit.leaves import LEAF, SEQ, LeafRow, leaf_rows, row_leaf_hash
from service.audit.models import TreeHead
from service.audit.signer import AuditRuntime
from service.audit.signing import verify_tree_head
from service.audit.tree_models import AuditBlockTime, AuditSubtree
from service.core.database import transaction

__all__ = ["Problem", "VerifyReport", "describe", "verify", "verify_log"]

_PARALLEL_FROM = 200_000
_MAX_PROBLEMS = 50
_ZERO = bytes(32)
_NODE = b"\x01"


@dataclass(frozen=True, slots=True)
class Problem:
    """One integrity failure; `seq` is the first event it concerns, if it concerns one."""

    kind: str
    seq: int | None
    head_size: int | None
    detail: str


@dataclass(slots=True)
class VerifyReport:
    """The outcome of `verify`."""

    ok: bool
    log_size: int
    events: int
    heads: int
    first: Problem | None
    problems: list[Problem]
    seconds: float

    @property
    def events_per_second(self) -> float:
        """Verification throughput."""
        return self.events / self.seconds if self.seconds > 0 else 0.0


@dataclass(slots=True)
class _Scan:
    rows: int = 0
    roots: dict[int, bytes] = field(default_factory=dict)
    nodes: dict[tuple[int, int], bytes] = field(default_factory=dict)
    gaps: list[tuple[int, int]] = field(default_factory=list)
    mismatched: list[LeafRow] = field(default_factory=list)
    unencodable: list[int] = field(default_factory=list)
    mismatch_count: int = 0
    beyond: list[int] = field(default_factory=list)
    contiguous: int = 0  # events [0, contiguous) are all present
    times: dict[int, list[str]] = field(default_factory=dict)  # block -> [first, last]


def _scan(pages: Iterable[LeafPage], log_size: int, boundaries: Sequence[int]) -> _Scan:
    """Consume every recomputed leaf once: gaps, mismatches, and roots at each boundary."""
    scan = _Scan()
    sha = hashlib.sha256
    m, mask = tree.MIN_LEVEL, (1 << tree.MIN_LEVEL) - 1
    stack: list[bytes] = []
    nodes = scan.nodes
    wanted = sorted(set(boundaries))
    pending = [b for b in wanted if b > 0]
    if 0 in wanted:
        scan.roots[0] = merkle.EMPTY_ROOT
    next_boundary = pending.pop(0) if pending else -1
    count = 0

    def push(digest: bytes) -> None:
        """Add a leaf to the streaming tree (the loop below inlines the common case)."""
        nonlocal count, next_boundary
        count += 1
        c, level = count, 0
        while not c & 1:
            digest = sha(_NODE + stack.pop() + digest).digest()
            c >>= 1
            level += 1
            if level >= m:  # a stored-size block or larger: remember it
                nodes[(level, (count >> level) - 1)] = digest
        stack.append(digest)
        if count == next_boundary:
            scan.roots[count] = tree.fold(stack)
            next_boundary = pending.pop(0) if pending else -1

    pop, append = stack.pop, stack.append
    for page in pages:
        scan.rows += len(page.seqs)
        scan.mismatch_count += page.mismatch_count
        scan.mismatched += page.mismatched[: KEEP - len(scan.mismatched)]
        scan.unencodable += page.unencodable
        for block, (first, last) in page.times.items():
            span = scan.times.setdefault(block, [first, last])
            span[0], span[1] = min(span[0], first), max(span[1], last)
        for seq, digest in zip(page.seqs, page.digests, strict=True):
            if seq != count or seq >= log_size:
                if seq >= log_size:
                    scan.beyond.append(seq)
                    continue
                scan.gaps.append((count, seq))  # placeholders keep later leaves in place
                while count < seq:
                    push(_ZERO)
            c = count + 1
            if c & mask and c != next_boundary:  # the common case, inlined
                count = c
                while not c & 1:
                    digest = sha(_NODE + pop() + digest).digest()
                    c >>= 1
                append(digest)
            else:
                push(digest)
    first_gap = scan.gaps[0][0] if scan.gaps else count
    scan.contiguous = min(first_gap, count)
    return scan


def _leaf_at(row: LeafRow, seq: int) -> bytes | None:
    try:
        return row_leaf_hash(row, seq)
    except ValueError:
        return None


def _row(session: Session, seq: int) -> LeafRow | None:
    return session.execute(leaf_rows(seq, seq + 1)).first()


def _classify(session: Session, scan: _Scan) -> Problem:
    """Name the first mismatching event: reordered, inserted, missing or edited."""
    row = scan.mismatched[0]
    s, stored = row[SEQ], bytes(row[LEAF])
    for other in scan.mismatched[1:]:
        t = other[SEQ]
        pair = {stored, bytes(other[LEAF])}
        if _leaf_at(row, t) in pair and _leaf_at(other, s) in pair:
            return Problem("reordered", s, None, f"events {s} and {t} exchanged positions")
    if s > 0 and _leaf_at(row, s - 1) == stored:
        return Problem("inserted", s - 1, None, f"event {s - 1} was inserted; later ones moved up")
    following = _row(session, s + 1)
    if following is not None and _leaf_at(following, s) in {bytes(following[LEAF]), stored}:
        return Problem("inserted", s, None, f"event {s} was inserted; later ones moved up")
    if _leaf_at(row, s + 1) == stored:
        return Problem("missing", s, None, f"event {s} was deleted; later ones moved down")
    if s in scan.unencodable:
        return Problem("edited", s, None, f"event {s} has no canonical encoding any more")
    return Problem("edited", s, None, f"event {s} does not match its leaf hash")


def _localise(
    session: Session, head: TreeHead, scan: _Scan, good: int, known: Sequence[int]
) -> Problem | None:
    """Find where a validly signed head stopped matching, using the stored subtrees; None
    when an event problem already found (in `known`) explains the range."""
    size, m = head.size, tree.MIN_LEVEL
    blocks, tail_start = tree.decomposition(size, m)
    stored = tree.fetch_nodes(session, blocks)
    for level, index in blocks:
        digest = stored.get((level, index))
        if digest is None or digest == scan.nodes.get((level, index)) or index < good >> level:
            continue
        while level > m:  # descend while the stored children hash to their parent
            pair = [(level - 1, 2 * index), (level - 1, 2 * index + 1)]
            children = tree.fetch_nodes(session, pair)
            left, right = children.get(pair[0]), children.get(pair[1])
            if left is None or right is None or merkle.node_hash(left, right) != digest:
                break
            # Go right when the left half still matches: the first change lies beyond it.
            level, index = pair[1] if left == scan.nodes.get(pair[0]) else pair[0]
            digest = left if index % 2 == 0 else right
        start, end = max(index << level, good), (index + 1) << level
        if any(start <= seq < end for seq in known):
            return None
        return Problem(
            "edited",
            start,
            size,
            f"events in [{start}, {end}) were changed together with their leaf "
            f"hashes: the signed head of size {size} no longer matches them",
        )
    start = max(tail_start if all(b in stored for b in blocks) else 0, good)
    if any(start <= seq < size for seq in known):
        return None
    if start < size:
        return Problem(
            "edited",
            start,
            size,
            f"events in [{start}, {size}) were changed together with their leaf hashes: "
            f"the signed head of size {size} no longer matches them",
        )
    return Problem("root_mismatch", None, size, f"the head of size {size} matches no events")


def _heads(
    session: Session,
    heads: Sequence[TreeHead],
    keys: Mapping[str, bytes],
    scan: _Scan,
    size: int,
    known: Sequence[int],
) -> list[Problem]:
    problems: list[Problem] = []
    good = 0  # every head up to this size matched: leaves [0, good) are authentic
    localised = False
    for head in heads:
        public = keys.get(head.key_id)
        if public is None:
            problems.append(
                Problem("bad_signature", None, head.size, f"signed by unknown key {head.key_id}")
            )
            continue
        if not verify_tree_head(
            public, head.size, bytes(head.root_hash), head.signed_at, bytes(head.signature)
        ):
            problems.append(Problem("bad_signature", None, head.size, "signature does not verify"))
            continue
        if head.size > min(size, scan.contiguous) and not scan.gaps:
            first = min(size, scan.contiguous)
            problems.append(
                Problem(
                    "truncated",
                    first,
                    head.size,
                    f"a head of {head.size} events was signed; events from {first} are gone",
                )
            )
            continue
        if scan.roots.get(head.size) == bytes(head.root_hash):
            good = max(good, head.size)
        elif not localised:
            localised = True
            found = _localise(session, head, scan, good, known)
            if found is not None:
                problems.append(found)
    return problems


def _block_times(session: Session, scan: _Scan) -> list[Problem]:
    m = tree.MIN_LEVEL
    for index, first, last in session.execute(
        select(AuditBlockTime.node_index, AuditBlockTime.first_at, AuditBlockTime.last_at).order_by(
            AuditBlockTime.node_index
        )
    ):
        if scan.times.get(index) != [first, last]:
            return [
                Problem(
                    "subtree_mismatch",
                    index << m,
                    None,
                    f"stored times of events [{index << m}, {(index + 1) << m}) disagree with "
                    "the events (time-bounded searches would miss events)",
                )
            ]
    return []


def _subtrees(session: Session, scan: _Scan) -> list[Problem]:
    problems: list[Problem] = []
    rows = session.execute(select(AuditSubtree.level, AuditSubtree.node_index, AuditSubtree.hash))
    for level, index, digest in rows:
        recomputed = scan.nodes.get((level, index))
        if recomputed is not None and recomputed != bytes(digest):
            problems.append(
                Problem(
                    "subtree_mismatch",
                    index << level,
                    None,
                    f"stored subtree ({level}, {index}) disagrees with the events",
                )
            )
    return problems[:1]


def _event_problems(session: Session, scan: _Scan, size: int) -> list[Problem]:
    problems: list[Problem] = []
    if scan.mismatched:
        problems.append(_classify(session, scan))
    for start, end in scan.gaps[:5]:
        problems.append(Problem("missing", start, None, f"events [{start}, {end}) are missing"))
    if not scan.gaps and scan.contiguous < size:
        problems.append(
            Problem(
                "truncated",
                scan.contiguous,
                None,
                f"the log should hold {size} events; events from {scan.contiguous} are gone",
            )
        )
    if scan.beyond:
        seq = scan.beyond[0]
        problems.append(
            Problem("inserted", seq, None, f"event {seq} lies beyond the log's {size} events")
        )
    return problems


def _order(problem: Problem) -> tuple[int, int]:
    return (problem.seq if problem.seq is not None else 2**62, problem.head_size or 0)


def verify(
    session: Session, keys: Mapping[str, bytes], *, workers: int = 1, database_url: str = ""
) -> VerifyReport:
    """Verify the whole log against `keys` (kid -> Ed25519 public key) in one pass.

    With `workers` > 1 and the `database_url`, leaves are re-hashed by that many worker
    processes (worth it from a few hundred thousand events).
    """
    started = time.perf_counter()
    size = tree.log_size(session)
    heads = list(session.scalars(select(TreeHead).order_by(TreeHead.size)))
    m = tree.MIN_LEVEL
    pages: Iterable[LeafPage] = local_pages(session, 0, None, m)
    if workers > 1 and database_url and size >= _PARALLEL_FROM:
        snapshot = export_snapshot(session)
        pages = itertools.chain(
            parallel_pages(database_url, snapshot, 0, size, workers, m),
            local_pages(session, size, None, m),  # rows beyond the log's size: inserted
        )
    scan = _scan(pages, size, [h.size for h in heads])
    problems = _event_problems(session, scan, size)
    known = [p.seq for p in problems if p.seq is not None] + [r[SEQ] for r in scan.mismatched]
    problems += _heads(session, heads, keys, scan, size, known)
    if not problems:  # otherwise the stored subtrees differ because the events do
        problems = _subtrees(session, scan) or _block_times(session, scan)
    problems.sort(key=_order)
    return VerifyReport(
        ok=not problems,
        log_size=size,
        events=scan.rows,
        heads=len(heads),
        first=problems[0] if problems else None,
        problems=problems[:_MAX_PROBLEMS],
        seconds=time.perf_counter() - started,
    )


def verify_log(
    runtime: AuditRuntime, trusted: Mapping[str, bytes] | None = None, workers: int = 1
) -> VerifyReport:
    """Verify one consistent snapshot, trusting `trusted` keys or the configured and
    registered ones (pin a JWKS obtained out of band for the stronger guarantee)."""
    for session in transaction(runtime.read_sessions):
        if session.get_bind().dialect.name == "postgresql":
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        if trusted is None:
            current = signing_keys.signing_key(runtime.settings)
            trusted = signing_keys.public_keys(session, current)
        url = runtime.settings.database_url
        report = verify(session, trusted, workers=workers, database_url=url)
    return report


def describe(report: VerifyReport) -> dict[str, Any]:
    """A JSON-ready summary of a report."""
    return {
        "ok": report.ok,
        "log_size": report.log_size,
        "events": report.events,
        "heads": report.heads,
        "first": None if report.first is None else _problem(report.first),
        "problems": [_problem(p) for p in report.problems],
        "seconds": round(report.seconds, 3),
        "events_per_second": round(report.events_per_second),
    }


def _problem(problem: Problem) -> dict[str, Any]:
    return {
        "kind": problem.kind,
        "seq": problem.seq,
        "head_size": problem.head_size,
        "detail": problem.detail,
    }
