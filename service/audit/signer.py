"""Signing tree heads: on demand (API, CLI) and at an interval in a background thread.

A signing reads in one (read-only) transaction and writes in a second, short one, so on
SQLite the write lock is held only while the new subtree rows and the head are inserted,
never while hashing; decisions keep flowing while a large log is hashed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from service.audit import keys, tree
from service.audit.models import TreeHead
from service.audit.tree_models import AuditSigningKey
from service.core.clock import Clock, iso
from service.core.database import transaction
from service.core.deps import Actor
from service.core.identity import Principal, Role
from service.core.settings import Settings

__all__ = [
    "AuditRuntime",
    "run_tree_head_signer",
    "sign_tree_head",
    "system_actor",
    "tree_head_interval",
]

log = logging.getLogger("accord.audit")
_transaction = contextlib.contextmanager(transaction)


class AuditRuntime(Protocol):
    """What signing needs from the process runtime (`service.core.context.Runtime` fits)."""

    settings: Settings
    sessions: sessionmaker[Session]
    read_sessions: sessionmaker[Session]
    clock: Clock


def system_actor(settings: Settings) -> Actor:
    """The service itself, as the actor of scheduled signing and key registration."""
    return Actor(Principal("accord-system", Role.ADMIN, settings.operator_org), None)


def tree_head_interval(settings: Settings) -> float:
    """Seconds between scheduled signings; 0 disables them."""
    return settings.tree_head_interval_seconds


def sign_tree_head(runtime: AuditRuntime, actor: Actor | None = None) -> TreeHead:
    """Sign a head over the whole log now; returns the latest head if nothing was added."""
    key = keys.signing_key(runtime.settings)
    actor = actor or system_actor(runtime.settings)
    with _transaction(runtime.read_sessions) as session:
        registered = session.get(AuditSigningKey, key.key_id) is not None
    if not registered:
        with _transaction(runtime.sessions) as session:
            keys.register(session, key, actor, runtime.clock.now())
    with _transaction(runtime.read_sessions) as session:
        size = tree.log_size(session)
        latest = tree.latest_head(session)
        if latest is not None and latest.size > size:
            raise tree.LogIntegrityError(
                f"the log holds {size} events but a head of {latest.size} was signed"
            )
        if latest is not None and latest.size == size:
            return latest
        plan = tree.plan_head(session, size)
    with _transaction(runtime.sessions) as session:
        head = tree.store_head(session, plan, key, iso(runtime.clock.now()))
    return head


def run_tree_head_signer(runtime: AuditRuntime, stop: threading.Event) -> None:
    """Sign at start and then every interval until `stop` is set (a thread's target)."""
    interval = tree_head_interval(runtime.settings)
    if interval <= 0:
        return
    while True:
        try:
            sign_tree_head(runtime)
        except Exception:  # logged loudly; the next round tries again
            log.exception("signing an audit tree head failed")
        if stop.wait(interval):
            return
