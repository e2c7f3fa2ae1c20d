"""A State's own entry (R15: only the State itself changes it). Changes take ``If-Match``
with the entry's ETag; a stale one gets 412 and changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Header, Response

from api.deps import ServicesDep, StatePrincipal
from api.routers.directory import entry_public, etag
from api.schemas import (
    ContactChange,
    ContactRef,
    EffectiveOn,
    EntryPublic,
    PreferredChannelCreate,
    RegisterCreate,
)
from domain.application import PocDirectory
from domain.errors import ValidationError
from domain.state_entry import check_acts_for
from domain.values import Contact, Principal
from infra.wiring import Services

router = APIRouter(prefix="/entries", tags=["own entry"])

IfMatch = Annotated[
    str | None,
    Header(
        max_length=40,
        description="The entry's ETag as last read; a stale one gets 412 and changes nothing",
    ),
]


def expected_version(if_match: str | None) -> int | None:
    if if_match is None or if_match.strip() == "*":
        return None
    raw = if_match.strip().removeprefix("W/").strip('"')
    if not raw.isdigit():
        raise ValidationError('If-Match must be an ETag such as "3", as returned by GET')
    return int(raw)


def _entry(services: Services, code: str, response: Response) -> EntryPublic:
    entry = entry_public(services.queries().view_entry(code))
    response.headers["ETag"] = etag(entry.version)
    return entry


def _change(
    services: Services,
    by: Principal,
    state: str,
    response: Response,
    if_match: str | None,
    command: Callable[[PocDirectory, str, int | None], object],
) -> EntryPublic:
    """Check R15 before anything, run ``command(application, code, expected_version)``, and
    answer with the entry as it now is, with its new ETag."""
    code = state.strip().upper()
    check_acts_for(by, code)
    command(services.application, code, expected_version(if_match))
    return _entry(services, code, response)


@router.get("/{state}", response_model=EntryPublic, summary="Your own entry, with its ETag")
def get_own_entry(
    state: str, by: StatePrincipal, services: ServicesDep, response: Response
) -> EntryPublic:
    check_acts_for(by, state.strip().upper())
    return _entry(services, state.strip().upper(), response)


@router.post("/{state}", response_model=EntryPublic, status_code=201, summary="Register your State")
def register(
    state: str,
    body: RegisterCreate,
    by: StatePrincipal,
    services: ServicesDep,
    response: Response,
) -> EntryPublic:
    return _change(
        services,
        by,
        state,
        response,
        None,
        lambda app, c, _: app.register_state(by, c, body.effective_on),
    )


@router.post("/{state}/contacts", response_model=EntryPublic, summary="Add a contact")
def add_contact(
    state: str,
    body: ContactChange,
    by: StatePrincipal,
    services: ServicesDep,
    response: Response,
    if_match: IfMatch = None,
) -> EntryPublic:
    contact = Contact.from_dict(body.contact.model_dump())
    return _change(
        services,
        by,
        state,
        response,
        if_match,
        lambda app, c, v: app.add_contact(by, c, contact, body.effective_on, v),
    )


@router.put(
    "/{state}/contacts/{contact_id}", response_model=EntryPublic, summary="Update a contact"
)
def update_contact(
    state: str,
    contact_id: str,
    body: ContactChange,
    by: StatePrincipal,
    services: ServicesDep,
    response: Response,
    if_match: IfMatch = None,
) -> EntryPublic:
    contact = Contact.from_dict(body.contact.model_dump())
    if contact.contact_id != contact_id:
        raise ValidationError("the contact's contact_id must be the one in the path")
    return _change(
        services,
        by,
        state,
        response,
        if_match,
        lambda app, c, v: app.update_contact(by, c, contact, body.effective_on, v),
    )


@router.delete(
    "/{state}/contacts/{contact_id}", response_model=EntryPublic, summary="Remove a contact"
)
def remove_contact(
    state: str,
    contact_id: str,
    by: StatePrincipal,
    services: ServicesDep,
    response: Response,
    effective_on: date | None = None,
    if_match: IfMatch = None,
) -> EntryPublic:
    return _change(
        services,
        by,
        state,
        response,
        if_match,
        lambda app, c, v: app.remove_contact(by, c, contact_id, effective_on, v),
    )


@router.put(
    "/{state}/coordination-contact",
    response_model=EntryPublic,
    summary="Name the coordination contact (R3)",
)
def set_coordination_contact(
    state: str,
    body: ContactRef,
    by: StatePrincipal,
    services: ServicesDep,
    response: Response,
    if_match: IfMatch = None,
) -> EntryPublic:
    return _change(
        services,
        by,
        state,
        response,
        if_match,
        lambda app, c, v: app.set_coordination_contact(
            by, c, body.contact_id, body.effective_on, v
        ),
    )


@router.put(
    "/{state}/preferred-channel",
    response_model=EntryPublic,
    summary="Say where communications should start (R3)",
)
def set_preferred_channel(
    state: str,
    body: PreferredChannelCreate,
    by: StatePrincipal,
    services: ServicesDep,
    response: Response,
    if_match: IfMatch = None,
) -> EntryPublic:
    return _change(
        services,
        by,
        state,
        response,
        if_match,
        lambda app, c, v: app.set_preferred_channel(
            by, c, body.contact_id, body.channel, body.effective_on, v
        ),
    )


@router.post(
    "/{state}/confirmation",
    response_model=EntryPublic,
    summary="Confirm the entry is current (R5, yearly)",
)
def confirm(
    state: str,
    by: StatePrincipal,
    services: ServicesDep,
    response: Response,
    if_match: IfMatch = None,
) -> EntryPublic:
    return _change(
        services, by, state, response, if_match, lambda app, c, v: app.confirm_entry(by, c, v)
    )


@router.post(
    "/{state}/withdrawal",
    response_model=EntryPublic,
    summary="Withdraw from the directory (history is kept)",
)
def withdraw(
    state: str,
    body: EffectiveOn,
    by: StatePrincipal,
    services: ServicesDep,
    response: Response,
    if_match: IfMatch = None,
) -> EntryPublic:
    return _change(
        services,
        by,
        state,
        response,
        if_match,
        lambda app, c, v: app.withdraw_entry(by, c, body.effective_on, v),
    )
