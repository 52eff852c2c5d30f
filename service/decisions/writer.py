"""Group commit for decisions: one transaction, one fsync, for every decision waiting.

Request threads hand their (audit event, decision row) to a single writer thread and wait.
The writer takes everything queued, reserves that many leaf indexes, inserts the events and
decisions, commits, and only then releases the waiting requests: each answer still leaves
after its own decision is durable, but concurrent decisions share the commit instead of
queueing one by one on the audit head's lock.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert
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
    done: threading.Event = field(default_factory=threading.Event)
    seq: int | None = None
    error: BaseException | None = None


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

    def record(
        self, actor: Actor, record: audit.EventRecord, row: dict[str, Any], at: datetime
    ) -> int:
        """Durably record one decision and its audit event; returns the event's leaf index."""
        self._ensure_started()
        pending = _Pending(actor, record, row, at)
        self._queue.put(pending)
        if not pending.done.wait(self._wait):
            raise Unavailable("the decision could not be recorded in time")
        if pending.error is not None:
            raise pending.error
        assert pending.seq is not None
        return pending.seq

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
        try:
            for session in transaction(self._sessions):
                seqs = audit.append_many(session, [(p.actor, p.record, p.at) for p in group])
                session.connection().execute(
                    _INSERT_DECISION,
                    [{**p.row, "audit_seq": seq} for p, seq in zip(group, seqs, strict=True)],
                )
            for pending, seq in zip(group, seqs, strict=True):
                pending.seq = seq
        except BaseException as exc:  # every waiter learns that nothing was recorded
            log.error("recording %d decisions failed: %s", len(group), type(exc).__name__)
            for pending in group:
                pending.error = exc
        finally:
            for pending in group:
                pending.done.set()

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=10)
