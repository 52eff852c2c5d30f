"""A small OPA-REST-API-compatible server for tests; it really evaluates Rego (with regorus).

No OPA binary can be installed on the development machines, so the `opa` engine's client
code is tested against this server. It implements the parts of OPA's REST API the engine
uses, with OPA's response shapes:

- `POST /v1/data/<path>` `{"input": ...}` -> 200 `{"result": value}`, or 200 `{}` when the
  document is undefined; malformed body -> 400 `invalid_parameter`; evaluation error -> 500
  `internal_error`. `GET /v1/data/<path>` evaluates without input.
- `PUT /v1/policies/<id>` (text/plain Rego) -> 200 `{}`; compile error -> 400
  `invalid_parameter` with `errors`. `DELETE /v1/policies/<id>` -> 200 `{}`.
- `GET /v1/policies` -> 200 `{"result": [{"id", "raw"}, ...]}` (OPA also sends each
  module's `ast`, which the engine does not read).
- `GET /health` -> 200 `{}`.

Faults for the next requests are injected with `OpaTestServer.inject`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import regorus

FaultMode = Literal["error", "hang", "garbage", "wrong_result", "non_object", "reject", "drop"]
RecordedRequest = tuple[str, str, Any]  # (method, path, parsed body: JSON, text or None)


@dataclass
class Fault:
    mode: FaultMode
    count: int  # how many requests it applies to
    after: int  # how many requests pass untouched first
    seconds: float  # for "hang"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().split("Stack backtrace:")[0].strip()
    return " ".join(text.split())[:500]


def _compile(modules: Mapping[str, str]) -> Any:
    engine = regorus.Engine()
    try:
        for module_id, source in modules.items():
            engine.add_policy(module_id, source)
    except Exception as exc:
        message = _first_line(exc)
    else:
        return engine
    del engine  # dropped on its own thread, not wherever the traceback ends up
    raise ValueError(message)


# Module-level, so it is never garbage-collected on another thread than the engines' own.
_THREAD_ENGINES = threading.local()


def _check(modules: Mapping[str, str]) -> None:
    _compile(modules)


class OpaTestServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the listen backlog; the default 5 resets bursts of clients

    def __init__(self, modules: Mapping[str, str]) -> None:
        _compile(modules)  # fail fast on a broken test policy
        super().__init__(("127.0.0.1", 0), _Handler)
        self.modules: dict[str, str] = dict(modules)
        self.generation = 0
        self.requests: list[RecordedRequest] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        # regorus engines panic when used or dropped on another thread: one evaluator
        # thread owns them, and they die with it when the server closes.
        self.evaluator = ThreadPoolExecutor(max_workers=1, thread_name_prefix="opa-eval")

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def inject(
        self, mode: FaultMode, count: int = 1, *, after: int = 0, seconds: float = 0.0
    ) -> None:
        """Make `count` requests, after the next `after`, misbehave as `mode`."""
        with self._lock:
            self._faults.append(Fault(mode, count, after, seconds))

    def record(self, method: str, path: str, body: Any) -> Fault | None:
        """Log a request and take the fault (if any) that applies to it."""
        with self._lock:
            self.requests.append((method, path, body))
            for fault in self._faults:
                if fault.after > 0:
                    fault.after -= 1
                    continue
                fault.count -= 1
                if fault.count == 0:
                    self._faults.remove(fault)
                return fault
            return None

    def put_module(self, module_id: str, source: str) -> str | None:
        """Install a module, compiled with all the others; the error, if it does not compile."""
        with self._lock:
            candidate = {**self.modules, module_id: source}
        try:
            self.evaluator.submit(_check, candidate).result()
        except Exception as exc:
            return _first_line(exc)
        with self._lock:
            self.modules[module_id] = source
            self.generation += 1
        return None

    def delete_module(self, module_id: str) -> bool:
        with self._lock:
            if self.modules.pop(module_id, None) is None:
                return False
            self.generation += 1
            return True

    def evaluate(self, segments: list[str], input_document: Any, has_input: bool) -> Any:
        """OPA's Data API answer: `{"result": value}` or `{}` when undefined."""
        return self.evaluator.submit(
            self._evaluate_here, segments, input_document, has_input
        ).result()

    def _evaluate_here(self, segments: list[str], input_document: Any, has_input: bool) -> Any:
        with self._lock:
            generation, modules = self.generation, dict(self.modules)
        if not has_input:
            engine = _compile(modules)  # regorus cannot unset an input once set
        else:
            if getattr(_THREAD_ENGINES, "generation", None) != generation:
                _THREAD_ENGINES.engine = _compile(modules)
                _THREAD_ENGINES.generation = generation
            engine = _THREAD_ENGINES.engine
            engine.set_input_json(json.dumps(input_document))
        query = "data" + "".join(f"[{json.dumps(segment)}]" for segment in segments)
        rows = json.loads(engine.eval_query_as_json(query)).get("result") or []
        return {"result": rows[0]["expressions"][0]["value"]} if rows else {}


class _Handler(BaseHTTPRequestHandler):
    server: OpaTestServer
    protocol_version = "HTTP/1.1"  # keep-alive, as OPA
    timeout = 10  # idle keep-alive connections end eventually
    disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK stalls

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _send(self, status: int, body: Any, raw: bytes | None = None) -> None:
        payload = raw if raw is not None else json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True  # the client gave up (e.g. timed out)

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        text = raw.decode("utf-8", errors="replace")
        try:
            body: Any = json.loads(text) if text else None
        except ValueError:
            body = text
        path = urlsplit(self.path).path
        fault = self.server.record(method, path, body)
        if fault is not None and self._fault(fault):
            return
        segments = [unquote(s) for s in path.split("/") if s]
        if method == "GET" and segments == ["health"]:
            self._send(200, {})
        elif method in ("GET", "POST") and segments[:2] == ["v1", "data"]:
            self._data(method, segments[2:], text)
        elif method == "GET" and segments == ["v1", "policies"]:
            with self.server._lock:
                served = [{"id": i, "raw": raw} for i, raw in sorted(self.server.modules.items())]
            self._send(200, {"result": served})
        elif method in ("PUT", "DELETE") and segments[:2] == ["v1", "policies"]:
            self._policy(method, unquote(path.removeprefix("/v1/policies/")), text)
        else:
            self._send(404, {"code": "resource_not_found", "message": f"{method} {path}"})

    def _fault(self, fault: Fault) -> bool:
        """Misbehave; False when the request should then be answered normally (hang)."""
        if fault.mode == "hang":
            self.server.stopping.wait(fault.seconds)
            return False
        if fault.mode == "drop":
            self.close_connection = True  # no response at all
        elif fault.mode == "error":
            self._send(500, {"code": "internal_error", "message": "injected failure"})
        elif fault.mode == "garbage":
            self._send(200, None, raw=b"<html>not json")
        elif fault.mode == "wrong_result":
            self._send(200, {"result": "not-an-object"})
        elif fault.mode == "non_object":
            self._send(200, ["result"])
        elif fault.mode == "reject":
            error = {"code": "rego_compile_error", "message": "injected compile error"}
            body = {"code": "invalid_parameter", "message": "error(s) occurred", "errors": [error]}
            self._send(400, body)
        return True

    def _data(self, method: str, segments: list[str], text: str) -> None:
        document: Any = {}
        if method == "POST" and text.strip():
            try:
                document = json.loads(text)
                if not isinstance(document, dict):
                    raise ValueError("body must be an object")
            except ValueError as exc:
                message = f"body contains malformed input document: {exc}"
                self._send(400, {"code": "invalid_parameter", "message": message})
                return
        try:
            answer = self.server.evaluate(segments, document.get("input"), "input" in document)
        except Exception as exc:
            self._send(500, {"code": "internal_error", "message": _first_line(exc)})
            return
        self._send(200, answer)

    def _policy(self, method: str, module_id: str, text: str) -> None:
        if method == "DELETE":
            if self.server.delete_module(module_id):
                self._send(200, {})
            else:
                message = f"storage_not_found_error: policy id {module_id!r}"
                self._send(404, {"code": "resource_not_found", "message": message})
            return
        error = self.server.put_module(module_id, text)
        if error is None:
            self._send(200, {})
            return
        detail = {"code": "rego_parse_error", "message": error, "location": {"file": module_id}}
        message = "error(s) occurred while compiling module(s)"
        self._send(400, {"code": "invalid_parameter", "message": message, "errors": [detail]})


@contextmanager
def running_opa_server(modules: Mapping[str, str]) -> Iterator[OpaTestServer]:
    """An `OpaTestServer` with `modules` loaded, serving on 127.0.0.1 on an ephemeral port."""
    server = OpaTestServer(modules)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()  # releases hanging handlers
        server.shutdown()
        server.server_close()
        thread.join()
        server.evaluator.shutdown(wait=True)
