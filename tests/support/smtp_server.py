"""A real SMTP server in a process of its own, for the delivery tests (issue 17, item 4: "tests
run a real SMTP server process ... it accepts, defers and refuses recipients, and the tests
read what arrived").

The process is aiosmtpd (``python -m tests.support.smtp_server --port N --maildir DIR --rules
FILE [--tls-cert C --tls-key K] [--auth user:password]``). It rereads the rules file (JSON) on
every RCPT, so a test changes its answers while it runs:

- ``refuse``: addresses answered ``550 5.1.1`` (with the address in the text, as real servers
  do, so the tests can check that the client does not repeat it);
- ``defer``: ``{address: n}``: the first n attempts for that address are answered ``451 4.7.1``,
  then it is accepted (the counts are kept beside the rules file, so they survive a restart);
- ``defer_all``: the next n RCPTs, whatever the address, are answered ``451 4.3.0``;
- ``drop``: addresses for which the server cuts the connection without a reply.

Each accepted DATA is saved as one JSON file in the maildir (written aside, then renamed), named
so that sorting the names gives the order of arrival. ``smtp_server(tmp_path)`` starts the
process on a free port, waits until it accepts connections and stops it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import email
import email.policy
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 15.0


# --- the server process ---------------------------------------------------------------------


class _Rules:
    """The rules file and the per-address attempt counts kept beside it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.counts_path = path.with_name(path.name + ".counts.json")

    def _load(self) -> tuple[dict[str, Any], str]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raw = b"{}"
        return json.loads(raw or b"{}"), hashlib.sha256(raw).hexdigest()

    def _counts(self, version: str) -> dict[str, int]:
        try:
            saved = json.loads(self.counts_path.read_text())
        except FileNotFoundError:
            return {}
        # Counts belong to the rules they were made under: new rules start afresh.
        return dict(saved["counts"]) if saved.get("version") == version else {}

    def _save_counts(self, version: str, counts: dict[str, int]) -> None:
        _write_atomically(
            self.counts_path, json.dumps({"version": version, "counts": counts}).encode()
        )

    def answer(self, address: str) -> str | None:
        """The reply to RCPT for ``address``: None to accept, "drop" to cut the connection,
        or the SMTP reply line."""
        rules, version = self._load()
        key = address.lower()
        counts = self._counts(version)
        if key in {a.lower() for a in rules.get("drop", [])}:
            return "drop"
        if key in {a.lower() for a in rules.get("refuse", [])}:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if counts.get("*", 0) < int(rules.get("defer_all", 0)):
            counts["*"] = counts.get("*", 0) + 1
            self._save_counts(version, counts)
            return "451 4.3.0 Try again later"
        defer = {a.lower(): int(n) for a, n in rules.get("defer", {}).items()}
        if counts.get(key, 0) < defer.get(key, 0):
            counts[key] = counts.get(key, 0) + 1
            self._save_counts(version, counts)
            return f"451 4.7.1 <{address}>: Recipient address deferred, greylisted"
        return None


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


class _Handler:
    def __init__(self, maildir: Path, rules: _Rules) -> None:
        self.maildir = maildir
        self.rules = rules
        self.arrived = 0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        answer = self.rules.answer(address)
        if answer == "drop":
            server.transport.abort()
            return "421 4.3.2 closing"
        if answer is not None:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.arrived += 1
        name = f"{time.time_ns():020d}-{os.getpid()}-{self.arrived:06d}.json"
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "raw": base64.b64encode(envelope.content).decode("ascii"),
        }
        _write_atomically(self.maildir / name, json.dumps(record).encode())
        return "250 2.0.0 OK: queued"


def _authenticator(expected: tuple[str, str]) -> Any:
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        given = (data.login.decode("utf-8", "replace"), data.password.decode("utf-8", "replace"))
        return AuthResult(success=given == expected, handled=False)

    return authenticate


def serve(argv: list[str] | None = None) -> None:
    """Run the server until SIGTERM or SIGINT."""
    import ssl

    from aiosmtpd.smtp import SMTP

    parser = argparse.ArgumentParser(prog="python -m tests.support.smtp_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", type=Path, required=True)
    parser.add_argument("--rules", type=Path, required=True)
    parser.add_argument("--tls-cert", type=Path)
    parser.add_argument("--tls-key", type=Path)
    parser.add_argument("--auth", help="user:password; AUTH is then required (inside TLS)")
    args = parser.parse_args(argv)
    args.maildir.mkdir(parents=True, exist_ok=True)
    tls: ssl.SSLContext | None = None
    if args.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    auth: tuple[str, str] | None = None
    if args.auth:
        user, _, password = args.auth.partition(":")
        auth = (user, password)
    handler = _Handler(args.maildir, _Rules(args.rules))

    def factory() -> SMTP:
        return SMTP(
            handler,
            hostname="mx.test",
            enable_SMTPUTF8=True,
            tls_context=tls,
            require_starttls=tls is not None,
            authenticator=_authenticator(auth) if auth else None,
            auth_required=auth is not None,
            auth_require_tls=True,
            timeout=30,
        )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set_result, None)
        server = await loop.create_server(factory, args.host, args.port, reuse_address=True)
        print("ready", flush=True)
        await stop
        server.close()

    asyncio.run(main())


# --- the tests' side ------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One accepted message, as the server saved it."""

    mail_from: str
    recipients: list[str]
    raw: bytes
    message: EmailMessage


@dataclass
class SmtpServer:
    host: str
    port: int
    directory: Path
    #: The CA that signed the server's certificate (None without TLS).
    ca_file: Path | None = None
    auth: tuple[str, str] | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def maildir(self) -> Path:
        return self.directory / "maildir"

    @property
    def rules_file(self) -> Path:
        return self.directory / "rules.json"

    def set_rules(
        self,
        refuse: Iterable[str] = (),
        defer: Mapping[str, int] | None = None,
        defer_all: int = 0,
        drop: Iterable[str] = (),
    ) -> None:
        """Replace the rules (and so restart the attempt counts); the next RCPT uses them."""
        rules = {
            "refuse": sorted(refuse),
            "defer": dict(defer or {}),
            "defer_all": defer_all,
            "drop": sorted(drop),
            # New rules restart the counts even when they equal the old ones.
            "nonce": os.urandom(8).hex(),
        }
        _write_atomically(self.rules_file, json.dumps(rules).encode())

    def messages(self) -> list[Received]:
        """Every accepted message, in the order of arrival."""
        if not self.maildir.exists():
            return []
        received = []
        for path in sorted(self.maildir.glob("*.json")):
            record = json.loads(path.read_text())
            raw = base64.b64decode(record["raw"])
            parsed = email.message_from_bytes(raw, policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            received.append(Received(record["mail_from"], record["rcpt_tos"], raw, parsed))
        return received

    def start(self) -> None:
        command = [
            sys.executable, "-m", "tests.support.smtp_server",
            "--port", str(self.port),
            "--maildir", str(self.maildir),
            "--rules", str(self.rules_file),
        ]  # fmt: skip
        if self.ca_file is not None:
            command += [
                "--tls-cert", str(self.directory / "server.pem"),
                "--tls-key", str(self.directory / "server.key"),
            ]  # fmt: skip
        if self.auth is not None:
            command += ["--auth", ":".join(self.auth)]
        log_path = self.directory / "server.log"
        # "ready" is printed once the port is bound: waiting for it (rather than for a
        # connection) cannot mistake another process on the port for this server.
        started = log_path.read_bytes().count(b"ready\n") if log_path.exists() else 0
        log = open(log_path, "ab")  # noqa: SIM115 (the process keeps it)
        self._process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError("the SMTP server exited: " + log_path.read_text())
            if log_path.read_bytes().count(b"ready\n") > started:
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"the SMTP server did not listen on port {self.port}")

    def kill(self) -> None:
        """Stop the process at once (SIGKILL): the tests' "server went away"."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(10)
        self._process = None

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
        self._process = None

    def restart(self) -> None:
        """Kill and start again on the same port, with the same maildir and rules."""
        self.kill()
        self.start()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_ca(directory: Path, server_name: str = "127.0.0.1") -> Path:
    """A CA (``infra.ca``) and a server certificate for ``server_name`` at
    ``directory``/server.pem and .key; returns the CA certificate."""
    from infra import ca

    ca_pem = ca.init(directory / "ca", name="SMTP test CA")
    ca.issue(directory / "ca", server_name, directory / "server", server_name=server_name)
    return ca_pem


@contextmanager
def smtp_server(
    tmp_path: Path, *, tls: bool = False, auth: tuple[str, str] | None = None
) -> Iterator[SmtpServer]:
    """A running SMTP server on 127.0.0.1 for one test; with ``tls`` it offers STARTTLS with a
    certificate from a CA of its own (``server.ca_file``) and requires it; with ``auth``
    (user, password) it requires AUTH inside TLS."""
    directory = tmp_path / f"smtp-{os.urandom(4).hex()}"
    directory.mkdir(parents=True)
    server = SmtpServer("127.0.0.1", _free_port(), directory, auth=auth)
    if tls:
        server.ca_file = make_ca(directory)
    server.set_rules()
    for attempt in range(3):
        try:
            server.start()
            break
        except RuntimeError:
            # Another process took the free port first: try another.
            if attempt == 2:
                raise
            server.port = _free_port()
    try:
        yield server
    finally:
        server.stop()


if __name__ == "__main__":
    serve()
