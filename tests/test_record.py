"""`bmc run --record FILE`: a real session saved as a scenario replays offline (SPEC 10)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bmc.scripted import ScriptedModel
from clihelp import run_bmc, scripted_env, snapshot

ROOT = Path(__file__).resolve().parent.parent
WHERE = ["--org", "tidewater", "--project", "growth-2027"]


def _call(id_: str, name: str, **tool_input: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": id_, "name": name, "input": tool_input}


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


# A session with parallel reads, a cut-off reply, a write, a consultant turn and an
# agreement request the runner refuses (no segments.md yet): stop reasons and consultant
# lines a replay has to reproduce.
NOTE = "# Notes\n\nThe brief asks for segments first.\n"
STEPS: list[dict[str, Any]] = [
    {
        "reply": {
            "content": [
                _text("Reading."),
                _call("t1", "read", file_path="brief.agreed.md"),
                _call("t2", "read", file_path="resources/index.md"),
            ]
        }
    },
    {"reply": {"content": [_text("Writing notes.")], "stop_reason": "max_tokens"}},
    {"reply": {"content": [_call("t3", "write", file_path="notes/summary.md", content=NOTE)]}},
    {"reply": {"content": [_text("Notes written. Shall I go on?")]}},
    {"reply": {"content": [_call("t4", "request_agreement", document="segments/segments.md")]}},
    {"reply": {"content": [_text("Understood.")]}},
]


def test_a_recorded_session_replays_with_its_consultant_lines(
    tmp_path: Path, scripted: Callable[..., ScriptedModel]
) -> None:
    first = tmp_path / "first"
    shutil.copytree(ROOT / "fixtures" / "workspace", first)
    record = tmp_path / "recorded.json"
    model = scripted({"steps": STEPS})
    lines = "Go on, but keep it short.\n"

    done = run_bmc(
        ["run", "bmc-segments", "--record", str(record), "--workspace", str(first), *WHERE],
        input=lines,
        env=scripted_env(model),
    )

    assert done.exit_code == 0, done.output
    model.assert_finished()
    scenario = json.loads(record.read_text("utf-8"))
    assert [s["reply"]["stop_reason"] for s in scenario["steps"]] == [
        "tool_use",
        "max_tokens",
        "tool_use",
        "end_turn",
        "tool_use",
        "end_turn",
    ]
    # segments.md does not exist, so the agreement was refused before anyone was asked:
    # only the consultant's typed message is a line to replay.
    assert scenario["consultant"] == ["Go on, but keep it short."]

    # The replay: a fresh workspace, the recorded scenario, the recorded lines on stdin.
    second = tmp_path / "second"
    shutil.copytree(ROOT / "fixtures" / "workspace", second)
    replay = scripted(scenario)
    again = run_bmc(
        ["run", "bmc-segments", "--workspace", str(second), *WHERE],
        input="\n".join(scenario["consultant"]) + "\n",
        env=scripted_env(replay),
    )
    assert again.exit_code == 0, again.output
    replay.assert_finished()
    project = "clients/tidewater/projects/growth-2027"
    assert (second / project / "notes/summary.md").read_text("utf-8") == NOTE


def test_record_with_web_search_is_refused(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    shutil.copytree(ROOT / "fixtures" / "workspace", workspace)
    before = snapshot(workspace)
    done = run_bmc(
        [
            "run",
            "bmc-segments",
            "--web",
            "--record",
            str(tmp_path / "r.json"),
            "--workspace",
            str(workspace),
            *WHERE,
        ],
        env={"ANTHROPIC_API_KEY": "sk-test", "ANTHROPIC_BASE_URL": "http://127.0.0.1:9"},
    )
    assert done.exit_code == 1
    assert "cannot be used with --web" in done.stderr
    assert snapshot(workspace) == before
