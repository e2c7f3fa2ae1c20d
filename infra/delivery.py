"""The delivery worker (issue 17): follows the record, and alerts the people it lists.

One step (``DeliveryWorker.step``) does three things, each safe to interrupt at any point:

1. **Plan.** The events after the worker's tracked position (at first, after the record's
   ``DeliverySwitch.Enabled``: never from the beginning) are read with every exchange's
   content withheld, and ``domain.alerts.Planner`` says which alerts and acknowledgement
   deadlines each calls for. They are written to the queue with the position, in one
   transaction (``infra.delivery_store``).
2. **Deadlines.** For each acknowledgement deadline that has passed, the application is asked
   to escalate (``escalate_notification``); it records an escalation only if the notification
   is still unacknowledged, and the escalation's own alert and deadline are then planned from
   the record like any other event.
3. **Send.** Each alert that is due is rendered (``domain.alerts.render``), handed to its
   channel (mail for a contact, the State's webhook otherwise), and its outcome recorded as
   an event: sent, deferred (retried with back-off), refused, given up after
   ``max_attempts``, or not deliverable automatically (no e-mail channel).

Why nothing is lost and nothing is sent under two Message-IDs: a message's Message-ID derives
from its cause and recipient; its outcome is recorded before its queue row is settled; and
an alert whose outcome is final is never sent again. A worker killed after the mail server
accepted a message and before its outcome was recorded sends it again when restarted, with
the same Message-ID (a receiving system deduplicates on it); one killed after recording
settles the row without sending. The named points (``FAULT_POINTS``) let the tests kill it
exactly there.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eventsourcing.persistence import OperationalError, PersistenceError, Tracking

from domain.alerts import AlertPlan, Planner, email_address, render
from domain.application import PocDirectory
from domain.base import PocdirAggregate
from domain.check import challenge_code, challenge_times, code_digest
from domain.delivery import AlertOutcome, Cause, DeliverySwitch
from domain.errors import ConcurrentChange, NotFound, PocdirError
from infra.channels import Channel, DeliveryResult, Outcome, OutgoingMessage
from infra.delivery_store import ALERT, DELIVERY_NAME, TIMER, DeliveryStore, QueueRow
from infra.lease import Lease

log = logging.getLogger("pocdir.delivery")

#: Where a test may have the worker die (``POCDIR_DELIVERY_FAULT``): after the channel took a
#: message and before its outcome is recorded; after recording and before the queue row is
#: settled; after an escalation is recorded and before its deadline row is settled.
FAULT_POINTS = ("sent", "recorded", "escalated")
#: The exit status of a worker that died at a fault point.
FAULT_EXIT = 70
PLAN_BATCH = 500
SEND_BATCH = 100


@dataclass(frozen=True)
class DeliveryConfig:
    #: The host part of every Message-ID (the sender address's domain).
    domain: str
    #: The first retry's delay; each later one doubles it, up to ``max_retry_seconds``.
    retry_seconds: float = 60.0
    max_retry_seconds: float = 3600.0
    max_attempts: int = 8
    fault: str | None = None


@dataclass
class Channels:
    """The channel of each kind of recipient: mail for a contact, the webhook of its State."""

    mail: Channel
    webhook: Channel | None = None


@dataclass
class StepReport:
    planned: int = 0
    escalated: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    #: Seconds from each sent alert's cause being recorded to its leaving (clock time).
    delays: list[float] = field(default_factory=list)

    @property
    def busy(self) -> bool:
        return bool(self.planned or self.escalated or self.outcomes)


def challenge_secret(delivery_key_raw: bytes) -> bytes:
    """The secret that a check's challenge codes derive from: HKDF of the delivery key's
    private bytes, so that the codes need no storage and a resend carries the same code,
    and that nothing signed with the key reveals them."""
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"pocdir challenge codes"
    ).derive(delivery_key_raw)


class DeliveryWorker:
    """Plans, escalates and sends for the record ``app`` serves (module docstring)."""

    def __init__(
        self,
        app: PocDirectory,
        store: DeliveryStore,
        channels: Channels,
        config: DeliveryConfig,
        secret: bytes,
    ) -> None:
        self.app, self.store, self.channels, self.config = app, store, channels, config
        self.secret = secret
        self.planner = Planner(
            entries=self._entry,
            parties=self._parties,
            domain=config.domain,
            challenge_times=self._challenge_times,
        )
        self._enabled_at: int | None = None

    # -- where the worker starts ---------------------------------------------------------------

    def enabled_position(self) -> int | None:
        """The record position of ``DeliverySwitch.Enabled``, or None if delivery is not
        enabled for this record."""
        if self._enabled_at is None and self.app.delivery_switch() is not None:
            # One read of one aggregate while not enabled; the scan for its position, once.
            topic = f"{DeliverySwitch.Enabled.__module__}:{DeliverySwitch.Enabled.__qualname__}"
            found = self.app.recorder.select_notifications(None, 1, topics=[topic])
            self._enabled_at = found[0].id if found else None
        return self._enabled_at

    def position(self) -> int | None:
        """The position planned up to: the tracked one, else where delivery was enabled."""
        tracked = self.store.max_tracking_id(DELIVERY_NAME)
        return tracked if tracked is not None else self.enabled_position()

    # -- one step ------------------------------------------------------------------------------

    def step(self) -> StepReport:
        report = StepReport()
        if self.position() is None:
            return report
        report.planned = self.plan()
        report.escalated = self.escalate_due()
        self.send_due(report)
        return report

    def run_until_idle(self, max_steps: int = 10_000) -> StepReport:
        """Steps until one finds nothing to do at the clock's present time (the CLI, the
        simulator): everything due now has an outcome, everything later waits."""
        total = StepReport()
        for _ in range(max_steps):
            report = self.step()
            total.planned += report.planned
            total.escalated += report.escalated
            for k, v in report.outcomes.items():
                total.outcomes[k] = total.outcomes.get(k, 0) + v
            total.delays += report.delays
            if not report.busy:
                break
        return total

    def plan(self) -> int:
        """Plan the events after the position; return how many alerts were planned."""
        start = self.position()
        if start is None:
            return 0
        planned = 0
        decode = self.app.facts_mapper.to_domain_event  # content withheld
        while True:
            records = self.app.recorder.select_notifications(
                start, PLAN_BATCH, inclusive_of_start=False
            )
            if not records:
                return planned
            rows: list[QueueRow] = []
            for record in records:
                plans, timers = self.planner.plans_for(decode(record))
                rows += [
                    QueueRow(p.message_id, ALERT, p.not_before.timestamp(), p.to_json())
                    for p in plans
                ]
                rows += [
                    QueueRow(t.key, TIMER, t.due_at.timestamp(), str(t.notification_id))
                    for t in timers
                ]
                planned += len(plans)
            start = records[-1].id
            self.store.plan(rows, Tracking(DELIVERY_NAME, start))

    def escalate_due(self) -> int:
        """Ask the application to escalate each notification whose deadline has passed."""
        now = self.app.clock.now().timestamp()
        escalated = 0
        for row in self.store.due(now, SEND_BATCH, TIMER):
            try:
                done = self.app.escalate_notification(UUID(row.body))
            except ConcurrentChange:
                continue  # acknowledged at this very moment: asked again at the next step
            except NotFound:
                done = None
            if done is not None:
                escalated += 1
                self._fault("escalated")
            self.store.settle(row.key)
        return escalated

    def send_due(self, report: StepReport) -> None:
        """Send every alert that is due, channel by channel, and record each outcome."""
        now = self.app.clock.now()
        mail: list[tuple[QueueRow, AlertPlan, OutgoingMessage]] = []
        hooks: list[tuple[QueueRow, AlertPlan, OutgoingMessage]] = []
        for row in self.store.due(now.timestamp(), SEND_BATCH, ALERT):
            plan = AlertPlan.from_json(row.body)
            alert = self.app.find_alert(plan.message_id)
            if alert is not None and alert.final:
                self.store.settle(row.key)  # recorded before a crash: not sent again
                continue
            prepared = self._prepare(row, plan)
            if isinstance(prepared, OutgoingMessage):
                (mail if plan.contact_id else hooks).append((row, plan, prepared))
            else:
                outcome, detail = prepared
                self._record(row, plan, outcome, detail, report)
        for batch, channel in ((mail, self.channels.mail), (hooks, self.channels.webhook)):
            if not batch:
                continue
            if channel is None:
                for row, plan, _ in batch:
                    self._record(row, plan, AlertOutcome.GAVE_UP, "no webhook channel", report)
                continue
            results = channel.deliver_many([m for _, _, m in batch])
            self._fault("sent")
            for (row, plan, _), result in zip(batch, results, strict=True):
                self._record(row, plan, self._outcome(row, result), result.detail, report)

    # -- one alert -----------------------------------------------------------------------------

    def _prepare(
        self, row: QueueRow, plan: AlertPlan
    ) -> OutgoingMessage | tuple[AlertOutcome, str]:
        """The message for ``plan``, addressed as the entry says now; or the outcome when
        there is nowhere to send it."""
        entry = self._entry(plan.state)
        if entry is None:
            return AlertOutcome.GAVE_UP, "no entry"
        code = None
        hint = ""
        if plan.cause is Cause.CHECK_CHALLENGE:
            check_id = UUID(plan.extra["check_id"])
            code = challenge_code(self.secret, check_id, plan.state, plan.contact_id or "")
            hint = f"pocdir-state check answer {check_id} {code}"
        if plan.contact_id is None:
            url = getattr(entry, "webhook", None)
            if not url:
                return AlertOutcome.GAVE_UP, "webhook removed"
            text = render(plan, None)
            return OutgoingMessage(
                plan.message_id,
                url,
                text.subject,
                text.body,
                payload=_webhook_payload(plan),
            )
        contact = entry.contacts.get(plan.contact_id)
        if contact is None:
            return AlertOutcome.GAVE_UP, "contact removed"
        address = email_address(contact)
        if address is None:
            return AlertOutcome.NOT_DELIVERABLE, "no e-mail channel"
        text = render(plan, contact, code, answer_hint=hint)
        return OutgoingMessage(
            plan.message_id,
            address,
            text.subject,
            text.body,
            language=text.language,
            headers={"X-Pocdir-Reference": plan.reference},
        )

    def _outcome(self, row: QueueRow, result: DeliveryResult) -> AlertOutcome:
        if result.outcome is Outcome.SENT:
            return AlertOutcome.SENT
        if result.outcome is Outcome.REFUSED:
            return AlertOutcome.REFUSED
        if row.attempts + 1 >= self.config.max_attempts:
            return AlertOutcome.GAVE_UP
        return AlertOutcome.DEFERRED

    def _record(
        self,
        row: QueueRow,
        plan: AlertPlan,
        outcome: AlertOutcome,
        detail: str,
        report: StepReport,
    ) -> None:
        """Record the outcome (with a challenge's outcome on its check, in the same save),
        then settle or reschedule the row."""
        also: list[PocdirAggregate] = []
        if plan.cause is Cause.CHECK_CHALLENGE and outcome is not AlertOutcome.DEFERRED:
            also += self._challenge_outcome(plan, outcome)
        try:
            self.app.record_alert_outcome(
                message_id=plan.message_id,
                cause=plan.cause,
                subject=plan.subject,
                state=plan.state,
                contact_id=plan.contact_id,
                channel="email" if plan.contact_id else "webhook",
                outcome=outcome,
                detail=detail,
                also=also,
            )
        except PocdirError as e:  # e.g. recorded meanwhile by another worker: settled there
            log.warning("alert %s not recorded: %s", plan.message_id, type(e).__name__)
            self.store.settle(row.key)
            return
        report.outcomes[str(outcome)] = report.outcomes.get(str(outcome), 0) + 1
        if outcome is AlertOutcome.SENT:
            report.delays.append((self.app.clock.now() - plan.event_at).total_seconds())
        self._fault("recorded")
        if outcome is AlertOutcome.DEFERRED:
            delay = min(self.config.retry_seconds * 2**row.attempts, self.config.max_retry_seconds)
            due = self.app.clock.now() + timedelta(seconds=delay)
            self.store.retry(row.key, due.timestamp(), row.attempts + 1)
        else:
            self.store.settle(row.key)

    def _challenge_outcome(
        self, plan: AlertPlan, outcome: AlertOutcome
    ) -> Sequence[PocdirAggregate]:
        """The challenge's outcome on its check (loaded once), unsaved: saved with the
        alert's own outcome, in one transaction."""
        check_id = UUID(plan.extra["check_id"])
        contact_id = plan.contact_id or ""
        check = self.app.get_check(check_id)
        if check.has_outcome(plan.state, contact_id):
            return ()
        at = self.app.clock.now()
        if outcome is AlertOutcome.SENT:
            code = challenge_code(self.secret, check_id, plan.state, contact_id)
            check.challenge_sent(at, plan.state, contact_id, code_digest(check_id, code))
        else:
            check.challenge_undeliverable(at, plan.state, contact_id, str(outcome))
        return (check,)

    # -- what the planner reads ----------------------------------------------------------------

    def _entry(self, code: str) -> Any | None:
        try:
            return self.app.get_entry(code)
        except (NotFound, KeyError):
            return None

    def _parties(self, notification_id: UUID) -> tuple[str, str] | None:
        try:
            return self.app.get_notification(notification_id).parties
        except NotFound:
            return None

    def _challenge_times(self, event: Any, contacts: Mapping[str, Any]) -> Mapping[str, datetime]:
        return challenge_times(
            event.originator_id,
            event.timestamp,
            getattr(event, "window_hours", 0),
            {key: (c.hours, c.time_zone) for key, c in contacts.items()},
        )

    def _fault(self, point: str) -> None:
        """Die here if the tests asked for it (``POCDIR_DELIVERY_FAULT``)."""
        if self.config.fault == point:
            log.error("delivery worker stopping at fault point %r (POCDIR_DELIVERY_FAULT)", point)
            os._exit(FAULT_EXIT)


def _webhook_payload(plan: AlertPlan) -> dict[str, object]:
    """What a webhook receives: the alert's facts, as the mail says them, in JSON."""
    return {
        "message_id": plan.message_id,
        "cause": str(plan.cause),
        "state": plan.state,
        "reference": plan.reference,
        "by": plan.by_when.isoformat() if plan.by_when else None,
        "recorded_at": plan.event_at.isoformat(),
    }


#: What a step may fail with and the worker's thread outlives (logged, tried again at the
#: next poll): database outages, and a command the domain refused (logged by its type).
STEP_ERRORS: tuple[type[Exception], ...] = (OperationalError, PersistenceError, PocdirError)


class DeliveryThread:
    """Runs the worker in a server, while this process holds the delivery lease: one worker
    per record, whichever server it is; another takes over when it stops."""

    def __init__(
        self,
        worker: DeliveryWorker,
        lease: Lease,
        poll: float,
        step_errors: tuple[type[Exception], ...] = (),
    ) -> None:
        self.worker, self.lease, self.poll = worker, lease, poll
        self.step_errors = (*STEP_ERRORS, *step_errors)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_step: Callable[[StepReport], None] | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pocdir-delivery", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.lease.keep():
                    report = self.worker.step()
                    if self.on_step is not None:
                        self.on_step(report)
                    if report.busy:
                        continue
            except self.step_errors as e:
                log.warning("delivery step failed (%s); retrying", type(e).__name__)
            self._stop.wait(self.poll)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            self.lease.release()
        except self.step_errors as e:
            log.warning("delivery lease not released: %s", type(e).__name__)
