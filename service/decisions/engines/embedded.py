"""The embedded engine: regorus (Microsoft's Rust Rego interpreter) in-process.

A regorus `Engine` panics when it is used, or even dropped, on a thread other than the one
that built it. So every thread that evaluates compiles its own engine, once per bundle
revision, and keeps it in a thread-local that lives as long as the process: an engine is
only ever touched, and dropped, by its own thread (when the thread ends, or when a newer
revision replaces it there).

regorus holds the GIL while it evaluates, so a running evaluation cannot be interrupted: an
answer that arrives after the deadline is refused (fail closed). Keep policies linear.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import orjson
import regorus

from service.decisions.engines.base import (
    DECISION_ENTRYPOINT,
    REVIEW_ENTRYPOINT,
    BundleRejected,
    PolicyBundle,
    PolicyError,
    PolicyTimeout,
    PolicyUndefined,
)

# Per thread: revision -> compiled engine (a few, for processes with several bundles).
_THREAD_ENGINES = threading.local()
_ENGINES_PER_THREAD = 4
# What eval_rule_as_json answers for an undefined rule (a string is never a decision).
_UNDEFINED = '"<undefined>"'
# What regorus raises for a rule the bundle does not have: undefined, as in OPA's Data API.
_NO_SUCH_RULE = "not a valid rule path"


def _compile(bundle: PolicyBundle) -> Any:
    engine = regorus.Engine()
    try:
        for path, source in bundle.modules.items():
            engine.add_policy(path, source)
    except Exception as exc:  # regorus raises RuntimeError for parse and compile errors
        message = _first_line(exc)
    else:
        return engine
    # Drop the engine here, before raising: a traceback carried to another thread would
    # otherwise keep it alive there, and regorus panics when dropped off its thread.
    del engine
    raise BundleRejected(message)


def check_contract(bundle: PolicyBundle) -> None:
    """Refuse (BundleRejected) a bundle that does not compile, or that compiles but breaks
    the contract the service relies on: `result` is a decision and `review` an answer on
    any input, the empty one included (a bundle without them would fail every decision
    closed, or every submission). Checked with regorus whichever engine then serves the
    bundle; the engine is dropped here, on this thread."""
    engine = _compile(bundle)
    try:
        engine.set_input_json("{}")
        problem = None
        for rule, key in ((DECISION_ENTRYPOINT, "allow"), (REVIEW_ENTRYPOINT, "required")):
            path = "data." + rule.replace("/", ".")
            try:
                answer = orjson.loads(engine.eval_rule_as_json(path))
            except Exception as exc:
                answer = _first_line(exc)
            if not isinstance(answer, dict) or not isinstance(answer.get(key), bool):
                problem = f"{path} is not defined as the contract says (on an empty input)"
                break
    finally:
        del engine
    if problem is not None:
        raise BundleRejected(problem)


def _engine_for(bundle: PolicyBundle) -> Any:
    engines: dict[str, Any] | None = getattr(_THREAD_ENGINES, "engines", None)
    if engines is None:
        engines = _THREAD_ENGINES.engines = {}
    engine = engines.get(bundle.revision)
    if engine is None:
        if len(engines) >= _ENGINES_PER_THREAD:
            engines.pop(next(iter(engines)))
        engine = engines[bundle.revision] = _compile(bundle)
    return engine


def _evaluate_here(bundle: PolicyBundle, rule: str, input_document: Mapping[str, Any]) -> Any:
    engine = _engine_for(bundle)
    try:
        # JSON both ways: orjson and regorus's own parser are faster than converting objects.
        engine.set_input_json(orjson.dumps(input_document).decode())
        answer = engine.eval_rule_as_json(rule)
        return None if answer == _UNDEFINED else orjson.loads(answer)
    finally:
        # A traceback may travel to another thread; it must not hold the engine.
        del engine


def _first_line(exc: BaseException) -> str:
    """regorus errors carry a Rust backtrace; keep the message only."""
    return str(exc).split("Stack backtrace:")[0].strip()[:500]


class EmbeddedEngine:
    name = "embedded"

    def __init__(self, bundle: PolicyBundle, timeout_seconds: float = 5.0) -> None:
        self._timeout = timeout_seconds
        self._bundle: PolicyBundle | None = None
        self.load(bundle)

    @property
    def revision(self) -> str:
        assert self._bundle is not None
        return self._bundle.revision

    def load(self, bundle: PolicyBundle) -> None:
        """Compile once to check (on this thread, dropped here); threads compile lazily."""
        _compile(bundle)
        self._bundle = bundle

    def evaluate(self, entrypoint: str, input_document: Mapping[str, Any]) -> Any:
        bundle = self._bundle
        assert bundle is not None
        rule = "data." + entrypoint.replace("/", ".")
        started = time.monotonic()
        try:
            value = _evaluate_here(bundle, rule, input_document)
        except BundleRejected as exc:
            raise PolicyError(str(exc)) from None
        except Exception as exc:
            message = _first_line(exc)
            if message == _NO_SUCH_RULE:
                raise PolicyUndefined(f"{rule} is not in the bundle") from None
            raise PolicyError(f"evaluation failed: {message}") from None
        if time.monotonic() - started > self._timeout:
            raise PolicyTimeout(f"no answer within {self._timeout}s")
        if value is None:
            raise PolicyUndefined(f"{rule} is undefined")
        return value

    def close(self) -> None:
        """Nothing to release: each thread's engines go with the thread."""
