"""README "Witnesses, mirrors and a State's monitor" is run as written: its ``sh`` block in
bash, with the project's ``pocdir`` on the PATH, against a real ``pocdir serve`` over TLS with
client certificates (SQLite and PostgreSQL), on a record encrypted at rest.

What the test supplies, and the block cannot: the operator's console settings (the record's
location, its cipher key, the server's and the operator's keys, as every other test has them);
FRA onboarded beforehand (keys bound, entry registered, by FRA's own signed writes), so that
the monitor has FRA's events to list; free ports in place of the README's 8101-8103 and the
server's address in place of ``https://pocdir.example:8443``. The block starts three witness
processes in the background; the test ends them with the block's process group.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import ROOT, free_port
from tests.support.db import Backend
from tests.support.served_tls import make_tls, onboard, serving_tls

pytestmark = pytest.mark.slow

README = ROOT / "README.md"
PLACEHOLDER_SERVER = "https://pocdir.example:8443"
README_PORTS = ("8101", "8102", "8103")


def witnesses_block() -> str:
    text = README.read_text()
    start = text.index("## Witnesses, mirrors and a State's monitor")
    end = text.index("\n## ", start + 1)
    blocks = re.findall(r"```sh\n(.*?)```", text[start:end], re.S)
    assert len(blocks) == 1, "the section has one sh block"
    return str(blocks[0])


def test_the_readme_block_for_witnesses_mirrors_and_the_monitor_runs(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POCDIR_CIPHER_KEY", base64.b64encode(os.urandom(32)).decode())
    block = witnesses_block()
    assert PLACEHOLDER_SERVER in block and all(p in block for p in README_PORTS)
    url = backend.url
    tls = make_tls(url, tmp_path / "var")
    port = free_port()
    base = f"https://127.0.0.1:{port}"
    script = block.replace(PLACEHOLDER_SERVER, base)
    for readme_port in README_PORTS:
        script = script.replace(readme_port, str(free_port()))
    bindir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
        "POCDIR_DATABASE_URL": url,
        "COLUMNS": "200",
    }
    output = tmp_path / "block.out"
    with serving_tls(url, tls, port, tmp_path / "serve.log"):
        fra = onboard(url, tls, tmp_path, "FRA", base)
        fra.ok("entry", "register")
        with output.open("w") as out:
            proc = subprocess.Popen(
                ["bash", "-euo", "pipefail", "-c", script],
                env=env,
                cwd=tmp_path,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                code = proc.wait(timeout=600)
            finally:
                os.killpg(proc.pid, signal.SIGTERM)  # the witnesses it left serving
    said = output.read_text()
    assert code == 0, said
    assert "Traceback" not in said
    # The auditor's check: the checkpoint the server got cosigned meets the regional quorum.
    assert "witnesses:     cosigned by w-bra, w-fra, w-pol; quorum met (regions:" in said
    # FRA's mirror, with FRA's own token: its statements only, the same cosigned checkpoint.
    assert "(scope state:FRA); cosigned by w-bra, w-fra, w-pol" in said
    assert "mirror intact:" in said
    # Its monitor: the Secretariat's onboarding shown as such, FRA's own write signed by FRA.
    assert re.search(
        r"\tStateKeys\.KeysBound\tsecretariat\t\S+\tonboarding by the Secretariat", said
    )
    assert re.search(r"\tStateEntry\.Registered\tstate:FRA\t\S+\tsigned by FRA", said)
    assert "FRA: 2 events, 0 alarms" in said
    # The witness saw no fork.
    assert "no evidence kept" in said
