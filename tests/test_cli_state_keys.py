"""``pocdir keys bind`` and ``pocdir keys reonboard``: the Secretariat onboards a State's
public keys from files and reads back the fingerprints the State's mission confirms."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain.statement import key_fingerprint
from infra.wiring import build_application
from state_client.keys import EncryptionPrivateKey
from tests.support.cli import run
from tests.support.db import Backend

#: Slow (each test runs `pocdir` in processes of its own): `make check` leaves it out.
pytestmark = pytest.mark.slow


def pem(path: Path, key: Ed25519PrivateKey) -> str:
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return str(path)


def test_bind_then_reonboard_print_the_fingerprints(backend: Backend, tmp_path: Path) -> None:
    team = EncryptionPrivateKey.generate().public_key()
    (tmp_path / "team.key").write_bytes(team.to_bytes())
    alice, bob = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    bound = run(
        backend.url,
        "keys", "bind", "--state", "FRA",
        "--encryption-key", str(tmp_path / "team.key"),
        "--signing-key", pem(tmp_path / "alice.pem", alice),
        "--signing-key", pem(tmp_path / "bob.pem", bob),
    )  # fmt: skip
    assert bound.returncode == 0, bound.stderr
    assert team.fingerprint() in bound.stdout
    assert key_fingerprint(alice.public_key()) in bound.stdout
    assert key_fingerprint(bob.public_key()) in bound.stdout

    again = run(
        backend.url,
        "keys", "bind", "--state", "FRA",
        "--encryption-key", str(tmp_path / "team.key"),
        "--signing-key", str(tmp_path / "alice.pem"),
    )  # fmt: skip
    assert again.returncode != 0 and "already bound" in again.stderr
    assert "Traceback" not in again.stderr

    new_team = EncryptionPrivateKey.generate().public_key()
    (tmp_path / "new.b64").write_text(base64.b64encode(new_team.to_bytes()).decode() + "\n")
    carol = Ed25519PrivateKey.generate()
    re = run(
        backend.url,
        "keys", "reonboard", "--state", "FRA",
        "--encryption-key", str(tmp_path / "new.b64"),
        "--signing-key", pem(tmp_path / "carol.pem", carol),
    )  # fmt: skip
    assert re.returncode == 0, re.stderr
    assert new_team.fingerprint() in re.stdout and key_fingerprint(carol.public_key()) in re.stdout
    application = build_application(backend.settings)
    try:
        assert application.get_state_keys("FRA").current.event == "KeysReonboarded"
    finally:
        application.close()


def test_a_bad_key_file_is_one_line_and_exit_two(tmp_path: Path) -> None:
    (tmp_path / "bad.key").write_text("not a key")
    url = f"sqlite:///{tmp_path / 'x.sqlite3'}"
    bad = run(
        url, "keys", "bind", "--state", "FRA",
        "--encryption-key", str(tmp_path / "bad.key"),
        "--signing-key", str(tmp_path / "bad.key"),
    )  # fmt: skip
    assert bad.returncode == 2 and "--encryption-key" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr
    (tmp_path / "team.key").write_bytes(EncryptionPrivateKey.generate().public_key().to_bytes())
    bad = run(
        url, "keys", "bind", "--state", "FRA",
        "--encryption-key", str(tmp_path / "team.key"),
        "--signing-key", str(tmp_path / "bad.key"),
    )  # fmt: skip
    assert bad.returncode == 2 and "PEM public key" in bad.stderr, bad.stderr
