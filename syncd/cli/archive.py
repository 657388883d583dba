"""export, import, backup, restore, revert and `archive show|verify` (docs/archive-format.md).

An archive is a read-only environment named `archive:/ABS/PATH.zip` in the journal: import and
restore are runs from it, export is a run into it (its records staged in SQLite, then zipped),
so each is planned, journaled, resumable and audited like a transfer.
"""
from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import click

from .. import archive as archives
from .. import journals
from ..archive.reader import ArchiveReader
from ..clock import new_run_id
from ..config import Config
from ..errors import ConflictError, InputError, RunStateError
from ..render import err, out
from ..request import RunRequest
from .app import EXIT_FAILED, cli, config_of
from .sync import plan_options, run_options, run_request

_archive_path = click.Path(dir_okay=False, path_type=Path)


def _new_archive(path: Path) -> Path:
    """Where an export writes: a new file in an existing folder (never overwritten)."""
    path = path.resolve()
    if path.suffix != ".zip":
        raise InputError(f"{path}: an archive's name ends in .zip")
    if path.exists():
        raise InputError(f"{path} exists; syncd never overwrites an archive (pick another name)")
    if not path.parent.is_dir():
        raise InputError(f"{path.parent}: no such folder")
    return path


def _existing_archive(path: Path) -> Path:
    path = path.resolve()
    if not path.is_file():
        raise InputError(f"{path}: no such archive")
    return path


@cli.command()
@run_options(
    click.option("-s", "--source", required=True, help="Environment whose records are exported"),
    click.option("-o", "--output", required=True, type=_archive_path, help="The archive to write (FILE.zip)"),
    click.option("--entity", help="Root entity (default: the one that declares children)"),
    click.option("--all", "all_records", is_flag=True, help="Every record of every entity"),
    click.option("--label", "labels", multiple=True, metavar="L",
                 help="The records imports labelled L wrote into the source and that are still there, repeatable"),
    click.option("--with-files", is_flag=True, help="Put the content of every referenced file in the archive"),
    click.option("--new-ids", is_flag=True, help="New random keys for integer keys below 1,000,000"),
    click.option("--delete-exported", is_flag=True,
                 help="Once the archive is verified, delete the exported records from the source"))
@click.pass_context
def export(ctx: click.Context, /, **kw: Any) -> None:
    """Export records (a selection, --all, or --label) into a zip archive, journaled."""
    config = config_of(ctx)
    output = _new_archive(kw["output"])
    request = RunRequest.build(
        kind="export", source=kw["source"], target=archives.archive_env(output), entity=kw["entity"],
        filters=kw["filters"], limit=kw["limit"], all_records=kw["all_records"], labels=kw["labels"],
        copy_files=kw["with_files"], new_ids=kw["new_ids"], delete_exported=kw["delete_exported"])
    run_id = run_request(config, request, kw)
    if run_id is None:
        return
    _say_written(config, run_id)
    if kw["delete_exported"]:
        deletes = RunRequest.build(kind="delete", source=kw["source"], target=kw["source"], reverts=run_id)
        run_request(config, deletes, kw | {"plan_only": False, "dry_run": False})


def _say_written(config: Config, run_id: str) -> None:
    run = journals.journal_for(config).run(run_id)
    written = run.summary.get("archive") if run else None
    if written:
        err.print(f"Archive {written['path']} written and verified ({written['size']} bytes, "
                  f"sha256 {written['sha256']}).")


@cli.command("import")
@click.argument("archive", type=_archive_path)
@plan_options(
    click.option("-t", "--target", required=True, help="Environment the records go to"),
    click.option("--label", help="Journaled with the run (default: the archive's file name without .zip)"),
    click.option("--on-conflict", type=click.Choice(["error", "skip", "update"]), default="error",
                 show_default=True, help="A record the target holds with other content: list and stop, "
                                         "keep the target's, or patch the fields that differ"),
    click.option("--resolver", metavar="NAME|MODULE:CLASS",
                 help="Decide each conflict: keep-target, take-archive, min|max|earliest|latest:FIELD, "
                      "or a class with resolve(entity, current, incoming)"),
    click.option("--copy-files", is_flag=True, help="Copy the archive's files into the target's blob_map"))
@click.pass_context
def import_(ctx: click.Context, /, archive: Path, **kw: Any) -> None:
    """Import an archive into ENV: a transfer from it, with conflicts decided."""
    config = config_of(ctx)
    path = _existing_archive(archive)
    request = RunRequest.build(
        kind="import", source=archives.archive_env(path), target=kw["target"],
        label=kw["label"] or path.stem, on_conflict=kw["on_conflict"], resolver=kw["resolver"],
        copy_files=kw["copy_files"])
    try:
        run_request(config, request, kw)
    except ConflictError as exc:
        for line in exc.conflicts:
            err.print(f"conflict: {line}", markup=False, highlight=False)
        message = f"syncd: failed: {exc}"
        click.echo(message, err=True)
        if kw["as_json"]:
            click.echo(json.dumps({"error": message, "exit_code": EXIT_FAILED, "conflicts": exc.conflicts}))
        sys.exit(EXIT_FAILED)


@cli.command()
@click.argument("env")
@click.option("-o", "--output", required=True, type=_archive_path, help="The archive to write (FILE.zip)")
@click.option("--with-files", is_flag=True, help="Put the content of every referenced file in the archive")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout")
@click.pass_context
def backup(ctx: click.Context, env: str, output: Path, with_files: bool, as_json: bool) -> None:
    """Export every record of ENV into a zip archive (export --all)."""
    config = config_of(ctx)
    run_id = _backup(config, env, _new_archive(output), with_files, as_json)
    _say_written(config, run_id)


def _backup(config: Config, env: str, output: Path, with_files: bool, as_json: bool) -> str:
    request = RunRequest.build(kind="export", source=env, target=archives.archive_env(output),
                               all_records=True, copy_files=with_files)
    run_id = run_request(config, request, {"dry_run": False, "plan_only": False, "yes": True,
                                           "as_json": as_json, "verbose": False})
    assert run_id is not None
    return run_id


@cli.command()
@click.argument("archive", type=_archive_path)
@plan_options(
    click.option("-t", "--target", required=True, help="Environment made equal to the archive"),
    click.option("--no-backup", is_flag=True, help="Do not back the target up first"),
    click.option("--backup-to", type=_archive_path, metavar="FILE.zip",
                 help="Where the target's backup goes (default: beside the archive, named after the target)"),
    click.option("--copy-files", is_flag=True, help="Copy the archive's files into the target's blob_map"))
@click.pass_context
def restore(ctx: click.Context, /, archive: Path, **kw: Any) -> None:
    """Make ENV's records of the archive's entities equal to the archive (backup first)."""
    config = config_of(ctx)
    path = _existing_archive(archive)
    request = RunRequest.build(kind="restore", source=archives.archive_env(path), target=kw["target"],
                               copy_files=kw["copy_files"])
    backup_to = None
    if not kw["no_backup"]:
        backup_to = _new_archive(kw["backup_to"] or path.with_name(
            f"{kw['target']}-before-restore-{new_run_id()}.zip"))

    def back_up() -> None:
        if backup_to is not None:
            err.print(f"Backing {kw['target']} up to {backup_to} first.")
            with contextlib.redirect_stdout(sys.stderr):  # stdout is the restore's
                _backup(config, kw["target"], backup_to, kw["copy_files"], False)

    run_request(config, request, kw, before_apply=back_up)


@cli.command()
@click.argument("run")
@plan_options()
@click.pass_context
def revert(ctx: click.Context, /, run: str, **kw: Any) -> None:
    """Undo what RUN applied, as a new run; records changed since are left alone."""
    config = config_of(ctx)
    journal = journals.journal_for(config, create=False)
    run_id = journal.resolve_run(run)
    row = journal.run(run_id)
    assert row is not None
    if archives.is_archive(row.target):
        raise RunStateError(f"run {run_id} wrote only its archive ({row.target}); there is nothing to revert")
    if row.attempts == 0:
        raise RunStateError(f"run {run_id} was never applied ({row.status}); there is nothing to revert")
    request = RunRequest.build(kind="revert", source=row.target, target=row.target, reverts=run_id)
    run_request(config, request, kw)


@cli.group("archive")
def archive_group() -> None:
    """Show or verify an archive file."""


@archive_group.command("show")
@click.argument("archive", type=_archive_path)
@click.option("--json", "as_json", is_flag=True, help="The manifest as JSON")
def show(archive: Path, as_json: bool) -> None:
    """What an archive holds: its manifest (entities, counts, files, labels)."""
    import msgspec

    with ArchiveReader.open(_existing_archive(archive)) as reader:
        manifest = reader.manifest
    if as_json:
        print(msgspec.json.encode(manifest).decode())
        return
    from .. import render

    out.print(f"{archive.name}: {manifest.kind} of '{manifest.source}', {manifest.created_at}, "
              f"format {manifest.format_version}, run {manifest.run}")
    if manifest.labels:
        out.print(f"Labels: {', '.join(manifest.labels)}")
    out.print(render.simple_table("Entities", ["Entity", "Key", "Records", "Natural key"], [
        (e.name, e.key, e.count, ", ".join(e.natural_key)) for e in manifest.entities], whole=()))
    out.print(f"Files: {len(set(manifest.files.values()))} (for {len(manifest.files)} URIs); "
              f"new ids: {', '.join(manifest.new_ids) or 'none'}")


@archive_group.command("verify")
@click.argument("archive", type=_archive_path)
def verify(archive: Path) -> None:
    """Read every member, checking sizes and sha256 against the manifest. Exit 2 if any differs."""
    with ArchiveReader.open(_existing_archive(archive)) as reader:
        reader.verify()
    err.print(f"{archive.name}: ok")
