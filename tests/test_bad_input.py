"""Bad input gets one clear message, the right exit code, and loses nothing (SPEC section 11).

Each case runs one `bmc` command in-process (`clihelp.run_bmc`) against a private copy of
the fixture workspace and checks what a consultant would see: the sentence (a substring),
the exit code, no traceback, and that every file under the test's folder (workspace, the
skills folder, the demo folder, the folder the command runs in) is byte-identical after,
`.bmc/` included. A scripted model is always listening with a key set (except where the key
is the point), so any request the command should not have made is counted, not sent to a
real endpoint.

Runner state written by design is named per case in `state_written` and only that is left
out of the comparison; the reasons are next to each case. The project's lock
(`.bmc/session.lock` and its holder note) is *not* excluded anywhere: a run refused before
its conversation starts takes no lock (the CLI checks first), so it leaves `.bmc/` alone.

Runtime: about 2 s, plus the SDK's import (a few seconds) when this file runs alone.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bmc.engine.journal import Journal
from bmc.engine.session import ProjectLock
from bmc.workspace.packaged import data_dir
from bmc.workspace.paths import Project
from clihelp import Result, run_bmc, scripted_env, snapshot

ORG, SLUG = "tidewater", "growth-2027"
PROJECT_REL = f"clients/{ORG}/projects/{SLUG}"
TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'File "')


@dataclass
class Ctx:
    """Where a case runs: `root` is the test's folder; everything under it is compared."""

    root: Path

    @property
    def workspace(self) -> Path:
        return self.root / "ws"

    @property
    def project(self) -> Path:
        return self.workspace / PROJECT_REL

    @property
    def skills(self) -> Path:
        return self.root / "firm-skills"

    def where(self, org: str = ORG, project: str = SLUG) -> list[str]:
        return ["--workspace", str(self.workspace), "--org", org, "--project", project]


@dataclass(frozen=True)
class Case:
    id: str
    args: Callable[[Ctx], list[str]]
    message: str  # a substring of what the user is told
    exit_code: int
    prepare: Callable[[Ctx], None] | None = None
    scenario: list[dict[str, Any]] = field(default_factory=list)  # the model's steps
    requests: int = 0  # how many requests the scripted model may receive
    env: dict[str, str | None] = field(default_factory=dict)
    input: str = "hello\n"
    one_line: bool = True  # a BmcError: exactly one `bmc: ...` line on stderr
    state_written: tuple[str, ...] = ()  # project-relative runner state written by design
    hold_lock: bool = False  # another session holds the project's lock meanwhile
    also: Callable[[Ctx, Any, Result], None] | None = None  # a check particular to the case


# --- preparations -------------------------------------------------------------------------


def write_skill(ctx: Ctx, folder: str, frontmatter: str) -> None:
    path = ctx.skills / folder / "SKILL.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"---\n{frontmatter}---\n\n# {folder}\n\nDo the thing.\n")


def bad_yaml(ctx: Ctx) -> None:
    # An unquoted ": " inside a value: a classic hand-editing slip, on file line 3.
    write_skill(ctx, "firm-broken", "name: firm-broken\ndescription: Does it: twice\n")


def numeric_metadata(ctx: Ctx) -> None:
    write_skill(
        ctx, "firm-broken", "name: firm-broken\ndescription: Does it.\nmetadata:\n  stage: 3\n"
    )


def name_not_folder(ctx: Ctx) -> None:
    write_skill(ctx, "firm-broken", "name: firm-other\ndescription: Does it.\n")


def no_agreed_brief(ctx: Ctx) -> None:
    (ctx.project / "brief.agreed.md").unlink()


CORRUPT_SESSION = "20270111-090000-bmc-segments-beef"


def corrupt_journal(ctx: Ctx) -> None:
    """A session of three good records whose middle one is then damaged (not a torn tail,
    which a crash can cause and which is dropped with a note)."""
    path = ctx.project / ".bmc" / "sessions" / f"{CORRUPT_SESSION}.jsonl"
    journal = Journal(path)
    journal.append("start", {"skill": "bmc-segments", "model": "claude-x", "system": "You help."})
    journal.append("message", {"role": "user", "content": [{"type": "text", "text": "Start."}]})
    journal.append("status", {"status": "waiting for consultant", "detail": ""})
    lines = path.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b"Start.", b"Stort.")  # its checksum no longer matches
    path.write_bytes(b"\n".join(lines))


def binary_draft(ctx: Ctx) -> None:
    drafts = ctx.project / "segments" / "drafts"
    drafts.mkdir(parents=True)
    (drafts / "island-commuters.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 50)


def non_empty_demo_folder(ctx: Ctx) -> None:
    (ctx.root / "mine").mkdir()
    (ctx.root / "mine" / "notes.txt").write_text("my own notes\n")


def session_dir_exists(ctx: Ctx) -> None:
    (ctx.project / ".bmc" / "sessions").mkdir(parents=True)


# --- further checks ------------------------------------------------------------------------


def lists_the_skills(ctx: Ctx, model: Any, result: Result) -> None:
    assert "bmc-segments" in result.stderr


def names_the_holder(ctx: Ctx, model: Any, result: Result) -> None:
    assert "demo-holder" in result.stderr


def the_session_is_kept(ctx: Ctx, model: Any, result: Result) -> None:
    # A refused key fails fast, but the conversation so far is kept (SPEC section 9).
    journals = list((ctx.project / ".bmc" / "sessions").glob("*.jsonl"))
    assert len(journals) == 1
    listed = run_bmc(["sessions", *ctx.where()])
    assert journals[0].stem in listed.stdout


RUN = "bmc-segments"

CASES = [
    Case(
        "unknown-skill",
        lambda c: ["run", "bmc-segmnets", *c.where()],
        "unknown skill 'bmc-segmnets': the available skills are",
        1,
        also=lists_the_skills,
    ),
    *(
        Case(
            f"bad-{kind}-slug-{label}",
            lambda c, kind=kind, value=value: ["run", RUN, *c.where(**{kind: value})],
            f"{'organisation' if kind == 'org' else 'project'} {value!r} is not a valid slug",
            1,
        )
        for kind in ("org", "project")
        for label, value in (
            ("uppercase", "Acme"),
            ("dotdot", "../x"),
            ("underscore", "a_b"),
            ("64-chars", "a" * 64),
        )
    ),
    Case(
        "bad-slug-at-init",
        lambda c: ["init", "Acme", "launch", "--workspace", str(c.root / "new-ws")],
        "organisation 'Acme' is not a valid slug",
        1,
    ),
    Case(
        "missing-workspace",
        lambda c: ["status", "--workspace", str(c.root / "nowhere"), "--org", ORG,
                   "--project", SLUG],
        "nowhere does not exist",
        1,
    ),
    Case(
        "missing-organisation",
        lambda c: ["run", RUN, *c.where(org="northwind")],
        "no organisation 'northwind'",
        1,
    ),
    Case(
        "missing-project",
        lambda c: ["run", RUN, *c.where(project="retail-2028")],
        "no project 'retail-2028' for 'tidewater'",
        1,
    ),
    Case(
        "no-project-named-outside-one",
        lambda c: ["run", RUN, "--workspace", str(c.workspace)],
        "which project?",
        1,
    ),
    Case(
        "missing-requires",
        lambda c: ["run", RUN, *c.where()],
        "brief.agreed.md is missing: run `bmc run bmc-research` first",
        2,
        prepare=no_agreed_brief,
    ),
    Case(
        "skill-bad-yaml",
        lambda c: ["run", "firm-broken", "--skills-dir", str(c.skills), *c.where()],
        "not valid YAML (line 3: mapping values are not allowed",
        1,
        prepare=bad_yaml,
    ),
    Case(
        "skill-numeric-metadata",
        lambda c: ["run", "firm-broken", "--skills-dir", str(c.skills), *c.where()],
        "metadata key 'stage' is a number, but metadata values must be strings",
        1,
        prepare=numeric_metadata,
    ),
    Case(
        "skill-name-not-folder",
        lambda c: ["run", "firm-broken", "--skills-dir", str(c.skills), *c.where()],
        "name 'firm-other' must equal the folder name 'firm-broken'",
        1,
        prepare=name_not_folder,
    ),
    Case(
        "skills-dir-is-a-skill",
        lambda c: ["run", RUN, "--skills-dir", str(c.skills / "firm-broken"), *c.where()],
        "is itself a skill folder",
        1,
        prepare=numeric_metadata,
    ),
    Case(
        "missing-api-key",
        lambda c: ["run", RUN, *c.where()],
        "ANTHROPIC_API_KEY is not set",
        1,
        env={"ANTHROPIC_API_KEY": None},
    ),
    Case(
        "refused-api-key",
        lambda c: ["run", RUN, *c.where()],
        "the API key was refused (401)",
        1,
        scenario=[{"fault": {"status": 401}}],
        requests=1,
        # The session starts (its journal, the lock and its holder note) before the first
        # request; keeping it is the point (SPEC section 9), so .bmc/ changes by design.
        state_written=(".bmc/",),
        also=the_session_is_kept,
    ),
    Case(
        "held-lock",
        lambda c: ["run", RUN, *c.where()],
        "project tidewater/growth-2027 is in use by",
        1,
        also=names_the_holder,
        hold_lock=True,  # taken before the snapshot: its files are there before and after
    ),
    Case("unknown-command", lambda c: ["segments"], "No such command 'segments'", 1,
         one_line=False),
    Case("bad-option", lambda c: ["run", RUN, "--colour"], "No such option '--colour'", 1,
         one_line=False),
    Case(
        "resume-without-sessions",
        lambda c: ["resume", *c.where()],
        "this project has no session to resume",
        1,
        prepare=session_dir_exists,
    ),
    Case(
        "resume-unknown-id",
        lambda c: ["resume", "nosuch-id", *c.where()],
        "no session 'nosuch-id' in this project",
        1,
    ),
    Case(
        "resume-outside-sessions-folder",
        lambda c: ["resume", "../../brief", *c.where()],
        "no session '../../brief' in this project",
        1,
    ),
    Case(
        "corrupt-journal",
        lambda c: ["resume", CORRUPT_SESSION, *c.where()],
        f"session journal {CORRUPT_SESSION}.jsonl is damaged at record 2",
        1,
        prepare=corrupt_journal,
    ),
    Case(
        "agree-unknown-stage",
        lambda c: ["agree", "nosuchstage", *c.where()],
        "unknown stage 'nosuchstage': choose one of brief, segments, canvas",
        1,
        input="yes\n",
    ),
    Case(
        "demo-into-non-empty-folder",
        lambda c: ["demo", "--workspace", str(c.root / "mine"), "--yes"],
        "exists and is not empty",
        1,
        prepare=non_empty_demo_folder,
    ),
    Case(
        "validate-binary-draft",
        lambda c: ["validate", *c.where()],
        "segment draft is binary",
        1,
        prepare=binary_draft,
        one_line=False,  # a table of every document, not one error line
        # validate caches its results by content hash in .bmc/ (SPEC section 5): the
        # folder and that one file may appear, nothing else in .bmc/ may change.
        state_written=(".bmc", ".bmc/validation.json"),
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_one_clear_message_and_changes_nothing(
    case: Case, tmp_path: Path, scripted
) -> None:
    ctx = Ctx(tmp_path)
    shutil.copytree(data_dir("fixtures") / "workspace", ctx.workspace)
    outside = tmp_path / "elsewhere"  # the command's cwd: a stray write there shows too
    outside.mkdir()
    if case.prepare:
        case.prepare(ctx)
    model = scripted({"steps": case.scenario})
    written = [f"ws/{PROJECT_REL}/{path}" for path in case.state_written]

    with ExitStack() as stack:
        if case.hold_lock:
            project = Project(ctx.workspace.resolve(), ORG, SLUG)
            stack.enter_context(ProjectLock(project).hold("demo-holder"))
        before = snapshot(tmp_path, exclude=written)
        result = run_bmc(
            case.args(ctx),
            input=case.input,
            env={**scripted_env(model), **case.env},
            cwd=outside,
        )
        after = snapshot(tmp_path, exclude=written)

    assert result.exception is None, result.stderr
    for marker in TRACEBACK_MARKERS:
        assert marker not in result.output
    assert result.exit_code == case.exit_code, result.output
    assert case.message in result.output
    if case.one_line:
        assert result.stderr.startswith("bmc: ") and result.stderr.count("\n") == 1, result.stderr
    assert len(model.requests) == case.requests
    assert after == before
    if case.also:
        case.also(ctx, model, result)


def test_the_matrix_covers_the_spec_list() -> None:
    # The brief asks for at least fifteen distinct situations; keep it from shrinking.
    assert len({case.id for case in CASES}) == len(CASES) >= 15
