"""Validation of `canvas/canvas.md`: a corpus of broken canvases, each refused with problems
naming the right block; the checks against the agreed segments (exactly those segments,
every agreed value proposition, a channel, relationship and revenue stream for each, no
unknown segment anywhere); quotes grounded in the research; `validate_project` and its cache;
and the bmc-canvas skill's metadata.

The project is the demo's: the fixture workspace with the segments the demo scenario writes
(every write and edit of fixtures/scenarios/demo-segments.json replayed), agreed as they
stand. The canvas is fixtures/canvas/tidewater-canvas.md.

Runtime: 3-7 s depending on machine load (each mutating test copies the 50 KB fixture).
"""

# Canvas items quote research sentences verbatim: long lines are the format.
# ruff: noqa: E501

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bmc.documents.schemas.canvas import parse_canvas
from bmc.documents.skills import load_skill
from bmc.documents.validate import make_validator, validate_project
from bmc.workspace.paths import Project
from projects import (
    FIXTURES,
    Defect,
    count_checks,
    defect,
    demo_segment_files,
    problems_on_disk,
    sections,
    write,
)

CANVAS_PATH = "canvas/canvas.md"
AGREED = "segments/segments.agreed.md"
CANVAS = (FIXTURES / "canvas" / "tidewater-canvas.md").read_text(encoding="utf-8")
SEGMENT_NAMES = [
    "Island commuters",
    "Island residents on non-work trips",
    "Visitors and day-trippers",
    "Freight hauliers and island businesses",
    "Public-service partners",
]


def make_project(root: Path, agreed: bool = True) -> Project:
    shutil.copytree(FIXTURES / "workspace", root / "workspace")
    project = Project(root / "workspace", "tidewater", "growth-2027")
    for path, content in demo_segment_files().items():
        write(project, path, content)
    if agreed:
        write(project, AGREED, demo_segment_files()["segments/segments.md"])
    return project


@pytest.fixture(scope="module")
def agreed(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A project with agreed segments, shared by the tests that only read it."""
    return make_project(tmp_path_factory.mktemp("agreed"))


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A project with agreed segments that a test may change."""
    return make_project(tmp_path)


def check(project: Project, content: str) -> tuple[list[str], list[str]]:
    return make_validator(project)(CANVAS_PATH, content)


def replaced(old: str, new: str, text: str = CANVAS) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def cut(start: str, end: str, text: str = CANVAS, insert: str = "") -> str:
    """`text` with `insert` in place of everything from `start` up to (not including) `end`."""
    return text[: text.index(start)] + insert + text[text.index(end) :]


def without_block(heading: str) -> str:
    start = CANVAS.index(f"## {heading}\n")
    end = CANVAS.find("\n## ", start + 1)
    return CANVAS[:start].rstrip("\n") + "\n" if end < 0 else CANVAS[:start] + CANVAS[end + 1 :]


def line(prefix: str, text: str = CANVAS) -> int:
    """The 1-based number of the first line of `text` starting with `prefix`."""
    return next(n for n, got in enumerate(text.split("\n"), start=1) if got.startswith(prefix))


def without_item(first_line: str, text: str = CANVAS) -> str:
    """`text` without the item whose line starts with `first_line`, sub-bullets included."""
    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(first_line))
    end = start + 1
    while lines[end].startswith("  "):
        end += 1
    return "\n".join(lines[:start] + lines[end:])


# --- the fixture canvas ------------------------------------------------------------------------


def test_the_demo_segments_are_the_five_agreed_ones(agreed: Project) -> None:
    reports = {r.path: r.status for r in validate_project(agreed)}
    assert set(reports.values()) == {"valid", "missing"}
    assert reports[CANVAS_PATH] == "missing"
    assert len([p for p in reports if p.startswith("segments/drafts/")]) == 5
    text = (agreed.project_dir / AGREED).read_text()
    assert all(f". {name}\n" in text for name in SEGMENT_NAMES)


def test_the_fixture_canvas_is_valid_against_the_agreed_segments(agreed: Project) -> None:
    assert check(agreed, CANVAS) == ([], [])


def test_a_written_canvas_is_reported_valid(project: Project) -> None:
    write(project, CANVAS_PATH, CANVAS)
    [report] = validate_project(project, [CANVAS_PATH])
    assert (report.status, report.problems, report.warnings) == ("valid", [], [])


# --- broken canvases, each refused naming its block ------------------------------------------

SMS = "- **SMS disruption alerts** (awareness, after-sales) — "
SMS_EVIDENCE = '  - Evidence: `resources/passenger-survey-2026.md`: "The text alert comes after'
FLEET = "- **Fleet of five vessels** (physical) — "

DEFECTS: dict[str, Defect] = {
    "no title": defect(
        CANVAS.replace("# Business Model Canvas — Tidewater Ferries Ltd\n\n", ""),
        "Title",
        says="must start with the title",
    ),
    "wrong title": defect(
        replaced("# Business Model Canvas — ", "# Canvas of "),
        "Title",
        says="is not `# Business Model Canvas — <Organisation>`",
    ),
    "block missing": defect(
        without_block("Key Activities"),
        "Key Activities",
        says="the section is missing; add `## Key Activities`",
    ),
    "tensions missing": defect(
        without_block("Tensions and Observations"),
        "Tensions and Observations",
        says="the section is missing",
    ),
    "unknown block": defect(
        CANVAS + "\n## Next Steps\n\nMeet the council.\n",
        "Next Steps",
        says="is not a section of a canvas",
    ),
    "block twice": defect(
        CANVAS + "\n## Key Resources\n\n- **Piers** (physical) — x\n",
        "Key Resources",
        says="appears twice",
    ),
    "item without evidence": defect(
        replaced(
            '  - Evidence: `resources/stakeholder-interviews.md`: "A replacement for MV Carra Bay is in the capital plan for 2029 but is not funded."\n',
            "",
        ),
        "Key Resources",
        says=f'"Fleet of five vessels" (line {line(FLEET)}) has no evidence',
    ),
    "evidence not in the form": defect(
        replaced(SMS_EVIDENCE, "  - Evidence: the survey says alerts come late, but"),
        "Channels",
        says='is not of the form `  - Evidence: `resources/<file>.md`: "<verbatim quote>"`',
    ),
    "evidence with an empty quote": defect(
        replaced(
            '"Certainty is worth more to me than the rate. Give me a guaranteed lane on the 05:50 and I\'ll sign for a year."',
            '""',
        ),
        "Value Propositions",
        says="has an empty quote",
    ),
    "unknown channel phase": defect(
        replaced("(awareness, after-sales)", "(awareness, retention)"),
        "Channels",
        says='has "retention" as its phase; write one of awareness, evaluation, purchase, delivery, after-sales',
    ),
    "channel without a phase": defect(
        replaced(SMS, "- **SMS disruption alerts** — "),
        "Channels",
        says="has no phase; write it in parentheses after the name",
    ),
    "unknown relationship type": defect(
        replaced("(personal) — Desk and phone staff", "(transactional) — Desk and phone staff"),
        "Customer Relationships",
        says='has "transactional" as its relationship type',
    ),
    "revenue stream without a pricing mechanism": defect(
        replaced("(usage fee; fixed rate per lane metre)", "(usage fee)"),
        "Revenue Streams",
        says="needs both a revenue type and a pricing mechanism",
    ),
    "unknown resource kind": defect(
        replaced(FLEET, "- **Fleet of five vessels** (tangible) — "),
        "Key Resources",
        says="write one of physical, intellectual, human, financial",
    ),
    "unknown activity kind": defect(
        replaced("(production)", "(operations)"),
        "Key Activities",
        says="write one of production, problem solving, platform/network",
    ),
    "partnership without a category": defect(
        replaced(
            "- **Tidewater Marine Engineering Ltd** (supplier) — ",
            "- **Tidewater Marine Engineering Ltd** — ",
        ),
        "Key Partnerships",
        says="has no partnership category",
    ),
    "cost neither fixed nor variable": defect(
        replaced("- **Fuel** (variable)", "- **Fuel** (semi-variable)"),
        "Cost Structure",
        says="write one of fixed, variable",
    ),
    "no cost orientation": defect(
        replaced(
            "Orientation: cost-driven — 79% of the £31.5m cost base is fixed, and the lifeline timetable sets most of it.\n\n",
            "",
        ),
        "Cost Structure",
        says="no orientation is given",
    ),
    "unknown cost orientation": defect(
        replaced("Orientation: cost-driven —", "Orientation: lean —"),
        "Cost Structure",
        says="is not an orientation",
    ),
    "resource without a Serves line": defect(
        replaced(
            '  - Serves: Public-service partners\n  - Evidence: `resources/financials-2025.md`: "Term 1 April',
            '  - Evidence: `resources/financials-2025.md`: "Term 1 April',
        ),
        "Key Resources",
        says=f'"Public Service Contract" (line {line("- **Public Service Contract** ")}) has no `Serves:` line',
    ),
    "a channel outside any segment subsection": defect(
        replaced(
            "## Channels\n\n### Island commuters\n\n",
            "## Channels\n\n- **Posters** (awareness) — x\n\n### Island commuters\n\n",
        ),
        "Channels",
        says="is not under a `### <Segment name>` subsection",
    ),
    "a segment subsection without items": defect(
        without_item(
            "- **Contract management**",
            without_item("- **Health trust account and school-call contract**"),
        ),
        "Channels",
        says="has no items; list them as `- **Name** (one or more of awareness, evaluation, purchase, delivery, after-sales, separated by commas) — description`, or remove the subsection",
    ),
    "subsection in a block served by Serves lines": defect(
        replaced("## Key Resources\n\n", "## Key Resources\n\n### Island commuters\n\n"),
        "Key Resources",
        says="only Value Propositions and Channels have `### <Segment>` subsections",
    ),
    "item listed twice": defect(
        replaced("- **Fuel** (variable)", "- **Vessel depreciation and lease** (variable)"),
        "Cost Structure",
        says='"Vessel depreciation and lease" is listed twice',
    ),
    "segment with an attribute": defect(
        replaced(
            "- **Visitors and day-trippers** — ", "- **Visitors and day-trippers** (leisure) — "
        ),
        "Customer Segments",
        says="Customer Segments items take no attribute",
    ),
    "item without a description": defect(
        replaced(
            "- **Fuel** (variable) — £4.9m, the largest variable cost, rising with every extra sailing.",
            "- **Fuel** (variable)",
        ),
        "Cost Structure",
        says=f'"Fuel" (line {line("- **Fuel**")}) has no description',
    ),
    "a sub-bullet that is neither Serves nor Evidence": defect(
        replaced(
            "  - Serves: Visitors and day-trippers\n  - Evidence: `resources/tourism-market.md`: \"We'd put",
            "  - Serves: Visitors and day-trippers\n  - Owner: the commercial team\n  - Evidence: `resources/tourism-market.md`: \"We'd put",
        ),
        "Key Partnerships",
        says="that is neither `Serves:` nor `Evidence:`",
    ),
    "stray paragraph": defect(
        replaced("## Key Resources\n\n", "## Key Resources\n\nThe fleet is old.\n\n"),
        "Key Resources",
        says='("The fleet is old.") is not an item',
    ),
    "empty tensions": defect(
        CANVAS[: CANVAS.index("## Tensions and Observations")] + "## Tensions and Observations\n",
        "Tensions and Observations",
        says="the section is empty",
    ),
    "empty file": defect("", "File", says="the canvas is empty"),
    "binary file": defect(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "File", says="binary"),
}


def test_the_corpus_has_at_least_fifteen_defects() -> None:
    assert len(DEFECTS) >= 15


@pytest.mark.parametrize("name", sorted(DEFECTS))
def test_a_broken_canvas_is_refused_naming_its_block(
    agreed: Project, tmp_path: Path, name: str
) -> None:
    case = DEFECTS[name]
    if isinstance(case.content, bytes):  # written to a project of its own: `agreed` is shared
        problems = problems_on_disk(make_project(tmp_path), CANVAS_PATH, case.content)
    else:
        problems, _ = check(agreed, case.content)
        assert isinstance(parse_canvas(case.content), list)
    assert sections(problems) == case.sections, problems
    assert any(case.says in problem for problem in problems), problems
    assert all("\n" not in problem for problem in problems)


def test_every_problem_comes_in_one_answer(agreed: Project) -> None:
    broken = replaced("(production)", "(operations)")
    broken = replaced("Orientation: cost-driven —", "Orientation: lean —", broken)
    broken = replaced("If the 06:40 goes off", "If the 06:50 goes off", broken)
    broken = replaced(
        "### Public-service partners\n\n- **Lifeline", "### Councils\n\n- **Lifeline", broken
    )
    problems, _ = check(agreed, broken)
    assert sections(problems) == {"Key Activities", "Cost Structure", "Value Propositions"}
    assert len(problems) == 5, problems  # kind, orientation, quote, unknown and missing subsection


# --- against the agreed segments -------------------------------------------------------------


def test_an_extra_segment_is_refused(agreed: Project) -> None:
    canvas = replaced(
        "- **Public-service partners** — ",
        "- **Students** — Young islanders at college on the mainland.\n"
        '  - Evidence: `resources/passenger-survey-2026.md`: "68% say the last sailing is too early"\n'
        "- **Public-service partners** — ",
    )
    problems, _ = check(agreed, canvas)
    assert problems == [
        f'Customer Segments: "Students" (line {line("- **Public-service partners**")}) is listed, which is not an agreed segment '
        '(the agreed ones are "Island commuters", "Island residents on non-work trips", '
        '"Visitors and day-trippers", "Freight hauliers and island businesses", '
        '"Public-service partners"): use the agreed names, or change the segments in '
        "bmc-segments and have them agreed again"
    ]


def test_a_missing_segment_is_refused(agreed: Project) -> None:
    problems, _ = check(agreed, without_item("- **Visitors and day-trippers** — "))
    assert problems == [
        'Customer Segments: the agreed segment "Visitors and day-trippers" is missing; add '
        "`- **Visitors and day-trippers** — <one line>` with its evidence"
    ]


def test_segment_names_match_whatever_the_case_and_spacing(agreed: Project) -> None:
    canvas = CANVAS.replace("**Island commuters**", "**island  Commuters**").replace(
        "### Island commuters", "### ISLAND COMMUTERS"
    )
    assert check(agreed, canvas) == ([], [])


def test_a_missing_agreed_value_proposition_is_refused(agreed: Project) -> None:
    problems, _ = check(agreed, without_item("- **Off-peak car fare**"))
    assert problems == [
        'Value Propositions: the agreed value proposition "Off-peak car fare" of "Island '
        'residents on non-work trips" is missing; add `- **Off-peak car fare** — <description>` '
        "under `### Island residents on non-work trips`"
    ]


def test_a_value_proposition_under_another_segment_is_missing_from_its_own(
    agreed: Project,
) -> None:
    moved = without_item("- **Account billing**")
    moved = replaced(
        "### Public-service partners\n\n",
        "### Public-service partners\n\n- **Account billing** — Monthly invoicing.\n"
        '  - Evidence: `resources/freight-and-hauliers.md`: "Accounts are invoiced monthly on 30-day terms."\n',
        moved,
    )
    problems, warnings = check(agreed, moved)
    assert problems == [
        'Value Propositions: the agreed value proposition "Account billing" of "Freight hauliers '
        'and island businesses" is missing; add `- **Account billing** — <description>` under '
        "`### Freight hauliers and island businesses`"
    ]
    assert warnings == [
        f'Value Propositions: "Account billing" (line {line("- **Account billing**", moved)}) is not among the value propositions '
        'agreed for "Public-service partners"; the client has not agreed it yet, so raise it '
        "with the consultant"
    ]


def test_a_segment_without_value_propositions_subsection_is_refused(agreed: Project) -> None:
    problems, _ = check(agreed, cut("### Public-service partners\n\n- **Lifeline", "## Channels"))
    assert problems == [
        'Value Propositions: the agreed segment "Public-service partners" has no '
        "`### Public-service partners` subsection; add it with its agreed value propositions "
        '"Lifeline timetable delivered", "Service data and priority", "Staff and pupil access"'
    ]


def test_a_segment_without_a_channel_is_refused(agreed: Project) -> None:
    problems, _ = check(
        agreed,
        cut(
            "### Island residents on non-work trips\n\n- **Terminal desk",
            "### Visitors and day-trippers\n\n- **Isles Tourism",
        ),
    )
    assert problems == [
        'Channels: the agreed segment "Island residents on non-work trips" has no '
        "`### Island residents on non-work trips` subsection; add it with at least one "
        "channel and its phase"
    ]


def test_a_segment_without_a_relationship_is_refused(agreed: Project) -> None:
    problems, _ = check(agreed, without_item("- **Freight account management**"))
    assert problems == [
        'Customer Relationships: no relationship serves "Freight hauliers and island '
        'businesses"; add one with `  - Serves: Freight hauliers and island businesses` (or '
        "extend an item's `Serves:` line)"
    ]


def test_a_segment_without_a_revenue_stream_is_refused(agreed: Project) -> None:
    canvas = without_item("- **Public Service Contract and accounts**")
    canvas = replaced(
        '  - Serves: all segments\n  - Evidence: `resources/financials-2025.md`: "| On-board',
        '  - Serves: Visitors and day-trippers\n  - Evidence: `resources/financials-2025.md`: "| On-board',
        canvas,
    )
    problems, _ = check(agreed, canvas)
    assert problems == [
        'Revenue Streams: no revenue stream serves "Public-service partners"; add one with '
        "`  - Serves: Public-service partners` (or extend an item's `Serves:` line)"
    ]


def test_serves_all_segments_covers_every_segment(agreed: Project) -> None:
    one = (
        "## Customer Relationships\n\n"
        "- **Personal service at the desk** (personal) — Staff who know the boats.\n"
        "  - Serves: All segments\n"
        '  - Evidence: `resources/passenger-survey-2026.md`: "I phone to book because I like to talk to someone who knows the boats."\n\n'
    )
    canvas = cut("## Customer Relationships\n", "## Revenue Streams\n", insert=one)
    assert check(agreed, canvas) == ([], [])


@pytest.mark.parametrize(
    ("old", "new", "block"),
    [
        (
            '  - Serves: Public-service partners\n  - Evidence: `resources/financials-2025.md`: "Term',
            '  - Serves: Public sector\n  - Evidence: `resources/financials-2025.md`: "Term',
            "Key Resources",
        ),
        (
            "  - Serves: Visitors and day-trippers\n  - Evidence: `resources/tourism-market.md`: \"We'd",
            "  - Serves: Visitors and day-trippers; Cruise lines\n  - Evidence: `resources/tourism-market.md`: \"We'd",
            "Key Partnerships",
        ),
        (
            '  - Serves: Visitors and day-trippers\n  - Evidence: `resources/financials-2025.md`: "| Card',
            '  - Serves: Tourists\n  - Evidence: `resources/financials-2025.md`: "| Card',
            "Cost Structure",
        ),
        (
            '  - Serves: all segments\n  - Evidence: `resources/financials-2025.md`: "Buys',
            '  - Serves: Islanders\n  - Evidence: `resources/financials-2025.md`: "Buys',
            "Key Activities",
        ),
    ],
)
def test_serves_naming_an_unknown_segment_is_refused(
    agreed: Project, old: str, new: str, block: str
) -> None:
    problems, _ = check(agreed, replaced(old, new))
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{block}: ")
    assert "which is not an agreed segment" in problems[0]


def test_a_subsection_naming_an_unknown_segment_is_refused(agreed: Project) -> None:
    canvas = replaced(
        "## Customer Relationships",
        "### Students\n\n- **College noticeboard** (awareness) — Posters at the college.\n"
        '  - Evidence: `resources/stakeholder-interviews.md`: "Port Merrow College has 310 students from the islands"\n\n'
        "## Customer Relationships",
    )
    problems, _ = check(agreed, canvas)
    assert len(problems) == 1, problems
    assert problems[0].startswith("Channels: `### Students` (line ")
    assert "names a segment which is not an agreed segment" in problems[0]


def test_an_ungrounded_quote_is_refused_with_the_closest_passage(agreed: Project) -> None:
    canvas = replaced("Tell me at half five, not twenty", "Tell me at six, not twenty")
    problems, _ = check(agreed, canvas)
    assert len(problems) == 1, problems
    assert problems[0].startswith(
        f'Channels: "SMS disruption alerts" (line {line(SMS)}): quote "The text alert'
    )
    assert "is not in resources/passenger-survey-2026.md; closest passage" in problems[0]
    assert "Tell me at half five, not twenty to seven." in problems[0]


def test_evidence_from_a_missing_file_suggests_the_right_one(agreed: Project) -> None:
    canvas = replaced(
        '`resources/freight-and-hauliers.md`: "Certainty',
        '`resources/freight-hauliers.md`: "Certainty',
    )
    problems, _ = check(agreed, canvas)
    assert problems == [
        f'Value Propositions: "Guaranteed slots" (line {line("- **Guaranteed slots**")}): `resources/freight-hauliers.md` does '
        "not exist; did you mean `resources/freight-and-hauliers.md`?"
    ]


def test_evidence_outside_resources_is_refused(agreed: Project) -> None:
    # The hypotheses are claims to test, not evidence; only the research and the agreed
    # brief may be cited.
    canvas = replaced(
        '`resources/freight-and-hauliers.md`: "Certainty', '`hypotheses.md`: "Certainty'
    )
    problems, _ = check(agreed, canvas)
    assert problems == [
        f'Value Propositions: "Guaranteed slots" (line {line("- **Guaranteed slots**")}): `hypotheses.md` is not in '
        "resources/: cite research files as `resources/<file>` (or the agreed brief as "
        "`brief.agreed.md`)"
    ]


def test_without_agreed_segments_the_canvas_gets_one_problem_saying_so(tmp_path: Path) -> None:
    project = make_project(tmp_path, agreed=False)
    problems, _ = check(project, CANVAS)
    assert problems == [
        f"Customer Segments: {AGREED} does not exist: the segments must be agreed "
        "(`bmc run bmc-segments`, or `bmc agree segments`) before the canvas can be checked "
        "against them"
    ]


def test_governed_whatever_the_spelling_of_the_path(agreed: Project) -> None:
    for path in ("Canvas/Canvas.md", "./canvas/canvas.md", "canvas/canvas.md. "):
        problems, _ = make_validator(agreed)(path, "")
        assert problems == ["File: the canvas is empty; write the whole document"]


# --- validate_project and the cache ---------------------------------------------------------


def test_the_canvas_is_listed_once_the_segments_are_agreed(tmp_path: Path) -> None:
    project = make_project(tmp_path / "a", agreed=False)
    assert CANVAS_PATH not in [r.path for r in validate_project(project)]
    write(project, AGREED, demo_segment_files()["segments/segments.md"])
    reports = {r.path: r for r in validate_project(project)}
    assert reports[CANVAS_PATH].status == "missing"
    # A canvas written before the agreement is listed too, with the reason it fails.
    early = make_project(tmp_path / "b", agreed=False)
    write(early, CANVAS_PATH, CANVAS)
    reports = {r.path: r for r in validate_project(early)}
    assert reports[CANVAS_PATH].status == "invalid"
    assert (
        reports[CANVAS_PATH].problems[0].startswith(f"Customer Segments: {AGREED} does not exist")
    )


def test_re_agreed_segments_re_check_the_canvas(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(project, CANVAS_PATH, CANVAS)
    validate_project(project)
    checked = count_checks(monkeypatch)
    assert {r.path: r.status for r in validate_project(project)}[CANVAS_PATH] == "valid"
    assert checked == []  # nothing changed: answered from the cache

    agreed_text = (project.project_dir / AGREED).read_text()
    write(
        project,
        AGREED,
        agreed_text.replace("### 5. Public-service partners", "### 5. Public bodies"),
    )
    reports = {r.path: r for r in validate_project(project)}
    assert checked == [CANVAS_PATH]
    assert reports[CANVAS_PATH].status == "invalid"
    assert any(
        f'"Public-service partners" (line {line("- **Public-service partners**")}) is listed' in p
        for p in reports[CANVAS_PATH].problems
    )


def test_a_changed_resource_re_checks_the_canvas(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(project, CANVAS_PATH, CANVAS)
    validate_project(project)
    checked = count_checks(monkeypatch)
    report = project.resources_dir / "financials-2025.md"
    report.write_text(report.read_text().replace("| Fuel | 4.9 |", "| Fuel | 5.0 |"))
    reports = {r.path: r for r in validate_project(project)}
    # No draft cites the financial report, but the segments document's figures, and the
    # drafts' notes on figures they do not cite, are looked up in all the research.
    assert CANVAS_PATH in checked
    assert reports[CANVAS_PATH].status == "invalid"
    assert sections(reports[CANVAS_PATH].problems) == {"Cost Structure"}


# --- the skill -------------------------------------------------------------------------------


def test_the_canvas_skill_follows_the_segments_skill() -> None:
    skill = load_skill("bmc-canvas")
    assert skill.stage == "3"
    assert skill.requires == ("segments/segments.agreed.md", "resources/index.md")
    assert (skill.produces, skill.gate) == (("canvas/canvas.md",), "canvas/canvas.agreed.md")
    assert (skill.after, skill.next, skill.schema) == ("bmc-segments", None, "canvas")
    assert skill.references() == ["references/canvas-template.md"]
    assert "skill/references/canvas-template.md" in skill.body
    assert "request_agreement" in skill.body and "bmc render" in skill.body
