"""Alerts by e-mail (issue 17): over SMTP to the contact's mail server, or to files for the demo.

``SmtpChannel`` hands a batch of messages to one SMTP server (the Secretariat's relay) in one
session. It uses STARTTLS with the server's certificate verified (host name included) and
authenticates only inside TLS, so a password never crosses the network in clear. Each
message's result comes from the server's reply: 2xx is ``SENT``, 4xx (and anything that ends
the session: 421, a timeout, a refused or reset connection, a TLS failure) is ``DEFERRED``, a
5xx reply for the recipient is ``REFUSED``. The result's ``detail`` keeps only the reply code
and enhanced status code (``"550 5.1.1 at RCPT"``): servers echo the address in their free
text, and addresses must not reach the record or the logs.

``FileOutbox`` writes each message as a ``.eml`` file named from its Message-ID, so ``make
run`` shows what the demo would have sent, and a message resent after a crash (same
Message-ID) replaces its file instead of adding a second one.

Bounces that a mail server sends later by mail are not read: a message is ``SENT`` once the
relay accepted it.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
import hashlib
import os
import re
import smtplib
import ssl
import uuid
from collections.abc import Sequence
from email.message import EmailMessage
from pathlib import Path

from infra.channels import DeliveryResult, Outcome, OutgoingMessage

#: Headers ``build_email`` sets itself; a message's extra headers may not replace them.
_OWN_HEADERS = frozenset(
    h.lower()
    for h in (
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "Content-Language",
        "Auto-Submitted",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
    )
)
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")
_MESSAGE_ID = re.compile(r"^<[!-;=?-~]+@[!-;=?-~]+>$")
_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})(?:\s|$)")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._@+-]")
#: Written out with CRLF line ends, as SMTP's DATA wants them; long lines are folded.
_POLICY = email.policy.SMTP.clone(max_line_length=78)


def _check_header_value(name: str, value: str) -> None:
    if "\r" in value or "\n" in value:
        raise ValueError(f"the {name} header may not contain a line break")


def build_email(
    sender: str, message: OutgoingMessage, *, date: dt.datetime | None = None
) -> EmailMessage:
    """The RFC 5322 message for ``message``: UTF-8 plain text, marked as sent by a machine
    (``Auto-Submitted``, so auto-responders stay quiet), with the caller's Message-ID kept
    exactly so a resent alert can be recognised as the same one.

    Raises ``ValueError`` for a message that cannot be written as mail (a line break in a
    header, a Message-ID without angle brackets, an extra header replacing one set here)."""
    if not _MESSAGE_ID.match(message.message_id):
        raise ValueError("the Message-ID must look like <local@domain>")
    for name, value in (("From", sender), ("To", message.to), ("Subject", message.subject)):
        _check_header_value(name, value)
    _check_header_value("Content-Language", message.language)
    mail = EmailMessage(policy=email.policy.default)
    body = message.body if message.body.endswith("\n") else message.body + "\n"
    # Content first: set_content drops every Content-* header set before it. Base64 for
    # non-ASCII text, so it passes servers without 8BITMIME unchanged.
    mail.set_content(body, charset="utf-8", cte=None if body.isascii() else "base64")
    mail["From"] = sender
    mail["To"] = message.to
    mail["Subject"] = message.subject
    mail["Date"] = email.utils.format_datetime(date or dt.datetime.now(dt.UTC))
    mail["Message-ID"] = message.message_id
    mail["Content-Language"] = message.language
    mail["Auto-Submitted"] = "auto-generated"
    for name, value in message.headers.items():
        if not _HEADER_NAME.match(name) or name.lower() in _OWN_HEADERS:
            raise ValueError(f"extra header {name!r} is not allowed")
        _check_header_value(name, value)
        mail[name] = value
    return mail


def _address_ok(address: str) -> bool:
    """One plain address (``local@domain``), nothing an SMTP command could be bent with."""
    if any(c in address for c in "\r\n<> ,;") or address.count("@") != 1:
        return False
    local, domain = address.split("@")
    return bool(local) and bool(domain)


def _reply(code: int, text: bytes | str, stage: str) -> str:
    """``"451 4.7.1 at RCPT"``: the code, the enhanced status code if the server gave one, and
    the stage, but none of the server's free text (it often repeats the address)."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    found = _ENHANCED.match(text.strip())
    return f"{code} {found.group(1)} at {stage}" if found else f"{code} at {stage}"


def _outcome(code: int) -> Outcome:
    if 200 <= code < 300:
        return Outcome.SENT
    if 500 <= code < 600:
        return Outcome.REFUSED
    return Outcome.DEFERRED


def _failure(error: OSError) -> str:
    """A fixed short reason for an error that ends the session."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return "TLS certificate not verified"
    if isinstance(error, ssl.SSLError):
        return "TLS failure"
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ConnectionResetError):
        return "connection reset"
    if isinstance(error, smtplib.SMTPServerDisconnected):
        # smtplib turns a timeout or reset while reading a reply into this; keep the cause.
        cause = error.__cause__ or error.__context__
        if isinstance(cause, OSError) and not isinstance(cause, smtplib.SMTPException):
            return _failure(cause)
        return "connection lost"
    return "connection failed"


class _SessionOver(Exception):
    """The session cannot carry more messages: ``result`` is for the message in hand,
    ``rest`` for every message after it (by default, the same deferral)."""

    def __init__(self, result: DeliveryResult, rest: DeliveryResult | None = None) -> None:
        super().__init__(result.detail)
        self.result = result
        self.rest = rest or DeliveryResult(Outcome.DEFERRED, result.code, result.detail)


class SmtpChannel:
    """Mail over SMTP through one server (usually the Secretariat's relay)."""

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        starttls: bool = True,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        ca_file: Path | None = None,
        local_hostname: str | None = None,
    ) -> None:
        """Raises ``ValueError`` for settings that cannot work: authentication without TLS
        (the password would cross the network in clear), a username without a password, a
        sender that is not one address."""
        if username is not None and not starttls:
            raise ValueError("SMTP authentication needs STARTTLS; do not turn STARTTLS off")
        if username is not None and password is None:
            raise ValueError("an SMTP username needs a password")
        if not (_address_ok(sender) and sender.isascii()):
            raise ValueError("the SMTP sender must be one address like alerts@example.org")
        if not 0 < port < 65536:
            raise ValueError("the SMTP port must be between 1 and 65535")
        if timeout <= 0:
            raise ValueError("the SMTP timeout must be positive")
        self.host = host
        self.port = port
        self.sender = sender
        self.starttls = starttls
        self.username = username
        self.password = password
        self.timeout = timeout
        self.ca_file = ca_file
        self.local_hostname = local_hostname

    def _tls_context(self) -> ssl.SSLContext:
        """The server's certificate must chain to ``ca_file`` (or the system's CAs) and name
        the host we connected to."""
        context = ssl.create_default_context(
            cafile=str(self.ca_file) if self.ca_file is not None else None
        )
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
        return context

    def _open(self) -> smtplib.SMTP:
        """Connect, greet, STARTTLS, authenticate. Raises ``_SessionOver`` with the reason
        every message of the batch is deferred."""
        try:
            smtp = smtplib.SMTP(
                self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout
            )
        except smtplib.SMTPConnectError as error:
            raise _SessionOver(
                self._deferred(error.smtp_code, error.smtp_error, "greeting")
            ) from None
        except OSError as error:
            raise _SessionOver(DeliveryResult(Outcome.DEFERRED, None, _failure(error))) from None
        stage = "EHLO"
        try:
            smtp.ehlo_or_helo_if_needed()
            if self.starttls:
                stage = "STARTTLS"
                if not smtp.has_extn("starttls"):
                    raise _SessionOver(
                        DeliveryResult(Outcome.DEFERRED, None, "STARTTLS not offered")
                    )
                smtp.starttls(context=self._tls_context())
                stage = "EHLO"
                smtp.ehlo()
            if self.username is not None:
                stage = "AUTH"
                if not smtp.has_extn("auth"):
                    raise _SessionOver(DeliveryResult(Outcome.DEFERRED, None, "AUTH not offered"))
                smtp.login(self.username, self.password or "")
        except smtplib.SMTPResponseException as error:
            self._close(smtp)
            # A refused login or STARTTLS is the relay's settings, not the recipient's
            # address: deferred, so the messages go once the operator fixes it.
            raise _SessionOver(self._deferred(error.smtp_code, error.smtp_error, stage)) from None
        except (OSError, smtplib.SMTPException) as error:
            self._close(smtp)
            reason = _failure(error) if isinstance(error, OSError) else f"{stage} failed"
            raise _SessionOver(DeliveryResult(Outcome.DEFERRED, None, reason)) from None
        except _SessionOver:
            self._close(smtp)
            raise
        return smtp

    @staticmethod
    def _deferred(code: int, text: bytes | str, stage: str) -> DeliveryResult:
        return DeliveryResult(Outcome.DEFERRED, code, _reply(code, text, stage))

    @staticmethod
    def _close(smtp: smtplib.SMTP) -> None:
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            smtp.close()

    def _transaction(
        self, smtp: smtplib.SMTP, message: OutgoingMessage, data: bytes | None
    ) -> DeliveryResult:
        """MAIL FROM, RCPT TO, DATA for one message (``data`` None: its address is not
        valid). A 421 reply or a broken connection raises ``_SessionOver``; any other failure
        resets the transaction for the next."""
        if data is None:
            return DeliveryResult(Outcome.REFUSED, None, "address not valid")
        options: list[str] = []
        if not message.to.isascii():
            if not smtp.has_extn("smtputf8"):
                return DeliveryResult(Outcome.REFUSED, None, "address needs SMTPUTF8")
            options.append("SMTPUTF8")
        try:
            code, text = smtp.mail(self.sender, options)
            if code == 421:
                raise _SessionOver(self._deferred(code, text, "MAIL"))
            if not 200 <= code < 300:
                # The sender was turned down: not the recipient's fault, so never REFUSED.
                return self._reset(smtp, self._deferred(code, text, "MAIL"))
            code, text = smtp.rcpt(message.to)
            if code == 421:
                raise _SessionOver(self._deferred(code, text, "RCPT"))
            if not 200 <= code < 300:
                return self._reset(
                    smtp, DeliveryResult(_outcome(code), code, _reply(code, text, "RCPT"))
                )
            reply: tuple[int, bytes | str]
            try:
                reply = smtp.data(data)
            except smtplib.SMTPDataError as error:
                reply = (error.smtp_code, error.smtp_error)
            code, answer = reply
            if code == 421:
                raise _SessionOver(self._deferred(code, answer, "DATA"))
            result = DeliveryResult(_outcome(code), code, _reply(code, answer, "DATA"))
            return result if result.outcome is Outcome.SENT else self._reset(smtp, result)
        except (OSError, smtplib.SMTPException) as error:
            reason = _failure(error) if isinstance(error, OSError) else "session failed"
            raise _SessionOver(DeliveryResult(Outcome.DEFERRED, None, reason)) from None

    @staticmethod
    def _reset(smtp: smtplib.SMTP, result: DeliveryResult) -> DeliveryResult:
        """RSET after a failed transaction, so the next message starts clean; returns the
        failed message's ``result``, which stands even if the session ends here."""
        try:
            code, text = smtp.rset()
        except (OSError, smtplib.SMTPException) as error:
            reason = _failure(error) if isinstance(error, OSError) else "session failed"
            raise _SessionOver(result, DeliveryResult(Outcome.DEFERRED, None, reason)) from None
        if code == 421:
            raise _SessionOver(
                result, DeliveryResult(Outcome.DEFERRED, code, _reply(code, text, "RSET"))
            )
        return result

    def deliver_many(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        """One SMTP session for the batch; one result per message, in order. Never raises
        for a delivery failure: once the session is lost, every message it had not yet
        carried is ``DEFERRED`` with the reason.

        Raises ``ValueError``, before sending anything, for a message ``build_email`` cannot
        write (a caller's bug, not a delivery failure). A recipient that is not one plain
        address is ``REFUSED`` ("address not valid"): no server could take it."""
        if not messages:
            return []
        # Every message is written before the session opens: one that cannot be raises
        # here, before anything is sent, rather than halfway through the batch.
        written = [
            build_email(self.sender, m).as_bytes(policy=_POLICY) if _address_ok(m.to) else None
            for m in messages
        ]
        try:
            smtp = self._open()
        except _SessionOver as over:
            return [over.result] * len(messages)
        results: list[DeliveryResult] = []
        try:
            for message, data in zip(messages, written, strict=True):
                try:
                    results.append(self._transaction(smtp, message, data))
                except _SessionOver as over:
                    results.append(over.result)
                    results.extend([over.rest] * (len(messages) - len(results)))
                    break
        finally:
            self._close(smtp)
        return results


def outbox_name(message_id: str) -> str:
    """The file name of a Message-ID in a ``FileOutbox``: readable, safe on any filesystem,
    and the same for the same Message-ID (a hash keeps ids distinct that differ only in
    characters replaced here)."""
    digest = hashlib.sha256(message_id.encode("utf-8")).hexdigest()[:16]
    readable = _SAFE_NAME.sub("_", message_id.strip("<>"))[:80].lstrip(".")
    return f"{readable}-{digest}.eml"


class FileOutbox:
    """Writes each message as a ``.eml`` file in ``directory`` (the demo's ``var/outbox/``)."""

    def __init__(self, directory: Path, sender: str = "pocdir@localhost") -> None:
        self.directory = directory
        self.sender = sender

    def path_for(self, message: OutgoingMessage) -> Path:
        return self.directory / outbox_name(message.message_id)

    def deliver_many(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]:
        """``SENT`` for each message written; a file that cannot be written (a full disk) is
        ``DEFERRED`` with the reason, so it is tried again. The file appears whole or not at
        all (written aside, then renamed over), and a resent Message-ID replaces its file."""
        results: list[DeliveryResult] = []
        for message in messages:
            data = build_email(self.sender, message).as_bytes(policy=_POLICY)
            target = self.path_for(message)
            temporary = self.directory / f".{target.name}.{uuid.uuid4().hex}.tmp"
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                with open(temporary, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temporary, target)
            except OSError:
                temporary.unlink(missing_ok=True)
                results.append(DeliveryResult(Outcome.DEFERRED, None, "outbox not writable"))
                continue
            results.append(DeliveryResult(Outcome.SENT, None, "written"))
        return results
