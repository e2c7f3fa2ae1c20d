"""The log's side of C2SP ``tlog-witness``: submit a checkpoint to a witness, get cosignatures.

pocdir's server calls this for each witness of its policy; it works with any witness that
speaks the spec (pocdir's own, ``pocdir witness serve``, transparency-dev's, litewitness).
The request body is the spec's: ``old <size>\\n``, one base64 consistency-proof hash per line,
an empty line, then the signed checkpoint. The answer is one or more note signature lines.

Errors are typed so the caller can tell a witness that is down (``WitnessUnavailable``: try
later, another witness may make the quorum) from one that refuses (``WitnessRefused``, with the
status and the witness's message), and among refusals the spec's 409 size answer
(``SizeConflict``), after which the caller can resubmit with a proof from the witness's size
(``witness_checkpoint`` does it once).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from infra.merkle import HASH_SIZE, b64
from infra.note import SIGNATURE_LINE_PREFIX

#: The spec's Content-Type of a 409 answer that carries the witness's tree size.
SIZE_CONTENT_TYPE = "text/x.tlog.size"
ADD_CHECKPOINT_PATH = "/add-checkpoint"
#: The spec's bound on proof lines in a request.
MAX_PROOF_LINES = 63
#: A witness's answer is a few signature lines; more than this is not one.
MAX_RESPONSE_BYTES = 64 * 1024
_MESSAGE_LIMIT = 300


class WitnessError(Exception):
    """A witness did not cosign."""


class WitnessUnavailable(WitnessError):
    """The witness could not be reached, timed out, or answered 5xx: ask again later."""


class WitnessRefused(WitnessError):
    """The witness answered with another status than 200 (and not 5xx): it will not cosign
    this submission as it stands."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"the witness refused ({status}): {message}")


class SizeConflict(WitnessRefused):
    """409 with ``text/x.tlog.size``: the witness holds a checkpoint of ``witness_size``, and
    the submission's old size was another."""

    def __init__(self, witness_size: int, message: str) -> None:
        self.witness_size = witness_size
        super().__init__(409, message)


def request_body(note: str, old_size: int, proof: Sequence[bytes]) -> bytes:
    """The spec's ``add-checkpoint`` body. ``ValueError`` for what no witness could accept
    (a negative size, a hash that is not 32 bytes, too many proof lines, not a note)."""
    if isinstance(old_size, bool) or not isinstance(old_size, int) or old_size < 0:
        raise ValueError(f"old size is a non-negative integer, not {old_size!r}")
    if len(proof) > MAX_PROOF_LINES:
        raise ValueError(f"a proof has at most {MAX_PROOF_LINES} hashes, not {len(proof)}")
    for i, h in enumerate(proof):
        if len(h) != HASH_SIZE:
            raise ValueError(f"proof[{i}] is {len(h)} bytes, not a SHA-256 hash")
    if not note.endswith("\n") or "\n\n" not in note:
        raise ValueError("the checkpoint is a signed note ending in a newline")
    lines = [f"old {old_size}\n", *(b64(h) + "\n" for h in proof), "\n", note]
    return "".join(lines).encode("utf-8")


def _message(response: httpx.Response) -> str:
    text = response.text.strip().splitlines()
    return (text[0] if text else response.reason_phrase or "no message")[:_MESSAGE_LIMIT]


def _signature_lines(text: str) -> list[str]:
    """The answer's signature lines, each ending in a newline; ``WitnessRefused`` (as a
    protocol violation by the witness) if the body is not one or more of them."""
    if not text.endswith("\n"):
        raise WitnessRefused(200, "the witness's answer does not end in a newline")
    lines = [line + "\n" for line in text[:-1].split("\n")]
    for line in lines:
        if not re.fullmatch(SIGNATURE_LINE_PREFIX + r"[^\s+]+ [A-Za-z0-9+/=]+\n", line):
            raise WitnessRefused(
                200, f"the witness answered a line that is not a signature: {line[:80]!r}"
            )
    return lines


def add_checkpoint(
    url: str,
    note: str,
    old_size: int,
    proof: Sequence[bytes],
    *,
    timeout: float = 10.0,
    client: httpx.Client | None = None,
) -> list[str]:
    """POST url + '/add-checkpoint'; return the cosignature lines (each ending in '\\n').

    The lines are the witness's as it sent them: the caller verifies them with the witness's
    vkey (``infra.cosignature.verify_cosignature``) and ignores lines by unknown keys, as the
    spec says."""
    body = request_body(note, old_size, proof)
    target = url.rstrip("/") + ADD_CHECKPOINT_PATH
    try:
        if client is None:
            with httpx.Client(timeout=timeout) as own:
                response = own.post(target, content=body, headers=_HEADERS)
        else:
            response = client.post(target, content=body, headers=_HEADERS, timeout=timeout)
    except httpx.HTTPError as e:
        raise WitnessUnavailable(f"witness {url} unreachable: {type(e).__name__}: {e}") from None
    if response.status_code >= 500:
        raise WitnessUnavailable(
            f"witness {url} answered {response.status_code}: {_message(response)}"
        )
    if len(response.content) > MAX_RESPONSE_BYTES:
        raise WitnessRefused(response.status_code, "the witness's answer is too large")
    if response.status_code == 409 and _is_size(response):
        size = _size(response.text)
        if size is not None:
            raise SizeConflict(size, f"the witness holds a checkpoint of size {size}")
    if response.status_code != 200:
        raise WitnessRefused(response.status_code, _message(response))
    return _signature_lines(response.text)


_HEADERS = {"Content-Type": "text/plain; charset=utf-8"}


def _is_size(response: httpx.Response) -> bool:
    content_type = response.headers.get("content-type", "")
    return content_type.split(";", 1)[0].strip().lower() == SIZE_CONTENT_TYPE


def _size(text: str) -> int | None:
    match = re.fullmatch(r"(0|[1-9][0-9]{0,19})\n", text)
    return int(match.group(1)) if match else None


def witness_checkpoint(
    url: str,
    note: str,
    old_size: int,
    consistency: Callable[[int, int], Sequence[bytes]],
    **kw: Any,
) -> list[str]:
    """add_checkpoint, and on SizeConflict retry once from the witness's size (using
    consistency(witness_size, new_size)) if that size is not larger than the new one.

    ``new_size`` is the checkpoint's own size, read from the note's second line. A witness
    ahead of the checkpoint (it cosigned a larger one) gets no retry: the caller has a newer
    checkpoint to submit, or the witness saw another history."""
    new_size = _tree_size(note)
    try:
        return add_checkpoint(url, note, old_size, _proof(consistency, old_size, new_size), **kw)
    except SizeConflict as e:
        if e.witness_size > new_size:
            raise
        retry = _proof(consistency, e.witness_size, new_size)
        return add_checkpoint(url, note, e.witness_size, retry, **kw)


def _proof(
    consistency: Callable[[int, int], Sequence[bytes]], old_size: int, new_size: int
) -> Sequence[bytes]:
    """The proof from ``old_size``: none from 0 or to itself (the spec's empty proof), and
    none asked of ``consistency`` for an old size above the new one (the witness says 400)."""
    if old_size == 0 or old_size >= new_size:
        return ()
    return consistency(old_size, new_size)


def _tree_size(note: str) -> int:
    lines = note.split("\n", 2)
    if len(lines) < 3 or not re.fullmatch(r"0|[1-9][0-9]{0,19}", lines[1]):
        raise ValueError("the checkpoint's second line is its tree size in decimal")
    return int(lines[1])
