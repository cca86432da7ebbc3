"""What the pages show, read from the workspace: engagements, a project's documents with
their validation state, its sessions, a session's transcript, the decisions log.

Read-only, and through the same rules as the command line (`status`, `validate`, the
journal reader); markdown becomes HTML only through `safe_markdown`, with raw HTML off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt
from markupsafe import Markup

from bmc.documents import stages
from bmc.documents.status import ProjectStatus, Wording, next_step, project_status
from bmc.documents.validate import DocumentReport, validate_project
from bmc.engine.journal import read_journal
from bmc.engine.session import list_sessions, session_path
from bmc.errors import UserError
from bmc.workspace.paths import Project

# CommonMark with raw HTML off: `<script>` in a document or a reply is shown as text. Links
# keep markdown-it's own check (no `javascript:`, `vbscript:`, `file:` or non-image `data:`).
# Images are off too: a document or a reply must not make the browser fetch anything.
_MARKDOWN = (
    MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table").disable("image")
)
# The decisions log writes one `**Field**: value` a line with no blank line between them;
# CommonMark would run an entry's fields into one paragraph, so its line ends are kept.
_MARKDOWN_LINES = (
    MarkdownIt("commonmark", {"html": False, "linkify": False, "breaks": True})
    .enable("table")
    .disable("image")
)


def safe_markdown(text: str, *, keep_line_ends: bool = False) -> Markup:
    """Markdown as HTML in which nothing can run: raw HTML escaped, unsafe links refused."""
    return Markup((_MARKDOWN_LINES if keep_line_ends else _MARKDOWN).render(text))


def sentence(text: str) -> str:
    """A refusal as the page shows it: one line, starting with a capital."""
    text = " ".join(text.split())
    return text[:1].upper() + text[1:]


@dataclass(frozen=True)
class Engagement:
    org: str
    name: str
    slug: str
    stages: list[Any]
    next_step: str


# The next step in the page's own words: its buttons, not the terminal's commands.
PAGE_WORDS = Wording(
    run="Start {skill} (or resume its session).",
    agree="Agree the {key} with the client: in the {skill} session, or with “Agree the {key}”.",
    again="Review {document} and agree it again (“Agree the {key}”).",
    done="Every stage is agreed: render the client pages, or start bmc-iterate for changes.",
)


def page_status(project: Project, reports: list[DocumentReport] | None = None) -> ProjectStatus:
    """`bmc status` for the page: the same stages, the next step in the page's words."""
    report = project_status(project, reports)
    step = next_step(report.stages, stages.packaged(), PAGE_WORDS)
    return ProjectStatus(report.stages, step)


def engagements(workspace: Path) -> list[Engagement]:
    """Every project under `clients/`, with each stage's state and the next step."""
    found = []
    clients = workspace / "clients"
    for org_dir in sorted(p for p in clients.iterdir() if p.is_dir()) if clients.is_dir() else []:
        projects = org_dir / "projects"
        for project_dir in (
            sorted(p for p in projects.iterdir() if p.is_dir()) if projects.is_dir() else []
        ):
            project = Project(workspace, org_dir.name, project_dir.name)
            try:
                report = page_status(project)
            except UserError:
                continue
            found.append(
                Engagement(
                    project.org, project.org_name(), project.slug, report.stages, report.next_step
                )
            )
    return found


@dataclass
class Document:
    path: str
    label: str
    state: str  # valid | invalid | missing | free text (no schema governs it)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    html: Markup = field(default_factory=Markup)
    text: str = ""


# Shown first, in this order; segment drafts follow, then any other governed document.
_FIXED = ("brief.md", "hypotheses.md")


def documents(project: Project, reports: list[DocumentReport] | None = None) -> list[Document]:
    """The engagement's documents, rendered, each with what `bmc validate` says of it
    (`reports`, when the caller has validated already)."""
    if reports is None:
        reports = validate_project(project)
    by_path = {r.path: r for r in reports}
    paths = [*_FIXED, *sorted(p for p in by_path if p not in _FIXED)]
    table = stages.packaged()
    canvas = table.get("canvas")
    shown = []
    for path in paths:
        if canvas is not None and path == canvas.document:
            continue  # the canvas has its own tab: the page `bmc render` writes
        file = project.project_dir / path
        report = by_path.get(path)
        try:
            text = file.read_text("utf-8")
        except (OSError, UnicodeDecodeError):
            text = ""
        if report is None and not text:
            continue
        state = report.status if report else "free text"
        shown.append(
            Document(
                path=path,
                label=_label(path),
                state=state,
                problems=list(report.problems) if report else [],
                warnings=list(report.warnings) if report else [],
                html=safe_markdown(text) if text else Markup(""),
                text=text,
            )
        )
    return shown


def _label(path: str) -> str:
    name = Path(path).stem
    if "/drafts/" in path:
        return f"Draft: {name.replace('-', ' ')}"
    return {"brief": "Brief", "hypotheses": "Hypotheses", "segments": "Segments"}.get(
        name, name.replace("-", " ").capitalize()
    )


def sessions(project: Project) -> list[Any]:
    return list(reversed(list_sessions(project)))


@dataclass(frozen=True)
class Said:
    """One turn of a transcript: who (`consultant`, `assistant`, `tool`) and what."""

    who: str
    text: str
    html: Markup = field(default_factory=Markup)
    error: bool = False


def transcript(project: Project, session_id: str | None) -> list[Said]:
    """A session's conversation as the page shows it, read from its journal (read-only:
    a torn tail is simply not shown)."""
    try:
        path = session_path(project, session_id)
        records = read_journal(path).records
    except UserError:
        return []
    said: list[Said] = []
    first = True
    for record in records:
        if record.kind == "message":
            said += _message(record.data, first)
            first = False
        elif record.kind == "tool_result":
            block = record.data.get("block", {})
            if block.get("is_error"):
                text = str(block.get("content", ""))
                said.append(Said("tool", text.splitlines()[0] if text else "refused", error=True))
    return said


def _message(message: dict[str, Any], opening: bool) -> list[Said]:
    content = message.get("content")
    blocks = content if isinstance(content, list) else [{"type": "text", "text": str(content)}]
    out = []
    for block in blocks:
        if block.get("type") == "text" and message.get("role") == "assistant":
            out.append(Said("assistant", block["text"], safe_markdown(block["text"])))
        elif block.get("type") == "text" and not opening:
            out.append(Said("consultant", block["text"]))
        elif block.get("type") == "tool_use":
            tool_input = block.get("input") or {}
            target = (
                tool_input.get("file_path")
                or tool_input.get("document")
                or tool_input.get("pattern")
                or ""
            )
            out.append(Said("tool", f"{block.get('name')} {target}".strip()))
    return out


def decisions(project: Project) -> Markup:
    try:
        text = (project.project_dir / "decisions.md").read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        return Markup("")
    return safe_markdown(text, keep_line_ends=True)
