"""Which events call for an alert, to whom, and what the alert says (issue 17).

Decided here only; the delivery worker (``infra.delivery``) follows the record and asks
``plans_for`` of every event after the point where delivery was enabled, then ``render`` when
it sends. Events reach it decoded with every exchange's content withheld (the views'
decoder), so no alert *can* carry an exchange's text, an indicator or a response: an alert
says that there is something to do, where (a reference), and by when, in the contact's
languages (R6) and time zone. It names no sender, no incident type and no other contact.

Whom each cause reaches:

==========================  ===============================================================
notification received        the first contact of the recipient's escalation route (R4)
response received            the sender's coordination contact (else its first technical one)
consent requested            the other party's coordination contact (it must decide, R11)
communication check          every contact the check challenges, each with its own code
escalation                   the contact the escalation names
contact unverified           the State's coordination contact
==========================  ===============================================================

Every alert to a contact goes also, as a separate message, to the webhook its State
registered, if any, except a check's challenge: that tests the contact's own channel.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID
from zoneinfo import ZoneInfo

from domain.check import CommunicationCheck
from domain.consent import SharingConsent
from domain.delivery import Cause
from domain.errors import NotFound
from domain.escalation import escalation_route, first_step
from domain.notification import Notification, Urgency
from domain.taxonomy import UN_LANGUAGES, Level
from domain.values import ChannelKind, Contact

#: The prefix of a webhook's recipient in a plan (``contact_id`` None).
WEBHOOK = "webhook"


class Entries(Protocol):
    """The current entry of a State, as the planner needs it (``domain.state_entry``)."""

    def __call__(self, code: str) -> Any | None: ...


@dataclass(frozen=True)
class AlertPlan:
    """One alert the record calls for: to whom, why, from when on, and what it names.

    ``not_before`` is when it may first be sent (a check's challenge waits for the contact's
    hours); ``event_at`` when its cause was recorded. ``reference`` and ``by_when`` are what
    the message shows; ``extra`` holds what ``render`` needs beyond them (a check's id)."""

    message_id: str
    cause: Cause
    subject: UUID
    state: str
    contact_id: str | None
    event_at: datetime
    not_before: datetime
    reference: str
    by_when: datetime | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        data = asdict(self)
        data.update(
            cause=str(self.cause),
            subject=str(self.subject),
            event_at=self.event_at.isoformat(),
            not_before=self.not_before.isoformat(),
            by_when=self.by_when.isoformat() if self.by_when else None,
            extra=dict(self.extra),
        )
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> AlertPlan:
        data = json.loads(text)
        return cls(
            message_id=data["message_id"],
            cause=Cause(data["cause"]),
            subject=UUID(data["subject"]),
            state=data["state"],
            contact_id=data["contact_id"],
            event_at=datetime.fromisoformat(data["event_at"]),
            not_before=datetime.fromisoformat(data["not_before"]),
            reference=data["reference"],
            by_when=datetime.fromisoformat(data["by_when"]) if data["by_when"] else None,
            extra=data["extra"],
        )


@dataclass(frozen=True)
class Timer:
    """A notification's acknowledgement deadline: when it passes, the worker asks the
    application to escalate (``escalate_notification``), which decides and records."""

    key: str
    notification_id: UUID
    due_at: datetime


def message_id(cause: Cause, subject: UUID, version: int, recipient: str, domain: str) -> str:
    """The Message-ID of the alert to ``recipient`` (``FRA/contact-id`` or ``FRA/webhook``)
    for the cause recorded as ``subject``'s event ``version``: the same on every retry and
    every replay, and different for every recipient and cause."""
    digest = hashlib.sha256(f"{cause}|{subject}|{version}|{recipient}".encode()).hexdigest()
    return f"<{digest[:40]}@{domain}>"


def contact_dicts(entry: Any) -> dict[str, dict[str, Any]]:
    return {cid: c.to_dict() for cid, c in entry.contacts.items()}


def first_route_contact(entry: Any, event: Any) -> str | None:
    """The contact a notification's first alert goes to: the first of the recipient's
    escalation route (``domain.escalation``; for an urgent one, the first whose hours cover
    the sending time), or None if the entry lists nobody to alert."""
    preferred = (
        {"contact_id": entry.preferred[0], "channel": str(entry.preferred[1])}
        if entry.preferred
        else None
    )
    route = escalation_route(
        contact_dicts(entry), event.incident_type, entry.coordination_contact_id, preferred
    )
    urgent = getattr(event, "urgency", None) == Urgency.URGENT
    try:
        _, contact = first_step(route, urgent, event.timestamp)
    except NotFound:
        return None
    return str(contact["contact_id"])


def coordination_contact(entry: Any) -> str | None:
    """The contact a State is told things through: its coordination contact, else its
    first technical contact, else its first contact (by id)."""
    if entry.coordination_contact_id in entry.contacts:
        return str(entry.coordination_contact_id)
    technical = sorted(c for c, v in entry.contacts.items() if v.level == Level.TECHNICAL)
    return technical[0] if technical else next(iter(sorted(entry.contacts)), None)


class Parties(Protocol):
    """A notification's (sender, recipient), or None if there is no such notification."""

    def __call__(self, notification_id: UUID) -> tuple[str, str] | None: ...


ChallengeTimes = Callable[[Any, Mapping[str, Any]], Mapping[str, datetime]]


@dataclass
class Planner:
    """``plans_for`` with what it needs: the current entries, a notification's parties, the
    mail domain of Message-IDs, and a check's challenge times (``challenge_times``: the check's
    ``Launched`` event and its challenged contacts by ``FRA/contact-id`` -> when each may be
    sent)."""

    entries: Entries
    parties: Parties
    domain: str
    challenge_times: ChallengeTimes

    def plans_for(self, event: Any) -> tuple[list[AlertPlan], list[Timer]]:
        """The alerts ``event`` calls for, and the acknowledgement deadline it starts."""
        plans: list[AlertPlan] = []
        timers: list[Timer] = []
        if isinstance(event, Notification.Sent):
            entry = self.entries(event.recipient)
            by = getattr(event, "acknowledge_by", None)
            if entry is not None:
                contact = first_route_contact(entry, event)
                plans += self._to(Cause.NOTIFICATION_RECEIVED, event, entry, contact, by)
            if by is not None:
                timers.append(_timer(event, by))
        elif isinstance(event, Notification.Responded):
            parties = self.parties(event.originator_id)
            entry = self.entries(parties[0]) if parties else None
            if entry is not None:
                contact = coordination_contact(entry)
                plans += self._to(Cause.RESPONSE_RECEIVED, event, entry, contact, None)
        elif isinstance(event, Notification.Escalated):
            parties = self.parties(event.originator_id)
            entry = self.entries(parties[1]) if parties else None
            by = event.acknowledge_by
            if entry is not None:
                plans += self._to(Cause.ESCALATION, event, entry, event.contact_id, by)
            timers.append(_timer(event, by))
        elif isinstance(event, SharingConsent.Requested):
            other = next((p for p in event.parties if p != event.requested_by), None)
            entry = self.entries(other) if other else None
            if entry is not None:
                contact = coordination_contact(entry)
                plans += self._to(Cause.CONSENT_REQUESTED, event, entry, contact, None)
        elif isinstance(event, CommunicationCheck.Launched):
            plans += self._challenges(event)
        elif type(event).__name__ == "MarkedUnverified":
            entry = self.entries(event.state)
            if entry is not None:
                contact = coordination_contact(entry)
                plans += self._to(
                    Cause.CONTACT_UNVERIFIED,
                    event,
                    entry,
                    contact,
                    None,
                    reference=f"contact {event.contact_id}",
                )
        return plans, timers

    def _to(  # noqa: PLR0913
        self,
        cause: Cause,
        event: Any,
        entry: Any,
        contact_id: str | None,
        by_when: datetime | None,
        *,
        reference: str | None = None,
        not_before: datetime | None = None,
        extra: Mapping[str, str] | None = None,
        webhook: bool = True,
    ) -> list[AlertPlan]:
        """The alert to ``contact_id`` of ``entry`` (none if it has none), and its copy to
        the entry's webhook (``webhook``) if the State registered one."""
        at: datetime = event.timestamp
        recipients: list[str | None] = [contact_id] if contact_id else []
        if webhook and getattr(entry, "webhook", None):
            recipients.append(None)
        kind = str(cause).split()[0]
        return [
            AlertPlan(
                message_id=message_id(
                    cause,
                    event.originator_id,
                    event.originator_version,
                    f"{entry.code}/{contact or WEBHOOK}",
                    self.domain,
                ),
                cause=cause,
                subject=event.originator_id,
                state=entry.code,
                contact_id=contact,
                event_at=at,
                not_before=not_before or at,
                reference=reference or f"{_SUBJECT_KIND.get(kind, kind)} {event.originator_id}",
                by_when=by_when,
                extra=dict(extra or {}),
            )
            for contact in recipients
        ]

    def _challenges(self, event: Any) -> list[AlertPlan]:
        """A check's challenges: one per contact it names, each from its own time on."""
        contacts: dict[str, Any] = {}
        entries: dict[str, Any] = {}
        for key in getattr(event, "contacts", ()):  # none before challenges existed
            code, _, contact_id = key.partition("/")
            entry = self.entries(code)
            if entry is not None and contact_id in entry.contacts:
                contacts[key], entries[key] = entry.contacts[contact_id], entry
        times = self.challenge_times(event, contacts)
        duration: timedelta = event.deadline - event.timestamp
        plans: list[AlertPlan] = []
        for key, contact in contacts.items():
            send_at = times.get(key, event.timestamp)
            plans += self._to(
                Cause.CHECK_CHALLENGE,
                event,
                entries[key],
                contact.contact_id,
                send_at + duration,
                reference=f"check {event.originator_id}",
                not_before=send_at,
                extra={"check_id": str(event.originator_id)},
                webhook=False,
            )
        return plans


#: The kind of aggregate each cause's reference names (by the cause's first word).
_SUBJECT_KIND = {"response": "notification", "escalation": "notification", "consent": "consent"}


def _timer(event: Any, due_at: datetime) -> Timer:
    return Timer(
        f"escalate:{event.originator_id}:{event.originator_version}", event.originator_id, due_at
    )


# -- what an alert says ---------------------------------------------------------------------

#: Per language: each cause's subject and what to do, and the labels around them.
_PHRASES: dict[str, dict[str, str]] = {
    "en": {
        "notification received": "A notification awaits your acknowledgement",
        "notification received.do": "Read and acknowledge it in the State client.",
        "response received": "A response to your notification has arrived",
        "response received.do": "Read it in the State client.",
        "consent requested": "Your consent to share an exchange is asked",
        "consent requested.do": "Grant or deny it in the State client.",
        "communication check": "Communication check: please confirm receipt",
        "communication check.do": "Confirm with this code in the State client:",
        "escalation": "Escalated: a notification is not yet acknowledged",
        "escalation.do": "Read and acknowledge it in the State client, or reach the contact "
        "it was sent to.",
        "contact unverified": "One of your contacts did not pass two communication checks",
        "contact unverified.do": "Check its channels and update your entry in the State client.",
        "reference": "Reference",
        "by": "By",
        "note": "This message carries no content of any exchange. Do not reply to it.",
    },
    "fr": {
        "notification received": "Une notification attend votre accusé de réception",
        "notification received.do": "Lisez-la et accusez-en réception dans le client de l'État.",
        "response received": "Une réponse à votre notification est arrivée",
        "response received.do": "Lisez-la dans le client de l'État.",
        "consent requested": "Votre consentement au partage d'un échange est demandé",
        "consent requested.do": "Accordez-le ou refusez-le dans le client de l'État.",
        "communication check": "Test de communication : veuillez confirmer la réception",
        "communication check.do": "Confirmez avec ce code dans le client de l'État :",
        "escalation": "Escalade : une notification n'a pas encore reçu d'accusé de réception",
        "escalation.do": "Lisez-la et accusez-en réception dans le client de l'État.",
        "contact unverified": "Un de vos contacts a échoué à deux tests de communication",
        "contact unverified.do": "Vérifiez ses canaux et mettez à jour votre fiche.",
        "reference": "Référence",
        "by": "Avant le",
        "note": "Ce message ne contient aucun contenu d'échange. N'y répondez pas.",
    },
    "es": {
        "notification received": "Una notificación espera su acuse de recibo",
        "notification received.do": "Léala y acuse recibo en el cliente del Estado.",
        "response received": "Ha llegado una respuesta a su notificación",
        "response received.do": "Léala en el cliente del Estado.",
        "consent requested": "Se solicita su consentimiento para compartir un intercambio",
        "consent requested.do": "Concédalo o deniéguelo en el cliente del Estado.",
        "communication check": "Prueba de comunicación: confirme la recepción",
        "communication check.do": "Confirme con este código en el cliente del Estado:",
        "escalation": "Escalada: una notificación aún no tiene acuse de recibo",
        "escalation.do": "Léala y acuse recibo en el cliente del Estado.",
        "contact unverified": "Uno de sus contactos no superó dos pruebas de comunicación",
        "contact unverified.do": "Compruebe sus canales y actualice su entrada.",
        "reference": "Referencia",
        "by": "Antes de",
        "note": "Este mensaje no contiene nada de ningún intercambio. No lo responda.",
    },
    "ru": {
        "notification received": "Уведомление ожидает подтверждения получения",
        "notification received.do": "Прочитайте его и подтвердите получение в клиенте государства.",
        "response received": "Получен ответ на ваше уведомление",
        "response received.do": "Прочитайте его в клиенте государства.",
        "consent requested": "Запрашивается ваше согласие на передачу обмена",
        "consent requested.do": "Дайте или отклоните согласие в клиенте государства.",
        "communication check": "Проверка связи: подтвердите получение",
        "communication check.do": "Подтвердите этим кодом в клиенте государства:",
        "escalation": "Эскалация: получение уведомления ещё не подтверждено",
        "escalation.do": "Прочитайте его и подтвердите получение в клиенте государства.",
        "contact unverified": "Один из ваших контактов не прошёл две проверки связи",
        "contact unverified.do": "Проверьте его каналы и обновите запись.",
        "reference": "Ссылка",
        "by": "Срок",
        "note": "Это сообщение не содержит содержания обменов. Не отвечайте на него.",
    },
    "ar": {
        "notification received": "إخطار بانتظار إقراركم بالاستلام",
        "notification received.do": "اقرأوه وأقروا باستلامه في تطبيق الدولة.",
        "response received": "وصل رد على إخطاركم",
        "response received.do": "اقرأوه في تطبيق الدولة.",
        "consent requested": "مطلوب موافقتكم على مشاركة تبادل",
        "consent requested.do": "امنحوا الموافقة أو ارفضوها في تطبيق الدولة.",
        "communication check": "اختبار الاتصال: يرجى تأكيد الاستلام",
        "communication check.do": "أكدوا بهذا الرمز في تطبيق الدولة:",
        "escalation": "تصعيد: لم يتم الإقرار باستلام إخطار بعد",
        "escalation.do": "اقرأوه وأقروا باستلامه في تطبيق الدولة.",
        "contact unverified": "إحدى جهات الاتصال لديكم لم تجتز اختباري اتصال",
        "contact unverified.do": "تحققوا من قنواتها وحدّثوا بيانات دولتكم.",
        "reference": "المرجع",
        "by": "الموعد",
        "note": "لا تحتوي هذه الرسالة على أي محتوى من التبادلات. لا تردوا عليها.",
    },
    "zh": {
        "notification received": "有一份通知等待您确认收到",
        "notification received.do": "请在国家客户端中阅读并确认收到。",
        "response received": "您的通知已收到答复",
        "response received.do": "请在国家客户端中阅读。",
        "consent requested": "请求您同意共享一项交流",
        "consent requested.do": "请在国家客户端中同意或拒绝。",
        "communication check": "通信检查：请确认收到",
        "communication check.do": "请在国家客户端中用此代码确认：",
        "escalation": "升级：一份通知尚未被确认收到",
        "escalation.do": "请在国家客户端中阅读并确认收到。",
        "contact unverified": "您的一个联系人未通过两次通信检查",
        "contact unverified.do": "请检查其渠道并更新您的条目。",
        "reference": "编号",
        "by": "期限",
        "note": "本邮件不含任何交流内容。请勿回复。",
    },
}


def alert_languages(languages: Sequence[str]) -> list[str]:
    """R6: the contact's UN languages in its order, and English in any case (the record's
    translation language), each once."""
    chosen = [lang for lang in languages if lang in UN_LANGUAGES]
    if "en" not in chosen:
        chosen.append("en")
    return list(dict.fromkeys(chosen))


def local_time(at: datetime, time_zone: str) -> str:
    """``at`` as the contact reads it, with UTC beside it: ``2026-03-02 14:00 Europe/Paris
    (13:00 UTC)``."""
    local = at.astimezone(ZoneInfo(time_zone))
    return f"{local:%Y-%m-%d %H:%M} {time_zone} ({at.astimezone(ZoneInfo('UTC')):%H:%M} UTC)"


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str
    language: str


def render(
    plan: AlertPlan, contact: Contact | None, code: str | None = None, *, answer_hint: str = ""
) -> Rendered:
    """The alert's subject and text: in the contact's languages (English for a webhook) and
    its time zone (UTC for a webhook). ``code`` is a check's challenge code; ``answer_hint``
    the command that answers with it."""
    languages = alert_languages(contact.languages) if contact else ["en"]
    zone = contact.time_zone if contact else "UTC"
    cause = str(plan.cause)
    blocks = []
    for lang in languages:
        p = _PHRASES[lang]
        lines = [p[cause], "", p[f"{cause}.do"]]
        if code is not None:
            lines += ["", f"    {code}"]
            if answer_hint:
                lines.append(f"    {answer_hint}")
        lines += ["", f"{p['reference']}: {plan.reference}"]
        if plan.by_when is not None:
            lines.append(f"{p['by']}: {local_time(plan.by_when, zone)}")
        lines += ["", p["note"]]
        blocks.append("\n".join(lines))
    subject = " / ".join(dict.fromkeys(_PHRASES[lang][cause] for lang in languages))
    return Rendered(f"[pocdir] {subject}", "\n\n----\n\n".join(blocks) + "\n", languages[0])


def email_address(contact: Contact) -> str | None:
    """The contact's e-mail channel (its first), or None: phone and secure channels are for
    people to use, not for automatic delivery."""
    return next((c.address for c in contact.channels if c.kind is ChannelKind.EMAIL), None)
