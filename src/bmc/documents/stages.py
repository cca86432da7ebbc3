"""The engagement's stages, one table built from the skills' metadata (SPEC sections 3, 6).

A stage is what a skill with a `gate` agrees. Everything the model-free commands know about
the chain (which document each stage agrees, its gate, the stage it builds on, which skill
drafts it and which comes next, the name the decisions log gives it) is read here from the
skills' `metadata`, so validate, status, render, the gate and the prerequisite check cannot
disagree with the SKILL.md files or with each other.

What the metadata says, and what is derived from it:
- `stage` is the number, `gate` the gate, `next`, `schema`, `produces` as written;
- the document is the gate without `.agreed` (`segments/segments.agreed.md` agrees
  `segments/segments.md`), and `produces` must list it;
- the key (`bmc agree <key>`) is the document's file name without `.md`;
- the stage it builds on is the one whose gate the skill `requires` (the nearest if several);
- the name in the decisions log is `deliverable`, and `signed-off` what the entry's
  **Agreed** line says (default: the deliverable).

Which skills: the packaged ones define the chain for the commands that take no skills
folder (`status`, `validate`, `render`, `agree`); `table(skills_dir)` is the chain a
`--skills-dir` makes (its skills shadow the packaged ones of the same name). Each table is
built once per process, and only when first read, so importing this module parses nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from functools import cache, cached_property
from pathlib import Path, PurePosixPath

from bmc.documents.skills import Skill, list_skills
from bmc.errors import UserError

AGREED_SUFFIX = ".agreed.md"
# A key is typed on the command line (`bmc agree segments`), so it must be a plain slug.
KEY_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


@dataclass(frozen=True)
class Stage:
    key: str
    number: str
    document: str  # project-relative path of the document agreed
    gate: str
    what: str  # as the decisions entry names it
    upstream: str | None  # the stage whose gate this one builds on
    signed_off: str = ""  # what the **Agreed** line says was signed off (default: `what`)
    skill: str = ""  # the skill that drafts the document and asks for its agreement
    next: str | None = None  # the skill the consultant is pointed to once it is agreed
    schema: str | None = None  # the governed-document schema of what the skill writes
    produces: tuple[str, ...] = ()  # everything the skill writes (a trailing / is a folder)

    def drafts_folder(self) -> str:
        """The folder the skill writes one draft per item into (`segments/drafts/`): the
        folder its `produces` names."""
        found = next((path for path in self.produces if path.endswith("/")), None)
        if found is None:
            raise UserError(
                f"skill {self.skill}: metadata produces names no drafts folder (a path "
                'ending in "/", such as segments/drafts/).'
            )
        return found

    def makes(self, path: str) -> bool:
        """Whether `path` is this stage's gate or something its skill writes."""
        return path == self.gate or any(
            path == made or (made.endswith("/") and path.startswith(made)) for made in self.produces
        )


class StageTable(Mapping[str, Stage]):
    """Stages by key, in chain order (by stage number), built from skills on first read."""

    def __init__(self, skills: Callable[[], Iterable[Skill]]) -> None:
        self._skills = skills

    @cached_property
    def _stages(self) -> dict[str, Stage]:
        return build(self._skills())

    def __getitem__(self, key: str) -> Stage:
        return self._stages[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._stages)

    def __len__(self) -> int:
        return len(self._stages)

    def __repr__(self) -> str:
        return f"StageTable({list(self._stages.values())!r})"

    def named(self, key: str) -> Stage:
        """The stage `bmc agree <key>` means, or one sentence listing the choices."""
        if key not in self._stages:
            raise UserError(f"unknown stage {key!r}: choose one of {', '.join(self._stages)}.")
        return self._stages[key]

    def for_document(self, document: str) -> Stage | None:
        return next((s for s in self.values() if s.document == document), None)

    def for_gate(self, gate: str) -> Stage | None:
        return next((s for s in self.values() if s.gate == gate), None)

    def with_schema(self, schema: str) -> Stage:
        """The one stage whose documents follow `schema` (validate and render need it)."""
        found = [s for s in self.values() if s.schema == schema]
        if len(found) != 1:
            raise UserError(
                f"the skills define {len(found)} stages with schema {schema!r}; exactly one "
                "is needed: check the metadata schema lines of the SKILL.md files."
            )
        return found[0]

    def upstream_of(self, stage: Stage) -> list[Stage]:
        """The stages `stage` builds on, nearest first (canvas: segments, brief)."""
        found, current = [], stage.upstream
        while current is not None:
            found.append(self[current])
            current = self[current].upstream
        return found

    def downstream_of(self, stage: Stage) -> list[Stage]:
        """The stages built on `stage`, however far down, in stage order (nearest first)."""
        # Every stage whose chain passes through `stage`, not only a single line: a firm's
        # stage may branch off the segments beside the canvas, and both go stale together.
        return [s for s in self.values() if stage in self.upstream_of(s)]

    def for_gates(self, gates: Iterable[str]) -> list[Stage]:
        """The stages whose gates are `gates`, in chain order; a gate that is no stage's is
        one sentence (a skill's `agrees` naming a file the chain does not know)."""
        wanted = list(gates)
        unknown = [g for g in wanted if self.for_gate(g) is None]
        if unknown:
            known = ", ".join(s.gate for s in self.values())
            raise UserError(
                f"{', '.join(unknown)} is not the gate of any stage (the gates are {known}): "
                "check the skill's metadata gate and agrees lines."
            )
        return [s for s in self.values() if s.gate in wanted]

    def producer_of(self, paths: Iterable[str]) -> Stage | None:
        """The earliest stage whose skill writes (or agrees) one of `paths`: the one to run
        first when they are missing."""
        wanted = list(paths)
        return next((s for s in self.values() if any(s.makes(p) for p in wanted)), None)


def build(skills: Iterable[Skill]) -> dict[str, Stage]:
    """Stages by key in chain order from the skills that have a gate; a gate the chain
    cannot use is one sentence naming the skill."""
    gated = sorted((s for s in skills if s.gate), key=lambda s: (_number(s), s.name))
    stages: dict[str, Stage] = {}
    for skill in gated:
        stage = _stage(skill)
        for other in stages.values():
            if stage.key == other.key or stage.number == other.number:
                same = f"stage {stage.key}" if stage.key == other.key else f"number {stage.number}"
                raise UserError(
                    f"skills {other.skill} and {skill.name} both define the {same}; give "
                    "each gated skill its own stage number and document."
                )
        stages[stage.key] = stage
    by_gate = {stage.gate: stage for stage in stages.values()}
    return {
        key: replace(stage, upstream=_upstream(stage, skill, by_gate))
        for (key, stage), skill in zip(stages.items(), gated, strict=True)
    }


def _stage(skill: Skill) -> Stage:
    """The stage a gated skill agrees, before the chain links it to the one it builds on."""
    document = _document(skill)
    key = PurePosixPath(document).name.removesuffix(".md")
    if not KEY_RE.fullmatch(key):
        raise UserError(
            f"skill {skill.name}: its gate {skill.gate} names the stage {key!r}; name the "
            "document with lowercase letters, digits and hyphens."
        )
    return Stage(
        key=key,
        number=skill.stage,
        document=document,
        gate=str(skill.gate),
        what=skill.deliverable or key.replace("-", " ").capitalize(),
        upstream=None,
        signed_off=skill.signed_off,
        skill=skill.name,
        next=skill.next,
        schema=skill.schema,
        produces=skill.produces,
    )


def _number(skill: Skill) -> int:
    if not skill.stage:
        # The number orders the chain and heads the decisions entry ("Stage 2: ...").
        raise UserError(
            f"skill {skill.name} has a gate ({skill.gate}) but no stage number; add "
            'metadata stage: "<n>" to its SKILL.md.'
        )
    if not skill.stage.isdigit():
        raise UserError(
            f"skill {skill.name} has a gate ({skill.gate}) but its stage {skill.stage!r} is not "
            'a whole number; a gated stage needs one, such as metadata stage: "4".'
        )
    return int(skill.stage)


def _document(skill: Skill) -> str:
    """The document a gate is a copy of: `x/y.agreed.md` agrees `x/y.md`."""
    gate = str(skill.gate)
    if not gate.endswith(AGREED_SUFFIX):
        raise UserError(
            f"skill {skill.name}: metadata gate {gate!r} must be the document's path ending "
            f"in {AGREED_SUFFIX}, such as segments/segments.agreed.md."
        )
    document = gate.removesuffix(AGREED_SUFFIX) + ".md"
    if document not in skill.produces:
        raise UserError(
            f"skill {skill.name}: its gate {gate} agrees {document}, which its metadata "
            "produces does not list; add it there."
        )
    return document


def _upstream(stage: Stage, skill: Skill, by_gate: dict[str, Stage]) -> str | None:
    """The stage whose gate the skill requires (the latest if it requires several)."""
    required = [by_gate[path] for path in skill.requires if path in by_gate]
    for other in required:
        # A chain that loops back would make `upstream_of` walk for ever.
        if int(other.number) >= int(stage.number):
            raise UserError(
                f"skill {skill.name} (stage {stage.number}) requires {other.gate}, the gate "
                f"of stage {other.number}; a stage can only build on an earlier one."
            )
    return max(required, key=lambda s: int(s.number)).key if required else None


@cache
def table(skills_dir: Path | None = None) -> StageTable:
    """The stages of the packaged skills, or of `skills_dir` over them; built once."""
    return StageTable(lambda: list_skills(skills_dir))


def packaged() -> StageTable:
    """The chain the model-free commands (`status`, `validate`, `render`, `agree`) follow."""
    return table(None)


def for_skill(skill: Skill) -> StageTable:
    """The chain `skill` belongs to: the packaged one, or that of the folder it came from."""
    return packaged() if skill.packaged else table(skill.folder.parent)
