"""The stage table: built from the skills' metadata, read by every module (bmc.documents.stages)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bmc.documents import gate, render, stages, status, validate
from bmc.documents.skills import list_skills
from bmc.documents.stages import Stage, StageTable, build, packaged, table
from bmc.errors import UserError
from bmc.workspace.packaged import data_dir

PACKAGED = data_dir("skills")


def metadata(folder: Path) -> tuple[str, dict[str, str]]:
    """A SKILL.md's name and metadata, read with plain YAML rather than bmc's loader."""
    text = (folder / "SKILL.md").read_text("utf-8")
    fields = yaml.safe_load(text.split("---\n")[1])
    return fields["name"], fields.get("metadata", {})


def table_of(skills_dir: Path) -> StageTable:
    """A fresh table of `skills_dir` (the cached `table()` would keep an earlier build)."""
    return StageTable(lambda: list_skills(skills_dir))


def copy_packaged(tmp_path: Path) -> Path:
    target = tmp_path / "skills"
    shutil.copytree(PACKAGED, target)
    return target


def edit_metadata(skills_dir: Path, skill: str, old: str, new: str) -> None:
    path = skills_dir / skill / "SKILL.md"
    text = path.read_text("utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), "utf-8")


def add_skill(skills_dir: Path, name: str, meta: str) -> None:
    folder = skills_dir / name
    folder.mkdir(parents=True)
    (folder / "SKILL.md").write_text(
        f"---\nname: {name}\ndescription: A firm's own stage; use it in tests.\n"
        f"metadata:\n{meta}---\n\n# {name}\n",
        "utf-8",
    )


# --- the packaged chain ---------------------------------------------------------------------


def test_table_says_what_the_skill_files_say() -> None:
    table = packaged()
    gated = {}
    for folder in sorted(PACKAGED.iterdir()):
        name, meta = metadata(folder)
        if "gate" in meta:
            gated[name] = meta
    assert sorted(s.skill for s in table.values()) == sorted(gated)
    for stage in table.values():
        meta = gated[stage.skill]
        assert stage.gate == meta["gate"]
        assert stage.number == meta["stage"]
        assert stage.document in meta["produces"].split()
        assert stage.gate == stage.document.removesuffix(".md") + ".agreed.md"
        assert stage.what == meta["deliverable"]
        assert stage.signed_off == meta.get("signed-off", "")
        assert stage.next == meta.get("next")
        assert stage.schema == meta.get("schema")
        if stage.upstream is None:
            assert "after" not in meta
            continue
        # Its prerequisites are the previous gate, and `after` names that stage's skill.
        previous = table[stage.upstream]
        assert previous.gate in meta["requires"].split()
        assert meta["after"] == previous.skill
        assert previous.next == stage.skill


def test_packaged_table_is_the_chain_the_gate_always_had() -> None:
    # The values that were written out by hand in gate.py before they came from SKILL.md.
    expected = [
        ("brief", "1", "brief.md", "brief.agreed.md", "Engagement brief", None, ""),
        (
            "segments",
            "2",
            "segments/segments.md",
            "segments/segments.agreed.md",
            "Customer segments",
            "brief",
            "Customer segments and value propositions",
        ),
        (
            "canvas",
            "3",
            "canvas/canvas.md",
            "canvas/canvas.agreed.md",
            "Business model canvas",
            "segments",
            "",
        ),
    ]
    got = [
        (s.key, s.number, s.document, s.gate, s.what, s.upstream, s.signed_off)
        for s in packaged().values()
    ]
    assert got == expected
    assert [s.skill for s in packaged().values()] == ["bmc-research", "bmc-segments", "bmc-canvas"]


def test_chain_walks_both_ways() -> None:
    brief, segments, canvas = (packaged()[key] for key in ("brief", "segments", "canvas"))
    assert gate.upstream_of(canvas) == [segments, brief]
    assert gate.downstream_of(brief) == [segments, canvas]
    assert gate.downstream_of(canvas) == []
    assert gate.stage_for_document("segments/segments.md") == segments
    assert gate.stage_for_document("segments/segments.agreed.md") is None
    assert packaged().for_gate("canvas/canvas.agreed.md") == canvas
    assert gate.stage_named("canvas") == canvas
    with pytest.raises(UserError, match="choose one of brief, segments, canvas"):
        gate.stage_named("pricing")


def test_every_module_reads_the_one_table() -> None:
    segments, canvas = packaged()["segments"], packaged()["canvas"]
    assert gate.STAGES is packaged()
    assert isinstance(gate.Stage, type) and gate.Stage is Stage
    read_by_validate = (validate.SEGMENTS_DOCUMENT, validate.AGREED_SEGMENTS, validate.CANVAS)
    assert read_by_validate == (segments.document, segments.gate, canvas.document)
    assert validate.DRAFTS == "segments/drafts/*.md"
    assert (render.CANVAS_HTML, render.SEGMENTS_HTML, render.DRAFTS_DIR) == (
        "canvas/canvas.html",
        "segments/segments.html",
        "segments/drafts",
    )
    assert not hasattr(status, "SKILL_FOR")  # the skill for a stage is `Stage.skill`


def test_table_is_built_once_and_only_when_read() -> None:
    code = (
        "import sys, bmc.documents.skills as s\n"
        "calls = []\n"
        "parse = s.parse_skill\n"
        "s.parse_skill = lambda folder: (calls.append(folder), parse(folder))[1]\n"
        "import bmc.documents.stages, bmc.documents.gate\n"
        "assert calls == [], 'parsed on import'\n"
        "import bmc.documents.validate, bmc.documents.render, bmc.documents.status\n"
        "list(bmc.documents.gate.STAGES.values()); bmc.documents.stages.packaged()['canvas']\n"
        "from bmc.workspace.packaged import data_dir\n"
        "folders = [p for p in data_dir('skills').iterdir() if (p / 'SKILL.md').is_file()]\n"
        "assert len(calls) == len(set(calls)) == len(folders), calls\n"
        "assert 'anthropic' not in sys.modules, 'anthropic imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert table(None) is packaged()


# --- a firm's skills folder -----------------------------------------------------------------


def test_changed_metadata_changes_the_table(tmp_path: Path) -> None:
    skills_dir = copy_packaged(tmp_path)
    edit_metadata(skills_dir, "bmc-segments", '"Customer segments"', '"Segments and offers"')
    edit_metadata(
        skills_dir, "bmc-canvas", '"canvas/canvas.agreed.md"', '"canvas/business-model.agreed.md"'
    )
    edit_metadata(skills_dir, "bmc-canvas", '"canvas/canvas.md"', '"canvas/business-model.md"')
    firm = table_of(skills_dir)
    assert firm["segments"].what == "Segments and offers"
    assert list(firm) == ["brief", "segments", "business-model"]
    assert firm["business-model"].document == "canvas/business-model.md"
    assert firm["business-model"].upstream == "segments"
    # The packaged chain, which status, validate and render follow, is unchanged.
    assert packaged()["segments"].what == "Customer segments"
    assert list(packaged()) == ["brief", "segments", "canvas"]


def test_firm_stage_joins_the_chain_where_its_requires_say(tmp_path: Path) -> None:
    skills_dir = tmp_path / "skills"
    add_skill(
        skills_dir,
        "firm-pricing",
        '  stage: "4"\n  requires: "canvas/canvas.agreed.md"\n  produces: "pricing/pricing.md"\n'
        '  gate: "pricing/pricing.agreed.md"\n  after: "bmc-canvas"\n',
    )
    firm = table_of(skills_dir)
    pricing = firm["pricing"]
    assert (pricing.number, pricing.skill, pricing.what) == ("4", "firm-pricing", "Pricing")
    assert [s.key for s in firm.upstream_of(pricing)] == ["canvas", "segments", "brief"]
    assert [s.key for s in firm.downstream_of(firm["segments"])] == ["canvas", "pricing"]
    assert firm.producer_of(["pricing/pricing.agreed.md"]) == pricing


def test_branch_off_an_earlier_stage_goes_stale_with_it(tmp_path: Path) -> None:
    skills_dir = tmp_path / "skills"
    add_skill(
        skills_dir,
        "firm-offers",
        '  stage: "4"\n  requires: "segments/segments.agreed.md"\n'
        '  produces: "offers.md"\n  gate: "offers.agreed.md"\n',
    )
    firm = table_of(skills_dir)
    assert firm["offers"].upstream == "segments"
    assert [s.key for s in firm.downstream_of(firm["segments"])] == ["canvas", "offers"]


def test_producer_is_the_earliest_stage_writing_a_missing_file() -> None:
    assert packaged().producer_of(["resources/index.md"]).skill == "bmc-research"
    assert packaged().producer_of(["segments/drafts/x.md"]).skill == "bmc-segments"
    assert packaged().producer_of(["canvas/canvas.agreed.md", "brief.md"]).key == "brief"
    assert packaged().producer_of(["notes.md"]) is None


BROKEN = {
    "gate not a copy": (
        '  stage: "4"\n  produces: "x.md"\n  gate: "x.signed.md"\n',
        "must be the document's path ending in .agreed.md",
    ),
    "document not produced": (
        '  stage: "4"\n  produces: "y.md"\n  gate: "x.agreed.md"\n',
        "agrees x.md, which its metadata produces does not list",
    ),
    "no stage number": (
        '  produces: "x.md"\n  gate: "x.agreed.md"\n',
        'has a gate (x.agreed.md) but no stage number; add metadata stage: "<n>"',
    ),
    "number taken": (
        '  stage: "2"\n  produces: "x.md"\n  gate: "x.agreed.md"\n',
        "skills bmc-segments and firm-x both define the number 2",
    ),
    "key taken": (
        '  stage: "4"\n  produces: "other/brief.md"\n  gate: "other/brief.agreed.md"\n',
        "skills bmc-research and firm-x both define the stage brief",
    ),
    "key not a slug": (
        '  stage: "4"\n  produces: "My_Doc.md"\n  gate: "My_Doc.agreed.md"\n',
        "names the stage 'My_Doc'",
    ),
    "builds on a later stage": (
        '  stage: "4"\n  requires: "x.agreed.md"\n  produces: "x.md"\n  gate: "x.agreed.md"\n',
        "a stage can only build on an earlier one",
    ),
}


@pytest.mark.parametrize("case", BROKEN, ids=list(BROKEN))
def test_metadata_the_chain_cannot_use_is_one_sentence(tmp_path: Path, case: str) -> None:
    meta, expected = BROKEN[case]
    add_skill(tmp_path / "skills", "firm-x", meta)
    with pytest.raises(UserError) as caught:
        dict(table_of(tmp_path / "skills"))
    assert expected in str(caught.value)
    assert "firm-x" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_skills_without_a_gate_are_not_stages(tmp_path: Path) -> None:
    add_skill(tmp_path / "skills", "firm-notes", '  stage: "9"\n  produces: "notes.md"\n')
    assert list(build(list_skills(tmp_path / "skills"))) == ["brief", "segments", "canvas"]


def test_table_for_a_skill_is_its_folders(tmp_path: Path) -> None:
    add_skill(tmp_path / "skills", "firm-notes", '  stage: "9"\n  produces: "notes.md"\n')
    (firm,) = [s for s in list_skills(tmp_path / "skills") if s.name == "firm-notes"]
    (research,) = [s for s in list_skills() if s.name == "bmc-research"]
    assert stages.for_skill(research) is packaged()
    assert stages.for_skill(firm) is table(tmp_path / "skills")
