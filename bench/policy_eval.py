"""Policy evaluation benchmark: the decision bundle in regorus, evaluation only.

    python bench/policy_eval.py                       # policies/
    python bench/policy_eval.py --baseline OLD_DIR    # and another bundle, alternating

Inputs have the service's shape (as `decisions/context.py` builds them): one subject
allowed, one whose consent was withdrawn, one without a consent record, and batches of
10,000 subjects (all allowed; every tenth withdrawn; under an agreement that needs no
consent). Each bundle is timed on the same input in alternating rounds; the medians are
printed, with the input's parse time (`set_input_json`) apart. The bundles must give the
same result on every input.

Then, for the first bundle, requests decided together as the service decides them: n
single-subject requests that differ only in their subject (the decision benchmark's mix:
every twelfth without a consent record, every tenth of the rest withdrawn), each
evaluated with `result` or all with one `grouped`, per request, parsing the input and the
answer included; both must give the same answers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import regorus

ROOT = Path(__file__).resolve().parents[1]
RULE = "data.accord.decision.result"
GROUPED_RULE = "data.accord.decision.grouped"
NOW = 1_795_762_281_351_328_000
DAY = 86_400 * 10**9


def _engine(policy_dir: Path) -> Any:
    engine = regorus.Engine()
    for path in sorted(policy_dir.rglob("*.rego")):
        if not path.name.endswith("_test.rego"):
            engine.add_policy(str(path.relative_to(policy_dir)), path.read_text("utf-8"))
    return engine


def _consent(n: int, status: str = "given") -> dict[str, Any]:
    return {
        "id": f"00000000-0000-4000-8000-{n:012d}",
        "status": status,
        "purposes": ["research"],
        "categories": ["contact.address", "health", "identity"],
        "valid_from_ns": NOW - DAY,
        "valid_until_ns": None,
        "subject_is_minor": False,
        "guardian": True,
    }


def _pseudonym(n: int) -> str:
    return f"ps_{n:064x}"


def decision_input(
    subjects: int, withdrawn_every: int = 0, consented: bool = True, consent_basis: bool = True
) -> dict[str, Any]:
    """An input of the service's shape; `consent_basis` False: an agreement under another
    legal basis, which needs no consent (its subjects' consents are still in the input)."""
    names = [_pseudonym(n) for n in range(1, subjects + 1)]
    consents = {}
    if consented:
        for n, name in enumerate(names, 1):
            withdrawn = withdrawn_every and n % withdrawn_every == 0
            consents[name] = [_consent(n, "withdrawn" if withdrawn else "given")]
    fields = ["diagnosis_code", "date_of_birth", "postcode"]
    categories = {
        "diagnosis_code": ["health.diagnosis", "health"],
        "date_of_birth": ["identity.date_of_birth", "identity"],
        "postcode": ["contact.address", "contact"],
    }
    return {
        "now_ns": NOW,
        "principal": {"subject": "partner", "role": "partner", "organisation": "recipient"},
        "request": {
            "kind": "subjects",
            "purpose": "research.public_health",
            "fields": fields,
            "subjects": names,
            "cohort_size": None,
        },
        "purpose_lineage": ["research.public_health", "research"],
        "catalogue": {
            name: {"category": codes[0], "category_lineage": codes, "sensitive": False}
            for name, codes in categories.items()
        },
        "sensitive_categories": ["health", "health.diagnosis", "minors"],
        "agreement": {
            "id": "89c91e78-23ab-44b9-9e21-9977619fbe30",
            "version": 1,
            "status": "active",
            "valid_from_ns": NOW - 2 * DAY,
            "valid_until_ns": NOW + 700 * DAY,
            "providers": ["provider"],
            "recipients": ["recipient"],
            "legal_basis": "consent" if consent_basis else "public_task",
            "consent_required": consent_basis,
            "retention_days": 365,
            "minimisation": {"mode": "trim", "min_cohort": 10},
            "pseudonymisation_required": True,
            "jurisdiction": "UK",
            "purposes": [{"purpose": "research.public_health", "fields": fields}],
        },
        "ethics_review": {
            "id": "c514c3e9-bbc4-47cb-9168-e1c78c723a98",
            "outcome": "approved_with_conditions",
            "conditions": ["publish only aggregate findings"],
            "reference": "REB-2026-042",
            "valid_from_ns": NOW - 2 * DAY,
            "valid_until_ns": NOW + 700 * DAY,
        },
        "consents": consents,
    }


CASES = {
    "one subject, allowed": (decision_input(1), 300),
    "one subject, consent withdrawn": (decision_input(1, withdrawn_every=1), 300),
    "one subject, no consent recorded": (decision_input(1, consented=False), 300),
    "10,000 subjects, all allowed": (decision_input(10_000), 1),
    "10,000 subjects, every tenth withdrawn": (decision_input(10_000, withdrawn_every=10), 1),
    "10,000 subjects, consent not required": (decision_input(10_000, consent_basis=False), 1),
}


def single_requests(count: int) -> list[dict[str, Any]]:
    """`count` one-subject inputs that differ only in their subject and its consents."""
    documents = []
    for n in range(count):
        if n % 12 == 0:
            document = decision_input(1, consented=False)
        else:
            document = decision_input(1, withdrawn_every=1 if n % 10 == 0 else 0)
        name = _pseudonym(n + 1)
        document["request"]["subjects"] = [name]
        held = list(document["consents"].values())  # one subject's records, or none
        document["consents"] = {name: held[0]} if held else {}
        documents.append(document)
    return documents


def grouped_input(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """What the service sends `grouped` for these documents (service/decisions/service.py)."""
    consents: dict[str, Any] = {}
    for document in documents:
        consents.update(document["consents"])
    group = [document["request"]["subjects"] for document in documents]
    return {**documents[0], "consents": consents, "group": group}


def time_together(engine: Any, rounds: int) -> bool:
    """Per request: one `result` each against one `grouped` for all; True if they agree."""
    print(f"\n{'requests decided together':40} {'one result each':>16} {'one grouped':>16}")
    same = True
    for count in (1, 4, 16, 64):
        documents = single_requests(count)
        texts = [orjson.dumps(document).decode() for document in documents]
        together = orjson.dumps(grouped_input(documents)).decode()
        repeat = max(1, 256 // count)
        alone: list[float] = []
        grouped: list[float] = []
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(repeat):
                answers = []
                for text in texts:
                    engine.set_input_json(text)
                    answers.append(orjson.loads(engine.eval_rule_as_json(RULE)))
            alone.append((time.perf_counter() - started) / repeat / count)
            started = time.perf_counter()
            for _ in range(repeat):
                engine.set_input_json(together)
                entries = orjson.loads(engine.eval_rule_as_json(GROUPED_RULE))
            grouped.append((time.perf_counter() - started) / repeat / count)
        same = same and entries == answers
        print(
            f"{count:>40} {_fmt(statistics.median(alone)):>16} "
            f"{_fmt(statistics.median(grouped)):>16}"
        )
    if not same:
        print("grouped answers differ from one result each", file=sys.stderr)
    return same


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--policies", type=Path, default=ROOT / "policies")
    parser.add_argument("--baseline", type=Path, help="another bundle, timed alternately")
    parser.add_argument("--rounds", type=int, default=15)
    opts = parser.parse_args(argv)
    bundles = [opts.policies] + ([opts.baseline] if opts.baseline else [])
    engines = [_engine(path) for path in bundles]
    header = "".join(f"  {str(path)[-28:]:>28}" for path in bundles)
    print(f"{'input':40} {'parse':>10}{header}   (medians of {opts.rounds} rounds)")
    same = True
    for name, (document, repeat) in CASES.items():
        text = orjson.dumps(document).decode()
        parse: list[float] = []
        times: list[list[float]] = [[] for _ in engines]
        answers: list[Any] = [None] * len(engines)
        for _ in range(opts.rounds):
            for i, engine in enumerate(engines):
                started = time.perf_counter()
                engine.set_input_json(text)
                parse.append(time.perf_counter() - started)
                started = time.perf_counter()
                for _ in range(repeat):
                    answers[i] = engine.eval_rule_as_json(RULE)
                times[i].append((time.perf_counter() - started) / repeat)
        results = [orjson.loads(answer) for answer in answers]
        same = same and all(result == results[0] for result in results)
        cells = "".join(f"  {_fmt(statistics.median(t)):>28}" for t in times)
        print(f"{name:40} {_fmt(statistics.median(parse)):>10}{cells}")
    if not same:
        print("the bundles' results differ", file=sys.stderr)
    together = time_together(engines[0], opts.rounds)
    return 0 if same and together else 1


def _fmt(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:,.1f} µs"


if __name__ == "__main__":
    sys.exit(main())
