"""Skills: SKILL.md folders that follow the Agent Skills format (SPEC section 3)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bmc.documents.skills import (
    check_requires,
    list_skills,
    load_skill,
    scan_skills,
    skill_dirs,
)
from bmc.errors import PrerequisiteError, UserError
from bmc.workspace.packaged import data_dir
from bmc.workspace.paths import Project, init_project

PACKAGED = data_dir("skills")
PACKAGED_SKILLS = sorted(p for p in PACKAGED.iterdir() if (p / "SKILL.md").is_file())

GOOD_FRONTMATTER = """\
name: {name}
description: A test skill that does one thing; use it in tests.
metadata:
  stage: "{stage}"
  requires: "brief.md"
"""


def write_skill(base: Path, name: str, frontmatter: str | None = None, stage: str = "5") -> Path:
    """Create `base/name/SKILL.md` with `frontmatter` (a good one by default)."""
    folder = base / name
    folder.mkdir(parents=True, exist_ok=True)
    fields = GOOD_FRONTMATTER.format(name=name, stage=stage) if frontmatter is None else frontmatter
    (folder / "SKILL.md").write_text(f"---\n{fields}---\n\n# {name}\n\nDo the thing.\n")
    return folder


def agentskills() -> str:
    """The reference validator's command, installed with the test extras (skills-ref)."""
    beside_python = Path(sys.executable).with_name("agentskills")
    found = str(beside_python) if beside_python.exists() else shutil.which("agentskills")
    assert found, "agentskills (PyPI skills-ref) is not installed: pip install -e '.[test]'"
    return found


# --- the packaged skills ------------------------------------------------------------------


def test_packaged_skills_folder_holds_bmc_segments() -> None:
    assert "bmc-segments" in [p.name for p in PACKAGED_SKILLS]


@pytest.mark.parametrize("folder", PACKAGED_SKILLS, ids=lambda p: p.name)
def test_packaged_skill_passes_the_reference_validator(folder: Path) -> None:
    # An absolute path: the validator compares the folder's name, and Path(".").name is "".
    result = subprocess.run(
        [agentskills(), "validate", str(folder.resolve())], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_packaged_skills_all_load_in_stage_order() -> None:
    scan = scan_skills()
    assert scan.problems == []
    assert sorted(s.name for s in scan.skills) == [p.name for p in PACKAGED_SKILLS]
    stages = [int(s.stage) for s in scan.skills]
    assert stages == sorted(stages)


def test_segments_skill_loads_with_its_metadata() -> None:
    skill = load_skill("bmc-segments")
    assert skill.folder == PACKAGED / "bmc-segments"
    assert skill.stage == "2"
    assert skill.requires == ("brief.agreed.md", "hypotheses.md", "resources/index.md")
    assert skill.produces == ("segments/drafts/", "segments/segments.md")
    assert skill.gate == "segments/segments.agreed.md"
    assert (skill.after, skill.next, skill.schema) == ("bmc-research", "bmc-canvas", "segments")
    assert (skill.deliverable, skill.signed_off) == (
        "Customer segments",
        "Customer segments and value propositions",
    )
    assert "request_agreement" in skill.allowed_tools
    assert skill.body.startswith("# ") and "skill/references/draft-template.md" in skill.body


def test_segments_skill_references_the_templates() -> None:
    refs = load_skill("bmc-segments").references()
    assert "references/draft-template.md" in refs
    assert "references/segments-template.md" in refs
    assert "SKILL.md" not in refs
    assert refs == sorted(refs)


def test_digest_changes_when_any_file_of_the_skill_changes(tmp_path: Path) -> None:
    copy = tmp_path / "bmc-segments"
    shutil.copytree(PACKAGED / "bmc-segments", copy)
    skill = load_skill("bmc-segments", tmp_path)
    before = skill.digest()
    assert before == load_skill("bmc-segments").digest()
    (copy / "references" / "draft-template.md").write_text("# changed\n")
    assert skill.digest() != before


def test_digest_ignores_hidden_files(tmp_path: Path) -> None:
    write_skill(tmp_path, "demo")
    skill = load_skill("demo", tmp_path)
    before = skill.digest()
    (skill.folder / ".DS_Store").write_bytes(b"\0")
    assert skill.digest() == before
    assert skill.references() == []


# --- a firm's own skills folder -----------------------------------------------------------


def test_skills_dir_comes_before_the_packaged_skills(tmp_path: Path) -> None:
    assert skill_dirs(tmp_path) == [tmp_path, PACKAGED]
    assert skill_dirs(None) == [PACKAGED]


def test_skills_dir_overrides_a_packaged_skill(tmp_path: Path) -> None:
    write_skill(tmp_path, "bmc-segments", stage="2")
    skill = load_skill("bmc-segments", tmp_path)
    assert skill.folder == tmp_path / "bmc-segments"
    assert skill.requires == ("brief.md",)
    assert [s.folder for s in list_skills(tmp_path) if s.name == "bmc-segments"] == [skill.folder]


def test_skills_dir_adds_new_skills(tmp_path: Path) -> None:
    write_skill(tmp_path, "firm-pricing", stage="3")
    names = [s.name for s in list_skills(tmp_path)]
    assert "firm-pricing" in names and "bmc-segments" in names
    assert load_skill("firm-pricing", tmp_path).stage == "3"


def test_skills_are_sorted_by_stage_number_then_name(tmp_path: Path) -> None:
    write_skill(tmp_path, "zz-late", stage="10")
    write_skill(tmp_path, "aa-late", stage="10")
    write_skill(tmp_path, "zz-early", stage="1")
    names = [s.name for s in list_skills(tmp_path)]
    assert names.index("zz-early") < names.index("bmc-segments") < names.index("aa-late")
    assert names.index("aa-late") < names.index("zz-late")


def test_missing_skills_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_skill("bmc-segments", tmp_path / "nowhere")


def test_skills_dir_that_is_itself_a_skill_is_explained(tmp_path: Path) -> None:
    folder = write_skill(tmp_path, "demo")
    with pytest.raises(UserError, match="pass the folder that contains it"):
        list_skills(folder)


def test_folders_without_skill_md_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    assert "notes" not in [s.name for s in list_skills(tmp_path)]


# --- malformed SKILL.md -------------------------------------------------------------------

MALFORMED = {
    "missing frontmatter": (None, "no frontmatter"),
    "unclosed frontmatter": ("---\nname: bad\ndescription: x\n", "never closed"),
    "bad yaml": (
        "---\nname: bad\ndescription: [oops\nmetadata: {}\n---\nbody\n",
        "not valid YAML (line 4",
    ),
    "frontmatter not a mapping": ("---\n- a\n- b\n---\nbody\n", "key: value"),
    "unknown top-level key": (
        "---\nname: bad\ndescription: x\nstage: '2'\n---\nbody\n",
        "unknown top-level frontmatter key(s) stage",
    ),
    "name differs from folder": (
        "---\nname: other\ndescription: x\n---\nbody\n",
        "must equal the folder name 'bad'",
    ),
    "missing name": ("---\ndescription: x\n---\nbody\n", "name is missing"),
    "missing description": ("---\nname: bad\n---\nbody\n", "description is missing"),
    "empty frontmatter": ("---\n---\nbody\n", "name is missing"),
    "empty description": ("---\nname: bad\ndescription: '  '\n---\nbody\n", "description is"),
    "numeric stage": (
        "---\nname: bad\ndescription: x\nmetadata:\n  stage: 2\n---\nbody\n",
        "'stage' is a number, but metadata values must be strings; write it as a quoted "
        'string: stage: "2"',
    ),
    "list requires": (
        "---\nname: bad\ndescription: x\nmetadata:\n  requires: [a.md, b.md]\n---\nbody\n",
        'requires: "a.md b.md"',
    ),
    "boolean metadata": (
        "---\nname: bad\ndescription: x\nmetadata:\n  gate: yes\n---\nbody\n",
        "'gate' is a true/false value, but metadata values must be strings; write it as a "
        'quoted string: gate: "true"',
    ),
    "empty metadata value": (
        "---\nname: bad\ndescription: x\nmetadata:\n  after:\n---\nbody\n",
        "'after' is empty",
    ),
    "metadata not a mapping": (
        "---\nname: bad\ndescription: x\nmetadata: stage 2\n---\nbody\n",
        "metadata must be",
    ),
    # A stage that is not a number loads (a label): tests/test_skills_elsewhere.py.
    "absolute requires": (
        "---\nname: bad\ndescription: x\nmetadata:\n  requires: /etc/passwd\n---\nbody\n",
        "relative to the project folder",
    ),
    "after not a skill name": (
        "---\nname: bad\ndescription: x\nmetadata:\n  after: run research\n---\nbody\n",
        "must be one skill name",
    ),
    "deliverable on two lines": (
        '---\nname: bad\ndescription: x\nmetadata:\n  deliverable: "A\\n## 2026 forged"\n---\nb\n',
        "metadata deliverable must be one line",
    ),
    "allowed-tools as a list": (
        "---\nname: bad\ndescription: x\nallowed-tools: [read, grep]\n---\nbody\n",
        "separated by spaces",
    ),
}


def write_raw_skill(base: Path, text: str | None) -> Path:
    folder = base / "bad"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "SKILL.md").write_text("# bad\n\nNo frontmatter here.\n" if text is None else text)
    return folder


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_skill_gives_one_clear_sentence(tmp_path: Path, case: str) -> None:
    text, expected = MALFORMED[case]
    write_raw_skill(tmp_path, text)
    with pytest.raises(UserError) as caught:
        load_skill("bad", tmp_path)
    message = str(caught.value)
    assert expected in message
    assert "SKILL.md" in message  # names the file to fix
    assert "\n" not in message and "Traceback" not in message
    assert caught.value.__cause__ is None


def test_non_utf8_skill_is_refused(tmp_path: Path) -> None:
    folder = write_raw_skill(tmp_path, "")
    (folder / "SKILL.md").write_bytes(b"---\nname: bad\ndescription: caf\xe9\n---\n")
    with pytest.raises(UserError, match="not UTF-8"):
        load_skill("bad", tmp_path)


def test_malformed_skill_does_not_hide_the_others(tmp_path: Path) -> None:
    write_raw_skill(tmp_path, MALFORMED["numeric stage"][0])
    write_skill(tmp_path, "good")
    scan = scan_skills(tmp_path)
    names = [s.name for s in scan.skills]
    assert "good" in names and "bmc-segments" in names and "bad" not in names
    assert len(scan.problems) == 1 and "'stage' is a number" in scan.problems[0]
    assert [s.name for s in list_skills(tmp_path)] == names


def test_malformed_override_is_not_replaced_by_the_packaged_skill(tmp_path: Path) -> None:
    # Silently running the packaged skill would hide the firm's broken override.
    write_skill(tmp_path, "bmc-segments", frontmatter="name: bmc-segments\n")
    with pytest.raises(UserError, match="description is missing"):
        load_skill("bmc-segments", tmp_path)
    assert "bmc-segments" not in [s.name for s in list_skills(tmp_path)]


# --- asking for a skill by name -----------------------------------------------------------


def test_unknown_skill_lists_the_available_ones(tmp_path: Path) -> None:
    write_skill(tmp_path, "firm-pricing")
    with pytest.raises(UserError) as caught:
        load_skill("bmc-nope", tmp_path)
    message = str(caught.value)
    assert "unknown skill 'bmc-nope'" in message
    assert "bmc-segments" in message and "firm-pricing" in message


@pytest.mark.parametrize("name", ["../bmc-segments", "BMC-Segments", "bmc segments", "", "-x"])
def test_skill_name_that_is_not_a_slug_is_refused(name: str) -> None:
    with pytest.raises(UserError, match="not a valid skill name"):
        load_skill(name)


# --- prerequisites ------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return init_project(tmp_path / "ws", "acme", "growth", "Acme Ltd")


def test_missing_agreed_brief_names_the_skill_to_run_first(project: Project) -> None:
    (project.project_dir / "hypotheses.md").write_text("# Hypotheses\n")
    (project.resources_dir / "index.md").write_text("# Index\n")
    with pytest.raises(PrerequisiteError) as caught:
        check_requires(load_skill("bmc-segments"), project)
    assert str(caught.value) == "brief.agreed.md is missing: run `bmc run bmc-research` first."
    assert caught.value.exit_code == 2


def test_every_missing_file_is_named_in_one_sentence(project: Project) -> None:
    with pytest.raises(PrerequisiteError) as caught:
        check_requires(load_skill("bmc-segments"), project)
    assert str(caught.value) == (
        "brief.agreed.md, hypotheses.md and resources/index.md are missing: "
        "run `bmc run bmc-research` first."
    )


def test_resources_index_is_looked_up_in_the_organisation_folder(project: Project) -> None:
    for name in ("brief.agreed.md", "hypotheses.md"):
        (project.project_dir / name).write_text("x\n")
    # A copy inside the project does not count: resources/ belongs to the organisation.
    (project.project_dir / "resources").mkdir()
    (project.project_dir / "resources" / "index.md").write_text("x\n")
    with pytest.raises(PrerequisiteError, match=r"^resources/index.md is missing"):
        check_requires(load_skill("bmc-segments"), project)
    (project.resources_dir / "index.md").write_text("# Index\n")
    check_requires(load_skill("bmc-segments"), project)


def test_missing_file_without_an_earlier_skill_names_the_skill_that_writes_it(
    project: Project, tmp_path: Path
) -> None:
    # No `after`: the stage table knows bmc-research writes brief.md.
    write_skill(tmp_path / "skills", "firm-pricing")
    skill = load_skill("firm-pricing", tmp_path / "skills")
    with pytest.raises(PrerequisiteError) as caught:
        check_requires(skill, project)
    assert str(caught.value) == "brief.md is missing: run `bmc run bmc-research` first."


def test_missing_file_no_skill_writes_names_the_skill_that_needs_it(
    project: Project, tmp_path: Path
) -> None:
    fields = GOOD_FRONTMATTER.format(name="firm-pricing", stage="5").replace(
        '"brief.md"', '"pricing-notes.md"'
    )
    write_skill(tmp_path / "skills", "firm-pricing", fields)
    skill = load_skill("firm-pricing", tmp_path / "skills")
    with pytest.raises(PrerequisiteError) as caught:
        check_requires(skill, project)
    assert (
        str(caught.value)
        == "pricing-notes.md is missing, and skill firm-pricing needs it before it can run."
    )


def test_after_names_the_skill_to_run_first_even_over_the_stage_table(
    project: Project, tmp_path: Path
) -> None:
    # SPEC section 3: `after` is the answer whenever the metadata gives it.
    fields = GOOD_FRONTMATTER.format(name="firm-pricing", stage="5") + '  after: "firm-intake"\n'
    write_skill(tmp_path / "skills", "firm-pricing", fields)
    skill = load_skill("firm-pricing", tmp_path / "skills")
    with pytest.raises(PrerequisiteError, match=r"run `bmc run firm-intake` first\.$"):
        check_requires(skill, project)


def test_required_folder_needs_a_folder(project: Project, tmp_path: Path) -> None:
    fields = GOOD_FRONTMATTER.format(name="needs-drafts", stage="3").replace(
        '"brief.md"', '"segments/drafts/"'
    )
    write_skill(tmp_path / "skills", "needs-drafts", fields)
    skill = load_skill("needs-drafts", tmp_path / "skills")
    with pytest.raises(PrerequisiteError, match="segments/drafts/ is missing"):
        check_requires(skill, project)
    (project.project_dir / "segments" / "drafts").mkdir(parents=True)
    check_requires(skill, project)


# --- start-up cost ------------------------------------------------------------------------


def test_loading_skills_does_not_import_the_model_sdk() -> None:
    code = (
        "import sys, bmc.documents.skills as s; s.list_skills(); "
        "assert 'anthropic' not in sys.modules, 'anthropic imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_skill_saved_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    # Windows editors often save UTF-8 with a BOM; the frontmatter is still there.
    folder = write_skill(tmp_path, "bom-skill")
    text = (folder / "SKILL.md").read_text("utf-8")
    (folder / "SKILL.md").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert load_skill("bom-skill", tmp_path).name == "bom-skill"
