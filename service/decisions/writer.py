"""Group commit for decisions: one transaction, one fsync, for every decision waiting.

Decision threads hand (audit event, decision row) pairs, with a callback each, to the
writer thread(s), a decided group at a time. A writer takes everything queued, reserves
that many leaf indexes, inserts the events and decisions, commits, and only then calls
back: each answer still leaves after its own decision is durable, but concurrent decisions
share the commit instead of queueing one by one on the audit head's lock. No thread waits
meanwhile, so a group is as large as the number of decisions in flight, not the number of
decision threads. With more than one writer (`decision_writers`; one is the default and
the fastest, see bench/README.md), a second starts its transaction, and waits on the audit
head's row lock, while the first commits: the leaf indexes stay gapless and in commit
order.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service.audit import log as audit
from service.core.database import Base, insert_rows, transaction
from service.core.identity import Actor
from service.core.workers import Workers
from service.decisions.models import Decision

log = logging.getLogger("accord.decisions")
_DECISIONS = Base.metadata.tables[Decision.__tablename__]


# Called on the writer thread with the event's leaf index, or with the error that kept the
# decision from being recorded. It must be quick and must not raise.
Done = Callable[[int | None, BaseException | None], None]


@dataclass(frozen=True, slots=True)
class _Pending:
    actor: Actor
    record: audit.EventRecord
    row: dict[str, Any]
    at: datetime
    done: Done


def _tell(pending: _Pending, seq: int | None, error: BaseException | None) -> None:
    try:
        pending.done(seq, error)
    except Exception as exc:  # a broken callback must not stop the writer
        log.error("a decision's callback failed: %s", type(exc).__name__)


def _fail(group: list[_Pending], exc: BaseException) -> None:
    """Every waiter learns that nothing of its group was recorded."""
    log.error("recording %d decisions failed: %s", len(group), type(exc).__name__)
    for pending in group:
        _tell(pending, None, exc)


class DecisionWriter:
    """`threads` writer threads over one queue. With more than one, a group's transaction
    can start (and wait for the audit head's row lock) while the one before commits."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        max_group: int = 256,
        wait_seconds: float = 30.0,
        threads: int = 1,
    ) -> None:
        self._sessions = sessions
        self._max_group = max_group
        self._wait = wait_seconds
        self._queue: queue.SimpleQueue[list[_Pending] | None] = queue.SimpleQueue()
        self._workers = Workers("decision-writer", threads, self._run, self._queue)

    @property
    def workers(self) -> Workers:
        return self._workers

    @property
    def wait_seconds(self) -> float:
        """How long a caller waits for its decision to be recorded before giving up."""
        return self._wait

    def submit_many(
        self, decisions: list[tuple[Actor, audit.EventRecord, dict[str, Any], datetime, Done]]
    ) -> None:
        """Queue decisions that are committed together (unless a group is full)."""
        self._workers.ensure_started()
        self._queue.put([_Pending(*decision) for decision in decisions])

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = list(first)
            while len(group) < self._max_group:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this group (it was another's)
                    break
                group.extend(item)
            self._commit(group)

    def _commit(self, group: list[_Pending]) -> None:
        try:
            for session in transaction(self._sessions):
                seqs = audit.append_many(session, [(p.actor, p.record, p.at) for p in group])
                insert_rows(
                    session.connection(),
                    _DECISIONS,
                    [{**p.row, "audit_seq": seq} for p, seq in zip(group, seqs, strict=True)],
                )
        except IntegrityError as exc:
            if len(group) == 1:
                _fail(group, exc)
                return
            # One decision broke a constraint (an idempotency key sent twice at once): the
            # others must not fail with it, so record them one by one.
            for pending in group:
                self._commit([pending])
            return
        except BaseException as exc:
            _fail(group, exc)
            return
        for pending, seq in zip(group, seqs, strict=True):
            _tell(pending, seq, None)

    def close(self) -> None:
        if not self._workers.stop(None):
            log.error("decision writers did not stop in time")
