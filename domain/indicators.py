"""Structured, validated indicators of compromise (IoCs) attached to notifications (R7).

States exchange notifications about ICT security incidents with supporting information made of
indicators: IP addresses and ranges, domains, URLs, file hashes and malware names. An indicator
that the recipient cannot use is worse than none, so every value is checked here, and each
refusal says which kind was meant, quotes the offending value and says what was expected.

Values are also normalised (compressed IP notation, lowercase hex, punycode domains, refanged
URL schemes ...) so that two spellings of the same indicator compare and hash equal: duplicates
can then be removed and indicators from different States can be matched against each other.

Only the standard library is used: ``ipaddress`` for addresses and networks and the ``idna``
codec (IDNA 2003) for internationalised domain names.
"""

from __future__ import annotations

import encodings.idna
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from domain.errors import InvalidIndicator

__all__ = [
    "MAX_INDICATORS",
    "Indicator",
    "IndicatorKind",
    "parse_indicator",
    "parse_indicators",
]

MAX_INDICATORS = 1000
"""Most indicators one notification may carry: bounds the work and the size of an event."""

_QUOTE_LIMIT = 80
_MAX_DOMAIN_LENGTH = 253
_MAX_LABEL_LENGTH = 63
_MAX_URL_LENGTH = 2048
_MAX_MALWARE_LENGTH = 128


class IndicatorKind(StrEnum):
    """The kinds of indicator a notification may carry; the value is the wire spelling."""

    IPV4 = "ipv4"
    IPV6 = "ipv6"
    IPV4_RANGE = "ipv4-range"
    IPV6_RANGE = "ipv6-range"
    DOMAIN = "domain"
    URL = "url"
    MD5 = "md5"
    SHA1 = "sha1"
    SHA256 = "sha256"
    MALWARE = "malware"


_KINDS_TEXT = ", ".join(kind.value for kind in IndicatorKind)


@dataclass(frozen=True)
class Indicator:
    """One indicator of compromise, always holding a validated value in canonical form.

    Build one with :func:`parse_indicator` (or :meth:`from_dict`), which normalises the value.
    Direct construction is checked too: a value that is not already canonical is refused, so
    that equal indicators always compare and hash equal and de-duplication can be trusted.
    """

    kind: IndicatorKind
    value: str

    def __post_init__(self) -> None:
        # Frozen, so the coercion of a plain "ipv4" string to the enum goes through object.
        kind = _parse_kind(self.kind)
        object.__setattr__(self, "kind", kind)
        canonical = _normalise(kind, self.value)
        if canonical != self.value:
            raise InvalidIndicator(
                f"invalid {kind} indicator {_quote(self.value)}: not in canonical form; "
                f"expected {_quote(canonical)} (use parse_indicator to normalise values)"
            )

    def to_dict(self) -> dict[str, str]:
        """The wire and event form, the one :meth:`from_dict` and :func:`parse_indicators` read."""
        return {"kind": self.kind.value, "value": self.value}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Indicator:
        """Read ``{"kind": ..., "value": ...}``, validating and normalising like parse_indicator.

        Exactly those two keys are accepted, so a misspelt key is reported, not silently lost.
        """
        return _from_mapping(d)


def parse_indicator(kind: str, value: str) -> Indicator:
    """Validate ``value`` as an indicator of ``kind`` and return it in canonical form.

    The kind is matched case-insensitively; surrounding whitespace of the value is ignored.
    Any problem raises :class:`InvalidIndicator` (never a bare ``ValueError``/``UnicodeError``)
    with a message naming the kind, quoting the value and saying what is expected.
    """
    parsed_kind = _parse_kind(kind)
    return Indicator(parsed_kind, _normalise(parsed_kind, value))


def parse_indicators(items: Iterable[Mapping[str, Any]]) -> tuple[Indicator, ...]:
    """Validate a list of ``{"kind", "value"}`` items, dropping exact duplicates.

    Duplicates (after normalisation) are removed keeping the first-seen order, because the
    same indicator listed twice adds nothing and would only inflate the record. More than
    :data:`MAX_INDICATORS` items are refused (counted before de-duplication, so the work stays
    bounded). Errors name the offending item by its 1-based position: ``"indicator #3: ..."``.
    """
    if isinstance(items, (str, bytes, bytearray, Mapping)) or not isinstance(items, Iterable):
        raise InvalidIndicator(
            f"indicators must be a list of objects with keys 'kind' and 'value'; "
            f"expected a list, got {type(items).__name__}"
        )
    seen: set[Indicator] = set()
    result: list[Indicator] = []
    for position, item in enumerate(items, start=1):
        if position > MAX_INDICATORS:
            raise InvalidIndicator(
                f"too many indicators: expected at most {MAX_INDICATORS} per notification; "
                f"split them over several notifications"
            )
        try:
            indicator = _from_mapping(item)
        except InvalidIndicator as exc:
            raise InvalidIndicator(f"indicator #{position}: {exc}") from exc
        if indicator not in seen:
            seen.add(indicator)
            result.append(indicator)
    return tuple(result)


# --- helpers shared by all kinds ----------------------------------------------------------


def _quote(value: object) -> str:
    """Quote a value for an error message, truncated so a huge input cannot flood logs.

    ``repr`` escapes control characters, so a message never carries a raw newline.
    """
    text = value if isinstance(value, str) else str(value)
    if len(text) > _QUOTE_LIMIT:
        text = text[: _QUOTE_LIMIT - 3] + "..."
    return repr(text)


def _invalid(kind: IndicatorKind, value: str, problem: str, expected: str) -> InvalidIndicator:
    """Build the uniform message: which kind, which value, what is wrong, what is expected."""
    return InvalidIndicator(
        f"invalid {kind} indicator {_quote(value)}: {problem}; expected {expected}"
    )


def _parse_kind(kind: object) -> IndicatorKind:
    """Map the wire spelling of a kind to the enum, naming the allowed kinds on failure."""
    if isinstance(kind, IndicatorKind):
        return kind
    if not isinstance(kind, str):
        raise InvalidIndicator(
            f"indicator kind must be a string, got {type(kind).__name__}; "
            f"expected one of: {_KINDS_TEXT}"
        )
    try:
        return IndicatorKind(kind.strip().lower())
    except ValueError:
        raise InvalidIndicator(
            f"unknown indicator kind {_quote(kind)}; expected one of: {_KINDS_TEXT}"
        ) from None


def _from_mapping(item: object) -> Indicator:
    """Check an item's shape (exactly the string keys kind and value) and parse it."""
    if not isinstance(item, Mapping):
        raise InvalidIndicator(
            f"an indicator must be an object with keys 'kind' and 'value'; "
            f"expected an object, got {type(item).__name__}"
        )
    keys = set(item.keys())
    missing = sorted({"kind", "value"} - keys)
    unexpected = sorted(repr(k) for k in keys - {"kind", "value"})
    if missing or unexpected:
        problems = []
        if missing:
            problems.append("missing key " + ", ".join(repr(k) for k in missing))
        if unexpected:
            problems.append("unexpected key " + ", ".join(unexpected))
        raise InvalidIndicator(
            f"{' and '.join(problems)}; expected exactly the keys 'kind' and 'value'"
        )
    kind = _parse_kind(item["kind"])
    value = item["value"]
    if not isinstance(value, str):
        raise InvalidIndicator(
            f"invalid {kind} indicator: value must be a string, got {type(value).__name__}; "
            f"expected {_EXPECTED[kind]}"
        )
    return parse_indicator(kind, value)


def _normalise(kind: IndicatorKind, value: object) -> str:
    """Return the canonical form of ``value`` for ``kind`` or raise InvalidIndicator."""
    if not isinstance(value, str):
        raise InvalidIndicator(
            f"invalid {kind} indicator: value must be a string, got {type(value).__name__}; "
            f"expected {_EXPECTED[kind]}"
        )
    text = value.strip()
    if not text:
        raise _invalid(kind, value, "the value is empty", _EXPECTED[kind])
    return _NORMALISERS[kind](text)


# --- IP addresses and ranges --------------------------------------------------------------


def _normalise_ipv4(value: str) -> str:
    kind = IndicatorKind.IPV4
    if "/" in value:
        raise _invalid(
            kind,
            value,
            "a prefix length makes it a range",
            "a single address such as 192.0.2.1, or use kind 'ipv4-range' for a CIDR network",
        )
    try:
        return ipaddress.IPv4Address(value).compressed
    except ValueError:
        pass
    if _is_ipv6_address(value):
        raise _invalid(kind, value, "this is an IPv6 address", "kind 'ipv6' for it")
    raise _invalid(
        kind,
        value,
        "not an IPv4 address",
        "four decimal numbers 0-255 without leading zeros, such as 192.0.2.1",
    )


def _normalise_ipv6(value: str) -> str:
    kind = IndicatorKind.IPV6
    if "/" in value:
        raise _invalid(
            kind,
            value,
            "a prefix length makes it a range",
            "a single address such as 2001:db8::1, or use kind 'ipv6-range' for a CIDR network",
        )
    if "%" in value:
        raise _invalid(
            kind,
            value,
            "a zone index (%...) only has meaning on the sender's host",
            "the address without it, such as fe80::1",
        )
    try:
        return ipaddress.IPv6Address(value).compressed
    except ValueError:
        pass
    if _is_ipv4_address(value):
        raise _invalid(kind, value, "this is an IPv4 address", "kind 'ipv4' for it")
    raise _invalid(kind, value, "not an IPv6 address", "an address such as 2001:db8::1")


def _normalise_ipv4_range(value: str) -> str:
    return _normalise_range(IndicatorKind.IPV4_RANGE, value, 4)


def _normalise_ipv6_range(value: str) -> str:
    return _normalise_range(IndicatorKind.IPV6_RANGE, value, 6)


def _normalise_range(kind: IndicatorKind, value: str, version: int) -> str:
    """A CIDR network, strictly: host bits set is refused with the network address to use.

    A single address (no prefix, or a /32 or /128) is refused too: it belongs in kind ipv4 or
    ipv6, otherwise the same address could be recorded under two kinds and not match.
    """
    example = "192.0.2.0/24" if version == 4 else "2001:db8::/32"
    single_kind = "ipv4" if version == 4 else "ipv6"
    expected = f"a CIDR network such as {example}"
    network_type: type[ipaddress.IPv4Network] | type[ipaddress.IPv6Network] = (
        ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network
    )
    other_type: type[ipaddress.IPv4Network] | type[ipaddress.IPv6Network] = (
        ipaddress.IPv6Network if version == 4 else ipaddress.IPv4Network
    )
    if "/" not in value:
        raise _invalid(
            kind,
            value,
            "a single address is not a range",
            f"{expected}, or use kind '{single_kind}' for one address",
        )
    if "%" in value:
        raise _invalid(kind, value, "a zone index (%...) is not allowed in a range", expected)
    try:
        network = network_type(value, strict=True)
    except ValueError as exc:
        try:
            loose = network_type(value, strict=False)
        except ValueError:
            pass
        else:
            raise _invalid(
                kind, value, "host bits are set", f"the network address {loose.compressed}"
            ) from exc
        try:
            other_type(value, strict=False)
        except ValueError:
            pass
        else:
            other_version, other_kind = (6, "ipv6-range") if version == 4 else (4, "ipv4-range")
            raise _invalid(
                kind, value, f"this is an IPv{other_version} network", f"kind '{other_kind}' for it"
            ) from exc
        raise _invalid(kind, value, "not a CIDR network", expected) from exc
    if network.num_addresses == 1:
        raise _invalid(
            kind,
            value,
            "a single address is not a range",
            f"kind '{single_kind}' with value {network.network_address.compressed}",
        )
    return network.compressed


def _is_ipv4_address(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


def _is_ipv6_address(value: str) -> bool:
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


# --- domains ------------------------------------------------------------------------------

_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
# Full stops that IDNA treats as label separators (ideographic, fullwidth, halfwidth).
_IDNA_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
_DOMAIN_EXPECTED = (
    "a fully qualified domain name such as example.com: at least two labels of 1-63 "
    "letters, digits or hyphens (not at either end), at most 253 characters in all"
)


def _normalise_domain(value: str) -> str:
    return _canonical_domain(IndicatorKind.DOMAIN, value, value)


def _canonical_domain(kind: IndicatorKind, value: str, host: str) -> str:
    """Lowercase, drop one trailing dot, punycode unicode labels, then check LDH rules.

    ``value`` is what the user gave (quoted in errors); ``host`` the name to check, which
    differs when the domain is the host of a URL.
    """

    def fail(problem: str, expected: str = _DOMAIN_EXPECTED) -> InvalidIndicator:
        if "[.]" in host or "(.)" in host:
            problem += " (write '.' rather than a defanged '[.]' or '(.)')"
        return _invalid(kind, value, problem, expected)

    if any(ch.isspace() or not ch.isprintable() for ch in host):
        raise fail("it contains whitespace, control or invisible characters")
    name = host.translate(_IDNA_DOTS).lower()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise fail("the domain name is empty")
    labels: list[str] = []
    for label in name.split("."):
        if not label:
            raise fail("it has an empty label (a leading dot or two dots in a row)")
        if not label.isascii():
            try:
                label = encodings.idna.ToASCII(label).decode("ascii")
            except (UnicodeError, ValueError):
                raise fail(
                    f"the label {_quote(label)} cannot be encoded with IDNA",
                    "letters, digits and hyphens, or unicode that IDNA can convert to punycode",
                ) from None
        if len(label) > _MAX_LABEL_LENGTH:
            raise fail(f"the label {_quote(label)} is longer than {_MAX_LABEL_LENGTH} characters")
        if not _LDH_LABEL.fullmatch(label):
            raise fail(
                f"the label {_quote(label)} has a character other than a-z, 0-9 and '-', "
                f"or starts or ends with '-'"
            )
        if label.startswith("xn--"):
            try:
                encodings.idna.ToUnicode(label)
            except (UnicodeError, ValueError):
                raise fail(f"the label {_quote(label)} is not valid punycode") from None
        labels.append(label)
    canonical = ".".join(labels)
    if len(canonical) > _MAX_DOMAIN_LENGTH:
        raise fail(f"it is {len(canonical)} characters long, more than {_MAX_DOMAIN_LENGTH}")
    if len(labels) < 2:
        raise fail("it has a single label")
    if labels[-1].isdigit():
        if _is_ipv4_address(name):
            raise fail("this is an IPv4 address", "kind 'ipv4' for it")
        raise fail(f"the top-level domain {_quote(labels[-1])} is all digits")
    return canonical


# --- URLs ---------------------------------------------------------------------------------

_URL_SCHEMES = {
    "http": "http",
    "https": "https",
    "ftp": "ftp",
    "ftps": "ftps",
    "hxxp": "http",
    "hxxps": "https",
}
_URL_SPLIT = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):(.*)", re.DOTALL)
_URL_EXPECTED = (
    "an absolute URL with scheme http, https, ftp, ftps, hxxp or hxxps and a host, "
    "such as https://example.com/path"
)


def _normalise_url(value: str) -> str:
    """Check scheme and host; lowercase both, refang hxxp(s), keep the rest as given.

    Only the scheme and the authority are normalised: path, query and fragment are exactly
    what the sender saw, except that an empty path becomes "/" (the same resource).
    """
    kind = IndicatorKind.URL
    if len(value) > _MAX_URL_LENGTH:
        raise _invalid(
            kind,
            value,
            f"it is {len(value)} characters long",
            f"at most {_MAX_URL_LENGTH} characters",
        )
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise _invalid(
            kind,
            value,
            "it contains whitespace, control or invisible characters",
            f"{_URL_EXPECTED}, with spaces percent-encoded as %20",
        )
    match = _URL_SPLIT.fullmatch(value)
    if match is None:
        hint = "it has no scheme"
        if "." in value and not value.startswith("/"):
            hint += " (for a bare domain use kind 'domain')"
        raise _invalid(kind, value, hint, _URL_EXPECTED)
    scheme_given, rest = match.group(1), match.group(2)
    scheme = _URL_SCHEMES.get(scheme_given.lower())
    if scheme is None:
        raise _invalid(
            kind, value, f"the scheme {_quote(scheme_given)} is not allowed", _URL_EXPECTED
        )
    if not rest.startswith("//"):
        raise _invalid(kind, value, "it has no host ('//' must follow the scheme)", _URL_EXPECTED)
    rest = rest[2:]
    end = len(rest)
    for separator in "/?#":
        found = rest.find(separator)
        if found != -1:
            end = min(end, found)
    authority, tail = rest[:end], rest[end:]
    if not tail.startswith("/"):
        tail = "/" + tail
    return f"{scheme}://{_canonical_authority(value, authority)}{tail}"


def _canonical_authority(value: str, authority: str) -> str:
    """Normalise ``[userinfo@]host[:port]``: host checked as a domain or an IP address."""
    kind = IndicatorKind.URL
    userinfo, at, hostport = authority.rpartition("@")
    if hostport.startswith("["):
        close = hostport.find("]")
        if close == -1:
            raise _invalid(
                kind,
                value,
                "the '[' of an IPv6 host is not closed",
                "an IPv6 host in brackets, such as http://[2001:db8::1]/",
            )
        literal, after = hostport[1:close], hostport[close + 1 :]
        if "%" in literal or not _is_ipv6_address(literal):
            raise _invalid(
                kind,
                value,
                f"the bracketed host {_quote(literal)} is not an IPv6 address",
                "an IPv6 host in brackets, such as http://[2001:db8::1]/",
            )
        host = f"[{ipaddress.IPv6Address(literal).compressed}]"
        if after and not after.startswith(":"):
            raise _invalid(kind, value, "unexpected text after the IPv6 host", _URL_EXPECTED)
        port = after[1:] if after else None
    else:
        if hostport.count(":") > 1:
            raise _invalid(
                kind,
                value,
                "an IPv6 host must be written in brackets",
                "a host such as http://[2001:db8::1]/",
            )
        name, colon, port_text = hostport.partition(":")
        port = port_text if colon else None
        if not name:
            raise _invalid(kind, value, "it has no host", _URL_EXPECTED)
        if _is_ipv4_address(name):
            host = ipaddress.IPv4Address(name).compressed
        else:
            host = _canonical_domain(kind, value, name)
    if port:
        if not port.isascii() or not port.isdigit() or not 0 < int(port) <= 65535:
            raise _invalid(
                kind, value, f"the port {_quote(port)} is not valid", "a port from 1 to 65535"
            )
        host += f":{int(port)}"
    return f"{userinfo}{at}{host}"


# --- hashes and malware names -------------------------------------------------------------

_HASH_LENGTHS = {IndicatorKind.MD5: 32, IndicatorKind.SHA1: 40, IndicatorKind.SHA256: 64}
_HEX = re.compile(r"[0-9a-fA-F]+")


def _hash_normaliser(kind: IndicatorKind) -> Callable[[str], str]:
    length = _HASH_LENGTHS[kind]

    def normalise(value: str) -> str:
        """Exactly ``length`` hex digits, lowercased so that case never splits duplicates."""
        if not _HEX.fullmatch(value):
            raise _invalid(
                kind,
                value,
                "it contains characters other than hexadecimal digits",
                f"exactly {length} hexadecimal characters (0-9, a-f)",
            )
        if len(value) != length:
            problem = f"it has {len(value)} characters"
            for other, other_length in _HASH_LENGTHS.items():
                if other_length == len(value):
                    problem += f" (the length of a {other} hash: use kind '{other}')"
            raise _invalid(
                kind, value, problem, f"exactly {length} hexadecimal characters (0-9, a-f)"
            )
        return value.lower()

    return normalise


def _normalise_malware(value: str) -> str:
    """A family or sample name as given (case kept), at most 128 printable characters."""
    kind = IndicatorKind.MALWARE
    expected = f"a malware name of 1-{_MAX_MALWARE_LENGTH} printable characters, such as Emotet"
    if not value.isprintable():
        raise _invalid(kind, value, "it contains control or non-printable characters", expected)
    if len(value) > _MAX_MALWARE_LENGTH:
        raise _invalid(kind, value, f"it is {len(value)} characters long", expected)
    return value


_NORMALISERS: dict[IndicatorKind, Callable[[str], str]] = {
    IndicatorKind.IPV4: _normalise_ipv4,
    IndicatorKind.IPV6: _normalise_ipv6,
    IndicatorKind.IPV4_RANGE: _normalise_ipv4_range,
    IndicatorKind.IPV6_RANGE: _normalise_ipv6_range,
    IndicatorKind.DOMAIN: _normalise_domain,
    IndicatorKind.URL: _normalise_url,
    IndicatorKind.MD5: _hash_normaliser(IndicatorKind.MD5),
    IndicatorKind.SHA1: _hash_normaliser(IndicatorKind.SHA1),
    IndicatorKind.SHA256: _hash_normaliser(IndicatorKind.SHA256),
    IndicatorKind.MALWARE: _normalise_malware,
}

_EXPECTED: dict[IndicatorKind, str] = {
    IndicatorKind.IPV4: "an IPv4 address such as 192.0.2.1",
    IndicatorKind.IPV6: "an IPv6 address such as 2001:db8::1",
    IndicatorKind.IPV4_RANGE: "an IPv4 CIDR network such as 192.0.2.0/24",
    IndicatorKind.IPV6_RANGE: "an IPv6 CIDR network such as 2001:db8::/32",
    IndicatorKind.DOMAIN: _DOMAIN_EXPECTED,
    IndicatorKind.URL: _URL_EXPECTED,
    IndicatorKind.MD5: "exactly 32 hexadecimal characters (0-9, a-f)",
    IndicatorKind.SHA1: "exactly 40 hexadecimal characters (0-9, a-f)",
    IndicatorKind.SHA256: "exactly 64 hexadecimal characters (0-9, a-f)",
    IndicatorKind.MALWARE: f"a malware name of 1-{_MAX_MALWARE_LENGTH} printable characters",
}
