"""Request (``*Create``) and response (``*Public``) schemas.

Request schemas check shapes only; the domain checks meaning (member States, R6 languages,
IoC formats) and says what to fix. Response schemas list exactly what a caller may see, so
content fields exist only on the schemas of routes that may return content.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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


class RoutePublic(BaseModel):
    state: str
    incident_type: str
    level: str
    contacts: list[ContactPublic]
    fell_back_to_coordination_contact: bool


class RegisterCreate(Strict):
    effective_on: date | None = None


class EffectiveOn(Strict):
    """When the change occurred (R5: reported within 30 days); defaults to today."""

    effective_on: date | None = None


class ContactChange(EffectiveOn):
    contact: ContactCreate


class ContactRef(EffectiveOn):
    contact_id: str = Field(max_length=63)


class PreferredChannelCreate(EffectiveOn):
    contact_id: str = Field(max_length=63)
    channel: Literal["email", "phone", "secure"]


class IndicatorIn(Strict):
    """One indicator of compromise (R7); the kinds are listed in docs/taxonomy.md."""

    kind: str = Field(max_length=40, examples=["ipv4"])
    value: str = Field(max_length=4096, examples=["203.0.113.7"])


class NotificationCreate(Strict):
    recipient: str = Field(max_length=3, examples=["DEU"])
    incident_type: str = Field(max_length=40, examples=["malware"])
    description: TextIn | str
    indicators: list[IndicatorIn] = Field(default_factory=list, max_length=500)
    supporting_text: TextIn | str | None = None
    good_faith_attested: bool = Field(
        description="R7: the sender attests the notification is made in good faith"
    )


class ResponseCreate(Strict):
    response: TextIn | str
    assistance_requested: bool = False


class NotificationMetaPublic(BaseModel):
    """Who, when, status: what the Secretariat and inbox listings see, never content."""

    id: str
    sender: str
    recipient: str
    incident_type: str
    status: str
    sent_at: datetime
    acknowledged_at: datetime | None = None
    first_response_at: datetime | None = None


class ResponsePublic(BaseModel):
    at: datetime
    response: TextPublic
    assistance_requested: bool


class NotificationPublic(NotificationMetaPublic):
    """The exchange with its content, for its parties and consented third States."""

    description: TextPublic
    indicators: list[dict[str, Any]]
    supporting_text: TextPublic | None
    good_faith_attested: bool
    statement: str
    responses: list[ResponsePublic]
    version: int


class ConsentCreate(Strict):
    notification_id: str = Field(max_length=64)
    third_state: str = Field(max_length=3, examples=["FRA"])


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
