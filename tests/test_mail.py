"""Mail delivery (issue 17): ``SmtpChannel`` against a real SMTP server process (aiosmtpd, in
``tests.support.smtp_server``) that accepts, defers and refuses, and the demo's ``FileOutbox``."""

from __future__ import annotations

import email
import email.policy
import socket
from pathlib import Path

import pytest

from infra.channels import DeliveryResult, Outcome, OutgoingMessage
from infra.mail import FileOutbox, SmtpChannel, build_email
from tests.support.smtp_server import SmtpServer, make_ca, smtp_server

SENDER = "alerts@pocdir.test"


def message(n: int, to: str, **changes: object) -> OutgoingMessage:
    fields: dict[str, object] = {
        "message_id": f"<alert-{n}.notification@pocdir.test>",
        "to": to,
        "subject": f"Notification N-{n}: acknowledge by 2026-12-02 09:00 (Europe/Paris)",
        "body": f"Reference N-{n}. Acknowledge it in the directory.",
    }
    fields.update(changes)
    return OutgoingMessage(**fields)  # type: ignore[arg-type]


def channel(server: SmtpServer, **settings: object) -> SmtpChannel:
    options: dict[str, object] = {"starttls": server.ca_file is not None, "timeout": 10.0}
    if server.ca_file is not None:
        options["ca_file"] = server.ca_file
    options.update(settings)
    return SmtpChannel(server.host, server.port, SENDER, **options)  # type: ignore[arg-type]


def outcomes(results: list[DeliveryResult]) -> list[Outcome]:
    return [r.outcome for r in results]


@pytest.mark.slow
def test_sent_refused_and_deferred_then_sent(tmp_path: Path) -> None:
    with smtp_server(tmp_path) as server:
        server.set_rules(refuse={"gone@mfa.example"}, defer={"grey@cert.example": 2})
        smtp = channel(server)
        batch = [
            message(1, "poc@cert.example"),
            message(2, "gone@mfa.example"),
            message(3, "grey@cert.example"),
        ]
        first = smtp.deliver_many(batch)
        assert outcomes(first) == [Outcome.SENT, Outcome.REFUSED, Outcome.DEFERRED]
        assert (first[1].code, first[1].detail) == (550, "550 5.1.1 at RCPT")
        assert (first[2].code, first[2].detail) == (451, "451 4.7.1 at RCPT")
        # The server's text names the address; the results never do.
        for result in first:
            assert "@" not in result.detail and "example" not in result.detail

        assert outcomes(smtp.deliver_many([batch[2]])) == [Outcome.DEFERRED]
        assert outcomes(smtp.deliver_many([batch[2]])) == [Outcome.SENT]
        arrived = server.messages()
        assert [m.recipients for m in arrived] == [["poc@cert.example"], ["grey@cert.example"]]
        assert [m.message["Message-ID"] for m in arrived] == [
            "<alert-1.notification@pocdir.test>",
            "<alert-3.notification@pocdir.test>",
        ]
        assert all(m.mail_from == SENDER for m in arrived)


@pytest.mark.slow
def test_defer_all_then_accept(tmp_path: Path) -> None:
    with smtp_server(tmp_path) as server:
        server.set_rules(defer_all=2)
        smtp = channel(server)
        batch = [message(n, f"poc{n}@cert.example") for n in range(3)]
        assert outcomes(smtp.deliver_many(batch)) == [
            Outcome.DEFERRED,
            Outcome.DEFERRED,
            Outcome.SENT,
        ]
        assert outcomes(smtp.deliver_many(batch[:2])) == [Outcome.SENT, Outcome.SENT]
        assert len(server.messages()) == 3


@pytest.mark.slow
def test_one_session_carries_a_batch_in_order(tmp_path: Path) -> None:
    with smtp_server(tmp_path) as server:
        batch = [message(n, f"poc{n}@cert.example") for n in range(25)]
        assert outcomes(channel(server).deliver_many(batch)) == [Outcome.SENT] * 25
        assert [m.recipients[0] for m in server.messages()] == [m.to for m in batch]


@pytest.mark.slow
def test_lost_connection_defers_the_rest_of_the_batch(tmp_path: Path) -> None:
    with smtp_server(tmp_path) as server:
        server.set_rules(drop={"cut@cert.example"})
        batch = [
            message(1, "poc@cert.example"),
            message(2, "cut@cert.example"),
            message(3, "other@cert.example"),
        ]
        results = channel(server).deliver_many(batch)
        assert outcomes(results) == [Outcome.SENT, Outcome.DEFERRED, Outcome.DEFERRED]
        assert results[2].detail == "connection lost"
        assert [m.recipients for m in server.messages()] == [["poc@cert.example"]]


@pytest.mark.slow
def test_server_down_defers_everything_then_restart_delivers(tmp_path: Path) -> None:
    with smtp_server(tmp_path) as server:
        smtp = channel(server)
        batch = [message(n, f"poc{n}@cert.example") for n in range(3)]
        server.kill()
        results = smtp.deliver_many(batch)
        assert outcomes(results) == [Outcome.DEFERRED] * 3
        assert {r.detail for r in results} == {"connection refused"}
        server.restart()
        assert outcomes(smtp.deliver_many(batch)) == [Outcome.SENT] * 3
        assert len(server.messages()) == 3


def test_a_server_that_never_answers_is_a_timeout(tmp_path: Path) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        smtp = SmtpChannel("127.0.0.1", port, SENDER, starttls=False, timeout=0.3)
        results = smtp.deliver_many([message(1, "a@cert.example"), message(2, "b@cert.example")])
    assert outcomes(results) == [Outcome.DEFERRED, Outcome.DEFERRED]
    assert {r.detail for r in results} == {"timeout"}


@pytest.mark.slow
def test_starttls_verifies_the_server_against_the_ca(tmp_path: Path) -> None:
    with smtp_server(tmp_path, tls=True) as server:
        assert outcomes(channel(server).deliver_many([message(1, "poc@cert.example")])) == [
            Outcome.SENT
        ]
        other_ca = make_ca(tmp_path / "other")
        for ca_file in (other_ca, None):  # a CA that did not sign it, and the system's CAs
            results = channel(server, ca_file=ca_file).deliver_many(
                [message(2, "poc@cert.example"), message(3, "poc@cert.example")]
            )
            assert outcomes(results) == [Outcome.DEFERRED, Outcome.DEFERRED]
            assert results[0].detail == "TLS certificate not verified"
        assert [m.message["Message-ID"] for m in server.messages()] == [
            "<alert-1.notification@pocdir.test>"
        ]


@pytest.mark.slow
def test_starttls_checks_the_host_name(tmp_path: Path) -> None:
    with smtp_server(tmp_path, tls=True) as server:
        # Same server and CA, but reached as "localhost": the certificate names 127.0.0.1.
        smtp = SmtpChannel("localhost", server.port, SENDER, ca_file=server.ca_file, timeout=10)
        results = smtp.deliver_many([message(1, "poc@cert.example")])
        assert outcomes(results) == [Outcome.DEFERRED]
        assert results[0].detail == "TLS certificate not verified"
        assert server.messages() == []


@pytest.mark.slow
def test_starttls_required_but_not_offered_sends_nothing(tmp_path: Path) -> None:
    with smtp_server(tmp_path) as server:
        results = channel(server, starttls=True).deliver_many([message(1, "poc@cert.example")])
        assert results == [DeliveryResult(Outcome.DEFERRED, None, "STARTTLS not offered")]
        assert server.messages() == []


@pytest.mark.slow
def test_auth(tmp_path: Path) -> None:
    with smtp_server(tmp_path, tls=True, auth=("relay", "s3cret")) as server:
        good = channel(server, username="relay", password="s3cret")
        assert outcomes(good.deliver_many([message(1, "poc@cert.example")])) == [Outcome.SENT]

        wrong = channel(server, username="relay", password="guess").deliver_many(
            [message(2, "poc@cert.example")]
        )
        assert outcomes(wrong) == [Outcome.DEFERRED]
        assert (wrong[0].code, wrong[0].detail) == (535, "535 5.7.8 at AUTH")

        anonymous = channel(server).deliver_many([message(3, "poc@cert.example")])
        assert outcomes(anonymous) == [Outcome.DEFERRED]
        assert anonymous[0].code == 530
        assert len(server.messages()) == 1


def test_authentication_without_tls_is_refused() -> None:
    with pytest.raises(ValueError, match="STARTTLS"):
        SmtpChannel("127.0.0.1", 25, SENDER, starttls=False, username="u", password="p")
    with pytest.raises(ValueError, match="sender"):
        SmtpChannel("127.0.0.1", 25, "two@a.example, three@b.example")


@pytest.mark.slow
def test_headers_as_given(tmp_path: Path) -> None:
    with smtp_server(tmp_path) as server:
        alert = message(
            7,
            "poc@cert.example",
            message_id="<" + "c" * 90 + ".check.FRA.2026@pocdir.test>",
            language="fr",
            headers={"X-Pocdir-Reference": "N-7"},
        )
        assert outcomes(channel(server).deliver_many([alert])) == [Outcome.SENT]
        (got,) = server.messages()
        mail = got.message
        assert mail["Message-ID"] == alert.message_id
        assert mail["Content-Language"] == "fr"
        assert mail["Auto-Submitted"] == "auto-generated"
        assert mail["From"] == SENDER
        assert mail["To"] == "poc@cert.example"
        assert mail["X-Pocdir-Reference"] == "N-7"
        assert mail["Date"] is not None
        assert mail.get_content_type() == "text/plain"
        assert mail.get_content_charset() == "utf-8"


TEXTS = {
    "ar": ("إشعار N-9: يرجى الإقرار قبل الموعد", "المرجع N-9. يرجى الإقرار في الدليل."),
    "zh": ("通知 N-9：请在截止时间前确认", "参考编号 N-9。请在名录中确认。"),
    "ru": ("Уведомление N-9: подтвердите до срока", "Ссылка N-9. Подтвердите в справочнике."),
}


@pytest.mark.slow
@pytest.mark.parametrize("language", sorted(TEXTS))
def test_utf8_round_trip(tmp_path: Path, language: str) -> None:
    subject, body = TEXTS[language]
    with smtp_server(tmp_path) as server:
        alert = message(9, "poc@cert.example", subject=subject, body=body, language=language)
        assert outcomes(channel(server).deliver_many([alert])) == [Outcome.SENT]
        (got,) = server.messages()
        assert got.raw.isascii()  # encoded words and base64: no 8BITMIME needed
        assert got.message["Subject"] == subject
        assert got.message.get_content().rstrip("\n") == body
        assert got.message["Content-Language"] == language


def test_build_email_refuses_header_injection() -> None:
    with pytest.raises(ValueError, match="Subject"):
        build_email(SENDER, message(1, "poc@cert.example", subject="hi\r\nBcc: x@evil.example"))
    with pytest.raises(ValueError, match="Message-ID"):
        build_email(SENDER, message(1, "poc@cert.example", message_id="no-brackets@x"))
    with pytest.raises(ValueError, match="extra header"):
        build_email(SENDER, message(1, "poc@cert.example", headers={"Message-ID": "<x@y>"}))


def test_file_outbox_is_idempotent_per_message_id(tmp_path: Path) -> None:
    outbox = FileOutbox(tmp_path / "outbox")
    first = message(1, "poc@cert.example", subject="Уведомление N-1")
    again = message(1, "poc@cert.example", subject="Уведомление N-1 (retry)")
    other = message(2, "poc@cert.example")
    assert outcomes(outbox.deliver_many([first, other])) == [Outcome.SENT, Outcome.SENT]
    assert outcomes(outbox.deliver_many([again])) == [Outcome.SENT]
    files = sorted(p.name for p in (tmp_path / "outbox").iterdir())
    assert len(files) == 2 and all(name.endswith(".eml") for name in files)
    saved = email.message_from_bytes(
        outbox.path_for(first).read_bytes(), policy=email.policy.default
    )
    assert saved["Message-ID"] == first.message_id
    assert saved["Subject"] == "Уведомление N-1 (retry)"


def test_file_outbox_names_are_safe_and_distinct(tmp_path: Path) -> None:
    outbox = FileOutbox(tmp_path)
    tricky = [
        message(1, "a@cert.example", message_id="<../../etc/passwd@pocdir.test>"),
        message(2, "a@cert.example", message_id="<a/b@pocdir.test>"),
        message(3, "a@cert.example", message_id="<a_b@pocdir.test>"),
    ]
    outbox.deliver_many(tricky)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 3
    assert all("/" not in n and not n.startswith(".") for n in names)
    assert FileOutbox(tmp_path).path_for(tricky[0]) == outbox.path_for(tricky[0])


@pytest.mark.slow
def test_a_bad_address_is_refused_and_a_bad_message_sends_nothing(tmp_path: Path) -> None:
    with smtp_server(tmp_path) as server:
        smtp = channel(server)
        results = smtp.deliver_many(
            [message(1, "poc@cert.example"), message(2, "a@x.example>\r\nRCPT TO:<b@y.example")]
        )
        assert outcomes(results) == [Outcome.SENT, Outcome.REFUSED]
        assert results[1].detail == "address not valid"
        with pytest.raises(ValueError, match="Subject"):
            smtp.deliver_many(
                [message(3, "poc@cert.example"), message(4, "poc@cert.example", subject="a\nb")]
            )
        assert [m.message["Message-ID"] for m in server.messages()] == [
            "<alert-1.notification@pocdir.test>"
        ]
