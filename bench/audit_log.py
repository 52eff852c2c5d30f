"""Audit-log benchmark: a log of 1,000,000 events, then what an auditor does with it.

    python bench/audit_log.py                      # SQLite, 1,000,000 events
    python bench/audit_log.py --backend both       # and PostgreSQL (ACCORD_BENCH_PG_URL)
    python bench/audit_log.py --events 100000      # smaller

The log is built fast with bulk inserts (a benchmark, so raw inserts are fine), each row
with its correct RFC 9162 leaf hash, plus organisations, agreements and their parties so
that scoped searches have something to join. It then measures, and prints:

- the first tree-head signing (cold: hashes and stores every subtree) and a warm re-signing;
- full verification (`verify_log`): events per second;
- filtered searches (page of 100, several filters and scopes): median and p95, both as the
  function call and as the HTTP request through the ASGI app;
- inclusion proofs for random events (warm store): median and p95, function and HTTP;
- a consistency proof and a streamed JSONL export.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from service.agreements.models import Agreement, AgreementParty, AgreementVersion
from service.app import create_app
from service.audit import search, signer, tree
from service.audit.leaves import row_leaf_hash
from service.audit.models import AuditEvent, AuditHead
from service.audit.router import router as audit_router
from service.audit.verify import verify_log
from service.core.clock import Clock, SystemClock, iso
from service.core.database import build_engine, session_factory, transaction
from service.core.identity import Principal, Role, mint_token
from service.core.migrations import upgrade
from service.core.pseudonym import Pseudonymiser
from service.core.settings import Environment, Settings
from service.registry.models import Organisation

ORGS = [f"org-{i:02d}" for i in range(20)]
PURPOSES = [
    "research.public_health",
    "research.education",
    "research.social",
    "service_delivery.care_coordination",
    "service_delivery.benefits",
    "statistics.official",
    "safeguarding.child_protection",
]
REASONS = [
    "consent_missing",
    "consent_withdrawn",
    "purpose_not_permitted",
    "field_not_permitted",
    "agreement_suspended",
    "cohort_too_small",
    "ethics_review_missing",
    "caller_not_recipient",
]
FIELDS = ["postcode", "date_of_birth", "diagnosis_code", "exam_results", "email"]
OTHER_ACTIONS = ["consent.given", "consent.withdrawn", "agreement.party_approved"]
COLUMNS = [c.name for c in AuditEvent.__table__.columns]
START = datetime(2026, 1, 1, tzinfo=UTC)
SUBJECTS = 50_000
read_transaction = contextlib.contextmanager(transaction)


def seeded(seed: int) -> random.Random:
    """A reproducible generator for synthetic data (not for secrets)."""
    return random.Random(seed)  # noqa: S311


@dataclass
class Runtime:
    settings: Settings
    sessions: sessionmaker[Session]
    read_sessions: sessionmaker[Session]
    clock: Clock


@dataclass
class World:
    """What the generated log refers to, and which part of it `bulk_insert` writes.

    By default the whole log, seq 0 .. events - 1, spread over `days` from START. To extend
    a live log (`bench/decisions.py --log-events`), `first` is the current size (the rows
    before it are left alone) and the new events span `span_seconds` from `start`.
    """

    agreements: list[tuple[str, str, str]]  # (id, provider, recipient)
    events: int  # the log's size after bulk_insert
    days: int
    first: int = 0  # seq of the first generated event
    start: datetime = START
    span_seconds: float | None = None  # default: `days`


def events(count: int, world: World, pseudonymise: Pseudonymiser) -> Iterator[dict[str, Any]]:
    """Realistic rows: mostly decisions (a fifth denied), some consent and approval events."""
    rnd = seeded(7)
    span = world.days * 86_400 if world.span_seconds is None else world.span_seconds
    step = span / max(count - world.first, 1)
    for seq in range(world.first, count):
        agreement_id, provider, recipient = rnd.choice(world.agreements)
        moment = world.start + timedelta(seconds=(seq - world.first) * step)
        row: dict[str, Any]
        if rnd.random() < 0.9:
            deny = rnd.random() < 0.2
            requested = sorted(rnd.sample(FIELDS, 2))
            subject = pseudonymise(f"subject-{rnd.randrange(SUBJECTS)}")
            row = {
                "action": "decision.made",
                "actor_org": recipient,
                "actor_subject": f"partner@{recipient}",
                "actor_role": "partner",
                "resource_type": "decision",
                "purpose": rnd.choice(PURPOSES),
                "outcome": "deny" if deny else "allow",
                "reasons": sorted(rnd.sample(REASONS, rnd.randint(1, 2))) if deny else [],
                "minimisation": {
                    "requested": requested,
                    "permitted": [] if deny else requested[:1],
                    "dropped": requested if deny else requested[1:],
                },
                "subjects": [subject],
                "details": {"kind": "single", "subjects_allowed": 0 if deny else 1},
            }
        else:
            action = rnd.choice(OTHER_ACTIONS)
            row = {
                "action": action,
                "actor_org": provider,
                "actor_subject": f"steward@{provider}",
                "actor_role": "steward",
                "resource_type": action.split(".")[0],
                "purpose": None,
                "outcome": "success",
                "reasons": [],
                "minimisation": None,
                "subjects": [pseudonymise(f"subject-{rnd.randrange(SUBJECTS)}")],
                "details": {"status": "active"},
            }
        yield {
            "seq": seq,
            "event_id": str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
            "occurred_at": iso(moment),
            "resource_id": str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
            "agreement_id": agreement_id,
            "agreement_version": 1,
            "ethics_review": None,
            "policy_revision": "sha256:" + "ab" * 32,
            "request_id": f"req-{seq}",
            **row,
        }


def as_stored(event: dict[str, Any]) -> tuple[Any, ...]:
    """The row as SQLAlchemy would store it (JSON columns as json.dumps text)."""
    values = dict(event)
    for column in ("reasons", "minimisation", "ethics_review", "subjects", "details"):
        values[column] = json.dumps(values[column])
    leaf_row = [values[c] for c in COLUMNS[:-1]] + [b""]
    values["leaf_hash"] = row_leaf_hash(leaf_row)
    return tuple(values[c] for c in COLUMNS)


def build_registry(runtime: Runtime, count: int) -> World:
    now = datetime.now(UTC)
    agreements = []
    rnd = seeded(3)
    with runtime.sessions() as session:
        session.execute(
            insert(Organisation),
            [{"id": o, "name": o, "sector": "health", "enabled": True, "created_at": now}
             for o in [*ORGS, "accord"]],
        )  # fmt: skip
        for _ in range(200):
            provider, recipient = rnd.sample(ORGS, 2)
            agreement_id, version_id = str(uuid.uuid4()), str(uuid.uuid4())
            session.execute(
                insert(Agreement).values(
                    id=agreement_id,
                    created_by_org=recipient,
                    created_at=now,
                    latest_version=1,
                    in_force_version=1,
                )
            )
            session.execute(
                insert(AgreementVersion).values(
                    id=version_id,
                    agreement_id=agreement_id,
                    version=1,
                    status="active",
                    title="bench",
                    description="",
                    legal_basis="consent",
                    consent_required=True,
                    retention_days=365,
                    valid_from=now,
                    valid_until=now + timedelta(days=365),
                    minimisation_mode="strict",
                    min_cohort=10,
                    pseudonymisation_required=True,
                    jurisdiction="UK",
                    purposes=[],
                    created_by="bench",
                    created_at=now,
                    updated_at=now,
                )
            )
            session.execute(
                insert(AgreementParty),
                [
                    {"version_id": version_id, "organisation_id": provider, "role": "provider"},
                    {"version_id": version_id, "organisation_id": recipient, "role": "recipient"},
                ],
            )
            agreements.append((agreement_id, provider, recipient))
        session.commit()
    return World(agreements, count, 90)


def existing_world(url: str, events: int) -> World:
    """A World that extends the log already in `url` (service stopped) up to `events`.

    The generated events refer to the database's own agreements and parties, follow its
    last event in seq and in time (spread evenly up to now, so `occurred_at` stays
    monotonic), and `bulk_insert` continues the seq from the current `audit_head` size.
    """
    engine = build_engine(url)
    try:
        with engine.connect() as conn:
            size = int(conn.scalar(select(AuditHead.size).where(AuditHead.id == 1)) or 0)
            last = conn.scalar(select(func.max(AuditEvent.occurred_at)))
            rows = conn.execute(
                select(AgreementVersion.agreement_id, AgreementParty.role,
                       AgreementParty.organisation_id)
                .join(AgreementParty, AgreementParty.version_id == AgreementVersion.id)
                .order_by(AgreementVersion.agreement_id, AgreementVersion.version)
            ).all()  # fmt: skip
    finally:
        engine.dispose()
    parties: dict[str, dict[str, str]] = {}
    for agreement_id, role, organisation in rows:
        parties.setdefault(agreement_id, {}).setdefault(role, organisation)
    agreements = [
        (a, p.get("provider", "accord"), p.get("recipient", "accord"))
        for a, p in sorted(parties.items())
    ]
    if not agreements:
        raise RuntimeError("the database holds no agreements to refer to")
    if size >= events:
        raise RuntimeError(f"the log already holds {size:,} events (asked for {events:,})")
    now = datetime.now(UTC)
    start = now if last is None else datetime.fromisoformat(last) + timedelta(microseconds=1)
    span = max((now - start).total_seconds(), 0.0)
    return World(agreements, events, 1, first=size, start=start, span_seconds=span)


def bulk_insert(url: str, world: World, pseudonymise: Pseudonymiser) -> None:
    """Append events world.first .. world.events - 1 and set `audit_head` to world.events.

    Raw inserts (executemany in batches of 50,000 on SQLite, COPY on PostgreSQL) in one
    transaction, each row with its correct leaf hash. The service must not be running:
    the head is checked to still be `world.first` under the write lock.
    """
    columns = ", ".join(COLUMNS)
    batch: list[tuple[Any, ...]] = []
    subjects: list[tuple[int, str]] = []
    if url.startswith("sqlite"):
        lite = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        lite.execute("PRAGMA synchronous=OFF")  # bench build only
        lite.execute("BEGIN IMMEDIATE")
        (size,) = lite.execute("SELECT size FROM audit_head WHERE id = 1").fetchone()
        if size != world.first:
            lite.execute("ROLLBACK")
            raise RuntimeError(f"audit_head is {size}, expected {world.first}")
        marks = ", ".join("?" * len(COLUMNS))
        statement = f"INSERT INTO audit_events ({columns}) VALUES ({marks})"  # noqa: S608
        for event in events(world.events, world, pseudonymise):
            batch.append(as_stored(event))
            subjects.extend((event["seq"], p) for p in event["subjects"])
            if len(batch) == 50_000:
                lite.executemany(statement, batch)
                lite.executemany("INSERT INTO audit_event_subjects VALUES (?, ?)", subjects)
                batch, subjects = [], []
        lite.executemany(statement, batch)
        lite.executemany("INSERT INTO audit_event_subjects VALUES (?, ?)", subjects)
        lite.execute("UPDATE audit_head SET size = ?", (world.events,))
        lite.execute("COMMIT")
        lite.execute("ANALYZE")
        lite.close()
        return
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as connection:
        with connection.cursor() as cursor:
            cursor.execute("SELECT size FROM audit_head WHERE id = 1 FOR UPDATE")
            row = cursor.fetchone()
            if row is None or row[0] != world.first:
                raise RuntimeError(f"audit_head is {row}, expected {world.first}")
            # The events' trigger (migration 0005) adds their audit_event_subjects rows.
            with cursor.copy(f"COPY audit_events ({columns}) FROM STDIN") as copy:
                for event in events(world.events, world, pseudonymise):
                    copy.write_row(as_stored(event))
            cursor.execute("UPDATE audit_head SET size = %s", (world.events,))
        connection.commit()
        connection.autocommit = True
        connection.execute("VACUUM ANALYZE")


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    """Milliseconds per call, after one warm-up call."""
    fn()
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"median {statistics.median(ordered):7.2f} ms   p95 {p95:7.2f} ms"


def searches(world: World, pseudonymise: Pseudonymiser) -> list[tuple[str, Principal, str]]:
    """(label, principal, query string) for each filtered search measured."""
    rnd = seeded(11)
    auditor = Principal("auditor", Role.AUDITOR, ORGS[0])
    out = []
    for _ in range(5):
        agreement_id, provider, recipient = rnd.choice(world.agreements)
        day = START + timedelta(days=rnd.randrange(world.days - 1))
        window = f"from={iso(day)}&to={iso(day + timedelta(days=1))}"
        out += [
            ("agreement", auditor, f"agreement_id={agreement_id}"),
            ("organisation+deny", auditor, f"organisation={recipient}&outcome=deny"),
            ("one day", auditor, window),
            ("one day, newest first", auditor, f"{window}&order=desc"),
            ("reason", auditor, f"reason={rnd.choice(REASONS)}"),
            ("reason+one day", auditor, f"reason={rnd.choice(REASONS)}&{window}"),
            ("subject", auditor, f"subject_id=subject-{rnd.randrange(SUBJECTS)}"),
            ("purpose subtree+action", auditor, "purpose=research&action=decision.made"),
            ("actor", auditor, f"actor=partner@{recipient}"),
            ("partner scope+allow", Principal("p", Role.PARTNER, recipient), "outcome=allow"),
            ("steward scope", Principal("s", Role.STEWARD, provider), ""),
            ("steward scope+deny", Principal("s", Role.STEWARD, provider), "outcome=deny"),
        ]
    return out


def criteria_of(query: str, pseudonymise: Pseudonymiser) -> tuple[search.EventFilter, bool]:
    params = dict(p.split("=", 1) for p in query.split("&") if p)
    subject = params.get("subject_id")
    criteria = search.EventFilter(
        since=datetime.fromisoformat(params["from"]) if "from" in params else None,
        until=datetime.fromisoformat(params["to"]) if "to" in params else None,
        organisation=params.get("organisation"),
        agreement_id=params.get("agreement_id"),
        purpose=params.get("purpose"),
        action=params.get("action"),
        outcome=params.get("outcome"),
        reason=params.get("reason"),
        actor=params.get("actor"),
        subject_pseudonym=None if subject is None else pseudonymise(subject),
    )
    return criteria, params.get("order") == "desc"


def run(backend: str, url: str, count: int) -> dict[str, Any]:
    print(f"\n=== {backend}: {count:,} events ===", flush=True)
    upgrade(url)
    settings = Settings(
        environment=Environment.TEST,
        database_url=url,
        sweep_interval_seconds=0,
        rate_limit_per_second=0,  # one benchmark client; the limiter is not what is measured
    )
    engine = build_engine(url, 5)
    runtime = Runtime(
        settings, session_factory(engine), session_factory(engine, read_only=True), SystemClock()
    )
    pseudonymise = Pseudonymiser(settings.pseudonym_key.get_secret_value().encode())
    figures: dict[str, Any] = {"backend": backend, "events": count}

    started = time.perf_counter()
    world = build_registry(runtime, count)
    bulk_insert(url, world, pseudonymise)
    figures["build_seconds"] = round(time.perf_counter() - started, 1)
    print(f"built in {figures['build_seconds']} s", flush=True)

    started = time.perf_counter()
    head = signer.sign_tree_head(runtime)
    figures["first_signing_seconds"] = round(time.perf_counter() - started, 2)
    print(f"first tree head (cold, stores every subtree): {figures['first_signing_seconds']} s")
    extra = signer.sign_tree_head(runtime)
    assert extra.size == head.size

    cpus = os.cpu_count() or 1
    for workers in sorted({1, cpus}):
        report = verify_log(runtime, workers=workers)
        assert report.ok, report.problems
        figures[f"verify_events_per_second_{workers}_process"] = round(report.events_per_second)
        print(f"verification, {workers} process(es): {report.events:,} events in "
              f"{report.seconds:.2f} s = {report.events_per_second:,.0f} events/s")  # fmt: skip

    rnd = seeded(5)
    seqs = [rnd.randrange(head.size) for _ in range(300)]
    it = iter(seqs * 2)
    with read_transaction(runtime.read_sessions) as session:
        proof_fn = timed(lambda: tree.inclusion_path(session, next(it), head.size), 200)
    figures["inclusion_ms"] = summary(proof_fn)
    print(f"inclusion proof (function):  {summary(proof_fn)}")

    app = create_app(settings)
    if not any(getattr(r, "path", "") == "/v1/audit/jwks" for r in app.routes):
        app.include_router(audit_router)
    tokens = {
        role: mint_token(settings, subject=f"{role.value}", role=role, organisation_id=org)
        for role, org in [
            (Role.AUDITOR, ORGS[0]), (Role.PARTNER, ORGS[1]), (Role.STEWARD, ORGS[2]),
        ]
    }  # fmt: skip
    with TestClient(app) as client:
        auditor = {"Authorization": f"Bearer {tokens[Role.AUDITOR]}"}
        it = iter(seqs * 2)

        def proof_http() -> None:
            response = client.get(f"/v1/audit/events/{next(it)}/inclusion", headers=auditor)
            assert response.status_code == 200, response.text

        baseline = timed(lambda: client.get("/healthz"), 200)
        figures["http_baseline_ms"] = summary(baseline)
        print(f"HTTP baseline (GET /healthz through the ASGI test client): {summary(baseline)}")
        proof_http_ms = timed(proof_http, 200)
        figures["inclusion_http_ms"] = summary(proof_http_ms)
        print(f"inclusion proof (HTTP):      {summary(proof_http_ms)}")

        function_ms: list[float] = []
        http_ms: list[float] = []
        per_label: dict[str, list[float]] = {}
        for label, principal, query in searches(world, pseudonymise):
            criteria, descending = criteria_of(query, pseudonymise)
            with read_transaction(runtime.read_sessions) as session:
                samples = timed(
                    functools.partial(
                        search.find_events,
                        session,
                        principal,
                        criteria,
                        after=None,
                        limit=100,
                        descending=descending,
                    ),
                    3,
                )
            function_ms += samples
            per_label.setdefault(label, []).extend(samples)
            token = mint_token(
                settings, subject="x", role=principal.role,
                organisation_id=principal.organisation_id,
            )  # fmt: skip
            headers = {"Authorization": f"Bearer {token}"}
            url_query = query.replace("+", "%2B")

            def call(q: str = url_query, h: dict[str, str] = headers) -> None:
                response = client.get(f"/v1/audit/events?limit=100&{q}", headers=h)
                assert response.status_code == 200, response.text

            http_ms += timed(call, 3)
        figures["search_ms"] = summary(function_ms)
        figures["search_http_ms"] = summary(http_ms)
        print(f"filtered search (function):  {summary(function_ms)}   ({len(function_ms)} runs)")
        print(f"filtered search (HTTP):      {summary(http_ms)}")
        for label, samples in per_label.items():
            print(f"    {label:28s} {summary(samples)}")

        first = client.get(f"/v1/audit/tree-heads/{head.size}", headers=auditor)
        assert first.status_code == 200
        started = time.perf_counter()
        with client.stream(
            "GET", "/v1/audit/export?format=jsonl&outcome=deny", headers=auditor
        ) as response:
            lines = sum(chunk.count("\n") for chunk in response.iter_text())
        seconds = time.perf_counter() - started
        figures["export_events_per_second"] = round(lines / seconds)
        print(f"export JSONL (deny only):     {lines:,} events in {seconds:.1f} s "
              f"= {lines / seconds:,.0f} events/s")  # fmt: skip
    engine.dispose()
    figures["load_average_after"] = round(os.getloadavg()[0], 2)
    return figures


def machine_load(when: str) -> None:
    """Print how busy the machine is (over one second): other load distorts every figure."""

    def cpu() -> tuple[float, float]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return float(sum(values) - values[3] - values[4]), float(sum(values))

    busy, total = cpu()
    time.sleep(1.0)
    busy_after, total_after = cpu()
    percent = 100 * (busy_after - busy) / max(total_after - total, 1.0)
    print(
        f"machine {when}: {os.cpu_count() or 1} CPUs, {percent:.0f}% busy, "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("ACCORD_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )  # fmt: skip
    args = parser.parse_args()
    results = []
    workdir = Path(tempfile.mkdtemp(prefix="accord-bench-"))
    machine_load("before the benchmark")
    try:
        if args.backend in ("sqlite", "both"):
            results.append(run("sqlite", f"sqlite:///{workdir / 'bench.db'}", args.events))
        if args.backend in ("postgresql", "both"):
            name = f"accord_bench_{uuid.uuid4().hex[:8]}"
            admin = psycopg.connect(args.pg_url, autocommit=True)
            admin.execute(f'CREATE DATABASE "{name}"')
            try:
                base = args.pg_url.rsplit("/", 1)[0].replace(
                    "postgresql://", "postgresql+psycopg://"
                )
                results.append(run("postgresql", f"{base}/{name}", args.events))
            finally:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                admin.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    machine_load("after the benchmark")
    print("\n" + json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
