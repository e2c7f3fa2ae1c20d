"""The README's worked examples ("HTTP API", "Worked examples") are run as written, in order,
against a real app: each ``curl`` command's method, headers and body, the status the README
gives, and the fields of the answer it shows. An example that drifts from the API fails here.

Tokens and ids are the shell variables the README names (``$FRA_TOKEN``, ``$NOTIFICATION_ID``
...): tokens are issued before the first example, each id is the ``id`` of the answer that
created it, and ``DEADLINE=$(...)`` lines are given a time two days ahead of the test clock.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from domain.clock import SimulatedClock
from domain.values import Role
from tests.support.builders import contact_data
from tests.support.db import Backend
from tests.support.http import Api, api_for

README = Path(__file__).resolve().parent.parent / "README.md"
BASE_URL = "http://127.0.0.1:8000"

#: Which variable an answer's ``id`` sets, by the path the example posted to.
ID_VARIABLES = {
    "/notifications": "NOTIFICATION_ID",
    "/consents": "CONSENT_ID",
    "/checks": "CHECK_ID",
    "/needs": "NEED_ID",
}


@dataclass
class Example:
    """One ``curl`` command of the README, the status it is said to get, and the answer's
    shape as shown (a JSON document whose fields, not values, are compared)."""

    command: str
    status: int
    answer: Any


def worked_examples(text: str) -> list[Example]:
    """The examples of the README's "Worked examples" section, in order."""
    start = text.index("### Worked examples")
    end = min(i for i in (text.find("\n## ", start), text.find("\n### ", start + 1)) if i > 0)
    section = text[start:end]
    blocks = list(
        re.finditer(
            r"```sh\n(?P<sh>.*?)```\s*\nAnswer: \*\*(?P<status>\d{3})\*\*[^\n]*(?:\n[^\n]+)*\n\n"
            r"```json\n(?P<json>.*?)```",
            section,
            re.S,
        )
    )
    assert len(blocks) == section.count("```sh"), "each example: ```sh, Answer: **NNN**, ```json"
    return [Example(b["sh"], int(b["status"]), json.loads(b["json"])) for b in blocks]


def curl_request(command: str, variables: dict[str, str]) -> tuple[str, str, dict[str, str], str]:
    """Method, path, headers and body of the ``curl`` command in ``command``, with the shell
    variables replaced; ``NAME=$(...)`` lines set nothing (the test sets NAME)."""
    kept = [
        line
        for line in command.replace("\\\n", " ").splitlines()
        if not re.match(r"\s*[A-Z_]+=\$\(", line)
    ]
    words = shlex.split("\n".join(kept), comments=True)
    assert words[0] == "curl" and words.count("curl") == 1, words

    def expand(word: str) -> str:
        return re.sub(r"\$([A-Z_]+)", lambda m: variables[m.group(1)], word)

    method, url, headers, body = "GET", "", {}, ""
    args = iter(words[1:])
    for word in args:
        if word == "-X":
            method = next(args)
        elif word == "-H":
            name, _, value = expand(next(args)).partition(":")
            headers[name.strip()] = value.strip()
        elif word == "-d":
            body = expand(next(args))
        else:
            url = expand(word)
    assert url.startswith(BASE_URL), url
    return method, url.removeprefix(BASE_URL), headers, body


#: A field an answer shown in the README may carry for "the other fields as above".
ELIDED = "..."


def same_shape(shown: Any, answered: Any, where: str = "answer") -> list[str]:
    """Where ``answered`` differs from ``shown`` in its fields (objects: the same keys, or at
    least those shown when it has ``"..."``; lists: the first item shown against each item
    answered), or in a value's JSON type."""
    if isinstance(shown, dict):
        if not isinstance(answered, dict):
            return [f"{where}: {type(answered).__name__}, not an object"]
        problems = []
        fields = set(shown) - {ELIDED}
        if ELIDED in shown and not fields <= set(answered):  # "...": fields shown before
            problems.append(f"{where}: no {sorted(fields - set(answered))}")
        elif ELIDED not in shown and fields != set(answered):
            problems.append(f"{where}: fields {sorted(answered)}, README shows {sorted(shown)}")
        for key in fields & set(answered):
            if shown[key] is not None and answered[key] is not None:
                problems += same_shape(shown[key], answered[key], f"{where}.{key}")
        return problems
    if isinstance(shown, list):
        if not isinstance(answered, list):
            return [f"{where}: {type(answered).__name__}, not a list"]
        if shown and answered:
            return [
                p for i, a in enumerate(answered) for p in same_shape(shown[0], a, f"{where}[{i}]")
            ]
        return []
    if type(shown) is not type(answered) and not {type(shown), type(answered)} <= {int, float}:
        return [f"{where}: {answered!r}, README shows {shown!r}"]
    return []


@pytest.fixture
def api(sqlite_backend: Backend, clock: SimulatedClock) -> Iterator[Api]:
    with api_for(sqlite_backend.settings, clock) as a:
        yield a


def test_the_readme_has_a_worked_example_per_resource() -> None:
    examples = worked_examples(README.read_text(encoding="utf-8"))
    routes = {" ".join(curl_request(e.command, _AnyValue())[:2]) for e in examples}
    for wanted in (
        "POST /entries/FRA",
        "POST /entries/FRA/contacts",
        "POST /notifications",
        "POST /notifications/x/acknowledgement",
        "POST /notifications/x/responses",
        "POST /consents",
        "POST /consents/x/grant",
        "POST /checks",
        "POST /checks/x/answer",
        "POST /needs",
    ):
        assert wanted in routes, (wanted, routes)


class _AnyValue(dict[str, str]):
    """Every variable is ``x``: for reading the examples' routes without running them."""

    def __missing__(self, key: str) -> str:
        return "x"


def test_the_readme_worked_examples_run_as_written(api: Api, clock: SimulatedClock) -> None:
    examples = worked_examples(README.read_text(encoding="utf-8"))
    assert len(examples) >= 10
    variables = {
        "FRA_TOKEN": api.token(Role.STATE, "FRA"),
        "DEU_TOKEN": api.token(Role.STATE, "DEU"),
        "SECRETARIAT_TOKEN": api.token(Role.SECRETARIAT),
        "DEADLINE": (clock.now() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    for code in ("DEU", "ITA"):  # "... have registered, each with a technical contact cert"
        who = api.as_state(code)
        assert api.call("POST", f"/entries/{code}", who, json={}).status_code == 201
        added = api.call(
            "POST",
            f"/entries/{code}/contacts",
            who,
            json={"contact": contact_data("cert")},
            headers={"If-Match": '"1"'},
        )
        assert added.status_code == 200, added.text
    for example in examples:
        method, path, headers, body = curl_request(example.command, variables)
        r = api.client.request(method, path, headers=headers, content=body.encode() or None)
        assert r.status_code == example.status, (method, path, r.text)
        answered = r.json()
        problems = same_shape(example.answer, answered)
        assert not problems, (method, path, problems, answered)
        if path in ID_VARIABLES:
            variables[ID_VARIABLES[path]] = answered["id"]
