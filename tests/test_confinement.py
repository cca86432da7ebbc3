"""The model's file tools cannot reach outside one project, nor touch what is never writable.

An attack corpus of path spellings is tried against every tool; a snapshot of the whole tmp
tree (and of /etc) must be byte-identical afterwards. A property test throws random paths at
the same tools and checks every path the toolbox would operate on.
"""

from __future__ import annotations

import ast
import hashlib
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bmc.workspace import confine
from bmc.workspace.confine import Refused
from bmc.workspace.paths import Project, init_project
from bmc.workspace.tools import Toolbox, ToolOutcome

SECRET = "TOP-SECRET-DO-NOT-LEAK"
OPS = ("read", "write", "edit", "glob", "grep")


@dataclass
class World:
    root: Path
    project: Project
    skill: Path
    places: dict[str, str]  # placeholders for the corpus: {project}, {sibling}, ...


def build_world(root: Path) -> World:
    ws = root / "ws"
    project = init_project(ws, "acme", "growth-2027", "Acme")
    sibling = init_project(ws, "acme", "growth-2027-evil", None)
    other = init_project(ws, "other-org", "p", None)
    skill = root / "skills" / "bmc-segments"
    outside = root / "outside"
    files = {
        project.project_dir / "brief.md": "brief\n",
        project.project_dir / "brief.agreed.md": "agreed brief\n",
        project.project_dir / "decisions.md": "## agreed\n",
        project.project_dir / "segments/segments.md": "segments\n",
        project.project_dir / "segments/segments.agreed.md": "agreed segments\n",
        project.project_dir / "segments/drafts/a.md": "draft a\n",
        project.state_dir / "sessions/s.jsonl": f"{SECRET} journal\n",
        project.resources_dir / "market.md": "market research\n",
        project.inbox_dir / "raw.txt": "raw notes\n",
        skill / "SKILL.md": "---\nname: bmc-segments\n---\n",
        skill / "references/template.md": "template\n",
        sibling.project_dir / "secret.md": f"{SECRET} sibling\n",
        other.resources_dir / "secret.md": f"{SECRET} other org\n",
        outside / "secret.md": f"{SECRET} outside\n",
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    links = {
        "link-etc": "/etc",
        "link-outside": str(outside),
        "link-sibling": str(sibling.project_dir),
        "link-sibling-rel": "../growth-2027-evil",
        "link-other-org": str(other.resources_dir),
        "link-resources": str(project.resources_dir),  # allowed: the org's resources
        "link-inbox": str(project.inbox_dir),
        "link-skill": str(skill),
        "link-up": "..",
        "link-self": ".",
        "dangling-out": str(outside / "new.md"),
        "dangling-out-dir": str(outside / "newdir"),
        "loop-a": "loop-b",
        "loop-b": "loop-a",
        "link-bmc": ".bmc",
        "link-gate.md": "brief.agreed.md",
        "link-decisions": "decisions.md",
        "dangling-gate.md": "segments/new.agreed.md",
    }
    for name, target in links.items():
        os.symlink(target, project.project_dir / name)
    os.symlink(str(outside), project.resources_dir / "link-out")
    os.symlink(str(sibling.project_dir), project.resources_dir / "link-sibling")
    places = {
        "project": str(project.project_dir),
        "sibling": str(sibling.project_dir),
        "resources": str(project.resources_dir),
        "ws": str(ws),
        "outside": str(outside),
        "skill": str(skill),
    }
    return World(root, project, skill, places)


def snapshot(root: Path) -> dict[str, str]:
    """Every path under `root` (symlinks not followed) -> its bytes' hash, link or kind."""
    found: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                kind = "link:" + os.readlink(path)
            elif stat.S_ISDIR(mode):
                kind = "dir"
            elif stat.S_ISREG(mode):
                kind = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                kind = "special"
            found[str(path.relative_to(root))] = kind
    return found


def etc_snapshot() -> tuple[str, frozenset[str]]:
    passwd = hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest()
    return passwd, frozenset(os.listdir("/etc"))


# Refused by every tool: the path leaves the permitted roots or enters .bmc/.
ESCAPES = [
    "..",
    "../..",
    "../../../../../../../../etc/passwd",
    "../growth-2027-evil/secret.md",
    "../growth-2027-evil",
    "./../growth-2027-evil",
    "segments/../../growth-2027-evil/secret.md",
    "a/b/../../../x.md",
    "/etc/passwd",
    "//etc/passwd",
    "/",
    "{sibling}/secret.md",
    "{sibling}",
    "{project}-evil/secret.md",
    "{project}/../growth-2027-evil/secret.md",
    "{ws}/clients/other-org/resources/secret.md",
    "{outside}/secret.md",
    "resources/../..",
    "resources/../../other-org/resources/secret.md",
    "resources/../../../other-org",
    "inbox/../../..",
    "skill/../../x.md",
    "link-etc/passwd",
    "link-etc",
    "link-outside/secret.md",
    "link-sibling/secret.md",
    "link-sibling-rel/secret.md",
    "link-other-org/secret.md",
    "link-up/growth-2027-evil/secret.md",
    "link-up",
    "dangling-out",
    "dangling-out-dir/x.md",
    "loop-a",
    "loop-a/x.md",
    "resources/link-out/secret.md",
    "resources/link-sibling/secret.md",
    "segments\x00.md",
    "brief.md\x00../../etc/passwd",
    "\x00",
    ".bmc/sessions/s.jsonl",
    ".bmc",
    ".BMC/sessions/s.jsonl",
    "./.bmc/sessions/s.jsonl",
    ".bmc./sessions/s.jsonl",
    ".bmc /sessions/s.jsonl",
    "segments/../.bmc/sessions/s.jsonl",
    "link-bmc/sessions/s.jsonl",
    "link-self/.bmc/sessions/s.jsonl",
    "{project}/.bmc/sessions/s.jsonl",
    "．．/growth-2027-evil/secret.md",  # fullwidth full stops
    ".. /growth-2027-evil/secret.md",
    ".../etc/passwd",
    ".\u200b./growth-2027-evil",  # zero-width space between the dots
    "．ｂｍｃ/sessions/s.jsonl",
]

# Readable (or at least not an escape), but never writable.
NO_WRITE = [
    "brief.agreed.md",
    "segments/segments.agreed.md",
    "segments/SEGMENTS.AGREED.MD",
    "x.Agreed.md",
    "brief.agreed.md.",
    "brief.agreed.md ",
    "brief.agreed.md. . ",
    "brief.agreed.md::$DATA",
    "segments/drafts/../segments.agreed.md",
    "segments//segments.agreed.md",
    "segments/ＳＥＧＭＥＮＴＳ.ＡＧＲＥＥＤ.ＭＤ",
    "brief.agreed.md/inner.md",
    "{project}/brief.agreed.md",
    "decisions.md",
    "./decisions.md",
    "DECISIONS.md",
    "decisions.md.",
    "Decisions.MD ",
    "ｄecisions.md",
    "decisions\u200b.md",
    "decisions.md/x.md",
    "{project}/decisions.md",
    "link-gate.md",
    "link-decisions",
    "dangling-gate.md",
    "inbox/raw.txt",
    "inbox/new.md",
    "inbox/../inbox/raw.txt",
    "link-inbox/raw.txt",
    "skill/SKILL.md",
    "skill/references/new.md",
    "{skill}/SKILL.md",
    "link-skill/SKILL.md",
    "resources/market.md",
    "resources/new.md",
    "{resources}/market.md",
    "link-resources/market.md",
    "link-resources/new.md",
]


# Names harmless on Linux that a write must not create: on Windows or in a git checkout they
# are a traversal, a drive, a device, a home folder or simply impossible.
NON_PORTABLE = [
    "segments\\..\\..\\..\\other-client\\x.md",
    "..\\growth-2027-evil\\secret.md",
    "segments/drafts/a\\b.md",
    "~/x.md",
    "~x.md",
    "segments/~$draft.md",
    "C:x.md",
    "notes:2027.md",
    "brief.md:stream",
    "x<y>.md",
    'say "hi".md',
    "a|b.md",
    "why?.md",
    "*.md",
    "notes.",
    "notes ",
    "segments./x.md",
    "drafts /x.md",
    "con",
    "CON.md",
    "nul.md",
    "Aux.tar.gz",
    "com1.md",
    "LPT9",
    "prn .md",
    "com¹.md",
    "new-folder/con/x.md",
    "segments/drafts/nul",
    "tab\there.md",
    "line\nbreak.md",
    "bell\x07.md",
    "del\x7f.md",
    "next-line\x85.md",
]


def _spell(template: str, world: World) -> str:
    return template.format(**world.places) if "{" in template else template


def _try_everything(tb: Toolbox, path: str) -> dict[str, ToolOutcome]:
    calls = {
        "read": {"file_path": path},
        "write": {"file_path": path, "content": "pwned\n"},
        "edit": {"file_path": path, "old_string": "e", "new_string": "pwned"},
        "glob": {"pattern": "**", "path": path},
        "grep": {"pattern": ".", "path": path},
    }
    return {name: tb.run(name, tool_input) for name, tool_input in calls.items()}


def _assert_reasoned(outcome: ToolOutcome, op: str, path: str) -> None:
    assert outcome.is_error, f"{op} {path!r} was not refused: {outcome.text[:200]}"
    first_line = outcome.text.splitlines()[0]
    assert first_line.startswith(f"{op}: ") and len(first_line) > len(op) + 10
    assert SECRET not in outcome.text


@pytest.fixture
def world(tmp_path: Path) -> World:
    return build_world(tmp_path)


def test_corpus_is_big_enough() -> None:
    assert len(ESCAPES) + len(NO_WRITE) >= 40


@pytest.mark.parametrize("template", ESCAPES)
def test_escape_is_refused_by_every_tool(world: World, template: str) -> None:
    path = _spell(template, world)
    tb = Toolbox(world.project, world.skill)
    before, etc_before = snapshot(world.root), etc_snapshot()
    for for_write in (False, True):
        with pytest.raises(Refused):  # checked before any tool can act on it
            tb.resolve(path, for_write=for_write)
    outcomes = _try_everything(tb, path)
    for op, outcome in outcomes.items():
        _assert_reasoned(outcome, op, path)
    assert snapshot(world.root) == before
    assert etc_snapshot() == etc_before
    assert tb.read_hashes == {}


@pytest.mark.parametrize("template", NO_WRITE)
def test_protected_or_read_only_path_is_never_written(world: World, template: str) -> None:
    path = _spell(template, world)
    tb = Toolbox(world.project, world.skill)
    before, etc_before = snapshot(world.root), etc_snapshot()
    with pytest.raises(Refused):
        tb.resolve(path, for_write=True)
    tb.run("read", {"file_path": path})  # a read first, so refusals are not "read it first"
    outcomes = _try_everything(tb, path)
    for op in ("write", "edit"):
        _assert_reasoned(outcomes[op], op, path)
        assert "read it" not in outcomes[op].text
    for outcome in outcomes.values():
        assert SECRET not in outcome.text
    assert snapshot(world.root) == before
    assert etc_snapshot() == etc_before


@pytest.mark.parametrize("path", NON_PORTABLE)
def test_a_name_that_does_not_travel_is_never_created(world: World, path: str) -> None:
    tb = Toolbox(world.project, world.skill, resources_writable=True)
    before = snapshot(world.root)
    for op in ("write", "edit"):
        outcome = _try_everything(tb, path)[op]
        _assert_reasoned(outcome, op, path)
        assert "\n" not in outcome.text
        # What is wrong, and what to write instead.
        assert outcome.text.startswith(f"{op}: the name '")
        assert "use letters, digits, '-', '_' and '.'" in outcome.text or (
            "device name on Windows" in outcome.text and "-1" in outcome.text
        )
    for op in ("read", "glob", "grep"):  # nothing by that name: looked for, never refused as such
        assert "the name" not in _try_everything(tb, path)[op].text
    assert snapshot(world.root) == before


def test_the_traversal_spelled_for_windows_says_what_to_use(world: World) -> None:
    tb = Toolbox(world.project, world.skill)
    path = "segments\\..\\..\\..\\other-client\\x.md"
    outcome = tb.run("write", {"file_path": path, "content": "x\n"})
    assert outcome.text == (
        f"write: the name '{path}' contains a backslash, which Windows reads as a folder "
        "separator: use letters, digits, '-', '_' and '.' in names and '/' between folders "
        "(e.g. segments/drafts/retail-banks.md)"
    )
    home = tb.run("write", {"file_path": "~/x.md", "content": "x\n"})
    assert home.text.startswith("write: the name '~' starts with '~', which a shell reads as")
    device = tb.run("write", {"file_path": "segments/drafts/aux.md", "content": "x\n"})
    assert device.is_error and device.text.endswith("add to it, e.g. aux-1.md")
    assert not tb.run("write", {"file_path": "segments/drafts/aux-1.md", "content": "x\n"}).is_error


def test_whole_corpus_leaves_every_file_as_it_was(world: World) -> None:
    tb = Toolbox(world.project, world.skill)
    before, etc_before = snapshot(world.root), etc_snapshot()
    for template in ESCAPES + NO_WRITE + NON_PORTABLE:
        path = _spell(template, world)
        tb.run("read", {"file_path": path})
        _try_everything(tb, path)
    assert snapshot(world.root) == before
    assert etc_snapshot() == etc_before


def test_symlink_to_org_resources_is_followed_for_reading(world: World) -> None:
    tb = Toolbox(world.project, world.skill)
    outcome = tb.run("read", {"file_path": "link-resources/market.md"})
    assert outcome == ToolOutcome("market research\n", False)
    assert (
        tb.resolve("link-resources/market.md").path
        == (world.project.resources_dir / "market.md").resolve()
    )


def test_symlink_inside_project_is_followed_for_writing(world: World) -> None:
    tb = Toolbox(world.project, world.skill)
    os.symlink("segments/drafts", world.project.project_dir / "drafts")
    outcome = tb.run("write", {"file_path": "drafts/b.md", "content": "b\n"})
    assert not outcome.is_error, outcome.text
    assert (world.project.project_dir / "segments/drafts/b.md").read_text() == "b\n"


def test_resources_writable_still_refuses_links_out_and_gates(world: World) -> None:
    tb = Toolbox(world.project, world.skill, resources_writable=True)
    assert not tb.run("write", {"file_path": "resources/index.md", "content": "i\n"}).is_error
    for path in ("resources/link-out/x.md", "resources/x.agreed.md", "inbox/x.md", "skill/x.md"):
        assert tb.run("write", {"file_path": path, "content": "x"}).is_error, path
    assert not (world.root / "outside/x.md").exists()


def test_glob_and_grep_never_list_or_search_outside(world: World) -> None:
    tb = Toolbox(world.project, world.skill)
    listing = tb.run("glob", {"pattern": "**"}).text.splitlines()
    assert "brief.md" in listing and "resources/market.md" in listing
    assert "link-resources/market.md" in listing  # a link that stays inside is followed
    forbidden = (
        "link-etc",
        "link-outside",
        "link-sibling",
        "link-other-org",
        "link-up",
        "dangling-out",
        "loop-a",
        "link-bmc",
        ".bmc",
        "resources/link-out",
    )
    for line in listing:
        assert not line.startswith(forbidden), line
    for pattern in (SECRET, "root:x:0:", "journal"):
        assert tb.run("grep", {"pattern": pattern}).text == "no matches"
        assert tb.run("grep", {"pattern": pattern, "path": "."}).text == "no matches"
        assert tb.run("grep", {"pattern": pattern, "path": "link-self"}).text == "no matches"


def test_a_homoglyph_name_is_a_harmless_new_file_inside_the_project(world: World) -> None:
    tb = Toolbox(world.project, world.skill)
    outcome = tb.run("write", {"file_path": "dеcisions.md", "content": "x\n"})  # Cyrillic е
    assert not outcome.is_error
    assert (world.project.project_dir / "dеcisions.md").read_text() == "x\n"
    assert (world.project.project_dir / "decisions.md").read_text() == "## agreed\n"


def test_a_root_swapped_for_a_link_mid_session_leads_nowhere(world: World) -> None:
    # The roots are resolved once per toolbox; the SDK resolves them again on every call.
    # A path must lie inside both, so a root moved after the start cannot widen the reach.
    tb = Toolbox(world.project, world.skill)
    assert tb.run("read", {"file_path": "resources/market.md"}).text == "market research\n"
    resources = world.project.resources_dir
    shutil.rmtree(resources)
    os.symlink(world.root / "outside", resources)
    for op, outcome in _try_everything(tb, "resources/secret.md").items():
        _assert_reasoned(outcome, op, "resources/secret.md")
    assert SECRET not in tb.run("grep", {"pattern": "TOP"}).text


def test_no_private_name_of_the_sdk_is_imported() -> None:
    # A private helper can change in any SDK release; the checks we rely on are our own
    # (with the public `resolve_path`), so an upgrade cannot silently drop one.
    private = []
    for module in sorted(Path(confine.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(module.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("anthropic"):
                names = [node.module or "", *(alias.name for alias in node.names)]
                private += [
                    f"{module.name}: {n}"
                    for n in names
                    if any(part.startswith("_") for part in n.split("."))
                ]
    assert private == []


# -- property tests ---------------------------------------------------------------------------

TOKENS = [
    "./",
    "..",
    "/",
    "a",
    "b",
    "resources",
    "inbox",
    "skill",
    "\x00",
    " ",
    ".",
    "..",
    "link-etc",
    "link-resources",
    "link-outside",
    "link-up",
    "loop-a",
    "link-bmc",
    "decisions.md",
    "brief.agreed.md",
    "x.Agreed.md",
    ".bmc",
    ".BMC",
    "segments",
]


def _fold(name: str) -> str:
    return name.casefold().rstrip(". ")


def _permitted(world: World, path: Path, *, for_write: bool) -> bool:
    """An independent oracle: is `path` somewhere the toolbox may operate?"""
    if Path(os.path.realpath(path)) != path:  # every symlink must already be followed
        return False
    roots = {
        "project": world.project.project_dir.resolve(),
        "resources": world.project.resources_dir.resolve(),
        "inbox": world.project.inbox_dir.resolve(),
        "skill": world.skill.resolve(),
    }
    holders = [name for name, root in roots.items() if path.is_relative_to(root)]
    if not holders:
        return False
    rel = path.relative_to(roots[holders[0]]).parts
    if any(_fold(part) == ".bmc" for part in rel):
        return False
    if not for_write:
        return True
    if holders != ["project"]:
        return False
    if any(_fold(part).endswith(".agreed.md") for part in rel):
        return False
    return not (rel and _fold(rel[0]) == "decisions.md")


paths = st.one_of(
    st.tuples(
        st.sampled_from(["", "", "", "/", "{project}/", "{ws}/", "{resources}/"]),
        st.lists(st.sampled_from(TOKENS), max_size=8).map("".join),
    ).map(lambda t: t[0] + t[1]),
    st.text(alphabet="./ab \x00", max_size=12),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(template=paths)
def test_random_paths_never_lead_outside(
    tmp_path_factory: pytest.TempPathFactory, template: str
) -> None:
    world = _shared_world(tmp_path_factory)
    path = template.format(**world.places)
    tb = Toolbox(world.project, world.skill)
    outside_before = _outside_project(world)
    for for_write in (False, True):
        try:
            target = tb.resolve(path, for_write=for_write)
        except Refused:
            continue
        assert _permitted(world, target.path, for_write=for_write), (path, target)
    outcomes = _try_everything(tb, path)
    assert all(isinstance(o, ToolOutcome) for o in outcomes.values())
    _assert_same(_outside_project(world), outside_before)


_WORLDS: dict[int, World] = {}


def _shared_world(factory: pytest.TempPathFactory) -> World:
    # One world per test session: hypothesis runs the body many times, writes inside the
    # project are allowed to accumulate, and everything else must never change.
    key = id(factory)
    if key not in _WORLDS:
        _WORLDS[key] = build_world(factory.mktemp("hypothesis-world"))
    return _WORLDS[key]


Snapshot = tuple[dict[str, str], tuple[str, frozenset[str]]]


def _outside_project(world: World) -> Snapshot:
    """Everything but the project's ordinary files: the tree outside it, its protected files."""
    project = world.project.project_dir.relative_to(world.root)
    kept = {}
    for path, kind in snapshot(world.root).items():
        if not Path(path).is_relative_to(project):
            kept[path] = kind
            continue
        rel = Path(path).relative_to(project).parts
        if (
            not rel
            or rel[0] == ".bmc"
            or _fold(rel[0]) == "decisions.md"
            or any(_fold(p).endswith(".agreed.md") for p in rel)
            or os.path.islink(world.root / path)
        ):
            kept[path] = kind
    return kept, etc_snapshot()


def _assert_same(after: Snapshot, before: Snapshot) -> None:
    changed = {
        path
        for path in after[0].keys() | before[0].keys()
        if after[0].get(path) != before[0].get(path)
    }
    assert not changed, sorted(changed)
    assert after[1] == before[1]


tool_inputs = st.dictionaries(
    st.sampled_from(
        [
            "file_path",
            "content",
            "old_string",
            "new_string",
            "replace_all",
            "view_range",
            "pattern",
            "path",
            "junk",
        ]
    ),
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-3, 3),
        st.text(max_size=12),
        st.lists(st.integers(-2, 5), max_size=3),
        st.sampled_from(TOKENS),
    ),
)


@settings(max_examples=100, deadline=None)
@given(
    name=st.sampled_from([*OPS, "bash", ""]),
    tool_input=st.one_of(tool_inputs, st.none(), st.text(max_size=5)),
)
def test_any_tool_input_gets_an_outcome_never_an_exception(
    tmp_path_factory: pytest.TempPathFactory, name: str, tool_input: object
) -> None:
    world = _shared_world(tmp_path_factory)
    tb = Toolbox(world.project, world.skill)
    before = _outside_project(world)
    outcome = tb.run(name, tool_input)
    assert isinstance(outcome, ToolOutcome) and outcome.text
    _assert_same(_outside_project(world), before)


def test_the_ascii_shortcut_of_fold_gives_what_the_full_rule_gives() -> None:
    import unicodedata

    from bmc.workspace.confine import fold

    def full(name: str) -> str:
        name = unicodedata.normalize("NFKC", name)
        name = "".join(ch for ch in name if unicodedata.category(ch) != "Cf")
        return name.casefold().rstrip(". ")

    ascii_chars = [chr(i) for i in range(128)]
    names = [*ascii_chars, *(a + b for a in ascii_chars for b in ascii_chars)]
    names += [".BMC", "Decisions.MD.", "brief.AGREED.md . ", "nul.md", "x:y"]
    assert all(fold(name) == full(name) for name in names)
