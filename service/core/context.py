"""The per-process runtime shared by requests: database, engines, keys, clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.core.clock import Clock
from service.core.identity import TokenVerifier
from service.core.observability import Metrics
from service.core.pseudonym import Pseudonymiser
from service.core.settings import Settings
from service.decisions.engines.base import PolicyEngine
from service.decisions.writer import DecisionWriter
from service.registry.gate import OrganisationGate
from service.registry.snapshot import TaxonomyCache

if TYPE_CHECKING:  # the decider runs decisions, which need the runtime
    from service.decisions.decider import Decider


@dataclass
class Runtime:
    settings: Settings
    db: Engine
    sessions: sessionmaker[Session]
    read_sessions: sessionmaker[Session]
    verifier: TokenVerifier
    pseudonymise: Pseudonymiser
    clock: Clock
    policy: PolicyEngine
    metrics: Metrics
    organisations: OrganisationGate
    taxonomy: TaxonomyCache
    decision_writer: DecisionWriter
    # Decisions run on their own thread(s), not on the shared request thread pool: few
    # threads keep the GIL hand-offs (and the per-thread policy engines) few.
    decider: Decider = field(init=False)
