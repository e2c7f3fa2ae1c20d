"""A deterministic simulation of the directory in use, driven only through the application
service's real commands (never by writing to the database).

States register in an opening wave, keep their entries current (or let them lapse), notify
each other, acknowledge, respond and ask for assistance, and ask for, grant, deny and revoke
consent to share. The Secretariat runs monthly communication checks (some States answer late
or never), and States record capacity-building needs that others offer to meet (R16).
Each State's contacts look like its own (``state_locale``): phone numbers of its calling code,
time zones of its territory, texts in its official UN language or else English.
Behaviour is drawn from seeded ``random.Random`` generators (one for the directory's use, one
for the review activity, so adding the latter left the former's draws unchanged), time from a
``SimulatedClock`` and ids from a seeded factory, so a seed always writes the same record.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache, partial
from importlib import resources
from uuid import UUID

import phonenumbers
import phonenumbers.timezone
import pycountry
from babel.languages import get_official_languages, get_territory_language_info

from domain.application import PocDirectory
from domain.capacity import CAPACITY_CATEGORIES, NeedStatus
from domain.check import CommunicationCheck, split_key
from domain.clock import SimulatedClock
from domain.consent import ConsentStatus
from domain.idempotency import IdempotencyKey, request_digest
from domain.members import member_states
from domain.notification import NotificationStatus
from domain.taxonomy import INCIDENT_TYPES, UN_LANGUAGES, Level
from domain.values import Contact, Principal, Role, Text

DEFAULT_START = datetime(2025, 1, 6, tzinfo=UTC)

_HOURS = ("24/7", "Mon-Fri 08:00-18:00", "Mon-Fri 09:00-17:00", "Sun-Thu 08:00-16:00")
_MALWARE = ("Emotet", "TrickBot", "LockBit", "Conti", "Mirai", "PlugX", "QakBot", "NotPetya")
#: Each simulated text in the six UN languages (R6). A State writes in the language that
#: ``state_locale`` picks for it, with the English beside any other (R6 asks for it).
_PHRASES: dict[str, dict[str, str]] = {
    "technical agency": {
        "en": "National cybersecurity centre",
        "fr": "Centre national de cybersécurité",
        "es": "Centro nacional de ciberseguridad",
        "ru": "Национальный центр кибербезопасности",
        "ar": "المركز الوطني للأمن السيبراني",
        "zh": "国家网络安全中心",
    },
    "diplomatic agency": {
        "en": "Ministry of Foreign Affairs",
        "fr": "Ministère des Affaires étrangères",
        "es": "Ministerio de Relaciones Exteriores",
        "ru": "Министерство иностранных дел",
        "ar": "وزارة الخارجية",
        "zh": "外交部",
    },
    "technical function": {
        "en": "National CERT",
        "fr": "CERT national",
        "es": "CERT nacional",
        "ru": "Национальная группа CERT",
        "ar": "الفريق الوطني للاستجابة لطوارئ الحاسوب",
        "zh": "国家计算机应急响应组",
    },
    "diplomatic function": {
        "en": "Point of contact",
        "fr": "Point de contact",
        "es": "Punto de contacto",
        "ru": "Контактное лицо",
        "ar": "جهة الاتصال",
        "zh": "联络点",
    },
    "notification": {
        "en": "Report of malicious activity",
        "fr": "Signalement d'activité malveillante",
        "es": "Notificación de actividad maliciosa",
        "ru": "Уведомление о вредоносной активности",
        "ar": "إخطار بنشاط ضار",
        "zh": "恶意活动通报",
    },
    "response": {
        "en": "We are investigating and will share findings.",
        "fr": "Nous enquêtons et partagerons nos constatations.",
        "es": "Estamos investigando y compartiremos los resultados.",
        "ru": "Мы проводим расследование и поделимся результатами.",
        "ar": "نحن نحقق وسنشارك النتائج.",
        "zh": "我们正在调查，并将分享调查结果。",
    },
    "assistance": {
        "en": "We lack the capacity to respond in full and ask for technical assistance.",
        "fr": "Nous n'avons pas les moyens de répondre pleinement et demandons "
        "une assistance technique.",
        "es": "No tenemos la capacidad de responder plenamente y solicitamos asistencia técnica.",
        "ru": "У нас недостаточно возможностей для полного ответа, и мы просим "
        "о технической помощи.",
        "ar": "نفتقر إلى القدرة على الاستجابة الكاملة ونطلب المساعدة التقنية.",
        "zh": "我们缺乏全面应对的能力，请求技术援助。",
    },
    "need": {
        "en": "We need support to strengthen our capacity.",
        "fr": "Nous avons besoin d'un appui pour renforcer nos capacités.",
        "es": "Necesitamos apoyo para fortalecer nuestras capacidades.",
        "ru": "Нам нужна поддержка для укрепления нашего потенциала.",
        "ar": "نحتاج إلى دعم لتعزيز قدراتنا.",
        "zh": "我们需要支持以加强我们的能力。",
    },
    "offer": {
        "en": "We can offer experts, training and tools.",
        "fr": "Nous pouvons offrir des experts, des formations et des outils.",
        "es": "Podemos ofrecer expertos, formación y herramientas.",
        "ru": "Мы можем предоставить экспертов, обучение и инструменты.",
        "ar": "يمكننا تقديم خبراء وتدريب وأدوات.",
        "zh": "我们可以提供专家、培训和工具。",
    },
}


@dataclass(frozen=True)
class StateLocale:
    """What makes a State's simulated contacts look like its own to its delegation: the
    language it writes in, the languages its contacts speak, its phone numbers' region and
    the time zones of its territory."""

    region: str  # ISO 3166-1 alpha-2, as phone numbers and the tz database name States
    language: str  # the UN language its texts are written in (R6)
    spoken: tuple[str, ...]  # ISO 639 codes its contacts speak
    zones: tuple[str, ...]  # IANA zones of its territory


@cache
def _zones_by_region() -> dict[str, tuple[str, ...]]:
    """The tz database's zones of each country, from the ``tzdata`` package's ``zone.tab``
    (one country per row, so Norway gets Europe/Oslo rather than the Europe/Berlin it shares
    in zone1970.tab, the names a delegation knows)."""
    table = resources.files("tzdata.zoneinfo").joinpath("zone.tab").read_text("utf-8")
    zones: dict[str, list[str]] = {}
    for line in table.splitlines():
        if line and not line.startswith("#"):
            region, _coordinates, zone, *_ = line.split("\t")
            zones.setdefault(region, []).append(zone)
    return {region: tuple(names) for region, names in zones.items()}


@cache
def state_locale(code: str) -> StateLocale:
    """``code``'s locale from CLDR (through ``babel``) and the tz database.

    Its language is its official UN language (de jure, or de facto where it has none de jure,
    as in the United States), the one most of its people speak if it has several (Canada:
    English, Cameroon: French); a State with none writes English (Germany, Japan). Its
    contacts also speak its main official language and English.
    """
    country = pycountry.countries.get(alpha_3=code)
    if country is None:  # every member State is in ISO 3166-1: a bug if not
        raise LookupError(f"{code} is not an ISO 3166-1 alpha-3 code")
    region = country.alpha_2
    official = get_official_languages(region) or get_official_languages(region, de_facto=True)
    shares = get_territory_language_info(region)
    in_un = [lang for lang in official if lang in UN_LANGUAGES] or ["en"]

    def share(lang: str) -> float:
        return float(shares.get(lang, {}).get("population_percent") or 0)

    language = max(in_un, key=share)
    spoken = {lang.split("_")[0] for lang in official[:1]} | set(in_un) | {"en"}
    return StateLocale(
        region=region,
        language=language,
        spoken=tuple(sorted(spoken)),
        zones=_zones_by_region()[region],
    )


def time_zones(phone: str, locale: StateLocale) -> tuple[str, ...]:
    """Where a contact with ``phone`` may sit: the zones libphonenumber gives for the number's
    area that are zones of the State's territory (a +1 201 number: America/New_York, not
    Pacific/Honolulu); else the State's first zone in the tz database. libphonenumber's own
    zones are not used alone: some are a neighbour's that shares the offset (Lithuania's
    Europe/Bucharest) or an old name (Asia/Calcutta)."""
    by_area = phonenumbers.timezone.time_zones_for_number(phonenumbers.parse(phone))
    return tuple(zone for zone in by_area if zone in locale.zones) or locale.zones[:1]


def phone_number(rng: random.Random, region: str) -> str:
    """A valid number of ``region`` in E.164 form: libphonenumber's example fixed-line
    number with its last three digits drawn from ``rng``, kept only if still valid there."""
    example = phonenumbers.example_number_for_type(
        region, phonenumbers.PhoneNumberType.FIXED_LINE
    ) or phonenumbers.example_number(region)
    if example is None:  # libphonenumber has an example for every member State
        raise LookupError(f"no example phone number for {region}")
    e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    for _ in range(10):
        candidate = e164[:-3] + f"{rng.randrange(1000):03d}"
        if phonenumbers.is_valid_number_for_region(phonenumbers.parse(candidate), region):
            return candidate
    return e164


#: The first communication check follows the opening registration wave; then one a month.
FIRST_CHECK_DAY, CHECK_EVERY_DAYS = 50, 30
SECRETARIAT = Principal("sim-secretariat", Role.SECRETARIAT)


@dataclass
class _Persona:
    """How one simulated State behaves: drawn once from the seed."""

    code: str
    locale: StateLocale
    diligent: bool  # confirms its entry on time, reports changes promptly
    responsive: float  # chance to acknowledge a notification
    needs_assistance: float  # chance a response asks for assistance (R16)
    contacts: list[str] = field(default_factory=list)
    version: int = 0


@dataclass
class SimulationReport:
    states: int
    days: int
    seed: int
    commands: Counter[str]

    @property
    def total(self) -> int:
        return sum(self.commands.values())


#: How often the simulated delivery worker looks for alerts to send.
DELIVERY_EVERY = timedelta(hours=1)
#: The longest simulation: a century, which also keeps every simulated date in the calendar.
MAX_DAYS = 36_500


class Simulator:
    """Runs the simulation against ``app``; call ``run``."""

    def __init__(
        self,
        app: PocDirectory,
        clock: SimulatedClock,
        *,
        states: int,
        days: int,
        seed: int,
        deliver: Callable[[], object] | None = None,
        code_for: Callable[[UUID, str, str], str] | None = None,
    ) -> None:
        """``deliver``: the delivery worker's catch-up (``DeliveryWorker.run_until_idle``),
        run every ``DELIVERY_EVERY`` of simulated time, so that alerts leave when they would
        have (a check's challenges within the contacts' hours, escalations at deadlines).
        ``code_for(check_id, state, contact_id)``: the challenge code a contact's message
        carries, which a simulated State reads from its mail; with it, checks test the
        channel (issue 17), else they are answered per State by contact id."""
        if not 2 <= states <= len(member_states()):
            raise ValueError(f"--states must be between 2 and {len(member_states())}")
        if not 1 <= days <= MAX_DAYS:
            raise ValueError(f"--days must be between 1 and {MAX_DAYS}")
        self.app, self.clock = app, clock
        self.deliver, self.code_for = deliver, code_for
        self.states, self.days, self.seed = states, days, seed
        self.rng = random.Random(seed)
        self.review_rng = random.Random(f"review:{seed}")
        self.start = clock.now()
        self.end = self.start + timedelta(days=days)
        self.commands: Counter[str] = Counter()
        self._queue: list[tuple[datetime, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        codes = sorted(self.rng.sample(sorted(member_states()), states))
        self.personas = {code: self._persona(code) for code in codes}
        self.active: list[str] = []
        self._keys = itertools.count(1)
        self._key_prefix = f"simulate-{seed}-{app.recorder.max_notification_id() or 0}"

    def next_key(self) -> IdempotencyKey:
        """Each command's idempotency key, as a client would send one: derived from the seed
        and the record's head when the run started, so the same run writes the same keys."""
        key = f"{self._key_prefix}-{next(self._keys)}"
        return IdempotencyKey("simulator", key, request_digest([key.encode()]))

    # -- scheduling -------------------------------------------------------------------------

    def at(self, when: datetime, action: Callable[[], None]) -> None:
        if when < self.end:
            heapq.heappush(self._queue, (when, next(self._seq), action))

    def later(self, delay: timedelta, action: Callable[[], None]) -> None:
        self.at(self.clock.now() + delay, action)

    def _random_time(self, day: date) -> datetime:
        return datetime.combine(day, time(0), tzinfo=UTC) + timedelta(
            seconds=self.rng.randrange(6 * 3600, 20 * 3600)
        )

    def run(self, on_day: Callable[[int], None] | None = None) -> SimulationReport:
        """Simulate ``days`` days from the clock's current time."""
        registration_days = max(1, min(self.days, 45))
        for code in self.personas:
            day = self.start.date() + timedelta(days=self.rng.randrange(registration_days))
            self.at(self._random_time(day), partial(self.register, code))
        for offset in range(self.days):
            day = self.start.date() + timedelta(days=offset)
            self._plan_day(day)
            day_end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)
            while self._queue and self._queue[0][0] < day_end:
                when, _, action = heapq.heappop(self._queue)
                self.clock.set(max(when, self.clock.now()))
                action()
            if on_day is not None:
                on_day(offset + 1)
        self.clock.set(max(self.end, self.clock.now()))
        return SimulationReport(self.states, self.days, self.seed, self.commands)

    def _plan_day(self, day: date) -> None:
        if self.deliver is not None:
            midnight = datetime.combine(day, time(0), tzinfo=UTC)
            for step in range(int(timedelta(days=1) / DELIVERY_EVERY)):
                self.at(midnight + step * DELIVERY_EVERY, self._deliver)
        rate = max(1, len(self.active)) * 0.02  # notifications a day across the directory
        for _ in range(self._poisson(rate)):
            if len(self.active) >= 2:
                self.at(self._random_time(day), self.notify)
        for code in self.active:
            persona = self.personas[code]
            if self.rng.random() < (1 / 90 if persona.diligent else 1 / 400):
                self.at(self._random_time(day), partial(self.change_contact, code))
        if self.rng.random() < 1 / 120 and len(self.active) > 2:
            code = self.rng.choice(self.active)
            self.at(self._random_time(day), partial(self.withdraw, code))
        self._plan_review(day)

    def _deliver(self) -> None:
        if self.deliver is not None:
            self.deliver()

    def _poisson(self, lam: float) -> int:
        # Knuth's method is fine for the small rates used here.
        threshold, k, p = pow(2.718281828459045, -lam), 0, 1.0
        while True:
            p *= self.rng.random()
            if p <= threshold:
                return k
            k += 1

    # -- States -----------------------------------------------------------------------------

    def _persona(self, code: str) -> _Persona:
        return _Persona(
            code=code,
            locale=state_locale(code),
            diligent=self.rng.random() < 0.75,
            responsive=self.rng.choice((0.95, 0.9, 0.8, 0.5)),
            needs_assistance=self.rng.choice((0.0, 0.05, 0.3)),
        )

    def principal(self, code: str) -> Principal:
        return Principal(f"sim-{code.lower()}", Role.STATE, code)

    @staticmethod
    def _text(persona: _Persona, phrase: str) -> Text:
        """``phrase`` in the State's language, with its English (R6)."""
        texts, language = _PHRASES[phrase], persona.locale.language
        return Text.parse(language, texts[language], texts["en"], field=phrase)

    def _contact(self, persona: _Persona, contact_id: str, level: Level) -> Contact:
        rng, code = self.rng, persona.code.lower()
        phone = phone_number(rng, persona.locale.region)
        channels: list[dict[str, str]] = [
            {"kind": "email", "address": f"{contact_id}@{code}.pocdir.example"},
            {"kind": "phone", "address": phone},
        ]
        if level is Level.TECHNICAL and rng.random() < 0.6:
            fingerprint = hashlib.sha256(rng.randbytes(16)).hexdigest()
            channels.append(
                {
                    "kind": "secure",
                    "address": f"xmpp:{contact_id}@{code}.pocdir.example",
                    "fingerprint": fingerprint,
                }
            )
        types = rng.sample(sorted(INCIDENT_TYPES), rng.randrange(2, 6))
        return Contact.from_dict(
            {
                "contact_id": contact_id,
                "level": str(level),
                "agency": self._text(persona, f"{level} agency").to_dict(),
                "function": self._text(persona, f"{level} function").to_dict(),
                "channels": channels,
                "languages": list(persona.locale.spoken),
                "time_zone": rng.choice(time_zones(phone, persona.locale)),
                "hours": rng.choice(_HOURS),
                "incident_types": types if level is Level.TECHNICAL else [],
            }
        )

    def register(self, code: str) -> None:
        persona, by = self.personas[code], self.principal(code)
        self.app.register_state(by, code, idempotency=self.next_key())
        self.commands["register"] += 1
        levels = self.rng.choice(
            (
                [Level.DIPLOMATIC, Level.TECHNICAL],
                [Level.TECHNICAL],
                [Level.DIPLOMATIC, Level.TECHNICAL, Level.TECHNICAL],
            )
        )
        for index, level in enumerate(levels, start=1):
            contact_id = f"{'dip' if level is Level.DIPLOMATIC else 'tech'}-{index}"
            self.app.add_contact(
                by, code, self._contact(persona, contact_id, level), idempotency=self.next_key()
            )
            persona.contacts.append(contact_id)
            self.commands["add contact"] += 1
        coordinator = persona.contacts[0]
        self.app.set_coordination_contact(by, code, coordinator, idempotency=self.next_key())
        self.commands["set coordination contact"] += 1
        if self.rng.random() < 0.4:
            self.app.set_preferred_channel(
                by, code, coordinator, "email", idempotency=self.next_key()
            )
            self.commands["set preferred channel"] += 1
        self.active.append(code)
        if persona.diligent:
            self.later(timedelta(days=self.rng.randrange(320, 360)), lambda: self.confirm(code))
        elif self.review_rng.random() < 0.4:  # some lapse, then confirm after the deadline
            delay = timedelta(days=self.review_rng.randrange(368, 390))
            self.later(delay, lambda: self.confirm_late(code))

    def confirm(self, code: str) -> None:
        if code not in self.active:
            return
        self.app.confirm_entry(self.principal(code), code, idempotency=self.next_key())
        self.commands["confirm annually"] += 1
        self.later(timedelta(days=self.rng.randrange(320, 360)), lambda: self.confirm(code))

    def change_contact(self, code: str) -> None:
        if code not in self.active:
            return
        persona, by = self.personas[code], self.principal(code)
        entry = self.app.get_entry(code)
        contact_id = self.rng.choice(sorted(entry.contacts))
        current = entry.contacts[contact_id]
        changed = self._contact(persona, contact_id, current.level)
        # Diligent States report within days; others sometimes after the 30-day limit (R5).
        delay = self.rng.randrange(0, 10) if persona.diligent else self.rng.randrange(5, 90)
        effective_on = max(entry.registered_on, self.clock.now().date() - timedelta(days=delay))
        if entry.preferred and entry.preferred[0] == contact_id:
            return  # keep the preferred channel stable in the simulation
        self.app.update_contact(by, code, changed, effective_on, idempotency=self.next_key())
        self.commands["update contact"] += 1

    def withdraw(self, code: str) -> None:
        if code not in self.active:
            return
        self.app.withdraw_entry(self.principal(code), code, idempotency=self.next_key())
        self.active.remove(code)
        self.commands["withdraw entry"] += 1
        if self.rng.random() < 0.5:
            self.later(timedelta(days=self.rng.randrange(10, 60)), lambda: self.rejoin(code))

    def rejoin(self, code: str) -> None:
        self.app.rejoin(self.principal(code), code, idempotency=self.next_key())
        self.active.append(code)
        self.commands["rejoin"] += 1

    # -- exchanges --------------------------------------------------------------------------

    def _indicators(self) -> list[dict[str, str]]:
        rng, items = self.rng, []
        for _ in range(rng.randrange(1, 6)):
            kind = rng.choice(("ipv4", "ipv6", "ipv4-range", "domain", "url", "sha256", "malware"))
            if kind == "ipv4":
                value = (
                    f"{rng.choice(('192.0.2', '198.51.100', '203.0.113'))}.{rng.randrange(1, 255)}"
                )
            elif kind == "ipv6":
                value = f"2001:db8::{rng.randrange(1, 0xFFFF):x}"
            elif kind == "ipv4-range":
                value = f"198.51.100.{rng.choice((0, 64, 128))}/26"
            elif kind == "domain":
                value = f"c2-{rng.randrange(10**6)}.example.net"
            elif kind == "url":
                value = f"https://update-{rng.randrange(10**6)}.example.org/payload.bin"
            elif kind == "sha256":
                value = hashlib.sha256(rng.randbytes(16)).hexdigest()
            else:
                value = rng.choice(_MALWARE)
            items.append({"kind": kind, "value": value})
        return items

    def notify(self) -> None:
        sender, recipient = self.rng.sample(self.active, 2)
        persona = self.personas[sender]
        notification = self.app.send_notification(
            self.principal(sender),
            recipient,
            self.rng.choice(sorted(INCIDENT_TYPES)),
            self._text(persona, "notification"),
            self._indicators(),
            good_faith_attested=True,
            idempotency=self.next_key(),
        )
        self.commands["send notification"] += 1
        nid = notification.id
        if self.rng.random() < 0.03:
            self.later(
                timedelta(hours=self.rng.randrange(1, 12)), lambda: self.withdraw_notification(nid)
            )
        elif self.rng.random() < self.personas[recipient].responsive:
            hours = self.rng.choice((1, 2, 4, 8, 24, 48, 96))
            self.later(
                timedelta(hours=hours * self.rng.uniform(0.5, 1.5)), lambda: self.acknowledge(nid)
            )

    def withdraw_notification(self, nid: UUID) -> None:
        n = self.app.get_notification(nid)
        if n.status is NotificationStatus.SENT:
            self.app.withdraw_notification(
                self.principal(n.sender), nid, idempotency=self.next_key()
            )
            self.commands["withdraw notification"] += 1

    def acknowledge(self, nid: UUID) -> None:
        n = self.app.get_notification(nid)
        if n.status is not NotificationStatus.SENT:
            return
        self.app.acknowledge_notification(
            self.principal(n.recipient), nid, idempotency=self.next_key()
        )
        self.commands["acknowledge"] += 1
        if self.rng.random() < 0.8:
            self.later(timedelta(hours=self.rng.randrange(4, 24 * 7)), lambda: self.respond(nid))
        else:
            self.later(timedelta(days=self.rng.randrange(7, 30)), lambda: self.close(nid))

    def respond(self, nid: UUID) -> None:
        n = self.app.get_notification(nid)
        if n.status not in (NotificationStatus.ACKNOWLEDGED, NotificationStatus.RESPONDED):
            return
        persona = self.personas[n.recipient]
        assistance = self.rng.random() < persona.needs_assistance
        self.app.respond_to_notification(
            self.principal(n.recipient),
            nid,
            self._text(persona, "assistance" if assistance else "response"),
            assistance,
            idempotency=self.next_key(),
        )
        self.commands["respond (assistance asked)" if assistance else "respond"] += 1
        if assistance and self.review_rng.random() < 0.6:
            delay = timedelta(days=self.review_rng.randrange(1, 7))
            self.later(delay, partial(self.record_need, n.recipient, nid))
        if self.rng.random() < 0.25:
            self.later(timedelta(days=self.rng.randrange(1, 10)), lambda: self.respond(nid))
        elif self.rng.random() < 0.15:
            self.later(timedelta(days=self.rng.randrange(1, 5)), lambda: self.request_consent(nid))
        else:
            self.later(timedelta(days=self.rng.randrange(1, 20)), lambda: self.close(nid))

    def close(self, nid: UUID) -> None:
        n = self.app.get_notification(nid)
        if n.status in (NotificationStatus.ACKNOWLEDGED, NotificationStatus.RESPONDED):
            self.app.close_notification(self.principal(n.sender), nid, idempotency=self.next_key())
            self.commands["close notification"] += 1

    def request_consent(self, nid: UUID) -> None:
        n = self.app.get_notification(nid)
        third_candidates = [c for c in self.active if c not in n.parties]
        if not third_candidates:
            return
        requester = self.rng.choice(n.parties)
        consent = self.app.request_consent(
            self.principal(requester),
            nid,
            self.rng.choice(third_candidates),
            idempotency=self.next_key(),
        )
        self.commands["request consent"] += 1
        other = n.recipient if requester == n.sender else n.sender
        cid = consent.id
        self.later(
            timedelta(days=self.rng.randrange(1, 7)), lambda: self.decide_consent(cid, other)
        )
        self.later(timedelta(days=self.rng.randrange(8, 14)), lambda: self.close(nid))

    def decide_consent(self, cid: UUID, party: str) -> None:
        if self.rng.random() < 0.7:
            self.app.grant_consent(self.principal(party), cid, idempotency=self.next_key())
            self.commands["grant consent"] += 1
            if self.rng.random() < 0.2:
                self.later(
                    timedelta(days=self.rng.randrange(5, 40)),
                    lambda: self.revoke_consent(cid, party),
                )
        else:
            self.app.deny_consent(self.principal(party), cid, idempotency=self.next_key())
            self.commands["deny consent"] += 1

    def revoke_consent(self, cid: UUID, party: str) -> None:
        if self.app.get_consent(cid).status is ConsentStatus.EFFECTIVE:
            self.app.revoke_consent(self.principal(party), cid, idempotency=self.next_key())
            self.commands["revoke consent"] += 1

    # -- review activity: communication checks and capacity building (R16, R17) -------------

    def _plan_review(self, day: date) -> None:
        rng = self.review_rng
        offset = (day - self.start.date()).days
        if offset >= FIRST_CHECK_DAY and (offset - FIRST_CHECK_DAY) % CHECK_EVERY_DAYS == 0:
            number = (offset - FIRST_CHECK_DAY) // CHECK_EVERY_DAYS
            level = Level.TECHNICAL if number % 2 == 0 else Level.DIPLOMATIC
            subset = number % 3 == 2
            self.at(self._random_time_from(rng, day), partial(self.launch_check, level, subset))
        for code in self.active:
            if rng.random() < self.personas[code].needs_assistance / 60:
                self.at(self._random_time_from(rng, day), partial(self.record_need, code, None))

    @staticmethod
    def _random_time_from(rng: random.Random, day: date) -> datetime:
        return datetime.combine(day, time(0), tzinfo=UTC) + timedelta(
            seconds=rng.randrange(6 * 3600, 20 * 3600)
        )

    def confirm_late(self, code: str) -> None:
        if code in self.active:
            self.app.confirm_entry(self.principal(code), code, idempotency=self.next_key())
            self.commands["confirm annually (late)"] += 1

    def launch_check(self, level: Level, subset: bool) -> None:
        rng = self.review_rng
        candidates = [
            code
            for code in sorted(self.active)
            if any(
                c.startswith("dip" if level is Level.DIPLOMATIC else "tech")
                for c in self.personas[code].contacts
            )
        ]
        if not candidates:
            return
        states = sorted(rng.sample(candidates, min(len(candidates), 20))) if subset else None
        hours = 48 if level is Level.TECHNICAL else 120
        deadline = self.clock.now() + timedelta(hours=hours)
        # Without delivery, answered per State by contact id: no challenge codes are sent.
        check = self.app.launch_check(
            SECRETARIAT,
            str(level),
            deadline,
            states,
            challenge=self.code_for is not None,
            idempotency=self.next_key(),
        )
        self.commands["launch check"] += 1
        for code in check.states:
            responsive = self.personas[code].responsive
            draw = rng.random()
            if draw < responsive * 0.85:
                delay = timedelta(hours=rng.uniform(0.1, hours * 0.9))
            elif draw < responsive:
                delay = timedelta(hours=hours + rng.uniform(2, 96))
            else:
                continue  # no answer
            self.later(delay, partial(self.answer_check, check.id, code))
        self.later(timedelta(hours=hours, days=7), partial(self.close_check, check.id))

    def answer_check(self, check_id: UUID, code: str) -> None:
        check = self.app.get_check(check_id)
        if code not in self.active or check.closed_at is not None:
            return
        if check.challenged:
            self.answer_challenges(check, code)
            return
        entry = self.app.get_entry(code)
        contact_id = next(c.contact_id for c in entry.contacts.values() if c.level == check.level)
        self.app.answer_check(
            self.principal(code), check_id, contact_id, idempotency=self.next_key()
        )
        self.commands["answer check"] += 1

    def answer_challenges(self, check: CommunicationCheck, code: str) -> None:
        """The State confirms with the code each of its contacts received; a contact whose
        message has not arrived yet (sent later, within its hours) is answered an hour later."""
        if self.code_for is None:  # a challenged check is launched only with it
            return
        waiting = False
        for key in check.contacts:
            state, contact_id = split_key(key)
            if state != code or key in check.confirmed:
                continue
            if key not in check.challenges:
                waiting = waiting or key not in check.undeliverable
                continue
            self.app.answer_check_code(
                self.principal(code),
                check.id,
                self.code_for(check.id, code, contact_id),
                idempotency=self.next_key(),
            )
            self.commands["answer check (code)"] += 1
        if waiting:
            self.later(timedelta(hours=1), partial(self.answer_check, check.id, code))

    def close_check(self, check_id: UUID) -> None:
        self.app.close_check(SECRETARIAT, check_id, idempotency=self.next_key())
        self.commands["close check"] += 1

    def record_need(self, code: str, notification_id: UUID | None) -> None:
        if code not in self.active:
            return
        rng, persona = self.review_rng, self.personas[code]
        category = rng.choice(sorted(CAPACITY_CATEGORIES))
        need = self.app.record_need(
            self.principal(code),
            category,
            self._text(persona, "need"),
            notification_id,
            idempotency=self.next_key(),
        )
        self.commands["record capacity need"] += 1
        offers = rng.choice((0, 1, 1, 2, 3))
        for _ in range(offers):
            self.later(timedelta(days=rng.randrange(2, 30)), partial(self.offer, need.id))
        if offers == 0 and rng.random() < 0.3:
            self.later(timedelta(days=rng.randrange(30, 90)), partial(self.withdraw_need, need.id))

    def offer(self, need_id: UUID) -> None:
        rng, need = self.review_rng, self.app.get_need(need_id)
        candidates = [c for c in self.active if c != need.state and c not in need.offers]
        if need.status is not NeedStatus.OPEN or not candidates:
            return
        offering = rng.choice(candidates)
        self.app.offer_assistance(
            self.principal(offering),
            need_id,
            self._text(self.personas[offering], "offer"),
            idempotency=self.next_key(),
        )
        self.commands["offer assistance"] += 1
        if not need.offers and rng.random() < 0.85:
            self.later(
                timedelta(days=rng.randrange(1, 10)), partial(self.accept, need_id, offering)
            )

    def accept(self, need_id: UUID, offering: str) -> None:
        rng, need = self.review_rng, self.app.get_need(need_id)
        if need.status is not NeedStatus.OPEN:
            return
        self.app.accept_offer(
            self.principal(need.state), need_id, offering, idempotency=self.next_key()
        )
        self.commands["accept offer"] += 1
        draw = rng.random()
        if draw < 0.7:
            self.later(timedelta(days=rng.randrange(20, 90)), partial(self.fulfil, need_id))
        elif draw < 0.8:
            self.later(timedelta(days=rng.randrange(10, 40)), partial(self.withdraw_need, need_id))

    def fulfil(self, need_id: UUID) -> None:
        need = self.app.get_need(need_id)
        if need.status is NeedStatus.MATCHED:
            self.app.fulfil_need(self.principal(need.state), need_id, idempotency=self.next_key())
            self.commands["fulfil need"] += 1

    def withdraw_need(self, need_id: UUID) -> None:
        need = self.app.get_need(need_id)
        if need.status in (NeedStatus.OPEN, NeedStatus.MATCHED):
            self.app.withdraw_need(self.principal(need.state), need_id, idempotency=self.next_key())
            self.commands["withdraw need"] += 1


def seeded_ids(seed: int) -> Callable[[], UUID]:
    """A deterministic id factory: the same seed gives the same ids, so the same record."""
    rng = random.Random(f"ids:{seed}")
    return lambda: UUID(int=rng.getrandbits(128), version=4)
