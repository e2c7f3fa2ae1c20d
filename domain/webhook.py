"""The webhook a State registers for its own entry (issue 17): where the delivery worker POSTs
its alerts, signed with the server's delivery key (``infra.webhook``).

The URL is checked here, when the State sets it, so that a bad one is refused with a message
at once rather than failing quietly at every delivery. A host given as a literal IP address
must be public (``is_public_address``); a host name is resolved, and its addresses checked
by the same rule, at each delivery, since DNS may answer otherwise later.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final
from urllib.parse import SplitResult, urlsplit

from domain.errors import ValidationError

__all__ = ["MAX_WEBHOOK_URL_LENGTH", "check_webhook_url", "is_public_address"]

MAX_WEBHOOK_URL_LENGTH: Final = 2000

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: RFC 6598 shared address space (carrier-grade NAT): not global, yet Python's ``is_private``
#: says False for it on 3.11, so it is named.
_CGNAT: Final = ipaddress.ip_network("100.64.0.0/10")
#: RFC 6052 NAT64 prefix: the IPv4 address it embeds is the one reached.
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")
#: A DNS host name in ASCII (international names in their ``xn--`` form), optionally with
#: the root's trailing dot.
_HOST_NAME: Final = re.compile(
    r"(?=.{1,253}\.?$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?",
    re.ASCII | re.IGNORECASE,
)


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, Teredo, NAT64), if any:
    a packet to it ends up there, so that address is the one to judge."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public_address(address: IPAddress) -> bool:
    """Whether an alert may be sent to ``address``: not loopback, private, link-local,
    reserved, multicast, unspecified, shared (CGNAT 100.64/10), nor an IPv6 address standing
    for such an IPv4 one. A webhook must not let a State make the server reach its own
    network (server-side request forgery)."""
    embedded = _embedded_ipv4(address)
    if embedded is not None and not is_public_address(embedded):
        return False
    if (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
        or (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT)
    ):
        return False
    return embedded is not None or address.is_global


def _literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def _port(parts: SplitResult) -> int | None:
    try:
        port = parts.port
    except ValueError:
        raise ValidationError("the webhook URL's port must be a number from 1 to 65535") from None
    if port is not None and not 1 <= port <= 65535:
        raise ValidationError("the webhook URL's port must be a number from 1 to 65535")
    return port


def check_webhook_url(url: str, *, allow_private: bool = False) -> str:
    """The URL, stripped, if alerts may be POSTed to it; else ``ValidationError`` saying what
    to fix. https only (alerts are signed, not encrypted: TLS keeps them private), with a
    host, no user name or password (they would be kept in the record), no fragment, at most
    ``MAX_WEBHOOK_URL_LENGTH`` characters of printable ASCII. A literal IP host must be
    public unless ``allow_private`` (``POCDIR_WEBHOOK_ALLOW_PRIVATE``, for tests)."""
    if not isinstance(url, str):
        raise ValidationError("the webhook URL must be a string")
    url = url.strip()
    if not url:
        raise ValidationError("give the webhook URL, https://host/path")
    if len(url) > MAX_WEBHOOK_URL_LENGTH:
        raise ValidationError(
            f"the webhook URL has {len(url)} characters; at most {MAX_WEBHOOK_URL_LENGTH}"
        )
    if not url.isascii() or not url.isprintable() or " " in url:
        raise ValidationError(
            "the webhook URL must be printable ASCII without spaces: percent-encode the path "
            "and give an international host name in its xn-- form"
        )
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValidationError("the webhook URL is not a valid URL") from None
    if parts.scheme.lower() != "https":
        raise ValidationError("the webhook URL must start with https:// (alerts go over TLS)")
    if "@" in parts.netloc:
        raise ValidationError("the webhook URL must not carry a user name or password")
    if parts.fragment or url.endswith("#"):
        raise ValidationError("the webhook URL must not have a #fragment")
    host = parts.hostname or ""
    if not host:
        raise ValidationError("the webhook URL must name a host: https://host/path")
    _port(parts)
    address = _literal_address(host)
    if address is None:
        last_label = host.rstrip(".").rsplit(".", 1)[-1]
        if not _HOST_NAME.fullmatch(host) or last_label.isdigit() or last_label.startswith("0x"):
            # A numeric last label is an IPv4 address in a form resolvers accept ("127.1",
            # "2130706433", "0x7f.0.0.1"): never a name, and a way around the address rule.
            raise ValidationError("the webhook URL's host is not a valid DNS name or IP address")
        if not allow_private and (
            host == "localhost" or host.endswith((".localhost", ".localhost."))
        ):
            raise ValidationError("the webhook URL must not name localhost")
    elif "%" in host:
        raise ValidationError("the webhook URL must not carry an IPv6 zone (%...)")
    elif not allow_private and not is_public_address(address):
        raise ValidationError(
            "the webhook URL's host is a loopback, private, link-local or reserved address; "
            "give a public address or host name"
        )
    return url
