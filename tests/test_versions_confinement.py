"""The model reads the agreed versions but never writes, edits or creates anything under
`versions/`, whatever the spelling (case, `..`, trailing dots and spaces, fullwidth letters,
invisible characters, streams, absolute paths, symlinks). Every attack is tried with `write`
and `edit`; the whole tree must be byte-identical afterwards."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bmc.workspace.paths import Project, init_project
from bmc.workspace.tools import Toolbox
from clihelp import snapshot

AGREED = "# Customer Segments — Acme\n\nagreed text\n"


@pytest.fixture
def world(tmp_path: Path) -> tuple[Project, Path]:
    project = init_project(tmp_path / "ws", "acme", "growth-2027", "Acme")
    folder = project.project_dir / "versions" / "segments"
    folder.mkdir(parents=True)
    (folder / "v1.md").write_text(AGREED)
    (folder / "v1.json").write_text('{"digest": "sha256:000000000000"}\n')
    (project.project_dir / "segments").mkdir()
    (project.project_dir / "segments" / "segments.md").write_text("working\n")
    links = {
        "link-versions": "versions",
        "link-v1.md": "versions/segments/v1.md",
        "segments/link-up": "../versions/segments",
        "dangling-version.md": "versions/segments/v9.md",
    }
    for name, target in links.items():
        os.symlink(target, project.project_dir / name)
    skill = tmp_path / "skill"
    skill.mkdir()
    (skill / "SKILL.md").write_text("---\nname: bmc-segments\n---\n")
    return project, skill


ATTACKS = [
    "versions/segments/v1.md",
    "versions/segments/v2.md",
    "versions/segments/v1.json",
    "versions/canvas/v1.md",
    "versions/new.md",
    "versions",
    "./versions/segments/v1.md",
    "VERSIONS/segments/v1.md",
    "Versions/segments/v2.md",
    "versions./segments/v2.md",
    "versions /segments/v2.md",
    "versions. . /x.md",
    "ｖｅｒｓｉｏｎｓ/segments/v2.md",
    "ver\u200bsions/segments/v2.md",
    "versions::$DATA",
    "versions:stream/x.md",
    "segments/../versions/segments/v1.md",
    "segments/drafts/../../versions/segments/v2.md",
    "{project}/versions/segments/v1.md",
    "link-versions/segments/v1.md",
    "link-versions/segments/v2.md",
    "link-v1.md",
    "segments/link-up/v1.md",
    "segments/link-up/v2.md",
    "dangling-version.md",
]


@pytest.mark.parametrize("spelled", ATTACKS)
def test_no_spelling_writes_or_edits_a_version(world: tuple[Project, Path], spelled: str) -> None:
    project, skill = world
    path = spelled.replace("{project}", str(project.project_dir))
    before = snapshot(project.workspace.parent)
    toolbox = Toolbox(project, skill)
    toolbox.run("read", {"file_path": path})  # a read first, so edit is judged on the path

    wrote = toolbox.run("write", {"file_path": path, "content": "forged\n"})
    edited = toolbox.run(
        "edit", {"file_path": path, "old_string": "agreed text", "new_string": "forged"}
    )

    assert wrote.is_error and edited.is_error, (wrote.text, edited.text)
    assert snapshot(project.workspace.parent) == before


def test_the_refusal_says_why_and_what_to_do_instead(world: tuple[Project, Path]) -> None:
    project, skill = world
    outcome = Toolbox(project, skill).run(
        "write", {"file_path": "versions/segments/v2.md", "content": "x\n"}
    )
    assert outcome.is_error
    assert "versions/ keeps what the client agreed" in outcome.text
    assert "edit the stage's document and ask for agreement instead" in outcome.text
    via_link = Toolbox(project, skill).run("write", {"file_path": "link-v1.md", "content": "x\n"})
    assert "leads into versions/" in via_link.text


def test_the_model_reads_and_lists_the_versions(world: tuple[Project, Path]) -> None:
    project, skill = world
    toolbox = Toolbox(project, skill)
    assert AGREED in toolbox.run("read", {"file_path": "versions/segments/v1.md"}).text
    assert "versions/segments/v1.md" in toolbox.run("glob", {"pattern": "**/*.md"}).text
    assert "versions/segments/v1.md" in toolbox.run("grep", {"pattern": "agreed text"}).text


def test_a_folder_named_versions_elsewhere_is_an_ordinary_folder(
    world: tuple[Project, Path],
) -> None:
    # Only the project's own versions/ is protected; a draft about "versions" is not.
    project, skill = world
    outcome = Toolbox(project, skill).run(
        "write", {"file_path": "segments/versions/notes.md", "content": "x\n"}
    )
    assert not outcome.is_error, outcome.text
    assert (project.project_dir / "segments/versions/notes.md").read_text() == "x\n"
