"""The policy engine protocol and the policy bundle it evaluates."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

# Rule paths the service queries, in OPA's Data API form (slash separated under data/).
DECISION_ENTRYPOINT = "accord/decision/result"
# Several decision requests that differ only in their subjects, in one evaluation.
GROUPED_ENTRYPOINT = "accord/decision/grouped"
REVIEW_ENTRYPOINT = "accord/agreement/review"


class PolicyError(Exception):
    """The policy could not be evaluated; never treat this as an allow."""


class PolicyTimeout(PolicyError):
    pass


class PolicyUndefined(PolicyError):
    pass


class BundleRejected(PolicyError):
    pass


@dataclass(frozen=True, slots=True)
class PolicyBundle:
    """The Rego modules of `policies/` (tests excluded) and their digest."""

    modules: Mapping[str, str]  # relative path -> source
    revision: str

    @classmethod
    def from_modules(cls, modules: Mapping[str, str]) -> PolicyBundle:
        digest = hashlib.sha256()
        for path in sorted(modules):
            digest.update(path.encode() + b"\0" + modules[path].encode() + b"\0")
        return cls(modules=dict(modules), revision="sha256:" + digest.hexdigest()[:32])


def load_bundle(directory: Path, *, include_tests: bool = False) -> PolicyBundle:
    """Read every `.rego` file below `directory`; `*_test.rego` only when asked."""
    modules = {}
    for path in sorted(directory.rglob("*.rego")):
        if path.name.endswith("_test.rego") and not include_tests:
            continue
        modules[path.relative_to(directory).as_posix()] = path.read_text(encoding="utf-8")
    if not modules:
        raise BundleRejected(f"no Rego modules under {directory}")
    return PolicyBundle.from_modules(modules)


class PolicyEngine(Protocol):
    """Evaluates the loaded bundle. No database, no clock: everything comes in `input`."""

    name: str

    @property
    def revision(self) -> str: ...

    def load(self, bundle: PolicyBundle) -> None:
        """Compile and switch to `bundle`; on failure raise BundleRejected and keep the old."""
        ...

    def evaluate(self, entrypoint: str, input_document: Mapping[str, Any]) -> Any:
        """The value of `data.<entrypoint>` for this input; raises PolicyError."""
        ...

    def close(self) -> None: ...
