"""Decision threads: requests that wait are decided together, each with its own answer."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from service.audit.actions import AuditAction
from service.audit.models import AuditEvent
from service.core.identity import Actor, Principal, Role
from service.decisions import service
from service.decisions.decider import Decider
from service.decisions.engines import PolicyError
from service.decisions.engines.base import DECISION_ENTRYPOINT, GROUPED_ENTRYPOINT
from service.decisions.models import Decision
from service.decisions.schemas import DecisionRequest

UNKNOWN = "00000000-0000-0000-0000-000000000000"


def ask(
    agreement_id: str, org: str = "uni-lab", key: str | None = None, **body: Any
) -> service.Ask:
    request = DecisionRequest.model_validate(
        {"agreement_id": agreement_id, "purpose": "research", "fields": ["postcode"], **body}
    )
    return service.Ask(Actor(Principal("partner-1", Role.PARTNER, org), None), request, key)


class Answers:
    """Collects the answers `Decider.submit` calls back with."""

    def __init__(self) -> None:
        self.got: dict[int, tuple[dict[str, Any] | None, BaseException | None]] = {}
        self._all = threading.Condition()

    def callback(self, n: int) -> Callable[[dict[str, Any] | None, BaseException | None], None]:
        def answered(answer: dict[str, Any] | None, error: BaseException | None) -> None:
            with self._all:
                self.got[n] = (answer, error)
                self._all.notify_all()

        return answered

    def wait(self, count: int) -> None:
        with self._all:
            assert self._all.wait_for(lambda: len(self.got) >= count, timeout=20)


class Gate:
    """Wraps `service.decide_group`: records each group's size; the first group waits
    until released, so that what is submitted meanwhile queues behind it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_first: bool = False) -> None:
        self.sizes: list[int] = []
        self.entered, self.release = threading.Event(), threading.Event()
        self._real, self._fail_first = service.decide_group, fail_first
        monkeypatch.setattr(service, "decide_group", self)

    def __call__(self, runtime: Any, asks: list[service.Ask]) -> Any:
        self.sizes.append(len(asks))
        if len(self.sizes) == 1:
            self.entered.set()
            assert self.release.wait(20)
            if self._fail_first:
                raise OperationalError("SELECT", {}, Exception("database is gone"))
        return self._real(runtime, asks)


def codes(answer: dict[str, Any] | None) -> list[str]:
    assert answer is not None
    return [r["code"] for r in answer["reasons"]] + [
        r["code"] for s in answer["subjects"] for r in s["reasons"]
    ]


def test_waiting_requests_are_decided_together_each_with_its_own_answer(
    app: FastAPI, agreement: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(monkeypatch)
    decider: Decider = app.state.runtime.decider
    answers = Answers()
    decider.submit(ask(agreement, subjects=["subject-1"]), answers.callback(0))
    assert gate.entered.wait(20)
    queued = [
        ask(agreement, subjects=["subject-2"]),  # no consent
        ask(agreement, org="health-trust", subjects=["subject-1"]),  # a provider, not recipient
        ask(agreement, aggregate={"cohort_size": 50}),
        ask(UNKNOWN, subjects=["subject-1"]),
        ask(agreement, key="k-1", subjects=["subject-1", "subject-2"]),
    ]
    for n, queued_ask in enumerate(queued, start=1):
        decider.submit(queued_ask, answers.callback(n))
    gate.release.set()
    answers.wait(6)

    assert gate.sizes == [1, 5]
    assert all(error is None for _, error in answers.got.values())
    got = {n: answer for n, (answer, _) in answers.got.items() if answer is not None}
    assert len(got) == 6
    assert [got[n]["allow"] for n in range(6)] == [True, False, False, True, False, False]
    assert "consent_missing" in codes(got[1])
    assert "caller_not_recipient" in codes(got[2])
    assert got[3]["subjects"] == []
    assert "agreement_not_found" in codes(got[4])
    assert [s["allow"] for s in got[5]["subjects"]] == [True, False]
    decisions = {answer["decision_id"] for answer in got.values()}
    seqs = {answer["audit_seq"] for answer in got.values()}
    assert len(decisions) == len(seqs) == 6


def test_a_large_batch_is_decided_apart_from_the_requests_behind_it(
    app: FastAPI, agreement: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(monkeypatch)
    decider = Decider(app.state.runtime, threads=1, max_group=3, max_subjects=10)
    answers = Answers()
    try:
        decider.submit(ask(agreement, subjects=["subject-1"]), answers.callback(0))
        assert gate.entered.wait(20)
        decider.submit(ask(agreement, subjects=[f"s-{n}" for n in range(20)]), answers.callback(1))
        for n in range(2, 6):
            decider.submit(ask(agreement, subjects=["subject-1"]), answers.callback(n))
        decider.submit(ask(agreement, subjects=[f"s-{n}" for n in range(10)]), answers.callback(6))
        gate.release.set()
        answers.wait(7)
    finally:
        decider.close()
    # The batch alone; at most three requests a group; ten subjects do not fit with one.
    assert gate.sizes == [1, 1, 3, 1, 1]
    assert all(answer is not None for answer, _ in answers.got.values())


def test_a_failed_read_fails_its_group_and_the_next_group_is_decided(
    app: FastAPI, agreement: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(monkeypatch, fail_first=True)
    decider: Decider = app.state.runtime.decider
    answers = Answers()
    decider.submit(ask(agreement, subjects=["subject-1"]), answers.callback(0))
    assert gate.entered.wait(20)
    gate.release.set()
    answers.wait(1)
    decider.submit(ask(agreement, subjects=["subject-1"]), answers.callback(1))
    answers.wait(2)
    failed, error = answers.got[0]
    assert failed is None
    assert isinstance(error, OperationalError)
    answer, error = answers.got[1]
    assert error is None
    assert answer is not None
    assert answer["allow"] is True


def test_a_broken_callback_does_not_stop_the_decision_threads(app: FastAPI, agreement: str) -> None:
    decider: Decider = app.state.runtime.decider
    answers = Answers()

    def broken(answer: dict[str, Any] | None, error: BaseException | None) -> None:
        raise RuntimeError("a callback bug")

    decider.submit(ask(agreement, subjects=["subject-1"]), broken)
    decider.submit(ask(agreement, subjects=["subject-1"]), answers.callback(0))
    answers.wait(1)
    assert answers.got[0][1] is None


class EvaluationSpy:
    """Wraps the runtime's engine: records each evaluation's entrypoint and input, and
    sabotages `grouped` evaluations on demand."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, app: FastAPI) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fault: str | None = None
        self._engine = app.state.runtime.policy
        self._real = self._engine.evaluate
        monkeypatch.setattr(self._engine, "evaluate", self)

    def __call__(self, entrypoint: str, document: dict[str, Any]) -> Any:
        self.calls.append((entrypoint, document))
        if entrypoint != GROUPED_ENTRYPOINT or self.fault is None:
            return self._real(entrypoint, document)
        if self.fault == "error":
            raise PolicyError("engine crashed")
        real = self._real(entrypoint, document)
        if self.fault == "one_entry_too_few":
            return real[:-1]
        assert self.fault == "second_entry_for_another_subject"
        second = real[1]
        subjects = [{**s, "subject": "ps_other", "allow": True} for s in second["subjects"]]
        return [real[0], {**second, "allow": True, "subjects": subjects}, *real[2:]]

    def entrypoints(self) -> list[str]:
        return [entrypoint for entrypoint, _ in self.calls]


def decide_together(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch, asks: list[service.Ask]
) -> list[tuple[dict[str, Any] | None, BaseException | None]]:
    """Decide `asks` as one group (behind a first request that waits at the gate)."""
    gate = Gate(monkeypatch)
    decider: Decider = app.state.runtime.decider
    answers = Answers()
    decider.submit(ask(UNKNOWN, subjects=["subject-1"]), answers.callback(0))
    assert gate.entered.wait(20)
    for n, queued in enumerate(asks, start=1):
        decider.submit(queued, answers.callback(n))
    gate.release.set()
    answers.wait(len(asks) + 1)
    assert gate.sizes == [1, len(asks)]
    return [answers.got[n] for n in range(1, len(asks) + 1)]


def decide_alone(app: FastAPI, queued: service.Ask) -> dict[str, Any]:
    answers = Answers()
    app.state.runtime.decider.submit(queued, answers.callback(0))
    answers.wait(1)
    answer, error = answers.got[0]
    assert error is None
    assert answer is not None
    return answer


def comparable(answer: dict[str, Any] | None) -> dict[str, Any]:
    assert answer is not None
    return {k: v for k, v in answer.items() if k not in ("decision_id", "decided_at", "audit_seq")}


ALIKE = [  # same caller, agreement, purpose and fields; only the subjects differ
    ["subject-1"],
    ["subject-2"],  # no consent
    ["subject-1", "subject-2", "subject-1"],
    ["subject-3"],  # no consent either
]


def test_requests_that_differ_only_in_subjects_are_evaluated_together(
    app: FastAPI, agreement: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = EvaluationSpy(monkeypatch, app)
    other = ask(agreement, subjects=["subject-1"], purpose="research.public_health")
    asks = [ask(agreement, subjects=subjects) for subjects in ALIKE] + [other]
    together = decide_together(app, monkeypatch, asks)
    # The first request alone; then the four alike in one evaluation, the other alone.
    assert spy.entrypoints() == [DECISION_ENTRYPOINT, GROUPED_ENTRYPOINT, DECISION_ENTRYPOINT]
    pseudonymise = app.state.runtime.pseudonymise
    assert spy.calls[1][1]["group"] == [[pseudonymise(s) for s in entry] for entry in ALIKE]
    assert all(error is None for _, error in together)
    assert [answer["allow"] for answer, _ in together if answer] == [
        True,
        False,
        False,
        False,
        True,
    ]

    # Each answer is the one its request gets alone, and its stored input is its own.
    spy.calls.clear()
    for queued, (answer, _) in zip(asks, together, strict=True):
        assert comparable(decide_alone(app, queued)) == comparable(answer)
    assert spy.entrypoints() == [DECISION_ENTRYPOINT] * len(asks)
    with app.state.runtime.read_sessions() as session:
        for (answer, _), alone_call in zip(together, spy.calls, strict=True):
            assert answer is not None
            stored = session.get(Decision, answer["decision_id"])
            assert stored is not None
            assert "group" not in stored.input_document
            assert stored.input_document["request"] == alone_call[1]["request"]
            assert stored.input_document["consents"] == alone_call[1]["consents"]


def test_a_group_denied_at_request_level_is_evaluated_request_by_request(
    app: FastAPI, agreement: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = EvaluationSpy(monkeypatch, app)
    asks = [ask(agreement, org="health-trust", subjects=subjects) for subjects in ALIKE]
    together = decide_together(app, monkeypatch, asks)
    assert spy.entrypoints() == [DECISION_ENTRYPOINT, GROUPED_ENTRYPOINT] + [
        DECISION_ENTRYPOINT
    ] * len(ALIKE)
    for answer, error in together:
        assert error is None
        assert answer is not None
        assert answer["allow"] is False
        assert [r["code"] for r in answer["reasons"]] == ["caller_not_recipient"]


@pytest.mark.parametrize("fault", ["error", "one_entry_too_few"])
def test_a_failed_grouped_evaluation_fails_every_request_closed(
    app: FastAPI, agreement: str, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    spy = EvaluationSpy(monkeypatch, app)
    spy.fault = fault
    together = decide_together(app, monkeypatch, [ask(agreement, subjects=s) for s in ALIKE])
    assert spy.entrypoints() == [DECISION_ENTRYPOINT, GROUPED_ENTRYPOINT]
    for answer, error in together:
        assert error is None
        assert answer is not None
        assert answer["allow"] is False
        assert [r["code"] for r in answer["reasons"]] == ["policy_unavailable"]
    with app.state.runtime.read_sessions() as session:
        failed = session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == AuditAction.DECISION_FAILED)
        )
    assert failed == len(ALIKE)


def test_a_malformed_grouped_entry_fails_only_its_request_closed(
    app: FastAPI, agreement: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second entry allows another subject than its request's: that one request fails
    closed, the others stand."""
    spy = EvaluationSpy(monkeypatch, app)
    spy.fault = "second_entry_for_another_subject"
    together = decide_together(app, monkeypatch, [ask(agreement, subjects=s) for s in ALIKE])
    answers = [answer for answer, _ in together]
    assert all(answer is not None for answer in answers)
    assert [a["allow"] for a in answers if a] == [True, False, False, False]
    assert [[r["code"] for r in a["reasons"]] for a in answers if a] == [
        [],
        ["policy_unavailable"],
        ["some_subjects_denied"],
        ["some_subjects_denied"],
    ]
