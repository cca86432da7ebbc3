"""`rename` and `remove`: the model may move or delete the project's own segment drafts and
nothing else, however the path is spelled (SPEC section 4; issue 12).

The attack corpus of tests/test_confinement.py is thrown at both tools, as the source and as
the destination of a rename; the whole tmp tree (and /etc) must be byte-identical afterwards.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from bmc.workspace.confine import DRAFTS_FOLDER
from bmc.workspace.tools import Toolbox, ToolOutcome
from test_confinement import (
    ESCAPES,
    NO_WRITE,
    NON_PORTABLE,
    World,
    build_world,
    etc_snapshot,
    snapshot,
)

DRAFT = "segments/drafts/a.md"
MOVES = ("rename", "remove")


@pytest.fixture
def world(tmp_path: Path) -> World:
    found = build_world(tmp_path)
    drafts = found.project.project_dir / "segments/drafts"
    (drafts / "b.md").write_text("draft b\n")
    (drafts / "notes.txt").write_text("not a draft\n")
    (drafts / "sub").mkdir()
    (drafts / "sub/c.md").write_text("nested\n")
    os.symlink("a.md", drafts / "link-to-a.md")
    os.symlink("../segments.md", drafts / "link-up.md")
    os.symlink("../../brief.md", drafts / "brief-link.md")
    return found


def toolbox(world: World) -> Toolbox:
    return Toolbox(world.project, world.skill, optional_tools=MOVES)


def seen(tb: Toolbox, *paths: str) -> Toolbox:
    """The model has read these files (a rename or removal needs that, as a write does)."""
    for path in paths:
        outcome = tb.run("read", {"file_path": path})
        assert not outcome.is_error, outcome.text
    return tb


def spell(template: str, world: World) -> str:
    return template.format(**world.places) if "{" in template else template


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def refused(outcome: ToolOutcome, op: str) -> str:
    assert outcome.is_error, f"{op} was not refused: {outcome.text}"
    first = outcome.text.splitlines()[0]
    assert first.startswith(f"{op}: ") and len(first) > len(op) + 10
    assert "TOP-SECRET" not in outcome.text
    return outcome.text


# -- offered only where asked for ---------------------------------------------------------


def test_the_tools_are_not_offered_unless_the_skill_asks_for_them(world: World) -> None:
    plain = Toolbox(world.project, world.skill)
    assert [d["name"] for d in plain.definitions()] == ["read", "write", "edit", "glob", "grep"]
    text = plain.run("rename", {"file_path": DRAFT, "new_path": "segments/drafts/z.md"}).text
    assert "unknown tool 'rename'" in text
    assert (world.project.project_dir / DRAFT).is_file()

    offered = {d["name"]: d for d in toolbox(world).definitions()}
    assert list(offered)[-2:] == ["rename", "remove"]
    assert offered["rename"]["input_schema"]["required"] == ["file_path", "new_path"]
    assert offered["remove"]["input_schema"]["required"] == ["file_path"]
    assert "segments/drafts/" in offered["rename"]["description"]


# -- what they do -------------------------------------------------------------------------


def test_a_read_draft_is_renamed_whole_and_its_old_name_is_gone(world: World) -> None:
    drafts = world.project.project_dir / "segments/drafts"
    before = sha(drafts / "a.md")
    tb = seen(toolbox(world), DRAFT)

    outcome = tb.run("rename", {"file_path": DRAFT, "new_path": "segments/drafts/new-name.md"})

    assert not outcome.is_error, outcome.text
    assert "renamed segments/drafts/a.md to segments/drafts/new-name.md" in outcome.text
    assert "edit the draft's title" in outcome.text
    assert not (drafts / "a.md").exists()
    assert sha(drafts / "new-name.md") == before
    # The model has seen the moved bytes: it may edit the title at once, without a read.
    assert DRAFT not in tb.read_hashes and tb.read_hashes["segments/drafts/new-name.md"] == before
    # The journal hears of both: the old name forgotten, the new one seen.
    assert tb.take_read_changes() == {DRAFT: None, "segments/drafts/new-name.md": before}
    edit = {
        "file_path": "segments/drafts/new-name.md",
        "old_string": "draft a",
        "new_string": "draft A",
    }
    assert not tb.run("edit", edit).is_error
    assert not list(drafts.glob("*.tmp")) and not list(drafts.glob(".*"))


def test_a_read_draft_is_removed(world: World) -> None:
    tb = seen(toolbox(world), "segments/drafts/b.md")

    outcome = tb.run("remove", {"file_path": "segments/drafts/b.md"})

    assert not outcome.is_error, outcome.text
    assert "removed segments/drafts/b.md" in outcome.text
    assert not (world.project.project_dir / "segments/drafts/b.md").exists()
    assert "segments/drafts/b.md" not in tb.read_hashes


@pytest.mark.parametrize("op", MOVES)
def test_a_draft_the_model_has_not_read_or_a_person_changed_is_left_alone(
    world: World, op: str
) -> None:
    path = world.project.project_dir / DRAFT
    args = {"file_path": DRAFT, "new_path": "segments/drafts/z.md"} if op == "rename" else {}
    args["file_path"] = DRAFT

    unread = refused(toolbox(world).run(op, args), op)
    assert "read it first" in unread

    tb = seen(toolbox(world), DRAFT)
    path.write_text("the consultant's hand edit\n")
    changed = refused(tb.run(op, args), op)
    assert "changed since you read it" in changed
    assert path.read_text() == "the consultant's hand edit\n"
    assert not (world.project.project_dir / "segments/drafts/z.md").exists()


@pytest.mark.parametrize(
    ("new_name", "says"),
    [
        ("b.md", "already exists"),
        ("B.md", "not a slug"),  # and it would clash with b.md on macOS and Windows
        ("New Name.md", "not a slug"),
        ("new_name.md", "not a slug"),
        ("-new.md", "not a slug"),
        ("new--name.md", "not a slug"),
        ("nul.md", "device name"),
        ("con.md", "device name"),
        ("new.txt", "not a draft"),
        ("new.md.", "ends with a dot"),
        (".md", "not a slug"),
    ],
)
def test_a_rename_needs_a_new_slug_name_that_is_free(
    world: World, new_name: str, says: str
) -> None:
    tb = seen(toolbox(world), DRAFT)
    before = snapshot(world.root)

    text = refused(
        tb.run("rename", {"file_path": DRAFT, "new_path": f"segments/drafts/{new_name}"}), "rename"
    )

    assert says in text
    assert snapshot(world.root) == before


def test_a_rename_onto_a_case_variant_of_an_existing_draft_is_refused(world: World) -> None:
    drafts = world.project.project_dir / "segments/drafts"
    (drafts / "Retail.md").write_text("a person's draft\n")
    tb = seen(toolbox(world), DRAFT)

    text = refused(
        tb.run("rename", {"file_path": DRAFT, "new_path": "segments/drafts/retail.md"}), "rename"
    )

    assert "Retail.md already exists" in text
    assert (drafts / "a.md").read_text() == "draft a\n"


# -- the whitelist: everything but a draft is refused, however it is spelled ----------------

OUTSIDE_THE_DRAFTS = [
    "brief.md",
    "segments/segments.md",
    "canvas/canvas.md",
    "hypotheses.md",
    "versions/segments/v1.md",
    "segments/drafts",
    "segments/drafts/",
    "segments",
    "segments/drafts/notes.txt",
    "segments/drafts/sub/c.md",
    "segments/drafts/link-to-a.md",
    "segments/drafts/link-up.md",
    "segments/drafts/brief-link.md",
    "Segments/drafts/a.md",
    "segments/Drafts/a.md",
    "segments/drafts/A.MD",
    "segments/drafts/a.md.",
    "segments/drafts/a.md ",
    "segments/drafts/../drafts/../segments.md",
    "segments/drafts/a.md\x00",
    "resources/market.md",
    "inbox/raw.txt",
    "skill/SKILL.md",
]


@pytest.mark.parametrize("template", ESCAPES + NO_WRITE + NON_PORTABLE + OUTSIDE_THE_DRAFTS)
def test_nothing_but_a_draft_is_ever_renamed_or_removed(world: World, template: str) -> None:
    path = spell(template, world)
    tb = toolbox(world)
    before, etc_before = snapshot(world.root), etc_snapshot()
    for read in ("brief.md", "segments/segments.md", DRAFT, "resources/market.md"):
        tb.run("read", {"file_path": read})

    refused(tb.run("remove", {"file_path": path}), "remove")
    refused(tb.run("rename", {"file_path": path, "new_path": "segments/drafts/moved.md"}), "rename")
    refused(tb.run("rename", {"file_path": DRAFT, "new_path": path}), "rename")

    assert snapshot(world.root) == before
    assert etc_snapshot() == etc_before


def test_the_drafts_folder_reached_through_a_link_is_refused(world: World) -> None:
    # The same folder under another name: what is moved must be named as it lies on disk.
    os.symlink("segments/drafts", world.project.project_dir / "drafts")
    tb = seen(toolbox(world), "drafts/a.md", DRAFT)
    before = snapshot(world.root)

    refused(tb.run("remove", {"file_path": "drafts/a.md"}), "remove")
    refused(tb.run("rename", {"file_path": DRAFT, "new_path": "drafts/z.md"}), "rename")

    assert snapshot(world.root) == before


def test_the_whitelist_is_the_segments_stage_drafts_folder() -> None:
    from bmc.documents.stages import packaged

    assert packaged()["segments"].drafts_folder() == "/".join(DRAFTS_FOLDER) + "/"


# -- run again on resume ------------------------------------------------------------------


def test_a_rename_run_again_after_a_crash_reports_it_done_and_moves_nothing(world: World) -> None:
    # A crash after the rename and before its result was journaled: the resumed session runs
    # the same call again, with what the model had read before it.
    drafts = world.project.project_dir / "segments/drafts"
    tb = seen(toolbox(world), DRAFT)
    args = {"file_path": DRAFT, "new_path": "segments/drafts/new-name.md"}
    assert not tb.run("rename", args).is_error
    resumed = Toolbox(world.project, world.skill, optional_tools=MOVES)
    resumed.read_hashes[DRAFT] = sha(drafts / "new-name.md")
    before = snapshot(world.root)

    again = resumed.run("rename", args)

    assert not again.is_error, again.text
    assert "done before the session stopped" in again.text
    assert snapshot(world.root) == before
    assert DRAFT not in resumed.read_hashes and "segments/drafts/new-name.md" in resumed.read_hashes


def test_a_removal_run_again_after_a_crash_reports_it_done(world: World) -> None:
    tb = seen(toolbox(world), DRAFT)
    assert not tb.run("remove", {"file_path": DRAFT}).is_error
    resumed = Toolbox(world.project, world.skill, optional_tools=MOVES)
    resumed.read_hashes[DRAFT] = "whatever the model had read"

    again = resumed.run("remove", {"file_path": DRAFT})

    assert not again.is_error and "done before the session stopped" in again.text
    # Without a read on record it is simply a draft that does not exist.
    never = toolbox(world).run("remove", {"file_path": DRAFT})
    assert never.is_error and "no such file" in never.text
