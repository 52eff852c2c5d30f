"""The ASGI edge: request ids, body-size limit, per-client rate limit, metrics, access log.

One pure-ASGI middleware rather than several `BaseHTTPMiddleware`s: it sits on the hot path.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from service.core.errors import PROBLEM_MEDIA_TYPE, TYPE_BASE
from service.core.observability import Metrics

log = logging.getLogger("accord.http")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

Scope = dict[str, Any]
_CACHED_CHILDREN = 1024


class TokenBuckets:
    """Per-client token buckets (bounded LRU of clients); thread-safe."""

    def __init__(self, rate: float, burst: int, max_clients: int = 100_000) -> None:
        self.rate, self.burst, self.max_clients = rate, burst, max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str, now: float) -> float:
        """0 if a request may pass, else the seconds until it may."""
        with self._lock:
            tokens, last = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
            self._buckets[key] = (tokens - 1 if wait == 0 else tokens, now)
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
            return wait


# The caller a bearer token was already verified for ("organisation/subject"), else None.
KnownCaller = Callable[[str], str | None]


def _client_key(scope: Scope, known: KnownCaller | None) -> str:
    """The verified caller of the request's bearer token, else the peer address. Not the
    token itself: made-up tokens would each get a bucket of their own, and a flood of
    them would push every real client's bucket out of the table."""
    if known is not None:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                caller = known(token.strip()) if scheme.lower() == "bearer" else None
                if caller is not None:
                    return "p:" + caller
                break
    client = scope.get("client")
    return "a:" + (client[0] if client else "unknown")


def _request_ids() -> Iterator[str]:
    """Request ids unique across processes and restarts: a random 64-bit prefix per
    process, then a counter (a uuid4 per request costs a getrandom() system call)."""
    prefix = secrets.token_hex(8)
    return (f"{prefix}{n:016x}" for n in itertools.count())


def _header(scope: Scope, wanted: bytes) -> str:
    for name, value in scope["headers"]:
        if name == wanted:
            return str(value.decode("latin-1"))
    return ""


class EdgeMiddleware:
    def __init__(
        self,
        app: Any,
        *,
        metrics: Metrics,
        max_body_bytes: int,
        rate_per_second: float,
        burst: int,
        known_caller: KnownCaller | None = None,
    ) -> None:
        self.app = app
        self.known_caller = known_caller
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.buckets = TokenBuckets(rate_per_second, burst) if rate_per_second > 0 else None
        self._request_ids = _request_ids()
        # (route template, method, status) -> its request counter and latency histogram:
        # looking a labelled child up costs more than counting.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def _reject(
        self,
        send: Any,
        rid: str,
        status: int,
        slug: str,
        title: str,
        detail: str,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        body = json.dumps(
            {
                "type": TYPE_BASE + slug,
                "title": title,
                "status": status,
                "detail": detail,
                "request_id": rid,
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", rid.encode()),
                    *(headers or []),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        supplied = _header(scope, b"x-request-id")
        rid = supplied if _REQUEST_ID.match(supplied) else next(self._request_ids)
        scope.setdefault("state", {})["request_id"] = rid
        status_seen = {"status": 500}

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_seen["status"] = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", rid.encode()))
            await send(message)

        try:
            if self.buckets is not None and scope["path"].startswith("/v1/"):
                wait = self.buckets.take(_client_key(scope, self.known_caller), time.monotonic())
                if wait > 0:
                    status_seen["status"] = 429
                    retry = str(max(1, int(wait + 0.999))).encode()
                    await self._reject(
                        send,
                        rid,
                        429,
                        "rate-limited",
                        "Too many requests",
                        "slow down and retry later",
                        [(b"retry-after", retry)],
                    )
                    return
            declared = _header(scope, b"content-length")
            if declared.isdigit() and int(declared) > self.max_body_bytes:
                status_seen["status"] = 413
                await self._reject(
                    send,
                    rid,
                    413,
                    "too-large",
                    "Request body too large",
                    f"the limit is {self.max_body_bytes} bytes",
                )
                return
            await self.app(scope, self._limited(receive, rid, send, status_seen), send_with_id)
        finally:
            self._observe(scope, status_seen["status"], started, rid)

    def _limited(self, receive: Any, rid: str, send: Any, status_seen: dict[str, int]) -> Any:
        """Counts streamed body bytes, for requests that do not declare their length."""
        received = 0
        limit = self.max_body_bytes

        async def receive_limited() -> dict[str, Any]:
            nonlocal received
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        return receive_limited

    def _observe(self, scope: Scope, status: int, started: float, rid: str) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        elapsed = time.perf_counter() - started
        method = scope["method"]
        key = (template, method, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.metrics.requests.labels(template, method, str(status)),
                self.metrics.latency.labels(template, method),
            )
            if len(self._children) < _CACHED_CHILDREN:  # methods come from the client
                self._children[key] = children
        children[0].inc()
        children[1].observe(elapsed)
        if not log.isEnabledFor(logging.INFO):
            return
        log.info(
            "request",
            extra={
                "request_id": rid,
                "method": method,
                "route": template,
                "status": status,
                "duration_ms": round(elapsed * 1000, 2),
            },
        )


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the limit is {limit} bytes")
        self.limit = limit
