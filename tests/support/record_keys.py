"""The operator's and the server's signing keys for a test run, made once per process.

Every record a test writes is signed as a deployed one is (``domain.signing``): the
Secretariat's events with the operator key, the server's with its own. The files live in a
temporary directory of this process and are named in the environment, so CLI and server
processes a test starts read the same ones.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import cache
from pathlib import Path

from infra.note import SignerKey


@cache
def record_key_files() -> tuple[Path, Path]:
    """(operator key file, server key file), created on first use."""
    directory = Path(tempfile.mkdtemp(prefix="pocdir-keys-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    operator, server = directory / "operator.key", directory / "server.key"
    SignerKey.generate("operator.test.example").write_new(operator)
    SignerKey.generate("test.example/pocdir").write_new(server)
    return operator, server


def record_key_env() -> dict[str, str]:
    """The settings that name them, for a process's environment."""
    operator, server = record_key_files()
    return {"POCDIR_OPERATOR_KEY_FILE": str(operator), "POCDIR_SIGNING_KEY_FILE": str(server)}
