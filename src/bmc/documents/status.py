"""`bmc status`: where each stage of the engagement stands, and what to do next.

State is derived from the files alone (a gate exists or not, matches its document or not,
validates or not), never stored separately, so it cannot disagree with the workspace.
Validation results come from the content-hash cache, so an unchanged project answers at once.
The stages, their documents and the skill for each are the packaged skills'
(`bmc.documents.stages`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

from bmc.documents import gate, versions
from bmc.documents.diff import diff_documents
from bmc.documents.stages import Stage, packaged
from bmc.documents.validate import DocumentReport, validate_project
from bmc.workspace.paths import Project


@dataclass(frozen=True)
class StageStatus:
    key: str
    document: str
    state: str  # missing | drafting | valid | agreed | stale
    detail: str


@dataclass(frozen=True)
class ProjectStatus:
    stages: list[StageStatus]
    next_step: str

    def as_dict(self) -> dict:
        return {"stages": [asdict(s) for s in self.stages], "next": self.next_step}


def project_status(project: Project, reports: list[DocumentReport] | None = None) -> ProjectStatus:
    """Each stage's state and the next step; `reports` are the project's validation reports
    when the caller already has them (the web page shows them too)."""
    if reports is None:
        reports = validate_project(project)
    by_path = {r.path: r for r in reports}
    table = packaged()
    stages = [_stage_status(project, stage, by_path) for stage in table.values()]
    return ProjectStatus(stages, next_step(stages, table, COMMANDS))


def _stage_status(project: Project, stage: Stage, reports: dict) -> StageStatus:
    gate_state = gate.gate_state(project, stage)
    document = project.project_dir / stage.document
    if gate_state == "stale":
        return StageStatus(stage.key, stage.document, "stale", _why_stale(project, stage))
    if gate_state == "agreed":
        return StageStatus(stage.key, stage.document, "agreed", f"{stage.gate} matches it")
    folder = stage.document.rsplit("/", 1)[0] + "/" if "/" in stage.document else None
    problems = [
        f"{r.path}: {p}"
        for path, r in reports.items()
        if path == stage.document or (folder and path.startswith(folder))
        for p in r.problems
    ]
    if not document.is_file():
        # Drafts on disk mean the work has started even before the stage's document exists.
        drafts = [
            path
            for path, r in reports.items()
            if folder
            and path.startswith(folder)
            and path != stage.document
            and r.status != "missing"
        ]
        if not drafts:
            return StageStatus(stage.key, stage.document, "missing", "")
        detail = f"{len(drafts)} draft(s); {stage.document} not written yet"
        return StageStatus(stage.key, stage.document, "drafting", detail)
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        return StageStatus(stage.key, stage.document, "drafting", problems[0] + more)
    return StageStatus(stage.key, stage.document, "valid", "ready to agree")


def _why_stale(project: Project, stage: Stage) -> str:
    document = project.project_dir / stage.document
    agreed = project.project_dir / stage.gate
    if not document.is_file():
        return "the document was deleted since it was agreed"
    data = document.read_bytes()
    if data != agreed.read_bytes():
        return _changed_since_agreed(project, stage, data)
    upstream = gate.reagreed_upstream(project, stage)
    named = f"the {upstream.key} stage" if upstream else "an earlier stage"
    return f"{named} was re-agreed after it"


def _changed_since_agreed(project: Project, stage: Stage, document: bytes) -> str:
    """`changed since agreed`, with what changed in `document` since the latest version,
    in a few words."""
    last = versions.latest(project, stage)
    if last is None:  # an agreement not yet kept as a version (a session holds the lock)
        return CHANGED
    found = diff_documents(stage, last.data(), document)
    what = "; ".join(found.summary(limit=3)) or "formatting only"
    return f"{CHANGED} (version {last.number}): {what}"


CHANGED = "changed since agreed"


@dataclass(frozen=True)
class Wording:
    """How a surface names the next step's actions (the terminal's commands, the page's
    buttons): the decision of what comes next is the same for both."""

    run: str  # {skill}
    agree: str  # {key}, {skill}
    again: str  # {key}, {document}
    done: str


COMMANDS = Wording(
    run="`bmc run {skill}` (or `bmc resume` if a session is under way).",
    agree="agree it with the client: `bmc agree {key}` or in the {skill} session.",
    again="review {document} and agree it again: `bmc agree {key}`.",
    done="every stage is agreed: `bmc render` for the client, `bmc run bmc-iterate` for changes.",
)


def next_step(stages: list[StageStatus], table: Mapping[str, Stage], words: Wording) -> str:
    """The first thing to do, from the first stage that is not agreed."""
    for stage in stages:
        skill = table[stage.key].skill
        if stage.state in ("missing", "drafting"):
            return words.run.format(skill=skill)
        if stage.state == "valid":
            return words.agree.format(key=stage.key, skill=skill)
        if stage.state == "stale":
            return words.again.format(key=stage.key, document=stage.document)
    return words.done
