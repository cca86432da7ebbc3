"""The system prompt: the skill's body wrapped with the engagement's context.

Rendered once per session and stored in its journal; it never changes inside a session,
because the prompt cache keys on its exact bytes.
"""

from __future__ import annotations

import datetime as dt

import jinja2

from bmc.documents.skills import Skill
from bmc.workspace.packaged import data_dir
from bmc.workspace.paths import STATE_DIR, Project

LISTING_CAP = 200


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(data_dir("prompts")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def list_files(project: Project) -> list[str]:
    """Project files, then `resources/` and `inbox/`, as the model spells them; no `.bmc/`."""
    found: list[str] = []
    for prefix, root in (
        ("", project.project_dir),
        ("resources/", project.resources_dir),
        ("inbox/", project.inbox_dir),
    ):
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if rel.parts[0] == STATE_DIR or not path.is_file() or path.name.startswith("."):
                continue
            found.append(prefix + rel.as_posix())
    return found


def render_system_prompt(
    skill: Skill,
    project: Project,
    *,
    today: dt.date | None = None,
    resources_writable: bool = False,
    has_agreement: bool = True,
    optional_tools: tuple[str, ...] = (),
) -> str:
    files = list_files(project)
    if len(files) > LISTING_CAP:
        hidden = len(files) - LISTING_CAP
        files = [*files[:LISTING_CAP], f"... and {hidden} more (use glob)"]
    template = _environment().get_template("system.md.j2")
    return template.render(
        org=project.org,
        org_name=project.org_name(),
        project=project.slug,
        date=(today or dt.date.today()).isoformat(),
        skill=skill,
        skill_files=skill.references(),
        files=files,
        resources_writable=resources_writable,
        has_agreement=has_agreement,
        optional_tools=optional_tools,
    )
