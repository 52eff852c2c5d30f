"""Group commit for decisions: one transaction, one fsync, for every decision waiting.

Requests hand their (audit event, decision row) to a single writer thread and get a future.
The writer takes everything queued, reserves that many leaf indexes, inserts the events and
decisions, commits, and only then resolves the futures: each answer still leaves after its
own decision is durable, but concurrent decisions share the commit instead of queueing one
by one on the audit head's lock. Nothing waits on a thread meanwhile, so a group is as
large as the number of decisions in flight, not the number of decision threads.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service.audit import log as audit
from service.core.database import Base, transaction
from service.core.errors import Unavailable
from service.core.identity import Actor
from service.decisions.models import Decision

log = logging.getLogger("accord.decisions")
_INSERT_DECISION = insert(Base.metadata.tables[Decision.__tablename__])


@dataclass
class _Pending:
    actor: Actor
    record: audit.EventRecord
    row: dict[str, Any]
    at: datetime
    seq: Future[int] = field(default_factory=Future)


def _fail(group: list[_Pending], exc: BaseException) -> None:
    """Every waiter learns that nothing of its group was recorded."""
    log.error("recording %d decisions failed: %s", len(group), type(exc).__name__)
    for pending in group:
        pending.seq.set_exception(exc)


class DecisionWriter:
    def __init__(
        self, sessions: sessionmaker[Session], max_group: int = 256, wait_seconds: float = 30.0
    ) -> None:
        self._sessions = sessions
        self._max_group = max_group
        self._wait = wait_seconds
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def wait_seconds(self) -> float:
        """How long a caller waits for its decision to be recorded before giving up."""
        return self._wait

    def submit(
        self, actor: Actor, record: audit.EventRecord, row: dict[str, Any], at: datetime
    ) -> Future[int]:
        """Queue one decision and its audit event; the future gives the event's leaf index
        once both are committed (or the error that kept them from being recorded)."""
        self._ensure_started()
        pending = _Pending(actor, record, row, at)
        self._queue.put(pending)
        return pending.seq

    def record(
        self, actor: Actor, record: audit.EventRecord, row: dict[str, Any], at: datetime
    ) -> int:
        """Durably record one decision and its audit event; returns the event's leaf index."""
        try:
            return self.submit(actor, record, row, at).result(self._wait)
        except TimeoutError:
            raise Unavailable("the decision could not be recorded in time") from None

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="decision-writer", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            while len(group) < self._max_group:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this group
                    break
                group.append(item)
            self._commit(group)

    def _commit(self, group: list[_Pending]) -> None:
        # A caller that gave up before its decision was taken has it cancelled: not recorded.
        group = [p for p in group if p.seq.set_running_or_notify_cancel()]
        if group:
            self._write(group)

    def _write(self, group: list[_Pending]) -> None:
        try:
            for session in transaction(self._sessions):
                seqs = audit.append_many(session, [(p.actor, p.record, p.at) for p in group])
                session.connection().execute(
                    _INSERT_DECISION,
                    [{**p.row, "audit_seq": seq} for p, seq in zip(group, seqs, strict=True)],
                )
        except IntegrityError as exc:
            if len(group) == 1:
                _fail(group, exc)
                return
            # One decision broke a constraint (an idempotency key sent twice at once): the
            # others must not fail with it, so record them one by one.
            for pending in group:
                self._write([pending])
            return
        except BaseException as exc:
            _fail(group, exc)
            return
        for pending, seq in zip(group, seqs, strict=True):
            pending.seq.set_result(seq)

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=10)
