"""Numbered, immutable versions of what was agreed (SPEC section 12; issue 12).

Every agreement keeps the exact bytes agreed as the next version of its stage, in the
project folder so it travels with the engagement in git:

    versions/<stage>/v<N>.json   who agreed, when, the digest, the decisions entry, what changed
    versions/<stage>/v<N>.md     exactly the bytes agreed

The sidecar is written first and the document renamed in after it (both atomically), so a
version is whole exactly when its `.md` exists: a kill -9 between the two leaves a sidecar
alone, which is not a version and which the next command completes (from the gate, whose
bytes are the agreed ones) or drops. A version is never rewritten. The names never end in
`.agreed.md`, so a version never counts as a gate; the model may read them but the file
tools refuse every write under `versions/` (`workspace.confine`).

A gate whose bytes are not the stage's latest version (an agreement made before versions
existed, or by an older bmc) is recorded as the next version the first time a command
sees it, with who and when taken from its decisions.md entry when there is one.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from bmc.crashpoints import crash_point
from bmc.documents.stages import Stage, packaged
from bmc.errors import UserError
from bmc.workspace.paths import Project, atomic_write

if TYPE_CHECKING:
    from bmc.documents.diff import Diff

FOLDER = "versions"
_NAME = re.compile(r"^v([1-9][0-9]{0,5})\.md$")


@dataclass(frozen=True)
class Version:
    """One agreed version of a stage's document."""

    stage: str
    number: int
    digest: str
    date: str  # the agreement's date, as its decisions entry gives it
    time: str  # HH:MM (local) when bmc recorded it; "" for an agreement recorded afterwards
    agreed_by: str
    scope: str
    decision: str  # the heading of its decisions.md entry ("" when none was found)
    changes: list[str] = field(default_factory=list)  # what changed since the previous one
    origin: str = "agreement"  # or "earlier agreement": recorded from a gate afterwards
    path: Path = Path()
    intact: bool = True  # False when the .md no longer holds the digest recorded for it

    def data(self) -> bytes:
        return self.path.read_bytes()

    def label(self) -> str:
        return f"version {self.number}"

    def as_dict(self) -> dict[str, object]:
        found = asdict(self)
        found["path"] = f"{FOLDER}/{self.stage}/{self.path.name}"
        return found


def folder(project: Project, stage: Stage) -> Path:
    return project.project_dir / FOLDER / stage.key


def _meta_path(project: Project, stage: Stage, number: int) -> Path:
    return folder(project, stage) / f"v{number}.json"


def _numbers(project: Project, stage: Stage) -> list[int]:
    """The numbers of the stage's version documents, ascending (nothing is read)."""
    try:
        names = [p.name for p in folder(project, stage).iterdir()]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(int(match.group(1)) for name in names if (match := _NAME.match(name)))


def list_versions(project: Project, stage: Stage) -> list[Version]:
    """The stage's whole versions, oldest first (a sidecar without its document is none)."""
    found = (_read(project, stage, number) for number in _numbers(project, stage))
    return [version for version in found if version is not None]


def latest(project: Project, stage: Stage) -> Version | None:
    """The stage's newest whole version. Every command asks (status, repair), so only that
    one is read, not the whole history."""
    found = (_read(project, stage, number) for number in reversed(_numbers(project, stage)))
    return next((version for version in found if version is not None), None)


def get(project: Project, stage: Stage, number: int) -> Version:
    """Version `number` of the stage, or a one-sentence `UserError`."""
    version = _read(project, stage, number)
    if version is None:
        have = [v.number for v in list_versions(project, stage)]
        known = (
            f"it has versions {', '.join(map(str, have))}"
            if have
            else "it has none yet (a version is kept each time the stage is agreed)"
        )
        raise UserError(f"the {stage.key} stage has no version {number}: {known}.")
    return version


def _read(project: Project, stage: Stage, number: int) -> Version | None:
    from bmc.documents.gate import digest

    document = folder(project, stage) / f"v{number}.md"
    if not document.is_file():
        return None
    try:
        meta = json.loads(_meta_path(project, stage, number).read_text("utf-8"))
        if not isinstance(meta, dict):
            raise ValueError
    except (OSError, ValueError):
        # A person's edit broke the sidecar: the bytes are still the agreed ones; say so.
        meta = {"agreed_by": f"unknown (its v{number}.json is missing or unreadable)"}
    recorded = str(meta.get("digest", ""))
    actual = digest(document.read_bytes())
    return Version(
        stage=stage.key,
        number=number,
        digest=recorded or actual,
        date=str(meta.get("date", "")),
        time=str(meta.get("time", "")),
        agreed_by=str(meta.get("agreed_by", "")),
        scope=str(meta.get("scope", "")),
        decision=str(meta.get("decision", "")),
        changes=[str(c) for c in meta.get("changes", []) if isinstance(c, str)],
        origin=str(meta.get("origin", "agreement")),
        path=document,
        intact=not recorded or recorded == actual,
    )


def write(
    project: Project, stage: Stage, number: int, data: bytes, meta: dict[str, object]
) -> bool:
    """Keep `data` as version `number` (sidecar first, then the document); returns False when
    that version already exists (a version is never rewritten). Call it under the lock."""
    document = folder(project, stage) / f"v{number}.md"
    if document.exists():
        return False
    record = {"stage": stage.key, "version": number, "document": stage.document, **meta}
    atomic_write(
        _meta_path(project, stage, number), json.dumps(record, indent=2, ensure_ascii=False) + "\n"
    )
    crash_point("version-meta-written")
    atomic_write(document, data)
    crash_point("version-written")
    return True


def drop_unfinished(project: Project, stage: Stage, number: int) -> None:
    """Remove a sidecar a crash left without its document (an agreement never completed)."""
    if not (folder(project, stage) / f"v{number}.md").exists():
        _meta_path(project, stage, number).unlink(missing_ok=True)


def now_time() -> str:
    return dt.datetime.now().strftime("%H:%M")


# --- agreements recorded before versions existed -------------------------------------------


@dataclass(frozen=True)
class Decision:
    """One entry of decisions.md, as far as a version needs it."""

    heading: str  # `2027-01-12 — Stage 1: Engagement brief agreed`
    date: str
    stage_number: str
    digest: str
    agreed_by: str
    scope: str


# An entry's heading, as `gate.ENTRY_RE` knows it (a heading that agrees nothing is none).
_HEADING = re.compile(r"^## ((\S+) — Stage (\d+): .*agreed.*)$")
_FIELD = re.compile(r"^\*\*(Digest|Agreed by|Scope)\*\*:\s*(.*)$")


def decisions(project: Project) -> list[Decision]:
    """The entries of decisions.md, in order (a hand-written line that is no entry is skipped)."""
    try:
        text = (project.project_dir / "decisions.md").read_text("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    found: list[Decision] = []
    current: dict[str, str] | None = None
    for line in [*text.splitlines(), "## end"]:
        heading = _HEADING.match(line)
        if heading or line.startswith("## "):
            if current is not None:
                found.append(Decision(**current))
            current = None
            if heading:
                current = {
                    "heading": heading.group(1),
                    "date": heading.group(2),
                    "stage_number": heading.group(3),
                    "digest": "",
                    "agreed_by": "",
                    "scope": "",
                }
            continue
        field_ = _FIELD.match(line)
        if current is not None and field_:
            key = {"Digest": "digest", "Agreed by": "agreed_by", "Scope": "scope"}[field_.group(1)]
            current[key] = field_.group(2).strip()
    return found


def entry_for(entries: list[Decision], stage: Stage, digest: str) -> Decision | None:
    """The latest of `entries` that agreed `digest` for `stage`."""
    matching = [d for d in entries if d.stage_number == stage.number and d.digest == digest]
    return matching[-1] if matching else None


class _Unrecorded(NamedTuple):
    """A gate that is not its stage's latest version, with what was read to find it out."""

    stage: Stage
    agreed: bytes
    digest: str
    last: Version | None


def _unrecorded(project: Project) -> list[_Unrecorded]:
    from bmc.documents.gate import digest

    found = []
    for stage in packaged().values():
        try:
            agreed = (project.project_dir / stage.gate).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            continue
        last, agreed_digest = latest(project, stage), digest(agreed)
        if last is None or last.digest != agreed_digest:
            found.append(_Unrecorded(stage, agreed, agreed_digest, last))
    return found


def unrecorded(project: Project) -> list[Stage]:
    """The stages whose gate is not their latest version (read only; cheap)."""
    return [pending.stage for pending in _unrecorded(project)]


def record_earlier_agreements(project: Project) -> list[str]:
    """Keep each gate that is not its stage's latest version as the next version; returns a
    note per version kept. Idempotent: afterwards every gate is its latest version. Call it
    under the lock, after an interrupted agreement has been completed."""
    pending = _unrecorded(project)
    entries = decisions(project) if pending else []
    notes = []
    for stage, agreed, found, last in pending:
        entry = entry_for(entries, stage, found)
        number = (last.number if last else 0) + 1
        meta: dict[str, object] = {
            "digest": found,
            "date": entry.date if entry else "",
            "time": "",
            "agreed_by": entry.agreed_by if entry else "unknown (no decisions.md entry)",
            "scope": entry.scope if entry else "",
            "decision": entry.heading if entry else "",
            "changes": [],
            "origin": "earlier agreement",
        }
        if write(project, stage, number, agreed, meta):
            when = f" of {entry.date}" if entry else ""
            notes.append(
                f"the {stage.what.lower()} agreement{when} was kept as version {number} "
                f"({FOLDER}/{stage.key}/v{number}.md)"
            )
    return notes


# --- comparing two versions ----------------------------------------------------------------

WORKING = "working"


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a version, or the working document (`version` None)."""

    label: str
    data: bytes
    version: Version | None = None


def side(project: Project, stage: Stage, which: str | int | None) -> Side:
    """`which`: a version number (`2`, `v2`), `working` for the document as it is now, or
    None for the latest version. One sentence (`UserError`) when there is no such thing."""
    if which is None:
        last = latest(project, stage)
        if last is None:
            raise UserError(
                f"the {stage.key} stage has no agreed version yet: a version is kept each "
                f"time it is agreed (`bmc agree {stage.key}`)."
            )
        return Side(last.label(), last.data(), last)
    if isinstance(which, str) and which.strip().lower() == WORKING:
        try:
            data = (project.project_dir / stage.document).read_bytes()
        except FileNotFoundError:
            raise UserError(
                f"{stage.document} does not exist: there is no working document."
            ) from None
        return Side(f"the working {stage.document}", data)
    number = _number(which)
    if number is None:
        raise UserError(
            f"{which!r} is not a version: give a number such as 2 (or v2), or `working`."
        )
    found = get(project, stage, number)
    return Side(found.label(), found.data(), found)


def _number(which: str | int) -> int | None:
    if isinstance(which, int):
        return which if which > 0 else None
    text = which.strip().lower().removeprefix("v")
    return int(text) if text.isdigit() and 0 < int(text) < 10**6 else None


def compare(
    project: Project, stage: Stage, a: str | int | None = None, b: str | int | None = None
) -> Diff:
    """What changed from `a` to `b` (see `side`; `b` None means the working document), in
    the document's own terms."""
    from bmc.documents.diff import diff_documents

    old = side(project, stage, a)
    new = side(project, stage, WORKING if b is None else b)
    return diff_documents(stage, old.data, new.data, old_label=old.label, new_label=new.label)
