"""Versions of what was agreed: written by every agreement (`bmc agree`, the model's
request_agreement through the scripted model), read by `bmc history` and `bmc diff`, named in
the decisions entry of a re-agreement and in `bmc status`; agreements made before versions
existed become version 1 once."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bmc.documents import gate, versions
from bmc.documents.stages import packaged
from bmc.scripted import ScriptedModel
from bmc.workspace.paths import Project
from clihelp import project_args, run_bmc, scripted_env, snapshot
from projects import segments_ready

SEGMENTS = packaged()["segments"]
BRIEF = packaged()["brief"]
OVERVIEW_END = "The engagement looks for £3.0m a year of new non-contract revenue by 2029."


def bmc(project: Project, *args: str, input: str | None = None, **env: str) -> Any:
    return run_bmc([*args, *project_args(project)], input=input, env=env or None)


def table_rows(printed: str) -> list[list[str]]:
    """The cells of a rich table as printed, a cell folded over several lines joined again
    (rows are separated by the line above each: a new row starts where column 1 has text)."""
    rows: list[list[str]] = []
    for line in printed.splitlines():
        if not line.startswith("│"):
            continue
        cells = [c.strip() for c in line.strip("│").split("│")]
        if cells[0] or not rows:
            rows.append(cells)
        else:
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
    return rows


@pytest.fixture
def ready(tmp_path: Path) -> Project:
    return segments_ready(tmp_path)


def revise_overview(project: Project) -> None:
    path = project.project_dir / "segments/segments.md"
    text = path.read_text("utf-8")
    assert OVERVIEW_END in text
    path.write_text(text.replace(OVERVIEW_END, OVERVIEW_END + " Speed matters."), "utf-8")


def test_each_agreement_keeps_a_numbered_version_and_the_re_agreement_says_what_changed(
    ready: Project,
) -> None:
    first = bmc(ready, "agree", "segments", input="yes, Fiona Galbraith\n")
    assert first.exit_code == 0, first.output
    agreed_once = (ready.project_dir / "segments/segments.md").read_bytes()
    revise_overview(ready)
    second = bmc(ready, "agree", "segments", input="yes\n")
    assert second.exit_code == 0, second.output

    one, two = versions.list_versions(ready, SEGMENTS)
    assert (one.number, two.number) == (1, 2)
    assert one.data() == agreed_once
    assert two.data() == (ready.project_dir / SEGMENTS.gate).read_bytes()
    assert one.digest == gate.digest(agreed_once) and one.intact
    assert one.agreed_by == "Test Consultant (consultant); Fiona Galbraith (client)"
    assert one.decision.endswith("Stage 2: Customer segments agreed")
    assert two.decision.endswith("Stage 2: Customer segments re-agreed")
    assert len(two.time) == 5 and two.date == one.date
    assert two.changes == ["1 section changed"]
    # The files themselves: the exact bytes, a sidecar, and no name a gate could have.
    folder = ready.project_dir / "versions" / "segments"
    assert sorted(p.name for p in folder.iterdir()) == ["v1.json", "v1.md", "v2.json", "v2.md"]
    assert json.loads((folder / "v2.json").read_text("utf-8"))["digest"] == two.digest

    decisions = (ready.project_dir / "decisions.md").read_text("utf-8")
    entry = decisions.split("## ")[-1]
    assert "**Changed since version 1**: 1 section changed\n" in entry
    assert decisions.count("**Changed since version") == 1  # not in the first agreement's


def test_history_lists_every_version_with_its_decisions_entry(ready: Project) -> None:
    bmc(ready, "agree", "segments", input="yes\n")
    revise_overview(ready)
    bmc(ready, "agree", "segments", input="yes\n")

    shown = bmc(ready, "history")
    assert shown.exit_code == 0, shown.output
    rows = table_rows(shown.stdout)
    assert [(r[0], r[1]) for r in rows] == [("brief", "1"), ("segments", "1"), ("segments", "2")]
    assert rows[0][3] == "Priya Raman (consultant); Fiona Galbraith, Commercial Director (client)"
    assert rows[0][5] == (
        "2027-01-12 — Stage 1: Engagement brief agreed (kept from an earlier agreement)"
    )
    assert rows[2][5].endswith("Stage 2: Customer segments re-agreed")
    assert rows[2][4] == versions.latest(ready, SEGMENTS).digest  # type: ignore[union-attr]

    as_json = json.loads(bmc(ready, "history", "segments", "--json").stdout)
    assert [(v["stage"], v["number"]) for v in as_json] == [("segments", 1), ("segments", 2)]
    assert as_json[1]["path"] == "versions/segments/v2.md"
    assert as_json[1]["changes"] == ["1 section changed"]
    assert as_json[0]["agreed_by"] == "Test Consultant (consultant)"


def test_diff_compares_versions_and_the_working_document(ready: Project) -> None:
    bmc(ready, "agree", "segments", input="yes\n")
    revise_overview(ready)

    working = bmc(ready, "diff", "segments")
    assert working.exit_code == 0, working.output
    assert working.stdout.splitlines() == [
        "segments: from version 1 to the working segments/segments.md",
        "- Overview: rewritten.",
    ]
    bmc(ready, "agree", "segments", input="yes\n")
    between = json.loads(bmc(ready, "diff", "segments", "1", "v2", "--json").stdout)
    assert between["from"] == "version 1" and between["to"] == "version 2"
    [change] = between["changes"]
    assert change["kind"] == "section-changed" and change["new"].endswith("Speed matters.")
    same = bmc(ready, "diff", "segments", "2")
    assert same.stdout.splitlines()[-1] == "No changes: both hold the same bytes."


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["diff", "segment"], "unknown stage 'segment': choose one of brief, segments, canvas."),
        (["diff", "canvas"], "the canvas stage has no agreed version yet"),
        (["diff", "brief", "7"], "the brief stage has no version 7: it has versions 1."),
        (["diff", "brief", "latest"], "'latest' is not a version: give a number"),
        (["diff", "canvas", "working"], "canvas/canvas.md does not exist"),
        (["history", "segment"], "unknown stage 'segment'"),
    ],
)
def test_bad_input_gets_one_sentence_and_exit_1(ready: Project, args: list[str], says: str) -> None:
    before = snapshot(ready.workspace)
    done = bmc(ready, *args)
    assert done.exit_code == 1
    assert says in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert snapshot(ready.workspace) == before


def test_status_says_changed_since_agreed_with_what_changed(ready: Project) -> None:
    bmc(ready, "agree", "segments", input="yes\n")
    revise_overview(ready)

    report = json.loads(bmc(ready, "status", "--json").stdout)

    [segments] = [s for s in report["stages"] if s["key"] == "segments"]
    assert segments["state"] == "stale"
    assert segments["detail"] == "changed since agreed (version 1): 1 section changed"


def test_the_models_request_agreement_keeps_a_version(
    ready: Project, scripted: Callable[..., ScriptedModel]
) -> None:
    ask = {
        "type": "tool_use",
        "id": "toolu_v1",
        "name": "request_agreement",
        "input": {"document": "segments/segments.md", "scope_notes": "Five segments."},
    }
    model = scripted(
        {
            "steps": [
                {"reply": {"content": [ask]}},
                {
                    "expect": {"tool_results": {"toolu_v1": {"contains": "agreed"}}},
                    "reply": {"content": [{"type": "text", "text": "Agreed; on to the canvas."}]},
                },
            ]
        }
    )

    done = bmc(ready, "run", "bmc-segments", input="yes\n", **scripted_env(model))

    assert done.exit_code == 0, done.output
    model.assert_finished()
    [version] = versions.list_versions(ready, SEGMENTS)
    assert version.data() == (ready.project_dir / SEGMENTS.gate).read_bytes()
    assert version.scope == "Five segments." and version.origin == "agreement"


def test_an_agreement_made_before_versions_becomes_version_1_once(ready: Project) -> None:
    shutil.rmtree(ready.project_dir / "versions")  # as every project agreed before this
    bmc(ready, "agree", "segments", input="yes\n")  # made by this bmc: kept as version 1
    shutil.rmtree(ready.project_dir / "versions" / "brief")

    first = bmc(ready, "status")

    assert first.exit_code == 0
    assert "Repaired: the engagement brief agreement of 2027-01-12 was kept as version 1" in (
        " ".join(first.stderr.split())
    )
    [brief] = versions.list_versions(ready, BRIEF)
    assert brief.data() == (ready.project_dir / BRIEF.gate).read_bytes()
    assert (brief.date, brief.time, brief.origin) == ("2027-01-12", "", "earlier agreement")
    assert brief.agreed_by == (
        "Priya Raman (consultant); Fiona Galbraith, Commercial Director (client)"
    )
    assert brief.decision == "2027-01-12 — Stage 1: Engagement brief agreed"
    assert [v.number for v in versions.list_versions(ready, SEGMENTS)] == [1]
    after_first = snapshot(
        ready.workspace, exclude=[".bmc/", "clients/tidewater/projects/growth-2027/.bmc/"]
    )

    second = bmc(ready, "status")

    assert "Repaired" not in second.output
    assert snapshot(ready.workspace, exclude=["clients/tidewater/projects/growth-2027/.bmc/"]) == (
        after_first
    )


def test_a_gate_with_no_decisions_entry_is_kept_with_who_unknown(ready: Project) -> None:
    shutil.rmtree(ready.project_dir / "versions")
    (ready.project_dir / "decisions.md").unlink()

    bmc(ready, "status")

    [brief] = versions.list_versions(ready, BRIEF)
    assert brief.agreed_by == "unknown (no decisions.md entry)" and brief.decision == ""
    assert "none found" in bmc(ready, "history", "brief").stdout


def test_a_version_altered_by_hand_is_shown_as_such(ready: Project) -> None:
    path = ready.project_dir / "versions" / "brief" / "v1.md"
    path.write_bytes(path.read_bytes() + b"\nedited\n")

    [brief] = versions.list_versions(ready, BRIEF)

    assert not brief.intact
    assert "no longer matches" in " ".join(bmc(ready, "history", "brief").stdout.split())
