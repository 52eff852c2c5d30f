"""Every model, imported once so that the metadata is complete (Alembic, tests)."""

from service.agreements.models import Agreement, AgreementApproval, AgreementParty, AgreementVersion
from service.audit.models import AuditEvent, AuditEventSubject, AuditHead, TreeHead
from service.audit.tree_models import AuditBlockTime, AuditSigningKey, AuditSubtree
from service.consents.models import Consent, ConsentEvent
from service.core.database import Base
from service.decisions.models import Decision
from service.registry.models import DataCategory, DataField, Organisation, Purpose
from service.reviews.models import EthicsReview

__all__ = [
    "Agreement",
    "AgreementApproval",
    "AgreementParty",
    "AgreementVersion",
    "AuditBlockTime",
    "AuditEvent",
    "AuditEventSubject",
    "AuditHead",
    "AuditSigningKey",
    "AuditSubtree",
    "Base",
    "Consent",
    "ConsentEvent",
    "DataCategory",
    "DataField",
    "Decision",
    "EthicsReview",
    "Organisation",
    "Purpose",
    "TreeHead",
]
