"""The page of a stage's agreed versions and what changed between two of them (issue 12).

Read-only, and through the same code as `bmc history` and `bmc diff`
(`bmc.documents.versions`); every value reaches the page through the template's escaping,
and a version's text only through `views.safe_markdown`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from markupsafe import Markup

from bmc.documents import versions
from bmc.documents.diff import Diff, diff_documents
from bmc.documents.stages import Stage, packaged
from bmc.errors import UserError
from bmc.web.views import safe_markdown, sentence
from bmc.workspace.paths import Project


@dataclass(frozen=True)
class Shown:
    version: versions.Version
    html: Markup


@dataclass
class VersionsPage:
    stage: Stage
    versions: list[Shown]
    choices: list[tuple[str, str]]  # (value, label) for the two selects
    a: str
    b: str
    diff: Diff | None = None
    problem: str = ""
    same_bytes: bool = False
    others: list[tuple[str, int]] = field(default_factory=list)  # every stage, its count


def versions_page(project: Project, stage_key: str, a: str | None, b: str | None) -> VersionsPage:
    """Raises `UserError` for an unknown stage; a bad choice of versions is the page's
    `problem`, said in one sentence, with the versions still listed."""
    table = packaged()
    stage = table.named(stage_key)
    found = versions.list_versions(project, stage)
    shown = [Shown(v, safe_markdown(v.data().decode("utf-8", errors="replace"))) for v in found]
    working = (project.project_dir / stage.document).is_file()
    choices = [(str(v.number), f"version {v.number} ({v.date or 'date unknown'})") for v in found]
    if working:
        choices.append((versions.WORKING, f"the working {stage.document}"))
    page = VersionsPage(
        stage,
        shown,
        choices,
        a or (str(found[-1].number) if found else ""),
        b or versions.WORKING,
        # This stage's versions are listed already; only the others are read for a count.
        others=[
            (s.key, len(found) if s.key == stage.key else len(versions.list_versions(project, s)))
            for s in table.values()
        ],
    )
    if not found:
        return page
    try:
        # The two sides, read once: `versions.compare` would read both again to diff them.
        old = versions.side(project, stage, page.a)
        new = versions.side(project, stage, page.b)
        page.diff = diff_documents(
            stage, old.data, new.data, old_label=old.label, new_label=new.label
        )
        page.same_bytes = old.data == new.data
    except UserError as err:
        page.problem = sentence(str(err))
    return page
