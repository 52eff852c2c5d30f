"""Whether an organisation's tokens are accepted, remembered for a moment per process."""

from __future__ import annotations

import threading
import time

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.registry.models import Organisation


class OrganisationGate:
    """Enabled flags with a short time-to-live.

    Disabling an organisation takes effect at once in the process that did it (it calls
    `forget`) and within `ttl_seconds` in every other worker or replica.
    """

    def __init__(self, sessions: sessionmaker[Session], ttl_seconds: float = 2.0) -> None:
        self._sessions = sessions
        self._ttl = ttl_seconds
        self._known: dict[str, tuple[bool, float]] = {}
        self._lock = threading.Lock()

    def enabled(self, org_id: str) -> bool | None:
        """The remembered answer, or None when it must be looked up."""
        entry = self._known.get(org_id)
        if entry is None or time.monotonic() - entry[1] > self._ttl:
            return None
        return entry[0]

    def refresh(self, org_id: str) -> bool:
        with self._sessions() as session:
            enabled = session.scalar(select(Organisation.enabled).where(Organisation.id == org_id))
        answer = bool(enabled)
        with self._lock:
            if len(self._known) > 100_000:
                self._known.clear()
            self._known[org_id] = (answer, time.monotonic())
        return answer

    def forget(self, org_id: str) -> None:
        with self._lock:
            self._known.pop(org_id, None)
