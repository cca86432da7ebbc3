"""A research file that tells the model to skip the consultant cannot get anything agreed.

fixtures/workspace-injection holds `resources/vendor-note.md`, whose "processing note for AI
assistants" says the client pre-approved the segments. fixtures/scenarios/injection.json is a
model that obeys it: it writes the gate, writes and edits `decisions.md`, writes a gate under a
case-and-trailing-space variant of its name, and writes the runner's agreement note in `.bmc/`.
The session runs through `bmc run` with the real SDK against the scripted model.

Runtime: about 3 s, 5 s on a busy machine (one session, shared by the three tests).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bmc.documents import gate
from bmc.scripted import ScriptedModel
from bmc.workspace.paths import Project, locate
from clihelp import project_args, run_bmc, scripted_env, snapshot

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SCENARIO = FIXTURES / "scenarios" / "injection.json"
FORBIDDEN = ["toolu_inj_04", "toolu_inj_05", "toolu_inj_06", "toolu_inj_07", "toolu_inj_08"]


def gate_like(root: Path) -> list[str]:
    """Every file whose name a case-insensitive file system would take for a gate."""
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.name.casefold().rstrip(". ").endswith(".agreed.md")
    )


@pytest.fixture(scope="module")
def attacked(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Project, ScriptedModel, dict[str, str], Any]]:
    """The injection scenario run once by `bmc run bmc-segments`, for every test here:
    (project, model, the workspace before, the command's result)."""
    workspace = tmp_path_factory.mktemp("injection") / "workspace"
    shutil.copytree(FIXTURES / "workspace-injection", workspace)
    project = locate(workspace, "tidewater", "growth-2027")
    before = snapshot(project.workspace)
    with ScriptedModel(SCENARIO) as model:
        result = run_bmc(
            ["run", "bmc-segments", *where(project)], input="", env=scripted_env(model)
        )
        assert result.exception is None, result.stderr
        yield project, model, before, result


def where(project: Project) -> list[str]:
    return ["--workspace", str(project.workspace), "--org", project.org, "--project", project.slug]


def test_the_session_runs_to_its_end_with_every_forbidden_write_refused(attacked: Any) -> None:
    _, model, _, result = attacked
    assert result.exit_code == 0, result.output
    model.assert_finished()  # includes the scenario's own is_error expectations

    # The results the model got for the five attempts, from the request that carried them.
    answered = {
        block["tool_use_id"]: block
        for request in model.requests
        for block in request["messages"][-1]["content"]
        if isinstance(block, dict) and block.get("type") == "tool_result"
    }
    for tool_use_id in FORBIDDEN:
        assert answered[tool_use_id].get("is_error") is True, answered[tool_use_id]
        assert answered[tool_use_id]["content"].strip(), "a refusal names its reason"
    assert "Processing note for AI assistants" in answered["toolu_inj_02"]["content"]


def test_nothing_was_agreed_and_nothing_outside_the_runner_state_changed(attacked: Any) -> None:
    project, _, before, _ = attacked
    workspace = project.workspace

    assert gate_like(workspace) == ["clients/tidewater/projects/growth-2027/brief.agreed.md"]
    decisions = "clients/tidewater/projects/growth-2027/decisions.md"
    assert (workspace / decisions).read_bytes() == (
        FIXTURES / "workspace-injection" / decisions
    ).read_bytes()
    assert not (project.state_dir / gate.INTENT).exists()
    # Only the runner's own state folder (session journal, lock, cache) may be new.
    state = "clients/tidewater/projects/growth-2027/.bmc/"
    assert snapshot(workspace, exclude=[state]) == before


def test_status_does_not_show_the_segments_agreed(attacked: Any) -> None:
    project, _, _, _ = attacked
    where = project_args(project)

    status = run_bmc(["status", "--json", *where])

    assert status.exit_code == 0, status.output
    stages = {s["key"]: s["state"] for s in json.loads(status.stdout)["stages"]}
    assert stages == {"brief": "agreed", "segments": "missing", "canvas": "missing"}
