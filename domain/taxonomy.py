"""Fixed vocabularies: contact levels (R2), UN languages (R6) and incident types (R4).

The incident taxonomy is deliberately small and stable: States route on it (R4) and reviewers
count by it (R17), so a code, once published, is never renamed or reused. It is documented in
``docs/taxonomy.md``; a test keeps the two in step.
"""

from __future__ import annotations

from enum import StrEnum

from domain.errors import ValidationError


class Level(StrEnum):
    """The level at which a State names a point of contact (R2)."""

    DIPLOMATIC = "diplomatic"
    TECHNICAL = "technical"


#: The six official UN languages (R6), as ISO 639-1 codes, with their English names.
UN_LANGUAGES: dict[str, str] = {
    "ar": "Arabic",
    "zh": "Chinese",
    "en": "English",
    "fr": "French",
    "ru": "Russian",
    "es": "Spanish",
}

#: Incident types a contact can handle and a notification can be about (R4, R7).
INCIDENT_TYPES: dict[str, str] = {
    "malware": "Malicious code: worms, trojans, spyware, botnet infections",
    "ransomware": "Malware that encrypts or withholds data for ransom",
    "denial-of-service": "Attacks on availability: DoS and DDoS",
    "intrusion": "Successful compromise of systems or accounts",
    "intrusion-attempt": "Exploitation attempts, brute-force and credential attacks",
    "information-gathering": "Scanning, sniffing and reconnaissance",
    "data-breach": "Unauthorised access to, modification or disclosure of information",
    "fraud": "Phishing, impersonation and other deception",
    "critical-infrastructure": "Activity against critical infrastructure or industrial control",
    "supply-chain": "Compromise through suppliers, software updates or service providers",
    "vulnerability": "Coordination of a vulnerability disclosure",
    "other": "Anything not covered above",
}


def check_incident_type(value: str) -> str:
    """Return ``value`` if it is a known incident type, else raise ``ValidationError``."""
    if value not in INCIDENT_TYPES:
        raise ValidationError(
            f"unknown incident type {value[:40]!r}; use one of: {', '.join(INCIDENT_TYPES)}"
        )
    return value


def check_level(value: str) -> Level:
    """Parse a contact level, with an error that lists the two allowed values."""
    try:
        return Level(value)
    except ValueError:
        raise ValidationError(
            f"unknown level {value[:40]!r}; use 'diplomatic' or 'technical'"
        ) from None
