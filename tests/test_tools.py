"""The model's file tools: what each does, and each way it refuses (SPEC sections 4 and 5)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
from anthropic.types.beta import (
    BetaManagedAgentsAgentToolset20260401EditInput,
    BetaManagedAgentsAgentToolset20260401GlobInput,
    BetaManagedAgentsAgentToolset20260401GrepInput,
    BetaManagedAgentsAgentToolset20260401ReadInput,
    BetaManagedAgentsAgentToolset20260401WriteInput,
)

from bmc.workspace import tools
from bmc.workspace.paths import Project, init_project
from bmc.workspace.tools import Toolbox, ToolOutcome

SDK_INPUTS = {
    "read": BetaManagedAgentsAgentToolset20260401ReadInput,
    "write": BetaManagedAgentsAgentToolset20260401WriteInput,
    "edit": BetaManagedAgentsAgentToolset20260401EditInput,
    "glob": BetaManagedAgentsAgentToolset20260401GlobInput,
    "grep": BetaManagedAgentsAgentToolset20260401GrepInput,
}


@pytest.fixture
def project(tmp_path: Path) -> Project:
    project = init_project(tmp_path / "ws", "acme", "growth-2027", "Acme")
    files = {
        project.project_dir / "brief.md": "# Brief\r\nFerries for commuters.\nÉté 2027.\n",
        project.resources_dir / "market.md": "# Market\nferry demand grows\n",
        project.resources_dir / "index.md": "# Index\n- market.md\n",
        project.inbox_dir / "notes.txt": "raw notes\n",
        project.state_dir / "sessions/s.jsonl": "ferry secret state\n",
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode())
    return project


@pytest.fixture
def skill(tmp_path: Path) -> Path:
    folder = tmp_path / "skills" / "bmc-segments"
    (folder / "references").mkdir(parents=True)
    (folder / "SKILL.md").write_text("---\nname: bmc-segments\n---\nbody\n")
    (folder / "references/template.md").write_text("# Template\n")
    return folder


@pytest.fixture
def tb(project: Project, skill: Path) -> Toolbox:
    return Toolbox(project, skill)


def call(tb: Toolbox, name: str, **tool_input: object) -> ToolOutcome:
    return tb.run(name, tool_input)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*.tmp")]


# -- definitions and input checking ---------------------------------------------------------


def test_definitions_name_the_five_file_tools_with_the_sdk_fields(tb: Toolbox) -> None:
    defs = tb.definitions()
    assert [d["name"] for d in defs] == ["read", "write", "edit", "glob", "grep"]
    for d in defs:
        assert set(d) == {"name", "description", "input_schema"}
        sdk = SDK_INPUTS[d["name"]]
        schema = d["input_schema"]
        assert set(schema["properties"]) == set(sdk.model_fields)
        required = {n for n, f in sdk.model_fields.items() if f.is_required()}
        assert set(schema["required"]) == required
        assert schema["type"] == "object" and d["description"]


def test_definitions_are_the_same_bytes_every_time(project: Project, skill: Path) -> None:
    first = json.dumps(Toolbox(project, skill).definitions())
    tb = Toolbox(project, skill)
    tb.definitions()[0]["description"] = "mutated by a caller"
    assert json.dumps(tb.definitions()) == first
    assert json.dumps(Toolbox(project, skill).definitions()) == first


def test_definitions_say_which_folders_are_writable(project: Project, skill: Path) -> None:
    ro = {d["name"]: d["description"] for d in Toolbox(project, skill).definitions()}
    rw = {
        d["name"]: d["description"]
        for d in Toolbox(project, skill, resources_writable=True).definitions()
    }
    assert "resources/, inbox/ and skill/ are read-only" in ro["write"]
    assert "the project folder and resources/" in rw["write"]
    assert ".agreed.md" in ro["edit"] and "view_range" in ro["read"]


@pytest.mark.parametrize(
    ("name", "tool_input", "expected"),
    [
        ("bash", {"command": "ls"}, "unknown tool 'bash'"),
        ("read", {}, "file_path: Field required"),
        ("read", {"file_path": 7}, "file_path: Input should be a valid string"),
        ("read", {"file_path": "brief.md", "view_range": [1]}, "view_range"),
        ("read", {"file_path": "brief.md", "view_range": ["1", "2"]}, "view_range.0"),
        ("read", {"file_path": "brief.md", "view_range": [1, 2, 3]}, "view_range"),
        ("write", {"file_path": "x.md"}, "content: Field required"),
        (
            "edit",
            {"file_path": "x.md", "old_string": "a", "new_string": "b", "replace_all": "yes"},
            "replace_all",
        ),
        ("glob", {"pattern": "*", "colour": "red"}, "colour: Extra inputs are not permitted"),
        ("grep", None, "valid dictionary"),
        ("grep", "brief", "valid dictionary"),
    ],
)
def test_bad_tool_input_is_an_error_naming_the_field(
    tb: Toolbox, name: str, tool_input: object, expected: str
) -> None:
    outcome = tb.run(name, tool_input)
    assert outcome.is_error and expected in outcome.text


def test_every_field_error_is_listed_at_once(tb: Toolbox) -> None:
    outcome = tb.run("edit", {"file_path": 1, "new_string": 2})
    assert outcome.is_error
    for field in ("file_path", "old_string", "new_string"):
        assert field in outcome.text


# -- read -----------------------------------------------------------------------------------


def test_read_returns_the_text_as_is(tb: Toolbox, project: Project) -> None:
    outcome = call(tb, "read", file_path="brief.md")
    assert outcome == ToolOutcome("# Brief\r\nFerries for commuters.\nÉté 2027.\n", False)
    data = (project.project_dir / "brief.md").read_bytes()
    assert tb.read_hashes == {"brief.md": sha(data)}


def test_each_call_hands_the_journal_only_what_it_changed(tb: Toolbox, project: Project) -> None:
    call(tb, "read", file_path="brief.md")
    data = (project.project_dir / "brief.md").read_bytes()
    assert tb.take_read_changes() == {"brief.md": sha(data)}
    assert tb.take_read_changes() == {}  # handed over once
    call(tb, "glob", pattern="*.md")
    assert tb.take_read_changes() == {}  # a call that reads no file changes nothing
    assert tb.read_hashes == {"brief.md": sha(data)}


@pytest.mark.parametrize(
    ("path", "text", "key"),
    [
        ("resources/market.md", "# Market\nferry demand grows\n", "resources/market.md"),
        ("inbox/notes.txt", "raw notes\n", "inbox/notes.txt"),
        ("skill/references/template.md", "# Template\n", "skill/references/template.md"),
        ("./resources//market.md", "# Market\nferry demand grows\n", "resources/market.md"),
        ("segments/../brief.md", None, "brief.md"),
    ],
)
def test_read_maps_the_prefixes_and_keys_hashes_by_normalised_path(
    tb: Toolbox, path: str, text: str | None, key: str
) -> None:
    outcome = call(tb, "read", file_path=path)
    assert not outcome.is_error, outcome.text
    if text is not None:
        assert outcome.text == text
    assert list(tb.read_hashes) == [key]


def test_read_accepts_an_absolute_path_inside_a_root(tb: Toolbox, project: Project) -> None:
    outcome = call(tb, "read", file_path=str(project.resources_dir / "market.md"))
    assert outcome.text == "# Market\nferry demand grows\n"
    assert list(tb.read_hashes) == ["resources/market.md"]


def test_view_range_is_one_based_and_inclusive(tb: Toolbox, project: Project) -> None:
    (project.project_dir / "lines.md").write_text("one\ntwo\nthree\nfour\n")
    assert call(tb, "read", file_path="lines.md", view_range=[2, 3]).text == "two\nthree"
    assert call(tb, "read", file_path="lines.md", view_range=[1, 1]).text == "one"


@pytest.mark.parametrize("end", [0, -1])
def test_view_range_end_zero_or_minus_one_reads_to_the_end(
    tb: Toolbox, project: Project, end: int
) -> None:
    (project.project_dir / "lines.md").write_text("one\ntwo\nthree\n")
    assert call(tb, "read", file_path="lines.md", view_range=[2, end]).text == "two\nthree\n"


def test_paged_read_hashes_the_whole_file(tb: Toolbox, project: Project) -> None:
    (project.project_dir / "lines.md").write_text("one\ntwo\nthree\n")
    call(tb, "read", file_path="lines.md", view_range=[2, 2])
    assert tb.read_hashes["lines.md"] == sha(b"one\ntwo\nthree\n")


def test_view_range_past_the_end_or_backwards_is_refused(tb: Toolbox, project: Project) -> None:
    (project.project_dir / "lines.md").write_text("one\ntwo\n")
    past = call(tb, "read", file_path="lines.md", view_range=[5, 9])
    assert past.is_error and "has 2" in past.text
    backwards = call(tb, "read", file_path="lines.md", view_range=[2, 1])
    assert backwards.is_error and "before its start" in backwards.text


def test_empty_file_reads_as_empty(tb: Toolbox, project: Project) -> None:
    (project.project_dir / "empty.md").write_text("")
    assert call(tb, "read", file_path="empty.md") == ToolOutcome("", False)
    assert call(tb, "read", file_path="empty.md", view_range=[1, -1]) == ToolOutcome("", False)


def test_whole_read_over_the_cap_is_refused_with_a_paging_hint(
    project: Project, skill: Path
) -> None:
    tb = Toolbox(project, skill, read_cap_bytes=100)
    (project.project_dir / "long.md").write_text("x" * 50 + "\n" + "y" * 60 + "\n")
    outcome = call(tb, "read", file_path="long.md")
    assert outcome.is_error
    assert "view_range" in outcome.text and "grep" in outcome.text and "112 bytes" in outcome.text
    assert call(tb, "read", file_path="long.md", view_range=[2, 2]).text == "y" * 60
    too_big = call(tb, "read", file_path="long.md", view_range=[1, 2])
    assert too_big.is_error and "fewer lines" in too_big.text


@pytest.fixture(scope="module")
def fifty_mb(tmp_path_factory: pytest.TempPathFactory) -> tuple[Project, Path, bytes]:
    root = tmp_path_factory.mktemp("big")
    project = init_project(root / "ws", "acme", "growth-2027", None)
    skill = root / "skill"
    skill.mkdir()
    block = b"".join(b"market line %07d with some words about ferries\n" % i for i in range(10_000))
    data = block * 110 + "the needle, at the very end é\n".encode()
    assert len(data) > 50 * 1024 * 1024
    (project.resources_dir / "big.md").write_bytes(data)
    return project, skill, data


def test_paged_reads_of_a_50mb_file_are_fast(fifty_mb: tuple[Project, Path, bytes]) -> None:
    project, skill, data = fifty_mb
    tb = Toolbox(project, skill)
    assert call(tb, "read", file_path="resources/big.md").is_error
    for start in (1, 550_000, 1_100_001):
        began = time.monotonic()
        outcome = call(tb, "read", file_path="resources/big.md", view_range=[start, start + 500])
        assert time.monotonic() - began < 2.0
        assert not outcome.is_error, outcome.text
    assert outcome.text == "the needle, at the very end é\n"
    page = call(tb, "read", file_path="resources/big.md", view_range=[3, 4]).text
    assert page == "market line 0000002 with some words about ferries\n" + (
        "market line 0000003 with some words about ferries"
    )
    assert tb.read_hashes["resources/big.md"] == sha(data)


def test_grep_streams_a_50mb_file(fifty_mb: tuple[Project, Path, bytes]) -> None:
    project, skill, _ = fifty_mb
    tb = Toolbox(project, skill)
    began = time.monotonic()
    outcome = call(tb, "grep", pattern="needle", path="resources/big.md")
    assert time.monotonic() - began < 5.0
    assert outcome.text == "resources/big.md:1100001: the needle, at the very end é"


@pytest.mark.parametrize(
    "data",
    [
        "café".encode("latin-1"),
        b"%PDF-1.7\n\x00\x01\x02\xff",
        b"text with a NUL \x00 byte\n",
        b"\xff\xfe\x00U\x00T\x00F\x00-\x001\x006\x00",
    ],
)
def test_non_utf8_or_binary_is_refused_with_the_import_hint(
    tb: Toolbox, project: Project, data: bytes
) -> None:
    (project.inbox_dir / "report.bin").write_bytes(data)
    for view_range in (None, [1, 1]):
        outcome = tb.run("read", {"file_path": "inbox/report.bin", "view_range": view_range})
        assert outcome.is_error and "convert it with `bmc import`" in outcome.text
    assert tb.read_hashes == {}


def test_folders_fifos_and_missing_files_are_refused(tb: Toolbox, project: Project) -> None:
    os.mkfifo(project.project_dir / "pipe")
    for path, reason in [
        ("resources", "is a folder"),
        ("", "is a folder"),
        ("pipe", "not a regular file"),
        ("nope.md", "no such file"),
    ]:
        outcome = call(tb, "read", file_path=path)
        assert outcome.is_error and reason in outcome.text, (path, outcome.text)
        assert call(tb, "read", file_path=path, view_range=[1, 2]).is_error


# -- write ------------------------------------------------------------------------------------


def test_write_creates_folders_and_leaves_no_temp_files(tb: Toolbox, project: Project) -> None:
    outcome = call(tb, "write", file_path="segments/drafts/commuters.md", content="# Commuters\n")
    assert outcome == ToolOutcome("wrote 12 bytes to segments/drafts/commuters.md", False)
    written = project.project_dir / "segments/drafts/commuters.md"
    assert written.read_bytes() == b"# Commuters\n"
    assert tb.read_hashes["segments/drafts/commuters.md"] == sha(b"# Commuters\n")
    assert leftovers(project.workspace) == []


def test_write_keeps_line_endings_and_unicode_exactly(tb: Toolbox, project: Project) -> None:
    call(tb, "write", file_path="notes.md", content="a\r\nb — é\n")
    assert (project.project_dir / "notes.md").read_bytes() == "a\r\nb — é\n".encode()


def test_a_failed_write_keeps_the_old_bytes_and_no_temp_file(
    tb: Toolbox, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    call(tb, "read", file_path="brief.md")
    before = (project.project_dir / "brief.md").read_bytes()

    def disk_full(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    outcome = call(tb, "write", file_path="brief.md", content="new")
    assert outcome.is_error and "no space left on device" in outcome.text
    assert (project.project_dir / "brief.md").read_bytes() == before
    assert leftovers(project.workspace) == []


def test_writing_an_unread_existing_file_is_refused(tb: Toolbox, project: Project) -> None:
    outcome = call(tb, "write", file_path="brief.md", content="overwritten")
    assert outcome.is_error and "read it first" in outcome.text
    assert (project.project_dir / "brief.md").read_text().startswith("# Brief")


def test_a_hand_edit_is_never_overwritten(tb: Toolbox, project: Project) -> None:
    brief = project.project_dir / "brief.md"
    call(tb, "read", file_path="brief.md")
    brief.write_bytes(b"# Brief\nthe consultant's words\n")  # a person edits it
    for name, tool_input in [
        ("write", {"file_path": "brief.md", "content": "model text"}),
        ("edit", {"file_path": "brief.md", "old_string": "Brief", "new_string": "X"}),
    ]:
        outcome = tb.run(name, tool_input)
        assert outcome.is_error and "changed since you read it: read it again" in outcome.text
        assert brief.read_bytes() == b"# Brief\nthe consultant's words\n"
    call(tb, "read", file_path="brief.md")
    assert not call(tb, "write", file_path="brief.md", content="model text\n").is_error


def test_the_model_may_rewrite_its_own_write_without_reading(tb: Toolbox) -> None:
    assert not call(tb, "write", file_path="hypotheses.md", content="v1\n").is_error
    assert not call(tb, "write", file_path="hypotheses.md", content="v2\n").is_error
    assert not call(
        tb, "edit", file_path="hypotheses.md", old_string="v2", new_string="v3"
    ).is_error


def test_a_page_read_is_enough_to_edit(tb: Toolbox, project: Project) -> None:
    (project.project_dir / "lines.md").write_text("one\ntwo\n")
    call(tb, "read", file_path="lines.md", view_range=[2, 2])
    assert not call(tb, "edit", file_path="lines.md", old_string="two", new_string="2").is_error
    assert (project.project_dir / "lines.md").read_text() == "one\n2\n"


def test_a_file_over_the_cap_can_be_rewritten_but_not_edited(project: Project, skill: Path) -> None:
    tb = Toolbox(project, skill, read_cap_bytes=100)
    (project.project_dir / "long.md").write_text("line\n" * 40)
    call(tb, "read", file_path="long.md", view_range=[1, 2])
    edit = call(tb, "edit", file_path="long.md", old_string="line", new_string="x")
    assert edit.is_error and "rewrite it whole with write" in edit.text
    assert not call(tb, "write", file_path="long.md", content="short\n").is_error


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("resources/market.md", "resources/ is read-only"),
        ("resources/new.md", "resources/ is read-only"),
        ("inbox/notes.txt", "inbox/ is read-only"),
        ("skill/references/template.md", "skill/ is read-only"),
        ("brief.agreed.md", "gate files"),
        ("segments/Segments.Agreed.md ", "gate files"),
        ("decisions.md", "decisions.md"),
        (".bmc/sessions/s.jsonl", ".bmc/"),
        ("segments", "is a folder"),
        ("", "is a folder"),
    ],
)
def test_write_refusals_name_the_reason(tb: Toolbox, path: str, reason: str) -> None:
    (tb.project.project_dir / "segments").mkdir(exist_ok=True)
    call(tb, "read", file_path=path)
    outcome = call(tb, "write", file_path=path, content="x")
    assert outcome.is_error and reason in outcome.text, outcome.text
    assert "\n" not in outcome.text


def test_resources_are_writable_for_the_research_skill(project: Project, skill: Path) -> None:
    tb = Toolbox(project, skill, resources_writable=True)
    call(tb, "read", file_path="resources/index.md")
    assert not call(tb, "write", file_path="resources/index.md", content="# Index\n").is_error
    assert (project.resources_dir / "index.md").read_text() == "# Index\n"
    assert call(tb, "write", file_path="inbox/x.md", content="x").is_error


def test_content_that_is_not_unicode_is_refused(tb: Toolbox, project: Project) -> None:
    outcome = call(tb, "write", file_path="x.md", content="bad \ud800 surrogate")
    assert outcome.is_error and "not valid Unicode" in outcome.text
    assert not (project.project_dir / "x.md").exists()


# -- edit ---------------------------------------------------------------------------------------


def test_edit_replaces_exactly_one_occurrence(tb: Toolbox, project: Project) -> None:
    call(tb, "read", file_path="brief.md")
    outcome = call(tb, "edit", file_path="brief.md", old_string="commuters", new_string="tourists")
    assert outcome == ToolOutcome("edited brief.md (1 replacement(s))", False)
    assert (project.project_dir / "brief.md").read_bytes() == (
        "# Brief\r\nFerries for tourists.\nÉté 2027.\n".encode()
    )
    assert tb.read_hashes["brief.md"] == sha((project.project_dir / "brief.md").read_bytes())


def test_edit_refuses_an_ambiguous_or_missing_old_string(tb: Toolbox, project: Project) -> None:
    (project.project_dir / "x.md").write_text("ferry ferry\n")
    call(tb, "read", file_path="x.md")
    twice = call(tb, "edit", file_path="x.md", old_string="ferry", new_string="boat")
    assert twice.is_error and "appears 2 times in x.md (must be unique)" in twice.text
    missing = call(tb, "edit", file_path="x.md", old_string="plane", new_string="boat")
    assert missing.is_error and "old_string not found in x.md" in missing.text
    empty = call(tb, "edit", file_path="x.md", old_string="", new_string="boat")
    assert empty.is_error and "empty" in empty.text
    assert (project.project_dir / "x.md").read_text() == "ferry ferry\n"
    every = call(
        tb, "edit", file_path="x.md", old_string="ferry", new_string="boat", replace_all=True
    )
    assert every.text == "edited x.md (2 replacement(s))"
    assert (project.project_dir / "x.md").read_text() == "boat boat\n"


def test_edit_needs_an_existing_text_file(tb: Toolbox, project: Project) -> None:
    assert (
        "no such file" in call(tb, "edit", file_path="new.md", old_string="a", new_string="b").text
    )
    (project.project_dir / "bin.md").write_bytes(b"\x00\x01")
    call(tb, "read", file_path="bin.md")
    tb.read_hashes["bin.md"] = sha(b"\x00\x01")
    outcome = call(tb, "edit", file_path="bin.md", old_string="a", new_string="b")
    assert outcome.is_error and "bmc import" in outcome.text


# -- validation and livelock -------------------------------------------------------------------


class FakeValidator:
    """Governs segments/drafts/*.md: a draft needs `## Who` and `## Value`."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, path: str, content: str) -> tuple[list[str], list[str]]:
        self.calls.append((path, content))
        if not path.startswith("segments/drafts/"):
            return [], []
        problems = [f"{s}: section missing" for s in ("## Who", "## Value") if s not in content]
        warnings = ["## Channels: empty"] if "## Channels" not in content else []
        return problems, warnings


@pytest.fixture
def validator() -> FakeValidator:
    return FakeValidator()


@pytest.fixture
def vtb(project: Project, skill: Path, validator: FakeValidator) -> Toolbox:
    return Toolbox(project, skill, validator=validator)


def test_problems_refuse_the_write_and_are_all_listed(
    vtb: Toolbox, project: Project, validator: FakeValidator
) -> None:
    outcome = call(vtb, "write", file_path="segments/drafts/a.md", content="# A\n")
    assert outcome.is_error
    assert outcome.text.splitlines()[1:] == [
        "- ## Who: section missing",
        "- ## Value: section missing",
    ]
    assert validator.calls == [("segments/drafts/a.md", "# A\n")]
    assert not (project.project_dir / "segments/drafts/a.md").exists()
    assert leftovers(project.workspace) == []


def test_warnings_let_the_write_through_and_are_mentioned(vtb: Toolbox, project: Project) -> None:
    outcome = call(vtb, "write", file_path="segments/drafts/a.md", content="## Who\n## Value\n")
    assert not outcome.is_error
    assert "## Channels: empty" in outcome.text
    assert (project.project_dir / "segments/drafts/a.md").exists()


def test_edit_validates_the_whole_new_content(
    vtb: Toolbox, project: Project, validator: FakeValidator
) -> None:
    draft = project.project_dir / "segments/drafts/a.md"
    draft.parent.mkdir(parents=True)
    draft.write_text("## Who\n## Value\n## Channels\n")
    call(vtb, "read", file_path="segments/drafts/a.md")
    outcome = call(
        vtb, "edit", file_path="segments/drafts/a.md", old_string="## Value\n", new_string=""
    )
    assert outcome.is_error and "## Value: section missing" in outcome.text
    assert validator.calls[-1] == ("segments/drafts/a.md", "## Who\n## Channels\n")
    assert draft.read_text() == "## Who\n## Value\n## Channels\n"


def test_the_validator_sees_the_real_project_path(
    vtb: Toolbox, project: Project, validator: FakeValidator
) -> None:
    os.symlink("segments/drafts", project.project_dir / "d")
    (project.project_dir / "segments/drafts").mkdir(parents=True)
    assert call(vtb, "write", file_path="./d/../d/x.md", content="# X\n").is_error
    assert validator.calls == [("segments/drafts/x.md", "# X\n")]


def test_a_crashing_validator_refuses_instead_of_raising(project: Project, skill: Path) -> None:
    def broken(_path: str, _content: str) -> tuple[list[str], list[str]]:
        raise KeyError("oops")

    outcome = call(
        Toolbox(project, skill, validator=broken), "write", file_path="a.md", content="x"
    )
    assert outcome.is_error and "validator failed" in outcome.text
    assert not (project.project_dir / "a.md").exists()


def test_three_identical_refusals_raise_the_livelock(vtb: Toolbox) -> None:
    for attempt in range(3):
        assert vtb.livelock is None, attempt
        call(vtb, "write", file_path="segments/drafts/a.md", content=f"# A {attempt}\n")
    assert vtb.livelock is not None and "segments/drafts/a.md" in vtb.livelock


def test_the_livelock_says_what_happened_and_how_to_go_on(vtb: Toolbox) -> None:
    for _ in range(3):
        call(vtb, "write", file_path="segments/drafts/a.md", content="# A\n")
    assert vtb.livelock is not None
    assert "3 times running for the same 2 problem(s)" in vtb.livelock
    assert "## Who: section missing" in vtb.livelock and "`bmc resume`" in vtb.livelock


SECTIONS = ("## Who", "## Value", "## Channels", "## Relationship", "## Revenue", "## Evidence")


def every_section_validator(path: str, content: str) -> tuple[list[str], list[str]]:
    """Governs segments/drafts/*.md: every one of SECTIONS must be there."""
    if not path.startswith("segments/drafts/"):
        return [], []
    return [f"{s}: section missing" for s in SECTIONS if s not in content], []


def draft_with(count: int) -> str:
    """A draft holding the first `count` SECTIONS: each one more leaves one problem fewer."""
    return "# A\n" + "".join(f"{s}\n" for s in SECTIONS[:count])


@pytest.fixture
def strict(project: Project, skill: Path) -> Toolbox:
    return Toolbox(project, skill, validator=every_section_validator)


def test_alternating_between_two_broken_drafts_is_stopped_at_the_eighth_refusal(
    strict: Toolbox, project: Project
) -> None:
    path = "segments/drafts/a.md"
    drafts = [draft_with(1), draft_with(2)]  # never the same problems twice running
    for attempt in range(12):
        outcome = call(strict, "write", file_path=path, content=drafts[attempt % 2])
        assert outcome.is_error
        if attempt < tools.LIVELOCK_STREAK - 1:
            assert strict.livelock is None, attempt
        else:
            assert strict.livelock is not None, attempt
    assert strict.livelock is not None
    assert f"{path} were refused 8 times in a row without one succeeding" in strict.livelock
    assert "`bmc resume`" in strict.livelock
    assert not (project.project_dir / path).exists()


def test_a_model_fixing_its_draft_step_by_step_is_not_stopped(
    strict: Toolbox, project: Project
) -> None:
    path = "segments/drafts/a.md"
    for present in range(1, 6):  # five refusals, one problem fewer each time
        outcome = call(strict, "write", file_path=path, content=draft_with(present))
        assert outcome.is_error and len(outcome.text.splitlines()[1:]) == 6 - present
    assert not call(strict, "write", file_path=path, content=draft_with(6)).is_error
    assert strict.livelock is None
    # The success started the count again: seven more refusals are not eight.
    for attempt in range(tools.LIVELOCK_STREAK - 1):
        call(strict, "write", file_path=path, content=draft_with(1 + attempt % 2))
    assert strict.livelock is None
    assert (project.project_dir / path).read_text() == draft_with(6)


def test_refusals_on_different_paths_do_not_add_up(strict: Toolbox) -> None:
    for attempt in range(tools.LIVELOCK_STREAK - 1):
        for name in ("a", "b", "c"):
            content = draft_with(1 + attempt % 2)
            path = f"segments/drafts/{name}.md"
            assert call(strict, "write", file_path=path, content=content).is_error
    assert strict.livelock is None


def test_a_different_problem_set_or_a_success_resets_the_count(vtb: Toolbox) -> None:
    path = "segments/drafts/a.md"
    call(vtb, "write", file_path=path, content="# A\n")
    call(vtb, "write", file_path=path, content="# A\n")
    call(vtb, "write", file_path=path, content="## Who\n")  # only ## Value missing now
    call(vtb, "write", file_path=path, content="## Who\n")
    assert vtb.livelock is None
    call(vtb, "write", file_path="segments/drafts/b.md", content="# B\n")  # other paths apart
    assert not call(vtb, "write", file_path=path, content="## Who\n## Value\n").is_error
    call(vtb, "write", file_path=path, content="# A\n")
    call(vtb, "write", file_path=path, content="# A\n")
    assert vtb.livelock is None


# -- glob ---------------------------------------------------------------------------------------


def test_glob_covers_the_project_and_resources_sorted(tb: Toolbox, project: Project) -> None:
    (project.project_dir / "segments/drafts").mkdir(parents=True)
    (project.project_dir / "segments/drafts/a.md").write_text("a")
    outcome = call(tb, "glob", pattern="**/*.md")
    assert outcome.text.splitlines() == [
        "brief.md",
        "resources/index.md",
        "resources/market.md",
        "segments/drafts/a.md",
    ]
    assert call(tb, "glob", pattern="*.md").text == "brief.md"
    assert call(tb, "glob", pattern="segments/*").text == "segments/drafts/"


def test_glob_never_lists_runner_state(tb: Toolbox) -> None:
    for pattern in ("**", ".bmc/**", "**/*.jsonl", ".*"):
        assert ".bmc" not in call(tb, "glob", pattern=pattern).text
    assert call(tb, "glob", pattern="*", path=".bmc").is_error


@pytest.mark.parametrize(
    ("path", "pattern", "expected"),
    [
        ("skill", "**/*.md", ["skill/SKILL.md", "skill/references/template.md"]),
        ("inbox", "*", ["inbox/notes.txt"]),
        ("resources", "{index,market}.m?", ["resources/index.md", "resources/market.md"]),
        ("resources", "[!i]*.md", ["resources/market.md"]),
        (".", "resources", ["resources/"]),
    ],
)
def test_glob_under_a_path(tb: Toolbox, path: str, pattern: str, expected: list[str]) -> None:
    assert call(tb, "glob", pattern=pattern, path=path).text.splitlines() == expected


def test_glob_results_are_capped_with_a_note(tb: Toolbox, project: Project) -> None:
    many = project.project_dir / "many"
    many.mkdir()
    for i in range(250):
        (many / f"f{i:03}.md").write_text("x")
    lines = call(tb, "glob", pattern="many/*.md").text.splitlines()
    assert len(lines) == tools.GLOB_MAX_RESULTS + 1
    assert lines[0] == "many/f000.md" and "showing 200 of 250" in lines[-1]


@pytest.mark.parametrize(
    ("pattern", "path", "reason"),
    [
        ("../*", None, "'..' is not allowed"),
        ("/etc/*", None, "absolute patterns"),
        ("", None, "empty"),
        ("*", "brief.md", "not a folder"),
        ("*", "../", "outside"),
        ("[z-a]", None, "invalid glob"),
        ("{a,b", None, "unbalanced"),
    ],
)
def test_glob_refusals(tb: Toolbox, pattern: str, path: str | None, reason: str) -> None:
    outcome = tb.run("glob", {"pattern": pattern, "path": path})
    assert outcome.is_error and reason in outcome.text, outcome.text


def test_glob_with_no_match_says_so(tb: Toolbox) -> None:
    assert call(tb, "glob", pattern="*.pdf") == ToolOutcome("no matches", False)


# -- grep ---------------------------------------------------------------------------------------


def test_grep_returns_path_line_text(tb: Toolbox) -> None:
    outcome = call(tb, "grep", pattern="[Ff]err")
    assert outcome.text.splitlines() == [
        "brief.md:2: Ferries for commuters.",
        "resources/market.md:2: ferry demand grows",
    ]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("resources", ["resources/market.md:2: ferry demand grows"]),
        ("resources/market.md", ["resources/market.md:2: ferry demand grows"]),
        ("inbox", ["no matches"]),
        ("brief.md", ["brief.md:2: Ferries for commuters."]),
    ],
)
def test_grep_under_a_file_or_folder(tb: Toolbox, path: str, expected: list[str]) -> None:
    assert call(tb, "grep", pattern="(?i)ferr", path=path).text.splitlines() == expected


def test_grep_skips_runner_state_and_binary_files(tb: Toolbox, project: Project) -> None:
    (project.inbox_dir / "deck.pdf").write_bytes(b"%PDF\x00ferry\x00")
    text = call(tb, "grep", pattern="ferry", path="inbox").text
    assert text.splitlines() == [
        "no matches",
        "[skipped 1 binary file(s): convert it with "
        "`bmc import` and read the markdown it produces]",
    ]
    assert "secret" not in call(tb, "grep", pattern="secret").text
    assert call(tb, "grep", pattern="x", path=".bmc/sessions/s.jsonl").is_error


def test_grep_caps_lines_and_shortens_long_ones(tb: Toolbox, project: Project) -> None:
    (project.project_dir / "many.md").write_text("hit\n" * 500)
    lines = call(tb, "grep", pattern="hit", path="many.md").text.splitlines()
    assert len(lines) == tools.GREP_MAX_LINES + 1 and "stopped after 200" in lines[-1]
    (project.project_dir / "long.md").write_text("a" * 5000 + " needle " + "b" * 5000 + "\n")
    (line,) = call(tb, "grep", pattern="needle", path="long.md").text.splitlines()
    assert "needle" in line and len(line) < tools.GREP_SHOWN_CHARS + 40
    assert line.startswith("long.md:1: …") and line.endswith("…")


def test_grep_output_is_capped_in_bytes(tb: Toolbox, project: Project) -> None:
    (project.project_dir / "wide.md").write_text(("hit " + "w" * 396 + "\n") * 190)
    text = call(tb, "grep", pattern="hit", path="wide.md").text
    assert len(text.encode()) < tools.GREP_MAX_BYTES + 200 and "stopped after" in text


def test_grep_refuses_a_bad_regex(tb: Toolbox) -> None:
    outcome = call(tb, "grep", pattern="(unclosed")
    assert outcome.is_error and "invalid regular expression" in outcome.text


def test_grep_stops_a_runaway_regex(tb: Toolbox, project: Project) -> None:
    (project.project_dir / "a.md").write_text("a" * 40 + "b\n")
    tb.grep_seconds = 0.5
    began = time.monotonic()
    outcome = call(tb, "grep", pattern="(a+)+$", path="a.md")
    assert time.monotonic() - began < 5
    assert outcome.is_error and "simplify the pattern" in outcome.text


def test_deeply_nested_folders_do_not_break_the_walk(tb: Toolbox, project: Project) -> None:
    too_deep = "d/" * 100 + "x.md"
    outcome = call(tb, "write", file_path=too_deep, content="x")
    assert outcome.is_error and "nested too deeply" in outcome.text
    folders = [project.project_dir]
    for _ in range(1200):  # a person's tree deeper than Python's recursion limit
        folders.append(folders[-1] / "d")
        folders[-1].mkdir()
    (folders[-1] / "deep.md").write_text("ferry deep\n")
    deep = "d/" * 1200 + "deep.md"
    try:
        assert call(tb, "glob", pattern="**/deep.md").text == deep
        assert call(tb, "grep", pattern="ferry deep").text == f"{deep}:1: ferry deep"
        assert call(tb, "read", file_path=deep).text == "ferry deep\n"
    finally:
        # pytest's own clean-up recurses and would overflow on this tree: take it down here.
        (folders[-1] / "deep.md").unlink()
        for folder in reversed(folders[1:]):
            folder.rmdir()


def test_a_relative_skill_folder_is_not_read_against_the_project(
    project: Project, skill: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(skill.parent)
    tb = Toolbox(project, Path(skill.name))
    assert call(tb, "read", file_path="skill/references/template.md").text == "# Template\n"
