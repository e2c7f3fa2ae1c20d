"""Sealed exchanges in tests (issue 15, item 4): States with keys bound, content sealed and
opened with the State client, and the operator's search for plaintext.

The operator (``operator_finds``) holds what the server's operator holds: the database, the
cipher key and the server's output. It looks for marker strings in every form they could be
stored or printed in, so a test can say "the operator reads nothing" and mean it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from domain.application import PocDirectory
from domain.values import Text
from projections.store import SEALED
from state_client.envelope import (
    Content,
    Envelope,
    open_envelope,
    open_response,
    rewrap,
    rewrap_response,
    seal,
    seal_response,
)
from state_client.keys import EncryptionPrivateKey, EncryptionPublicKey
from tests.support.db import Backend
from tests.support.http import Api
from tests.support.officials import Official, onboard, signed_call


def bind_keys(application: PocDirectory, *codes: str) -> dict[str, Official]:
    """Onboard each of ``codes`` with a fresh encryption key and one official's signing key,
    as the Secretariat does (``tests.support.officials.onboard``); the private keys stay
    here, with the officials."""
    return {code: onboard(application, code) for code in codes}


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


@dataclass
class SealedStates:
    """The States of a test, with their officials' keys for those onboarded with keys, over
    one API. A State with keys signs every write (the gate refuses it unsigned)."""

    api: Api
    officials: dict[str, Official] = field(default_factory=dict)
    #: Encryption keys of States not onboarded (keys the record does not hold).
    unbound: dict[str, EncryptionPrivateKey] = field(default_factory=dict)
    #: A plain notification a test made before any keys were bound, as it was answered.
    plain: dict[str, Any] = field(default_factory=dict)

    @property
    def keys(self) -> dict[str, EncryptionPrivateKey]:
        return {
            **self.unbound,
            **{code: o.encryption_key for code, o in self.officials.items()},
        }

    def write(self, code: str, method: str, path: str, body: Any = None, **options: Any) -> Any:
        """A write by ``code``: signed by its official if it has keys, else as it is."""
        if code in self.officials:
            return signed_call(self.api, self.officials[code], method, path, body, **options)
        return self.api.call(
            method, path, self.api.as_state(code), **({} if body is None else {"json": body})
        )

    def public(self, code: str) -> EncryptionPublicKey:
        return self.keys[code].public_key()

    def parties(self, *codes: str) -> dict[str, EncryptionPublicKey]:
        return {code: self.public(code) for code in codes}

    def notify(
        self,
        sender: str,
        recipient: str,
        content: Mapping[str, Any],
        *,
        notification_id: UUID | None = None,
    ) -> Any:
        """POST /notifications with ``content`` sealed to both parties; the raw response."""
        nid = notification_id or uuid4()
        envelope = seal(content, nid, self.parties(sender, recipient))
        body = {
            "recipient": recipient,
            "incident_type": "malware",
            "good_faith_attested": True,
            "envelope": b64(envelope.to_bytes()),
        }
        return self.write(sender, "POST", "/notifications", body, new_aggregate=nid)

    def respond(self, responder: str, notification: Mapping[str, Any], text: str) -> Any:
        """The recipient's sealed response (its index is the number of responses so far)."""
        parties = self.parties(notification["sender"], notification["recipient"])
        nid = UUID(notification["id"])
        sealed = seal_response(nid, len(notification["responses"]), text, parties)
        body = {"envelope": b64(sealed.to_bytes()), "assistance_requested": False}
        return self.write(responder, "POST", f"/notifications/{nid}/responses", body)

    def read(self, code: str, notification_id: str) -> Any:
        return self.api.call("GET", f"/notifications/{notification_id}", self.api.as_state(code))

    def share(self, party: str, consent: Mapping[str, Any], notification: Mapping[str, Any]) -> Any:
        """``party``'s client wraps the content key and each response's key to the third
        State (``rewrap``, ``rewrap_response``) and posts them."""
        third = consent["third_state"]
        key = self.keys[party]
        envelope = Envelope.from_bytes(unb64(notification["envelope"]))
        content = rewrap(envelope, party, key, third, self.public(third)).wrapped_key(third)
        responses = [
            rewrap_response(
                Envelope.from_bytes(unb64(r["envelope"])), party, key, third, self.public(third)
            ).wrapped_key(third)
            for r in notification["responses"]
        ]
        body = {"wrapped_keys": {"content": b64(content), "responses": [b64(r) for r in responses]}}
        return self.write(party, "POST", f"/consents/{consent['id']}/share", body)

    def open(self, code: str, served: Mapping[str, Any]) -> tuple[Content, list[Text]]:
        """What ``code`` decrypts of a notification as served to it: a party with its own
        wrapped keys, a third State with the keys shared with it."""
        shared = served.get("shared_keys")
        content_key = unb64(shared["content"]) if shared else None
        content = open_envelope(
            Envelope.from_bytes(unb64(served["envelope"])),
            code,
            self.keys[code],
            shared_key=content_key,
        )
        texts = [
            open_response(
                Envelope.from_bytes(unb64(r["envelope"])),
                code,
                self.keys[code],
                shared_key=unb64(shared["responses"][i]) if shared else None,
            )
            for i, r in enumerate(served["responses"])
        ]
        return content, texts


# -- the operator's search --------------------------------------------------------------------


def marker_forms(marker: str) -> dict[str, bytes]:
    """The forms a marker could be stored or printed in: UTF-8, JSON-escaped (both with and
    without ``ensure_ascii``), and base64 (standard and urlsafe) at each of the 3 alignments
    it could have inside a longer base64 text (only the characters that depend on the marker
    alone: a group mixed with neighbouring bytes is left out)."""
    raw = marker.encode("utf-8")
    forms = {
        "plain": raw,
        "json": json.dumps(marker)[1:-1].encode("utf-8"),
        "json ascii": json.dumps(marker, ensure_ascii=True)[1:-1].encode("ascii"),
        "json unicode": json.dumps(marker, ensure_ascii=False)[1:-1].encode("utf-8"),
    }
    for name, encode in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
        for shift in range(3):
            text = encode(b"\0" * shift + raw)
            start = 0 if shift == 0 else 4
            end = 4 * ((shift + len(raw)) // 3)
            forms[f"{name} at {shift}"] = text[start:end]
    return forms


@dataclass
class Operator:
    """What the operator holds: the database (``backend``), the application opened with the
    cipher key (its mapper decrypts and decodes every stored event), and the server's output."""

    backend: Backend
    application: PocDirectory

    def _decrypt(self, data: bytes) -> bytes | None:
        cipher = self.application.mapper.cipher
        if cipher is None or len(data) < 28:
            return None
        try:
            plain = cipher.decrypt(data)
        except ValueError:  # eventsourcing's AESCipher: not ciphertext of this key
            return None
        compressor = self.application.mapper.compressor
        if compressor is not None:
            with contextlib.suppress(zlib.error):  # not compressed: read as it is
                plain = compressor.decompress(plain)
        return plain

    def readings(self, value: Any, how: str = "as stored") -> Iterator[tuple[str, bytes]]:
        """Every reading of one stored value the operator can make, with how it was made:
        as stored, decrypted with the cipher key, and decoded from base64 (then decrypted)
        if it is base64."""
        if value is None or isinstance(value, int | float):
            return
        if isinstance(value, memoryview):
            value = value.tobytes()
        if isinstance(value, str):
            yield how, value.encode("utf-8")
            text = value.removeprefix(SEALED)
            if len(text) >= 16:
                try:
                    decoded = base64.b64decode(text, validate=True)
                except (binascii.Error, ValueError):
                    decoded = None
                if decoded is not None:
                    yield from self.readings(decoded, f"{how}, base64-decoded")
            return
        if isinstance(value, bytes):
            yield how, value
            plain = self._decrypt(value)
            if plain is not None:
                yield f"{how}, decrypted", plain
            return
        yield how, repr(value).encode("utf-8")

    def tables(self) -> list[str]:
        if self.backend.sqlite_path is not None:
            rows = self.backend.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        else:
            rows = self.backend.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (self.backend.pg_schema,),
            )
        return sorted(r[0] for r in rows)

    def database(self) -> Iterator[tuple[str, bytes]]:
        """(where, reading) for every cell of every row of every table, and every stored
        event as the application's mapper decodes it with the cipher key."""
        for table in self.tables():
            for row in self.backend.execute(f'SELECT * FROM "{table}"'):  # noqa: S608 - test
                for column, value in enumerate(row):
                    for how, reading in self.readings(value):
                        yield f"table {table}, column {column}, {how}", reading
        for stored in self.application.recorder.select_notifications(0, 1_000_000):
            event = self.application.mapper.to_domain_event(stored)
            yield f"event {stored.id}, decrypted and decoded", repr(vars(event)).encode("utf-8")

    def files(self, directory: Path) -> Iterator[tuple[str, bytes]]:
        """Every file under ``directory`` (an audit bundle), as it is and, for JSON lines,
        every string value read as above (``state`` is base64 of the encrypted event)."""
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            data = path.read_bytes()
            name = str(path.relative_to(directory))
            yield f"bundle {name}, as stored", data
            for line in data.splitlines():
                try:
                    parsed = json.loads(line)
                except (ValueError, UnicodeDecodeError):
                    continue
                for text in _strings(parsed):
                    for how, reading in self.readings(text):
                        yield f"bundle {name} value, {how}", reading


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def operator_finds(
    markers: Iterable[str], places: Iterable[tuple[str, bytes]]
) -> list[tuple[str, str, str]]:
    """(marker, form, where) for every marker found, in any of its forms, in any place."""
    forms = [(m, name, form) for m in markers for name, form in marker_forms(m).items()]
    found = []
    for where, data in places:
        for marker, name, form in forms:
            if form in data:
                found.append((marker, name, where))
    return found
