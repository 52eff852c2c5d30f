"""Metrics (Prometheus) and structured JSON logs. Neither ever carries personal data."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """One registry per app, so that tests and several apps in a process do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "accord_http_requests_total",
            "HTTP requests",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "accord_http_request_duration_seconds",
            "HTTP request latency",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.decisions = Counter(
            "accord_decisions_total", "Access decisions", ["outcome"], registry=self.registry
        )
        self.decision_reasons = Counter(
            "accord_decision_reasons_total",
            "Reasons given in decisions",
            ["reason"],
            registry=self.registry,
        )
        self.policy_seconds = Histogram(
            "accord_policy_evaluation_seconds",
            "Policy evaluation time",
            ["engine"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.audit_append_seconds = Histogram(
            "accord_audit_append_seconds",
            "Time to append an audit event",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tree_size = Gauge(
            "accord_audit_tree_size", "Events in the audit log (last seen)", registry=self.registry
        )


class JsonFormatter(logging.Formatter):
    """One JSON object per line; `extra` fields (request_id, decision_id, …) are included."""

    _standard = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in self._standard and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("accord")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
