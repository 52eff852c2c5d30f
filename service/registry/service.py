"""Registry operations: organisations and the taxonomies."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.audit import log as audit
from service.audit.actions import AuditAction
from service.core.deps import Actor
from service.core.errors import Conflict, InvalidRequest, NotFound
from service.registry import schemas, taxonomy
from service.registry.models import DataCategory, DataField, Organisation, Purpose


def create_organisation(
    session: Session, actor: Actor, data: schemas.OrganisationCreate, now: datetime
) -> Organisation:
    if session.get(Organisation, data.id) is not None:
        raise Conflict(f"organisation {data.id} already exists")
    org = Organisation(id=data.id, name=data.name, sector=data.sector.value, created_at=now)
    session.add(org)
    session.flush()
    audit.append(
        session,
        actor,
        audit.EventRecord(
            AuditAction.ORGANISATION_CREATED,
            "organisation",
            org.id,
            details={"sector": org.sector},
        ),
        now,
    )
    return org


def get_organisation(session: Session, org_id: str) -> Organisation:
    org = session.get(Organisation, org_id)
    if org is None:
        raise NotFound(f"organisation {org_id} not found")
    return org


def update_organisation(
    session: Session, actor: Actor, org_id: str, data: schemas.OrganisationUpdate, now: datetime
) -> Organisation:
    org = get_organisation(session, org_id)
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    if changes.get("enabled") is False and org.sector == schemas.Sector.OPERATOR.value:
        raise Conflict(
            "the operator organisation cannot be disabled (its admins would be locked out)"
        )
    for key, value in changes.items():
        setattr(org, key, value)
    audit.append(
        session,
        actor,
        audit.EventRecord(
            AuditAction.ORGANISATION_UPDATED, "organisation", org.id, details=changes
        ),
        now,
    )
    return org


def list_organisations(session: Session) -> list[Organisation]:
    return list(session.scalars(select(Organisation).order_by(Organisation.id)))


def _require_parent(
    session: Session, model: type[Purpose] | type[DataCategory], code: str
) -> str | None:
    parent = taxonomy.parent_of(code)
    if parent is not None and session.get(model, parent) is None:
        raise InvalidRequest(f"parent {parent} of {code} does not exist")
    return parent


def add_purpose(
    session: Session, actor: Actor, data: schemas.PurposeCreate, now: datetime
) -> Purpose:
    if session.get(Purpose, data.code) is not None:
        raise Conflict(f"purpose {data.code} already exists")
    purpose = Purpose(
        code=data.code,
        parent_code=_require_parent(session, Purpose, data.code),
        label=data.label,
        description=data.description,
    )
    session.add(purpose)
    session.flush()
    audit.append(
        session,
        actor,
        audit.EventRecord(AuditAction.TAXONOMY_EXTENDED, "purpose", data.code),
        now,
    )
    return purpose


def add_category(
    session: Session, actor: Actor, data: schemas.CategoryCreate, now: datetime
) -> DataCategory:
    if session.get(DataCategory, data.code) is not None:
        raise Conflict(f"category {data.code} already exists")
    category = DataCategory(
        code=data.code,
        parent_code=_require_parent(session, DataCategory, data.code),
        label=data.label,
        sensitive=data.sensitive,
    )
    session.add(category)
    session.flush()
    audit.append(
        session,
        actor,
        audit.EventRecord(
            AuditAction.TAXONOMY_EXTENDED,
            "data_category",
            data.code,
            details={"sensitive": data.sensitive},
        ),
        now,
    )
    return category


def add_field(
    session: Session, actor: Actor, data: schemas.FieldCreate, now: datetime
) -> DataField:
    if session.get(DataField, data.name) is not None:
        raise Conflict(f"field {data.name} already exists")
    if session.get(DataCategory, data.category) is None:
        raise InvalidRequest(f"category {data.category} does not exist")
    field = DataField(
        name=data.name, category_code=data.category, label=data.label, sensitive=data.sensitive
    )
    session.add(field)
    session.flush()
    audit.append(
        session,
        actor,
        audit.EventRecord(AuditAction.TAXONOMY_EXTENDED, "data_field", data.name),
        now,
    )
    return field


def list_purposes(session: Session) -> list[Purpose]:
    return list(session.scalars(select(Purpose).order_by(Purpose.code)))


def list_categories(session: Session) -> list[DataCategory]:
    return list(session.scalars(select(DataCategory).order_by(DataCategory.code)))


def list_fields(session: Session) -> list[DataField]:
    return list(session.scalars(select(DataField).order_by(DataField.name)))


def sensitive_categories(session: Session) -> list[str]:
    return list(session.scalars(select(DataCategory.code).where(DataCategory.sensitive.is_(True))))


def field_is_sensitive(field: DataField, sensitive: Iterable[str]) -> bool:
    flagged = set(sensitive)
    return field.sensitive or any(c in flagged for c in taxonomy.lineage(field.category_code))


def catalogue(session: Session, names: Iterable[str]) -> dict[str, dict[str, object]]:
    """The policy input's description of the named fields that the registry knows."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    rows = session.scalars(select(DataField).where(DataField.name.in_(wanted)))
    return {
        f.name: {
            "category": f.category_code,
            "category_lineage": taxonomy.lineage(f.category_code),
            "sensitive": f.sensitive,
        }
        for f in rows
    }


def ensure_operator(session: Session, org_id: str, now: datetime) -> None:
    """The operator's own organisation, so that its administrators' tokens are accepted."""
    if session.get(Organisation, org_id) is None:
        session.add(
            Organisation(
                id=org_id,
                name="Accord operator",
                sector=schemas.Sector.OPERATOR.value,
                created_at=now,
            )
        )
        session.flush()


def install_default_taxonomy(session: Session) -> bool:
    """Insert the shipped taxonomy into an empty registry; True if it did."""
    if session.scalar(select(func.count()).select_from(Purpose)):
        return False
    for code, label in taxonomy.PURPOSES:
        session.add(Purpose(code=code, parent_code=taxonomy.parent_of(code), label=label))
        session.flush()
    for code, label, sensitive in taxonomy.CATEGORIES:
        session.add(
            DataCategory(
                code=code, parent_code=taxonomy.parent_of(code), label=label, sensitive=sensitive
            )
        )
        session.flush()
    for name, category, label in taxonomy.FIELDS:
        session.add(DataField(name=name, category_code=category, label=label))
    session.flush()
    return True
