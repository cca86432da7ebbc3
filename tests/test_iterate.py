"""After the first agreement: bmc-iterate carries a change through the agreed documents and
has each changed stage agreed again, in chain order (SPEC sections 6 and 12; issue 12).

The engagement is played end to end with the demo's four scenarios, through the engine's API
and the real `anthropic` client against the scripted model: research -> segments -> canvas
-> iterate (a segment renamed, its draft renamed, its canvas items re-tagged, both stages
agreed again). It is played once per module; each test works on its own copy.

Runtime: about 6 s for the chain, then about 1 s per test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import anthropic
import pytest

from bmc.documents import gate, stages, versions
from bmc.documents.schemas.canvas import read_canvas
from bmc.documents.status import project_status
from bmc.engine import agreement
from bmc.engine import api as engine
from bmc.engine.events import AgreementRequested, Notice, Stopped, WaitingForMessage
from bmc.engine.journal import read_journal
from bmc.engine.session import load_session, session_path
from bmc.scripted import ScriptedModel
from bmc.workspace.packaged import data_dir
from bmc.workspace.paths import Project, locate
from clihelp import project_args, run_bmc, scripted_env, snapshot

SCENARIOS = data_dir("fixtures") / "scenarios"
ROOT = Path(__file__).resolve().parent.parent
OLD, NEW = "Public-service partners", "Public-service customers"
OLD_DRAFT = "segments/drafts/public-service-partners.md"
NEW_DRAFT = "segments/drafts/public-service-customers.md"
CHAIN = ("research", "segments", "canvas")


def play(project: Project, skill: str, scenario: dict[str, Any]) -> ScriptedModel:
    """Run `skill` against `scenario` as the consultant would: each scripted line in turn,
    yes to every agreement (to exactly the bytes shown), and done when the lines run out."""
    lines = list(scenario.get("consultant", []))
    with ScriptedModel(scenario) as model:
        client = anthropic.Anthropic(base_url=model.base_url, api_key="test", max_retries=0)
        conversation = engine.start(project, skill, engine.RunOptions(client=client))
        for event in conversation.events():
            if isinstance(event, WaitingForMessage):
                conversation.send(lines.pop(0)) if lines else conversation.stop()
            elif isinstance(event, AgreementRequested):
                conversation.answer(agreement.Answer(True, event.digest))
            elif isinstance(event, Stopped):
                assert event.exit_code == 0, event.reason
        conversation.wait()
        model.assert_finished()
    return model


def scenario(name: str) -> dict[str, Any]:
    return json.loads((SCENARIOS / f"demo-{name}.json").read_text("utf-8"))


OFFERED: dict[str, set[str]] = {}  # skill -> the tools its demo run was offered


@pytest.fixture(scope="module")
def agreed_canvas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace where the demo's research, segments and canvas are all agreed."""
    root = tmp_path_factory.mktemp("chain") / "ws"
    shutil.copytree(data_dir("fixtures") / "engagement", root)
    project = locate(root, "tidewater", "growth-2027")
    os.environ["BMC_CONSULTANT"] = "Priya Raman"
    try:
        for stage in CHAIN:
            model = play(project, f"bmc-{stage}", scenario(stage))
            OFFERED[f"bmc-{stage}"] = {t["name"] for t in model.requests[0]["tools"]}
    finally:
        os.environ.pop("BMC_CONSULTANT", None)
    return root


@pytest.fixture
def project(agreed_canvas: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    shutil.copytree(agreed_canvas, tmp_path / "ws")
    monkeypatch.setenv("BMC_CONSULTANT", "Priya Raman")
    return locate(tmp_path / "ws", "tidewater", "growth-2027")


def serving(canvas: bytes, name: str) -> list[tuple[str, str]]:
    """(block, item) of every canvas item that serves the segment `name`."""
    parts = read_canvas(canvas)
    return [(i.block.spec.key, i.name) for i in parts.all_items() if name in i.served()]


def entries(project: Project) -> list[tuple[str, str]]:
    text = (project.project_dir / "decisions.md").read_text("utf-8")
    return re.findall(r"^## \S+ — Stage (\d): .*? (re-agreed|agreed)$", text, re.M)


# -- the whole engagement ----------------------------------------------------------------


def test_a_renamed_segment_is_carried_through_and_both_stages_are_agreed_again(
    project: Project,
) -> None:
    folder = project.project_dir
    old_draft = (folder / OLD_DRAFT).read_text("utf-8")
    old_canvas = (folder / "canvas/canvas.agreed.md").read_bytes()
    tagged_before = serving(old_canvas, OLD)
    assert len(tagged_before) >= 8 and entries(project) == [
        ("1", "agreed"),
        ("2", "agreed"),
        ("3", "agreed"),
    ]

    model = play(project, "bmc-iterate", scenario("iterate"))

    # The draft: moved under its new name, its title and the one settled sentence changed.
    assert not (folder / OLD_DRAFT).exists()
    new_draft = (folder / NEW_DRAFT).read_text("utf-8")
    assert new_draft.startswith(f"# {NEW}\n")
    changed = [
        (a, b)
        for a, b in zip(old_draft.splitlines(), new_draft.splitlines(), strict=True)
        if a != b
    ]
    assert len(changed) == 2 and "funder and regulator" in changed[1][0]
    # The gates: exactly the working documents, with the new name and not the old.
    for document in ("segments/segments.md", "canvas/canvas.md"):
        agreed = (folder / document.replace(".md", ".agreed.md")).read_bytes()
        assert agreed == (folder / document).read_bytes()
        assert NEW.encode() in agreed and OLD.encode() not in agreed
    # The canvas: every item that served the old segment serves the new one, and only those.
    new_canvas = (folder / "canvas/canvas.agreed.md").read_bytes()
    assert serving(new_canvas, NEW) == tagged_before
    assert serving(new_canvas, OLD) == []
    assert new_canvas.replace(NEW.encode(), OLD.encode()) == old_canvas
    # The decisions: segments re-agreed, then the canvas, each with the bytes of its gate.
    assert entries(project) == [
        ("1", "agreed"),
        ("2", "agreed"),
        ("3", "agreed"),
        ("2", "re-agreed"),
        ("3", "re-agreed"),
    ]
    decisions = (folder / "decisions.md").read_text("utf-8")
    for gate_file in ("segments/segments.agreed.md", "canvas/canvas.agreed.md"):
        assert f"**Digest**: {gate.digest((folder / gate_file).read_bytes())}" in decisions
    assert f"**Scope**: Renamed {OLD} to {NEW} at the client's request" in decisions
    assert [s.state for s in project_status(project).stages] == ["agreed"] * 3
    # The versions: each stage's first and second agreements kept, each the bytes its gate had.
    for name, before in (("segments", None), ("canvas", old_canvas)):
        stage = stages.packaged().named(name)
        kept = versions.list_versions(project, stage)
        assert [v.number for v in kept] == [1, 2] and all(v.intact for v in kept)
        assert kept[1].data() == (folder / stage.gate).read_bytes()
        assert before is None or kept[0].data() == before
        assert kept[1].agreed_by.startswith("Priya Raman")
    # The diff between them, in the documents' own terms: one segment renamed; on the canvas
    # its items follow it (no item reported re-tagged, moved, added or removed).
    for name in ("segments", "canvas"):
        changes = versions.compare(project, stages.packaged().named(name), 1, 2).changes
        renamed = [c for c in changes if c.kind == "segment-renamed"]
        assert [(c.old, c.new) for c in renamed] == [(OLD, NEW)], changes
        assert not [c for c in changes if c.kind.startswith("item-")], changes
    # ... and the decisions entries of the re-agreements say what changed since version 1.
    assert decisions.count("**Changed since version 1**:") == 2
    assert f"{OLD}" in decisions.split("**Changed since version 1**:")[1].splitlines()[0]
    # Only this skill was offered the tools that move drafts.
    offered = {t["name"] for t in model.requests[0]["tools"]}
    assert {"rename", "remove", "request_agreement"} <= offered


def test_the_earlier_skills_are_never_offered_rename_or_remove(agreed_canvas: Path) -> None:
    assert set(OFFERED) == {"bmc-research", "bmc-segments", "bmc-canvas"}
    for skill, offered in OFFERED.items():
        assert {"read", "write", "request_agreement"} <= offered, skill
        assert not {"rename", "remove"} & offered, skill


# -- the chain order, enforced in code ------------------------------------------------------


def say(text: str, *calls: dict[str, Any]) -> dict[str, Any]:
    return {"reply": {"content": [{"type": "text", "text": text}, *calls]}}


def call(id_: str, name: str, **tool_input: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": id_, "name": name, "input": tool_input}


def test_the_canvas_cannot_be_agreed_while_the_segments_changed_since_they_were_agreed(
    project: Project,
) -> None:
    folder = project.project_dir
    old_q = "4. Are the first freight sailings truly full"
    new_q = "4. Are the first freight sailings really full"
    steps = [
        say(
            "Changing an open question, then asking for the canvas first.",
            call("t1", "read", file_path="segments/segments.md"),
        ),
        say(
            "Editing.",
            call(
                "t2", "edit", file_path="segments/segments.md", old_string=old_q, new_string=new_q
            ),
        ),
        {
            "expect": {"tool_results": {"t2": {"is_error": False}}},
            **say(
                "Now the canvas, and a document this skill does not agree.",
                call("t3", "request_agreement", document="canvas/canvas.md"),
                call("t4", "request_agreement", document="brief.md"),
            ),
        },
        {
            "expect": {
                "tool_results": {
                    "t3": {"is_error": True, "contains": "agree the segments again before"},
                    "t4": {"is_error": True, "contains": "not 'brief.md'"},
                }
            },
            **say("The segments come first."),
        },
    ]
    gates = {p: (folder / p).read_bytes() for p in ("canvas/canvas.agreed.md", "decisions.md")}

    play(project, "bmc-iterate", {"steps": steps})

    assert {p: (folder / p).read_bytes() for p in gates} == gates
    # The same rule outside a chat: `bmc agree canvas` stops before asking anything.
    where = project_args(project)
    result = run_bmc(["agree", "canvas", *where], input="yes\n")
    assert result.exit_code == 2, result.output
    assert "agree the segments again before the canvas" in result.stderr
    assert {p: (folder / p).read_bytes() for p in gates} == gates


def test_status_of_an_agreed_engagement_points_to_render_and_to_iterate(
    project: Project,
) -> None:
    where = project_args(project)
    result = run_bmc(["status", *where])
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip().splitlines()[-1] == (
        "Next: every stage is agreed: `bmc render` for the client, "
        "`bmc run bmc-iterate` for changes."
    )


def test_iterate_needs_an_agreed_canvas_before_any_model_call(
    tmp_path: Path, scripted: Any
) -> None:
    root = tmp_path / "ws"
    shutil.copytree(data_dir("fixtures") / "workspace", root)
    model = scripted({"steps": []})
    before = snapshot(root)
    where = ["--workspace", str(root), "--org", "tidewater", "--project", "growth-2027"]

    result = run_bmc(["run", "bmc-iterate", *where], env=scripted_env(model))

    assert result.exit_code == 2
    assert "canvas/canvas.agreed.md" in result.stderr
    assert "run `bmc run bmc-canvas` first" in result.stderr
    assert model.requests == [] and snapshot(root) == before


# -- a kill -9 between the rename and its journaled result ------------------------------------


def test_a_rename_cut_off_by_kill_9_is_finished_once_on_resume(project: Project) -> None:
    steps = [
        say("Reading the draft.", call("k1", "read", file_path=OLD_DRAFT)),
        say("Renaming it.", call("k2", "rename", file_path=OLD_DRAFT, new_path=NEW_DRAFT)),
        {
            "expect": {
                "tool_results": {
                    "k2": {"is_error": False, "contains": "before the session stopped"}
                }
            },
            **say("Renamed."),
        },
    ]
    where = project_args(project)
    draft = (project.project_dir / OLD_DRAFT).read_bytes()
    with ScriptedModel({"steps": steps}) as model:
        env = {
            **os.environ,
            **scripted_env(model),
            "BMC_CRASH_AT": "draft-moved:1",
            "PYTHONPATH": str(ROOT / "src"),
        }
        killed = subprocess.run(
            [sys.executable, "-m", "bmc.cli", "run", "bmc-iterate", *where],
            input="",
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert killed.returncode == -9, killed.stderr
        # The rename is on disk; its result is not in the journal.
        assert (project.project_dir / NEW_DRAFT).read_bytes() == draft
        assert not (project.project_dir / OLD_DRAFT).exists()

        del env["BMC_CRASH_AT"]
        resumed = subprocess.run(
            [sys.executable, "-m", "bmc.cli", "resume", *where],
            input="",
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        model.assert_finished()
    drafts = sorted(p.name for p in (project.project_dir / "segments/drafts").iterdir())
    assert "public-service-customers.md" in drafts and "public-service-partners.md" not in drafts
    assert (project.project_dir / NEW_DRAFT).read_bytes() == draft
    session = load_session(project)
    assert OLD_DRAFT not in session.read_hashes and NEW_DRAFT in session.read_hashes
    assert read_journal(session_path(project, session.id)).notes == []
    assert "deleted since the model read it" not in resumed.stdout


def test_a_resume_after_a_rename_reports_no_drift_for_the_old_name(project: Project) -> None:
    steps = [
        say("Reading the draft.", call("r1", "read", file_path=OLD_DRAFT)),
        say("Renaming it.", call("r2", "rename", file_path=OLD_DRAFT, new_path=NEW_DRAFT)),
        say("Renamed; over to you."),
    ]
    play(project, "bmc-iterate", {"steps": steps})

    notices: list[str] = []
    with ScriptedModel({"steps": [say("Still here.")]}) as model:
        client = anthropic.Anthropic(base_url=model.base_url, api_key="test", max_retries=0)
        conversation = engine.resume(project, None, engine.RunOptions(client=client))
        sent = False
        for event in conversation.events():
            if isinstance(event, Notice):
                notices.append(event.text)
            elif isinstance(event, WaitingForMessage):
                if sent:
                    conversation.stop()
                else:
                    conversation.send("Carry on.")
                    sent = True
        model.assert_finished()

    # The old name is gone because the model moved it, not because someone deleted it.
    assert not any(OLD_DRAFT in n for n in notices), notices
    assert load_session(project).read_hashes.keys() >= {NEW_DRAFT}
