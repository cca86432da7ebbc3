"""The agreement gate: only a person's explicit yes writes an `.agreed.md` file (SPEC section 6).

The order of writes is what makes a crash harmless:
1. an intent note in `.bmc/` (what is being agreed, its digest, scope, who);
2. the gate, an exact copy of the agreed bytes (atomic);
3. the version: `versions/<stage>/v<N>.json`, then `v<N>.md` (`bmc.documents.versions`);
4. the `decisions.md` entry (one appended record);
5. the intent note is removed.
A crash after 2 and before 5 leaves a gate without its version or its entry:
`repair_decisions` (run at the start of every project command) finds the note, sees the gate
matches it, and completes the version and the entry once. A crash before 2 leaves a note for
a gate that was never written: it is dropped, with a version sidecar it may have left.

The gate files: this module writes them, and only `agreement` calls it, after a person's
answer. Threat: the model writing a gate itself: the file tools refuse every spelling of
`*.agreed.md`, `decisions.md` and `.bmc/` (`confine`). Threat: a gate that no longer matches
its document, or one built on an upstream stage agreed again since, counting as agreed:
`gate_state` calls both stale. Threat: a hand-edited decisions.md read as an agreement:
status reads the order of entries only; what is agreed is the gate's bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import posixpath
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jinja2

from bmc.crashpoints import crash_point
from bmc.documents import versions
from bmc.documents.stages import Stage, StageTable, packaged
from bmc.errors import PrerequisiteError, UserError
from bmc.workspace.paths import Project, append_record, atomic_write

DECISIONS = "decisions.md"
INTENT = "agreement-intent.json"


# The stage table is built from the packaged skills' metadata in one place (bmc.documents.stages);
# these names stay here because the gate's callers have always imported them from it.
STAGES: StageTable = packaged()
stage_for_document = STAGES.for_document
upstream_of = STAGES.upstream_of
downstream_of = STAGES.downstream_of
stage_named = STAGES.named


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()[:12]


@dataclass(frozen=True)
class Intent:
    stage: str
    digest: str
    date: str
    items: list[str]
    scope: str
    agreed_by: str
    reagreed: bool
    # Size of decisions.md before the entry is appended (-1: no file yet), so a repair can
    # tell a torn entry of ours from text a person wrote.
    decisions_size: int = -1
    # The version this agreement keeps (0: a note written before versions existed), the
    # one before it, and what changed since that one (the decisions entry says so).
    version: int = 0
    previous: int = 0
    changes: list[str] = field(default_factory=list)
    time: str = ""


@dataclass(frozen=True)
class Proposal:
    """What the consultant is shown before they say yes."""

    stage: Stage
    data: bytes
    digest: str
    items: list[str]
    problems: list[str]
    details: list[str]  # what the consultant is shown per item (e.g. a segment's propositions)
    # The gate's digest when this was shown (None: no gate): a gate that changed after that,
    # to exactly these bytes, was written by another surface answering first.
    gate_digest: str | None = None


def check_stage(project: Project, stage: Stage) -> list[str]:
    """Every problem in the stage's document and in what it depends on (its drafts)."""
    from bmc.documents.validate import validate_project

    problems = []
    folder = posixpath.dirname(stage.document) + "/"
    for report in validate_project(project):
        if report.path != stage.document and not report.path.startswith(folder):
            continue
        if report.status == "missing":
            problems.append(f"{report.path} does not exist yet")
        problems += [f"{report.path}: {p}" for p in report.problems]
    return problems


def summarise(stage: Stage, text: str) -> list[str]:
    """What the consultant is shown, one line per segment with its value propositions (the
    brief: its sections). The part before ": " is what the decisions entry lists."""
    if stage.key == "segments":
        from bmc.documents.schemas.segments import parse_segments_document

        doc = parse_segments_document(text)
        if isinstance(doc, list):
            return []
        return [_line(s.name, [vp.name for vp in s.value_propositions]) for s in doc.segments]
    if stage.key == "canvas":
        from bmc.documents.schemas.canvas import parse_canvas

        canvas = parse_canvas(text)
        if isinstance(canvas, list):
            return []
        props = canvas.value_propositions
        return [_line(s.name, [vp.name for vp in props.get(s.name, [])]) for s in canvas.segments]
    return [line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("## ")]


def _line(name: str, propositions: list[str]) -> str:
    return f"{name}: {', '.join(propositions)}" if propositions else name


def propose(project: Project, stage: Stage) -> Proposal:
    """Read and check the document (and what it depends on) for agreement."""
    path = project.project_dir / stage.document
    if stage.upstream:
        upstream = STAGES[stage.upstream]
        if not (project.project_dir / upstream.gate).is_file():
            raise PrerequisiteError(
                f"{upstream.gate} is missing: agree the {upstream.key} stage first."
            )
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PrerequisiteError(f"{stage.document} does not exist yet: nothing to agree.") from None
    text = data.decode("utf-8", errors="replace")
    details = summarise(stage, text)
    # The brief's sections are shown, but an entry listing them would say nothing.
    items = [d.split(": ", 1)[0] for d in details] if stage.key != "brief" else []
    problems = check_stage(project, stage)
    return Proposal(
        stage, data, digest(data), items, problems, details, gate_digest(project, stage)
    )


def gate_digest(project: Project, stage: Stage) -> str | None:
    try:
        return digest((project.project_dir / stage.gate).read_bytes())
    except FileNotFoundError:
        return None


def agree(
    project: Project,
    proposal: Proposal,
    *,
    scope: str,
    agreed_by: str,
    today: dt.date | None = None,
) -> str:
    """Write the gate and its decisions entry for exactly the bytes shown; returns the entry.

    Raises UserError when the document changed since it was shown (nothing is agreed)."""
    stage = proposal.stage
    try:
        now = digest((project.project_dir / stage.document).read_bytes())
    except FileNotFoundError:
        now = "deleted"
    if now != proposal.digest:
        raise UserError(
            f"{stage.document} changed after it was shown ({proposal.digest} -> {now}); "
            "nothing was agreed."
        )
    gate = project.project_dir / stage.gate
    decisions = _decisions_log(project)
    # The history first: an agreement made before versions existed is the one this replaces.
    versions.record_earlier_agreements(project)
    last = versions.latest(project, stage)
    intent = Intent(
        stage=stage.key,
        digest=proposal.digest,
        date=(today or dt.date.today()).isoformat(),
        items=proposal.items,
        scope=scope.strip(),
        agreed_by=agreed_by,
        reagreed=gate.exists(),
        decisions_size=decisions.stat().st_size,
        version=last.number + 1 if last else 1,
        previous=last.number if last else 0,
        changes=_changes(stage, last, proposal.data),
        time=versions.now_time(),
    )
    intent_path = project.state_dir / INTENT
    atomic_write(intent_path, json.dumps(asdict(intent)))
    atomic_write(gate, proposal.data)
    crash_point("gate-written")
    _keep_version(project, intent, proposal.data)
    entry = _record(project, intent)
    intent_path.unlink(missing_ok=True)
    return entry


def _changes(stage: Stage, last: versions.Version | None, data: bytes) -> list[str]:
    """What changed since the previous version, in a few words for the decisions entry."""
    if last is None:
        return []
    from bmc.documents.diff import diff_documents

    return diff_documents(stage, last.data(), data).summary()


def _keep_version(project: Project, intent: Intent, data: bytes) -> None:
    stage = STAGES[intent.stage]
    heading = render_entry(intent).strip().splitlines()[0].removeprefix("## ")
    meta: dict[str, object] = {
        "digest": intent.digest,
        "date": intent.date,
        "time": intent.time,
        "agreed_by": intent.agreed_by,
        "scope": intent.scope,
        "decision": heading,
        "changes": intent.changes,
        "origin": "agreement",
    }
    versions.write(project, stage, intent.version, data, meta)


def _record(project: Project, intent: Intent) -> str:
    entry = render_entry(intent)
    path = _decisions_log(project)
    if not path.read_bytes().endswith(b"\n"):
        # A hand edit that dropped the final newline would glue our heading onto its last
        # line, and an entry without its heading is invisible to status and repair.
        entry = "\n" + entry
    append_record(path, entry)
    return entry


def _decisions_log(project: Project) -> Path:
    """decisions.md, created with its heading if this is the project's first agreement."""
    path = project.project_dir / DECISIONS
    if not path.exists():
        atomic_write(path, f"# Decisions — {project.org_name()} {project.slug}\n")
    return path


def render_entry(intent: Intent) -> str:
    stage = STAGES[intent.stage]
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("bmc.documents", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    # Threat: a forged agreement. Every field on one line: the scope notes come from the
    # model, and a line break in them could forge a heading (`## ... — Stage 1: ...
    # re-agreed`) that status and repair would then read as a real agreement.
    flat = Intent(
        stage=intent.stage,
        digest=_one_line(intent.digest),
        date=_one_line(intent.date),
        items=[_one_line(item) for item in intent.items],
        scope=_one_line(intent.scope),
        agreed_by=_one_line(intent.agreed_by),
        reagreed=intent.reagreed,
        version=intent.version,
        previous=intent.previous,
        changes=[_one_line(change) for change in intent.changes],
    )
    return env.get_template("decision.md.j2").render(stage=stage, intent=flat)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def needs_repair(project: Project) -> bool:
    """Whether `repair_decisions` has anything to do (read only, for a command deciding
    whether to take the project's lock)."""
    return (project.state_dir / INTENT).exists() or bool(versions.unrecorded(project))


def repair_decisions(project: Project) -> str | None:
    """Finish an agreement a crash interrupted, and keep as versions the agreements made
    before versions existed; returns a note when something was repaired."""
    notes = [_finish_agreement(project), *versions.record_earlier_agreements(project)]
    return "; ".join(note for note in notes if note) or None


def _finish_agreement(project: Project) -> str | None:
    intent_path = project.state_dir / INTENT
    try:
        intent = Intent(**json.loads(intent_path.read_text("utf-8")))
        stage = STAGES[intent.stage]
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, KeyError):
        intent_path.unlink(missing_ok=True)
        return "an unreadable agreement note in .bmc/ was dropped; nothing was agreed by it"
    gate = project.project_dir / stage.gate
    note = None
    # The gate as this agreement wrote it, read once; None when it never got that far.
    written = gate.read_bytes() if gate.is_file() else None
    if written is not None and digest(written) != intent.digest:
        written = None
    if intent.version and written is not None:
        _keep_version(project, intent, written)
    elif intent.version:
        versions.drop_unfinished(project, stage, intent.version)
    if written is not None and not _is_recorded(project, intent):
        _drop_torn_entry(project, intent)
        _record(project, intent)
        note = (
            f"the {stage.what.lower()} agreement of {intent.date} was missing from "
            "decisions.md and was recorded"
        )
    intent_path.unlink(missing_ok=True)
    return note


def _drop_torn_entry(project: Project, intent: Intent) -> None:
    """Cut off the part of our entry a crash left half-written, and only that: text past the
    recorded size that is not a beginning of the entry is a person's, and stays.

    Threat: a repair that deletes what a person wrote in decisions.md after the crash."""
    path = project.project_dir / DECISIONS
    if intent.decisions_size < 0 or not path.is_file():
        return
    data = path.read_bytes()
    tail = data[intent.decisions_size :]
    entry = render_entry(intent).encode("utf-8")
    if tail and (entry.startswith(tail) or (b"\n" + entry).startswith(tail)):
        with open(path, "r+b") as handle:
            handle.truncate(intent.decisions_size)
            os.fsync(handle.fileno())


def _is_recorded(project: Project, intent: Intent) -> bool:
    """Whether this very agreement's entry is in decisions.md.

    The whole rendered entry is looked for, not just the digest: re-agreeing bytes agreed
    before (a document changed and changed back) has an older entry with the same digest,
    and the new entry must still be written."""
    try:
        text = (project.project_dir / DECISIONS).read_text("utf-8")
    except FileNotFoundError:
        return False
    return render_entry(intent).strip() in text


# --- status --------------------------------------------------------------------------------

ENTRY_RE = re.compile(r"^## (\S+) — Stage (\d+): .*?(re-)?agreed", re.MULTILINE)


def agreement_order(project: Project) -> dict[str, int]:
    """For each stage number, the position of its latest entry in decisions.md."""
    try:
        text = (project.project_dir / DECISIONS).read_text("utf-8")
    except FileNotFoundError:
        return {}
    order: dict[str, int] = {}
    for index, match in enumerate(ENTRY_RE.finditer(text)):
        order[match.group(2)] = index
    return order


def gate_state(project: Project, stage: Stage) -> str | None:
    """`agreed`, `stale`, or None when there is no gate."""
    gate = project.project_dir / stage.gate
    if not gate.is_file():
        return None
    document = project.project_dir / stage.document
    # A deleted document no longer "matches" its gate either.
    if not document.is_file() or document.read_bytes() != gate.read_bytes():
        return "stale"
    if reagreed_upstream(project, stage):
        return "stale"
    return "agreed"


def reagreed_upstream(project: Project, stage: Stage) -> Stage | None:
    """The nearest stage upstream (however far) agreed again after `stage` was agreed.

    Every stage up the chain counts: re-agreeing the brief leaves the canvas built on
    segments that were themselves built on the old brief."""
    order = agreement_order(project)
    if stage.number not in order:
        return None
    agreed_at = order[stage.number]
    return next((up for up in upstream_of(stage) if order.get(up.number, -1) > agreed_at), None)
