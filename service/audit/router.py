"""Audit routes: search, counts, export, signed tree heads, proofs, keys and verification."""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Iterator
from enum import StrEnum
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import StreamingResponse

from service.audit import keys, merkle, schemas, search, signer, tree
from service.audit.actions import AuditAction, Outcome
from service.audit.log import event_document
from service.audit.models import AuditEvent, TreeHead
from service.audit.verify import verify_log
from service.core.database import transaction
from service.core.deps import ANY_ROLE, Actor, RuntimeDep, SessionDep, request_id, roles
from service.core.errors import (
    PROBLEM_MEDIA_TYPE,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    Problem,
    problem_responses,
)
from service.core.identity import Principal, Role
from service.core.schemas import Moment

router = APIRouter(prefix="/v1/audit", tags=["audit"])

Auditor = Annotated[Principal, Depends(roles(Role.AUDITOR, Role.ADMIN))]
Reader = Annotated[Principal, Depends(roles(Role.AUDITOR, Role.ADMIN, Role.STEWARD, Role.PARTNER))]
Anyone = Annotated[Principal, Depends(roles(*ANY_ROLE))]
RequestId = Annotated[str | None, Depends(request_id)]
MAX_INDEX = 2**53 - 1  # the largest integer an RFC 8785 document (and a database) holds exactly
Seq = Annotated[int, Path(ge=0, le=MAX_INDEX, description="the event's leaf index")]
_PUBLIC_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}, "description": "unavailable"}
}


class ExportFormat(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"


def event_filter(
    runtime: RuntimeDep,
    since: Annotated[
        Moment | None, Query(alias="from", description="RFC 3339; events at or after")
    ] = None,
    until: Annotated[
        Moment | None, Query(alias="to", description="RFC 3339; events before")
    ] = None,
    organisation: Annotated[
        str | None, Query(max_length=64, description="the acting organisation")
    ] = None,
    agreement_id: Annotated[str | None, Query(max_length=36)] = None,
    purpose: Annotated[
        str | None, Query(max_length=128, description="a purpose and its descendants")
    ] = None,
    action: AuditAction | None = None,
    outcome: Outcome | None = None,
    reason: Annotated[str | None, Query(max_length=64, description="a reason code")] = None,
    actor: Annotated[str | None, Query(max_length=200, description="the acting subject")] = None,
    subject_id: Annotated[
        str | None,
        Query(max_length=200, description="a raw data-subject id; pseudonymised, never stored"),
    ] = None,
) -> search.EventFilter:
    """The search criteria shared by search, counts and export."""
    return search.EventFilter(
        since=since,
        until=until,
        organisation=organisation,
        agreement_id=agreement_id,
        purpose=purpose,
        action=None if action is None else action.value,
        outcome=None if outcome is None else outcome.value,
        reason=reason,
        actor=actor,
        subject_pseudonym=None if subject_id is None else runtime.pseudonymise(subject_id),
    )


Filter = Annotated[search.EventFilter, Depends(event_filter)]


def _cursor(value: str | None) -> int | None:
    return None if value is None else int(value)  # the pattern admits only digits


@router.get(
    "/events",
    summary="Search audit events",
    description="Scoped to the caller: auditors and admins see everything, stewards their "
    "organisation's agreements and actions, partners their organisation's own events.",
    responses=problem_responses(Forbidden, InvalidRequest),
)
def search_events(
    session: SessionDep,
    principal: Reader,
    criteria: Filter,
    cursor: Annotated[
        str | None, Query(pattern=r"^[0-9]{1,16}$", description="from next_cursor")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    order: Annotated[Literal["asc", "desc"], Query(description="by seq")] = "asc",
) -> schemas.EventPage:
    events, following = search.find_events(
        session,
        principal,
        criteria,
        after=_cursor(cursor),
        limit=limit,
        descending=order == "desc",
    )
    return schemas.EventPage(
        items=[schemas.AuditEventRead.of(e) for e in events],
        next_cursor=None if following is None else str(following),
    )


@router.get(
    "/events/{seq}",
    summary="Read one audit event",
    responses=problem_responses(Forbidden, NotFound),
)
def read_event(seq: Seq, session: SessionDep, principal: Reader) -> schemas.AuditEventRead:
    return schemas.AuditEventRead.of(search.visible_event(session, principal, seq))


@router.get(
    "/counts",
    summary="Count audit events by outcome, reason, agreement or purpose",
    responses=problem_responses(Forbidden),
)
def count_events(
    session: SessionDep, principal: Reader, criteria: Filter, group_by: search.GroupBy
) -> schemas.EventCounts:
    groups = search.count_events(session, principal, criteria, group_by)
    return schemas.EventCounts(
        group_by=group_by.value,
        total=sum(n for _, n in groups),
        groups=[schemas.CountGroup(key=k, count=n) for k, n in groups],
    )


_CSV_COLUMNS = [
    "seq", "event_id", "occurred_at", "action", "actor_subject", "actor_role", "actor_org",
    "resource_type", "resource_id", "agreement_id", "agreement_version", "purpose", "outcome",
    "reasons", "minimisation", "ethics_review", "policy_revision", "request_id", "subjects",
    "details", "leaf_hash",
]  # fmt: skip
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    text = str(value)
    # A leading quote keeps spreadsheets from running caller-supplied text as a formula.
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv_rows(pages: Iterator[list[AuditEvent]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_CSV_COLUMNS)
    yield buffer.getvalue()
    for page in pages:
        buffer.seek(0)
        buffer.truncate()
        writer.writerows([[_cell(getattr(e, c)) for c in _CSV_COLUMNS] for e in page])
        yield buffer.getvalue()


def _jsonl_rows(pages: Iterator[list[AuditEvent]]) -> Iterator[str]:
    for page in pages:
        lines = []
        for event in page:
            document = {**event_document(event), "leaf_hash": event.leaf_hash.hex()}
            lines.append(json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n")
        yield "".join(lines)


@router.get(
    "/export",
    summary="Export audit events as JSON Lines or CSV (streamed)",
    description="Same criteria and scope as the search; a snapshot of the log as it was when "
    "the export started. JSON Lines carry each event document plus `leaf_hash` (hex). In CSV, "
    "JSON-valued columns are JSON text and a value starting with = + - @ is prefixed with '.",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/x-ndjson": {}, "text/csv": {}}},
        **problem_responses(Forbidden),
    },
)
def export_events(
    runtime: RuntimeDep,
    principal: Reader,
    criteria: Filter,
    format: ExportFormat = ExportFormat.JSONL,
) -> StreamingResponse:
    for session in transaction(runtime.read_sessions):
        upto = tree.log_size(session)
    pages = search.export_pages(runtime.read_sessions, principal, criteria, upto)
    # The first page is read before the response starts: a query that fails is answered
    # with a problem, not with a 200 whose body then stops short.
    pages = itertools.chain([next(pages, [])], pages)
    if format is ExportFormat.CSV:
        body, media = _csv_rows(pages), "text/csv; charset=utf-8"
    else:
        body, media = _jsonl_rows(pages), "application/x-ndjson"
    filename = f"accord-audit-{upto}.{format.value}"
    disposition = f'attachment; filename="{filename}"'
    return StreamingResponse(body, media_type=media, headers={"Content-Disposition": disposition})


def _head(session: SessionDep, size: int | None) -> TreeHead:
    head = tree.latest_head(session) if size is None else tree.head_at(session, size)
    if head is None:
        what = "no tree head has been signed yet" if size is None else f"no signed head of {size}"
        raise NotFound(what)
    return head


@router.get(
    "/tree-heads/latest",
    summary="The latest signed tree head",
    responses=problem_responses(Forbidden, NotFound),
)
def latest_tree_head(session: SessionDep, _: Anyone) -> schemas.SignedTreeHead:
    return schemas.SignedTreeHead.of(_head(session, None))


@router.get(
    "/tree-heads/{size}",
    summary="The signed tree head of a given size",
    responses=problem_responses(Forbidden, NotFound),
)
def tree_head(
    size: Annotated[int, Path(ge=0, le=MAX_INDEX)], session: SessionDep, _: Anyone
) -> schemas.SignedTreeHead:
    return schemas.SignedTreeHead.of(_head(session, size))


@router.post(
    "/tree-heads",
    summary="Sign a tree head over the whole log now",
    description="Returns the latest head unchanged when nothing was appended since.",
    responses=problem_responses(Forbidden, Conflict),
)
def sign_tree_head(
    runtime: RuntimeDep, principal: Auditor, rid: RequestId
) -> schemas.SignedTreeHead:
    return schemas.SignedTreeHead.of(signer.sign_tree_head(runtime, Actor(principal, rid)))


@router.get(
    "/events/{seq}/inclusion",
    summary="Prove an event is in the log (RFC 9162 inclusion proof)",
    description="Against the signed head of `tree_size` leaves (default: the latest). Verify "
    "with RFC 9162 §2.1.3.2: leaf_hash = SHA-256(0x00 || RFC 8785 JSON of `event`).",
    responses=problem_responses(Forbidden, NotFound, Conflict),
)
def inclusion_proof(
    seq: Seq,
    session: SessionDep,
    principal: Reader,
    tree_size: Annotated[
        int | None, Query(ge=1, le=MAX_INDEX, description="a signed head's size")
    ] = None,
) -> schemas.InclusionProof:
    event = search.visible_event(session, principal, seq)
    head = _head(session, tree_size)
    if seq >= head.size:
        raise Conflict(
            f"event {seq} is not yet covered by a signed tree head (latest: {head.size}); "
            "heads are signed at an interval and on demand"
        )
    path = tree.inclusion_path(session, seq, head.size)
    leaf, root = bytes(event.leaf_hash), bytes(head.root_hash)
    if not merkle.verify_inclusion(leaf, seq, head.size, path, root):
        raise tree.LogIntegrityError(f"event {seq} does not prove against its head; run verify")
    return schemas.InclusionProof(
        leaf_index=seq,
        tree_size=head.size,
        leaf_hash=leaf.hex(),
        audit_path=[p.hex() for p in path],
        root_hash=root.hex(),
        tree_head=schemas.SignedTreeHead.of(head),
        event=event_document(event),
    )


@router.get(
    "/consistency",
    summary="Prove a later tree head only appended to an earlier one (RFC 9162)",
    description="Both sizes must be signed heads. Verify with RFC 9162 §2.1.4.2.",
    responses=problem_responses(Forbidden, NotFound, InvalidRequest, Conflict),
)
def consistency_proof(
    session: SessionDep,
    _: Anyone,
    first: Annotated[int, Query(ge=0, le=MAX_INDEX, description="the earlier head's size")],
    second: Annotated[int, Query(ge=0, le=MAX_INDEX, description="the later head's size")],
) -> schemas.ConsistencyProof:
    if first > second:
        raise InvalidRequest("first must not exceed second")
    older, newer = _head(session, first), _head(session, second)
    proof = tree.consistency_path(session, first, second)
    roots = bytes(older.root_hash), bytes(newer.root_hash)
    if not merkle.verify_consistency(first, second, roots[0], roots[1], proof):
        raise tree.LogIntegrityError(f"heads {first} and {second} are not consistent; run verify")
    return schemas.ConsistencyProof(
        first=schemas.SignedTreeHead.of(older),
        second=schemas.SignedTreeHead.of(newer),
        proof=[p.hex() for p in proof],
    )


@router.get(
    "/jwks",
    summary="The public keys that sign tree heads (JWK Set, no authentication)",
    responses=_PUBLIC_RESPONSES,
)
def jwks(session: SessionDep, runtime: RuntimeDep) -> schemas.JWKS:
    document = keys.jwks_document(session, keys.signing_key(runtime.settings))
    return schemas.JWKS.model_validate(document)


@router.post(
    "/verify",
    summary="Verify the whole log: leaves, signed heads and their consistency",
    description="Recomputes every leaf from its row, every signed head's root and signature, "
    "and names the first event that does not match.",
    responses=problem_responses(Forbidden),
)
def verify(runtime: RuntimeDep, _: Auditor) -> schemas.VerifyReportRead:
    return schemas.VerifyReportRead.of(verify_log(runtime))
