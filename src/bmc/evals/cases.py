"""Eval cases: the format of `evals.json`, where the files live, and how they load.

The format is Anthropic's skill-creator's (`skill_name`, and `evals` each with `id`,
`prompt`, `expected_output`, `files`, `expectations`), extended with what a bmc session
needs to run unattended: the fixture workspace, the consultant's lines (messages and
answers at agreements, in order, as piped into `bmc run`), budgets, deterministic checks,
and the recorded scenarios the scripted model replays offline. docs/eval.md describes
every field.

Where cases live: never in a skill folder, since everything there but SKILL.md is mounted
for the model under `skill/`. bmc's own are `evals/<skill>/evals.json` at the repository's
top level (packaged with the wheel); a firm's sit beside its skills folder, at
`<skills-dir>/../evals/<skill>/evals.json`, the same layout one level up.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bmc.errors import UserError
from bmc.workspace.packaged import data_dir

EVALS_FILE = "evals.json"


class _Strict(BaseModel):
    # A misspelt field in a case must fail when it loads, not silently check nothing.
    model_config = ConfigDict(extra="forbid")


class FileSpec(_Strict):
    """A file put into the case's scratch workspace before the run."""

    path: str = Field(description="Where, relative to the workspace (clients/<org>/...).")
    source: str | None = Field(None, description="A file or folder beside evals.json to copy.")
    content: str | None = Field(None, description="The file's text, inline.")
    link_to: str | None = Field(None, description="Make a symbolic link to this target.")
    repeat_to_bytes: int | None = Field(
        None, gt=0, description="With source: repeat its text to this size (a large report)."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> FileSpec:
        kinds = [k for k in ("source", "content", "link_to") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("a file takes exactly one of source, content, link_to")
        if self.repeat_to_bytes is not None and self.source is None:
            raise ValueError("repeat_to_bytes goes with source")
        return self


class Budgets(_Strict):
    max_turns: int = Field(40, gt=0, description="Model turns the run may take.")
    max_cost: float = Field(2.0, gt=0, description="Dollars the run may cost (real model only).")
    max_refusals: int = Field(3, ge=0, description="Writes the runner may refuse.")


class Check(_Strict):
    """One deterministic check of the run beyond bmc's own; `text` is what the report says.

    File paths are the model's spelling: project-relative, `resources/` and `inbox/` mapped
    to the client's folders; a `file` with `*` is a glob."""

    text: str
    file: str | None = None
    section: str | None = Field(None, description="Only the `## <section>` of the file.")
    matches: str | None = Field(None, description="A regular expression that must be found.")
    absent: str | None = Field(None, description="A regular expression that must not be.")
    at_most_files: int | None = Field(
        None, ge=0, description="With a glob and `matches`: how many files may match."
    )
    at_most_matches: int | None = Field(
        None, ge=0, description="With `matches`: how many times it may be found, in all."
    )
    no_refusal_mentions: str | None = Field(None, description="No refused tool call says this.")
    no_tool_call_on: str | None = Field(None, description="No tool call's path matches this.")
    tool_used: str | None = Field(None, description="The model called this tool at least once.")
    prompt_excludes: str | None = Field(None, description="The system prompt never says this.")

    @model_validator(mode="after")
    def _one_kind(self) -> Check:
        on_file = [self.matches, self.absent]
        other = [self.no_refusal_mentions, self.no_tool_call_on, self.tool_used]
        other.append(self.prompt_excludes)
        kinds = sum(v is not None for v in on_file) + sum(v is not None for v in other)
        if kinds != 1:
            raise ValueError(
                "a check takes exactly one of matches, absent, no_refusal_mentions, "
                "no_tool_call_on, tool_used, prompt_excludes"
            )
        if any(v is not None for v in on_file) and not self.file:
            raise ValueError("matches and absent need a file")
        for pattern in (self.matches, self.absent, self.no_tool_call_on):
            if pattern is not None:
                try:
                    re.compile(pattern)
                except re.error as err:
                    raise ValueError(f"{pattern!r} is not a regular expression: {err}") from None
        return self


class Case(_Strict):
    # skill-creator's fields
    id: int | str
    prompt: str = Field(min_length=1, description="The consultant's opening words.")
    expected_output: str = ""
    files: list[str | FileSpec] = Field(
        default_factory=list,
        description="A string: material handed over, copied into the client's inbox/.",
    )
    expectations: list[str] = Field(default_factory=list)
    # bmc's
    name: str = ""
    workspace: str = "fixtures/workspace"
    org: str = "tidewater"
    project: str = "growth-2027"
    consultant: list[str] | None = Field(
        None, description="Messages and answers at agreements, in order; default the scenario's."
    )
    agreement: str | None = Field(
        None, description="The document agreement must be asked on (default: the skill's)."
    )
    agreed: bool = Field(True, description="The gate must be written by the end of the run.")
    budgets: Budgets = Field(default_factory=Budgets)
    checks: list[Check] = Field(default_factory=list)
    scenario: str | None = Field(None, description="A recorded session to replay offline.")
    grader_scenario: str | None = Field(None, description="The grader's replies, offline.")


class EvalFile(_Strict):
    skill_name: str
    evals: list[Case] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> EvalFile:
        ids = [str(case.id) for case in self.evals]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"case ids must be unique; repeated: {', '.join(repeated)}")
        return self


@dataclass(frozen=True)
class LoadedCase:
    """A case with where it came from, so its relative paths can be found."""

    case: Case
    origin: str  # "bmc" or "firm"
    folder: Path  # the folder holding its evals.json

    @property
    def key(self) -> str:
        return f"{self.origin}/{self.case.id}"

    @property
    def title(self) -> str:
        return self.case.name or str(self.case.id)

    def path(self, spelled: str) -> Path:
        """A path the case names: beside its evals.json, else one of bmc's packaged
        fixtures (`fixtures/workspace`, `fixtures/scenarios/demo-segments.json`)."""
        beside = self.folder / spelled
        if beside.exists() or beside.is_symlink():
            return beside
        if spelled.startswith("fixtures/"):
            packaged = data_dir("fixtures") / spelled.removeprefix("fixtures/")
            if packaged.exists():
                return packaged
        raise UserError(f"case {self.key}: {spelled} was not found beside {self.folder}.")


def eval_files(skill: str, skills_dir: Path | None) -> list[tuple[str, Path]]:
    """The evals files of `skill`: bmc's own, then the firm's beside its skills folder."""
    found: list[tuple[str, Path]] = []
    packaged = data_dir("evals") / skill / EVALS_FILE
    if packaged.is_file():
        found.append(("bmc", packaged))
    if skills_dir is not None:
        firm = skills_dir.resolve().parent / "evals" / skill / EVALS_FILE
        if firm.is_file() and all(firm.resolve() != p.resolve() for _, p in found):
            found.append(("firm", firm))
    return found


def load_cases(skill: str, skills_dir: Path | None) -> list[LoadedCase]:
    files = eval_files(skill, skills_dir)
    if not files:
        where = "evals/" + skill + "/" + EVALS_FILE
        if skills_dir is not None:
            where += f" or {skills_dir.resolve().parent / 'evals' / skill / EVALS_FILE}"
        raise UserError(f"no eval cases for {skill}: add {where} (see docs/eval.md).")
    loaded: list[LoadedCase] = []
    for origin, path in files:
        parsed = read_eval_file(path)
        if parsed.skill_name != skill:
            raise UserError(f"{path} is for {parsed.skill_name}, not {skill}.")
        loaded += [LoadedCase(case, origin, path.parent) for case in parsed.evals]
    return loaded


def read_json(path: Path, called: str = "") -> Any:
    """The JSON in `path`, or a `UserError` saying in one sentence why it cannot be had;
    the sentence names the file as `called` (default: its path)."""
    called = called or str(path)
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read {called}: {err}.") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{called} is not valid JSON: {err}.") from None


def read_eval_file(path: Path) -> EvalFile:
    data = read_json(path)
    try:
        return EvalFile.model_validate(data)
    except ValidationError as err:
        lines = []
        for problem in err.errors():
            where = ".".join(str(p) for p in problem["loc"]) or "the file"
            lines.append(f"  {where}: {problem['msg'].removeprefix('Value error, ')}")
        raise UserError(f"{path} has problems:\n" + "\n".join(lines)) from None
