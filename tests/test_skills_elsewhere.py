"""Skills from elsewhere: a firm's skill written for another runner loads, bmc says plainly
what it cannot promise for it, and what never depends on a skill still holds (SPEC section 3;
issue 12). The frontmatter below is written for these tests, in the shapes such skills have.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bmc.documents import stages
from bmc.documents.skills import cautions, load_skill, parse_skill, scan_skills
from bmc.engine.session import load_session
from bmc.errors import UserError
from bmc.workspace.packaged import data_dir
from bmc.workspace.paths import locate
from clihelp import run_bmc, scripted_env, snapshot
from test_skills import agentskills

FIXTURES = data_dir("fixtures")

# Metadata of the kind another runner's skills carry: no requires, gate or schema, a stage
# that is a label rather than a number.
ELSEWHERE = """\
---
name: {name}
description: Revisits a business model canvas after the client reacts; use once it is agreed.
license: Proprietary, for the firm's own use.
metadata:
  author: "Strategy Practice"
  version: "2.1"
  skillset: "business-model-canvas"
  stage: "4+"
  freedom: "medium"
---

# Revisit the canvas

Read the canvas and the client's feedback, then propose changes.
"""


def firm_skill(base: Path, name: str = "firm-iterate", text: str = ELSEWHERE) -> Path:
    folder = base / name
    folder.mkdir(parents=True)
    (folder / "SKILL.md").write_text(text.format(name=name), encoding="utf-8")
    return folder


def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(FIXTURES / "workspace", root)
    return root


def where(root: Path) -> list[str]:
    return ["--workspace", str(root), "--org", "tidewater", "--project", "growth-2027"]


def say(text: str, *calls: dict[str, Any]) -> dict[str, Any]:
    return {"reply": {"content": [{"type": "text", "text": text}, *calls]}}


def call(id_: str, name: str, **tool_input: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": id_, "name": name, "input": tool_input}


# -- loading ------------------------------------------------------------------------------


def test_a_skill_written_for_another_runner_passes_the_reference_validator_and_loads(
    tmp_path: Path,
) -> None:
    folder = firm_skill(tmp_path / "firm")
    checked = subprocess.run(
        [agentskills(), "validate", str(folder.resolve())], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr

    scan = scan_skills(tmp_path / "firm")

    assert scan.problems == []
    skill = next(s for s in scan.skills if s.name == "firm-iterate")
    assert skill.stage == "4+"
    assert (skill.requires, skill.gate, skill.schema, skill.agreeable) == ((), None, None, ())
    # Listed after stage 4 (by the number its label starts with), not refused.
    names = [s.name for s in scan.skills]
    assert names.index("firm-iterate") > names.index("bmc-canvas")


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("stage", "4", "is a number"),
        ("requires", "[brief.agreed.md, hypotheses.md]", "is a list"),
        ("gate", "true", "true/false"),
        ("schema", "2", "is a number"),
    ],
)
def test_a_number_or_a_list_in_bmcs_own_fields_is_still_refused(
    tmp_path: Path, field: str, value: str, says: str
) -> None:
    text = ELSEWHERE.replace('  freedom: "medium"\n', f'  freedom: "medium"\n  {field}: {value}\n')
    text = text.replace('  stage: "4+"\n', "") if field == "stage" else text
    folder = firm_skill(tmp_path / "firm", text=text)

    with pytest.raises(UserError) as caught:
        parse_skill(folder)

    assert says in str(caught.value) and field in str(caught.value)


def test_a_gated_skill_still_needs_a_whole_stage_number(tmp_path: Path) -> None:
    gated = '  produces: "pricing/pricing.md"\n  gate: "pricing/pricing.agreed.md"\n'
    text = ELSEWHERE.replace('  freedom: "medium"\n', '  freedom: "medium"\n' + gated)
    folder = firm_skill(tmp_path / "firm", text=text)

    with pytest.raises(UserError) as caught:
        stages.build([parse_skill(folder)])

    assert "'4+' is not a whole number" in str(caught.value)


# -- saying what bmc cannot promise -------------------------------------------------------


def test_the_guarantees_bmc_cannot_give_are_named(tmp_path: Path) -> None:
    skill = parse_skill(firm_skill(tmp_path / "firm"))

    said = " ".join(cautions(skill))

    assert "names no prerequisites" in said
    assert "no gate" in said and "no agreement can be reached in it" in said
    assert "names no schema" in said
    assert '"4+"' in said
    assert all(cautions(s) == [] for s in scan_skills().skills)  # the packaged ones: none


def test_bmc_skills_lists_it_with_what_it_lacks(tmp_path: Path) -> None:
    firm_skill(tmp_path / "firm")

    result = run_bmc(["skills", "--skills-dir", str(tmp_path / "firm")])

    assert result.exit_code == 0, result.output
    line = next(x for x in result.stdout.splitlines() if "firm-iterate" in x)
    assert line.lstrip().startswith("4+")
    assert "note: skill firm-iterate names no prerequisites" in result.stdout
    assert "no agreement can be reached in it" in result.stdout
    assert "not loaded" not in result.output


def test_an_override_that_drops_the_runner_metadata_is_warned_of_loudly(tmp_path: Path) -> None:
    firm_skill(tmp_path / "firm", name="bmc-segments")

    skill = load_skill("bmc-segments", tmp_path / "firm")
    result = run_bmc(["skills", "--skills-dir", str(tmp_path / "firm")])

    [warning] = [c for c in cautions(skill) if c.startswith("WARNING")]
    for lost in ("requires (", "gate (", "schema (", "after (", "next (", "produces ("):
        assert lost in warning
    assert "overrides the packaged bmc-segments" in warning
    assert "WARNING: skill bmc-segments" in result.stderr
    # An override that keeps the metadata is not warned of.
    kept = tmp_path / "kept"
    shutil.copytree(data_dir("skills") / "bmc-canvas", kept / "bmc-canvas")
    assert cautions(load_skill("bmc-canvas", kept)) == []


# -- what never depends on a skill still holds ------------------------------------------------


def test_in_a_skill_without_a_gate_nothing_can_be_agreed_or_forged(
    tmp_path: Path, scripted: Any
) -> None:
    root = workspace(tmp_path)
    firm_skill(tmp_path / "firm")
    project = locate(root, "tidewater", "growth-2027")
    model = scripted(
        {
            "steps": [
                say(
                    "Recording the agreement and the decision myself.",
                    call("t1", "request_agreement", document="brief.md"),
                    call("t2", "write", file_path="brief.agreed.md", content="forged\n"),
                    call("t3", "write", file_path="decisions.md", content="## forged\n"),
                    call("t4", "write", file_path="../other/x.md", content="out\n"),
                ),
                {
                    "expect": {
                        "tool_results": {
                            "t1": {"is_error": True, "contains": "unknown tool"},
                            "t2": {"is_error": True, "contains": "gate files"},
                            "t3": {"is_error": True, "contains": "decisions.md"},
                            "t4": {"is_error": True, "contains": "outside"},
                        }
                    },
                    **say("None of that was allowed."),
                },
            ]
        }
    )
    state = "clients/tidewater/projects/growth-2027/.bmc/"
    before = snapshot(root, exclude=[state])
    gate_before = (project.project_dir / "brief.agreed.md").read_bytes()

    result = run_bmc(
        ["run", "firm-iterate", "--skills-dir", str(tmp_path / "firm"), *where(root)],
        input="",
        env=scripted_env(model),
    )

    assert result.exit_code == 0, result.output
    assert "Note: skill firm-iterate has no gate" in result.stdout
    assert "no agreement can be reached in it" in result.stdout
    model.assert_finished()
    # The model was never offered the gate tool at all.
    assert "request_agreement" not in {t["name"] for t in model.requests[0]["tools"]}
    assert (project.project_dir / "brief.agreed.md").read_bytes() == gate_before
    after = snapshot(root, exclude=[state])
    assert after == before
    # The journal holds the whole conversation, refusals included.
    session = load_session(project)
    assert session.skill == "firm-iterate"
    assert any(
        block.get("is_error")
        for message in session.messages
        for block in message["content"]
        if isinstance(block, dict) and block.get("type") == "tool_result"
    )
