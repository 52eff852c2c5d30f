"""The `opa` engine: an Open Policy Agent server (sidecar), queried with opa-python-client.

This is how a production deployment runs. No OPA binary can be installed on the development
machines, so this module is tested against a small OPA-REST-compatible test server
(`tests/support/opa_server.py`, which evaluates Rego with regorus), not against OPA itself.

Behaviour, matching the embedded engine:

- `evaluate` POSTs `{"input": ...}` to `/v1/data/<entrypoint>` and returns `result`. No
  `result` key -> PolicyUndefined; timeout -> PolicyTimeout; anything else that goes wrong
  (connection refused or dropped, HTTP error, a body that is not a JSON object) ->
  PolicyError. No other exception escapes: the caller fails closed on PolicyError.
- Time is bounded: the client is built with `retries=0`, and `timeout_seconds` is requests'
  connect and read timeout, so a hanging OPA costs about `timeout_seconds` (a dead host at
  most twice that: connect, then read). An answer that arrives after `timeout_seconds`, e.g.
  one trickled byte by byte, is refused as PolicyTimeout too. Retrying is left to the
  caller: opa-python-client's urllib3 retries would multiply the time, back off, and (for
  POST) only ever apply to connection errors anyway.
- One OpaClient (one requests.Session) per thread: requests does not promise that a Session
  is thread-safe, and a per-thread session keeps connection pools uncontended.
- `load` compiles the bundle locally with regorus first (as the embedded engine does), so
  a bundle with a syntax or compile error is rejected before OPA is touched. With
  `upload=True` it then PUTs every module to `/v1/policies/<module path>` and DELETEs the
  previous bundle's modules that are gone. OPA has no multi-module transaction: if OPA
  rejects a module midway, the modules already replaced are put back from the previous
  bundle (best effort) and BundleRejected is raised; the engine keeps the old revision.
  Caveats: while uploading, OPA briefly serves a mix of old and new modules; modules OPA
  held before this engine's first load (not from a bundle this engine uploaded) are left
  alone. With `upload=False` (docker-compose mounts `policies/` into OPA as a bundle)
  nothing is sent: the engine reads the modules OPA serves (`GET /v1/policies`) and takes
  the bundle only if OPA serves every one of its modules as it is here (under the same
  path, or the path below OPA's mount point) and no other module of an `accord` package
  (`*_test.rego` aside). So the revision recorded on each decision is the one OPA
  evaluates; to change policies, the operator updates OPA's files first, then reloads.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import regorus
import requests
from opa_client import OpaClient

from service.decisions.engines.base import (
    BundleRejected,
    PolicyBundle,
    PolicyError,
    PolicyTimeout,
    PolicyUndefined,
)

_SEGMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ACCORD_PACKAGE = re.compile(r"^\s*package\s+accord(\.|\s|$)", re.MULTILINE)


def _names(module_id: str, path: str) -> bool:
    """OPA's id of a module names the bundle's `path`: the path itself (uploaded), or the
    path below a mount point (`/policies/accord/...` for a directory mounted as a bundle)."""
    return module_id == path or module_id.endswith("/" + path)


def _first_line(exc: BaseException) -> str:
    """regorus errors carry a Rust backtrace; keep the message only, on one line."""
    text = str(exc).strip().split("Stack backtrace:")[0].strip()
    return " ".join(text.split())[:500] or type(exc).__name__


def _check_compiles(bundle: PolicyBundle) -> None:
    engine = regorus.Engine()
    for path, source in bundle.modules.items():
        engine.add_policy(path, source)


def _opa_message(response: requests.Response | None) -> str:
    """OPA's error body is `{"code": ..., "message": ...}`; fall back to the status line."""
    if response is None:
        return "no response"
    try:
        body = response.json()
        detail = f"{body['code']}: {body['message']}"
    except Exception:
        detail = response.text[:200]
    return f"HTTP {response.status_code}: {detail}"


class OpaEngine:
    name = "opa"

    def __init__(
        self, bundle: PolicyBundle, url: str, timeout_seconds: float, upload: bool = True
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"OPA URL must be http(s)://host[:port], not {url!r}")
        if parts.path.strip("/") or parts.query or parts.fragment or parts.username:
            raise ValueError(f"OPA URL must not have a path, query or credentials: {url!r}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = parts.scheme == "https"
        self._timeout = timeout_seconds
        self._upload = upload
        self._lock = threading.Lock()  # guards _clients and _local
        self._load_lock = threading.Lock()  # one load at a time
        self._local = threading.local()
        self._clients: list[Any] = []
        self._bundle: PolicyBundle | None = None
        self.load(bundle)

    @property
    def revision(self) -> str:
        assert self._bundle is not None
        return self._bundle.revision

    def _client(self) -> Any:
        """This thread's OpaClient (and requests.Session)."""
        local = self._local
        client = getattr(local, "client", None)
        if client is None:
            client = OpaClient(
                host=self._host,
                port=self._port,
                ssl=self._ssl,
                retries=0,
                timeout=self._timeout,
            )
            with self._lock:
                self._clients.append(client)
            local.client = client
        return client

    # -- loading ------------------------------------------------------------------------

    def load(self, bundle: PolicyBundle) -> None:
        with self._load_lock:
            try:
                _check_compiles(bundle)
            except Exception as exc:  # regorus raises RuntimeError for parse/compile errors
                raise BundleRejected(_first_line(exc)) from exc
            if self._upload:
                self._upload_bundle(bundle, self._bundle)
            else:
                self._check_served(bundle)
            self._bundle = bundle

    def _check_served(self, bundle: PolicyBundle) -> None:
        """BundleRejected unless OPA serves exactly this bundle's `accord` modules."""
        scheme = "https" if self._ssl else "http"
        url = f"{scheme}://{self._host}:{self._port}/v1/policies"
        try:
            response = requests.get(url, timeout=self._timeout)
            response.raise_for_status()
            served = {m["id"]: m["raw"] for m in response.json()["result"]}
        except requests.HTTPError as exc:
            raise BundleRejected(
                f"cannot list OPA's policies: {_opa_message(exc.response)}"
            ) from exc
        except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
            raise BundleRejected(f"cannot list OPA's policies: {type(exc).__name__}") from exc
        unmatched = dict(served)
        for path, source in sorted(bundle.modules.items()):
            same = [i for i, raw in served.items() if raw == source and _names(i, path)]
            if not same:
                raise BundleRejected(f"OPA does not serve {path} as it is in the bundle")
            for module_id in same:
                unmatched.pop(module_id)
        extra = sorted(
            module_id
            for module_id, raw in unmatched.items()
            if not module_id.endswith("_test.rego") and _ACCORD_PACKAGE.search(raw or "")
        )
        if extra:
            raise BundleRejected(f"OPA also serves accord modules not in the bundle: {extra[:5]}")

    def _put(self, path: str, source: str) -> None:
        # rego_compat=False: otherwise the client rewrites a rejected module's source
        # ("v0 -> v1 upgrade") and retries, so OPA would run text other than the bundle's.
        self._client().update_policy_from_string(source, quote(path, safe="/"), rego_compat=False)

    def _delete(self, path: str) -> None:
        self._client().delete_policy(quote(path, safe="/"))

    def _upload_bundle(self, bundle: PolicyBundle, previous: PolicyBundle | None) -> None:
        replaced: list[str] = []
        try:
            for path, source in bundle.modules.items():
                replaced.append(path)  # a failed PUT may still have reached OPA
                self._put(path, source)
            if previous is not None:
                for path in sorted(previous.modules.keys() - bundle.modules.keys()):
                    self._delete(path)
        except Exception as exc:
            detail = _first_line(exc)
            if isinstance(exc, requests.HTTPError):
                detail = _opa_message(exc.response)
            rolled_back = self._roll_back(replaced, previous)
            state = "the previous modules were restored"
            if not rolled_back:
                state = "restoring the previous modules FAILED: OPA may serve a mix of revisions"
            raise BundleRejected(
                f"OPA refused bundle {bundle.revision} ({type(exc).__name__}: {detail}); {state}"
            ) from exc

    def _roll_back(self, replaced: list[str], previous: PolicyBundle | None) -> bool:
        ok = True
        for path in reversed(replaced):
            try:
                if previous is not None and path in previous.modules:
                    self._put(path, previous.modules[path])
                else:
                    self._delete(path)
            except Exception as exc:
                # A module whose PUT OPA rejected was never installed: DELETE -> 404 is fine.
                if getattr(exc, "expression", None) != "resource_not_found":
                    ok = False
        return ok

    # -- evaluation ---------------------------------------------------------------------

    def evaluate(self, entrypoint: str, input_document: Mapping[str, Any]) -> Any:
        segments = entrypoint.split("/")
        if not all(_SEGMENT.match(segment) for segment in segments):
            raise PolicyError(f"invalid entrypoint {entrypoint!r}")
        # "accord/decision/result" -> package "accord.decision", rule "result"; the client
        # POSTs {"input": input_document} to /v1/data/accord/decision/result.
        package, rule = ".".join(segments[:-1]), segments[-1]
        started = time.monotonic()
        try:
            if package:
                body = self._client().query_rule(input_document, package, rule_name=rule)
            else:  # a top-level document: data.<rule>
                body = self._client().query_rule(input_document, rule, rule_name=None)
        except requests.Timeout as exc:  # ReadTimeout and ConnectTimeout
            raise PolicyTimeout(f"OPA did not answer within {self._timeout}s") from exc
        except requests.HTTPError as exc:
            raise PolicyError(f"OPA query failed: {_opa_message(exc.response)}") from exc
        except Exception as exc:  # connection errors, non-JSON bodies, unserialisable input
            raise PolicyError(f"OPA query failed: {type(exc).__name__}: {exc}") from exc
        if time.monotonic() - started > self._timeout:
            raise PolicyTimeout(f"OPA answered after more than {self._timeout}s")
        if not isinstance(body, dict):
            raise PolicyError(f"OPA answered with a {type(body).__name__}, not an object")
        if "result" not in body:
            raise PolicyUndefined(f"data.{entrypoint.replace('/', '.')} is undefined")
        return body["result"]

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
            self._local = threading.local()
        for client in clients:
            client.close_connection()
