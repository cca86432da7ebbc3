"""Names that travel: the model creates only files and folders whose names Windows, macOS and
Linux can all hold (so a git checkout works on a consultant's laptop), while the consultant's
own files keep working whatever their names; slugs never come out as Windows device names."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bmc.documents.validate import make_validator
from bmc.errors import UserError
from bmc.workspace.confine import portability_problem
from bmc.workspace.paths import Project, init_project, is_windows_device, slugify
from bmc.workspace.tools import Toolbox
from projects import demo_segment_files, research_project

DEVICES = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"} | {
    f"{port}{n}" for port in ("COM", "LPT") for n in "0123456789¹²³"
}


def travels(name: str) -> bool:
    """An oracle written apart from the product: can Windows, macOS and Linux all hold `name`?"""
    if any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in name):  # control characters
        return False
    if any(ch in '\\:<>"|?*' for ch in name) or name.startswith("~"):
        return False
    if name.endswith((".", " ")):
        return False
    return name.split(".")[0].rstrip(" ").upper() not in DEVICES


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return init_project(tmp_path / "ws", "acme", "growth-2027", "Acme")


@pytest.fixture
def skill(tmp_path: Path) -> Path:
    folder = tmp_path / "skills" / "bmc-segments"
    folder.mkdir(parents=True)
    return folder


# -- the consultant's own files --------------------------------------------------------------

# Names a person can give files on Linux (or that arrive from a zip or a Mac) that no write of
# the model could create.
THEIRS = [
    "Q3: board notes.md",
    "con.md",
    "~scratch.md",
    "back\\slash.md",
    "draft v2.",
    "what?.md",
    "tab\there.md",
]


def test_the_consultants_own_files_keep_working_whatever_their_names(
    project: Project, skill: Path
) -> None:
    for name in THEIRS:
        (project.project_dir / name).write_text(f"ferry notes in {name}\n")
    tb = Toolbox(project, skill)
    listing = tb.run("glob", {"pattern": "*"}).text.splitlines()
    assert set(THEIRS) <= set(listing)
    found = tb.run("grep", {"pattern": "ferry notes"}).text.splitlines()
    assert len(found) == len(THEIRS)
    for name in THEIRS:
        assert tb.run("read", {"file_path": name}).text == f"ferry notes in {name}\n"
        edited = tb.run("edit", {"file_path": name, "old_string": "ferry", "new_string": "boat"})
        assert not edited.is_error, edited.text
        rewritten = tb.run("write", {"file_path": name, "content": "rewritten\n"})
        assert not rewritten.is_error, rewritten.text
        assert (project.project_dir / name).read_text() == "rewritten\n"


def test_new_files_may_go_in_the_consultants_oddly_named_folder(
    project: Project, skill: Path
) -> None:
    folder = project.project_dir / "Client: Acme "
    folder.mkdir()
    tb = Toolbox(project, skill)
    assert not tb.run("write", {"file_path": "Client: Acme /summary.md", "content": "s\n"}).is_error
    assert (folder / "summary.md").read_text() == "s\n"
    refused = tb.run("write", {"file_path": "Client: Acme /nul.md", "content": "s\n"})
    assert refused.is_error and "'nul.md' is a device name on Windows" in refused.text
    assert sorted(p.name for p in folder.iterdir()) == ["summary.md"]


def test_a_symlink_the_person_made_to_an_odd_name_is_not_created_through(
    project: Project, skill: Path
) -> None:
    # The name the file would really get is checked, not the link's own name.
    os.symlink("notes:2027.md", project.project_dir / "notes.md")
    outcome = Toolbox(project, skill).run("write", {"file_path": "notes.md", "content": "x\n"})
    assert outcome.is_error and "'notes:2027.md' contains ':'" in outcome.text
    assert not (project.project_dir / "notes:2027.md").exists()


# -- any new name ----------------------------------------------------------------------------

names = st.one_of(
    st.text(alphabet='aB1é-_. ~\\:<>"|?*\t\x7f\x85', min_size=1, max_size=10),
    st.tuples(
        st.sampled_from(sorted(DEVICES)).map(str.lower) | st.sampled_from(sorted(DEVICES)),
        st.sampled_from(["", ".md", " .md", ".tar.gz", "1", "-x.md", "."]),
    ).map("".join),
)
_unique = itertools.count()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=names)
def test_a_new_name_is_created_exactly_when_it_travels(
    tmp_path_factory: pytest.TempPathFactory, name: str
) -> None:
    assume(not set(name.strip()) <= {"."})  # `..` and lookalikes: refused as such elsewhere
    project, skill = _shared(tmp_path_factory)
    tb = Toolbox(project, skill)
    for as_what in ("{}", "{}/x.md"):  # the name of a new file, then of a new folder
        folder = f"names/{next(_unique)}"
        outcome = tb.run("write", {"file_path": f"{folder}/{as_what.format(name)}", "content": ""})
        if travels(name):
            assert not outcome.is_error, (name, outcome.text)
        else:
            assert outcome.is_error and outcome.text.startswith("write: the name "), name
            assert "\n" not in outcome.text
            assert not (project.project_dir / folder).exists()
    assert (portability_problem(name) is None) == travels(name)


_PROJECTS: dict[int, tuple[Project, Path]] = {}


def _shared(factory: pytest.TempPathFactory) -> tuple[Project, Path]:
    # One project for every example: each writes under a folder of its own.
    key = id(factory)
    if key not in _PROJECTS:
        root = factory.mktemp("names")
        skill = root / "skill"
        skill.mkdir()
        _PROJECTS[key] = (init_project(root / "ws", "acme", "p", None), skill)
    return _PROJECTS[key]


# -- slugs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "slug"),
    [
        ("Con", "con-1"),
        ("AUX", "aux-1"),
        ("Nul.", "nul-1"),
        ("  prn  ", "prn-1"),
        ("COM1", "com1-1"),
        ("Lpt9", "lpt9-1"),
        ("COM¹", "com1-1"),
        ("Con Edison", "con-edison"),
        ("Console users", "console-users"),
        ("COM10", "com10"),
        ("St Aidan's Trust", "st-aidan-s-trust"),
    ],
)
def test_a_slug_is_never_a_windows_device_name(title: str, slug: str) -> None:
    assert slugify(title) == slug


@settings(max_examples=300)
@given(title=st.text(max_size=20) | st.sampled_from(sorted(DEVICES)))
def test_every_slug_makes_a_file_name_that_travels(title: str) -> None:
    slug = slugify(title)
    assert not is_windows_device(slug)
    if slug:
        assert travels(f"{slug}.md") and portability_problem(f"{slug}.md") is None


def test_a_segment_called_aux_is_drafted_at_the_name_the_refusal_gives(tmp_path: Path) -> None:
    project = research_project(tmp_path)
    skill = tmp_path / "skill"
    skill.mkdir()
    tb = Toolbox(project, skill, validator=make_validator(project))
    draft = demo_segment_files()["segments/drafts/island-commuters.md"]
    draft = draft.replace("# Island commuters\n", "# Aux\n", 1)
    refused = tb.run("write", {"file_path": "segments/drafts/aux.md", "content": draft})
    assert refused.is_error and refused.text.endswith("add to it, e.g. aux-1.md")
    written = tb.run("write", {"file_path": "segments/drafts/aux-1.md", "content": draft})
    assert not written.is_error, written.text
    wrong = tb.run("write", {"file_path": "segments/drafts/aux-2.md", "content": draft})
    assert wrong.is_error and "segments/drafts/aux-1.md" in wrong.text


@pytest.mark.parametrize(("org", "slug"), [("con", "growth"), ("acme", "aux"), ("acme", "lpt1")])
def test_init_refuses_a_new_org_or_project_named_like_a_device(
    tmp_path: Path, org: str, slug: str
) -> None:
    with pytest.raises(UserError, match=r"is a device name on Windows.*such as \w+-1"):
        init_project(tmp_path, org, slug, None)
    assert not (tmp_path / "clients" / org / "projects" / slug).exists()


def test_an_existing_project_named_like_a_device_keeps_working(tmp_path: Path) -> None:
    (tmp_path / "clients" / "acme" / "projects" / "nul").mkdir(parents=True)
    project = init_project(tmp_path, "acme", "nul", "Acme")
    assert (project.project_dir / ".gitignore").exists()
