"""Registry routes: organisations, purposes, data categories and fields."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, status

from service.core.deps import ANY_ROLE, Actor, RuntimeDep, SessionDep, request_id, roles
from service.core.errors import Conflict, Forbidden, InvalidRequest, NotFound, problem_responses
from service.core.identity import Principal, Role
from service.registry import schemas, service
from service.registry.models import DataField

router = APIRouter(prefix="/v1", tags=["registry"])

Admin = Annotated[Principal, Depends(roles(Role.ADMIN))]
Anyone = Annotated[Principal, Depends(roles(*ANY_ROLE))]
RequestId = Annotated[str | None, Depends(request_id)]
OrgId = Annotated[str, Path(max_length=64)]


@router.post(
    "/organisations",
    status_code=status.HTTP_201_CREATED,
    summary="Register an organisation",
    responses=problem_responses(Forbidden, Conflict),
)
def create_organisation(
    body: schemas.OrganisationCreate,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Admin,
    rid: RequestId,
) -> schemas.OrganisationRead:
    org = service.create_organisation(session, Actor(principal, rid), body, runtime.clock.now())
    return schemas.OrganisationRead.model_validate(org)


@router.get(
    "/organisations",
    summary="List organisations",
    responses=problem_responses(Forbidden),
)
def list_organisations(session: SessionDep, _: Anyone) -> list[schemas.OrganisationRead]:
    return [schemas.OrganisationRead.model_validate(o) for o in service.list_organisations(session)]


@router.get(
    "/organisations/{org_id}",
    summary="Read an organisation",
    responses=problem_responses(Forbidden, NotFound),
)
def read_organisation(org_id: OrgId, session: SessionDep, _: Anyone) -> schemas.OrganisationRead:
    return schemas.OrganisationRead.model_validate(service.get_organisation(session, org_id))


@router.patch(
    "/organisations/{org_id}",
    summary="Rename, enable or disable an organisation",
    responses=problem_responses(Forbidden, NotFound),
)
def update_organisation(
    org_id: OrgId,
    body: schemas.OrganisationUpdate,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Admin,
    rid: RequestId,
) -> schemas.OrganisationRead:
    org = service.update_organisation(
        session, Actor(principal, rid), org_id, body, runtime.clock.now()
    )
    session.commit()  # before forgetting, so that the next lookup sees the change
    runtime.organisations.forget(org_id)
    return schemas.OrganisationRead.model_validate(org)


@router.get(
    "/purposes", summary="List the purpose taxonomy", responses=problem_responses(Forbidden)
)
def list_purposes(session: SessionDep, _: Anyone) -> list[schemas.PurposeRead]:
    return [schemas.PurposeRead.model_validate(p) for p in service.list_purposes(session)]


@router.post(
    "/purposes",
    status_code=status.HTTP_201_CREATED,
    summary="Extend the purpose taxonomy",
    responses=problem_responses(Forbidden, Conflict, InvalidRequest),
)
def add_purpose(
    body: schemas.PurposeCreate,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Admin,
    rid: RequestId,
) -> schemas.PurposeRead:
    purpose = service.add_purpose(session, Actor(principal, rid), body, runtime.clock.now())
    session.commit()
    runtime.taxonomy.forget()
    return schemas.PurposeRead.model_validate(purpose)


@router.get(
    "/data-categories",
    summary="List the data-category taxonomy",
    responses=problem_responses(Forbidden),
)
def list_categories(session: SessionDep, _: Anyone) -> list[schemas.CategoryRead]:
    return [schemas.CategoryRead.model_validate(c) for c in service.list_categories(session)]


@router.post(
    "/data-categories",
    status_code=status.HTTP_201_CREATED,
    summary="Extend the data-category taxonomy",
    responses=problem_responses(Forbidden, Conflict, InvalidRequest),
)
def add_category(
    body: schemas.CategoryCreate,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Admin,
    rid: RequestId,
) -> schemas.CategoryRead:
    category = service.add_category(session, Actor(principal, rid), body, runtime.clock.now())
    session.commit()
    runtime.taxonomy.forget()
    return schemas.CategoryRead.model_validate(category)


def _field_read(field: DataField, sensitive: list[str]) -> schemas.FieldRead:
    return schemas.FieldRead(
        name=field.name,
        category=field.category_code,
        label=field.label,
        sensitive=service.field_is_sensitive(field, sensitive),
    )


@router.get("/data-fields", summary="List data fields", responses=problem_responses(Forbidden))
def list_fields(session: SessionDep, _: Anyone) -> list[schemas.FieldRead]:
    sensitive = service.sensitive_categories(session)
    return [_field_read(f, sensitive) for f in service.list_fields(session)]


@router.post(
    "/data-fields",
    status_code=status.HTTP_201_CREATED,
    summary="Register a data field",
    responses=problem_responses(Forbidden, Conflict, InvalidRequest),
)
def add_field(
    body: schemas.FieldCreate,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Admin,
    rid: RequestId,
) -> schemas.FieldRead:
    field = service.add_field(session, Actor(principal, rid), body, runtime.clock.now())
    session.commit()
    runtime.taxonomy.forget()
    return _field_read(field, service.sensitive_categories(session))
