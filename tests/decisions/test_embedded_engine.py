"""The embedded engine directly: compile once, fail closed, thread-bound engines."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from service.decisions.engines import (
    BundleRejected,
    PolicyBundle,
    PolicyError,
    PolicyTimeout,
    PolicyUndefined,
)
from service.decisions.engines.embedded import EmbeddedEngine

ECHO = PolicyBundle.from_modules(
    {"echo.rego": 'package accord.echo\nimport rego.v1\nresult := {"n": input.n * 2}\n'}
)
SLOW = PolicyBundle.from_modules(
    {
        "slow.rego": (
            "package accord.slow\nimport rego.v1\n"
            "result := count([1 | some x in numbers.range(1, 1200); "
            "some y in numbers.range(1, 1200)])\n"
        )
    }
)


def test_answers_and_undefined() -> None:
    engine = EmbeddedEngine(ECHO)
    try:
        assert engine.evaluate("accord/echo/result", {"n": 21}) == {"n": 42}
        with pytest.raises(PolicyUndefined):
            engine.evaluate("accord/echo/result", {})
        with pytest.raises(PolicyError) as type_error:  # regorus raises, it does not guess
            engine.evaluate("accord/echo/result", {"n": "not a number"})
        assert "Stack backtrace" not in str(type_error.value)
    finally:
        engine.close()


def test_a_rule_the_bundle_lacks_is_undefined_as_in_opa() -> None:
    """OPA's Data API answers no `result` for a path no rule defines; so does this engine,
    so that a bundle without an optional entrypoint (e.g. `grouped`) falls back alike."""
    engine = EmbeddedEngine(ECHO)
    try:
        with pytest.raises(PolicyUndefined):
            engine.evaluate("accord/echo/missing", {"n": 1})
        with pytest.raises(PolicyUndefined):
            engine.evaluate("accord/elsewhere/result", {"n": 1})
    finally:
        engine.close()


def test_bad_bundle_is_refused_and_the_old_one_stays() -> None:
    engine = EmbeddedEngine(ECHO)
    try:
        bad = PolicyBundle.from_modules({"bad.rego": "package accord.bad\nx if {"})
        with pytest.raises(BundleRejected) as refused:
            engine.load(bad)
        assert "Stack backtrace" not in str(refused.value)
        assert engine.revision == ECHO.revision
        assert engine.evaluate("accord/echo/result", {"n": 1}) == {"n": 2}
    finally:
        engine.close()


def test_a_late_answer_is_refused() -> None:
    """regorus holds the GIL and cannot be interrupted: an overrun is refused when it ends."""
    engine = EmbeddedEngine(SLOW, timeout_seconds=0.05)
    try:
        with pytest.raises(PolicyTimeout):
            engine.evaluate("accord/slow/result", {})
    finally:
        engine.close()


def test_many_threads_get_their_own_answers() -> None:
    engine = EmbeddedEngine(ECHO)
    try:
        with ThreadPoolExecutor(max_workers=32) as pool:
            results = list(
                pool.map(lambda n: engine.evaluate("accord/echo/result", {"n": n}), range(500))
            )
        assert results == [{"n": 2 * n} for n in range(500)]
    finally:
        engine.close()


def test_revision_is_a_digest_of_the_modules() -> None:
    same = PolicyBundle.from_modules(dict(ECHO.modules))
    assert same.revision == ECHO.revision
    changed = PolicyBundle.from_modules({"echo.rego": ECHO.modules["echo.rego"] + "\n"})
    assert changed.revision != ECHO.revision
