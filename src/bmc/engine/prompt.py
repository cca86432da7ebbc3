"""The system prompt: the skill's body wrapped with the engagement's context.

Rendered once per session and stored in its journal; it never changes inside a session,
because the prompt cache keys on its exact bytes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jinja2

from bmc.documents.skills import Skill
from bmc.workspace.confine import Confinement, Refused
from bmc.workspace.packaged import data_dir
from bmc.workspace.paths import Project

LISTING_CAP = 200
# The profile is meant to be a paragraph or two; a long one is cut so it cannot crowd out
# the skill (the validator still finds figures in all of it).
PROFILE_CAP = 4000
# Where the engagement brief keeps the client's name: the brief template's title
# (`# Engagement brief — <Organisation>`), or a `Client:` line as briefs often open with.
BRIEFS = ("brief.agreed.md", "brief.md")
_CLIENT_LINE = re.compile(
    r"^\s*(?:[-*+]\s+)?(?:\*\*|__)?(?:client|organi[sz]ation)(?:\*\*|__)?\s*:(?:\*\*|__)?\s*"
    r"(?P<name>\S.*?)\s*$",
    re.IGNORECASE,
)
_BRIEF_TITLE = re.compile(
    r"^#\s+(?:\*\*)?engagement brief\s*(?:[—–:]|--?)\s*(?P<name>\S.*?)(?:\*\*)?\s*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class OrgName:
    """The organisation's name for the prompt, and where it came from."""

    name: str
    source: Literal["org.md", "brief", "slug"]


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(data_dir("prompts")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def organisation_name(project: Project) -> OrgName:
    """The display name from `org.md`; without one, the name the engagement brief gives the
    client (its `Client:` line, else its title); without that either, the folder's slug.

    A project made by `bmc init` without `--name`, or an org.md written by hand, has no
    display name, and a document titled with the slug (`acme-ltd`) is wrong in front of
    the client, while the brief the client agreed spells the name out.
    """
    name = project.org_name()
    if name != project.org:
        return OrgName(name, "org.md")
    inside = project.project_dir.resolve()
    for brief in BRIEFS:
        path = project.project_dir / brief
        try:
            # Threat: a brief linked from elsewhere putting another client's name in the prompt.
            if not path.resolve().is_relative_to(inside):
                continue
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        found = _name_in_brief(text)
        if found:
            return OrgName(found, "brief")
    return OrgName(project.org, "slug")


def organisation_profile(project: Project) -> str:
    """The body of `org.md` (the organisation's short profile), without its front matter
    and without a title that only repeats the name; "" when there is none.

    The model cannot open `org.md` (it lies outside the project folder), yet the validator
    finds figures in it, so the prompt carries it. Read once, when the prompt is rendered.
    """
    import frontmatter

    path = project.org_dir / "org.md"
    try:
        # Threat: an org.md linked from elsewhere putting another client's profile in the prompt.
        if not path.resolve().is_relative_to(project.org_dir.resolve()):
            return ""
        body = frontmatter.loads(path.read_text(encoding="utf-8-sig")).content
    except (OSError, UnicodeDecodeError, ValueError):
        return ""
    lines = body.strip().splitlines()
    if lines and lines[0].startswith("# "):  # `bmc init` writes the name as a title
        lines = lines[1:]
    body = "\n".join(lines).strip()
    if len(body) > PROFILE_CAP:
        cut = body.rfind("\n", 0, PROFILE_CAP)
        kept = body[: cut if cut > 0 else PROFILE_CAP].rstrip()
        body = kept + "\n\n(The rest of `org.md` is left out.)"
    return body


def _name_in_brief(text: str) -> str | None:
    lines = text.splitlines()[:40]  # the name is at the top, never deep in the body
    for pattern in (_CLIENT_LINE, _BRIEF_TITLE):
        for line in lines:
            match = pattern.match(line)
            if match:
                return match.group("name").strip(" *_")
    return None


def list_files(project: Project, skill_dir: Path) -> list[str]:
    """Every file the model can read at the start: the project's, then `resources/` and
    `inbox/`, as the model spells them.

    Walked through the same confinement as the file tools, so a symlink leading out of the
    permitted roots (or a dangling one) is not listed: the model would only be refused it.
    Hidden files and folders (`.gitignore`, `.git/`, `.bmc/`) are left out as noise.
    """
    confinement = Confinement(project, skill_dir, resources_writable=False)
    found: list[str] = []
    starts = [("", confinement.resolve("", for_write=False))]
    # An inbox that leads out is as unreadable as its files.
    with contextlib.suppress(Refused):
        starts.append(("inbox/", confinement.resolve("inbox", for_write=False)))
    for prefix, start in starts:
        if not start.path.is_dir():
            continue
        for entry in confinement.walk(start):
            if entry.is_dir or any(part.startswith(".") for part in entry.rel.split("/")):
                continue
            found.append(prefix + entry.rel)
    return found


def readable_skill_files(skill: Skill, project: Project) -> list[str]:
    """The skill's own files the model can read under `skill/` (a link leading out is not)."""
    confinement = Confinement(project, skill.folder, resources_writable=False)
    readable = []
    for rel in skill.references():
        try:
            confinement.resolve(f"skill/{rel}", for_write=False)
        except Refused:
            continue
        readable.append(rel)
    return readable


def render_system_prompt(
    skill: Skill,
    project: Project,
    *,
    today: dt.date | None = None,
    resources_writable: bool = False,
    has_agreement: bool = True,
    optional_tools: tuple[str, ...] = (),
) -> str:
    files = list_files(project, skill.folder)
    if len(files) > LISTING_CAP:
        hidden = len(files) - LISTING_CAP
        files = [*files[:LISTING_CAP], f"... and {hidden} more (use glob)"]
    organisation = organisation_name(project)
    template = _environment().get_template("system.md.j2")
    return template.render(
        org=project.org,
        org_name=organisation.name,
        org_name_source=organisation.source,
        profile=organisation_profile(project),
        project=project.slug,
        date=(today or dt.date.today()).isoformat(),
        skill=skill,
        skill_files=readable_skill_files(skill, project),
        files=files,
        resources_writable=resources_writable,
        has_agreement=has_agreement,
        optional_tools=optional_tools,
    )
