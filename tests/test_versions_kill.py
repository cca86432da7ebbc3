"""kill -9 at every step of keeping a version (SPEC section 7; issue 12): `bmc agree segments`
SIGKILLs itself at a crash point, then the next command (`bmc status`) repairs. Whatever the
point, the project ends with either no agreement at all or the gate, one whole version holding
exactly its bytes, and one decisions entry; the repair happens once (a second command changes
nothing and says nothing).

Where the points fall in `bmc agree segments` (n counts passes): atomic-write 1 the lock's
holder note, 2 the validation cache, 3 the holder note again (the lock is let go while the
consultant answers), 4 the agreement intent, 5 the gate, 6 the version's sidecar, 7 the
version's document; then the decisions entry (`journal-append:1`, the only append here).
Runtime: about 1 s a case (a fresh `python -m bmc.cli` each).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bmc.documents import gate, versions
from bmc.documents.stages import packaged
from bmc.workspace.paths import Project
from clihelp import project_args, run_bmc, snapshot
from projects import segments_ready

SEGMENTS = packaged()["segments"]
STATE = "clients/tidewater/projects/growth-2027/.bmc/"

# point -> (what the kill left behind, checked, and whether the agreement survives it)
POINTS = {
    "atomic-write:4": (".bmc/.agreement-intent.json.", False),
    "atomic-write:5": ("segments/.segments.agreed.md.", False),
    "gate-written:1": ("segments/segments.agreed.md", True),
    "atomic-write:6": ("versions/segments/.v1.json.", True),
    "version-meta-written:1": ("versions/segments/v1.json", True),
    "atomic-write:7": ("versions/segments/.v1.md.", True),
    "version-written:1": ("versions/segments/v1.md", True),
    "journal-append:1": ("decisions.md", True),
}


def killed_agree(project: Project, point: str) -> None:
    env = {**os.environ, "BMC_CRASH_AT": point, "BMC_CONSULTANT": "Test Consultant"}
    env.pop("BMC_WORKSPACE", None)
    done = subprocess.run(
        [sys.executable, "-m", "bmc.cli", "agree", "segments", *project_args(project)],
        input="yes\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == -9, f"{point} was never reached: {done.stdout}{done.stderr}"


def files(project: Project) -> list[str]:
    return sorted(
        str(p.relative_to(project.project_dir))
        for p in project.project_dir.rglob("*")
        if p.is_file()
    )


@pytest.mark.parametrize("point", POINTS)
def test_a_kill_while_keeping_a_version_leaves_none_or_a_whole_one(
    point: str, tmp_path: Path
) -> None:
    project = segments_ready(tmp_path)
    decisions_before = (project.project_dir / "decisions.md").read_bytes()
    document = (project.project_dir / SEGMENTS.document).read_bytes()

    killed_agree(project, point)

    left, survives = POINTS[point]
    assert any(name.startswith(left) for name in files(project)), (left, files(project))
    assert [v.number for v in versions.list_versions(project, SEGMENTS)] == (
        [1] if point in ("version-written:1", "journal-append:1") else []
    )

    repaired = run_bmc(["status", *project_args(project)])

    assert repaired.exit_code == 0, repaired.output
    assert ("Repaired:" in repaired.stderr) == survives
    decisions = (project.project_dir / "decisions.md").read_bytes()
    assert decisions.startswith(decisions_before)
    added = decisions[len(decisions_before) :].decode("utf-8")
    kept = versions.list_versions(project, SEGMENTS)
    if survives:
        [version] = kept
        assert version.data() == document == (project.project_dir / SEGMENTS.gate).read_bytes()
        assert version.intact and version.origin == "agreement"
        assert version.agreed_by == "Test Consultant (consultant)"
        assert version.decision in added and added.count("\n## ") == 1
        assert added.count(gate.digest(document)) == 1
    else:
        assert kept == [] and added == ""
        assert not (project.project_dir / SEGMENTS.gate).exists()
    kept_files = {"versions/brief/v1.json", "versions/brief/v1.md"}
    if survives:
        kept_files |= {"versions/segments/v1.json", "versions/segments/v1.md"}
    assert {name for name in files(project) if name.startswith("versions/")} == kept_files
    # No half-written file is left in the engagement (runner state keeps its own until the
    # next lock: a note that was never renamed in says nothing).
    assert not [n for n in files(project) if n.endswith(".tmp") and not n.startswith(".bmc/")]
    assert not (project.state_dir / gate.INTENT).exists()

    after = snapshot(project.workspace, exclude=[STATE])
    again = run_bmc(["status", *project_args(project)])
    assert "Repaired" not in again.output
    assert snapshot(project.workspace, exclude=[STATE]) == after


def test_a_re_agreement_killed_before_its_version_is_whole_is_completed_with_its_changes(
    tmp_path: Path,
) -> None:
    project = segments_ready(tmp_path)
    assert run_bmc(["agree", "segments", *project_args(project)], input="yes\n").exit_code == 0
    path = project.project_dir / SEGMENTS.document
    path.write_text(path.read_text("utf-8").replace("by 2029.", "by 2029. Soon."), "utf-8")

    killed_agree(project, "version-meta-written:1")
    run_bmc(["status", *project_args(project)])

    _one, two = versions.list_versions(project, SEGMENTS)
    assert two.data() == path.read_bytes() and two.changes == ["1 section changed"]
    decisions = (project.project_dir / "decisions.md").read_text("utf-8")
    assert decisions.count("**Changed since version 1**: 1 section changed") == 1
    assert decisions.count(two.digest) == 1


def test_a_sidecar_left_by_a_kill_before_the_gate_matched_is_dropped(tmp_path: Path) -> None:
    project = segments_ready(tmp_path)
    killed_agree(project, "version-meta-written:1")
    # Before the next command, a person puts back the gate from git: it no longer matches
    # the interrupted agreement, so nothing of it may be completed.
    (project.project_dir / SEGMENTS.gate).unlink()

    run_bmc(["status", *project_args(project)])

    assert versions.list_versions(project, SEGMENTS) == []
    assert not (project.project_dir / "versions/segments/v1.json").exists()
