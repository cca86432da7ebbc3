"""The agreement gate (SPEC section 6): only a person's explicit yes writes a gate.

Sessions here run the real runner and the real `anthropic` client against the scripted
model, on a copy of the fixture workspace that already holds the five segment drafts and
`segments/segments.md` the demo scenario writes, so each scenario starts at the gate. The
command-line half (`bmc agree`, `bmc status`, repair on the next command, resume after an
agreement made outside the chat) runs `bmc` in-process through tests/clihelp.py.

Runtime: about 8 s on two idle cores (the subprocess kill test is about 1 s of it); up to
18 s while other suites share the machine.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import pytest
from rich.console import Console

from bmc.documents import gate
from bmc.documents.status import project_status
from bmc.documents.validate import validate_project
from bmc.engine.api import RunOptions
from bmc.engine.session import WAITING_AGREEMENT, load_session
from bmc.scripted import ScriptedModel
from bmc.terminal import chat as ui
from bmc.terminal.chat import TerminalDisplay
from bmc.workspace.paths import Project, atomic_write, locate
from clihelp import Result, run_bmc, scripted_env

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
ORG, SLUG = "tidewater", "growth-2027"
SEGMENTS_MD = "segments/segments.md"
GATE = "segments/segments.agreed.md"

# What the consultant must be shown: every segment with its value propositions.
SEGMENTS = {
    "Island commuters": ["Sailings that run", "Early disruption alerts", "Commuter work seat"],
    "Island residents on non-work trips": [
        "Later evening returns",
        "Off-peak car fare",
        "Booking with a person",
    ],
    "Visitors and day-trippers": [
        "One ticket for the whole day out",
        "Car-free island trips",
        "Certain return sailing",
    ],
    "Freight hauliers and island businesses": [
        "Guaranteed slots",
        "Project block booking",
        "Account billing",
    ],
    "Public-service partners": [
        "Lifeline timetable delivered",
        "Service data and priority",
        "Staff and pupil access",
    ],
}
# A revision that keeps the document valid (the overview is free text).
OVERVIEW_END = "The engagement looks for £3.0m a year of new non-contract revenue by 2029."
REVISED_END = (
    OVERVIEW_END + " Freight capacity is the first open question, at the client's request."
)


# --- the workspace: the fixture plus the demo's drafts and segments document ---------------


def demo_documents() -> dict[str, str]:
    """The final drafts and segments document of the demo scenario, by project path: its
    writes and edits replayed in order (a refused write is always rewritten later)."""
    scenario = json.loads((FIXTURES / "scenarios" / "demo-segments.json").read_text("utf-8"))
    files: dict[str, str] = {}
    for step in scenario["steps"]:
        for block in step.get("reply", {}).get("content", []):
            args = block.get("input", {})
            if block.get("name") == "write":
                files[args["file_path"]] = args["content"]
            elif block.get("name") == "edit":
                files[args["file_path"]] = files[args["file_path"]].replace(
                    args["old_string"], args["new_string"]
                )
    return files


@pytest.fixture(scope="module")
def ready_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace at the segments gate, validated once (the cache in `.bmc/` is copied
    along, so each test starts without re-checking the quotes)."""
    workspace = tmp_path_factory.mktemp("ready") / "workspace"
    shutil.copytree(FIXTURES / "workspace", workspace)
    project = locate(workspace, ORG, SLUG)
    for path, text in demo_documents().items():
        atomic_write(project.project_dir / path, text)
    written = [r for r in validate_project(project) if r.status != "missing"]
    assert [r.path for r in written if r.status != "valid"] == []
    assert len(written) == 6  # five drafts and the segments document
    return workspace


@pytest.fixture
def ready(ready_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    workspace = tmp_path / "workspace"
    shutil.copytree(ready_template, workspace)
    monkeypatch.setenv("BMC_CONSULTANT", "Priya Raman")
    return locate(workspace, ORG, SLUG)


@pytest.fixture
def fresh(tmp_path: Path) -> Project:
    """The fixture workspace as shipped: brief agreed, no segment work yet."""
    shutil.copytree(FIXTURES / "workspace", tmp_path / "workspace")
    return locate(tmp_path / "workspace", ORG, SLUG)


# --- a scripted session with a scripted consultant ----------------------------------------


@dataclass
class Consultant:
    """The person at the keyboard: their answers at the agreement prompt, in order (None
    once they run out, as at the end of input), and what they are shown when asked."""

    answers: list[str]
    before_answer: Callable[[int], None] | None = None  # runs just before answer n (from 1)
    prompts: list[str] = field(default_factory=list)
    screen: io.StringIO = field(default_factory=io.StringIO)  # the terminal, as it fills
    seen: list[str] = field(default_factory=list)  # the terminal when each question came

    def next_message(self) -> str | None:
        return None  # the consultant has nothing more to say once the model hands back

    def answer(self, prompt: str) -> str | None:
        self.prompts.append(prompt)
        self.seen.append(self.screen.getvalue())
        if self.before_answer is not None:
            self.before_answer(len(self.prompts))
        return self.answers.pop(0) if self.answers else None


@dataclass
class Chat:
    model: ScriptedModel
    screen: str  # everything the consultant saw

    def result(self, tool_use_id: str) -> dict[str, Any]:
        """The tool_result the model received for `tool_use_id`."""
        for request in self.model.requests:
            for block in request["messages"][-1]["content"]:
                if isinstance(block, dict) and block.get("tool_use_id") == tool_use_id:
                    return block
        raise AssertionError(f"the model never received a result for {tool_use_id}")


def chat(
    project: Project,
    scripted: Callable[..., ScriptedModel],
    steps: list[dict[str, Any]],
    consultant: Consultant,
) -> Chat:
    """Run the bmc-segments skill with the real runner and SDK against `steps`."""
    model = scripted({"steps": steps})
    client = anthropic.Anthropic(base_url=model.base_url, api_key="sk-test-scripted", max_retries=0)
    display = TerminalDisplay(Console(file=consultant.screen, width=200, highlight=False))
    options = RunOptions(client=client)
    ui.start(project, "bmc-segments", options, display, consultant)
    model.assert_finished()
    return Chat(model, consultant.screen.getvalue())


def call(tool_use_id: str, name: str, **tool_input: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_use_id, "name": name, "input": tool_input}


def reply(*content: dict[str, Any], expect: dict[str, Any] | None = None) -> dict[str, Any]:
    step: dict[str, Any] = {"reply": {"content": list(content)}}
    if expect:
        step["expect"] = expect
    return step


def say(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def results(**expected: dict[str, Any]) -> dict[str, Any]:
    return {"tool_results": expected}


def ask(tool_use_id: str, scope: str = "") -> dict[str, Any]:
    args: dict[str, Any] = {"document": SEGMENTS_MD}
    if scope:
        args["scope_notes"] = scope
    return call(tool_use_id, "request_agreement", **args)


# --- what the files say ---------------------------------------------------------------------


def read(project: Project, path: str) -> bytes:
    return (project.project_dir / path).read_bytes()


def decisions(project: Project) -> str:
    return read(project, "decisions.md").decode("utf-8")


def original_decisions() -> bytes:
    return (FIXTURES / "workspace/clients/tidewater/projects/growth-2027/decisions.md").read_bytes()


def entries(project: Project) -> list[str]:
    """The decisions.md entries, each from its `## ` heading to the next."""
    return ["## " + part for part in re.split(r"^## ", decisions(project), flags=re.M)[1:]]


def segment_entries(project: Project) -> list[str]:
    return [e for e in entries(project) if "— Stage 2: Customer segments" in e.splitlines()[0]]


def assert_nothing_agreed(project: Project) -> None:
    assert not (project.project_dir / GATE).exists()
    assert read(project, "decisions.md") == original_decisions()
    assert not (project.state_dir / gate.INTENT).exists()


def today() -> str:
    return dt.date.today().isoformat()


# --- in a session ----------------------------------------------------------------------------


def test_yes_writes_the_gate_then_the_decisions_entry_and_points_to_the_canvas(
    ready: Project, scripted: Callable[..., ScriptedModel]
) -> None:
    scope = "Five segments; Tidewater Marine Engineering Ltd out of scope as in the brief."
    steps = [
        reply(say("Asking you to confirm."), ask("toolu_a1", scope)),
        reply(
            say("Signed off; next is the canvas."),
            expect=results(toolu_a1={"is_error": False, "contains": "agreed"}),
        ),
    ]
    document = read(ready, SEGMENTS_MD)
    consultant = Consultant(["yes, Fiona Galbraith, Commercial Director"])

    session = chat(ready, scripted, steps, consultant)

    # Shown before the question: every segment, its value propositions, the digest.
    [shown] = consultant.seen
    for name, propositions in SEGMENTS.items():
        line = next(line for line in shown.splitlines() if name in line)
        assert all(p in line for p in propositions), line
    assert gate.digest(document) in shown
    assert len(consultant.prompts) == 1 and "yes" in consultant.prompts[0]

    assert read(ready, GATE) == document
    text = decisions(ready)
    assert text.startswith(original_decisions().decode("utf-8"))  # appended, never rewritten
    [entry] = segment_entries(ready)
    assert entry.strip().splitlines() == [
        f"## {today()} — Stage 2: Customer segments agreed",
        "",
        "**Agreed**: Customer segments and value propositions signed off.",
        "**Segments**: " + "; ".join(SEGMENTS),
        f"**Scope**: {scope}",
        f"**Digest**: {gate.digest(document)}",
        "**Agreed by**: Priya Raman (consultant); Fiona Galbraith, Commercial Director (client)",
    ]
    assert not (ready.state_dir / gate.INTENT).exists()

    result = session.result("toolu_a1")
    assert not result.get("is_error")
    assert result["content"].startswith("agreed")
    assert "bmc run bmc-canvas" in result["content"]
    assert project_status(ready).stages[1].state == "agreed"


def test_feedback_goes_back_to_the_model_which_revises_and_asks_again(
    ready: Project, scripted: Callable[..., ScriptedModel]
) -> None:
    feedback = "no, the client wants freight capacity named as the first open question"
    steps = [
        reply(ask("toolu_a1")),
        reply(
            say("Revising the overview."),
            call("toolu_r1", "read", file_path=SEGMENTS_MD),
            expect=results(toolu_a1={"is_error": False, "contains": feedback}),
        ),
        reply(
            call(
                "toolu_e1",
                "edit",
                file_path=SEGMENTS_MD,
                old_string=OVERVIEW_END,
                new_string=REVISED_END,
            ),
            expect=results(toolu_r1={"is_error": False}),
        ),
        reply(ask("toolu_a2"), expect=results(toolu_e1={"is_error": False})),
        reply(say("Agreed."), expect=results(toolu_a2={"is_error": False, "contains": "agreed"})),
    ]
    first = read(ready, SEGMENTS_MD)
    states: list[bool] = []

    def before_answer(n: int) -> None:
        if n == 2:  # the decline left nothing behind
            states.append((ready.project_dir / GATE).exists())
            states.append(read(ready, "decisions.md") == original_decisions())

    session = chat(ready, scripted, steps, Consultant([feedback, "yes"], before_answer))

    assert states == [False, True]
    declined = session.result("toolu_a1")
    assert not declined.get("is_error") and feedback in declined["content"]
    revised = read(ready, SEGMENTS_MD)
    assert REVISED_END.encode() in revised
    # Each request showed the bytes it was about to agree.
    assert gate.digest(first) in session.screen and gate.digest(revised) in session.screen
    assert read(ready, GATE) == revised
    [entry] = segment_entries(ready)
    assert f"**Digest**: {gate.digest(revised)}" in entry
    assert "**Agreed by**: Priya Raman (consultant)\n" in entry + "\n"
    assert "(client)" not in entry


def test_a_yes_to_a_document_changed_since_it_was_shown_agrees_nothing_and_shows_the_new_one(
    ready: Project, scripted: Callable[..., ScriptedModel]
) -> None:
    shown = (ready.project_dir / SEGMENTS_MD).read_bytes()

    def hand_edit(number: int) -> None:  # someone saves the file while the question is up
        if number == 1:
            path = ready.project_dir / SEGMENTS_MD
            path.write_text(path.read_text("utf-8").replace(OVERVIEW_END, REVISED_END), "utf-8")

    steps = [
        reply(ask("toolu_a1")),
        reply(
            say("Agreed on the revised version."),
            expect=results(toolu_a1={"is_error": False, "contains": "agreed"}),
        ),
    ]
    consultant = Consultant(["yes", "yes"], hand_edit)
    session = chat(ready, scripted, steps, consultant)

    revised = (ready.project_dir / SEGMENTS_MD).read_bytes()
    # The first yes agreed nothing: the person was told, and shown the new version at once.
    assert len(consultant.prompts) == 2
    second = consultant.seen[1][len(consultant.seen[0]) :]
    assert "changed after you were shown it" in " ".join(second.split())
    assert gate.digest(shown) in second and gate.digest(revised) in second
    # The second yes agreed exactly what it was shown: the revised bytes.
    assert (ready.project_dir / GATE).read_bytes() == revised
    decisions = (ready.project_dir / "decisions.md").read_text("utf-8")
    assert gate.digest(revised) in decisions and gate.digest(shown) not in decisions
    assert session.result("toolu_a1")["content"].startswith("agreed")


# Each damages a ready project and returns what the refusal must say (every problem of it).


def _drop_a_draft(project: Project) -> list[str]:
    (project.project_dir / "segments/drafts/public-service-partners.md").unlink()
    return ['"Public-service partners"', "has no draft"]


def _break_the_document(project: Project) -> list[str]:
    path = project.project_dir / SEGMENTS_MD
    text = path.read_text("utf-8")
    text = text.replace("**Sailings that run**", "**Boats that run**")
    path.write_text(text.replace("## Excluded Segments", "## Left out"), "utf-8")
    return ["Excluded Segments: the section is missing", "`## Left out`", '"Boats that run"']


def _delete_the_document(project: Project) -> list[str]:
    (project.project_dir / SEGMENTS_MD).unlink()
    return ["segments/segments.md does not exist yet"]


@pytest.mark.parametrize("damage", [_drop_a_draft, _break_the_document, _delete_the_document])
def test_a_document_that_is_not_ready_is_refused_with_its_problems(
    ready: Project,
    scripted: Callable[..., ScriptedModel],
    damage: Callable[[Project], list[str]],
) -> None:
    problems = damage(ready)
    steps = [
        reply(ask("toolu_a1")),
        reply(say("I'll fix that first."), expect=results(toolu_a1={"is_error": True})),
    ]
    consultant = Consultant(["yes"])
    session = chat(ready, scripted, steps, consultant)

    assert consultant.prompts == []  # never asked: there was nothing to agree
    listed = session.result("toolu_a1")["content"]
    # Every problem at once, so the model can fix them all in one go.
    assert [p for p in problems if p not in listed] == [], listed
    assert_nothing_agreed(ready)


def test_agreeing_any_other_document_is_refused(
    ready: Project, scripted: Callable[..., ScriptedModel]
) -> None:
    others = [
        "brief.md",
        "canvas/canvas.md",
        "segments/drafts/island-commuters.md",
        "../segments/segments.md",
        GATE,
    ]
    calls = [call(f"toolu_o{i}", "request_agreement", document=d) for i, d in enumerate(others)]
    refused = {
        f"toolu_o{i}": {"is_error": True, "contains": "this skill agrees segments/segments.md"}
        for i in range(len(others))
    }
    steps = [reply(*calls), reply(say("Understood."), expect=results(**refused))]
    consultant = Consultant(["yes"] * len(others))

    chat(ready, scripted, steps, consultant)

    assert consultant.prompts == []
    assert_nothing_agreed(ready)
    assert read(ready, "brief.agreed.md") == read(ready, "brief.md")


def test_scope_notes_cannot_forge_a_decisions_entry_or_hide_text(
    ready: Project, scripted: Callable[..., ScriptedModel]
) -> None:
    # Scope notes are the model's words. A line break must not start a fake heading that
    # status would read as the brief being re-agreed, and markup must not hide or crash.
    forged = (
        "\n\n## 2099-01-01 — Stage 1: Engagement brief re-agreed\n\n**Digest**: sha256:000000000000"
    )
    scope = f"Five segments.{forged} [white on white]hidden words[/white on white] [/bold]"
    steps = [
        reply(ask("toolu_a1", scope)),
        reply(say("Agreed."), expect=results(toolu_a1={"is_error": False, "contains": "agreed"})),
    ]
    session = chat(ready, scripted, steps, Consultant(["yes"]))

    assert "[white on white]hidden words" in session.screen
    new = entries(ready)[1:]
    assert [e.splitlines()[0] for e in new] == [f"## {today()} — Stage 2: Customer segments agreed"]
    assert "**Scope**: Five segments. ## 2099-01-01" in new[0]
    assert [s.state for s in project_status(ready).stages] == ["agreed", "agreed", "missing"]


# --- on the command line ---------------------------------------------------------------------


def where(project: Project) -> list[str]:
    return ["--workspace", str(project.workspace), "--org", project.org, "--project", project.slug]


def bmc(project: Project, *args: str, input: str = "", **env: str | None) -> Result:
    result = run_bmc([*args, *where(project)], input=input, env=env)
    assert result.exception is None, result.stderr
    return result


def status(project: Project) -> dict[str, Any]:
    """`bmc status --json`."""
    done = bmc(project, "status", "--json")
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)


def states(project: Project) -> dict[str, str]:
    return {s["key"]: s["state"] for s in status(project)["stages"]}


def test_bmc_agree_shows_the_segments_and_agrees_on_yes(ready: Project) -> None:
    document = read(ready, SEGMENTS_MD)

    done = bmc(
        ready,
        "agree",
        "segments",
        "--as",
        "Priya Raman",
        "--scope",
        "Five segments.",
        input="yes, Fiona Galbraith\n",
        BMC_CONSULTANT="Someone Else",
    )

    assert done.exit_code == 0, done.output
    for name, propositions in SEGMENTS.items():
        assert f"{name}: {', '.join(propositions)}" in done.stdout
    assert gate.digest(document) in done.stdout
    assert "Does the client agree?" in done.stdout
    assert "Agreed: segments/segments.agreed.md written" in done.stdout
    assert read(ready, GATE) == document
    [entry] = segment_entries(ready)
    assert "**Agreed by**: Priya Raman (consultant); Fiona Galbraith (client)" in entry
    assert "**Scope**: Five segments." in entry


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "no\n",
        "not yet, they want a week\n",
        # A conditional yes is the client's feedback, not their agreement.
        "yes, but only once segment 3 is dropped\n",
        "yes if the visitor numbers hold\n",
    ],
)
def test_bmc_agree_without_a_yes_agrees_nothing(ready: Project, answer: str) -> None:
    done = bmc(ready, "agree", "segments", input=answer)

    assert done.exit_code == 0, done.output
    assert "Nothing was agreed." in done.stdout
    assert_nothing_agreed(ready)


def test_bmc_agree_refuses_a_document_with_problems(ready: Project) -> None:
    _drop_a_draft(ready)
    done = bmc(ready, "agree", "segments", input="yes\n")

    assert done.exit_code == 1
    assert "has no draft" in done.stderr and "Traceback" not in done.stderr
    assert_nothing_agreed(ready)


def test_an_edited_document_is_stale_and_agreeing_it_again_is_recorded_as_re_agreed(
    ready: Project,
) -> None:
    bmc(ready, "agree", "segments", input="yes\n")
    path = ready.project_dir / SEGMENTS_MD
    path.write_text(path.read_text("utf-8").replace(OVERVIEW_END, REVISED_END), "utf-8")

    assert states(ready) == {"brief": "agreed", "segments": "stale", "canvas": "missing"}
    table = bmc(ready, "status").stdout
    assert "changed since agreed (version 1): 1 section changed" in table
    assert "bmc agree segments" in table.split("Next:")[1]

    again = bmc(ready, "agree", "segments", input="yes\n")

    assert again.exit_code == 0, again.output
    assert read(ready, GATE) == read(ready, SEGMENTS_MD)
    headings = [e.splitlines()[0] for e in segment_entries(ready)]
    assert headings == [
        f"## {today()} — Stage 2: Customer segments agreed",
        f"## {today()} — Stage 2: Customer segments re-agreed",
    ]
    assert states(ready)["segments"] == "agreed"


def test_re_agreeing_the_brief_makes_every_gate_built_on_it_stale(ready: Project) -> None:
    bmc(ready, "agree", "segments", input="yes\n")
    # A canvas agreed on top (no canvas skill yet: written and agreed directly).
    canvas = gate.STAGES["canvas"]
    atomic_write(ready.project_dir / canvas.document, "# Business Model Canvas — Tidewater\n")
    gate.agree(
        ready,
        gate.propose(ready, canvas),
        scope="",
        agreed_by="Priya Raman (consultant)",
    )
    assert states(ready) == {"brief": "agreed", "segments": "agreed", "canvas": "agreed"}
    brief = ready.project_dir / "brief.md"
    brief.write_text(brief.read_text("utf-8") + "\nAdded: the Fennick route's winter timetable.\n")

    done = bmc(ready, "agree", "brief", input="yes\n")

    assert done.exit_code == 0, done.output
    assert read(ready, "brief.agreed.md") == read(ready, "brief.md")
    assert entries(ready)[-1].startswith(f"## {today()} — Stage 1: Engagement brief re-agreed")
    assert "segments/segments.agreed.md is now stale" in done.stdout
    assert "canvas/canvas.agreed.md is now stale" in done.stdout
    report = status(ready)
    stale = {s["key"]: s["detail"] for s in report["stages"] if s["state"] == "stale"}
    assert stale == {
        "segments": "the brief stage was re-agreed after it",
        "canvas": "the brief stage was re-agreed after it",
    }
    assert "bmc agree segments" in report["next"]


def test_status_walks_from_missing_through_drafting_and_valid_to_agreed(fresh: Project) -> None:
    assert states(fresh) == {"brief": "agreed", "segments": "missing", "canvas": "missing"}
    assert status(fresh)["next"].startswith("`bmc run bmc-segments`")

    documents = demo_documents()
    for path, text in documents.items():
        if path != SEGMENTS_MD:
            atomic_write(fresh.project_dir / path, text)
    assert states(fresh)["segments"] == "drafting"  # drafts, no segments document yet

    broken = documents[SEGMENTS_MD].replace("## Excluded Segments", "## Left out")
    atomic_write(fresh.project_dir / SEGMENTS_MD, broken)
    report = status(fresh)
    assert report["stages"][1]["state"] == "drafting"
    assert "Left out" in report["stages"][1]["detail"]  # the first problem, to act on
    assert report["next"].startswith("`bmc run bmc-segments`")

    atomic_write(fresh.project_dir / SEGMENTS_MD, documents[SEGMENTS_MD])
    assert states(fresh) == {"brief": "agreed", "segments": "valid", "canvas": "missing"}
    assert "`bmc agree segments`" in status(fresh)["next"]

    bmc(fresh, "agree", "segments", input="yes\n")
    assert states(fresh) == {"brief": "agreed", "segments": "agreed", "canvas": "missing"}
    table = bmc(fresh, "status").stdout  # the same, as the consultant reads it
    assert re.search(r"segments\s.*\sagreed\s", table)
    assert "Next: `bmc run bmc-canvas`" in table


# --- a crash between the gate and its entry -------------------------------------------------


def write_gate_without_entry(
    project: Project, *, scope: str = "Five segments.", reagreed: bool = False
) -> str:
    """What `gate.agree` does up to the crash point: the intent note, then the gate."""
    stage = gate.STAGES["segments"]
    proposal = gate.propose(project, stage)
    intent = gate.Intent(
        stage="segments",
        digest=proposal.digest,
        date=today(),
        items=proposal.items,
        scope=scope,
        agreed_by="Priya Raman (consultant)",
        reagreed=reagreed,
    )
    atomic_write(project.state_dir / gate.INTENT, json.dumps(asdict(intent)))
    atomic_write(project.project_dir / stage.gate, proposal.data)
    return proposal.digest


def one_reply_session(model_steps: int) -> dict[str, Any]:
    return {
        "steps": [
            reply(
                say("Nothing to do today."),
                expect={"last_user_text_contains": "Start the bmc-segments skill"},
            )
            for _ in range(model_steps)
        ]
    }


@pytest.mark.parametrize("command", ["agree", "run"])
def test_a_gate_without_its_entry_is_recorded_once_by_the_next_command(
    ready: Project, scripted: Callable[..., ScriptedModel], command: str
) -> None:
    digest = write_gate_without_entry(ready)
    model = scripted(one_reply_session(2))
    args = ["agree", "segments"] if command == "agree" else ["run", "bmc-segments"]

    first = bmc(ready, *args, input="", **scripted_env(model))

    assert first.exit_code == 0, first.output
    assert "Repaired" in first.output
    [entry] = segment_entries(ready)
    assert f"**Digest**: {digest}" in entry and "**Scope**: Five segments." in entry
    assert not (ready.state_dir / gate.INTENT).exists()
    after_repair = read(ready, "decisions.md")

    second = bmc(ready, *args, input="", **scripted_env(model))

    assert second.exit_code == 0, second.output
    assert "Repaired" not in second.output
    assert read(ready, "decisions.md") == after_repair
    if command == "run":
        model.assert_finished()


def test_a_process_killed_after_writing_the_gate_is_repaired_by_the_next_command(
    ready: Project,
) -> None:
    env = {**os.environ, "BMC_CRASH_AT": "gate-written:1", "COLUMNS": "200"}
    env.pop("BMC_WORKSPACE", None)
    killed = subprocess.run(
        [sys.executable, "-m", "bmc.cli", "agree", "segments", *where(ready)],
        input="yes\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert killed.returncode == -9, killed.stderr  # SIGKILL, as a power cut would
    assert read(ready, GATE) == read(ready, SEGMENTS_MD)
    assert read(ready, "decisions.md") == original_decisions()

    # The next command, even a model-free one, finishes the entry (the lock is free).
    shown = bmc(ready, "status", "--json")
    assert "Repaired" in shown.stderr
    assert json.loads(shown.stdout)["stages"][1]["state"] == "agreed"
    assert len(segment_entries(ready)) == 1
    assert "**Agreed by**: Priya Raman (consultant)" in segment_entries(ready)[0]
    again = bmc(ready, "agree", "segments", input="")
    assert "Repaired" not in again.output
    assert len(segment_entries(ready)) == 1  # never twice


def test_re_agreeing_bytes_agreed_before_is_still_recorded_after_a_crash(ready: Project) -> None:
    # Agreed, changed, re-agreed, changed back: the crashed re-agreement has the digest of the
    # first entry, yet it is a new agreement and must get its own entry.
    bmc(ready, "agree", "segments", input="yes\n")
    path = ready.project_dir / SEGMENTS_MD
    original = path.read_text("utf-8")
    path.write_text(original.replace(OVERVIEW_END, REVISED_END), "utf-8")
    bmc(ready, "agree", "segments", input="yes\n")
    path.write_text(original, "utf-8")
    write_gate_without_entry(ready, scope="", reagreed=True)

    bmc(ready, "agree", "segments", input="")

    headings = [e.splitlines()[0].split(": ", 1)[1] for e in segment_entries(ready)]
    assert headings == [
        "Customer segments agreed",
        "Customer segments re-agreed",
        "Customer segments re-agreed",
    ]


# --- a session paused at the gate, agreed outside ------------------------------------------


def test_a_session_paused_at_the_gate_is_told_on_resume_that_it_was_agreed_outside(
    ready: Project, scripted: Callable[..., ScriptedModel]
) -> None:
    model = scripted(
        {
            "steps": [
                reply(say("Asking you to confirm."), ask("toolu_p1")),
                reply(
                    say("Already agreed outside this chat; the next step is the canvas."),
                    expect=results(
                        toolu_p1={"is_error": False, "contains": "agreed outside this chat"}
                    ),
                ),
            ]
        }
    )

    paused = bmc(ready, "run", "bmc-segments", input="", **scripted_env(model))

    assert paused.exit_code == 0, paused.output
    assert "Nothing was agreed" in paused.output and "bmc resume" in paused.output
    assert load_session(ready).status == WAITING_AGREEMENT
    assert_nothing_agreed(ready)

    outside = bmc(ready, "agree", "segments", input="yes\n")
    assert outside.exit_code == 0, outside.output

    resumed = bmc(ready, "resume", input="", **scripted_env(model))

    assert resumed.exit_code == 0, resumed.output
    model.assert_finished()
    assert "Does the client agree" not in resumed.output  # not asked twice
    assert "bmc run bmc-canvas" in model.requests[-1]["messages"][-1]["content"][0]["content"]
    assert len(segment_entries(ready)) == 1
    assert read(ready, GATE) == read(ready, SEGMENTS_MD)


def test_run_as_signs_the_agreement_with_the_name_given(
    ready: Project, scripted: Callable[..., ScriptedModel]
) -> None:
    model = scripted(
        {
            "steps": [
                reply(say("Asking you to confirm."), ask("toolu_a1", "As drafted.")),
                reply(say("Done."), expect=results(toolu_a1={"is_error": False})),
            ]
        }
    )
    env = {"ANTHROPIC_BASE_URL": model.base_url, "ANTHROPIC_API_KEY": "sk-test"}

    done = bmc(ready, "run", "bmc-segments", "--as", "Jane Doe", input="yes\n", **env)

    assert done.exit_code == 0, done.output
    [entry] = segment_entries(ready)
    assert "**Agreed by**: Jane Doe (consultant)" in entry
