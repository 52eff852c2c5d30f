"""The policy contract: inputs and outputs against the JSON Schemas in policies/schemas.

Example inputs must be schema-valid; every output the bundle produces (for the examples
and for random schema-valid inputs generated with hypothesis) must be schema-valid and
keep the decision invariants. A small reference model of the rules (below) is compared
with the Rego result on the same random inputs.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped, unused-ignore]
import pytest
import regorus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

POLICIES = Path(__file__).resolve().parents[2] / "policies"
SCHEMAS = POLICIES / "schemas"

DECISION = "data.accord.decision.result"
EXPLAINED = "data.accord.decision.explained"  # result's full definition, no fast path
GROUPED = "data.accord.decision.grouped"  # several requests that differ only in subjects
REVIEW = "data.accord.agreement.review"

Doc = dict[str, Any]


# ---------------------------------------------------------------------------------------
# Bundle and schemas
# ---------------------------------------------------------------------------------------


def service_modules() -> dict[str, str]:
    """What the service loads: every .rego under policies/ except *_test.rego."""
    return {
        path.relative_to(POLICIES).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(POLICIES.rglob("*.rego"))
        if not path.name.endswith("_test.rego")
    }


@cache
def _engine_for_thread(thread_id: int) -> Any:
    # A regorus Engine must only be used on the thread that created it.
    del thread_id
    engine = regorus.Engine()
    for path, source in service_modules().items():
        engine.add_policy(path, source)
    return engine


def evaluate(rule: str, document: Doc) -> Any:
    engine = _engine_for_thread(threading.get_ident())
    engine.set_input_json(json.dumps(document))
    return engine.eval_rule(rule)


@cache
def schema(name: str) -> Doc:
    loaded: Doc = json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))
    return loaded


@cache
def validator(name: str) -> Any:
    return jsonschema.Draft202012Validator(schema(name))


def assert_valid(name: str, document: Any) -> None:
    errors = sorted(validator(name).iter_errors(document), key=lambda e: list(e.path))
    assert not errors, f"{name}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


# ---------------------------------------------------------------------------------------
# Example documents
# ---------------------------------------------------------------------------------------

NOW = 1_700_000_000_000_000_000
DAY = 86_400_000_000_000

CATALOGUE: Doc = {
    "diagnosis": {
        "category": "health.diagnosis",
        "category_lineage": ["health.diagnosis", "health"],
        "sensitive": False,
    },
    "postcode": {
        "category": "contact.address",
        "category_lineage": ["contact.address", "contact"],
        "sensitive": False,
    },
    "email": {
        "category": "contact.email",
        "category_lineage": ["contact.email", "contact"],
        "sensitive": False,
    },
    "ethnicity": {
        "category": "demographics.ethnicity",
        "category_lineage": ["demographics.ethnicity", "demographics"],
        "sensitive": True,
    },
    "attainment": {
        "category": "education.attainment",
        "category_lineage": ["education.attainment", "education"],
        "sensitive": False,
    },
}

AGREEMENT: Doc = {
    "id": "agr-1",
    "version": 1,
    "status": "active",
    "valid_from_ns": NOW - 30 * DAY,
    "valid_until_ns": NOW + 365 * DAY,
    "providers": ["org-provider"],
    "recipients": ["org-recipient"],
    "legal_basis": "consent",
    "consent_required": True,
    "retention_days": 365,
    "minimisation": {"mode": "strict", "min_cohort": 10},
    "pseudonymisation_required": True,
    "jurisdiction": "EU",
    "purposes": [{"purpose": "research", "fields": ["diagnosis", "postcode", "ethnicity"]}],
}


def consent(**overrides: Any) -> Doc:
    record: Doc = {
        "id": "consent-1",
        "status": "given",
        "purposes": ["research"],
        "categories": ["health", "contact"],
        "valid_from_ns": NOW - DAY,
        "valid_until_ns": None,
        "subject_is_minor": False,
        "guardian": False,
    }
    record.update(overrides)
    return record


def subjects_example() -> Doc:
    return {
        "now_ns": NOW,
        "principal": {
            "subject": "partner-service",
            "role": "partner",
            "organisation": "org-recipient",
        },
        "request": {
            "kind": "subjects",
            "purpose": "research.public_health",
            "fields": ["diagnosis", "postcode"],
            "subjects": ["ps-1", "ps-2", "ps-3"],
            "cohort_size": None,
        },
        "purpose_lineage": ["research.public_health", "research"],
        "catalogue": {name: CATALOGUE[name] for name in ("diagnosis", "postcode")},
        "sensitive_categories": ["health"],
        "agreement": copy.deepcopy(AGREEMENT),
        "ethics_review": {
            "id": "rev-1",
            "outcome": "approved_with_conditions",
            "conditions": ["aggregate publication only"],
            "reference": "REC/1",
            "valid_from_ns": NOW - DAY,
            "valid_until_ns": NOW + DAY,
        },
        "consents": {
            "ps-1": [consent()],
            "ps-2": [consent(status="withdrawn"), consent(id="c-2", subject_is_minor=True)],
        },
    }


def aggregate_example() -> Doc:
    doc = subjects_example()
    doc["request"] = {
        "kind": "aggregate",
        "purpose": "research",
        "fields": ["postcode", "attainment"],
        "subjects": [],
        "cohort_size": 8,
    }
    doc["purpose_lineage"] = ["research"]
    doc["catalogue"] = {name: CATALOGUE[name] for name in ("postcode", "attainment")}
    doc["consents"] = {}
    doc["ethics_review"] = None
    return doc


def no_agreement_example() -> Doc:
    doc = subjects_example()
    doc["agreement"] = None
    doc["purpose_lineage"] = []
    doc["request"]["purpose"] = "marketing"
    return doc


def review_example() -> Doc:
    return {
        "agreement": {**copy.deepcopy(AGREEMENT), "status": "draft"},
        "catalogue": {name: CATALOGUE[name] for name in ("diagnosis", "postcode", "ethnicity")},
        "sensitive_categories": ["health"],
    }


EXAMPLES = {
    "subjects": subjects_example,
    "aggregate": aggregate_example,
    "no_agreement": no_agreement_example,
}


def codes(reasons: Iterable[Doc]) -> list[str]:
    return [reason["code"] for reason in reasons]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_decision_input_and_output_are_valid(name: str) -> None:
    document = EXAMPLES[name]()
    assert_valid("decision_input", document)
    result = evaluate(DECISION, document)
    assert_valid("decision_output", result)
    check_invariants(document, result)


def test_subjects_example_decision() -> None:
    result = evaluate(DECISION, subjects_example())
    assert result["allow"] is False
    assert codes(result["reasons"]) == ["some_subjects_denied"]
    assert [(s["subject"], s["allow"], codes(s["reasons"])) for s in result["subjects"]] == [
        ("ps-1", True, []),
        ("ps-2", False, ["consent_withdrawn", "guardian_consent_missing"]),
        ("ps-3", False, ["consent_missing"]),
    ]
    assert result["obligations"] == {
        "permitted_fields": ["diagnosis", "postcode"],
        "dropped_fields": [],
        "pseudonymise": True,
        "retention_days": 365,
        "min_cohort": 10,
        "ethics_conditions": ["aggregate publication only"],
    }


def test_aggregate_example_decision() -> None:
    result = evaluate(DECISION, aggregate_example())
    assert result["allow"] is False
    assert codes(result["reasons"]) == ["cohort_below_minimum", "fields_not_permitted"]
    assert result["obligations"]["dropped_fields"] == ["attainment"]
    assert result["subjects"] == []


def test_no_agreement_example_decision() -> None:
    result = evaluate(DECISION, no_agreement_example())
    assert codes(result["reasons"]) == ["agreement_not_found", "purpose_unknown"]
    assert all(codes(s["reasons"]) == ["request_denied"] for s in result["subjects"])


def test_example_review_input_and_output_are_valid() -> None:
    document = review_example()
    assert_valid("review_input", document)
    result = evaluate(REVIEW, document)
    assert_valid("review_output", result)
    assert result == {"required": True, "sensitive_fields": ["diagnosis", "ethnicity"]}


def test_schemas_are_valid_draft_2020_12() -> None:
    for path in sorted(SCHEMAS.glob("*.schema.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema", path
        jsonschema.Draft202012Validator.check_schema(document)


def test_review_and_decision_schemas_share_definitions() -> None:
    for name in ("agreement", "catalogue", "sensitive_categories", "ns", "code"):
        assert schema("review_input")["$defs"][name] == schema("decision_input")["$defs"][name]


def test_schema_rejects_extra_and_missing_keys() -> None:
    document = subjects_example()
    document["request"]["national_id"] = "123"
    assert not validator("decision_input").is_valid(document)
    document = subjects_example()
    del document["now_ns"]
    assert not validator("decision_input").is_valid(document)
    document = subjects_example()
    document["request"]["subjects"] = []
    assert not validator("decision_input").is_valid(document)


# ---------------------------------------------------------------------------------------
# Reason codes: schema, policy source, README and Rego tests agree
# ---------------------------------------------------------------------------------------


def request_codes() -> set[str]:
    return set(schema("decision_output")["$defs"]["request_reason"]["properties"]["code"]["enum"])


def subject_codes() -> set[str]:
    return set(schema("decision_output")["$defs"]["subject_reason"]["properties"]["code"]["enum"])


def test_policy_emits_exactly_the_schema_codes() -> None:
    source = (POLICIES / "accord" / "decision" / "decision.rego").read_text(encoding="utf-8")
    emitted = set(re.findall(r'^request_denials contains \{"code": "(\w+)"', source, re.MULTILINE))
    emitted.add("some_subjects_denied")
    assert emitted == request_codes()
    messages = evaluate("data.accord.decision.subject_messages", {})
    assert set(messages) == subject_codes()


def test_every_reason_code_is_documented_and_tested() -> None:
    readme = (POLICIES / "README.md").read_text(encoding="utf-8")
    tests = "\n".join(
        path.read_text(encoding="utf-8") for path in sorted(POLICIES.rglob("*_test.rego"))
    )
    for code in sorted(request_codes() | subject_codes()):
        assert f"`{code}`" in readme, f"{code} is not in policies/README.md"
        assert f'"{code}"' in tests, f"no Rego test mentions {code}"


# ---------------------------------------------------------------------------------------
# Purity and syntax of the modules
# ---------------------------------------------------------------------------------------

IMPURE_BUILTINS = (
    "time.now_ns",
    "http.send",
    "net.lookup_ip_addr",
    "opa.runtime",
    "rand.intn",
    "uuid.rfc4122",
    "io.jwt.",
    "crypto.",
)


def test_no_module_uses_impure_builtins() -> None:
    for path in sorted(POLICIES.rglob("*.rego")):
        source = path.read_text(encoding="utf-8")
        for builtin in IMPURE_BUILTINS:
            assert builtin not in source, f"{path.relative_to(POLICIES)} uses {builtin}"


def test_every_module_is_rego_v1_under_accord() -> None:
    for path in sorted(POLICIES.rglob("*.rego")):
        source = path.read_text(encoding="utf-8")
        assert re.search(r"^import rego\.v1$", source, re.MULTILINE), path
        package = re.search(r"^package\s+(\S+)", source, re.MULTILINE)
        assert package is not None, path
        assert package.group(1).startswith("accord."), path


def test_no_opa_data_files_in_the_bundle() -> None:
    """OPA bundle mode would load data.json/data.yaml as data; the bundle has none."""
    for name in ("data.json", "data.yaml", "data.yml"):
        assert not list(POLICIES.rglob(name))


# ---------------------------------------------------------------------------------------
# Random schema-valid inputs
# ---------------------------------------------------------------------------------------

PURPOSES = {
    "research": ["research"],
    "research.public_health": ["research.public_health", "research"],
    "research.public_health.surveillance": [
        "research.public_health.surveillance",
        "research.public_health",
        "research",
    ],
    "service_delivery": ["service_delivery"],
    "service_delivery.care_coordination": [
        "service_delivery.care_coordination",
        "service_delivery",
    ],
}
PURPOSE_CODES = sorted(PURPOSES)
FIELDS = [*sorted(CATALOGUE), "shoe_size"]  # shoe_size is never in the catalogue
CATEGORY_CODES = sorted(
    {code for entry in CATALOGUE.values() for code in entry["category_lineage"]} | {"minors"}
)
ORGS = ["org-provider", "org-recipient", "org-other"]
PSEUDONYMS = [f"ps-{i}" for i in range(6)]
STATUSES = [
    "draft",
    "pending_approval",
    "approved",
    "active",
    "suspended",
    "terminated",
    "expired",
    "rejected",
    "superseded",
]
LEGAL_BASES = [
    "consent",
    "contract",
    "legal_obligation",
    "vital_interests",
    "public_task",
    "legitimate_interests",
]

# Times near `now`, so that boundaries (equal to now, one ns either side) come up often.
times = st.sampled_from([NOW - DAY, NOW - 1, NOW, NOW + 1, NOW + DAY])
# Bias the agreement towards being in force so that deeper rules are reached.
statuses = st.one_of(st.just("active"), st.sampled_from(STATUSES))


def subset(items: list[str], *, min_size: int = 0) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(items), min_size=min_size, max_size=len(items), unique=True)


@st.composite
def catalogue_entry(draw: st.DrawFn, name: str) -> Doc:
    entry: Doc = copy.deepcopy(CATALOGUE[name])
    entry["sensitive"] = draw(st.booleans()) if draw(st.booleans()) else entry["sensitive"]
    return entry


@st.composite
def agreements(draw: st.DrawFn) -> Doc:
    return {
        "id": "agr-x",
        "version": draw(st.integers(min_value=1, max_value=5)),
        "status": draw(statuses),
        "valid_from_ns": draw(st.one_of(st.just(NOW - DAY), times)),
        "valid_until_ns": draw(st.one_of(st.just(NOW + DAY), times)),
        "providers": draw(subset(ORGS)),
        "recipients": draw(st.one_of(st.just(["org-recipient"]), subset(ORGS))),
        "legal_basis": draw(st.sampled_from(LEGAL_BASES)),
        "consent_required": draw(st.booleans()),
        "retention_days": draw(st.integers(min_value=0, max_value=3650)),
        "minimisation": {
            "mode": draw(st.sampled_from(["strict", "trim"])),
            "min_cohort": draw(st.integers(min_value=0, max_value=20)),
        },
        "pseudonymisation_required": draw(st.booleans()),
        "jurisdiction": "EU",
        "purposes": draw(
            st.lists(
                st.fixed_dictionaries(
                    {"purpose": st.sampled_from(PURPOSE_CODES), "fields": subset(FIELDS)}
                ),
                max_size=3,
            )
        ),
    }


@st.composite
def consents(draw: st.DrawFn) -> Doc:
    return {
        "id": f"c-{draw(st.integers(min_value=0, max_value=99))}",
        "status": draw(
            st.one_of(st.just("given"), st.sampled_from(["withdrawn", "expired", "refused"]))
        ),
        "purposes": draw(subset([*PURPOSE_CODES, "marketing"])),
        "categories": draw(subset(CATEGORY_CODES)),
        "valid_from_ns": draw(times),
        "valid_until_ns": draw(st.one_of(st.none(), times)),
        "subject_is_minor": draw(st.booleans()),
        "guardian": draw(st.booleans()),
    }


Mutation = Callable[[Doc, st.DrawFn], None]


def random_review(draw: st.DrawFn) -> Doc:
    return {
        "id": "rev-x",
        "outcome": draw(st.sampled_from(["approved", "approved_with_conditions", "rejected"])),
        "conditions": draw(st.lists(st.sampled_from(["c1", "c2", "c3"]), max_size=2)),
        "reference": "REC/x",
        "valid_from_ns": draw(times),
        "valid_until_ns": draw(st.one_of(st.just(NOW + DAY), times)),
    }


@st.composite
def allowed_decision_inputs(draw: st.DrawFn) -> Doc:
    """A schema-valid input that every rule lets through (the mutations then break it)."""
    kind = draw(st.sampled_from(["subjects", "aggregate"]))
    purpose = draw(st.sampled_from(PURPOSE_CODES))
    lineage = PURPOSES[purpose]
    known = sorted(CATALOGUE)
    fields = draw(subset(known, min_size=1))
    catalogue = {name: draw(catalogue_entry(name)) for name in fields}
    agreement = draw(agreements())
    agreement.update(
        status="active",
        valid_from_ns=NOW - DAY,
        valid_until_ns=NOW + DAY,
        recipients=sorted({"org-recipient", *agreement["recipients"]}),
    )
    agreement["purposes"] = [
        {"purpose": draw(st.sampled_from(lineage)), "fields": sorted(set(fields) | set(extra))}
        for extra in draw(st.lists(subset(FIELDS), min_size=1, max_size=2))
    ] + agreement["purposes"]
    subjects = draw(st.lists(st.sampled_from(PSEUDONYMS), min_size=1, max_size=6))

    def valid_consent() -> Doc:
        record = draw(consents())
        minor = draw(st.booleans())
        categories = {draw(st.sampled_from(CATALOGUE[name]["category_lineage"])) for name in fields}
        record.update(
            status="given",
            purposes=sorted({draw(st.sampled_from(lineage)), *record["purposes"]}),
            categories=sorted(categories | set(record["categories"])),
            valid_from_ns=draw(st.sampled_from([NOW - DAY, NOW])),
            valid_until_ns=draw(st.sampled_from([None, NOW + 1, NOW + DAY])),
            subject_is_minor=minor,
            guardian=minor or draw(st.booleans()),
        )
        return record

    return {
        "now_ns": NOW,
        "principal": {"subject": "svc", "role": "partner", "organisation": "org-recipient"},
        "request": {
            "kind": kind,
            "purpose": purpose,
            "fields": fields,
            "subjects": subjects if kind == "subjects" else [],
            "cohort_size": agreement["minimisation"]["min_cohort"] + draw(st.integers(0, 5)),
        },
        "purpose_lineage": lineage,
        "catalogue": catalogue,
        "sensitive_categories": draw(subset(["health", "contact.email", "education", "minors"])),
        "agreement": agreement,
        "ethics_review": {
            "id": "rev-x",
            "outcome": draw(st.sampled_from(["approved", "approved_with_conditions"])),
            "conditions": draw(st.lists(st.sampled_from(["c1", "c2", "c3"]), max_size=2)),
            "reference": "REC/x",
            "valid_from_ns": draw(st.sampled_from([NOW - DAY, NOW])),
            "valid_until_ns": draw(st.sampled_from([NOW + 1, NOW + DAY])),
        },
        "consents": {
            # one valid consent, and maybe others (valid or not): one valid is enough
            pseudonym: [valid_consent(), *draw(st.lists(consents(), max_size=2))]
            for pseudonym in sorted(set(subjects))
        },
    }


def _agreement_setter(*keys: str) -> Mutation:
    def mutate(doc: Doc, draw: st.DrawFn) -> None:
        if doc["agreement"] is not None:
            random = draw(agreements())
            for key in keys:
                doc["agreement"][key] = random[key]

    return mutate


def _drop_agreement(doc: Doc, draw: st.DrawFn) -> None:
    doc["agreement"] = None


def _set_caller(doc: Doc, draw: st.DrawFn) -> None:
    doc["principal"]["organisation"] = draw(st.sampled_from(ORGS))


def _set_purpose(doc: Doc, draw: st.DrawFn) -> None:
    purpose = draw(st.sampled_from([*PURPOSE_CODES, "marketing"]))
    doc["request"]["purpose"] = purpose
    doc["purpose_lineage"] = PURPOSES.get(purpose, [])


def _set_fields(doc: Doc, draw: st.DrawFn) -> None:
    fields = draw(subset(FIELDS, min_size=1))
    doc["request"]["fields"] = fields
    doc["catalogue"] = {
        name: draw(catalogue_entry(name))
        for name in fields
        if name in CATALOGUE and draw(st.integers(0, 9)) > 0
    }


def _set_cohort(doc: Doc, draw: st.DrawFn) -> None:
    doc["request"]["cohort_size"] = draw(st.one_of(st.none(), st.integers(0, 30)))


def _set_review(doc: Doc, draw: st.DrawFn) -> None:
    doc["ethics_review"] = None if draw(st.booleans()) else random_review(draw)


def _set_sensitivity(doc: Doc, draw: st.DrawFn) -> None:
    doc["sensitive_categories"] = draw(subset(["health", "contact.email", "education", "minors"]))
    doc["catalogue"] = {name: draw(catalogue_entry(name)) for name in doc["catalogue"]}


def _set_subject_consents(doc: Doc, draw: st.DrawFn) -> None:
    pseudonym = draw(st.sampled_from(PSEUDONYMS))
    records = draw(st.lists(consents(), max_size=3))
    if records:
        doc["consents"][pseudonym] = records
    else:
        doc["consents"].pop(pseudonym, None)


def _change_one_consent(doc: Doc, draw: st.DrawFn) -> None:
    if doc["consents"]:
        records = doc["consents"][draw(st.sampled_from(sorted(doc["consents"])))]
        random = draw(consents())
        key = draw(st.sampled_from(sorted(random)))
        records[draw(st.integers(0, len(records) - 1))][key] = random[key]


MUTATIONS: list[Mutation] = [
    _agreement_setter("status"),
    _agreement_setter("valid_from_ns", "valid_until_ns"),
    _agreement_setter("minimisation"),
    _agreement_setter("legal_basis", "consent_required"),
    _agreement_setter("purposes"),
    _agreement_setter("recipients", "providers"),
    _agreement_setter("retention_days", "pseudonymisation_required", "version"),
    _drop_agreement,
    _set_caller,
    _set_purpose,
    _set_fields,
    _set_cohort,
    _set_review,
    _set_sensitivity,
    _set_subject_consents,
    _change_one_consent,
]


@st.composite
def decision_inputs(draw: st.DrawFn) -> Doc:
    """An allowed input with up to four random changes, each of which may break a rule."""
    document = draw(allowed_decision_inputs())
    for mutation in draw(st.lists(st.sampled_from(MUTATIONS), max_size=4)):
        mutation(document, draw)
    return document


@st.composite
def review_inputs(draw: st.DrawFn) -> Doc:
    agreement = draw(agreements())
    named = {name for entry in agreement["purposes"] for name in entry["fields"]}
    return {
        "agreement": agreement,
        "catalogue": {
            name: draw(catalogue_entry(name))
            for name in sorted(named)
            if name in CATALOGUE and draw(st.integers(0, 9)) > 0
        },
        "sensitive_categories": draw(subset(["health", "contact.email", "education", "minors"])),
    }


# ---------------------------------------------------------------------------------------
# Invariants and the reference model
# ---------------------------------------------------------------------------------------


def check_invariants(document: Doc, result: Any) -> None:
    assert isinstance(result, dict), "the decision must always be defined"
    reasons = codes(result["reasons"])
    obligations = result["obligations"]
    requested = set(document["request"]["fields"])
    permitted = set(obligations["permitted_fields"])
    dropped = set(obligations["dropped_fields"])

    assert reasons == sorted(set(reasons)), "reasons are sorted by code and unique"
    assert result["allow"] == (not reasons), "allow iff there is no request-level reason"
    if result["allow"]:
        assert all(subject["allow"] for subject in result["subjects"])
        assert permitted, "an allowed request releases at least one field"
    if any(subject["allow"] for subject in result["subjects"]):
        assert not (set(reasons) - {"some_subjects_denied"}), "subject allowed under a denial"
    for subject in result["subjects"]:
        subject_reasons = codes(subject["reasons"])
        assert subject_reasons == sorted(set(subject_reasons))
        assert subject["allow"] == (not subject_reasons)

    assert obligations["permitted_fields"] == sorted(permitted)
    assert obligations["dropped_fields"] == sorted(dropped)
    assert not permitted & dropped
    if not disclosed(document):
        assert permitted == dropped == set()
        assert obligations["ethics_conditions"] == []
        assert obligations["retention_days"] is None
        assert obligations["min_cohort"] is None
        assert obligations["pseudonymise"] is False
    else:
        assert permitted | dropped == requested
        if document["agreement"]["minimisation"]["mode"] == "strict" and result["allow"]:
            assert not dropped

    request = document["request"]
    if request["kind"] == "subjects":
        assert [s["subject"] for s in result["subjects"]] == request["subjects"]
    else:
        assert result["subjects"] == []


def field_categories(document: Doc, name: str) -> set[str]:
    entry = document["catalogue"].get(name)
    return set() if entry is None else {entry["category"], *entry["category_lineage"]}


def field_sensitive(document: Doc, name: str) -> bool:
    entry = document["catalogue"].get(name)
    if entry is None:
        return True
    return bool(entry["sensitive"]) or bool(
        field_categories(document, name) & set(document["sensitive_categories"])
    )


def consent_problems(document: Doc, record: Doc, permitted: set[str]) -> set[str]:
    now = document["now_ns"]
    lineage = set(document["purpose_lineage"])
    granted = set(record["categories"])
    problems = set()
    if record["status"] in ("withdrawn", "refused", "expired"):
        problems.add(f"consent_{record['status']}")
    if record["valid_until_ns"] is not None and now >= record["valid_until_ns"]:
        problems.add("consent_expired")
    if now < record["valid_from_ns"]:
        problems.add("consent_not_yet_valid")
    if not set(record["purposes"]) & lineage:
        problems.add("consent_purpose_not_covered")
    if any(not field_categories(document, name) & granted for name in permitted):
        problems.add("consent_categories_not_covered")
    if record["subject_is_minor"] and not record["guardian"]:
        problems.add("guardian_consent_missing")
    return problems


def disclosed(document: Doc) -> bool:
    """The caller is a recipient of the agreement: the answer may show its terms."""
    agreement, caller = document["agreement"], document["principal"]["organisation"]
    return agreement is not None and caller in agreement["recipients"]


NOTHING = {
    "permitted_fields": [],
    "dropped_fields": [],
    "pseudonymise": False,
    "retention_days": None,
    "min_cohort": None,
    "ethics_conditions": [],
}


def reference_decision(document: Doc) -> tuple[list[str], list[tuple[bool, list[str]]], Doc]:
    """The rules of policies/README.md in plain Python: (codes, subjects, obligations)."""
    request = document["request"]
    if document["agreement"] is not None and not disclosed(document):
        # A caller that is not a recipient learns only that, and nothing of the consents.
        denied = [(False, ["request_denied"]) for _ in request["subjects"]]
        return ["caller_not_recipient"], denied if request["kind"] == "subjects" else [], NOTHING
    now = document["now_ns"]
    agreement = document["agreement"]
    review = document["ethics_review"]
    lineage = set(document["purpose_lineage"])
    requested = set(request["fields"])
    reasons: set[str] = set()
    permitted: set[str] = set()

    if not lineage:
        reasons.add("purpose_unknown")
    if agreement is None:
        reasons.add("agreement_not_found")
    else:
        if agreement["status"] == "suspended":
            reasons.add("agreement_suspended")
        elif agreement["status"] != "active":
            reasons.add("agreement_not_active")
        if now < agreement["valid_from_ns"]:
            reasons.add("agreement_not_yet_valid")
        if now >= agreement["valid_until_ns"]:
            reasons.add("agreement_expired")
        if document["principal"]["organisation"] not in agreement["recipients"]:
            reasons.add("caller_not_recipient")
        matching = [entry for entry in agreement["purposes"] if entry["purpose"] in lineage]
        permitted = requested & {name for entry in matching for name in entry["fields"]}
        dropped = requested - permitted
        strict = agreement["minimisation"]["mode"] == "strict"
        if lineage and not matching:
            reasons.add("purpose_not_permitted")
        if matching and strict and dropped:
            reasons.add("fields_not_permitted")
        if matching and not permitted and not (strict and dropped):
            reasons.add("no_permitted_fields")
        cohort = request["cohort_size"]
        minimum = agreement["minimisation"]["min_cohort"]
        if request["kind"] == "aggregate" and (cohort is None or cohort < minimum):
            reasons.add("cohort_below_minimum")

    in_force = review is not None and review["valid_from_ns"] <= now < review["valid_until_ns"]
    approving = review is not None and review["outcome"] != "rejected"
    if any(field_sensitive(document, name) for name in permitted):
        if review is None:
            reasons.add("ethics_review_missing")
        else:
            if not approving:
                reasons.add("ethics_review_rejected")
            if not in_force:
                reasons.add("ethics_review_not_valid")

    consent_applies = (
        request["kind"] == "subjects"
        and agreement is not None
        and (agreement["consent_required"] or agreement["legal_basis"] == "consent")
    )
    subjects = []
    for pseudonym in request["subjects"] if request["kind"] == "subjects" else []:
        subject_reasons: set[str] = set()
        if consent_applies:
            records = document["consents"].get(pseudonym, [])
            problems = [consent_problems(document, record, permitted) for record in records]
            if not records:
                subject_reasons.add("consent_missing")
            elif all(problems):
                subject_reasons = set().union(*problems)
        if reasons:
            subject_reasons.add("request_denied")
        subjects.append((not subject_reasons, sorted(subject_reasons)))
    if not reasons and not all(allowed for allowed, _ in subjects):
        reasons.add("some_subjects_denied")

    if agreement is None:
        return sorted(reasons), subjects, NOTHING
    obligations = {
        "permitted_fields": sorted(permitted),
        "dropped_fields": sorted(requested - permitted),
        "pseudonymise": bool(agreement["pseudonymisation_required"]),
        "retention_days": agreement["retention_days"],
        "min_cohort": agreement["minimisation"]["min_cohort"],
        "ethics_conditions": review["conditions"] if approving and in_force and review else [],
    }
    return sorted(reasons), subjects, obligations


PROPERTY_SETTINGS = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)


@PROPERTY_SETTINGS
@given(decision_inputs())
def test_decision_property(document: Doc) -> None:
    assert_valid("decision_input", document)
    result = evaluate(DECISION, document)
    assert result is not None, "data.accord.decision.result must always be defined"
    assert_valid("decision_output", result)
    check_invariants(document, result)

    expected_reasons, expected_subjects, expected_obligations = reference_decision(document)
    assert codes(result["reasons"]) == expected_reasons
    assert [(s["allow"], codes(s["reasons"])) for s in result["subjects"]] == expected_subjects
    assert result["obligations"] == expected_obligations


@PROPERTY_SETTINGS
@given(st.one_of(allowed_decision_inputs(), decision_inputs()))
def test_allowed_path_agrees_with_explained(document: Doc) -> None:
    """`result` proves an allowed request in its own body, and falls back to `explained`
    otherwise: the two must give the same document (messages included) on every input."""
    assert evaluate(DECISION, document) == evaluate(EXPLAINED, document)


def alone(document: Doc, subjects: list[str]) -> Doc:
    """`document` asking for `subjects` alone, with only their consents."""
    single = copy.deepcopy(document)
    single["request"]["subjects"] = subjects
    single["consents"] = {s: c for s, c in document["consents"].items() if s in subjects}
    return single


@PROPERTY_SETTINGS
@given(
    st.one_of(allowed_decision_inputs(), decision_inputs()),
    st.lists(st.lists(st.sampled_from(PSEUDONYMS), max_size=4), min_size=1, max_size=4),
)
def test_grouped_agrees_with_result(document: Doc, group: list[list[str]]) -> None:
    """Each entry of `grouped` is what `result` answers for that entry's subjects alone;
    `grouped` is undefined exactly when the request fails a request-level rule (the
    service then asks `result` for each request)."""
    grouped_input = {**document, "group": group}
    assert_valid("decision_input", grouped_input)
    results = evaluate(GROUPED, grouped_input)
    singles = [evaluate(DECISION, alone(document, subjects)) for subjects in group]
    request_denied = any(
        reason["code"] != "some_subjects_denied"
        for single in singles
        for reason in single["reasons"]
    )
    if document["request"]["kind"] != "subjects" or request_denied:
        assert results is None
        return
    assert results == singles
    for result in results:
        assert_valid("decision_output", result)


@settings(max_examples=100, deadline=None, database=None)
@given(allowed_decision_inputs())
def test_unmutated_inputs_are_allowed(document: Doc) -> None:
    """The generator's base case really passes every rule (so mutations test something)."""
    result = evaluate(DECISION, document)
    assert result["allow"] is True, result["reasons"]
    assert all(subject["allow"] for subject in result["subjects"])


@PROPERTY_SETTINGS
@given(review_inputs())
def test_review_property(document: Doc) -> None:
    assert_valid("review_input", document)
    result = evaluate(REVIEW, document)
    assert result is not None, "data.accord.agreement.review must always be defined"
    assert_valid("review_output", result)
    named = {name for entry in document["agreement"]["purposes"] for name in entry["fields"]}
    expected = sorted(name for name in named if field_sensitive(document, name))
    assert result == {"required": bool(expected), "sensitive_fields": expected}
