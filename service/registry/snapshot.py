"""A per-process snapshot of the taxonomy, for the decision hot path.

The taxonomy only grows (purposes, categories and fields are added, never changed), so a
snapshot a few seconds old can only be missing a new entry, and a missing purpose or field
denies: staleness fails closed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.registry import taxonomy
from service.registry.models import DataCategory, DataField, Purpose


@dataclass(frozen=True, slots=True)
class TaxonomySnapshot:
    purposes: frozenset[str]
    sensitive_categories: tuple[str, ...]
    fields: dict[str, dict[str, Any]]  # name -> catalogue entry

    def purpose_lineage(self, code: str) -> list[str]:
        """The purpose and its ancestors, most specific first; [] when it is unknown."""
        if code not in self.purposes:
            return []
        return [c for c in taxonomy.lineage(code) if c in self.purposes]

    def catalogue(self, names: Iterable[str]) -> dict[str, dict[str, Any]]:
        return {name: self.fields[name] for name in names if name in self.fields}


def load_snapshot(session: Session) -> TaxonomySnapshot:
    fields = {
        name: {
            "category": category,
            "category_lineage": taxonomy.lineage(category),
            "sensitive": sensitive,
        }
        for name, category, sensitive in session.execute(
            select(DataField.name, DataField.category_code, DataField.sensitive)
        )
    }
    return TaxonomySnapshot(
        purposes=frozenset(session.scalars(select(Purpose.code))),
        sensitive_categories=tuple(
            sorted(
                session.scalars(select(DataCategory.code).where(DataCategory.sensitive.is_(True)))
            )
        ),
        fields=fields,
    )


class TaxonomyCache:
    def __init__(self, sessions: sessionmaker[Session], ttl_seconds: float = 5.0) -> None:
        self._sessions = sessions
        self._ttl = ttl_seconds
        self._snapshot: tuple[TaxonomySnapshot, float] | None = None
        self._lock = threading.Lock()

    def get(self, session: Session | None = None) -> TaxonomySnapshot:
        current = self._snapshot
        if current is not None and time.monotonic() - current[1] <= self._ttl:
            return current[0]
        with self._lock:
            if session is not None:
                snapshot = load_snapshot(session)
            else:
                with self._sessions() as own:
                    snapshot = load_snapshot(own)
            self._snapshot = (snapshot, time.monotonic())
            return snapshot

    def forget(self) -> None:
        self._snapshot = None
