"""The `opa` engine against an OPA-REST-compatible test server (no OPA binary is available).

The server (tests/support/opa_server.py) really evaluates Rego, with regorus; these tests
check the client side: request shape, response parsing, failure mapping, time bounds,
uploads, thread safety, and that both engines give the same answers.
"""

from __future__ import annotations

import copy
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from service.decisions.engines.base import (
    DECISION_ENTRYPOINT,
    BundleRejected,
    PolicyBundle,
    PolicyEngine,
    PolicyError,
    PolicyTimeout,
    PolicyUndefined,
    load_bundle,
)
from service.decisions.engines.embedded import EmbeddedEngine
from service.decisions.engines.opa import OpaEngine

REPO = Path(__file__).resolve().parents[2]
# `tests` is not installed; with `pythonpath = ["."]` in the pytest config this can go.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.opa_server import OpaTestServer, running_opa_server  # noqa: E402

POLICY = """package accord.decision

default allow := false

allowed_fields := {"age", "postcode", "diagnosis"}

denied_fields contains field if {
	some field in input.request.fields
	not field in allowed_fields
}

reasons contains "role not permitted" if input.principal.role != "researcher"

reasons contains sprintf("field not permitted: %s", [field]) if some field in denied_fields

reasons contains "cohort too small" if input.request.cohort_size < 10

allow if count(reasons) == 0

result := {
	"allow": allow,
	"reasons": sort(reasons),
	"subjects": [s | some s in input.request.subjects],
} if input.principal
"""
POLICY_V2 = POLICY.replace('"role not permitted" if', '"role not permitted (v2)" if')
EXTRA = 'package accord.extra\n\nversion := "extra"\n'
EXTRA_V2 = 'package accord.extra\n\nversion := "extra v2"\n'
BUNDLE = PolicyBundle.from_modules({"accord/decision.rego": POLICY, "accord/extra.rego": EXTRA})
BUNDLE_V2 = PolicyBundle.from_modules({"accord/decision.rego": POLICY_V2})
TIMEOUT = 2.0


def doc(role: str = "researcher", fields: tuple[str, ...] = ("age",), cohort: int = 20) -> Any:
    return {
        "principal": {"subject": "alice", "role": role},
        "request": {"fields": list(fields), "cohort_size": cohort, "subjects": ["p-1", "p-2"]},
    }


ALLOWED = {"allow": True, "reasons": [], "subjects": ["p-1", "p-2"]}
DENIED_ROLE = {"allow": False, "reasons": ["role not permitted"], "subjects": ["p-1", "p-2"]}


def outcome(engine: PolicyEngine, input_document: Any) -> Any:
    """The result, or the exception class: what the caller would act on."""
    try:
        return ("ok", engine.evaluate(DECISION_ENTRYPOINT, input_document))
    except PolicyError as exc:
        return ("error", type(exc).__name__)


@pytest.fixture
def server() -> Iterator[OpaTestServer]:
    with running_opa_server(BUNDLE.modules) as running:
        yield running


@pytest.fixture
def engine(server: OpaTestServer) -> Iterator[OpaEngine]:
    with closing(OpaEngine(BUNDLE, server.url, TIMEOUT, upload=False)) as opa:
        # Loading without upload only reads what OPA serves, to check it is the bundle.
        assert server.requests == [("GET", "/v1/policies", None)]
        server.requests.clear()
        yield opa


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- request shape and parsing ------------------------------------------------------------


def test_request_shape_and_result(server: OpaTestServer, engine: OpaEngine) -> None:
    assert engine.name == "opa"
    assert engine.revision == BUNDLE.revision

    assert engine.evaluate(DECISION_ENTRYPOINT, doc()) == ALLOWED
    assert server.requests == [("POST", "/v1/data/accord/decision/result", {"input": doc()})]


def test_result_parsing_allow_and_deny(engine: OpaEngine) -> None:
    assert engine.evaluate(DECISION_ENTRYPOINT, doc(role="clerk")) == DENIED_ROLE
    assert engine.evaluate(DECISION_ENTRYPOINT, doc(fields=("age", "name"), cohort=3)) == {
        "allow": False,
        "reasons": ["cohort too small", "field not permitted: name"],
        "subjects": ["p-1", "p-2"],
    }
    assert engine.evaluate("accord/extra/version", {}) == "extra"
    assert engine.evaluate("accord", {})["extra"] == {"version": "extra"}


def test_unicode_survives_the_round_trip(engine: OpaEngine) -> None:
    result = engine.evaluate(DECISION_ENTRYPOINT, doc(fields=('näme \u2603 "q"',)))
    assert result["reasons"] == ['field not permitted: näme \u2603 "q"']


def test_undefined_result_is_policy_undefined(server: OpaTestServer, engine: OpaEngine) -> None:
    with pytest.raises(PolicyUndefined):
        engine.evaluate(DECISION_ENTRYPOINT, {"request": {}})  # no principal: no result
    with pytest.raises(PolicyUndefined):
        engine.evaluate("accord/decision/no_such_rule", doc())
    assert server.requests[0][1] == "/v1/data/accord/decision/result"


@pytest.mark.parametrize("entrypoint", ["", "accord/../x", "accord/decision/result?x=1", "a//b"])
def test_invalid_entrypoint_is_refused_without_a_request(
    server: OpaTestServer, engine: OpaEngine, entrypoint: str
) -> None:
    with pytest.raises(PolicyError):
        engine.evaluate(entrypoint, doc())
    assert server.requests == []


def test_unserialisable_input_is_policy_error(engine: OpaEngine) -> None:
    with pytest.raises(PolicyError):
        engine.evaluate(DECISION_ENTRYPOINT, {"now": object()})
    with pytest.raises(PolicyError):
        engine.evaluate(DECISION_ENTRYPOINT, {"x": float("nan")})


# -- failures: always a PolicyError, never anything else ----------------------------------


def test_server_error_is_policy_error_and_not_retried(
    server: OpaTestServer, engine: OpaEngine
) -> None:
    server.inject("error")
    with pytest.raises(PolicyError) as raised:
        engine.evaluate(DECISION_ENTRYPOINT, doc())
    assert type(raised.value) is PolicyError
    assert "500" in str(raised.value)
    assert "internal_error: injected failure" in str(raised.value)
    assert len(server.requests) == 1
    assert engine.evaluate(DECISION_ENTRYPOINT, doc()) == ALLOWED  # the next one is fine


def test_real_evaluation_error_is_policy_error(engine: OpaEngine) -> None:
    conflicting = PolicyBundle.from_modules({"x.rego": "package x\n\nv := 1 / input.d\n"})
    with running_opa_server(conflicting.modules) as other:
        opa = OpaEngine(conflicting, other.url, TIMEOUT, upload=False)
        with closing(opa), pytest.raises(PolicyError) as raised:
            opa.evaluate("x/v", {"d": 0})
    assert type(raised.value) is PolicyError
    assert "internal_error" in str(raised.value)


@pytest.mark.parametrize("mode", ["garbage", "non_object", "drop", "reject"])
def test_bad_answers_are_policy_errors(server: OpaTestServer, engine: OpaEngine, mode: Any) -> None:
    server.inject(mode)
    with pytest.raises(PolicyError) as raised:
        engine.evaluate(DECISION_ENTRYPOINT, doc())
    assert type(raised.value) is PolicyError
    assert engine.evaluate(DECISION_ENTRYPOINT, doc()) == ALLOWED


def test_result_of_unexpected_shape_is_passed_on_like_the_embedded_engine(
    server: OpaTestServer, engine: OpaEngine
) -> None:
    """The engine returns data.<entrypoint> whatever it is; the caller validates its shape."""
    server.inject("wrong_result")
    assert engine.evaluate(DECISION_ENTRYPOINT, doc()) == "not-an-object"
    odd = PolicyBundle.from_modules(
        {"d.rego": 'package accord.decision\n\nresult := "not-an-object"\n'}
    )
    assert EmbeddedEngine(odd).evaluate(DECISION_ENTRYPOINT, doc()) == "not-an-object"


def test_connection_refused_is_policy_error_quickly() -> None:
    with running_opa_server(BUNDLE.modules) as server:
        opa = OpaEngine(BUNDLE, server.url, TIMEOUT, upload=False)
    with closing(opa):  # OPA has gone since the engine was loaded
        started = time.monotonic()
        with pytest.raises(PolicyError) as raised:
            opa.evaluate(DECISION_ENTRYPOINT, doc())
        assert type(raised.value) is PolicyError
        assert time.monotonic() - started < 1.0
        for upload in (True, False):  # nothing to upload to, or to check against
            with pytest.raises(BundleRejected):
                OpaEngine(BUNDLE, f"http://127.0.0.1:{free_port()}", TIMEOUT, upload=upload)


def test_hanging_server_times_out_within_bound(server: OpaTestServer) -> None:
    timeout = 0.3
    with closing(OpaEngine(BUNDLE, server.url, timeout, upload=False)) as opa:
        server.inject("hang", seconds=10)
        started = time.monotonic()
        with pytest.raises(PolicyTimeout):
            opa.evaluate(DECISION_ENTRYPOINT, doc())
        elapsed = time.monotonic() - started
        assert timeout <= elapsed < timeout + 0.5
        assert opa.evaluate(DECISION_ENTRYPOINT, doc()) == ALLOWED


def test_slow_but_complete_answer_past_the_timeout_is_refused(server: OpaTestServer) -> None:
    with closing(OpaEngine(BUNDLE, server.url, 0.5, upload=False)) as opa:
        server.inject("hang", seconds=0.2)
        assert opa.evaluate(DECISION_ENTRYPOINT, doc()) == ALLOWED  # within the bound
        opa._timeout = 0.1  # the client's socket timeout stays 0.5: only the deadline trips
        server.inject("hang", seconds=0.2)
        with pytest.raises(PolicyTimeout):
            opa.evaluate(DECISION_ENTRYPOINT, doc())


@pytest.mark.parametrize(
    "url", ["127.0.0.1:8181", "ftp://opa:8181", "http://opa:8181/v1", "http://u:p@opa:8181"]
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="OPA URL"):
        OpaEngine(BUNDLE, url, TIMEOUT, upload=False)


# -- loading and uploading ----------------------------------------------------------------


def test_upload_installs_every_module() -> None:
    with running_opa_server({}) as server, closing(OpaEngine(BUNDLE, server.url, TIMEOUT)) as opa:
        assert server.modules == BUNDLE.modules
        assert server.requests == [
            ("PUT", "/v1/policies/accord/decision.rego", POLICY),
            ("PUT", "/v1/policies/accord/extra.rego", EXTRA),
        ]
        assert opa.evaluate(DECISION_ENTRYPOINT, doc(role="clerk")) == DENIED_ROLE


def test_reload_switches_revision_and_removes_stale_modules() -> None:
    with running_opa_server({}) as server, closing(OpaEngine(BUNDLE, server.url, TIMEOUT)) as opa:
        opa.load(BUNDLE_V2)
        assert opa.revision == BUNDLE_V2.revision
        assert server.modules == BUNDLE_V2.modules
        assert ("DELETE", "/v1/policies/accord/extra.rego", None) in server.requests
        result = opa.evaluate(DECISION_ENTRYPOINT, doc(role="clerk"))
        assert result["reasons"] == ["role not permitted (v2)"]


def test_bad_module_is_rejected_before_opa_is_touched(server: OpaTestServer) -> None:
    with closing(OpaEngine(BUNDLE, server.url, TIMEOUT)) as opa:
        sent = len(server.requests)
        broken = PolicyBundle.from_modules({"accord/decision.rego": "package accord.decision\nx {"})
        with pytest.raises(BundleRejected):
            opa.load(broken)
        assert opa.revision == BUNDLE.revision
        assert len(server.requests) == sent
        assert opa.evaluate(DECISION_ENTRYPOINT, doc()) == ALLOWED


def test_the_test_server_rejects_modules_that_do_not_compile(server: OpaTestServer) -> None:
    response = requests.put(f"{server.url}/v1/policies/bad.rego", data="package x\nx {", timeout=5)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_parameter"
    assert body["errors"][0]["location"]["file"] == "bad.rego"
    assert "bad.rego" not in server.modules
    response = requests.post(f"{server.url}/v1/data/accord", data="{not json", timeout=5)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_parameter"
    assert requests.get(f"{server.url}/health", timeout=5).json() == {}


def test_opa_refusing_a_module_midway_rolls_back_and_keeps_the_revision(
    server: OpaTestServer,
) -> None:
    with closing(OpaEngine(BUNDLE, server.url, TIMEOUT)) as opa:
        both = {"accord/decision.rego": POLICY_V2, "accord/extra.rego": EXTRA_V2}
        server.inject("reject", after=1)  # the first PUT is installed, the second refused
        with pytest.raises(BundleRejected, match="previous modules were restored"):
            opa.load(PolicyBundle.from_modules(both))
        assert opa.revision == BUNDLE.revision
        assert server.modules == BUNDLE.modules
        assert opa.evaluate(DECISION_ENTRYPOINT, doc(role="clerk")) == DENIED_ROLE


def test_first_upload_failing_leaves_nothing_behind() -> None:
    with running_opa_server({}) as server:
        server.inject("error", after=1)
        with pytest.raises(BundleRejected, match="internal_error"):
            OpaEngine(BUNDLE, server.url, TIMEOUT)
        assert server.modules == {}


def test_without_upload_a_bundle_is_taken_only_when_opa_serves_it(
    server: OpaTestServer, engine: OpaEngine
) -> None:
    """The revision recorded on decisions must be the one OPA evaluates."""
    with pytest.raises(BundleRejected, match="OPA does not serve"):
        engine.load(BUNDLE_V2)  # the files here changed, OPA's did not
    assert engine.revision == BUNDLE.revision
    assert [(m, p) for m, p, _ in server.requests] == [("GET", "/v1/policies")]
    assert server.modules == BUNDLE.modules  # nothing was sent

    # The operator updates OPA's files (mounted: ids are paths below the mount point), and
    # OPA also holds test modules and another team's policies: then the bundle is taken.
    server.modules = {f"/policies/{path}": source for path, source in BUNDLE_V2.modules.items()}
    server.modules["/policies/accord/decision_test.rego"] = "package accord.decision_test\n"
    server.modules["/other/team.rego"] = "package team\n\nallow := true\n"
    engine.load(BUNDLE_V2)
    assert engine.revision == BUNDLE_V2.revision

    # An accord module the bundle does not have could change decisions: refused.
    server.modules["/policies/accord/extra.rego"] = "package accord.extra\n\nx := 1\n"
    with pytest.raises(BundleRejected, match="not in the bundle"):
        engine.load(BUNDLE_V2)
    del server.modules["/policies/accord/extra.rego"]
    server.inject("error")
    with pytest.raises(BundleRejected, match="internal_error"):
        engine.load(BUNDLE_V2)
    assert engine.revision == BUNDLE_V2.revision


# -- concurrency and agreement ------------------------------------------------------------

CASES = [
    (doc(), ALLOWED),
    (doc(role="clerk"), DENIED_ROLE),
    (doc(cohort=5), {**ALLOWED, "allow": False, "reasons": ["cohort too small"]}),
    (doc(fields=("ssn",)), {**ALLOWED, "allow": False, "reasons": ["field not permitted: ssn"]}),
]


def test_concurrent_evaluations_each_get_their_own_answer(
    server: OpaTestServer, engine: OpaEngine
) -> None:
    threads, rounds = 32, 12
    barrier = threading.Barrier(threads)

    def worker(index: int) -> list[str]:
        barrier.wait()
        wrong = []
        for round_ in range(rounds):
            input_document, expected = CASES[(index + round_) % len(CASES)]
            mine = copy.deepcopy(input_document)
            mine["principal"]["subject"] = f"user-{index}-{round_}"
            mine["request"]["subjects"] = [f"s-{index}-{round_}"]
            got = engine.evaluate(DECISION_ENTRYPOINT, mine)
            if got != {**expected, "subjects": [f"s-{index}-{round_}"]}:
                wrong.append(f"{index}/{round_}: {got}")
        return wrong

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(worker, range(threads)))
    assert [w for w in results if w] == []
    assert len(server.requests) == threads * rounds


def test_engines_agree_on_random_inputs(server: OpaTestServer) -> None:
    text = st.text(max_size=12)
    principal = st.fixed_dictionaries({"role": st.sampled_from(["researcher", "clerk"]) | text})
    request = st.fixed_dictionaries(
        {
            "fields": st.lists(st.sampled_from(["age", "postcode", "name"]) | text, max_size=4),
            "cohort_size": st.integers(-5, 50) | text | st.none(),
            "subjects": st.lists(text, max_size=3),
        }
    )
    documents = st.fixed_dictionaries(
        {"request": request}, optional={"principal": principal | st.booleans()}
    )
    embedded = EmbeddedEngine(BUNDLE)
    with closing(OpaEngine(BUNDLE, server.url, TIMEOUT, upload=False)) as opa:

        @settings(max_examples=75, deadline=None, database=None)
        @given(documents)
        def agree(input_document: Any) -> None:
            assert outcome(opa, input_document) == outcome(embedded, input_document)

        agree()
    embedded.close()


# -- the real bundle: both engines must give identical decisions --------------------------

NOW = 1_750_000_000_000_000_000
DAY = 86_400 * 10**9


def consent(cid: str, status: str = "given", **changes: Any) -> dict[str, Any]:
    record = {
        "id": cid,
        "status": status,
        "purposes": ["research"],
        "categories": ["health", "demographic"],
        "valid_from_ns": NOW - 100 * DAY,
        "valid_until_ns": NOW + 100 * DAY,
        "subject_is_minor": False,
        "guardian": None,
    }
    return {**record, **changes}


BASE_DECISION: dict[str, Any] = {
    "now_ns": NOW,
    "principal": {"subject": "alice", "role": "researcher", "organisation": "org-recipient"},
    "request": {
        "kind": "subjects",
        "purpose": "cardio-research",
        "fields": ["age_band", "diagnosis"],
        "subjects": ["p-001", "p-002", "p-003"],
        "cohort_size": 3,
    },
    "purpose_lineage": ["cardio-research", "research"],
    "catalogue": {
        "age_band": {
            "category": "demographic",
            "category_lineage": ["demographic"],
            "sensitive": False,
        },
        "diagnosis": {
            "category": "diagnosis",
            "category_lineage": ["diagnosis", "health"],
            "sensitive": True,
        },
        "postcode": {"category": "location", "category_lineage": ["location"], "sensitive": False},
    },
    "sensitive_categories": ["health"],
    "agreement": {
        "id": "agr-1",
        "version": 1,
        "status": "active",
        "valid_from_ns": NOW - 30 * DAY,
        "valid_until_ns": NOW + 300 * DAY,
        "providers": ["org-provider"],
        "recipients": ["org-recipient"],
        "legal_basis": "consent",
        "consent_required": True,
        "retention_days": 365,
        "minimisation": {"mode": "strict", "min_cohort": 1},
        "pseudonymisation_required": True,
        "jurisdiction": "EU",
        "purposes": [{"purpose": "research", "fields": ["age_band", "diagnosis"]}],
    },
    "ethics_review": {
        "id": "eth-1",
        "outcome": "approved_with_conditions",
        "conditions": ["no linkage"],
        "reference": "REC-2025-1",
        "valid_from_ns": NOW - 30 * DAY,
        "valid_until_ns": NOW + 300 * DAY,
    },
    "consents": {
        "p-001": [consent("c-1")],
        "p-002": [consent("c-2a", status="withdrawn"), consent("c-2b")],
        "p-003": [consent("c-3", subject_is_minor=True, guardian=True)],
    },
}


def variant(path: str, value: Any) -> dict[str, Any]:
    """BASE_DECISION with the dotted `path` set to `value`."""
    document = copy.deepcopy(BASE_DECISION)
    *parents, last = path.split(".")
    target = document
    for key in parents:
        target = target[key]
    target[last] = value
    return document


AGGREGATE = {**BASE_DECISION["request"], "kind": "aggregate", "subjects": [], "cohort_size": 12}
REAL_INPUTS = [
    BASE_DECISION,  # allowed
    variant("agreement.minimisation", {"mode": "trim", "min_cohort": 1}),
    variant("request", AGGREGATE),  # allowed
    variant("agreement.minimisation", {"mode": "strict", "min_cohort": 20})
    | {"request": AGGREGATE},
    variant("request.fields", ["age_band", "postcode"]),
    variant("request.fields", ["postcode"]) | {"agreement": None},
    variant("agreement", None),
    variant("agreement.status", "suspended"),
    variant("agreement.status", "draft"),
    variant("agreement.valid_until_ns", NOW - DAY),
    variant("agreement.valid_from_ns", NOW + DAY),
    variant("ethics_review", None),
    variant("ethics_review.outcome", "rejected"),
    variant("ethics_review.valid_until_ns", NOW),
    variant("principal.organisation", "org-elsewhere"),
    variant("request.purpose", "marketing") | {"purpose_lineage": ["marketing"]},
    variant("purpose_lineage", []),
    variant("consents", {}),
    variant("consents.p-001", [consent("c-1", purposes=["marketing"], categories=[])]),
    variant("consents.p-002", [consent("c-2", status="refused", valid_until_ns=NOW - 1)]),
    variant("consents.p-003", [consent("c-3", subject_is_minor=True)]),
    variant("agreement.consent_required", False) | {"consents": {}},
    variant("now_ns", "2025-06-15T00:00:00Z"),  # not an integer: must deny, identically
    {"request": {}},
]


def test_real_bundle_gives_identical_decisions_on_both_engines() -> None:
    """Fails (does not skip) while policies/ has no decision policy."""
    bundle = load_bundle(REPO / "policies")
    embedded = EmbeddedEngine(bundle)
    with running_opa_server({}) as server, closing(OpaEngine(bundle, server.url, 5.0)) as opa:
        assert server.modules == dict(bundle.modules)
        decisions = []
        for input_document in REAL_INPUTS:
            expected = outcome(embedded, input_document)
            assert outcome(opa, input_document) == expected
            assert expected[0] == "ok", f"decision undefined or failing: {expected}"
            assert {"allow", "reasons", "obligations", "subjects"} <= set(expected[1])
            decisions.append(expected[1]["allow"])
    assert decisions[0] is True  # the base input is allowed; the inputs exercise both outcomes
    assert False in decisions
    embedded.close()
