"""`bmc history` and `bmc diff`: the agreed versions of a stage and what changed between them.

Both only read; the command has already kept any agreement made before versions existed
(`_repair_when_free`), so the history is complete when it is shown.
"""

from __future__ import annotations

import json

import click

from bmc.cli.commands import print_table
from bmc.documents import versions
from bmc.documents.diff import diff_documents
from bmc.documents.stages import packaged
from bmc.workspace.paths import Project


def show_history(project: Project, stage_key: str | None, *, as_json: bool) -> None:
    table = packaged()
    chosen = [table.named(stage_key)] if stage_key else list(table.values())
    found = [v for stage in chosen for v in versions.list_versions(project, stage)]
    if as_json:
        click.echo(json.dumps([v.as_dict() for v in found], indent=2, ensure_ascii=False))
        return
    if not found:
        which = f"the {stage_key} stage" if stage_key else "this project"
        click.echo(
            f"No agreed versions in {which} yet: a version is kept each time a stage is agreed."
        )
        return
    rows: list[list[object]] = []
    for v in found:
        when = f"{v.date} {v.time}".strip() or "unknown"
        entry = v.decision or "none found"
        if v.origin != "agreement":
            entry += " (kept from an earlier agreement)"
        digest = v.digest if v.intact else f"{v.digest} (the file no longer matches it)"
        rows.append([v.stage, v.number, when, v.agreed_by, digest, entry])
    headers = ["stage", "version", "agreed on", "agreed by", "digest", "decisions.md entry"]
    print_table(headers, rows)


def show_diff(
    project: Project, stage_key: str, a: str | None, b: str | None, *, as_json: bool
) -> None:
    stage = packaged().named(stage_key)
    old = versions.side(project, stage, a)
    new = versions.side(project, stage, versions.WORKING if b is None else b)
    # The two sides just read, compared as `versions.compare` would: it would read them again.
    found = diff_documents(stage, old.data, new.data, old_label=old.label, new_label=new.label)
    if as_json:
        click.echo(json.dumps(found.as_dict(), indent=2, ensure_ascii=False))
        return
    click.echo(f"{stage.key}: from {old.label} to {new.label}")
    if not found.changes:
        same = "the same bytes" if old.data == new.data else "the same content (formatting aside)"
        click.echo(f"No changes: both hold {same}.")
        return
    for change in found.changes:
        click.echo(f"- {change.text}")
