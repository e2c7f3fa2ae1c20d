"""Request (``*Create``) and response (``*Public``) schemas.

Request schemas check shapes only; the domain checks meaning (member States, R6 languages,
IoC formats) and says what to fix. Response schemas list exactly what a caller may see, so
content fields exist only on the schemas of routes that may return content.

**One JSON convention** (README, "JSON conventions"), for HTTP and the CLI's ``--format
json`` alike: a resource's own id is ``id``, a reference to another is ``<thing>_id``;
collections are lists (never objects keyed by id); times are RFC 3339 in UTC with ``Z``.
Response models give it for what they build; ``public_json``, ``entry_json`` and
``check_json`` give it to the documents the views and the domain return as plain data, and
the CLI prints through them, so both interfaces answer in the same shapes.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any, Final, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from domain.envelope import MAX_ENVELOPE_BYTES, WRAPPED_KEY_LENGTH
from domain.freshness import LATE_NOTICE_DAYS

_DATETIME = TypeAdapter(datetime)

#: A stored time as ``datetime.isoformat`` writes it, with a numeric UTC offset.
_OFFSET_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?[+-]\d{2}:\d{2}", re.ASCII
)


def rfc3339(value: datetime) -> str:
    """``value`` in UTC with ``Z``, written as the response models write it (naive times are
    taken as UTC, which is what pocdir's clocks give)."""
    utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return str(_DATETIME.dump_python(utc, mode="json"))


def is_time_field(name: str | None) -> bool:
    """Whether a document's field ``name`` holds a time: ``at``, ``deadline`` or ``*_at``, as
    the views and the domain name them."""
    return name is not None and (name in {"at", "deadline"} or name.endswith("_at"))


def public_json(value: Any, field: str | None = None) -> Any:
    """``value`` as JSON-ready data in the one convention: times (objects, or strings with a
    numeric offset in a time field, as the views store them) in UTC with ``Z``, days and UUIDs
    as strings, tuples as lists; everything else as it is. A string is rewritten only in a time
    field (``is_time_field``), so a State's own text that happens to look like a time is
    answered as the State wrote it."""
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, str):
        if is_time_field(field) and _OFFSET_TIME.fullmatch(value):
            return rfc3339(datetime.fromisoformat(value))
        return value
    if isinstance(value, dict):
        return {k: public_json(v, k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [public_json(v, field) for v in value]
    return value


def check_json(check: dict[str, Any]) -> dict[str, Any]:
    """A communication check's results or summary in the convention: its own id as ``id``
    (the domain and the views call it ``check_id``)."""
    shaped = {("id" if k == "check_id" else k): v for k, v in check.items()}
    return public_json(shaped)  # type: ignore[no-any-return]


Str = str  # a plain string field, kept short where the domain limits it


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextIn(Strict):
    language: str = Field(max_length=10, examples=["fr"])
    text: str = Field(max_length=20_000)
    english: str | None = Field(default=None, max_length=20_000)


class TextPublic(BaseModel):
    language: str
    text: str
    english: str | None = None


class ChannelIn(Strict):
    kind: Literal["email", "phone", "secure"]
    address: str = Field(max_length=256)
    fingerprint: str | None = Field(default=None, max_length=100)


class ContactCreate(Strict):
    contact_id: str = Field(max_length=63, examples=["cert-1"])
    level: Literal["diplomatic", "technical"]
    agency: TextIn | str
    function: TextIn | str
    channels: list[ChannelIn] = Field(max_length=20)
    languages: list[Str] = Field(max_length=20)
    time_zone: str = Field(max_length=64, examples=["Europe/Paris"])
    hours: str = Field(max_length=64, examples=["24/7"])
    incident_types: list[Str] = Field(default_factory=list, max_length=50)


class ChannelPublic(BaseModel):
    kind: str
    address: str
    fingerprint: str | None = None


class ContactPublic(BaseModel):
    contact_id: str
    level: str
    agency: TextPublic
    function: TextPublic
    channels: list[ChannelPublic]
    languages: list[str]
    time_zone: str
    hours: str
    incident_types: list[str]
    preferred_channel: str | None = None
    #: False while two communication checks in a row failed to reach it (issue 17).
    verified: bool = True


class PreferredPublic(BaseModel):
    contact_id: str
    channel: str


class EntryPublic(BaseModel):
    code: str
    name: str
    registered_on: date
    withdrawn: bool
    contacts: list[ContactPublic]
    coordination_contact_id: str | None
    preferred: PreferredPublic | None
    version: int
    last_update_on: date
    last_confirmed_on: date | None


def entry_public(doc: dict[str, Any]) -> EntryPublic:
    """The view's entry document as served: only ``EntryPublic``'s fields, and the contacts,
    which the view keys by id, as a list in id order."""
    contacts = doc["contacts"]
    return EntryPublic.model_validate({**doc, "contacts": [contacts[k] for k in sorted(contacts)]})


def entry_json(doc: dict[str, Any]) -> dict[str, Any]:
    """The view's entry document as JSON data, exactly as GET /directory/{state} gives it."""
    return entry_public(doc).model_dump(mode="json")


class RoutePublic(BaseModel):
    state: str
    incident_type: str
    level: str
    contacts: list[ContactPublic]
    fell_back_to_coordination_contact: bool


class RegisterCreate(Strict):
    effective_on: date | None = None


class EffectiveOn(Strict):
    """When the change occurred (R5); defaults to today."""

    effective_on: date | None = Field(
        default=None,
        description=f"when the change occurred (R5: notify it within {LATE_NOTICE_DAYS} days of "
        "it); defaults to today",
    )


class ContactChange(EffectiveOn):
    contact: ContactCreate


class ContactRef(EffectiveOn):
    contact_id: str = Field(max_length=63)


class PreferredChannelCreate(EffectiveOn):
    contact_id: str = Field(max_length=63)
    channel: Literal["email", "phone", "secure"]


class WebhookCreate(Strict):
    """The one URL the delivery worker POSTs this State's alerts to, signed (docs/delivery.md,
    "Webhooks"): https, a public host, no user name or fragment."""

    url: str = Field(max_length=2000, examples=["https://cert.example.org/pocdir-alerts"])


class WebhookPublic(BaseModel):
    """The State's own webhook, shown to that State only; null when it has none."""

    url: str | None


class IndicatorIn(Strict):
    """One indicator of compromise (R7); the kinds are listed in docs/taxonomy.md."""

    kind: str = Field(max_length=40, examples=["ipv4"])
    value: str = Field(max_length=4096, examples=["203.0.113.7"])


#: The longest base64 text of an envelope (``domain.envelope.MAX_ENVELOPE_BYTES``).
ENVELOPE_B64_MAX: Final = 4 * -(-MAX_ENVELOPE_BYTES // 3)
#: The longest base64 text of one wrapped key.
WRAPPED_KEY_B64_MAX: Final = 4 * -(-WRAPPED_KEY_LENGTH // 3)


class NotificationCreate(Strict):
    """A plain notification (``description``, ``indicators``, ``supporting_text``) or a
    sealed one (``envelope``, docs/e2e.md): a State whose keys are bound must seal."""

    recipient: str = Field(max_length=3, examples=["DEU"])
    incident_type: str = Field(max_length=40, examples=["malware"])
    description: TextIn | str | None = None
    indicators: list[IndicatorIn] = Field(default_factory=list, max_length=500)
    supporting_text: TextIn | str | None = None
    good_faith_attested: bool = Field(
        description="R7: the sender attests the notification is made in good faith"
    )
    envelope: str | None = Field(
        default=None,
        max_length=ENVELOPE_B64_MAX,
        description="The sealed content: standard base64 of the envelope (docs/e2e.md)",
    )
    id: str | None = Field(
        default=None,
        max_length=64,
        description="A sealed notification's id, the one its envelope was sealed for",
    )
    urgency: Literal["urgent", "high", "normal"] | None = Field(
        default=None,
        description="How soon the recipient must acknowledge (default normal); the deadline "
        "for it is written into the notification, and it escalates when the deadline passes",
    )


class ResponseCreate(Strict):
    """A plain response (``response``), or a sealed one (``envelope``) to a sealed
    notification."""

    response: TextIn | str | None = None
    assistance_requested: bool = False
    envelope: str | None = Field(default=None, max_length=ENVELOPE_B64_MAX)


class EscalationPublic(BaseModel):
    """One escalation: when, the index on the recipient's escalation route, the contact."""

    at: datetime
    step: int
    contact_id: str


class NotificationMetaPublic(BaseModel):
    """Who, when, status: what the Secretariat and inbox listings see, never content. Also
    the urgency, the acknowledgement deadline (None: none, or no contact is left to escalate
    to) and the escalations so far."""

    id: str
    sender: str
    recipient: str
    incident_type: str
    status: str
    sent_at: datetime
    acknowledged_at: datetime | None = None
    first_response_at: datetime | None = None
    urgency: str = "normal"
    acknowledge_by: datetime | None = None
    escalations: list[EscalationPublic] = Field(default_factory=list)
    escalation_exhausted: bool = False


class ResponsePublic(BaseModel):
    """A response: its text if plain, its envelope (base64) if sealed."""

    at: datetime
    response: TextPublic | None = None
    assistance_requested: bool
    envelope: str | None = None


class SharedKeysPublic(BaseModel):
    """The keys of a sealed exchange wrapped to a third State (base64), served to it while
    its consent is effective: the content's, and each response's in order."""

    content: str
    responses: list[str]


class NotificationPublic(NotificationMetaPublic):
    """The exchange with its content, for its parties and consented third States. A sealed
    one has ``envelope`` (base64) and no description, indicators or supporting text."""

    description: TextPublic | None
    indicators: list[dict[str, Any]] | None
    supporting_text: TextPublic | None
    good_faith_attested: bool
    statement: str
    responses: list[ResponsePublic]
    version: int
    envelope: str | None = None
    shared_keys: SharedKeysPublic | None = None


class ConsentCreate(Strict):
    notification_id: str = Field(max_length=64)
    third_state: str = Field(max_length=3, examples=["FRA"])


class WrappedKeysIn(Strict):
    content: str = Field(max_length=WRAPPED_KEY_B64_MAX)
    responses: list[str] = Field(default_factory=list, max_length=10_000)


class ConsentShare(Strict):
    """A sealed exchange's keys wrapped (HPKE) to the third State's encryption key."""

    wrapped_keys: WrappedKeysIn


class ConsentPublic(BaseModel):
    id: str
    notification_id: str
    parties: list[str]
    third_state: str
    status: str
    granted_by: list[str]
    requested_at: datetime


class PendingStatePublic(BaseModel):
    state: str
    name: str
    last_update_on: date
    next_due_on: date
    status: Literal["current", "due", "overdue"]


class LateNoticePublic(BaseModel):
    model_config = ConfigDict(extra="allow")
    state: str


class NeverRegisteredPublic(BaseModel):
    state: str
    name: str


class PendingPublic(BaseModel):
    as_of: date
    states: list[PendingStatePublic]
    late_notices: list[LateNoticePublic]
    never_registered: list[NeverRegisteredPublic]


class HistoryItemPublic(BaseModel):
    model_config = ConfigDict(extra="allow")
    state: str
    position: int
    at: datetime
    event: str


class HeadPublic(BaseModel):
    size: int = Field(description="events in the record")
    position: int | None = Field(description="the last event's position")
    link: str | None = Field(description="the chain head, hex SHA-256")


class VerificationPublic(BaseModel):
    valid: bool
    events: int
    head: str | None
    error: str | None = Field(description="the first fault found, when not valid")


class RecordPublic(BaseModel):
    position: int
    originator_id: str
    originator_version: int
    topic: str
    state: str = Field(description="the stored bytes, standard base64")
    link: str = Field(description="hex SHA-256 chain link after this event")


class RecordsPage(BaseModel):
    records: list[RecordPublic]
    next_after: int | None = Field(description="pass as ?after= for the next page; null at end")


class StatementPublic(BaseModel):
    """One signed write's statement, as stored beside its events (docs/audit-format.md §15.2)."""

    first_position: int
    last_position: int
    signer: str = Field(description="state:XXX, secretariat or server")
    key: str = Field(description="the signing key's fingerprint, sha256:...")
    public_key: str = Field(description="the signing key's raw 32 bytes, hex")
    statement: str = Field(description="the statement's canonical text (RFC 8785)")
    signature: str = Field(description="Ed25519 signature, hex")


class StatementsPage(BaseModel):
    statements: list[StatementPublic]
    next_after: int | None = Field(description="pass as ?after= for the next page; null at end")
    scope: str = Field(
        description='"all" (the auditor), or "state:XXX": only the statements State XXX may '
        "read (docs/access.md)"
    )


class HealthPublic(BaseModel):
    status: Literal["ok"]


class ReadyPublic(BaseModel):
    """``/ready``: the database answered, and the views lag the record by no more than the
    allowed number of events (``POCDIR_READY_MAX_LAG_EVENTS``)."""

    status: Literal["ready"]
    database: Literal["reachable"]
    lag_events: int
    max_lag_events: int
    #: The age of the oldest event not yet in the views, by its timestamp (0 when none is).
    lag_seconds: float
    #: Whether this process's projection runner holds the lease (is the one writing the
    #: views); with several servers on one record, exactly one says true.
    holds_runner_lease: bool


class NotReadyPublic(BaseModel):
    """``/ready`` answered 503: the error shape, with the condition that failed. Status
    ``rebuilding``: the views are being rebuilt for this code's projectors (or wait for the
    runner lease's holder to rebuild them); ``not_ready``: any other condition."""

    error: Literal["not_ready"]
    detail: str
    status: Literal["not_ready", "rebuilding"]
    database: Literal["reachable", "unreachable"]
    lag_events: int | None
    max_lag_events: int
    lag_seconds: float | None = None
    holds_runner_lease: bool | None = None
