"""Decision threads: take every request waiting, decide them together, hand them to the writer.

A request's coroutine queues its `Ask` and waits once. A decision thread takes what is
queued (up to a group's limits), decides the group on one read of the database
(`service.decide_group`) and hands the decisions to the writer in one piece, which commits
them together; each answer leaves when its own decision is durable. Under load a group
costs one read transaction, one write transaction and one thread hand-off for many
decisions; alone, a request is a group of one.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError

from service.core.workers import Workers
from service.decisions import service

if TYPE_CHECKING:
    from service.core.context import Runtime

log = logging.getLogger("accord.decisions")

# Called once per request, on a decision or writer thread, with the answer or the error
# that kept it from one. It must be quick and must not raise.
Answered = Callable[[dict[str, Any] | None, BaseException | None], None]


class _Stop:
    """Queued once per thread by `close`."""


_STOP = _Stop()


@dataclass(frozen=True, slots=True)
class _Job:
    ask: service.Ask
    answered: Answered

    @property
    def subjects(self) -> int:
        subjects = self.ask.request.subjects
        return len(subjects) if subjects is not None else 1


def _run_task(task: Callable[[], None]) -> None:
    try:
        task()
    except Exception:
        log.exception("a decision follow-up failed")


def _answer(job: _Job, answer: dict[str, Any] | None, error: BaseException | None) -> None:
    try:
        job.answered(answer, error)
    except Exception as exc:  # a broken callback must not stop a decision thread
        log.error("a decision's callback failed: %s", type(exc).__name__)


class Decider:
    """`threads` decision threads over one queue. A group holds at most `max_group`
    requests and, unless one request alone is larger, `max_subjects` subjects: a batch of
    thousands is decided apart from the single-subject requests queued behind it."""

    def __init__(
        self, runtime: Runtime, threads: int, max_group: int = 64, max_subjects: int = 1_000
    ) -> None:
        self._runtime = runtime
        self._max_group = max_group
        self._max_subjects = max_subjects
        self._queue: queue.SimpleQueue[_Job | Callable[[], None] | _Stop] = queue.SimpleQueue()
        self._workers = Workers("decide", threads, self._run, self._queue)

    def submit(self, ask: service.Ask, answered: Answered) -> None:
        """Queue one request; `answered` learns its answer once the decision is recorded."""
        self._workers.ensure_started()
        self._queue.put(_Job(ask, answered))

    def _run(self) -> None:
        # What did not fit in the last group (or must follow it) starts the next one.
        carried: _Job | Callable[[], None] | _Stop | None = None
        while True:
            first = carried if carried is not None else self._queue.get()
            carried = None
            if isinstance(first, _Stop):
                return
            if not isinstance(first, _Job):  # a follow-up task (see `_recorder`)
                _run_task(first)
                continue
            group, subjects = [first], first.subjects
            while len(group) < self._max_group and subjects < self._max_subjects:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if not isinstance(item, _Job) or subjects + item.subjects > self._max_subjects:
                    carried = item  # a task, stop, or too many subjects: after this group
                    break
                group.append(item)
                subjects += item.subjects
            try:
                self._decide(group)
            except Exception as exc:  # a bug must not strand the group or stop the thread
                log.exception("deciding a group failed")
                for job in group:
                    _answer(job, None, exc)

    def _decide(self, group: list[_Job]) -> None:
        runtime = self._runtime
        try:
            outcomes = service.decide_group(runtime, [job.ask for job in group])
        except Exception as exc:  # the read failed: no answer for any of them
            log.error("deciding %d requests failed: %s", len(group), type(exc).__name__)
            for job in group:
                _answer(job, None, exc)
            return
        started = time.perf_counter()
        to_record = []
        for job, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, Exception):
                _answer(job, None, outcome)
            elif (new := outcome.unrecorded) is None:  # a replay of a stored decision
                _answer(job, outcome.answer, None)
            else:
                recorder = self._recorder(job, outcome, started)
                to_record.append((job.ask.actor, new.event, new.row, new.at, recorder))
        if to_record:
            runtime.decision_writer.submit_many(to_record)

    def _recorder(
        self, job: _Job, decided: service.Decided, started: float
    ) -> Callable[[int | None, BaseException | None], None]:
        def recorded(seq: int | None, error: BaseException | None) -> None:  # writer thread
            if seq is not None:
                service.recorded(self._runtime, decided, seq, time.perf_counter() - started)
                _answer(job, decided.answer, None)
            elif isinstance(error, IntegrityError) and job.ask.idempotency_key is not None:
                # The same key sent twice at once: the first one stands. Read it back on a
                # decision thread, not on the writer's.
                self._queue.put(lambda: self._replay(job, decided))
            else:
                _answer(job, None, error)

        return recorded

    def _replay(self, job: _Job, decided: service.Decided) -> None:
        ask, unrecorded = job.ask, decided.unrecorded
        assert ask.idempotency_key is not None
        assert unrecorded is not None
        try:
            answer = service.replayed(
                self._runtime,
                ask.actor.principal,
                ask.idempotency_key,
                unrecorded.row["request_fingerprint"],
            )
        except Exception as exc:
            _answer(job, None, exc)
            return
        _answer(job, answer, None)

    def close(self) -> None:
        """Stop the threads once the requests queued so far are decided; restartable."""
        if not self._workers.stop(_STOP):
            log.error("decision threads did not stop in time")
