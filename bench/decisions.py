"""Decision-path benchmark (issue 3, "Performance").

    python bench/decisions.py [--database sqlite|postgresql|both] [--duration SECONDS]
                              [--rounds 3] [--concurrency 32] [--batch-requests 8]
                              [--json PATH] [--log-events N]

For each database, in one run on this machine:

1. a fresh database (SQLite file in a temporary directory; PostgreSQL database
   `accord_bench_<pid>`, dropped afterwards), migrated and seeded with the demo data
   (`python -m service migrate`, `seed-demo`), plus 10,000 bench subjects' consents
   inserted in bulk (every tenth withdrawn);
2. the real service (`uvicorn service.main:app`, one worker) and a bare FastAPI baseline
   (`bench/bare_app.py`: same body model, constant answer), each its own process;
3. a closed-loop load generator (`bench/loadgen.py`, its own process, raw asyncio streams)
   at `--concurrency` keep-alive connections, single-subject requests rotating over
   allowed and denied subjects: the bare and the decision loads alternate in `--rounds`
   rounds (default 3), each a warm-up and then its share of `--duration` seconds, so that
   both see the machine's other load alike; a target's figures merge its rounds
   (throughput over the summed measured time, percentiles over every latency), and each
   round's ratio is printed too; then `--batch-requests` decisions of 10,000 subjects
   each, one at a time;
4. the durability check: rows in `decisions` and `decision.*` events in `audit_events`
   must both equal the number of successful decision responses;
5. a table with the targets (single ≥ 0.25x bare throughput with p99 < 25 ms; batch
   ≥ 25,000 subject-decisions/s), PASS or FAIL for each database.

With `--log-events N` (issue 4, "Performance"), each database instead measures how the
decision endpoint holds up as the audit log grows:

1. the same fresh, seeded database and the same two servers;
2. the bare baseline, then the single-subject load on the small log (the seed's events;
   the exact `audit_head` size is printed); the service is stopped;
3. the audit log is bulk-loaded up to N events with `bench/audit_log.py`'s generator and
   `bulk_insert` (correct leaf hashes, seq continuing from `audit_head`, which ends at N;
   the database's own agreements; times after the last event), then a tree head is
   signed (`python -m service audit sign-tree-head`), as the service's 60 s signer would
   have done while the log grew;
4. the service is restarted, and the bare baseline and the same single-subject load run
   again; the service is stopped and `python -m service audit verify` checks the log;
5. targets: throughput at N ≥ 0.9x that on the small log; no failed requests; every
   decision durably recorded in both phases; the log verifies (and at what rate).

Servers are stopped, and the PostgreSQL database dropped, on success, error or Ctrl-C.
Exit status: 0 when every target passes, 1 when one is missed, 2 on error.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.client
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import func, insert, select

from service.audit.models import AuditEvent, AuditHead
from service.consents.models import Consent, ConsentEvent
from service.core.database import build_engine
from service.core.identity import Role, mint_token
from service.core.pseudonym import Pseudonymiser
from service.core.settings import Settings
from service.decisions.models import Decision

ROOT = Path(__file__).resolve().parents[1]
LOADGEN = ROOT / "bench" / "loadgen.py"

PURPOSE = "research.public_health"
FIELDS = ["diagnosis_code", "date_of_birth", "postcode"]
PROVIDER = "st-marys-health"
RECIPIENT = "civic-data-lab"
WITHDRAWN_EVERY = 10  # every tenth bench subject has withdrawn consent

BATCH_DEADLINE_S = 60.0  # no batch request is started after this

TARGET_RATIO = 0.25
TARGET_P99_MS = 25.0
TARGET_BATCH_RATE = 25_000.0
TARGET_GROWTH_RATIO = 0.9  # issue 4: throughput at 1M events / at ~1k events
TARGET_VERIFY_RATE = 100_000.0  # issue 4: verification events/s


@dataclass(frozen=True)
class Pinning:
    """CPUs for the servers and for the load generator, kept apart."""

    server: frozenset[int]
    client: frozenset[int]

    def describe(self) -> str:
        server = ",".join(map(str, sorted(self.server)))
        client = ",".join(map(str, sorted(self.client)))
        return f"servers pinned to CPU {server}, load generator to CPU {client}"


def cpu_pinning(enabled: bool) -> Pinning | None:
    """One CPU (the last one available) for the server under test, the rest for the load
    generator; None when disabled or with fewer than two CPUs."""
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not enabled or len(available) < 2:
        return None
    return Pinning(frozenset(available[-1:]), frozenset(available[:-1]))


def _pinned_to(cpus: frozenset[int] | None) -> Callable[[], None] | None:
    """A preexec_fn that pins the child process to `cpus`."""
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


@dataclass(frozen=True)
class Options:
    databases: list[str]
    duration: float
    warmup: float
    concurrency: int
    batch_subjects: int
    batch_requests: int
    pg_admin: str
    json_path: Path | None
    rounds: int = 1  # the bare and decision loads alternate in this many rounds
    log_events: int = 0  # > 0: the log-growth benchmark (--log-events)
    pinning: Pinning | None = None  # None: servers and load generator share every CPU


@dataclass
class Result:
    database: str
    url: str
    batch_subjects: int
    prepare_s: float = 0.0
    consents_s: float = 0.0
    bare: dict[str, Any] = field(default_factory=dict)
    single: dict[str, Any] = field(default_factory=dict)
    batch: dict[str, Any] = field(default_factory=dict)
    successes: int = 0
    decision_rows: int = 0
    audit_decision_events: int = 0
    round_ratios: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        bare = self.bare["measured"]["rps"]
        return float(self.single["measured"]["rps"] / bare) if bare else 0.0

    @property
    def batch_rate(self) -> float:
        measured = self.batch["measured"]
        return float(measured["ok"] * self.batch_subjects / measured["elapsed_s"])

    @property
    def durable(self) -> bool:
        return self.successes == self.decision_rows == self.audit_decision_events

    def checks(self) -> list[tuple[str, bool, str]]:
        single = self.single["measured"]
        errors = single["error_count"] + self.batch["measured"]["error_count"]
        return [
            (
                f"single ≥ {TARGET_RATIO}x bare throughput",
                self.ratio >= TARGET_RATIO,
                f"{self.ratio:.3f}x",
            ),
            (
                f"single p99 < {TARGET_P99_MS:g} ms",
                single["p99_ms"] < TARGET_P99_MS,
                f"{single['p99_ms']:.1f} ms",
            ),
            (
                f"batch ≥ {TARGET_BATCH_RATE:,.0f} subject-decisions/s",
                self.batch_rate >= TARGET_BATCH_RATE,
                f"{self.batch_rate:,.0f}/s",
            ),
            ("no failed requests", errors == 0, f"{errors} errors"),
            (
                "every decision durably recorded",
                self.durable,
                f"{self.successes:,} answered, {self.decision_rows:,} rows, "
                f"{self.audit_decision_events:,} audit events",
            ),
        ]


@dataclass
class Phase:
    """One single-decision load of the log-growth benchmark, with its bare baseline."""

    log_start: int = 0  # audit_head when the decision load started
    log_end: int = 0  # audit_head after the service stopped
    bare: dict[str, Any] = field(default_factory=dict)
    single: dict[str, Any] = field(default_factory=dict)
    successes: int = 0
    decision_rows: int = 0
    audit_decision_events: int = 0

    @property
    def durable(self) -> bool:
        return self.successes == self.decision_rows == self.audit_decision_events


@dataclass
class GrowthResult:
    database: str
    url: str
    log_events: int
    prepare_s: float = 0.0
    consents_s: float = 0.0
    small: Phase = field(default_factory=Phase)
    large: Phase = field(default_factory=Phase)
    bulk_from: int = 0
    bulk_s: float = 0.0
    sign_s: float = 0.0
    signed_size: int = 0
    # `audit verify --json` reports (+ "workers", "wall_s"): the CLI's default worker
    # count (cpus - 1), then every CPU
    verifications: list[dict[str, Any]] = field(default_factory=list)

    def _measured(self, phase: Phase, key: str, report: str = "single") -> float:
        return float(getattr(phase, report)["measured"][key])

    def change(self, key: str, report: str = "single") -> float:
        """Large-log figure / small-log figure."""
        small = self._measured(self.small, key, report)
        return self._measured(self.large, key, report) / small if small else math.nan

    @property
    def ratio(self) -> float:
        return self.change("rps")

    @property
    def cpu_change(self) -> float:
        small = self.small.single["server_cpu_ms_per_request"]
        return float(self.large.single["server_cpu_ms_per_request"] / small)

    def checks(self) -> list[tuple[str, bool, str]]:
        errors = sum(p.single["measured"]["error_count"] for p in (self.small, self.large))
        best = max(self.verifications, key=lambda v: float(v.get("events_per_second", 0)))
        rate = float(best.get("events_per_second", 0))
        return [
            (
                f"throughput at {self.log_events:,} events ≥ {TARGET_GROWTH_RATIO}x seeded log",
                self.ratio >= TARGET_GROWTH_RATIO,
                f"{self.ratio:.3f}x: {self.large.log_start:,} vs {self.small.log_start:,} events",
            ),
            ("no failed requests", errors == 0, f"{errors} errors"),
            (
                "every decision durably recorded",
                self.small.durable and self.large.durable,
                f"{self.small.successes + self.large.successes:,} answered, "
                f"{self.small.decision_rows + self.large.decision_rows:,} rows, "
                f"{self.small.audit_decision_events + self.large.audit_decision_events:,} "
                "audit events",
            ),
            (
                "log verifies after the run",
                bool(self.verifications) and all(v.get("ok") for v in self.verifications),
                f"{best.get('events', 0):,} events, {best.get('heads', 0)} heads",
            ),
            (
                f"verification ≥ {TARGET_VERIFY_RATE:,.0f} events/s",
                rate >= TARGET_VERIFY_RATE,
                f"{rate:,.0f}/s, --workers {best.get('workers')}",
            ),
        ]


# -- processes -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_memory_mib(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies over every CPU of the machine."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return float(sum(values) - idle), float(sum(values))


class Server:
    """A uvicorn process; stopped by `stop()` whatever happened."""

    def __init__(
        self,
        name: str,
        app: str,
        env: dict[str, str],
        log_path: Path,
        pinning: Pinning | None = None,
    ) -> None:
        self.name = name
        self.pinning = pinning
        self.port = free_port()
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv, our own interpreter
            [
                sys.executable,
                "-m",
                "uvicorn",
                app,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us, and we stop it in order
            preexec_fn=_pinned_to(pinning.server if pinning else None),
        )

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            finally:
                conn.close()
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def run_cli(env: dict[str, str], *args: str, ok_codes: tuple[int, ...] = (0,)) -> str:
    done = subprocess.run(  # noqa: S603 - fixed argv, our own interpreter
        [sys.executable, "-m", "service", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if done.returncode not in ok_codes:
        raise RuntimeError(f"`accord {' '.join(args)}` failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def run_load(server: Server, spec: dict[str, Any], workdir: Path, timeout: float) -> dict[str, Any]:
    """Run the load generator in its own process against `server`; add CPU figures."""
    spec_path = workdir / f"load-{server.name}-{time.monotonic_ns()}.json"
    spec_path.write_text(json.dumps({"host": "127.0.0.1", "port": server.port, **spec}))
    cpu_before, machine_before = server.cpu_seconds(), machine_cpu()
    wall_before = time.monotonic()
    pinning = server.pinning
    done = subprocess.run(  # noqa: S603 - fixed argv, our own interpreter
        [sys.executable, str(LOADGEN), str(spec_path)],
        cwd=ROOT,
        preexec_fn=_pinned_to(pinning.client if pinning else None),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    wall = time.monotonic() - wall_before
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{done.stderr}")
    report: dict[str, Any] = json.loads(done.stdout)
    busy_after, total_after = machine_cpu()
    server_cpu = server.cpu_seconds() - cpu_before
    answered = report["warmup"]["ok"] + report["measured"]["ok"]
    report["server_cpu_s"], report["wall_s"] = server_cpu, wall
    report["server_peak_mib"] = peak_memory_mib(server.process.pid)
    report["machine_busy"] = busy_after - machine_before[0]
    report["machine_total"] = total_after - machine_before[1]
    return _with_rates(report, answered)


def _with_rates(report: dict[str, Any], answered: int) -> dict[str, Any]:
    """The report's CPU shares, from its summed seconds and jiffies."""
    server_cpu, wall = report["server_cpu_s"], report["wall_s"]
    report["server_cpu_pct"] = 100 * server_cpu / wall
    report["server_cpu_ms_per_request"] = 1000 * server_cpu / answered if answered else math.nan
    report["client_cpu_pct"] = 100 * report["client_cpu_s"] / report["client_wall_s"]
    report["machine_cpu_pct"] = 100 * report["machine_busy"] / max(report["machine_total"], 1.0)
    return report


def merge_loads(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One report for a load run in rounds: counts, times and CPU summed, percentiles over
    every measured latency (the rounds' raw latencies, dropped here)."""
    _bench_modules()
    from loadgen import percentile

    measured = [r["measured"] for r in reports]
    latencies = sorted(x for m in measured for x in m.pop("latencies_us"))
    errors: dict[str, int] = {}
    for m in measured:
        for kind, count in m["errors"].items():
            errors[kind] = errors.get(kind, 0) + count

    def total(key: str, of: Sequence[dict[str, Any]] = measured) -> Any:
        return sum(part[key] for part in of)

    elapsed, ok = total("elapsed_s"), total("ok")
    merged = {
        "ok": ok,
        "errors": errors,
        "error_count": total("error_count"),
        "elapsed_s": elapsed,
        "rps": ok / elapsed,
        **{
            f"p{name}_ms": percentile(latencies, q) / 1e3
            for name, q in (("50", 0.5), ("90", 0.9), ("99", 0.99), ("999", 0.999))
        },
        "max_ms": latencies[-1] / 1e3 if latencies else math.nan,
        "mean_ms": sum(latencies) / len(latencies) / 1e3 if latencies else math.nan,
        **{k: total(k) for k in ("allow", "deny", "subject_allow", "subject_deny")},
    }
    warmups = [r["warmup"] for r in reports]
    report = {
        "warmup": {"ok": total("ok", warmups), "error_count": total("error_count", warmups)},
        "measured": merged,
        "rounds_rps": [m["rps"] for m in measured],
        "server_peak_mib": max(r["server_peak_mib"] for r in reports),
        **{
            key: total(key, reports)
            for key in (
                "client_cpu_s", "client_wall_s", "server_cpu_s", "wall_s", "machine_busy",
                "machine_total",
            )
        },
    }  # fmt: skip
    return _with_rates(report, report["warmup"]["ok"] + ok)


# -- databases -----------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(kind: str, workdir: Path, pg_admin: str) -> Iterator[str]:
    """Yield the SQLAlchemy URL of an empty database; a PostgreSQL one is dropped after."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'accord-bench.db'}"
        return
    name = f"accord_bench_{os.getpid()}"
    with psycopg.connect(pg_admin, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        info = psycopg.conninfo.conninfo_to_dict(pg_admin)
        user, host = info.get("user", "postgres"), info.get("host", "127.0.0.1")
        port, password = info.get("port", 5432), info.get("password")
        auth = f"{user}:{password}" if password else f"{user}"
        yield f"postgresql+psycopg://{auth}@{host}:{port}/{name}"
    finally:
        with psycopg.connect(pg_admin, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench_subject(n: int) -> str:
    return f"bench-subject-{n:05d}"


def seed_bench_consents(url: str, settings: Settings, count: int) -> None:
    """Consents of `count` bench subjects held by the provider, inserted in bulk.

    Rows as `consents.service.record` (and `withdraw`) would leave them: the current state
    plus its `consent_events` history. Their `consent.*` audit events are left out; the
    benchmark only checks `decision.*` events.
    """
    pseudonymise = Pseudonymiser(settings.pseudonym_key.get_secret_value().encode())
    now = datetime.now(UTC)
    valid_from = now - timedelta(days=1)
    collected_at = valid_from.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    evidence = {"method": "web_form", "notice_version": "2026-03", "collected_at": collected_at}
    consents: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for n in range(1, count + 1):
        consent_id = f"00000000-0000-4000-8000-{n:012d}"
        withdrawn = n % WITHDRAWN_EVERY == 0
        state = {
            "status": "given",
            "purposes": ["research"],
            "categories": ["contact.address", "health", "identity"],
            "valid_from": collected_at,
            "valid_until": None,
            "evidence": evidence,
            "subject_is_minor": False,
            "guardian": None,
        }
        consents.append(
            {
                "id": consent_id,
                "subject_pseudonym": pseudonymise(bench_subject(n)),
                "controller_org": PROVIDER,
                "status": "withdrawn" if withdrawn else "given",
                "purposes": state["purposes"],
                "categories": state["categories"],
                "valid_from": valid_from,
                "valid_until": None,
                "evidence": evidence,
                "subject_is_minor": False,
                "guardian": None,
                "revision": 2 if withdrawn else 1,
                "created_at": now,
                "updated_at": now,
            }
        )
        history = [("given", state)]
        if withdrawn:
            history.append(("withdrawn", {**state, "status": "withdrawn"}))
        events.extend(
            {
                "consent_id": consent_id,
                "revision": revision,
                "event_type": event_type,
                "state": event_state,
                "actor_subject": f"partner@{PROVIDER}",
                "actor_org": PROVIDER,
                "occurred_at": now,
            }
            for revision, (event_type, event_state) in enumerate(history, start=1)
        )
    engine = build_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(insert(Consent), consents)
            conn.execute(insert(ConsentEvent), events)
        if engine.dialect.name == "postgresql":
            # A deployment's autovacuum analyzes a table this size within about a minute of
            # such a change; until then the planner has no statistics for the consents, and
            # reads a group's handful of subjects by scanning all 10,000 (4 ms instead of
            # 0.3). The loads start seconds after this: analyze now, as autovacuum would.
            with engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                    "ANALYZE consents, consent_events"
                )
    finally:
        engine.dispose()


def count_records(url: str) -> tuple[int, int]:
    """(rows in decisions, decision.* events in audit_events)."""
    engine = build_engine(url)
    try:
        with engine.connect() as conn:
            decisions = conn.scalar(select(func.count()).select_from(Decision)) or 0
            events = (
                conn.scalar(
                    select(func.count())
                    .select_from(AuditEvent)
                    .where(AuditEvent.action.like("decision.%"))
                )
                or 0
            )
    finally:
        engine.dispose()
    return int(decisions), int(events)


def log_size(url: str) -> int:
    """The audit log's size as `audit_head` records it."""
    engine = build_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(select(AuditHead.size).where(AuditHead.id == 1)) or 0)
    finally:
        engine.dispose()


# -- one database --------------------------------------------------------------------------


def request_bodies(agreement_id: str, opts: Options) -> tuple[list[str], str]:
    """Single-subject bodies (allowed, withdrawn and unknown subjects), and the batch body."""
    singles = []
    for i in range(240):
        if i % 12 == 0:
            subject = f"unknown-subject-{i:04d}"  # no consent: deny
        elif i % 12 == 1:
            subject = f"patient-{(i // 12) % 20 + 1:04d}"  # demo data; patient-0020 withdrew
        else:
            subject = bench_subject(i + 1)  # every tenth withdrew
        singles.append(
            json.dumps(
                {
                    "agreement_id": agreement_id,
                    "purpose": PURPOSE,
                    "fields": FIELDS,
                    "subjects": [subject],
                }
            )
        )
    batch = json.dumps(
        {
            "agreement_id": agreement_id,
            "purpose": PURPOSE,
            "fields": FIELDS,
            "subjects": [bench_subject(n) for n in range(1, opts.batch_subjects + 1)],
        }
    )
    return singles, batch


@dataclass(frozen=True)
class Prepared:
    """A fresh, migrated, seeded database and what the servers and load need for it."""

    label: str
    workdir: Path
    url: str
    env: dict[str, str]  # the servers' environment
    settings: Settings
    agreement_id: str  # the demo's active agreement
    token: str  # the bench partner's bearer token
    prepare_s: float
    consents_s: float


def prepare(kind: str, opts: Options, stack: contextlib.ExitStack) -> Prepared:
    """Everything both benchmarks start from; cleaned up when `stack` closes."""
    label = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[kind]
    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="accord-bench-")))
    url = stack.enter_context(fresh_database(kind, workdir, opts.pg_admin))
    print(f"\n[{label}] preparing {url}", flush=True)
    env = {
        **os.environ,
        "ACCORD_DATABASE_URL": url,
        "ACCORD_SWEEP_INTERVAL_SECONDS": "0",
        # One token drives all the load: the per-client limiter would measure itself.
        "ACCORD_RATE_LIMIT_PER_SECOND": "0",
        "ACCORD_LOG_LEVEL": "WARNING",
    }
    settings = Settings(database_url=url)
    started = time.monotonic()
    run_cli(env, "migrate")
    seeded = json.loads(run_cli(env, "seed-demo"))
    prepare_s = time.monotonic() - started
    started = time.monotonic()
    seed_bench_consents(url, settings, opts.batch_subjects)
    consents_s = time.monotonic() - started
    token = mint_token(
        settings,
        subject="bench-partner",
        role=Role.PARTNER,
        organisation_id=RECIPIENT,
        ttl_seconds=3600,
    )
    agreement_id = seeded["agreements"]["active"]
    return Prepared(label, workdir, url, env, settings, agreement_id, token, prepare_s, consents_s)


def run_database(kind: str, opts: Options) -> Result:
    with contextlib.ExitStack() as stack:
        bench = prepare(kind, opts, stack)
        label, url, env, workdir = bench.label, bench.url, bench.env, bench.workdir
        result = Result(label, url, opts.batch_subjects)
        result.prepare_s, result.consents_s = bench.prepare_s, bench.consents_s
        before = count_records(url)

        service = Server("service", "service.main:app", env, workdir / "service.log", opts.pinning)
        stack.callback(service.stop)
        bare = Server("bare", "bench.bare_app:app", env, workdir / "bare.log", opts.pinning)
        stack.callback(bare.stop)
        service.wait_ready()
        bare.wait_ready()

        singles, batch = request_bodies(bench.agreement_id, opts)
        # The bare and the decision loads alternate, so that both see the machine's other
        # load alike: on a shared machine it can change by a third within minutes.
        each = opts.duration / opts.rounds
        timed = {
            **timed_spec(bench.token, singles, opts),
            "duration_seconds": each,
            "raw_latencies": True,
        }
        limit = opts.warmup + each + 90
        bare_loads, single_loads = [], []
        for n in range(1, opts.rounds + 1):
            print(f"[{label}] round {n}/{opts.rounds}: bare FastAPI, {each:g} s", flush=True)
            bare_loads.append(run_load(bare, timed, workdir, limit))
            print(f"[{label}] round {n}/{opts.rounds}: decision endpoint, {each:g} s", flush=True)
            single_loads.append(run_load(service, timed, workdir, limit))
        result.bare, result.single = merge_loads(bare_loads), merge_loads(single_loads)
        result.round_ratios = [
            s / b
            for s, b in zip(result.single["rounds_rps"], result.bare["rounds_rps"], strict=True)
        ]
        print(
            f"[{label}] batch: {opts.batch_requests} x {opts.batch_subjects:,} subjects",
            flush=True,
        )
        counted = {
            **timed,
            "bodies": [batch],
            "concurrency": 1,
            "duration_seconds": 0,
            "warmup_requests": 1,
            "requests": opts.batch_requests,
            "deadline_seconds": BATCH_DEADLINE_S,
            "timeout_seconds": 30.0,
        }
        result.batch = run_load(service, counted, workdir, BATCH_DEADLINE_S + 90)

        service.stop()
        after = count_records(url)
        result.decision_rows = after[0] - before[0]
        result.audit_decision_events = after[1] - before[1]
        result.successes = sum(
            report[phase]["ok"]
            for report in (result.single, result.batch)
            for phase in ("warmup", "measured")
        )
    return result


def timed_spec(token: str, singles: list[str], opts: Options) -> dict[str, Any]:
    return {
        "path": "/v1/decisions",
        "headers": {"Authorization": f"Bearer {token}"},
        "bodies": singles,
        "concurrency": opts.concurrency,
        "warmup_seconds": opts.warmup,
        "duration_seconds": opts.duration,
        "warmup_requests": 0,
        "requests": 0,
        "deadline_seconds": 0,
        "timeout_seconds": 30.0,
    }


def measure_phase(
    label: str, tag: str, env: dict[str, str], bare: Server, spec: dict[str, Any],
    workdir: Path, opts: Options,
) -> Phase:  # fmt: skip
    """Start the service, run the bare baseline then the single-decision load, stop it."""
    url = env["ACCORD_DATABASE_URL"]
    phase = Phase()
    before = count_records(url)
    service = Server(
        "service", "service.main:app", env, workdir / f"service-{tag}.log", opts.pinning
    )
    limit = opts.warmup + opts.duration + 90
    try:
        service.wait_ready()
        print(f"[{label}] bare FastAPI baseline, {opts.duration:g} s", flush=True)
        phase.bare = run_load(bare, spec, workdir, limit)
        phase.log_start = log_size(url)
        print(
            f"[{label}] decision endpoint, {opts.duration:g} s, "
            f"{phase.log_start:,} events in the log",
            flush=True,
        )
        phase.single = run_load(service, spec, workdir, limit)
    finally:
        service.stop()
    phase.log_end = log_size(url)
    after = count_records(url)
    phase.decision_rows = after[0] - before[0]
    phase.audit_decision_events = after[1] - before[1]
    phase.successes = sum(phase.single[p]["ok"] for p in ("warmup", "measured"))
    return phase


def _bench_modules() -> None:
    """Make bench/'s own modules importable (this one may be imported as bench.decisions)."""
    bench_dir = str(Path(__file__).resolve().parent)
    if bench_dir not in sys.path:
        sys.path.insert(0, bench_dir)


def grow_log(url: str, settings: Settings, events: int) -> int:
    """Bulk-append audit events until the log holds `events`; returns the size before.

    `bench/audit_log.py`'s generator and `bulk_insert`: correct leaf hashes, seq from the
    current `audit_head` on, `audit_head` set to `events` in the same transaction.
    """
    _bench_modules()
    from audit_log import bulk_insert, existing_world

    world = existing_world(url, events)
    pseudonymise = Pseudonymiser(settings.pseudonym_key.get_secret_value().encode())
    bulk_insert(url, world, pseudonymise)
    return world.first


def run_growth(kind: str, opts: Options) -> GrowthResult:
    """The log-growth benchmark (--log-events) on one database."""
    with contextlib.ExitStack() as stack:
        bench = prepare(kind, opts, stack)
        label, url, env, workdir = bench.label, bench.url, bench.env, bench.workdir
        result = GrowthResult(label, url, opts.log_events)
        result.prepare_s, result.consents_s = bench.prepare_s, bench.consents_s

        bare = Server("bare", "bench.bare_app:app", env, workdir / "bare.log", opts.pinning)
        stack.callback(bare.stop)
        bare.wait_ready()
        singles, _ = request_bodies(bench.agreement_id, opts)
        spec = timed_spec(bench.token, singles, opts)

        result.small = measure_phase(f"{label}, small log", "small", env, bare, spec, workdir, opts)

        print(
            f"[{label}] bulk-loading the audit log from {log_size(url):,} "
            f"to {opts.log_events:,} events",
            flush=True,
        )
        started = time.monotonic()
        result.bulk_from = grow_log(url, bench.settings, opts.log_events)
        result.bulk_s = time.monotonic() - started
        print(f"[{label}] loaded in {result.bulk_s:.1f} s; signing a tree head", flush=True)
        started = time.monotonic()
        head = json.loads(run_cli(env, "audit", "sign-tree-head"))
        result.sign_s = time.monotonic() - started
        result.signed_size = int(head["tree_size"])

        result.large = measure_phase(
            f"{label}, {opts.log_events:,} events", "large", env, bare, spec, workdir, opts
        )

        cpus = os.cpu_count() or 1
        for workers in sorted({max(1, cpus - 1), cpus}):  # the CLI's default, every CPU
            print(f"[{label}] verifying the log, --workers {workers}", flush=True)
            started = time.monotonic()
            report = json.loads(
                run_cli(
                    env, "audit", "verify", "--json", "--workers", str(workers),
                    ok_codes=(0, 1),
                )
            )  # fmt: skip
            report.update(workers=workers, wall_s=time.monotonic() - started)
            result.verifications.append(report)
    return result


# -- report --------------------------------------------------------------------------------


def fmt(value: float, spec: str = ",.1f") -> str:
    return "n/a" if math.isnan(value) else format(value, spec)


HEADER = (
    f"{'target':<34}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'p99.9 ms':>10}{'max ms':>9}"
    f"{'errors':>8}  {'allow/deny':<13}{'server CPU':>11}{'CPU ms/req':>11}{'client CPU':>11}"
    f"{'machine':>9}{'peak MiB':>10}"
)


def print_row(name: str, report: dict[str, Any], decisions: bool) -> None:
    m = report["measured"]
    allow = f"{m['allow']}/{m['deny']}" if decisions else "-"
    print(
        f"{name:<34}{fmt(m['rps']):>10}{fmt(m['p50_ms']):>9}{fmt(m['p99_ms']):>9}"
        f"{fmt(m['p999_ms']):>10}"
        f"{fmt(m['max_ms']):>9}{m['error_count']:>8}  {allow:<13}"
        f"{fmt(report['server_cpu_pct'], '.0f') + '%':>11}"
        f"{fmt(report['server_cpu_ms_per_request'], ',.2f'):>11}"
        f"{fmt(report['client_cpu_pct'], '.0f') + '%':>11}"
        f"{fmt(report['machine_cpu_pct'], '.0f') + '%':>9}"
        f"{fmt(report['server_peak_mib'], ',.0f'):>10}"
    )
    if m["errors"]:
        print(f"{'':<34}errors: {m['errors']}")


def print_growth(result: GrowthResult, opts: Options) -> None:
    small, large = result.small, result.large
    print(f"\n=== {result.database}: {result.url}")
    print(
        f"prepared in {result.prepare_s:.1f} s (migrate + seed-demo), "
        f"{opts.batch_subjects:,} bench consents in {result.consents_s:.1f} s; "
        f"{opts.concurrency} connections, {opts.duration:g} s after {opts.warmup:g} s warm-up"
    )
    loaded = result.log_events - result.bulk_from
    print(
        f"small log: {small.log_start:,} events when the decision load started, "
        f"{small.log_end:,} after it"
    )
    print(
        f"bulk load: {result.bulk_from:,} -> {result.log_events:,} events ({loaded:,} rows) in "
        f"{result.bulk_s:.1f} s = {loaded / max(result.bulk_s, 1e-9):,.0f} events/s; "
        f"tree head of {result.signed_size:,} signed in {result.sign_s:.1f} s"
    )
    print(
        f"large log: {large.log_start:,} events when the decision load started, "
        f"{large.log_end:,} after it"
    )
    print(HEADER)
    print("-" * len(HEADER))
    print_row("bare FastAPI, small-log phase", small.bare, False)
    print_row(f"decision @ {small.log_start:,} events", small.single, True)
    print_row("bare FastAPI, large-log phase", large.bare, False)
    print_row(f"decision @ {large.log_start:,} events", large.single, True)
    print(
        f"large/small: throughput {result.ratio:.3f}x (target ≥ {TARGET_GROWTH_RATIO}), "
        f"p50 {result.change('p50_ms'):.2f}x, p99 {result.change('p99_ms'):.2f}x, "
        f"server CPU ms/req {result.cpu_change:.2f}x; bare baseline throughput "
        f"{result.change('rps', 'bare'):.3f}x"
    )
    bare_change = result.change("rps", "bare")
    print(
        f"(throughput ratio relative to the bare baseline's, for drift in other load: "
        f"{result.ratio / bare_change:.3f}x)"
    )
    for v in result.verifications:
        state = "ok" if v.get("ok") else f"FAILED: {v.get('first')}"
        print(
            f"verify after the run (`python -m service audit verify --workers "
            f"{v['workers']}`): {state}, {v.get('events', 0):,} events, "
            f"{v.get('heads', 0)} signed heads, {v.get('seconds', 0):.2f} s = "
            f"{v.get('events_per_second', 0):,} events/s ({v['wall_s']:.1f} s with "
            "process start)"
        )
    print(
        "durability: "
        + "; ".join(
            f"{name} {p.successes:,} answered, {p.decision_rows:,} rows in decisions, "
            f"{p.audit_decision_events:,} decision.* audit events"
            for name, p in (("small log", small), ("large log", large))
        )
    )
    print(
        "(server and client CPU in % of one core, machine in % of all cores; CPU ms/req is "
        "the server's CPU time per answered request, the figure least disturbed by other load)"
    )


def print_database(result: Result, opts: Options) -> None:
    print(f"\n=== {result.database}: {result.url}")
    print(
        f"prepared in {result.prepare_s:.1f} s (migrate + seed-demo), "
        f"{opts.batch_subjects:,} bench consents in {result.consents_s:.1f} s; "
        f"{opts.concurrency} connections, {opts.duration:g} s per target in "
        f"{opts.rounds} alternating rounds, each after {opts.warmup:g} s warm-up"
    )
    header = HEADER
    print(header)
    print("-" * len(header))
    rows = [
        ("bare FastAPI (same body, constant)", result.bare, False),
        ("POST /v1/decisions, 1 subject", result.single, True),
        (f"batch, {opts.batch_subjects:,} subjects (seq.)", result.batch, True),
    ]
    for name, report, decisions in rows:
        print_row(name, report, decisions)
    b = result.batch["measured"]
    rounds = ", ".join(f"{r:.3f}" for r in result.round_ratios)
    print(f"ratio decision/bare: {result.ratio:.3f} (rounds: {rounds})")
    print(
        f"batch: {fmt(result.batch_rate, ',.0f')} subject-decisions/s "
        f"({b['subject_allow']:,} allowed / {b['subject_deny']:,} denied subjects), "
        f"p50 of one batch {fmt(b['p50_ms'])} ms"
    )
    print(
        f"durability: {result.successes:,} successful decision responses; "
        f"{result.decision_rows:,} rows in decisions; "
        f"{result.audit_decision_events:,} decision.* audit events"
    )
    print(
        "(server and client CPU in % of one core, machine in % of all cores; CPU ms/req is "
        "the server's CPU time per answered request, the figure least disturbed by other load)"
    )


def print_targets(results: Sequence[Result | GrowthResult]) -> bool:
    names = [name for name, _, _ in results[0].checks()]
    width = max(len(n) for n in names) + 2
    table = [
        [f"{'PASS' if ok else 'FAIL'} ({detail})" for _, ok, detail in result.checks()]
        for result in results
    ]
    widths = [
        max(len(result.database), *(len(c) for c in column)) + 3
        for result, column in zip(results, table, strict=True)
    ]
    print("\n=== targets")
    print(
        f"{'target':<{width}}"
        + "".join(f"{r.database:<{w}}" for r, w in zip(results, widths, strict=True))
    )
    all_pass = all(ok for result in results for _, ok, _ in result.checks())
    for i, name in enumerate(names):
        cells = "".join(f"{column[i]:<{w}}" for column, w in zip(table, widths, strict=True))
        print(f"{name:<{width}}{cells}")
    print(f"\noverall: {'PASS' if all_pass else 'FAIL'}")
    return all_pass


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per target")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per load")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="the bare and decision loads alternate in this many rounds (their --duration "
        "split between them)",
    )
    parser.add_argument("--concurrency", type=int, default=32, help="connections")
    parser.add_argument("--batch-requests", type=int, default=8, help="measured batches")
    parser.add_argument(
        "--batch-subjects", type=int, default=10_000, help="subjects per batch (max 10,000)"
    )
    parser.add_argument(
        "--pg-admin",
        default=os.environ.get(
            "ACCORD_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="libpq URL of a database to run CREATE/DROP DATABASE from",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="let the servers and the load generator share every CPU (default: the server "
        "under test on the last CPU, the load generator on the others)",
    )
    parser.add_argument(
        "--log-events",
        type=int,
        default=0,
        metavar="N",
        help="instead: decision throughput on the seeded log vs. after bulk-loading the audit "
        "log to N events (e.g. 1000000)",
    )
    args = parser.parse_args(argv)
    databases = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    return Options(
        databases=databases,
        duration=args.duration,
        warmup=args.warmup,
        concurrency=args.concurrency,
        batch_subjects=args.batch_subjects,
        batch_requests=args.batch_requests,
        pg_admin=args.pg_admin,
        json_path=args.json,
        rounds=max(1, args.rounds),
        log_events=args.log_events,
        pinning=cpu_pinning(not args.no_pin),
    )


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds the ExitStacks: servers stop, databases drop


def preflight(pinning: Pinning | None) -> None:
    """Say how busy the machine already is: other load distorts every figure."""
    busy, total = machine_cpu()
    time.sleep(1.0)
    busy_after, total_after = machine_cpu()
    idle_load = 100 * (busy_after - busy) / max(total_after - total, 1.0)
    cpus = os.cpu_count() or 1
    print(
        f"machine: {cpus} CPUs, {idle_load:.0f}% busy before the benchmark, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(pinning.describe() if pinning else "not pinned: servers and load generator share CPUs")
    if idle_load > 20:
        print("warning: the machine is busy; the figures below are disturbed by other work")


def main_growth(opts: Options, started: float) -> int:
    results = []
    try:
        for kind in opts.databases:
            results.append(run_growth(kind, opts))
    except KeyboardInterrupt:
        print("\ninterrupted; servers stopped", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"\nbenchmark failed: {exc}", file=sys.stderr)
        return 2
    for result in results:
        print_growth(result, opts)
    passed = print_targets(results)
    print(f"total time {time.monotonic() - started:.0f} s")
    if opts.json_path is not None:
        opts.json_path.write_text(
            json.dumps(
                [
                    {**dataclasses.asdict(r), "ratio": r.ratio, "checks": r.checks()}
                    for r in results
                ],
                indent=2,
            )
        )
    return 0 if passed else 1


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    # Ctrl-C must stop the servers even when SIGINT was inherited as ignored (`cmd &`).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.monotonic()
    preflight(opts.pinning)
    if opts.log_events > 0:
        return main_growth(opts, started)
    results = []
    try:
        for kind in opts.databases:
            results.append(run_database(kind, opts))
    except KeyboardInterrupt:
        print("\ninterrupted; servers stopped", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"\nbenchmark failed: {exc}", file=sys.stderr)
        return 2
    for result in results:
        print_database(result, opts)
    passed = print_targets(results)
    print(f"total time {time.monotonic() - started:.0f} s")
    if opts.json_path is not None:
        opts.json_path.write_text(
            json.dumps(
                [
                    {
                        **vars(r),
                        "ratio": r.ratio,
                        "batch_rate": r.batch_rate,
                        "checks": r.checks(),
                    }
                    for r in results
                ],
                indent=2,
            )
        )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
