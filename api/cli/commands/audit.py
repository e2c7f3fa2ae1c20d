"""``pocdir`` commands for auditors: ``verify`` (with or without a checkpoint),
``checkpoint``, Merkle ``proof``s and the offline ``audit`` bundle."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from api.cli.commands.mirror import load_policy, reading_mirror
from api.cli.console import err, out, print_json, progress
from api.cli.errors import exit_on_error, fail
from api.cli.ids import parse_id, record_id
from api.cli.options import KeyOption
from api.cli.session import bounded, fail_if_empty, open_application, settings, transparency
from infra.audit import export_bundle, verify_against_checkpoint, verify_bundle
from infra.mirror import ALL_STATEMENTS, is_mirror, verify_mirror
from infra.note import KeyFormatError, VerifierKey
from infra.signatures import SignatureSummary
from infra.verify import verify_record
from infra.wiring import OpenMode
from infra.witness_policy import Policy, WitnessedCheckpoint
from infra.witnessing import witness_checkpoint

proof_app = typer.Typer(help="Merkle proofs (RFC 9162) as JSON, hashes in base64.")
audit_app = typer.Typer(help="The offline audit bundle.")


def _print_verified(intact: str, head_position: int, head_hash: str) -> None:
    """What was verified (``intact``), and the head it ends at."""
    out.print(intact, highlight=False)
    out.print(f"head position: {head_position}", highlight=False)
    out.print(f"head hash:     {head_hash}", highlight=False)


OperatorKeyOption = Annotated[
    str | None,
    typer.Option(
        metavar="FINGERPRINT",
        help="the Secretariat's published operator key (sha256:...); without it the "
        "record's own first operator-signed statement names it",
    ),
]


def print_signatures(summary: SignatureSummary) -> None:
    """What the signature check found: how many events were signed, how many are unsigned
    by design (before their signer was held to signing), and the keys it relied on."""
    out.print(
        f"signatures:    {summary.signed} events signed ({summary.statements} statements), "
        f"{summary.unsigned_by_design} unsigned by design",
        highlight=False,
    )
    if summary.states_signing:
        out.print(f"States signing: {len(summary.states_signing)}", highlight=False)
    for who, fingerprint in (("operator", summary.operator_key), ("server", summary.server_key)):
        if fingerprint is not None:
            out.print(f"{who} key:  {fingerprint}", highlight=False)


PolicyOption = Annotated[
    Path | None,
    typer.Option(
        metavar="FILE",
        help="a witness policy you hold (log keys, witnesses, quorum): accept a checkpoint "
        "only if the quorum cosigned it; 'quorum none' accepts one no witness cosigned",
    ),
]


def optional_policy(path: Path | None, keys: list[str] | None) -> Policy | None:
    """The ``--policy`` file if given, or exit 2 naming what is wrong with it. The log keys
    then come from the policy, so ``--key`` with it is refused rather than silently ignored."""
    if path is None:
        return None
    if keys:
        fail("give the log keys in the --policy file (log lines), not with --key")
    return load_policy(path)


def print_witnessed(witnessed: WitnessedCheckpoint | None) -> None:
    if witnessed is not None:
        cosigners = ", ".join(sorted(witnessed.cosigned_by)) or "no witness"
        out.print(
            f"witnesses:     cosigned by {cosigners}; quorum met ({witnessed.quorum})",
            highlight=False,
        )


def verify(
    checkpoint: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="also check the record extends this signed checkpoint"),
    ] = None,
    key: KeyOption = None,
    operator_key: OperatorKeyOption = None,
    policy: PolicyOption = None,
) -> None:
    """Walk the whole chain from genesis and check every event, link and signature."""
    if checkpoint is not None:
        return verify_checkpoint(checkpoint, key, optional_policy(policy, key))
    if policy is not None:
        fail("--policy applies to a checkpoint: give it with --checkpoint FILE")
    application = open_application(mode=OpenMode.READ_ONLY, needs_key=False)
    try:
        with exit_on_error():
            fail_if_empty(application)
            total = application.recorder.max_notification_id() or 0
            with progress() as bar:
                task = bar.add_task("verifying", total=total)
                result = verify_record(
                    application,
                    on_progress=lambda pos: bar.update(task, completed=pos),
                    operator_key=operator_key,
                )
    finally:
        application.close()
    _print_verified(
        f"record intact: {result.events} events checked", result.head_position, result.head_hash
    )
    print_signatures(result.signatures)


def checkpoint() -> None:
    """Bring the Merkle tree up to date, sign a checkpoint, record it, submit it to the
    witnesses of POCDIR_WITNESS_POLICY_FILE, and print the note with their cosignatures."""
    timeout = settings().witness_timeout
    with transparency(OpenMode.CREATE) as (_, service):
        view = service.record_checkpoint()
        if service.witnesses:
            for outcome in witness_checkpoint(service, view, timeout=timeout):
                err.print(
                    f"witness {outcome.witness}: {outcome.detail}", highlight=False, markup=False
                )
            view = service.with_cosignatures(view)
    sys.stdout.write(view.note)


@proof_app.command("inclusion")
def proof_inclusion(
    index: Annotated[
        int | None,
        typer.Argument(metavar="INDEX", help="leaf index: 0 is the first stored event"),
    ] = None,
    size: Annotated[
        int | None,
        typer.Option(metavar="SIZE", help="tree size (default: the whole record)"),
    ] = None,
    aggregate: Annotated[
        str | None,
        typer.Option(
            metavar="ID",
            help="instead of INDEX: an aggregate id, or its first characters (with --version)",
        ),
    ] = None,
    version: Annotated[
        int | None, typer.Option(metavar="VERSION", help="the aggregate's version")
    ] = None,
) -> None:
    """Inclusion proof of one event in the tree, as JSON."""
    index, size = bounded(index, "INDEX"), bounded(size, "--size", 1)
    version = bounded(version, "--version", 1)
    target = None
    if aggregate is not None or version is not None:
        if aggregate is None or version is None or index is not None:
            fail("give either INDEX or both --aggregate and --version")
        target = parse_id(aggregate, "--aggregate", "aggregate")
    elif index is None:
        fail("give INDEX, or --aggregate and --version")
    with transparency() as (application, service):
        if target is not None and version is not None:
            aggregate_id = record_id(application, target, "aggregate")
            proof = service.inclusion_proof_for(aggregate_id, version, size=size)
        else:
            proof = service.inclusion_proof(index or 0, size)
        proof.verify()
    print_json(proof.to_json())


@proof_app.command("consistency")
def proof_consistency(
    first: Annotated[int, typer.Argument(metavar="FIRST", help="the earlier tree size")],
    second: Annotated[int, typer.Argument(metavar="SECOND", help="the later tree size")],
) -> None:
    """Consistency proof between two tree sizes, as JSON."""
    first, second = bounded(first, "FIRST", 1), bounded(second, "SECOND", 1)
    with transparency() as (_, service):
        proof = service.consistency_proof(first, second)
        proof.verify()
    print_json(proof.to_json())


def _trusted_keys(keys: list[str] | None) -> list[VerifierKey]:
    """The verifier keys given with ``--key``; exit 2 naming the option if one is malformed."""
    try:
        return [VerifierKey.parse(k) for k in keys or []]
    except KeyFormatError as e:
        fail(f"--key: {e}")


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as e:
        fail(f"cannot read {what} {path}: {e}")


def verify_checkpoint(
    checkpoint_file: Path, keys: list[str] | None, policy: Policy | None = None
) -> None:
    """``pocdir verify --checkpoint FILE``: the whole chain, then the checkpoint against it
    (and against the witness policy, if one is given)."""
    note = _read_text(checkpoint_file, "checkpoint")
    trusted = list(policy.log_keys) if policy is not None else _trusted_keys(keys)
    with transparency(OpenMode.READ_ONLY) as (application, service):
        fail_if_empty(application)
        keys_used = trusted or service.trusted_keys()
        total = application.recorder.max_notification_id() or 0
        with progress() as bar:
            task = bar.add_task("verifying", total=total)
            result = verify_against_checkpoint(
                application,
                service,
                note,
                keys_used,
                on_progress=lambda pos: bar.update(task, completed=pos),
                policy=policy,
            )
    size = result.checkpoint.checkpoint.tree_size
    _print_verified(
        f"record intact: {result.events} events checked", result.head_position, result.head_hash
    )
    out.print(
        f"checkpoint of {size} events verified: signed by "
        f"{', '.join(k.name for k in result.checkpoint.signed_by)}"
        f"{'' if trusted else ' (key from the database; pass --key to pin it)'}; "
        "the record extends it",
        highlight=False,
    )
    print_witnessed(result.witnessed)


@audit_app.command("export")
def audit_export(
    directory: Annotated[
        Path, typer.Argument(metavar="DIRECTORY", help="a new or empty directory")
    ],
) -> None:
    """Write the offline audit bundle: records, checkpoints, keys and a manifest."""
    with transparency(OpenMode.READ_ONLY) as (application, service):
        fail_if_empty(application)
        try:
            summary = export_bundle(application, service, directory)
        except (FileExistsError, OSError) as e:
            fail(str(e))
    out.print(
        f"bundle written to {summary.directory}: {summary.records} records, "
        f"{summary.checkpoints} checkpoints, {summary.keys} keys",
        highlight=False,
    )


@audit_app.command("verify")
def audit_verify(
    directory: Annotated[
        Path,
        typer.Argument(metavar="DIRECTORY", help="a bundle written by pocdir audit export"),
    ],
    key: KeyOption = None,
    operator_key: OperatorKeyOption = None,
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option(
            metavar="FILE", help="a checkpoint kept outside the bundle; repeat for several"
        ),
    ] = None,
    policy: PolicyOption = None,
) -> None:
    """Verify a bundle, or a mirror (pocdir mirror), with no database and no settings:
    signatures, every link or tile, the Merkle root at every checkpoint, the manifest; with
    --policy (required for a mirror), the witnesses' quorum on the newest checkpoint and on
    every one given."""
    if is_mirror(directory):
        return verify_mirror_directory(directory, policy, operator_key)
    witness_policy = optional_policy(policy, key)
    trusted = _trusted_keys(key)
    notes = [_read_text(p, "checkpoint") for p in checkpoint or []]
    if not directory.is_dir():
        fail(f"{directory} is not a directory")
    try:
        with exit_on_error():
            result = verify_bundle(directory, trusted, notes, operator_key, witness_policy)
    except OSError as e:
        fail(f"cannot read the bundle: {e}")
    if result.records == 0:  # like an empty record: nothing was verified
        fail("the bundle is empty: no records")
    _print_verified(
        f"bundle intact: {result.records} records checked", result.head_position, result.head_hash
    )
    out.print(
        f"Merkle root of {result.tree_size} leaves matches all {result.checkpoints} checkpoints"
        f"{' (keys from the bundle; pass --key to pin them)' if result.keys_from_bundle else ''}",
        highlight=False,
    )
    print_witnessed(result.witnessed)
    print_signatures(result.signatures)


def verify_mirror_directory(directory: Path, policy: Path | None, operator_key: str | None) -> None:
    """``pocdir audit verify MIRROR --policy FILE``: the mirror, offline (``verify_mirror``)."""
    if policy is None:
        fail(f"{directory} is a mirror: give --policy FILE, the witness policy to check it by")
    rules = load_policy(policy)
    with reading_mirror():
        result = verify_mirror(directory, rules, operator_key=operator_key)
    cosigners = ", ".join(sorted(result.checkpoint.cosigned_by)) or "no witness"
    out.print(
        f"mirror intact: {result.events} entries checked, last position {result.last_position}",
        highlight=False,
        markup=False,
    )
    out.print(
        f"root of {result.tree_size} leaves matches the checkpoint cosigned by {cosigners} "
        f"(quorum {result.checkpoint.quorum})",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    print_signatures(result.signatures)
    if result.scope != ALL_STATEMENTS:
        out.print(
            f"statements of scope {result.scope}: {result.not_judged} events of others not "
            "judged (their statements are not this State's to read)",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


def register(app: typer.Typer) -> None:
    """Add the auditing commands to the ``pocdir`` app."""
    app.command()(verify)
    app.command()(checkpoint)
    app.add_typer(proof_app, name="proof", no_args_is_help=True)
    app.add_typer(audit_app, name="audit", no_args_is_help=True)
