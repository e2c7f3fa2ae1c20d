"""The writes many tests start from: principals, a contact, registered States, and the usual
"FRA notifies DEU" exchange."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.application import PocDirectory
from domain.clock import SimulatedClock
from domain.notification import Notification
from domain.values import Contact, Principal, Role, Text

START = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)

#: The indicators of the usual notification.
INDICATORS: tuple[dict[str, str], ...] = ({"kind": "ipv4", "value": "192.0.2.1"},)


#: A Secretariat official, for checks and credentials.
SECRETARIAT = Principal("sec-1", Role.SECRETARIAT)


def state(code: str) -> Principal:
    """A principal acting for ``code``."""
    return Principal(f"p-{code.lower()}", Role.STATE, code)


def contact_data(contact_id: str = "cert", **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "contact_id": contact_id,
        "level": "technical",
        "agency": {"language": "fr", "text": "Agence nationale", "english": "National agency"},
        "function": "CERT",
        "channels": [
            {"kind": "email", "address": f"{contact_id}@example.org"},
            {"kind": "phone", "address": "+33 1 23 45 67 89"},
        ],
        "languages": ["fr", "en"],
        "time_zone": "Europe/Paris",
        "hours": "24/7",
        "incident_types": ["malware", "ransomware"],
    }
    data.update(overrides)
    return data


def register_states(
    app: PocDirectory,
    *codes: str,
    contact: dict[str, Any] | None = None,
    clock: SimulatedClock | None = None,
    apart: timedelta = timedelta(0),
) -> None:
    """Each of ``codes`` registers and adds ``contact`` (by default ``contact_data("cert")``);
    with a ``clock``, it moves on by ``apart`` after each State."""
    for code in codes:
        app.register_state(state(code), code)
        app.add_contact(state(code), code, Contact.from_dict(contact or contact_data("cert")))
        if clock is not None:
            clock.advance(apart)


def fra_notifies_deu(
    app: PocDirectory,
    description: str = "Botnet command server",
    indicators: Sequence[dict[str, str]] = INDICATORS,
    *,
    supporting_text: str | None = None,
    incident_type: str = "malware",
) -> Notification:
    """FRA notifies DEU (both registered already), in good faith."""
    return app.send_notification(
        state("FRA"),
        "DEU",
        incident_type,
        Text.english_only(description),
        [dict(i) for i in indicators],
        good_faith_attested=True,
        supporting_text=None if supporting_text is None else Text.english_only(supporting_text),
    )


def register(app: PocDirectory, code: str, *levels: str) -> None:
    """``code`` registers with one contact at each of ``levels``."""
    app.register_state(state(code), code)
    for i, level in enumerate(levels):
        extra: dict[str, Any] = {"incident_types": []} if level == "diplomatic" else {}
        contact = contact_data(f"{level[:3]}-{i}", level=level, **extra)
        app.add_contact(state(code), code, Contact.from_dict(contact))
