"""``pocdir monitor --state FRA``: a State's own monitor (issue 16, item 6; audit format §19).

Over a mirror (``pocdir mirror``), checked against its cosigned checkpoint and the verifier's
own witness policy, it lists every event of the State's entry and of its key set, each with
its position, its type, who signed it and the key. Any of them not signed by that State (with
``--key``: by one of the given keys) is an ALARM: exit 1, naming the positions. The
Secretariat's onboarding (``StateKeys.KeysBound``) and re-onboarding
(``StateKeys.KeysReonboarded``) are its to sign and are shown as such. This is R15 made
provable by the State itself: nobody else changes or withdraws its entry unseen.

The State runs it with its own token: the server then gives it only the statements it may
read (``domain.signing.may_read_statement``), and the mirror, whose scope is ``state:XXX``,
checks the signatures of the events that State can judge (``infra.mirror``).
"""

from __future__ import annotations

import bisect
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Final
from uuid import UUID

import typer

from api.cli.commands.mirror import (
    CaOption,
    ClientCertOption,
    ClientKeyOption,
    PolicyOption,
    TokenFileOption,
    client_tls,
    load_policy,
    read_token,
    reading_mirror,
    run_mirror,
    summary,
)
from api.cli.console import err, print_json
from api.cli.errors import EXIT_INVALID_RECORD, fail
from domain.errors import NotAMemberState
from domain.members import check_member_state
from domain.signing import SignerKind, event_name
from domain.state_entry import state_entry_id
from domain.state_keys import state_keys_id
from infra.chain import ParsedRecord
from infra.merkle import b64
from infra.mirror import (
    MirrorVerification,
    read_state,
    read_statements,
    scope_state,
    verify_mirror,
)
from infra.signatures import SignatureFault
from infra.statement_store import StatementRow

#: The Secretariat's events on a State's key set that are its own to sign: not alarms.
ONBOARDING: Final = {
    "StateKeys.KeysBound": "onboarding by the Secretariat",
    "StateKeys.KeysReonboarded": "re-onboarding by the Secretariat",
}
UNSIGNED_BY_DESIGN: Final = "unsigned by design"
NO_KEY: Final = "-"


@dataclass(frozen=True)
class MonitoredEvent:
    """One line of the monitor: ``alarm`` says why it is one, ``None`` if it is not."""

    position: int
    aggregate: str
    event: str
    signer: str
    key: str
    status: str
    alarm: str | None

    def line(self) -> str:
        return "\t".join(
            (str(self.position), self.aggregate, self.event, self.signer, self.key, self.status)
        )


class _Statements:
    """The statement covering a position, for an event whose check failed."""

    def __init__(self, rows: list[StatementRow]) -> None:
        self.rows = rows
        self.firsts = [r.first_position for r in rows]

    def covering(self, position: int) -> StatementRow | None:
        i = bisect.bisect_right(self.firsts, position) - 1
        if i >= 0 and self.rows[i].last_position >= position:
            return self.rows[i]
        return None


def classify(
    code: str,
    aggregate: str,
    record: ParsedRecord,
    statement: StatementRow | None,
    fault: SignatureFault | None,
    keys: frozenset[str],
) -> MonitoredEvent:
    """What one event of the State's is: signed by it, the Secretariat's (re-)onboarding,
    unsigned by design (before anyone signed), or an alarm."""
    name = event_name(record.topic)
    signer = statement.signer if statement else (UNSIGNED_BY_DESIGN if fault is None else "")
    key = statement.key if statement else NO_KEY

    def event(status: str, alarm: str | None = None) -> MonitoredEvent:
        return MonitoredEvent(
            record.position, aggregate, name, signer or "no signed statement", key, status, alarm
        )

    if fault is not None:
        reason = f"{fault.reason}: expected {fault.expected}, computed {fault.computed}"
        return event(f"ALARM: {reason}", reason)
    if statement is None:
        return event(UNSIGNED_BY_DESIGN)
    if statement.signer == SignerKind.SECRETARIAT.value and name in ONBOARDING:
        return event(ONBOARDING[name])
    if statement.signer != f"state:{code}":
        reason = f"{name} is signed by {statement.signer}, not by {code}"
        return event(f"ALARM: {reason}", reason)
    if keys and statement.key not in keys:
        reason = f"signed by {code} with key {statement.key}, not one of the keys given"
        return event(f"ALARM: {reason}", reason)
    return event(f"signed by {code}")


def monitor(  # noqa: PLR0913
    directory: Path,
    code: str,
    policy: PolicyOption,
    keys: frozenset[str],
    operator_key: str | None,
) -> tuple[MirrorVerification, list[MonitoredEvent]]:
    """Verify the mirror and classify every event of ``code``'s entry and key set."""
    rules = load_policy(policy)
    ids: dict[UUID, str] = {state_entry_id(code): "entry", state_keys_id(code): "keys"}
    events: list[MonitoredEvent] = []
    with reading_mirror():
        state = read_state(directory)
        if state is None:
            fail(f"{directory} is not a mirror: run pocdir mirror URL {directory} first")
        held = scope_state(state.statements_scope)
        if held is not None and held != code:
            fail(
                f"{directory} holds the statements {held} may read, not {code}'s: monitor "
                f"--state {held}, or mirror with {code}'s token into another directory"
            )
        statements = _Statements(read_statements(directory, state))

        def observe(
            record: ParsedRecord, statement: StatementRow | None, fault: SignatureFault | None
        ) -> None:
            if fault is not None:
                statement = statements.covering(record.position)
            aggregate = ids[record.originator_id]
            events.append(classify(code, aggregate, record, statement, fault, keys))

        result = verify_mirror(
            directory,
            rules,
            operator_key=operator_key,
            concerns=lambda r: r.originator_id in ids,
            observe=observe,
        )
    return result, events


def monitor_command(  # noqa: PLR0913
    state: Annotated[str, typer.Option(metavar="CODE", help="the State (ISO 3166-1 alpha-3)")],
    policy: PolicyOption,
    mirror: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="the mirror to read; with --url it is brought up to date first",
        ),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(metavar="URL", help="the server to mirror from into --mirror DIR first"),
    ] = None,
    token_file: TokenFileOption = None,
    ca: CaOption = None,
    client_cert: ClientCertOption = None,
    client_key: ClientKeyOption = None,
    key: Annotated[
        list[str] | None,
        typer.Option(
            metavar="FINGERPRINT",
            help="a key of the State's (sha256:...); with it, an event signed by another "
            "key of the State is an alarm too. Repeat for several",
        ),
    ] = None,
    operator_key: Annotated[
        str | None,
        typer.Option(metavar="FINGERPRINT", help="the Secretariat's published operator key"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="the report as JSON")] = False,
) -> None:
    """Every event of a State's entry and key set, who signed it; exit 1 naming the
    positions of any not signed by that State."""
    try:
        code = check_member_state(state)
    except NotAMemberState as e:
        fail(f"--state: {e}")
    if mirror is None:
        fail("give --mirror DIR (with --url URL to bring it up to date from a server first)")
    if url is not None:
        tls = client_tls(ca, client_cert, client_key)
        result = run_mirror(url, mirror, load_policy(policy), read_token(token_file), tls)
        err.print(summary(result), highlight=False, markup=False, soft_wrap=True)
    keys = frozenset(key or [])
    verified, events = monitor(mirror, code, policy, keys, operator_key)
    alarms = [event for event in events if event.alarm is not None]
    cosigners = sorted(verified.checkpoint.cosigned_by)
    if as_json:
        print_json(
            {
                "state": code,
                "origin": verified.origin,
                "tree_size": verified.tree_size,
                "root_hash": b64(verified.root_hash),
                "cosigned_by": cosigners,
                "events": [asdict(event) for event in events],
                "alarms": [event.position for event in alarms],
            }
        )
    else:
        sys.stdout.write(
            f"monitor {code}: {verified.origin} at tree size {verified.tree_size}, root "
            f"{b64(verified.root_hash)}, cosigned by {', '.join(cosigners) or 'no witness'}\n"
        )
        for event in events:
            sys.stdout.write(event.line() + "\n")
        sys.stdout.write(f"{code}: {len(events)} events, {len(alarms)} alarms\n")
    if alarms:
        named = "; ".join(f"position {a.position}: {a.alarm}" for a in alarms)
        fail(
            f"ALARM: {len(alarms)} event(s) of {code} not signed by {code}: {named}",
            EXIT_INVALID_RECORD,
        )


def register(app: typer.Typer) -> None:
    app.command("monitor")(monitor_command)
