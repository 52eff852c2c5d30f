"""Several worker processes appending at once still make one gapless, linear, verifiable log.

Each worker is a separate OS process with its own engine and connections (as uvicorn
workers or replicas are); one more process signs tree heads while they write.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from sqlalchemy import select

from service.audit.models import AuditEvent
from service.audit.verify import verify_log
from tests.audit.conftest import LogRuntime, tx

pytestmark = [pytest.mark.storage, pytest.mark.slow]

WORKERS, APPENDS = 3, 120

WORKER = """
import sys
from datetime import UTC, datetime
from service.audit import log as audit
from service.audit.actions import AuditAction
from service.core.database import build_engine, session_factory, transaction
from service.core.deps import Actor
from service.core.identity import Principal, Role

url, worker, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
engine = build_engine(url, 2)
sessions = session_factory(engine)
actor = Actor(Principal(f"worker-{worker}", Role.PARTNER, "uni-lab"), None)
for i in range(count):
    record = audit.EventRecord(
        AuditAction.DECISION_MADE, "decision", f"w{worker}-{i}", details={"i": i}
    )
    for session in transaction(sessions):
        audit.append(session, actor, record, datetime.now(UTC))
engine.dispose()
"""

SIGNER = """
import sys
from dataclasses import dataclass
from service.audit import signer, tree
from service.core.clock import SystemClock
from service.core.database import build_engine, session_factory, transaction
from service.core.settings import Settings

url, total = sys.argv[1], int(sys.argv[2])
tree.MIN_LEVEL = 3  # small blocks, so the stored tree grows while the log does

@dataclass
class Runtime:
    settings: object
    sessions: object
    read_sessions: object
    clock: object

engine = build_engine(url, 2)
runtime = Runtime(
    Settings(database_url=url), session_factory(engine), session_factory(engine, read_only=True),
    SystemClock(),
)
signed = set()
while True:
    head = signer.sign_tree_head(runtime)
    signed.add(head.size)
    if head.size >= total:
        break
print(len(signed))
engine.dispose()
"""


def test_worker_processes_make_one_linear_log(
    log_runtime: LogRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.audit import tree

    monkeypatch.setattr(tree, "MIN_LEVEL", 3)  # as the signer process
    url = log_runtime.settings.database_url
    started = time.monotonic()
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, url, str(n), str(APPENDS)])
        for n in range(WORKERS)
    ]
    signing = subprocess.Popen(
        [sys.executable, "-c", SIGNER, url, str(WORKERS * APPENDS)], stdout=subprocess.PIPE
    )
    for worker in workers:
        assert worker.wait(timeout=120) == 0
    out, _ = signing.communicate(timeout=120)
    assert signing.returncode == 0
    # Usually several heads are signed while the workers write; on a loaded machine the
    # workers may finish first, so only the final head is certain.
    assert int(out) >= 1
    assert time.monotonic() - started < 60

    with tx(log_runtime.read_sessions) as session:
        rows = session.execute(
            select(AuditEvent.seq, AuditEvent.actor_subject, AuditEvent.details).order_by(
                AuditEvent.seq
            )
        ).all()
    assert [r.seq for r in rows] == list(range(WORKERS * APPENDS))
    for n in range(WORKERS):  # each worker's events follow its commit order
        mine = [r.details["i"] for r in rows if r.actor_subject == f"worker-{n}"]
        assert mine == list(range(APPENDS))
    report = verify_log(log_runtime)
    assert report.ok, report.problems
    assert report.events == WORKERS * APPENDS
