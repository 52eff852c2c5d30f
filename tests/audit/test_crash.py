"""SIGKILL the server while clients are deciding: every decision a client received is in
the log after a restart, and the log verifies."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx2
import pytest
from sqlalchemy import select

from service.agreements.models import AgreementVersion
from service.core.database import build_engine, session_factory
from service.core.identity import Role, mint_token
from service.core.settings import Settings
from service.demo import seed

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(url: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "ACCORD_DATABASE_URL": url,
        "ACCORD_RATE_LIMIT_PER_SECOND": "0",
        "ACCORD_SWEEP_INTERVAL_SECONDS": "0",
        "ACCORD_TREE_HEAD_INTERVAL_SECONDS": "0",
        "ACCORD_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "service.main:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx2.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise AssertionError("the server did not become ready")
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def test_decisions_survive_sigkill_and_the_log_verifies(database_url: str) -> None:
    settings = Settings(database_url=database_url)
    seed(settings)
    engine = build_engine(database_url, 2)
    with session_factory(engine)() as session:
        agreement_id = session.scalar(
            select(AgreementVersion.agreement_id).where(
                AgreementVersion.title == "Public health research extract"
            )
        )
    engine.dispose()
    partner = mint_token(settings, subject="p", role=Role.PARTNER, organisation_id="civic-data-lab")
    auditor = mint_token(settings, subject="a", role=Role.AUDITOR, organisation_id="city-council")
    body = {
        "agreement_id": agreement_id,
        "purpose": "research.public_health",
        "fields": ["postcode"],
        "subjects": ["patient-0001", "patient-0002"],
    }
    port = _free_port()
    received: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client() -> None:
        with httpx2.Client(
            base_url=f"http://127.0.0.1:{port}",
            timeout=5,
            headers={"Authorization": f"Bearer {partner}"},
        ) as http:
            while not stop.is_set():
                try:
                    response = http.post("/v1/decisions", json=body)
                except httpx2.HTTPError:
                    continue  # the server is gone; whatever was not answered does not count
                if response.status_code == 200:
                    with lock:
                        received.append(response.json()["decision_id"])

    with server(database_url, port) as process:
        clients = [threading.Thread(target=client) for _ in range(8)]
        for thread in clients:
            thread.start()
        while len(received) < 50:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        stop.set()
        for thread in clients:
            thread.join(timeout=10)

    with (
        server(database_url, port),
        httpx2.Client(
            base_url=f"http://127.0.0.1:{port}",
            timeout=30,
            headers={"Authorization": f"Bearer {auditor}"},
        ) as http,
    ):
        missing = [d for d in received if http.get(f"/v1/decisions/{d}").status_code != 200]
        assert missing == [], f"{len(missing)} acknowledged decisions were lost"
        report = http.post("/v1/audit/verify").json()
        assert report["ok"] is True, report
