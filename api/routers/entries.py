"""A State's own entry (R15: only the State itself changes it). Every change of an existing
entry must send ``If-Match`` with the entry's ETag, as a GET returned it: a missing one, or
``*``, gets 428 (so no client can overwrite a change it has not seen by forgetting the
header), and a stale one gets 412; neither changes anything. Registering creates the entry,
so it has no ETag to send."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response

from api.deps import Idempotency, ServicesDep, StatePrincipal
from api.errors import IF_MATCH_REQUIRED, PreconditionRequired
from api.routers.directory import entry_public, etag
from api.schemas import (
    ContactChange,
    ContactRef,
    EffectiveOn,
    EntryPublic,
    PreferredChannelCreate,
    RegisterCreate,
    WebhookCreate,
    WebhookPublic,
)
from domain.application import PocDirectory
from domain.errors import ValidationError
from domain.idempotency import IdempotencyKey
from domain.position import written_position
from domain.signed_requests import version_of_etag
from domain.state_entry import check_acts_for
from domain.values import Contact
from projections.queries import ViewQueries

router = APIRouter(prefix="/entries", tags=["own entry"])

IfMatch = Annotated[
    str,
    Header(
        max_length=40,
        description="Required: the entry's ETag as last read (GET /entries/{state}), e.g. "
        '`"3"`. Missing or `*` gets 428; a stale one gets 412; neither changes anything.',
    ),
]


def expected_version(if_match: str) -> int:
    """The version an ``If-Match`` names; ``*`` names none, so it is refused like a missing
    header (428), as it would let a client overwrite changes it has not seen."""
    if if_match.strip() == "*":
        raise PreconditionRequired(IF_MATCH_REQUIRED)
    return version_of_etag(if_match)


def own_code(state: str, by: StatePrincipal) -> str:
    """The entry's State code, once R15 holds (the caller acts for that State). A dependency
    of its own, so that FastAPI runs it before it reads the other headers: another State's
    entry gets 403 whatever else the request lacks."""
    code = state.strip().upper()
    check_acts_for(by, code)
    return code


OwnCode = Annotated[str, Depends(own_code)]


class OwnEntry:
    """A dependency: the caller's own entry (R15 is checked before anything else), with what
    every write needs and the response to put the ETag on. Registering uses it as it is;
    changes of an existing entry use ``ChangedEntry``, which also requires ``If-Match``."""

    def __init__(
        self,
        code: OwnCode,
        by: StatePrincipal,
        services: ServicesDep,
        response: Response,
        key: Idempotency,
    ) -> None:
        self.code = code
        self.by, self.services, self.response = by, services, response
        self.key = key
        #: The version the caller's ``If-Match`` names; None only when registering.
        self.version: int | None = None

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
        command(self.services.application, self.code, self.version, self.key)
        written = written_position()
        if written is None:  # outside the gate's sink: at least as far as the record is now
            written = self.services.application.recorder.max_notification_id() or 0
        self.services.wait_for_position(written)
        return self.read()


class ChangedEntry(OwnEntry):
    """The caller's own entry, to change: ``If-Match`` is required (428 without it)."""

    def __init__(
        self,
        code: OwnCode,
        by: StatePrincipal,
        services: ServicesDep,
        response: Response,
        key: Idempotency,
        if_match: IfMatch,
    ) -> None:
        super().__init__(code, by, services, response, key)
        self.version = expected_version(if_match)  # before the body is looked at


Own = Annotated[OwnEntry, Depends()]
Changed = Annotated[ChangedEntry, Depends()]


@router.get("/{state}", response_model=EntryPublic, summary="Your own entry, with its ETag")
def get_own_entry(own: Own) -> EntryPublic:
    return own.read()


@router.post("/{state}", response_model=EntryPublic, status_code=201, summary="Register your State")
def register(body: RegisterCreate, own: Own) -> EntryPublic:
    return own.change(
        lambda app, c, _, k: app.register_state(own.by, c, body.effective_on, idempotency=k)
    )


@router.post("/{state}/contacts", response_model=EntryPublic, summary="Add a contact")
def add_contact(body: ContactChange, own: Changed) -> EntryPublic:
    contact = Contact.from_dict(body.contact.model_dump())
    return own.change(
        lambda app, c, v, k: app.add_contact(
            own.by, c, contact, body.effective_on, v, idempotency=k
        )
    )


@router.put(
    "/{state}/contacts/{contact_id}", response_model=EntryPublic, summary="Update a contact"
)
def update_contact(contact_id: str, body: ContactChange, own: Changed) -> EntryPublic:
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
def remove_contact(contact_id: str, own: Changed, effective_on: date | None = None) -> EntryPublic:
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
def set_coordination_contact(body: ContactRef, own: Changed) -> EntryPublic:
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
def set_preferred_channel(body: PreferredChannelCreate, own: Changed) -> EntryPublic:
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
def confirm(own: Changed) -> EntryPublic:
    return own.change(lambda app, c, v, k: app.confirm_entry(own.by, c, v, idempotency=k))


@router.post(
    "/{state}/withdrawal",
    response_model=EntryPublic,
    summary="Withdraw from the directory (history is kept)",
)
def withdraw(body: EffectiveOn, own: Changed) -> EntryPublic:
    return own.change(
        lambda app, c, v, k: app.withdraw_entry(own.by, c, body.effective_on, v, idempotency=k)
    )


@router.get(
    "/{state}/webhook",
    response_model=WebhookPublic,
    summary="Your own webhook (never shown to other States)",
)
def get_webhook(code: OwnCode, services: ServicesDep) -> WebhookPublic:
    """Read from the entry itself: the directory view, which other States read, does not
    hold the webhook at all."""
    return WebhookPublic(url=services.application.get_entry(code).webhook)


@router.put(
    "/{state}/webhook",
    response_model=EntryPublic,
    summary="Set the webhook your alerts are POSTed to (signed; docs/delivery.md)",
)
def set_webhook(body: WebhookCreate, own: Changed) -> EntryPublic:
    allow_private = own.services.settings.webhook_allow_private
    return own.change(
        lambda app, c, v, k: app.set_webhook(
            own.by, c, body.url, v, allow_private=allow_private, idempotency=k
        )
    )


@router.delete("/{state}/webhook", response_model=EntryPublic, summary="Remove your webhook")
def remove_webhook(own: Changed) -> EntryPublic:
    return own.change(lambda app, c, v, k: app.remove_webhook(own.by, c, v, idempotency=k))
