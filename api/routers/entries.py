"""A State's own entry (R15: only the State itself changes it). Changes take ``If-Match``
with the entry's ETag; a stale one gets 412 and changes nothing."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response

from api.deps import Idempotency, ServicesDep, StatePrincipal
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
from domain.idempotency import IdempotencyKey
from domain.position import written_position
from domain.state_entry import check_acts_for
from domain.values import Contact
from projections.queries import ViewQueries

router = APIRouter(prefix="/entries", tags=["own entry"])

IfMatch = Annotated[
    str | None,
    Header(
        max_length=40,
        description="The entry's ETag as last read; a stale one gets 412 and changes nothing",
    ),
]


#: An entry's ETag is its version in ASCII digits. ``str.isdigit`` would also admit '²' or
#: '٣', which ``int`` then refuses (or reads as another number): match the bytes we send.
_ETAG_VERSION = re.compile(r"[0-9]+", re.ASCII)


def expected_version(if_match: str | None) -> int | None:
    if if_match is None or if_match.strip() == "*":
        return None
    raw = if_match.strip().removeprefix("W/").strip('"')
    if not _ETAG_VERSION.fullmatch(raw):
        raise ValidationError('If-Match must be an ETag such as "3", as returned by GET')
    return int(raw)


class OwnEntry:
    """A dependency: the caller's own entry (R15 is checked before anything else), with what
    every change needs, the caller's ``If-Match`` and the response to put the ETag on."""

    def __init__(
        self,
        state: str,
        by: StatePrincipal,
        services: ServicesDep,
        response: Response,
        key: Idempotency,
        if_match: IfMatch = None,
    ) -> None:
        self.code = state.strip().upper()
        check_acts_for(by, self.code)
        self.by, self.services, self.response, self.if_match = by, services, response, if_match
        self.key = key

    def read(self) -> EntryPublic:
        """The entry from the view as it is, with its ETag (a client that wrote it sends
        ``Pocdir-Min-Position`` to read its own write)."""
        entry = entry_public(ViewQueries(self.services.view).view_entry(self.code))
        self.response.headers["ETag"] = etag(entry.version)
        return entry

    def change(
        self, command: Callable[[PocDirectory, str, int | None, IdempotencyKey | None], object]
    ) -> EntryPublic:
        """Run ``command(application, code, expected_version, idempotency_key)`` and answer
        with the entry as it now is, with its new ETag: once the views have reached the
        position the change was written at (bounded, ``POCDIR_READ_WAIT_SECONDS``; the
        runner projects it, not this request)."""
        command(self.services.application, self.code, expected_version(self.if_match), self.key)
        written = written_position()
        if written is None:  # outside the gate's sink: at least as far as the record is now
            written = self.services.application.recorder.max_notification_id() or 0
        self.services.wait_for_position(written)
        return self.read()


Own = Annotated[OwnEntry, Depends()]


@router.get("/{state}", response_model=EntryPublic, summary="Your own entry, with its ETag")
def get_own_entry(own: Own) -> EntryPublic:
    return own.read()


@router.post("/{state}", response_model=EntryPublic, status_code=201, summary="Register your State")
def register(body: RegisterCreate, own: Own) -> EntryPublic:
    return own.change(
        lambda app, c, _, k: app.register_state(own.by, c, body.effective_on, idempotency=k)
    )


@router.post("/{state}/contacts", response_model=EntryPublic, summary="Add a contact")
def add_contact(body: ContactChange, own: Own) -> EntryPublic:
    contact = Contact.from_dict(body.contact.model_dump())
    return own.change(
        lambda app, c, v, k: app.add_contact(
            own.by, c, contact, body.effective_on, v, idempotency=k
        )
    )


@router.put(
    "/{state}/contacts/{contact_id}", response_model=EntryPublic, summary="Update a contact"
)
def update_contact(contact_id: str, body: ContactChange, own: Own) -> EntryPublic:
    contact = Contact.from_dict(body.contact.model_dump())
    if contact.contact_id != contact_id:
        raise ValidationError("the contact's contact_id must be the one in the path")
    return own.change(
        lambda app, c, v, k: app.update_contact(
            own.by, c, contact, body.effective_on, v, idempotency=k
        )
    )


@router.delete(
    "/{state}/contacts/{contact_id}", response_model=EntryPublic, summary="Remove a contact"
)
def remove_contact(contact_id: str, own: Own, effective_on: date | None = None) -> EntryPublic:
    return own.change(
        lambda app, c, v, k: app.remove_contact(
            own.by, c, contact_id, effective_on, v, idempotency=k
        )
    )


@router.put(
    "/{state}/coordination-contact",
    response_model=EntryPublic,
    summary="Name the coordination contact (R3)",
)
def set_coordination_contact(body: ContactRef, own: Own) -> EntryPublic:
    return own.change(
        lambda app, c, v, k: app.set_coordination_contact(
            own.by, c, body.contact_id, body.effective_on, v, idempotency=k
        )
    )


@router.put(
    "/{state}/preferred-channel",
    response_model=EntryPublic,
    summary="Say where communications should start (R3)",
)
def set_preferred_channel(body: PreferredChannelCreate, own: Own) -> EntryPublic:
    return own.change(
        lambda app, c, v, k: app.set_preferred_channel(
            own.by, c, body.contact_id, body.channel, body.effective_on, v, idempotency=k
        )
    )


@router.post(
    "/{state}/confirmation",
    response_model=EntryPublic,
    summary="Confirm the entry is current (R5, yearly)",
)
def confirm(own: Own) -> EntryPublic:
    return own.change(lambda app, c, v, k: app.confirm_entry(own.by, c, v, idempotency=k))


@router.post(
    "/{state}/withdrawal",
    response_model=EntryPublic,
    summary="Withdraw from the directory (history is kept)",
)
def withdraw(body: EffectiveOn, own: Own) -> EntryPublic:
    return own.change(
        lambda app, c, v, k: app.withdraw_entry(own.by, c, body.effective_on, v, idempotency=k)
    )
