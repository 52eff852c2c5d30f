"""Run every Rego unit test of the policy bundle in regorus, one pytest case per Rego test.

Every module under policies/ (including the *_test.rego modules) is loaded into one
regorus engine; every rule named `test_*` in every package is evaluated and must be true
(a failing Rego test is undefined, so it evaluates to None).
"""

from __future__ import annotations

import json
import re
import threading
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import regorus

POLICIES = Path(__file__).resolve().parents[2] / "policies"

# The bundle has more; fail loudly if discovery silently finds fewer.
MIN_REGO_TESTS = 90

_PACKAGE = re.compile(r"^package\s+([A-Za-z_][\w.]*)", re.MULTILINE)


def load_modules(*, include_tests: bool = True) -> dict[str, str]:
    """Every .rego module under policies/, keyed by its path relative to policies/."""
    modules = {}
    for path in sorted(POLICIES.rglob("*.rego")):
        if path.name.endswith("_test.rego") and not include_tests:
            continue
        modules[path.relative_to(POLICIES).as_posix()] = path.read_text(encoding="utf-8")
    return modules


def build_engine(modules: dict[str, str]) -> Any:
    engine = regorus.Engine()
    for path, source in modules.items():
        engine.add_policy(path, source)
    return engine


@cache
def _engine_for_thread(thread_id: int) -> Any:
    # A regorus Engine must only be used on the thread that created it.
    del thread_id
    return build_engine(load_modules())


def engine() -> Any:
    return _engine_for_thread(threading.get_ident())


def _rule_name(rule: dict[str, Any]) -> str | None:
    """The name of a plain (non-function, non-default) rule from regorus's AST."""
    head = rule.get("Spec", {}).get("head", {})
    compr = head.get("Compr") if isinstance(head, dict) else None
    if not isinstance(compr, dict):
        return None
    var = compr.get("refr", {}).get("Var")
    return str(var["value"]) if isinstance(var, dict) else None


def discover_tests() -> list[tuple[str, str]]:
    """(package, rule) for every `test_*` rule, in module order, without duplicates."""
    found: dict[tuple[str, str], None] = {}
    for module in json.loads(build_engine(load_modules()).get_ast_as_json()):
        source = module["source"]["contents"]
        match = _PACKAGE.search(source)
        assert match is not None, f"{module['source']['file']}: no package"
        package = match.group(1)
        for rule in module["ast"]["rules"]:
            name = _rule_name(rule)
            if name is not None and name.startswith("test_"):
                found[(package, name)] = None
    return list(found)


REGO_TESTS = discover_tests()


@pytest.mark.parametrize(
    ("package", "rule"),
    REGO_TESTS,
    ids=[f"{package}.{rule}" for package, rule in REGO_TESTS],
)
def test_rego(package: str, rule: str) -> None:
    value = engine().eval_rule(f"data.{package}.{rule}")
    assert value is True, f"data.{package}.{rule} is {value!r}, expected true"


def test_enough_rego_tests() -> None:
    assert len(REGO_TESTS) >= MIN_REGO_TESTS, [f"{p}.{r}" for p, r in REGO_TESTS]


def test_every_test_module_has_tests() -> None:
    packages_with_tests = {package for package, _ in REGO_TESTS}
    for path, source in load_modules().items():
        if not path.endswith("_test.rego") or path.endswith("fixtures_test.rego"):
            continue
        match = _PACKAGE.search(source)
        assert match is not None
        assert match.group(1) in packages_with_tests, f"{path} defines no test_* rule"


def test_discovery_agrees_with_the_source_text() -> None:
    """The AST walk finds exactly the `test_*` rule heads a plain reading finds."""
    by_text = set()
    for path, source in load_modules().items():
        if not path.endswith("_test.rego"):
            continue
        match = _PACKAGE.search(source)
        assert match is not None
        for name in re.findall(r"^(test_\w+)\s+if\b", source, re.MULTILINE):
            by_text.add((match.group(1), name))
    assert by_text == set(REGO_TESTS)


def test_failing_rego_test_is_reported() -> None:
    """A false test rule is undefined in regorus; the runner must not read it as a pass."""
    probe = build_engine(
        {"probe_test.rego": "package probe_test\n\nimport rego.v1\n\ntest_false if 1 == 2\n"}
    )
    assert probe.eval_rule("data.probe_test.test_false") is None


def test_bundle_without_tests_compiles() -> None:
    """What the service loads (every module except *_test.rego) compiles on its own."""
    service_engine = build_engine(load_modules(include_tests=False))
    # Even with no input document at all, both entrypoints are defined and fail closed.
    decision = service_engine.eval_rule("data.accord.decision.result")
    assert decision["allow"] is False
    review = service_engine.eval_rule("data.accord.agreement.review")
    assert review["required"] is True
