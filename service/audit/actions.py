"""Dotted audit action names; strings in the database, checked here."""

from enum import StrEnum


class AuditAction(StrEnum):
    DECISION_MADE = "decision.made"
    DECISION_FAILED = "decision.failed"
    ORGANISATION_CREATED = "organisation.created"
    ORGANISATION_UPDATED = "organisation.updated"
    TAXONOMY_EXTENDED = "taxonomy.extended"
    AGREEMENT_CREATED = "agreement.created"
    AGREEMENT_UPDATED = "agreement.updated"
    AGREEMENT_SUBMITTED = "agreement.submitted"
    AGREEMENT_APPROVED_BY_PARTY = "agreement.party_approved"
    AGREEMENT_REJECTED_BY_PARTY = "agreement.party_rejected"
    AGREEMENT_APPROVED = "agreement.approved"
    AGREEMENT_REJECTED = "agreement.rejected"
    AGREEMENT_ACTIVATED = "agreement.activated"
    AGREEMENT_SUSPENDED = "agreement.suspended"
    AGREEMENT_RESUMED = "agreement.resumed"
    AGREEMENT_TERMINATED = "agreement.terminated"
    AGREEMENT_EXPIRED = "agreement.expired"
    AGREEMENT_AMENDED = "agreement.amended"
    AGREEMENT_SUPERSEDED = "agreement.superseded"
    ETHICS_REVIEW_RECORDED = "ethics_review.recorded"
    CONSENT_GIVEN = "consent.given"
    CONSENT_REFUSED = "consent.refused"
    CONSENT_RENEWED = "consent.renewed"
    CONSENT_WITHDRAWN = "consent.withdrawn"
    CONSENT_EXPIRED = "consent.expired"
    POLICY_LOADED = "policy.loaded"
    POLICY_REJECTED = "policy.rejected"
    SIGNING_KEY_ROTATED = "signing_key.rotated"
    ACCESS_REFUSED = "access.refused"


class Outcome(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    SUCCESS = "success"
    REFUSED = "refused"
    ERROR = "error"
