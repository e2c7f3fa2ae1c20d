"""What every delivery channel shares (issue 17): the message the delivery worker hands over,
and what the channel says back.

A channel (``infra.mail.SmtpChannel``, ``infra.mail.FileOutbox``, ``infra.webhook``) takes an
``OutgoingMessage`` and answers with a ``DeliveryResult``: sent (the receiving server took
it), deferred (try again later: a 4xx reply, a timeout, a refused connection) or refused (a
permanent 5xx reply for this recipient). A result's ``detail`` is the reply's code and short
reason, never an address or the message's text: it is recorded in the record's outcome
events and logged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class Outcome(StrEnum):
    SENT = "sent"
    DEFERRED = "deferred"
    REFUSED = "refused"


@dataclass(frozen=True)
class OutgoingMessage:
    """One alert to one recipient over one channel.

    ``message_id`` is the RFC 5322 Message-ID with its angle brackets (``<...@host>``): one per
    recipient and cause, the same on every retry. ``to`` is the channel address (an e-mail
    address, or a webhook's URL); ``language`` the BCP 47 tag of the body's first language.
    ``payload`` is the JSON a webhook posts (None for mail)."""

    message_id: str
    to: str
    subject: str
    body: str
    language: str = "en"
    headers: Mapping[str, str] = field(default_factory=dict)
    payload: Mapping[str, object] | None = None


@dataclass(frozen=True)
class DeliveryResult:
    outcome: Outcome
    #: The SMTP reply code (or HTTP status) that decided it, if any.
    code: int | None = None
    #: A short reason for logs and the record, without addresses or content (``"451 4.3.0"``,
    #: ``"connection refused"``).
    detail: str = ""


class Channel(Protocol):
    """Hands messages over; one connection may carry several (``deliver_many``)."""

    def deliver_many(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        """One result per message, in order. Never raises for a failure of delivery: a
        connection that fails is a ``DEFERRED`` result for every message it did not carry."""
        ...
