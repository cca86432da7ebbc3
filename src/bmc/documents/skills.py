"""Skills: folders holding a SKILL.md and the templates it refers to (SPEC section 3).

A SKILL.md follows the Agent Skills specification (agentskills.io) strictly, so the same
folder works in Claude Code and other clients: only the standard top-level frontmatter keys,
and the runner's own fields under `metadata` as strings. The loader is stricter than the
reference validator (`skills-ref`, which reads every value as a string): a number, list,
boolean or empty value under `metadata` is refused with a sentence saying what to write.
A string it does not understand is not refused: a firm's skill written for another runner
(`author`, `version`, a `stage` of "4+") loads, and `cautions` says plainly which of bmc's
guarantees it cannot have.

Where skills come from: the user's `--skills-dir` first, so a firm can override a packaged
skill or add its own, then the packaged `skills/` folder. A folder counts as a skill when it
holds a `SKILL.md`; a user folder shadows the packaged one of the same name even when it is
malformed, because silently running the packaged skill instead would hide the firm's mistake.

Every problem is a `UserError` whose text is one sentence naming the file; nothing here
imports the model SDK, so commands that need no model start at once.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from frontmatter.default_handlers import YAMLHandler

from bmc.errors import PrerequisiteError, UserError
from bmc.workspace.packaged import data_dir
from bmc.workspace.paths import Project

SKILL_FILE = "SKILL.md"
# The Agent Skills name rule, restricted to ASCII: lowercase letters and digits in runs
# joined by single hyphens, at most 64 characters.
SKILL_NAME_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
MAX_NAME, MAX_DESCRIPTION, MAX_COMPATIBILITY = 64, 1024, 500
MAX_LICENSE = 1024  # the spec sets no limit; this only catches a pasted licence text
TOP_LEVEL_KEYS = ("name", "description", "license", "compatibility", "metadata", "allowed-tools")
# Project-relative prefixes that live in the organisation's folder, not the project's.
MOUNTS = {"resources": "resources_dir", "inbox": "inbox_dir"}


@dataclass(frozen=True)
class Skill:
    """One loaded skill; `requires`, `produces` are project-relative paths (a trailing `/`
    marks a folder, `resources/...` is the organisation's research)."""

    name: str
    description: str
    # Kept out of repr: a skill in a log line or test failure should be one short line.
    body: str = field(repr=False)
    folder: Path = field(repr=False)
    stage: str = ""
    requires: tuple[str, ...] = ()
    produces: tuple[str, ...] = ()
    gate: str | None = None
    # Gates of stages other skills draft that this one may ask a person to agree again, in
    # chain order (bmc-iterate: the segments, then the canvas).
    agrees: tuple[str, ...] = ()
    after: str | None = None
    next: str | None = None
    schema: str | None = None
    allowed_tools: tuple[str, ...] = ()
    # What a gated skill's agreement is called in decisions.md ("Stage 2: Customer segments
    # agreed") and what its **Agreed** line says was signed off (bmc.documents.stages).
    deliverable: str = ""
    signed_off: str = ""

    @property
    def agreeable(self) -> tuple[str, ...]:
        """Every gate an agreement in this skill may write: its own, then those it `agrees`."""
        own = (self.gate,) if self.gate else ()
        return own + tuple(g for g in self.agrees if g != self.gate)

    @property
    def packaged(self) -> bool:
        return self.folder.parent == data_dir("skills")

    def references(self) -> list[str]:
        """Files the model may read under `skill/`: everything but SKILL.md, sorted."""
        return [rel for rel, _ in _skill_files(self.folder) if rel != SKILL_FILE]

    def digest(self) -> str:
        """sha256 over every file's relative path and bytes, so a session can tell when the
        skill it started with has changed (drift)."""
        sha = hashlib.sha256()
        for rel, path in _skill_files(self.folder):
            data = path.read_bytes()
            # Path and length framed explicitly so no two folders hash the same by
            # moving bytes between a name and a neighbouring file's content.
            sha.update(f"{rel}\0{len(data)}\0".encode())
            sha.update(data)
        return sha.hexdigest()


@dataclass(frozen=True)
class SkillScan:
    """Every skill found, plus one sentence per skill folder that failed to load."""

    skills: list[Skill]
    problems: list[str]


# --- finding skills ---------------------------------------------------------------------


def skill_dirs(extra_dir: Path | None = None) -> list[Path]:
    """Folders searched for skills, first match wins: `extra_dir`, then the packaged ones."""
    dirs: list[Path] = []
    if extra_dir is not None:
        dirs.append(_checked_extra_dir(Path(extra_dir)))
    packaged = data_dir("skills")
    if packaged.is_dir():
        dirs.append(packaged)
    return dirs


def load_skill(name: str, extra_dir: Path | None = None) -> Skill:
    """The skill called `name`, or one sentence saying why it cannot be loaded."""
    if not isinstance(name, str) or not SKILL_NAME_RE.fullmatch(name) or len(name) > MAX_NAME:
        raise UserError(
            f"{name!r} is not a valid skill name: use lowercase letters, digits and single "
            "hyphens, such as bmc-segments."
        )
    folders = _candidate_folders(extra_dir)
    if name not in folders:
        available = ", ".join(sorted(folders)) or "none"
        raise UserError(f"unknown skill {name!r}: the available skills are {available}.")
    return parse_skill(folders[name])


def scan_skills(extra_dir: Path | None = None) -> SkillScan:
    """All skills, sorted by stage then name; a malformed folder becomes a problem line
    instead of hiding the others (`bmc skills` shows both)."""
    skills: list[Skill] = []
    problems: list[str] = []
    for folder in _candidate_folders(extra_dir).values():
        try:
            skills.append(parse_skill(folder))
        except UserError as error:
            problems.append(str(error))
    skills.sort(key=_stage_order)
    return SkillScan(skills, problems)


def list_skills(extra_dir: Path | None = None) -> list[Skill]:
    """The skills that load, sorted by stage then name; malformed folders are left out here
    and reported by `scan_skills`, or raised by `load_skill` when asked for by name."""
    return scan_skills(extra_dir).skills


def _candidate_folders(extra_dir: Path | None) -> dict[str, Path]:
    """Skill name -> folder, earlier search folders shadowing later ones."""
    found: dict[str, Path] = {}
    for base in skill_dirs(extra_dir):
        try:
            children = sorted(base.iterdir())
        except OSError as error:
            raise UserError(f"cannot list skills folder {base}: {error.strerror}.") from None
        for child in children:
            if child.is_dir() and (child / SKILL_FILE).is_file():
                found.setdefault(child.name, child)
    return found


def _checked_extra_dir(extra_dir: Path) -> Path:
    if (extra_dir / SKILL_FILE).is_file():
        raise UserError(
            f"{extra_dir} is itself a skill folder: pass the folder that contains it "
            f"({extra_dir.parent}) as --skills-dir."
        )
    if not extra_dir.is_dir():
        raise UserError(f"skills folder {extra_dir} does not exist or is not a folder.")
    return extra_dir


def _stage_order(skill: Skill) -> tuple[float, str]:
    # Numeric so stage "10" sorts after "2"; a label such as "4+" by its number; skills
    # without a number come last.
    found = re.match(r"[0-9]+", skill.stage)
    return (int(found.group()) if found else math.inf, skill.name)


def _skill_files(folder: Path) -> Iterator[tuple[str, Path]]:
    """(posix path relative to `folder`, path) of every file, sorted by relative path.

    Hidden files and folders (`.DS_Store`, `.git`) and `__pycache__` are skipped: they are
    not part of the skill, and an editor touching them must not count as drift.
    """
    found: list[tuple[str, Path]] = []
    # os.walk does not follow symlinked folders, so a link cannot pull outside files in.
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
        for file in files:
            if file.startswith("."):
                continue
            path = Path(root) / file
            if path.is_file():
                found.append((path.relative_to(folder).as_posix(), path))
    yield from sorted(found)


# --- parsing one SKILL.md ---------------------------------------------------------------


def parse_skill(folder: Path) -> Skill:
    """Load and check `folder/SKILL.md`; every problem is one sentence naming the file."""
    folder = Path(folder)
    where = folder / SKILL_FILE
    fields, body = _read_frontmatter(where)
    unknown = sorted(str(key) for key in fields if key not in TOP_LEVEL_KEYS)
    if unknown:
        raise UserError(
            f"{where}: unknown top-level frontmatter key(s) {', '.join(unknown)}; the Agent "
            f"Skills format allows only {', '.join(TOP_LEVEL_KEYS)}, so put the runner's "
            "fields under metadata."
        )
    name = _name(fields, folder, where)
    description = _text(fields, "description", where, MAX_DESCRIPTION, required=True)
    _text(fields, "license", where, MAX_LICENSE, required=False)
    _text(fields, "compatibility", where, MAX_COMPATIBILITY, required=False)
    meta = _metadata(fields.get("metadata"), name, where)
    return Skill(
        name=name,
        description=description,
        body=body,
        folder=folder,
        stage=_stage(meta.get("stage", ""), name, where),
        requires=_paths(meta, "requires", name, where),
        produces=_paths(meta, "produces", name, where),
        gate=_single_path(meta, "gate", name, where),
        agrees=_agrees(meta, name, where),
        after=_skill_ref(meta, "after", name, where),
        next=_skill_ref(meta, "next", name, where),
        schema=meta.get("schema") or None,
        allowed_tools=_allowed_tools(fields, where),
        deliverable=_one_line(meta, "deliverable", name, where),
        signed_off=_one_line(meta, "signed-off", name, where),
    )


def _read_frontmatter(where: Path) -> tuple[dict[str, Any], str]:
    try:
        text = where.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{where} is not UTF-8 text: save it as UTF-8.") from None
    except OSError as error:
        raise UserError(f"cannot read {where}: {error.strerror or error}.") from None
    handler = YAMLHandler()
    if not handler.detect(text):
        raise UserError(
            f"{where} has no frontmatter: it must start with a '---' line, then name and "
            "description, then a closing '---' line."
        )
    try:
        raw, body = handler.split(text)
    except ValueError:
        raise UserError(f"{where}: the frontmatter is never closed by a '---' line.") from None
    try:
        fields = handler.load(raw)
    except yaml.YAMLError as error:
        raise UserError(
            f"{where}: the frontmatter is not valid YAML ({_yaml_problem(error)})."
        ) from None
    if fields is None:  # an empty block: the missing name is the clearer message
        fields = {}
    if not isinstance(fields, dict):
        raise UserError(f"{where}: the frontmatter must be YAML 'key: value' lines.")
    return fields, body.strip()


def _yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's multi-line report reduced to 'line N: what' (a file line number)."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or "cannot parse"
    if mark is None:
        return str(problem)
    # The YAML text starts on the opening '---' line (it follows the dashes), so its
    # 0-based line index plus one is the file's line number.
    return f"line {mark.line + 1}: {problem}"


def _text(fields: dict[str, Any], key: str, where: Path, limit: int, required: bool) -> str:
    value = fields.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where}: {key} is missing or empty; write it as a line of text.")
    if len(value) > limit:
        raise UserError(f"{where}: {key} has {len(value)} characters; the limit is {limit}.")
    return value.strip()


def _name(fields: dict[str, Any], folder: Path, where: Path) -> str:
    name = _text(fields, "name", where, MAX_NAME, required=True)
    if not SKILL_NAME_RE.fullmatch(name):
        raise UserError(
            f"{where}: name {name!r} must be lowercase letters, digits and single hyphens."
        )
    if name != folder.name:
        raise UserError(
            f"{where}: name {name!r} must equal the folder name {folder.name!r}; rename one "
            "of them."
        )
    return name


def _metadata(value: Any, name: str, where: Path) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"{where}: metadata must be a block of 'key: \"value\"' lines.")
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise UserError(_not_a_string(name, where, key, item))
    return value


def _not_a_string(name: str, where: Path, key: Any, item: Any) -> str:
    """The sentence for a metadata value YAML did not read as a string."""
    what = {bool: "a true/false value", int: "a number", float: "a number", list: "a list"}.get(
        type(item), "empty" if item is None else f"a {type(item).__name__}"
    )
    if isinstance(item, list):
        example = " ".join(str(part) for part in item)
        hint = f'write it as one quoted string separated by spaces: {key}: "{example}"'
    elif item is None:
        hint = f'write a quoted value such as {key}: "..." or remove the key'
    else:
        shown = str(item).lower() if isinstance(item, bool) else item
        hint = f'write it as a quoted string: {key}: "{shown}"'
    if not isinstance(key, str):
        return f"skill {name} ({where}): metadata key {key!r} must be text; quote it."
    return (
        f"skill {name} ({where}): metadata key {key!r} is {what}, but metadata values must "
        f"be strings; {hint}."
    )


def _stage(value: str, name: str, where: Path) -> str:
    """The stage as written. A label that is not a whole number ("4+") is kept: it only
    orders the listing, and a skill with a gate, which needs a number, is refused by the
    stage table instead (`bmc.documents.stages`)."""
    if "\n" in value or "\r" in value:
        raise UserError(f"skill {name} ({where}): metadata stage must be one line of text.")
    return value.strip()


def _agrees(meta: dict[str, str], name: str, where: Path) -> tuple[str, ...]:
    gates = _paths(meta, "agrees", name, where)
    for path in gates:
        if not path.endswith(".agreed.md"):
            raise UserError(
                f"skill {name} ({where}): metadata agrees names {path!r}; list the gate files "
                'of the stages it may agree again, such as "segments/segments.agreed.md".'
            )
    return gates


def _paths(meta: dict[str, str], key: str, name: str, where: Path) -> tuple[str, ...]:
    paths = tuple(meta.get(key, "").split())
    for path in paths:
        pure = PurePosixPath(path)
        if pure.is_absolute() or ".." in pure.parts or "\\" in path:
            raise UserError(
                f"skill {name} ({where}): metadata {key} names {path!r}; use paths relative "
                "to the project folder, with / and without '..'."
            )
    return paths


def _single_path(meta: dict[str, str], key: str, name: str, where: Path) -> str | None:
    paths = _paths(meta, key, name, where)
    if len(paths) > 1:
        raise UserError(f"skill {name} ({where}): metadata {key} must name a single file.")
    return paths[0] if paths else None


def _skill_ref(meta: dict[str, str], key: str, name: str, where: Path) -> str | None:
    value = meta.get(key, "").strip()
    if value and not SKILL_NAME_RE.fullmatch(value):
        raise UserError(
            f"skill {name} ({where}): metadata {key} {value!r} must be one skill name such as "
            '"bmc-research".'
        )
    return value or None


def _one_line(meta: dict[str, str], key: str, name: str, where: Path) -> str:
    value = meta.get(key, "").strip()
    # It is written into a decisions.md heading: a line break could forge another entry.
    if "\n" in value or "\r" in value:
        raise UserError(f"skill {name} ({where}): metadata {key} must be one line of text.")
    return value


def _allowed_tools(fields: dict[str, Any], where: Path) -> tuple[str, ...]:
    value = fields.get("allowed-tools")
    if value is None:
        return ()
    if not isinstance(value, str):
        raise UserError(
            f"{where}: allowed-tools must be one string of tool names separated by spaces, "
            'such as allowed-tools: "read grep".'
        )
    return tuple(value.split())


# --- what bmc cannot promise for a skill ---------------------------------------------------

WARNING = "WARNING: "  # how a caution that must not be missed starts

# The runner's fields a firm's override may drop, and what is lost with each.
_RUNNER_FIELDS = (
    ("requires", "the prerequisite check before it starts"),
    ("gate", "its agreement gate (no agreement can be reached in it)"),
    ("agrees", "the agreements it may ask for again"),
    ("schema", "the schema its documents are checked against"),
    ("produces", "the list of documents it writes"),
    ("after", "the skill named to run first when a prerequisite is missing"),
    ("next", "the skill the consultant is pointed to once it is agreed"),
    ("stage", "its place in the chain"),
)


def cautions(skill: Skill) -> list[str]:
    """The guarantees bmc cannot give for a skill from elsewhere, one plain sentence each
    (none for a packaged skill, which is written for the runner). What never depends on a
    skill still holds for every one: confinement, gates written only by a person's yes, the
    journal, and the checks on bmc's own documents."""
    if skill.packaged:
        return []
    found = []
    if not skill.requires:
        found.append(
            f"skill {skill.name} names no prerequisites (metadata requires), so bmc cannot "
            "check that the stages it builds on are agreed before it starts"
        )
    if not skill.agreeable:
        found.append(
            f"skill {skill.name} has no gate (metadata gate), so no agreement can be reached "
            "in it: sign stages off with `bmc agree` or their own skills"
        )
    if not skill.schema:
        found.append(
            f"skill {skill.name} names no schema (metadata schema): bmc still checks what it "
            "writes to the segment drafts, segments.md and canvas.md, but nothing else it writes"
        )
    if skill.stage and not skill.stage.isdigit():
        found.append(
            f'skill {skill.name} gives its stage as "{skill.stage}", not a number bmc can place '
            "in the chain; it is listed by the number it starts with"
        )
    return found + _override_losses(skill)


def _override_losses(skill: Skill) -> list[str]:
    """Loud when a firm's skill shadows a packaged one of the same name but drops runner
    metadata the packaged one has: the guarantees that went with it are gone."""
    packaged = data_dir("skills") / skill.name
    if skill.packaged or not (packaged / SKILL_FILE).is_file():
        return []
    try:
        original = parse_skill(packaged)
    except UserError:
        return []
    lost = [
        f"{key} ({what})"
        for key, what in _RUNNER_FIELDS
        if getattr(original, key) and not getattr(skill, key)
    ]
    if not lost:
        return []
    return [
        f"{WARNING}skill {skill.name} in {skill.folder.parent} overrides the packaged "
        f"{skill.name} but drops its runner metadata, losing: {'; '.join(lost)}"
    ]


# --- prerequisites ----------------------------------------------------------------------


def required_path(project: Project, rel: str) -> Path:
    """Where a project-relative path lives on disk (`resources/x` is the organisation's)."""
    head, _, rest = rel.partition("/")
    if head in MOUNTS:
        return getattr(project, MOUNTS[head]) / rest
    return project.project_dir / rel


def check_requires(skill: Skill, project: Project) -> None:
    """Stop before any model call when a file the skill needs is missing (exit 2), naming
    the skill to run first: `after`, else the stage table's producer of a missing file."""
    missing = [rel for rel in skill.requires if not _present(project, rel)]
    if not missing:
        return
    names = _join(missing)
    verb = "is" if len(missing) == 1 else "are"
    first = skill.after or _producer(skill, missing)
    if first:
        raise PrerequisiteError(f"{names} {verb} missing: run `bmc run {first}` first.")
    raise PrerequisiteError(
        f"{names} {verb} missing, and skill {skill.name} needs {'it' if verb == 'is' else 'them'} "
        "before it can run."
    )


def _producer(skill: Skill, missing: list[str]) -> str | None:
    """The skill of the earliest stage that writes one of the missing files, for a skill
    whose metadata names no `after` (SPEC section 3 makes `after` the answer when given)."""
    # Imported here: the stage table is built from skills, so it imports this module.
    from bmc.documents.stages import for_skill

    stage = for_skill(skill).producer_of(missing)
    return stage.skill if stage is not None and stage.skill != skill.name else None


def _present(project: Project, rel: str) -> bool:
    # A trailing slash in `requires` asks for a folder; anything else for a file.
    path = required_path(project, rel)
    return path.is_dir() if rel.endswith("/") else path.is_file()


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
