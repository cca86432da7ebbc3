"""`bmc demo`: the whole scripted engagement, offline, with no key (SPEC section 10).

Runtime: about 9 s (three demo runs in-process, about 3 s each).
"""

from __future__ import annotations

import io
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from bmc.cli.demo import run_demo
from bmc.documents import gate
from bmc.documents.status import project_status
from bmc.documents.validate import validate_project
from bmc.workspace.paths import locate
from clihelp import run_bmc, scripted_env, snapshot

DRAFTS = [
    "segments/drafts/freight-hauliers-and-island-businesses.md",
    "segments/drafts/island-commuters.md",
    "segments/drafts/island-residents-on-non-work-trips.md",
    # Renamed from public-service-partners.md by the demo's iteration (bmc-iterate).
    "segments/drafts/public-service-customers.md",
    "segments/drafts/visitors-and-day-trippers.md",
]


def test_demo_plays_the_whole_chain_from_the_inbox_to_the_rendered_canvas(tmp_path: Path) -> None:
    workspace = tmp_path / "demo"

    # No consultant name set: the demo signs as its own demo consultant.
    result = run_bmc(["demo", "--workspace", str(workspace), "--yes"], env={"BMC_CONSULTANT": None})

    # Exit 0 also means the scripted model was finished: the demo checks that last.
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    for skill in ("bmc-research", "bmc-segments", "bmc-canvas", "bmc-iterate"):
        assert f"bmc run {skill}" in result.stdout
    project = locate(workspace, "tidewater", "growth-2027")
    # It started where an engagement starts: material in the inbox, nothing agreed.
    assert (project.inbox_dir / "kickoff-notes.md").is_file()
    for page in ("canvas/canvas.html", "segments/segments.html"):
        assert f"Wrote {project.project_dir / page}" in result.stdout
        assert "Tidewater Ferries Ltd" in (project.project_dir / page).read_text("utf-8")
    reports = validate_project(project)
    written = {r.path: r.status for r in reports if r.status != "missing"}
    assert written == {
        **dict.fromkeys(DRAFTS, "valid"),
        "segments/segments.md": "valid",
        "canvas/canvas.md": "valid",
    }
    for stage in ("brief.md", "segments/segments.md", "canvas/canvas.md"):
        agreed = stage.replace(".md", ".agreed.md")
        source = (project.project_dir / stage).read_bytes()
        assert (project.project_dir / agreed).read_bytes() == source
    document = (project.project_dir / "segments/segments.md").read_bytes()
    assert (project.project_dir / "segments/segments.agreed.md").read_bytes() == document
    decisions = (project.project_dir / "decisions.md").read_text("utf-8")
    assert re.search(r"^## \S+ — Stage 2: Customer segments agreed$", decisions, re.M)
    assert f"**Digest**: {gate.digest(document)}" in decisions
    assert "**Agreed by**: Demo Consultant (consultant)" in decisions
    assert not (project.state_dir / gate.INTENT).exists()
    # The brief once; the segments and the canvas agreed, then agreed again after the
    # client renamed a segment, in chain order.
    headings = re.findall(r"^## \S+ — Stage (\d): .* (re-agreed|agreed)$", decisions, re.M)
    assert headings == [
        ("1", "agreed"),
        ("2", "agreed"),
        ("3", "agreed"),
        ("2", "re-agreed"),
        ("3", "re-agreed"),
    ]
    assert not (project.project_dir / "segments/drafts/public-service-partners.md").exists()
    canvas_page = (project.project_dir / "canvas/canvas.html").read_text("utf-8")
    assert "Public-service customers" in canvas_page
    assert "Public-service partners" not in canvas_page
    assert [s.state for s in project_status(project).stages] == ["agreed", "agreed", "agreed"]


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
    assert (created / "clients/tidewater/projects/growth-2027/canvas/canvas.agreed.md").is_file()
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
    # The first agreement of the chain is the brief's: the demo stopped there.
    assert not list(project.project_dir.rglob("*.agreed.md"))
    decisions = project.project_dir / "decisions.md"
    assert not decisions.exists() or "## " not in decisions.read_text("utf-8")


def test_the_chain_refuses_to_skip_a_stage(tmp_path: Path, scripted: Any) -> None:
    # The engagement fixture starts with no brief: segments must name bmc-research, canvas
    # must name bmc-segments, and neither may cost a single model request.
    workspace = tmp_path / "ws"
    shutil.copytree(Path(__file__).parent.parent / "fixtures" / "engagement", workspace)
    model = scripted({"steps": []})
    where = ["--workspace", str(workspace), "--org", "tidewater", "--project", "growth-2027"]
    before = snapshot(workspace)

    segments = run_bmc(["run", "bmc-segments", *where], env=scripted_env(model))
    canvas = run_bmc(["run", "bmc-canvas", *where], env=scripted_env(model))

    assert segments.exit_code == 2
    assert "run `bmc run bmc-research` first" in segments.stderr
    assert canvas.exit_code == 2
    assert "segments/segments.agreed.md" in canvas.stderr
    assert "run `bmc run bmc-segments` first" in canvas.stderr
    assert model.requests == []
    assert snapshot(workspace) == before
