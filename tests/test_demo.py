"""`bmc demo`: the whole scripted engagement, offline, with no key (SPEC section 10).

Runtime: about 9 s (three demo runs in-process, about 3 s each).
"""

from __future__ import annotations

import io
import re
import sys
import tempfile
from pathlib import Path

import pytest

from bmc import gate
from bmc.demo import run_demo
from bmc.status import project_status
from bmc.validate import validate_project
from bmc.workspace import locate
from clihelp import run_bmc, snapshot

DRAFTS = [
    "segments/drafts/freight-hauliers-and-island-businesses.md",
    "segments/drafts/island-commuters.md",
    "segments/drafts/island-residents-on-non-work-trips.md",
    "segments/drafts/public-service-partners.md",
    "segments/drafts/visitors-and-day-trippers.md",
]


def test_demo_runs_the_segments_stage_to_an_agreement(tmp_path: Path) -> None:
    workspace = tmp_path / "demo"

    # No consultant name set: the demo signs as its own demo consultant.
    result = run_bmc(["demo", "--workspace", str(workspace), "--yes"], env={"BMC_CONSULTANT": None})

    # Exit 0 also means the scripted model was finished: the demo checks that last.
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "The next step is `bmc run bmc-canvas`" in result.stdout  # the model's last words
    project = locate(workspace, "tidewater", "growth-2027")
    reports = validate_project(project)
    written = {r.path: r.status for r in reports if r.status != "missing"}
    assert written == {
        **dict.fromkeys(DRAFTS, "valid"),
        "segments/segments.md": "valid",
    }
    document = (project.project_dir / "segments/segments.md").read_bytes()
    assert (project.project_dir / "segments/segments.agreed.md").read_bytes() == document
    decisions = (project.project_dir / "decisions.md").read_text("utf-8")
    assert re.search(r"^## \S+ — Stage 2: Customer segments agreed$", decisions, re.M)
    assert f"**Digest**: {gate.digest(document)}" in decisions
    assert "**Agreed by**: Demo Consultant (consultant)" in decisions
    assert not (project.state_dir / gate.INTENT).exists()
    assert [s.state for s in project_status(project).stages] == ["agreed", "agreed", "missing"]


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_demo_refuses_a_folder_that_is_not_new_or_empty(tmp_path: Path, kind: str) -> None:
    if kind == "file":
        target = tmp_path / "notes.md"
        target.write_text("my notes\n")
    else:
        target = tmp_path / "work"
        target.mkdir()
        (target / "notes.md").write_text("my notes\n")
    before = snapshot(tmp_path)

    result = run_bmc(["demo", "--workspace", str(target), "--yes"])

    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    assert str(target) in result.stderr
    assert ("not empty" if kind == "folder" else "is a file") in result.stderr
    assert snapshot(tmp_path) == before


def test_demo_names_its_temporary_folder_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A temporary folder deeper than the 80 columns of a pipe: its path must still come out
    # whole on one line, or it cannot be copied.
    temp = tmp_path / "a-temporary-folder-with-a-long-name-like-on-macos" / "T"
    temp.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))

    result = run_bmc(["demo", "--yes"], env={"COLUMNS": None})

    assert result.exit_code == 0, result.output
    [created] = [p for p in temp.iterdir() if p.name.startswith("bmc-demo-")]
    assert len(str(created)) > 80
    assert (
        created / "clients/tidewater/projects/growth-2027/segments/segments.agreed.md"
    ).is_file()
    closing = result.stdout.strip().splitlines()[-3:]
    assert any(line.endswith(str(created)) for line in closing), closing


class _Terminal(io.StringIO):
    """Keyboard input at a terminal: the demo asks at the gate instead of assuming yes."""

    def isatty(self) -> bool:
        return True


def test_at_a_terminal_only_yes_goes_on_and_ctrl_d_stops_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The newcomer first answers no (the script cannot rework the segments, so they are
    # asked again), then presses Ctrl-D (end of input): the demo stops, nothing agreed.
    monkeypatch.setattr(sys, "stdin", _Terminal("no, not yet\n"))
    monkeypatch.delenv("BMC_CONSULTANT", raising=False)

    run_demo(tmp_path / "demo", assume_yes=False)

    out = capsys.readouterr().out
    assert "type yes to go on" in out
    assert "The demo stopped at the agreement: nothing was agreed." in out
    project = locate(tmp_path / "demo", "tidewater", "growth-2027")
    assert not (project.project_dir / "segments/segments.agreed.md").exists()
    assert "Stage 2" not in (project.project_dir / "decisions.md").read_text("utf-8")
