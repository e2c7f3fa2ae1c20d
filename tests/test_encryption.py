"""Encryption at rest (R13): contact details are ciphertext in the store, and the chain is
verified over the stored bytes, so verification needs no key."""

from __future__ import annotations

import base64
import os

import pytest

from domain.clock import SimulatedClock
from domain.values import Contact
from infra.settings import Settings, SettingsError
from infra.verify import verify_record
from infra.wiring import build_application
from tests.support.builders import START, contact_data, state
from tests.support.db import Backend


def test_encrypted_records_hide_contact_details_and_verify_without_the_key(
    backend: Backend,
) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    encrypted = Settings(database_url=backend.url, cipher_key=key)
    app = build_application(encrypted, clock=SimulatedClock(START))
    app.register_state(state("FRA"), "FRA")
    app.add_contact(state("FRA"), "FRA", Contact.from_dict(contact_data("secret-desk")))
    assert (
        app.get_entry("FRA").contacts["secret-desk"].channels[0].address
        == "secret-desk@example.org"
    )
    app.close()

    stored = [bytes(r[0]) for r in backend.execute(f"SELECT state FROM {backend.events_table}")]
    assert len(stored) == 2
    assert not any(b"secret-desk" in s or b"FRA" in s for s in stored)

    keyless = build_application(Settings(database_url=backend.url), needs_key=False)
    try:
        assert verify_record(keyless).events == 2
    finally:
        keyless.close()


@pytest.mark.parametrize("key", ["not base64!", base64.b64encode(b"short").decode()])
def test_a_malformed_cipher_key_is_refused_naming_the_setting(key: str) -> None:
    with pytest.raises(SettingsError, match="POCDIR_CIPHER_KEY"):
        Settings.from_env({"POCDIR_CIPHER_KEY": key})
