"""README "For State officials" is run as written: its ``sh`` block in bash, with the
project's ``pocdir`` and ``pocdir-state`` on the PATH, against a real ``pocdir serve`` over
TLS with client certificates (SQLite and PostgreSQL).

What the test supplies, and the block cannot: the installation line is not run (the test's
environment has the distribution installed); ``HOME`` is a directory of the test, so
``~/.config/pocdir-state`` is the official's key store there; the server's address replaces
``https://pocdir.example:8443``; ``DEU_FINGERPRINT`` is the fingerprint of DEU, onboarded by
the test beforehand (keys bound, entry registered), as DEU's mission would have confirmed
it; the passphrase is in ``POCDIR_STATE_PASSPHRASE``.

Needs the sealed exchange API on the server (docs/e2e.md) for its ``notify`` line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import ROOT
from tests.support.db import Backend
from tests.support.served_tls import PASSPHRASE, free_port, make_tls, onboard, serving_tls

pytestmark = pytest.mark.slow

README = ROOT / "README.md"
PLACEHOLDER_SERVER = "https://pocdir.example:8443"


def officials_block() -> str:
    text = README.read_text()
    start = text.index("## For State officials")
    end = text.index("\n## ", start + 1)
    blocks = re.findall(r"```sh\n(.*?)```", text[start:end], re.S)
    assert len(blocks) == 1, "the section has one sh block"
    return str(blocks[0])


def test_the_readme_block_for_state_officials_runs(backend: Backend, tmp_path: Path) -> None:
    block = officials_block()
    assert "pip install pocdir" in block and PLACEHOLDER_SERVER in block
    url = backend.url
    tls = make_tls(url, tmp_path / "var")
    port = free_port()
    base = f"https://127.0.0.1:{port}"
    deu = onboard(url, tls, tmp_path, "DEU", base)
    script = "\n".join(
        line.replace(PLACEHOLDER_SERVER, base)
        for line in block.splitlines()
        if not line.startswith("pip install")
    )
    bindir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path / "home"),
        "POCDIR_DATABASE_URL": url,
        "POCDIR_STATE_PASSPHRASE": PASSPHRASE,
        "DEU_FINGERPRINT": deu.public()["encryption_fingerprint"],
        "COLUMNS": "200",
    }
    env.pop("POCDIR_STATE_HOME", None)
    with serving_tls(url, tls, port, tmp_path / "serve.log"):
        deu.ok("entry", "register")
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        assert "sent notification" in done.stdout and "sealed" in done.stdout
        inbox = deu.ok("inbox")
        assert [n["sender"] for n in inbox] == ["FRA"]
    store = tmp_path / "home" / ".config" / "pocdir-state"
    assert {p.name for p in store.iterdir()} >= {
        "signing-key.pem", "encryption-key.pem", "config.json", "token", "trust.json",
    }  # fmt: skip
