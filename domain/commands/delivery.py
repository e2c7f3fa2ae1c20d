"""The delivery area (issue 17): enabling delivery for the record, and recording each alert's
outcomes. The delivery worker (``infra.delivery``) decides when to send and over which
channel; what is recorded, and that an alert's outcomes follow its lifecycle, is here."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from domain.base import PocdirAggregate
from domain.commands.base import RecordService
from domain.delivery import (
    DELIVERY_SWITCH_ID,
    Alert,
    AlertOutcome,
    Cause,
    DeliverySwitch,
    alert_id,
)
from domain.errors import AlreadyExists


class DeliveryCommands(RecordService):
    """Commands and reads on ``DeliverySwitch`` and ``Alert``."""

    def delivery_switch(self) -> DeliverySwitch | None:
        try:
            switch: object = self.repository.get(DELIVERY_SWITCH_ID)
        except AggregateNotFoundError:
            return None
        return switch if isinstance(switch, DeliverySwitch) else None

    def enable_delivery(self, delivery_key: bytes, key_id: str) -> DeliverySwitch:
        """From now on, the events of the record call for alerts; ``delivery_key`` (raw
        Ed25519 public key) is published as the one that signs webhook requests."""
        if self.delivery_switch() is not None:
            raise AlreadyExists("delivery is already enabled for this record")
        switch = DeliverySwitch.enable(self.clock.now(), delivery_key, key_id)
        self._save(switch)
        return switch

    def find_alert(self, message_id: str) -> Alert | None:
        try:
            alert: object = self.repository.get(alert_id(message_id))
        except AggregateNotFoundError:
            return None
        return alert if isinstance(alert, Alert) else None

    def record_alert_outcome(  # noqa: PLR0913
        self,
        *,
        message_id: str,
        cause: Cause,
        subject: UUID,
        state: str,
        contact_id: str | None,
        channel: str,
        outcome: AlertOutcome,
        detail: str,
        also: Sequence[PocdirAggregate] = (),
    ) -> Alert:
        """One attempt's outcome: the alert is raised with its first one. ``also``: other
        aggregates the outcome changed (a check's challenge sent), saved in the same
        transaction, so the record never holds one without the other."""
        at = self.clock.now()
        alert = self.find_alert(message_id) or Alert.raise_alert(
            at, message_id, cause, subject, state, contact_id, channel
        )
        alert.record(at, outcome, detail)
        self._save(alert, *also)
        return alert
