"""Response models of the audit API. Hashes are lowercase hex; signatures base64url."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from service.audit.log import event_document
from service.audit.models import AuditEvent, TreeHead
from service.audit.signing import LOG_NAME, b64url, tree_head_payload
from service.audit.verify import Problem, VerifyReport

HEX_HASH = "32-byte SHA-256 value as 64 lowercase hex digits"


class ActorRef(BaseModel):
    subject: str
    role: str
    organisation: str


class ResourceRef(BaseModel):
    type: str
    id: str


class AgreementRef(BaseModel):
    id: str
    version: int | None


class AuditEventRead(BaseModel):
    """An audit event: the fields below `leaf_hash` are exactly the document it hashes."""

    seq: int = Field(description="0-based leaf index in the log's Merkle tree")
    event_id: str
    occurred_at: str = Field(description="RFC 3339 UTC, as stored and hashed")
    action: str
    actor: ActorRef
    resource: ResourceRef
    agreement: AgreementRef | None
    purpose: str | None
    outcome: str
    reasons: list[str] = Field(description="machine-readable reason codes")
    minimisation: dict[str, Any] | None = Field(description="fields requested/permitted/dropped")
    ethics_review: dict[str, Any] | None
    policy_revision: str | None
    request_id: str | None
    subjects: list[str] = Field(description="subject pseudonyms (never raw ids)")
    details: dict[str, Any]
    leaf_hash: str = Field(description=f"SHA-256(0x00 || RFC 8785 JSON of the event); {HEX_HASH}")

    @classmethod
    def of(cls, event: AuditEvent) -> AuditEventRead:
        """Build from a stored event."""
        return cls.model_validate({**event_document(event), "leaf_hash": event.leaf_hash.hex()})


class EventPage(BaseModel):
    items: list[AuditEventRead]
    next_cursor: str | None = Field(
        description="opaque; pass as `cursor` for the next page; null on the last page"
    )


class CountGroup(BaseModel):
    key: str | None = Field(description="the outcome, reason code, agreement id or purpose")
    count: int


class EventCounts(BaseModel):
    group_by: str
    total: int = Field(description="sum of the group counts")
    groups: list[CountGroup]


class SignedTreeHead(BaseModel):
    """A signed tree head; verify with the JWKS key whose `kid` is `key_id`."""

    log: str = Field(LOG_NAME, description="the log's name, bound into the signature")
    tree_size: int = Field(description="number of leaves (events) the head covers")
    root_hash: str = Field(description=f"RFC 9162 MTH of the first tree_size leaves; {HEX_HASH}")
    timestamp: str = Field(description="RFC 3339 UTC time of signing, as signed")
    key_id: str = Field(description="`kid` of the Ed25519 key in GET /v1/audit/jwks")
    signature: str = Field(description="Ed25519 signature of `signed_payload`, base64url")
    signed_payload: str = Field(
        description=(
            'RFC 8785 JSON of {"log", "root" (base64url of the root, no padding), "size", '
            '"timestamp"}; rebuild it from the other fields rather than trusting this copy'
        )
    )

    @classmethod
    def of(cls, head: TreeHead) -> SignedTreeHead:
        """Build from a stored head."""
        root = bytes(head.root_hash)
        return cls(
            tree_size=head.size,
            root_hash=root.hex(),
            timestamp=head.signed_at,
            key_id=head.key_id,
            signature=b64url(bytes(head.signature)),
            signed_payload=tree_head_payload(head.size, root, head.signed_at).decode(),
        )


class InclusionProof(BaseModel):
    """RFC 9162 §2.1.3 inclusion proof of one event in a signed tree head."""

    leaf_index: int
    tree_size: int
    leaf_hash: str = Field(description=f"SHA-256(0x00 || RFC 8785 JSON of `event`); {HEX_HASH}")
    audit_path: list[str] = Field(
        description=f"PATH(leaf_index, D[0:tree_size]), leaf-side sibling first; each {HEX_HASH}"
    )
    root_hash: str = Field(description=f"the signed root the path leads to; {HEX_HASH}")
    tree_head: SignedTreeHead
    event: dict[str, Any] = Field(description="the event document whose JCS bytes are hashed")


class ConsistencyProof(BaseModel):
    """RFC 9162 §2.1.4 consistency proof: the second head only appended to the first."""

    first: SignedTreeHead
    second: SignedTreeHead
    proof: list[str] = Field(description=f"PROOF(first, D[0:second]) in RFC order; each {HEX_HASH}")


class JWK(BaseModel):
    kty: str = Field(description="OKP")
    crv: str = Field(description="Ed25519")
    x: str = Field(description="raw public key, base64url")
    kid: str = Field(description="first 16 hex digits of SHA-256 of the raw public key")
    alg: str = Field(description="EdDSA")
    use: str = Field(description="sig")


class JWKS(BaseModel):
    keys: list[JWK] = Field(description="current key first, then retired keys")


class ProblemRead(BaseModel):
    kind: str = Field(
        description="edited, missing, inserted, reordered, truncated, bad_signature, "
        "root_mismatch or subtree_mismatch"
    )
    seq: int | None = Field(description="first event concerned, if any")
    head_size: int | None = Field(description="signed head concerned, if any")
    detail: str

    @classmethod
    def of(cls, problem: Problem) -> ProblemRead:
        """Build from a verification problem."""
        return cls(
            kind=problem.kind, seq=problem.seq, head_size=problem.head_size, detail=problem.detail
        )


class VerifyReportRead(BaseModel):
    ok: bool
    log_size: int = Field(description="events the log says it holds (audit_head)")
    events: int = Field(description="event rows read")
    heads: int = Field(description="signed tree heads checked")
    first: ProblemRead | None = Field(description="the problem at the lowest seq")
    problems: list[ProblemRead]
    seconds: float
    events_per_second: float

    @classmethod
    def of(cls, report: VerifyReport) -> VerifyReportRead:
        """Build from a report."""
        return cls(
            ok=report.ok,
            log_size=report.log_size,
            events=report.events,
            heads=report.heads,
            first=None if report.first is None else ProblemRead.of(report.first),
            problems=[ProblemRead.of(p) for p in report.problems],
            seconds=round(report.seconds, 3),
            events_per_second=round(report.events_per_second),
        )
