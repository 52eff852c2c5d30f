"""The embedded engine: regorus (Microsoft's Rust Rego interpreter) in-process.

A regorus `Engine` panics when it is used, or even dropped, on a thread other than the one
that built it. So evaluations run on a small pool of evaluator threads that this class
owns: each compiles its own engine once per bundle revision and keeps it, and the engines
die with their threads. Callers wait with a deadline, which gives the embedded engine a
deadline: a queued evaluation gives up in time, and a running one that overruns is refused
when it ends (regorus holds the GIL, so it cannot be interrupted; keep policies linear).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import regorus

from service.decisions.engines.base import (
    BundleRejected,
    PolicyBundle,
    PolicyError,
    PolicyTimeout,
    PolicyUndefined,
)

# Per evaluator thread: revision -> compiled engine. Module-level so that it is never
# garbage-collected from another thread; a thread's entries go when that thread exits.
_THREAD_ENGINES = threading.local()


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


def _check(bundle: PolicyBundle) -> None:
    """Compile on the evaluator thread and drop the engine there."""
    _compile(bundle)


def _first_line(exc: BaseException) -> str:
    """regorus errors carry a Rust backtrace; keep the message only."""
    return str(exc).split("Stack backtrace:")[0].strip()[:500]


class EmbeddedEngine:
    name = "embedded"

    def __init__(
        self, bundle: PolicyBundle, timeout_seconds: float = 5.0, threads: int = 2
    ) -> None:
        self._timeout = timeout_seconds
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rego")
        self._bundle: PolicyBundle | None = None
        self.load(bundle)

    @property
    def revision(self) -> str:
        assert self._bundle is not None
        return self._bundle.revision

    def load(self, bundle: PolicyBundle) -> None:
        self._pool.submit(_check, bundle).result(timeout=60)
        self._bundle = bundle

    @staticmethod
    def _evaluate_here(bundle: PolicyBundle, rule: str, input_json: str) -> Any:
        local = _THREAD_ENGINES
        if getattr(local, "revision", None) != bundle.revision:
            local.engine = _compile(bundle)
            local.revision = bundle.revision
        local.engine.set_input_json(input_json)
        return local.engine.eval_rule(rule)

    def evaluate(self, entrypoint: str, input_document: Mapping[str, Any]) -> Any:
        bundle = self._bundle
        assert bundle is not None
        rule = "data." + entrypoint.replace("/", ".")
        started = time.monotonic()
        try:
            input_json = json.dumps(input_document, separators=(",", ":"))
            future = self._pool.submit(self._evaluate_here, bundle, rule, input_json)
            value = future.result(timeout=self._timeout)
        except FutureTimeout as exc:
            raise PolicyTimeout(f"no answer within {self._timeout}s") from exc
        except Exception as exc:
            raise PolicyError(f"evaluation failed: {_first_line(exc)}") from exc
        # regorus holds the GIL while it evaluates, so the waiter above may only wake once
        # the evaluation is over: a late answer is refused all the same.
        if time.monotonic() - started > self._timeout:
            raise PolicyTimeout(f"no answer within {self._timeout}s")
        if value is None:
            raise PolicyUndefined(f"{rule} is undefined")
        return value

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
