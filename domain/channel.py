"""Protected channels (R14): when plain HTTP may be served, and which client certificate may
carry which credential.

Both rules are decided here and only here: ``pocdir serve`` asks ``check_plain_http`` before
it listens, and the request gate asks ``check_certificate_binding`` for every authenticated
request that came with a client certificate.
"""

from __future__ import annotations

import ipaddress

from domain.errors import NotPermitted, ValidationError
from domain.values import Principal, Role

#: The prefix of a State certificate's subject common name: ``state:FRA``. The other roles'
#: certificates name the role alone (``secretariat``, ``auditor``, ``reviewer``).
STATE_PREFIX = "state:"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or ``localhost``: only this machine can reach the listener."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def check_plain_http(host: str, terminated_by_proxy: bool) -> None:
    """Refuse to serve plain HTTP where another machine could reach it, unless the operator
    has said that a proxy in front terminates TLS: tokens and exchanges would cross the
    network in the clear (R14)."""
    if terminated_by_proxy or is_loopback(host):
        return
    raise ValidationError(
        f"refusing plain HTTP on {host}: set POCDIR_TLS_CERT_FILE and POCDIR_TLS_KEY_FILE, "
        "bind to 127.0.0.1, or set POCDIR_TLS_TERMINATED_BY_PROXY=true behind a TLS proxy"
    )


def certificate_name(principal: Principal) -> str:
    """The subject common name a client certificate for ``principal`` carries."""
    if principal.role is Role.STATE:
        return f"{STATE_PREFIX}{principal.state}"
    return str(principal.role)


def check_certificate_binding(principal: Principal, common_name: str | None) -> None:
    """A token is accepted only over a client certificate issued for the same State (or,
    for the other roles, the same role): a stolen token alone, or one State's certificate
    with another's token, is not enough (the certificate is a second factor)."""
    expected = certificate_name(principal)
    if common_name != expected:
        shown = "no common name" if common_name is None else f"{common_name[:64]!r}"
        raise NotPermitted(
            f"the client certificate is for {shown}, but the token is for {expected!r}: "
            "use the certificate issued for this token's State or role"
        )
