"""What every pocdir aggregate shares: events that carry the acting principal."""

from __future__ import annotations

from datetime import date, datetime

from eventsourcing.domain import Aggregate

from domain.errors import ValidationError


class PocdirAggregate(Aggregate):
    """Base aggregate. Commands pass ``actor`` (a ``Principal.ref``) and ``timestamp`` from the
    application's clock to every event, so the record says who did what, and when."""

    class Event(Aggregate.Event):
        actor: str

    class Created(Event, Aggregate.Created):
        pass


def check_effective_on(effective_on: date, at: datetime) -> None:
    """A change cannot have occurred after it is reported (R5 is judged on this date)."""
    if effective_on > at.date():
        raise ValidationError(
            f"effective_on {effective_on.isoformat()} is after today ({at.date().isoformat()}); "
            "give the date the change occurred"
        )
