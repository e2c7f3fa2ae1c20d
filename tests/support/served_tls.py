"""A real ``pocdir serve`` over TLS that requires client certificates, with the Secretariat's
CA made by ``pocdir ca``, and State officials who drive it with ``pocdir-state`` in processes
of their own (issue 15, item 5: "the tests drive a real server through it")."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.cli import POCDIR, ROOT, free_port, issue
from tests.support.cli import run as pocdir

#: The ``pocdir-state`` command, with the interpreter running the tests.
POCDIR_STATE = [sys.executable, "-c", "from state_client.cli import main; main()"]
PASSPHRASE = "official's passphrase"


@dataclass
class TlsFiles:
    """The Secretariat's CA directory and the server's certificate."""

    directory: Path

    @property
    def ca_pem(self) -> Path:
        return self.directory / "ca" / "ca.pem"

    def env(self) -> dict[str, str]:
        return {
            "POCDIR_TLS_CERT_FILE": str(self.directory / "server.pem"),
            "POCDIR_TLS_KEY_FILE": str(self.directory / "server.key"),
            "POCDIR_TLS_CLIENT_CA_FILE": str(self.ca_pem),
            "POCDIR_TLS_CRL_FILE": str(self.directory / "ca" / "crl.pem"),
        }

    def issue(self, url: str, out: str, *args: str) -> Path:
        """``pocdir ca issue``: ``out``.pem and ``out``.key under the directory."""
        done = pocdir(
            url, "ca", "issue", "--ca", str(self.directory / "ca"),
            "--out", str(self.directory / out), *args,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return self.directory / out


def make_tls(url: str, directory: Path) -> TlsFiles:
    """A CA (``pocdir ca init``) and the server's certificate for 127.0.0.1."""
    files = TlsFiles(directory)
    done = pocdir(url, "ca", "init", str(directory / "ca"))
    assert done.returncode == 0, done.stderr
    files.issue(url, "server", "--server", "127.0.0.1")
    return files


@dataclass
class OfficialCli:
    """A State official with their own key store, running ``pocdir-state``."""

    state: str
    home: Path

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*POCDIR_STATE, "--home", str(self.home), *args],
            env={**os.environ, "POCDIR_STATE_PASSPHRASE": PASSPHRASE, "COLUMNS": "200"},
            cwd=ROOT,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def ok(self, *args: str, stdin: str | None = None) -> Any:
        """Run with ``--json`` and return the parsed answer; the command must succeed."""
        done = self.run("--json", *args, stdin=stdin)
        assert done.returncode == 0, (args, done.stderr)
        assert "Traceback" not in done.stderr
        return json.loads(done.stdout)

    def public(self) -> dict[str, Any]:
        return dict(self.ok("keys", "show"))


def onboard(url: str, tls: TlsFiles, tmp_path: Path, state: str, base: str) -> OfficialCli:
    """Everything before the first exchange: the official generates keys, the Secretariat
    binds them (``pocdir keys bind``) and issues a token and a client certificate, the
    official configures the client with them."""
    official = OfficialCli(state, tmp_path / f"official-{state}")
    official.ok("keys", "generate")
    public = official.public()
    bound = pocdir(
        url, "keys", "bind", "--state", state,
        "--encryption-key", public["encryption_key_file"],
        "--signing-key", public["signing_key_file"],
    )  # fmt: skip
    assert bound.returncode == 0, bound.stderr
    assert public["encryption_fingerprint"] in bound.stdout
    _, token = issue(url, "--role", "state", "--state", state)
    cert = tls.issue(url, state.lower(), "--state", state)
    official.ok(
        "config", "--server", base, "--state", state, "--ca", str(tls.ca_pem),
        "--client-cert", str(cert.with_suffix(".pem")),
        "--client-key", str(cert.with_suffix(".key")),
    )  # fmt: skip
    official.ok("login", stdin=token + "\n")
    return official


@contextmanager
def serving_tls(url: str, tls: TlsFiles, port: int, log_path: Path) -> Iterator[str]:
    """``pocdir serve`` on 127.0.0.1:``port`` over TLS with client certificates; yields its
    base URL once ``/health`` answers (the probe needs a certificate too)."""
    probe = ssl.create_default_context(cafile=str(tls.ca_pem))
    health = tls.issue(url, "probe", "--role", "auditor")
    probe.load_cert_chain(health.with_suffix(".pem"), health.with_suffix(".key"))
    log = log_path.open("w")
    proc = subprocess.Popen(
        [*POCDIR, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, "POCDIR_DATABASE_URL": url, **tls.env()},
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"https://127.0.0.1:{port}"
    try:
        for _ in range(300):
            if proc.poll() is not None:
                raise AssertionError(log_path.read_text())
            try:
                if httpx.get(base + "/health", verify=probe, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise AssertionError(log_path.read_text())
        yield base
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    assert "Traceback" not in log_path.read_text()


__all__ = ["OfficialCli", "TlsFiles", "free_port", "make_tls", "onboard", "serving_tls"]
