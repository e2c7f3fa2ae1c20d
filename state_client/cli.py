"""``pocdir-state``: the console script a State official runs on their own machine.

It is built on :class:`state_client.client.StateClient` and never imports the server's layers
(the import-linter contract "state-client"), so it installs and runs without a database.

Exit codes, as ``pocdir``'s (``api/cli/errors.py``) where they mean the same: 0 success;
1 a key the server serves does not verify (a possible key substitution: the line names the
State and the fingerprints expected and served); 2 bad input, settings or key store (one line
saying what to fix), or a write the server refused; 3 the server cannot be reached or failed;
4 the server has no such notification, consent, check or entry.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from domain.errors import PocdirError
from state_client.client import Answer, ServerError, StateClient, Unreachable, check_channel
from state_client.envelope import Content
from state_client.receipts import parse_server_key
from state_client.store import PASSPHRASE_ENV, ClientConfig, KeyStore, StoreError
from state_client.trust import KeySubstituted, TrustStore

EXIT_KEY_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_NOT_FOUND = 4

out = Console()
err = Console(stderr=True, soft_wrap=True)

app = typer.Typer(
    help="A State official's client for pocdir: keys, signed writes, end-to-end encrypted "
    "exchanges (issue 15). Keys and plaintext stay on this machine.",
    no_args_is_help=True,
    add_completion=False,
)
keys_app = typer.Typer(help="This official's keys: generate them, show their fingerprints.")
trust_app = typer.Typer(help="Other States' key fingerprints, confirmed out of band.")
entry_app = typer.Typer(help="This State's entry in the directory.")
consent_app = typer.Typer(help="Consents to share an exchange with a third State (R11).")
checks_app = typer.Typer(help="Communication checks launched by the Secretariat.")
webhook_app = typer.Typer(help="The one webhook your State's alerts are POSTed to, signed.")
app.add_typer(keys_app, name="keys", no_args_is_help=True)
app.add_typer(trust_app, name="trust", no_args_is_help=True)
app.add_typer(entry_app, name="entry", no_args_is_help=True)
app.add_typer(consent_app, name="consent", no_args_is_help=True)
app.add_typer(checks_app, name="checks", no_args_is_help=True)
app.add_typer(webhook_app, name="webhook", no_args_is_help=True)
#: ``pocdir-state check answer CHECK_ID CODE`` reads as the message tells the official.
app.add_typer(checks_app, name="check", no_args_is_help=True, hidden=True)


class _State:
    home: Path | None = None
    json: bool = False


_options = _State()


@app.callback()
def _main(
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            metavar="DIR",
            help="the key store (default $POCDIR_STATE_HOME, else ~/.config/pocdir-state)",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print answers as JSON")] = False,
) -> None:
    _options.home = home
    _options.json = as_json


# -- errors and output -----------------------------------------------------------------------


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """One line on stderr, then exit ``code``."""
    err.print(f"error: {message.splitlines()[0] if message else 'failed'}", markup=False)
    raise typer.Exit(code)


@contextmanager
def errors() -> Iterator[None]:
    """Every error the client may meet becomes one line and its exit code."""
    try:
        yield
    except KeySubstituted as e:
        fail(str(e), EXIT_KEY_REFUSED)
    except ServerError as e:
        if e.status == 404:
            fail(f"the server has no such thing ({e.detail})", EXIT_NOT_FOUND)
        if e.status >= 500:
            fail(f"the server failed ({e.status} {e.error}): {e.detail}", EXIT_UNAVAILABLE)
        fail(f"the server refused ({e.status} {e.error}): {e.detail}")
    except Unreachable as e:
        fail(str(e), EXIT_UNAVAILABLE)
    except (PocdirError, ValueError) as e:
        fail(str(e))


def show(data: Any, line: str) -> None:
    if _options.json:
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    else:
        out.print(line, highlight=False, markup=False, soft_wrap=True)


def show_answer(answer: Answer, line: str) -> None:
    data = {"status": answer.status, "body": answer.body, "receipt": answer.receipt}
    show(data, line + (f"\nreceipt: {answer.receipt}" if answer.receipt else ""))


# -- the key store and the client ------------------------------------------------------------


def store() -> KeyStore:
    return KeyStore.at(_options.home)


def passphrase(confirm: bool = False) -> bytes:
    value = os.environ.get(PASSPHRASE_ENV)
    if value is None:
        if not sys.stdin.isatty():
            fail(f"set {PASSPHRASE_ENV} or run in a terminal to be asked for the passphrase")
        value = typer.prompt("key store passphrase", hide_input=True, confirmation_prompt=confirm)
    if not value:
        fail("the passphrase must not be empty")
    return value.encode("utf-8")


def client() -> StateClient:
    keys = store()
    config = keys.config()
    secret = passphrase()
    return StateClient.from_config(
        config,
        token=keys.token(),
        signing_key=keys.signing_key(secret),
        encryption_key=keys.encryption_key(secret),
        trust=TrustStore(keys),
    )


# -- config, login, keys, trust --------------------------------------------------------------


@app.command("config")
def config_command(
    server: Annotated[str, typer.Option(metavar="URL", help="https://HOST:PORT of pocdir")],
    state: Annotated[str, typer.Option(metavar="STATE", help="your State's alpha-3 code")],
    ca: Annotated[
        Path | None, typer.Option(metavar="FILE", help="the server's CA certificate (PEM)")
    ] = None,
    client_cert: Annotated[
        Path | None, typer.Option(metavar="FILE", help="your client certificate (mTLS)")
    ] = None,
    client_key: Annotated[
        Path | None, typer.Option(metavar="FILE", help="your client certificate's key")
    ] = None,
    server_key: Annotated[
        str | None,
        typer.Option(
            metavar="VKEY",
            help="the server's published verifier key (pocdir keys public): every receipt is "
            "checked against it",
        ),
    ] = None,
) -> None:
    """Say which server to talk to, as which State, and the TLS files."""
    for option, path in (
        ("--ca", ca),
        ("--client-cert", client_cert),
        ("--client-key", client_key),
    ):
        if path is not None and not path.is_file():
            fail(f"{option} {path}: no such file")
    with errors():
        check_channel(server)
        if server_key is not None:
            parse_server_key(server_key)
        config = ClientConfig(
            server=server,
            state=state.upper(),
            ca_file=None if ca is None else str(ca.resolve()),
            client_cert=None if client_cert is None else str(client_cert.resolve()),
            client_key=None if client_key is None else str(client_key.resolve()),
            server_key=server_key,
        )
        path = store().save_config(config)
    show(asdict(config), f"saved {path}")


@app.command("login")
def login() -> None:
    """Store the bearer token the Secretariat issued, read from standard input (mode 0600):
    the token alone, or the whole output of `pocdir principals add`."""
    lines = [line.strip() for line in sys.stdin.read(65536).splitlines() if line.strip()]
    tokens = [line for line in lines if line.startswith("pocdir_")]
    with errors():
        path = store().save_token(tokens[0] if len(tokens) == 1 else " ".join(lines))
    show({"token_file": str(path)}, f"saved the token in {path}")


@keys_app.command("generate")
def keys_generate() -> None:
    """Make this official's signing key and the team's encryption key, passphrase-protected,
    and the public key files to hand to the Secretariat for `pocdir keys bind`."""
    with errors():
        keys = store()
        if keys.has_keys():
            raise StoreError(f"{keys.home} holds keys already; keys are never replaced here")
        keys.generate(passphrase(confirm=True))
        public = keys.public_keys()
        signing_file, encryption_file = keys.public_files()
    show(
        {
            **public,
            "signing_key_file": str(signing_file),
            "encryption_key_file": str(encryption_file),
        },
        f"generated keys in {keys.home}\n"
        f"signing key     {public['signing_fingerprint']}\n"
        f"encryption key  {public['encryption_fingerprint']}\n"
        f"give the Secretariat: pocdir keys bind --state STATE --encryption-key "
        f"{encryption_file} --signing-key {signing_file}",
    )


@keys_app.command("show")
def keys_show(
    server: Annotated[
        bool, typer.Option("--server", help="also the keys the server holds for your State")
    ] = False,
) -> None:
    """Print the fingerprints your mission confirms out of band, and the public keys."""
    with errors():
        keys = store()
        public = keys.public_keys()
        signing_file, encryption_file = keys.public_files()
        served = None
        if server:
            with client() as c:
                served = c.keys(c.state)
    data = {
        **public,
        "signing_key_file": str(signing_file),
        "encryption_key_file": str(encryption_file),
    }
    lines = [
        f"signing key     {public['signing_fingerprint']}  ({signing_file})",
        f"encryption key  {public['encryption_fingerprint']}  ({encryption_file})",
        "public keys, in the forms `pocdir keys bind` takes (the files above hold the same):",
        f"--encryption-key (base64 of the 1216 bytes): {public['encryption_key']}",
        "--signing-key (PEM):",
        public["signing_key_pem"].strip(),
    ]
    if served is not None:
        data["server"] = served
        bound = served["current"]["encryption_key"]["fingerprint"]
        mine = bound == public["encryption_fingerprint"]
        lines.append(
            f"the server holds encryption key {bound} ({'yours' if mine else 'NOT yours'})"
        )
    show(data, "\n".join(lines))


@trust_app.command("add")
def trust_add(
    state: Annotated[str, typer.Argument(metavar="STATE")],
    fingerprint: Annotated[str, typer.Argument(metavar="FINGERPRINT", help="sha256:...")],
) -> None:
    """Pin a State's encryption key fingerprint, confirmed with its mission out of band
    (its onboarding key, or the key of a later re-onboarding)."""
    with errors():
        added = TrustStore(store()).add(state.upper(), fingerprint)
    verb = "pinned" if added else "already pinned"
    show(
        {"state": state.upper(), "fingerprint": fingerprint, "added": added},
        f"{verb} {state.upper()} {fingerprint}",
    )


@trust_app.command("list")
def trust_list() -> None:
    """The pinned fingerprints, by State."""
    with errors():
        pins = TrustStore(store()).all()
    lines = [f"{s}  {f}" for s, fs in pins.items() for f in fs] or ["no State pinned yet"]
    show(pins, "\n".join(lines))


@trust_app.command("check")
def trust_check(state: Annotated[str, typer.Argument(metavar="STATE")]) -> None:
    """Fetch a State's key history and check it as notify would, without sending anything:
    the key it would encrypt to, or why it refuses (exit 1)."""
    with errors(), client() as c:
        trusted = c.trusted_key(state.upper())
    show(
        {
            "state": trusted.state,
            "fingerprint": trusted.fingerprint,
            "version": trusted.version,
            "anchor": trusted.anchor,
        },
        f"{trusted.state}: encryption key {trusted.fingerprint} (key history version "
        f"{trusted.version}, anchored in {trusted.anchor})",
    )


# -- entry -----------------------------------------------------------------------------------


@entry_app.command("register")
def entry_register(
    effective_on: Annotated[
        str | None, typer.Option(metavar="YYYY-MM-DD", help="default: today")
    ] = None,
) -> None:
    """Register your State's entry (a signed write)."""
    with errors(), client() as c:
        answer = c.register_entry(effective_on)
    show_answer(answer, f"registered {c.state}'s entry")


@entry_app.command("show")
def entry_show() -> None:
    """Your State's entry."""
    with errors(), client() as c:
        entry = c.entry()
    show(entry, json.dumps(entry, indent=2, ensure_ascii=False))


# -- webhook ---------------------------------------------------------------------------------


@webhook_app.command("set")
def webhook_set(
    url: Annotated[str, typer.Argument(metavar="URL", help="https://host/path, a public host")],
) -> None:
    """Set (or replace) your State's webhook (a signed write)."""
    with errors(), client() as c:
        answer = c.set_webhook(url)
    show_answer(answer, f"set {c.state}'s webhook")


@webhook_app.command("remove")
def webhook_remove() -> None:
    """Remove your State's webhook (a signed write); alerts keep their other channels."""
    with errors(), client() as c:
        answer = c.remove_webhook()
    show_answer(answer, f"removed {c.state}'s webhook")


@webhook_app.command("show")
def webhook_show() -> None:
    """Your State's webhook (only your State sees it)."""
    with errors(), client() as c:
        found = c.webhook()
    show(found, str(found.get("url") or "no webhook") if isinstance(found, dict) else "?")


# -- notifications ---------------------------------------------------------------------------


def _text(text: str, language: str, english: str | None) -> dict[str, Any]:
    return {"language": language, "text": text, "english": english}


def _indicator(raw: str) -> dict[str, str]:
    kind, sep, value = raw.partition(":")
    if not sep:
        fail(f"--indicator takes KIND:VALUE (e.g. ipv4:203.0.113.7), got {raw[:40]!r}")
    return {"kind": kind, "value": value}


@app.command("notify")
def notify(
    to: Annotated[str, typer.Option("--to", metavar="STATE", help="the recipient State")],
    incident_type: Annotated[str, typer.Option("--type", metavar="TYPE", help="e.g. malware")],
    description: Annotated[str, typer.Option(metavar="TEXT")],
    indicator: Annotated[
        list[str] | None, typer.Option(metavar="KIND:VALUE", help="an indicator; repeatable")
    ] = None,
    text: Annotated[str | None, typer.Option(metavar="TEXT", help="supporting information")] = None,
    language: Annotated[str, typer.Option(metavar="LANG", help="a UN language")] = "en",
    english: Annotated[
        str | None, typer.Option(metavar="TEXT", help="the description in English (R6)")
    ] = None,
    good_faith: Annotated[
        bool, typer.Option("--good-faith", help="attest it is made in good faith (R7)")
    ] = False,
    urgency: Annotated[
        str | None,
        typer.Option(
            metavar="URGENCY",
            help="urgent, high or normal (the default): sets the acknowledgement deadline",
        ),
    ] = None,
) -> None:
    """Seal a notification to the recipient's verified key and your own, and send it."""
    if not good_faith:
        fail("a notification needs --good-faith: attest it is made in good faith (R7)")
    with errors():
        content = Content.from_dict(
            {
                "description": _text(description, language, english),
                "supporting_information": {
                    "indicators": [_indicator(i) for i in indicator or []],
                    "text": None if text is None else _text(text, "en", None),
                },
            }
        )
        with client() as c:
            answer = c.notify(to.upper(), incident_type, content, urgency=urgency)
    nid = answer.body.get("id") if isinstance(answer.body, dict) else None
    show_answer(answer, f"sent notification {nid} to {to.upper()}, sealed")


@app.command("inbox")
def inbox() -> None:
    """Notifications your State received (metadata: who, when, status)."""
    with errors(), client() as c:
        items = c.inbox()
    lines = [
        f"{n['id']}  from {n['sender']}  {n['incident_type']}  {n['status']}  {n['sent_at']}"
        for n in items
    ] or ["inbox empty"]
    show(items, "\n".join(lines))


@app.command("read")
def read(notification: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Fetch a notification and decrypt it here (as a party, or a consented third State)."""
    with errors(), client() as c:
        opened = c.read(notification)
    data = {
        "notification": {k: v for k, v in opened.notification.items() if k != "envelope"},
        "content": None if opened.content is None else opened.content.to_dict(),
        "responses": opened.responses,
    }
    if opened.content is None:
        line = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    else:
        info = opened.content.supporting_information
        line = "\n".join(
            [
                f"notification {notification} from {opened.notification['sender']} to "
                f"{opened.notification['recipient']} ({opened.notification['status']})",
                f"description: {opened.content.description.text}",
                *(
                    f"indicator: {i.to_dict()['kind']} {i.to_dict()['value']}"
                    for i in info.indicators
                ),
                *(
                    f"response: {json.dumps(r.get('response'), ensure_ascii=False)}"
                    for r in opened.responses
                ),
            ]
        )
    show(data, line)


@app.command("ack")
def ack(notification: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Acknowledge receipt of a notification."""
    with errors(), client() as c:
        answer = c.acknowledge(notification)
    show_answer(answer, f"acknowledged {notification}")


@app.command("respond")
def respond(
    notification: Annotated[str, typer.Argument(metavar="ID")],
    text: Annotated[str, typer.Argument(metavar="TEXT")],
    assistance: Annotated[bool, typer.Option("--assistance", help="request assistance")] = False,
) -> None:
    """Seal a response to both parties and send it."""
    with errors(), client() as c:
        answer = c.respond(notification, text, assistance_requested=assistance)
    show_answer(answer, f"responded to {notification}, sealed")


# -- consents --------------------------------------------------------------------------------


@consent_app.command("ask")
def consent_ask(
    notification: Annotated[str, typer.Argument(metavar="ID")],
    third_state: Annotated[str, typer.Argument(metavar="STATE")],
) -> None:
    """Ask the parties' consent to share a notification with a third State."""
    with errors(), client() as c:
        answer = c.ask_consent(notification, third_state.upper())
    cid = answer.body.get("id") if isinstance(answer.body, dict) else None
    show_answer(answer, f"asked consent {cid} to share {notification} with {third_state.upper()}")


def _consent(verb: str, consent_id: str) -> None:
    with errors(), client() as c:
        answer = getattr(c, verb)(consent_id)
    show_answer(answer, f"{verb} consent {consent_id}: done")


@consent_app.command("grant")
def consent_grant(consent: Annotated[str, typer.Argument(metavar="CONSENT_ID")]) -> None:
    """Grant a consent (as a party)."""
    _consent("grant", consent)


@consent_app.command("deny")
def consent_deny(consent: Annotated[str, typer.Argument(metavar="CONSENT_ID")]) -> None:
    """Deny a consent (final)."""
    _consent("deny", consent)


@consent_app.command("revoke")
def consent_revoke(consent: Annotated[str, typer.Argument(metavar="CONSENT_ID")]) -> None:
    """Revoke a consent: the server stops serving the shared keys. It cannot take back what
    the third State already read."""
    _consent("revoke", consent)


@app.command("share")
def share(consent: Annotated[str, typer.Argument(metavar="CONSENT_ID")]) -> None:
    """Wrap the exchange's content keys to the third State's verified key (an effective
    consent)."""
    with errors(), client() as c:
        answer = c.share(consent)
    show_answer(answer, f"shared the keys for consent {consent}")


@checks_app.command("answer")
def checks_answer(
    check: Annotated[str, typer.Argument(metavar="CHECK_ID")],
    code: Annotated[
        str | None,
        typer.Argument(metavar="CODE", help="the challenge code a contact received"),
    ] = None,
    contact: Annotated[
        str | None,
        typer.Option(metavar="CONTACT_ID", help="a check without codes: the contact answering"),
    ] = None,
) -> None:
    """Answer a communication check: with the CODE one of your contacts received (a check
    that tests the channel), or, for a check without codes, through --contact."""
    if (code is None) == (contact is None):
        fail("give the CODE your contact received, or --contact for a check without codes")
    with errors(), client() as c:
        if code is not None:
            answer = c.answer_check_code(check, code)
            body = answer.body if isinstance(answer.body, dict) else {}
            line = f"confirmed {body.get('contact_id')} for check {check}: {body.get('result')}"
        else:
            answer = c.answer_check(check, str(contact))
            line = f"answered check {check}"
    show_answer(answer, line)


def main() -> None:
    app()
