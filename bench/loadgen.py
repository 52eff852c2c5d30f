"""Closed-loop HTTP/1.1 load generator on raw asyncio streams.

Each of `concurrency` keep-alive connections has exactly one request in flight: it sends
the next prebuilt request, reads the whole response, records the latency and sends again.
Raw streams (with uvloop when installed) keep the client cheap enough that it is never the
limit; the report includes the client's own CPU time so that this can be checked.

Usage: ``python bench/loadgen.py SPEC.json`` prints one JSON report on stdout.

The spec (see `LoadSpec`) either runs for a time (`warmup_seconds` + `duration_seconds`)
or sends a fixed number of requests (`warmup_requests` + `requests`, none started after
`deadline_seconds`; those count as errors). Requests in flight
when the time is up are completed, never abandoned, so every request the server answered
is counted (the durability check relies on it).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NotRequired, TypedDict


class LoadSpec(TypedDict):
    host: str
    port: int
    path: str
    headers: dict[str, str]
    bodies: list[str]  # JSON request bodies, sent in rotation
    concurrency: int
    warmup_seconds: float
    duration_seconds: float  # > 0: timed run
    warmup_requests: int
    requests: int  # used when duration_seconds == 0: fixed number of requests
    deadline_seconds: float  # fixed-count runs start no request after this (0: none)
    timeout_seconds: float
    raw_latencies: NotRequired[bool]  # the measured phase's latencies too, in µs


def percentile(ordered: list[int], q: float) -> float:
    """The nearest-rank `q` quantile of sorted values (NaN for none)."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


@dataclass
class Phase:
    """What one phase (warm-up or measured) saw."""

    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies_ns: list[int] = field(default_factory=list)
    allow: int = 0
    deny: int = 0
    subject_allow: int = 0
    subject_deny: int = 0
    started: float = 0.0
    finished: float = 0.0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def report(self, raw_latencies: bool = False) -> dict[str, Any]:
        ordered = sorted(self.latencies_ns)
        elapsed = max(self.finished - self.started, 1e-9)

        def pct(q: float) -> float:
            return percentile(ordered, q) / 1e6

        return {
            "ok": self.ok,
            "errors": dict(self.errors),
            "error_count": sum(self.errors.values()),
            "elapsed_s": elapsed,
            "rps": self.ok / elapsed,
            "p50_ms": pct(0.50),
            "p90_ms": pct(0.90),
            "p99_ms": pct(0.99),
            "p999_ms": pct(0.999),
            "max_ms": ordered[-1] / 1e6 if ordered else float("nan"),
            "mean_ms": sum(ordered) / len(ordered) / 1e6 if ordered else float("nan"),
            "allow": self.allow,
            "deny": self.deny,
            "subject_allow": self.subject_allow,
            "subject_deny": self.subject_deny,
            **({"latencies_us": [ns // 1000 for ns in ordered]} if raw_latencies else {}),
        }


def build_requests(spec: LoadSpec) -> list[bytes]:
    head = f"POST {spec['path']} HTTP/1.1\r\nHost: {spec['host']}:{spec['port']}\r\n"
    head += "Content-Type: application/json\r\nAccept: application/json\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in spec["headers"].items())
    out = []
    for body in spec["bodies"]:
        data = body.encode()
        out.append(f"{head}Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return out


class ProtocolError(Exception):
    pass


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """One HTTP/1.1 response: (status, body, server closes the connection)."""
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1."):
        raise ProtocolError("not an HTTP/1.x response")
    status = int(head[9:12])
    length, chunked, close = -1, False, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection" and b"close" in value.lower():
            close = True
    if chunked:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers expected
                break
            parts.append((await reader.readexactly(size + 2))[:-2])
        return status, b"".join(parts), close
    if length >= 0:
        return status, await reader.readexactly(length), close
    return status, await reader.read(), True


def classify(phase: Phase, body: bytes) -> None:
    """Count allow/deny of a decision response, and of its per-subject results."""
    top_allow = b'"allow":true' in body[:120]
    if top_allow:
        phase.allow += 1
    else:
        phase.deny += 1
    allows = body.count(b'"allow":true') - (1 if top_allow else 0)
    total = body.count(b'"allow":') - 1
    phase.subject_allow += max(allows, 0)
    phase.subject_deny += max(total - allows, 0)


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(
                self.host, self.port, limit=1 << 20
            )
        return self.reader, self.writer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def one_request(conn: Connection, request: bytes, phase: Phase, timeout: float) -> None:
    started = time.perf_counter_ns()
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await conn.open()
            writer.write(request)
            status, body, close = await read_response(reader)
    except (OSError, EOFError, TimeoutError, ProtocolError, ValueError) as exc:
        phase.error(f"exception:{type(exc).__name__}")
        conn.close()
        await asyncio.sleep(0.01)  # do not spin against a dead server
        return
    finished = time.perf_counter_ns()
    if close:
        conn.close()
    if 200 <= status < 300:
        phase.ok += 1
        phase.latencies_ns.append(finished - started)
        classify(phase, body)
    else:
        phase.error(f"http:{status}")


async def run(spec: LoadSpec) -> dict[str, Any]:
    requests = build_requests(spec)
    counter = itertools.count()

    def next_request() -> bytes:
        return requests[next(counter) % len(requests)]

    conns = [Connection(spec["host"], spec["port"]) for _ in range(spec["concurrency"])]
    warm, measured = Phase(), Phase()
    timeout = spec["timeout_seconds"]
    cpu_start = time.process_time()

    if spec["duration_seconds"] > 0:
        start = time.perf_counter()
        warm.started = start
        warm_end = start + spec["warmup_seconds"]
        end = warm_end + spec["duration_seconds"]

        async def timed_worker(conn: Connection) -> None:
            while (now := time.perf_counter()) < end:
                phase = warm if now < warm_end else measured
                await one_request(conn, next_request(), phase, timeout)

        await asyncio.gather(*(timed_worker(c) for c in conns))
        warm.finished = measured.started = warm_end
        measured.finished = time.perf_counter()
    else:
        deadline = time.perf_counter() + (spec["deadline_seconds"] or math.inf)

        async def counted_worker(conn: Connection, todo: Iterator[int], phase: Phase) -> None:
            for _ in todo:
                if time.perf_counter() >= deadline:
                    phase.error("not_sent:deadline")
                    continue
                await one_request(conn, next_request(), phase, timeout)

        for phase, count in ((warm, spec["warmup_requests"]), (measured, spec["requests"])):
            todo = iter(range(count))
            phase.started = time.perf_counter()
            await asyncio.gather(*(counted_worker(c, todo, phase) for c in conns))
            phase.finished = time.perf_counter()

    cpu = time.process_time() - cpu_start
    wall = measured.finished - warm.started
    for conn in conns:
        conn.close()
    return {
        "warmup": warm.report(),
        "measured": measured.report(spec.get("raw_latencies", False)),
        "client_cpu_s": cpu,
        "client_wall_s": wall,
    }


def main() -> None:
    spec: LoadSpec = json.loads(Path(sys.argv[1]).read_text())
    try:
        import uvloop  # optional speed-up

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    report = runner(run(spec))
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
