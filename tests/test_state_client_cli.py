"""``pocdir-state``'s commands: help, and one-line errors with their exit codes (2 bad input,
settings or key store; 3 server unreachable), in-process (typer's runner)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from state_client.cli import app
from tests.support.cli import free_port

COMMANDS = [
    ["config"], ["login"], ["keys", "generate"], ["keys", "show"], ["trust", "add"],
    ["trust", "list"], ["trust", "check"], ["entry", "register"], ["entry", "show"],
    ["notify"], ["inbox"],
    ["read"], ["ack"], ["respond"], ["consent", "ask"], ["consent", "grant"],
    ["consent", "deny"], ["consent", "revoke"], ["share"], ["checks", "answer"],
]  # fmt: skip
PASSPHRASE = {"POCDIR_STATE_PASSPHRASE": "a passphrase", "COLUMNS": "200"}


def run(
    home: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> Result:
    return CliRunner().invoke(
        app, ["--home", str(home), *args], input=stdin, env={**PASSPHRASE, **(env or {})}
    )


def one_line_error(result: Result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(command: list[str], tmp_path: Path) -> None:
    result = run(tmp_path, *command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_keys_generate_show_and_never_replace(tmp_path: Path) -> None:
    generated = run(tmp_path, "--json", "keys", "generate")
    assert generated.exit_code == 0, generated.output
    shown = run(tmp_path, "keys", "show")
    assert shown.exit_code == 0, shown.output
    assert "signing key     sha256:" in shown.output
    assert "encryption key  sha256:" in shown.output
    one_line_error(run(tmp_path, "keys", "generate"), 2, "holds keys already")


def test_config_refuses_plain_http_off_loopback_and_missing_files(tmp_path: Path) -> None:
    one_line_error(
        run(tmp_path, "config", "--server", "http://pocdir.example", "--state", "FRA"),
        2,
        "refusing plain HTTP to pocdir.example",
    )
    one_line_error(
        run(tmp_path, "config", "--server", "https://x.example", "--state", "FRA", "--ca", "no"),
        2,
        "--ca no: no such file",
    )
    one_line_error(
        run(tmp_path, "config", "--server", "https://x.example", "--state", "XYZ"),
        2,
        "XYZ",
    )
    assert not (tmp_path / "config.json").exists()


def test_missing_store_wrong_passphrase_and_unreachable_server(tmp_path: Path) -> None:
    one_line_error(run(tmp_path, "inbox"), 2, "pocdir-state config")
    port = free_port()
    assert (
        run(tmp_path, "config", "--server", f"http://127.0.0.1:{port}", "--state", "FRA").exit_code
        == 0
    )
    one_line_error(run(tmp_path, "inbox"), 2, "pocdir-state login")
    assert run(tmp_path, "login", stdin="pocdir_token\n").exit_code == 0
    one_line_error(run(tmp_path, "inbox"), 2, "pocdir-state keys generate")
    assert run(tmp_path, "keys", "generate").exit_code == 0
    one_line_error(
        run(tmp_path, "inbox", env={"POCDIR_STATE_PASSPHRASE": "wrong"}), 2, "wrong passphrase"
    )
    one_line_error(run(tmp_path, "inbox"), 3, "cannot reach the server")
    # An id that is no id is refused before anything is sent.
    for command in (["ack", "n0t-an-id"], ["consent", "grant", "n0t-an-id"], ["share", "x"]):
        one_line_error(run(tmp_path, *command), 2, "is not an id")


def test_content_is_validated_before_anything_is_sealed_or_sent(tmp_path: Path) -> None:
    """No server is configured: these fail on the official's machine."""
    base = ["notify", "--to", "DEU", "--type", "malware", "--description", "C2 seen"]
    one_line_error(run(tmp_path, *base), 2, "--good-faith")
    one_line_error(run(tmp_path, *base, "--indicator", "ipv4:999.1.1.1", "--good-faith"), 2, "ipv4")
    one_line_error(run(tmp_path, *base, "--indicator", "nokind", "--good-faith"), 2, "KIND:VALUE")
    one_line_error(
        run(tmp_path, *base, "--language", "fr", "--good-faith", "--indicator", "ipv4:203.0.113.7"),
        2,
        "English translation",
    )


def test_trust_add_and_list(tmp_path: Path) -> None:
    one_line_error(run(tmp_path, "trust", "add", "DEU", "sha256:12"), 2, "64 lowercase")
    fingerprint = "sha256:" + "ab" * 32
    assert run(tmp_path, "trust", "add", "deu", fingerprint).exit_code == 0
    listed = run(tmp_path, "trust", "list")
    assert f"DEU  {fingerprint}" in listed.output
