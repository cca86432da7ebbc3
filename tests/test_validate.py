"""Validation beyond shape: a corpus of broken drafts, each refused with a problem naming the
right section; grounding of quotes; distinct segments; the segments document's
cross-checks; `validate_project` statuses and its cache."""

# Drafts quote research sentences verbatim, one evidence line each: long lines are the format.
# ruff: noqa: E501

from __future__ import annotations

import os
import random
import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bmc.documents import grounding
from bmc.documents.grounding import ClosestPassage, Match, find_quote
from bmc.documents.schemas import Problem
from bmc.documents.schemas.segments import read_draft, read_segments_document
from bmc.documents.validate import SAME_SEGMENT_THRESHOLD, make_validator, validate_project
from bmc.workspace.paths import Project
from projects import (
    FIXTURE_RESOURCES,
    Defect,
    count_checks,
    defect,
    problems_on_disk,
    research_project,
    sections,
    write,
)

SURVEY = "resources/passenger-survey-2026.md"


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A project whose resources are the demo fixture's real research reports."""
    return research_project(tmp_path)


GOOD = """\
# Island Commuters

## Who they are

Skerry residents who cross to work or study on the mainland three or more days a week;
reliability is their first concern and many now work from home one or two days a week.

## Value propositions

1. **Sailings that run** — a cancelled early sailing costs them half a day's pay.
2. **Early warning** — an alert before they leave home, not at the pier.

## Channels

Tidewater SMS alerts, the "Skerry Ferry Watch" Facebook group, and the terminal desk for
season tickets.

## Relationship type

Automated, community — alerts are automated; commuters run their own Facebook group.

## Revenue potential

Monthly season tickets; a third would pay more for a reserved seat with Wi-Fi.

## Evidence

- From `resources/passenger-survey-2026.md`: "If the 06:40 goes off I'm docked half a day, simple as that."
- From `resources/passenger-survey-2026.md`: "71% want an alert at least 60 minutes before departure"

## Confidence

High — a large survey sample, consistent with the council's figures.
"""
GOOD_PATH = "segments/drafts/island-commuters.md"

HAULIERS = """\
# Freight Hauliers

## Who they are

Mainland hauliers carrying groceries, fuel and livestock to the islands on account, who
must travel on the first sailings of the day.

## Value propositions

1. **Guaranteed first-sailing lanes** — chilled food and livestock travel early or not at all.

## Channels

Telephone to the freight desk, email and the online freight portal.

## Relationship type

Personal — the freight desk holds standing bookings by informal agreement.

## Revenue potential

Lane-metre rates invoiced monthly on account.

## Evidence

- From `resources/freight-and-hauliers.md`: "Chilled goods come on the first boat or they don't come at all."

## Confidence

High — fourteen interviews agree with the desk data.
"""
HAULIERS_PATH = "segments/drafts/freight-hauliers.md"


def without_section(heading: str) -> str:
    """GOOD without the `## heading` section."""
    start = GOOD.index(f"## {heading}\n")
    end = GOOD.find("\n## ", start + 1)
    return GOOD[:start] + (GOOD[end + 1 :] if end >= 0 else "")


def replaced(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new)


EVIDENCE_LINE = (
    '- From `resources/passenger-survey-2026.md`: "71% want an alert at least 60 minutes '
    'before departure"'
)
ALL_SECTIONS = (
    "Who they are",
    "Value propositions",
    "Channels",
    "Relationship type",
    "Revenue potential",
    "Evidence",
    "Confidence",
)

DEFECTS: dict[str, Defect] = {
    **{
        f"missing {name}": defect(without_section(name), name, says="section is missing")
        for name in ALL_SECTIONS
    },
    "empty value proposition list": defect(
        replaced(
            "1. **Sailings that run** — a cancelled early sailing costs them half a day's pay.\n"
            "2. **Early warning** — an alert before they leave home, not at the pier.\n",
            "",
        ),
        "Value propositions",
        says="section is empty",
    ),
    "value propositions as prose": defect(
        replaced(
            "1. **Sailings that run** — a cancelled early sailing costs them half a day's pay.\n"
            "2. **Early warning** — an alert before they leave home, not at the pier.\n",
            "They want sailings that run and early warnings.\n",
        ),
        "Value propositions",
        says="is not a list item",
    ),
    "value proposition without description": defect(
        replaced(
            "2. **Early warning** — an alert before they leave home, not at the pier.",
            "2. **Early warning**",
        ),
        "Value propositions",
        says="has no description",
    ),
    "value proposition listed twice": defect(
        replaced("2. **Early warning**", "2. **Sailings that run**"),
        "Value propositions",
        says="listed twice",
    ),
    "unknown relationship type": defect(
        replaced("Automated, community —", "Automated, transactional —"),
        "Relationship type",
        says='"transactional" is not a relationship type',
    ),
    "bad confidence level": defect(
        replaced("High —", "Very high —"), "Confidence", says="does not start with High"
    ),
    "confidence without reasoning": defect(
        replaced("High — a large survey sample, consistent with the council's figures.", "High"),
        "Confidence",
        says="has no reasoning",
    ),
    "evidence line malformed": defect(
        replaced(EVIDENCE_LINE, "- The survey says 71% want an alert."),
        "Evidence",
        says='is not `- From `resources/<file>`: "<quote>"`',
    ),
    "evidence with an empty quote": defect(
        replaced('"71% want an alert at least 60 minutes before departure"', '""'),
        "Evidence",
        says="empty quote",
    ),
    "evidence quoting a word or two": defect(
        replaced('"71% want an alert at least 60 minutes before departure"', '"an alert"'),
        "Evidence",
        says="too short to show anything",
    ),
    "evidence file missing": defect(
        replaced(
            'resources/passenger-survey-2026.md`: "71%', 'resources/passenger-survey.md`: "71%'
        ),
        "Evidence",
        says="did you mean `resources/passenger-survey-2026.md`?",
    ),
    "quote not in the file": defect(
        replaced("71% want an alert at least 60 minutes", "81% want an alert at least 90 minutes"),
        "Evidence",
        says='alike): "71% want an alert at least 60 minutes before departure."',
    ),
    "quote shortened with an ellipsis": defect(
        replaced(
            "71% want an alert at least 60 minutes before departure",
            "71% want an alert ... before departure",
        ),
        "Evidence",
        says="do not shorten with ...",
    ),
    "path escaping resources": defect(
        replaced('resources/passenger-survey-2026.md`: "71%', 'resources/../../org.md`: "71%'),
        "Evidence",
        says="leads out of resources/",
    ),
    "path outside resources": defect(
        replaced('resources/passenger-survey-2026.md`: "71%', 'hypotheses.md`: "71%'),
        "Evidence",
        says="is not in resources/",
    ),
    "absolute path": defect(
        replaced('resources/passenger-survey-2026.md`: "71%', '/etc/passwd`: "71%'),
        "Evidence",
        says="is not in resources/",
    ),
    "title does not match the file name": defect(
        GOOD,
        "Title",
        says="write this draft to segments/drafts/island-commuters.md, not commuters.md",
        path="segments/drafts/commuters.md",
    ),
    "no title": defect(GOOD.replace("# Island Commuters\n\n", ""), "Title", says="must start"),
    "a second title": defect(GOOD + "\n# Notes\n", "Title", says="only the title is a `#`"),
    "unknown section": defect(
        GOOD + "\n## Notes\n\nAsk the client.\n",
        "Notes",
        says="is not a section of a segment draft",
    ),
    "section twice": defect(GOOD + "\n## Channels\n\nThe app.\n", "Channels", says="appears twice"),
    "empty section": defect(
        replaced(
            'Tidewater SMS alerts, the "Skerry Ferry Watch" Facebook group, and the terminal '
            "desk for\nseason tickets.\n",
            "",
        ),
        "Channels",
        says="section is empty",
    ),
    "section at the wrong level": defect(
        replaced("## Channels", "### Channels"), "Channels", says="make it `## Channels`"
    ),
    "canvas section in prose": defect(
        GOOD + "\n## Pains\n\nThey are late for work.\n", "Pains", says="is not a `- ` item"
    ),
    "only a title": defect("# Island Commuters\n", *ALL_SECTIONS),
    "empty file": defect("", "File", says="is empty"),
    "only blank lines": defect("\n \n\t\n", "File", says="is empty"),
    "binary": defect(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "File", says="binary"),
    "NUL inside text": defect(GOOD.replace("Skerry", "Sk\x00erry", 1), "File", says="binary"),
    "ten megabytes": defect(GOOD + "x" * 10_000_000, "File", says="10.0 MB"),
    "latin-1 bytes": defect(
        GOOD.replace("—", "-").encode("utf-8") + "Café".encode("latin-1"), "File", says="not UTF-8"
    ),
    "UTF-16": defect(GOOD.encode("utf-16"), "File", says="UTF-16"),
}


def test_the_corpus_has_at_least_25_defects() -> None:
    assert len(DEFECTS) >= 25


@pytest.mark.parametrize("name", sorted(DEFECTS))
def test_defective_draft_is_refused_naming_its_section(project: Project, name: str) -> None:
    case = DEFECTS[name]
    path = case.path or GOOD_PATH
    if isinstance(case.content, bytes):
        problems = problems_on_disk(project, path, case.content)
    else:
        problems, _ = make_validator(project)(path, case.content)
    assert sections(problems) == case.sections, problems
    assert any(case.says in problem for problem in problems), problems


MARKDOWN_LINES = st.sampled_from(
    ["# T", "## Evidence", "## Value propositions", "## Segments", "### 1. X", "```", "",
     '- From `resources/a.md`: "q"', "1. **A** — b", "**Channels**: x", "* x", "High", "\r"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.text() | st.binary() | st.lists(MARKDOWN_LINES | st.text(max_size=12)).map("\n".join))
def test_parsers_never_raise_on_arbitrary_input(data: str | bytes) -> None:
    draft, document = read_draft(data), read_segments_document(data)
    for problem in draft.problems + document.problems:
        assert isinstance(problem, Problem) and problem.section


def test_every_problem_is_one_line(project: Project) -> None:
    problems, _ = make_validator(project)(GOOD_PATH, "# Island Commuters\n\nstray text\n")
    assert problems
    assert all("\n" not in problem for problem in problems)


def test_the_good_draft_is_accepted(project: Project) -> None:
    assert make_validator(project)(GOOD_PATH, GOOD) == ([], [])


def test_ungoverned_paths_are_not_checked(project: Project) -> None:
    validator = make_validator(project)
    assert validator("hypotheses.md", "anything") == ([], [])
    assert validator("segments/notes.md", "") == ([], [])
    assert validator("../segments/drafts/x.md", "") == ([], [])


def test_governed_paths_match_whatever_the_spelling(project: Project) -> None:
    validator = make_validator(project)
    for path in ("Segments/Drafts/X.md", "./segments/drafts/x.md", "segments/drafts/x.md. "):
        problems, _ = validator(path, "")
        assert problems == ["File: the segment draft is empty; write the whole document"]


def test_evidence_through_a_link_out_of_resources_is_refused(project: Project) -> None:
    (project.org_dir / "secret.md").write_text("71% want an alert at least 60 minutes")
    os.symlink(project.org_dir / "secret.md", project.resources_dir / "link.md")
    content = GOOD.replace('resources/passenger-survey-2026.md`: "71%', 'resources/link.md`: "71%')
    problems, _ = make_validator(project)(GOOD_PATH, content)
    assert problems == ["Evidence: `resources/link.md` leads out of resources/ through a link"]


def test_evidence_citing_a_binary_resource_is_refused(project: Project) -> None:
    (project.resources_dir / "deck.pptx").write_bytes(b"PK\x03\x04\x00\x00")
    content = GOOD.replace(
        'resources/passenger-survey-2026.md`: "71%', 'resources/deck.pptx`: "71%'
    )
    problems, _ = make_validator(project)(GOOD_PATH, content)
    assert sections(problems) == {"Evidence"}
    assert "is binary" in problems[0] and "bmc import" in problems[0]


def test_shape_and_grounding_problems_come_together(project: Project) -> None:
    """One answer lists everything, so the model can fix it all in one retry."""
    content = replaced("High —", "Sure —").replace("71% want", "99% want")
    problems, _ = make_validator(project)("segments/drafts/commuters.md", content)
    assert sections(problems) == {"Title", "Evidence", "Confidence"}


# --- grounding ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "quote",
    [
        "If the 06:40 goes off I'm docked half a day",
        "IF THE 06:40 GOES OFF I’M DOCKED HALF A DAY",  # case, typographic apostrophe
        "winter wave 10-30 March 2026",  # hyphen for the source's en dash
        "Disruption news reaches them by Tidewater SMS alert (48%), the “Skerry Ferry Watch” Facebook group",  # quotes, line break
        "| Island commuters (travel to work or study on the mainland 3+ days a week) | 384 | 32% |",  # a table row
        "Total 1,200 100%",  # table cells with their bold markup left out
        "“If the 06:40 goes off I'm docked half a day, simple as that.”",  # quoted quote
    ],
)
def test_quote_is_found_after_normalising(quote: str) -> None:
    text = (FIXTURE_RESOURCES / "passenger-survey-2026.md").read_text(encoding="utf-8")
    assert isinstance(find_quote(quote, text), Match)


def test_ellipsis_and_dashes_are_normalised() -> None:
    text = "He paused… then said — quietly — ‘yes’."
    assert isinstance(find_quote("paused... then said - quietly - 'yes'", text), Match)


def test_closest_passage_is_shown_in_its_original_form() -> None:
    text = (FIXTURE_RESOURCES / "passenger-survey-2026.md").read_text(encoding="utf-8")
    found = find_quote("The season ticket renews only at the desk, which shuts at five", text)
    assert isinstance(found, ClosestPassage)
    assert "season ticket only renews at the desk, and the desk shuts at five." in found.passage
    assert "\n" not in found.passage


def test_closest_passage_maps_back_through_long_lines_and_markup() -> None:
    filler = " ".join(f"word{i}" for i in range(3000))  # one line far longer than a piece
    text = f"{filler} **Revenue** grew by “twelve” per cent — mostly freight. {filler}\n"
    found = find_quote("revenue grew by eleven per cent - mostly freight", text)
    assert isinstance(found, ClosestPassage)
    assert found.passage == "**Revenue** grew by “twelve” per cent — mostly freight."


def five_megabytes_of_text(seed: int = 7) -> str:
    rng = random.Random(seed)
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(4000)]
    lines = [" ".join(rng.choices(words, k=12)).capitalize() + "." for _ in range(66_000)]
    return "\n".join(lines)


def test_quote_check_on_a_five_megabyte_resource(tmp_path: Path) -> None:
    text = five_megabytes_of_text()
    path = tmp_path / "big.md"
    path.write_text(text + "\nThe quote we are looking for sits at the very end.\n")
    assert path.stat().st_size > 5_000_000
    resource = grounding.load_resource(path)
    assert grounding.load_resource(path) is resource  # normalised once per (mtime, size)
    assert isinstance(
        find_quote("the quote we are looking for sits at the very end", resource), Match
    )
    near = find_quote("The quote we were looking for sat at the very end", resource)
    assert isinstance(near, ClosestPassage)
    assert near.passage.startswith("The quote we are looking for sits")
    assert isinstance(
        find_quote("a sentence that appears nowhere at all", resource), ClosestPassage
    )


# --- distinct segments and shared value propositions ------------------------------------------

REWORDED = (
    GOOD.replace("# Island Commuters", "# Skerry Commuters")
    .replace(
        "Skerry residents who cross to work or study on the mainland three or more days a week;\n"
        "reliability is their first concern and many now work from home one or two days a week.",
        "Residents of Skerry who cross to study or work on the mainland at least three days a week;\n"
        "their first concern is reliability, and many work from home one or two days each week.",
    )
    .replace(
        'Tidewater SMS alerts, the "Skerry Ferry Watch" Facebook group, and the terminal desk for\n'
        "season tickets.",
        'SMS alerts from Tidewater, the "Skerry Ferry Watch" group on Facebook, and the terminal\n'
        "desk for season tickets.",
    )
    .replace("**Sailings that run**", "**Boats that sail**")
    .replace("**Early warning**", "**Alerts in time**")
)


def test_a_lightly_reworded_segment_is_refused_naming_the_other(project: Project) -> None:
    assert REWORDED != GOOD
    write(project, GOOD_PATH, GOOD)
    problems, _ = make_validator(project)("segments/drafts/skerry-commuters.md", REWORDED)
    assert len(problems) == 1
    assert problems[0].startswith(
        f'Who they are: this is the segment "Island Commuters" ({GOOD_PATH}) again'
    )
    assert f"the limit is {SAME_SEGMENT_THRESHOLD}%" in problems[0]
    # The fix for a rename holds with the iterate skill's tool and without it.
    assert problems[0].endswith(
        f"if this is a renamed segment, {GOOD_PATH} must go first: move it to the new name "
        "with `rename` where that tool is offered, or else ask the consultant to delete it"
    )


def test_a_different_segment_is_not_refused(project: Project) -> None:
    write(project, GOOD_PATH, GOOD)
    assert make_validator(project)(HAULIERS_PATH, HAULIERS) == ([], [])


def test_same_people_reached_differently_is_a_separate_segment(project: Project) -> None:
    write(project, GOOD_PATH, GOOD)
    other_channels = REWORDED.replace(
        'SMS alerts from Tidewater, the "Skerry Ferry Watch" group on Facebook, and the terminal\n'
        "desk for season tickets.",
        "Their employers' travel plans and the Port Merrow business park shuttle.",
    )
    problems, _ = make_validator(project)("segments/drafts/skerry-commuters.md", other_channels)
    assert problems == []


def test_a_shared_value_proposition_is_a_warning_naming_the_other_segment(
    project: Project,
) -> None:
    write(project, GOOD_PATH, GOOD)
    shared = HAULIERS.replace(
        "1. **Guaranteed first-sailing lanes**", "1. **Sailings that run** — always.\n2. **Lanes**"
    )
    problems, warnings = make_validator(project)(HAULIERS_PATH, shared)
    assert problems == []
    assert warnings == [
        'Value propositions: "Sailings that run" is also a value proposition of '
        f'"Island Commuters" ({GOOD_PATH}); say what this segment in particular gets'
    ]


def test_a_copied_description_under_another_name_is_a_warning(project: Project) -> None:
    write(project, GOOD_PATH, GOOD)
    copied = HAULIERS.replace(
        "chilled food and livestock travel early or not at all.",
        "a cancelled early sailing costs them half a day's pay!",
    )
    _, warnings = make_validator(project)(HAULIERS_PATH, copied)
    assert sections(warnings) == {"Value propositions"}
    assert '"Island Commuters"' in warnings[0]


# --- the segments document ---------------------------------------------------------------------

DOCUMENT = """\
# Customer Segments — Acme Ltd

## Overview

A ferry operator serving four islands.

## Segments

### 1. Island Commuters

**Who they are**: Skerry residents who cross to work most days.
**Value propositions**:
1. **Sailings that run** — a cancelled sailing costs them pay.
2. **Early warning** — an alert before they leave home.
**Channels**: SMS alerts.
**Relationship**: Automated, community.
**Revenue**: Season tickets.

### 2. Freight Hauliers

**Who they are**: Hauliers moving goods by lorry.
**Value propositions**:
1. **Guaranteed first-sailing lanes** — early or not at all.
**Channels**: The freight desk.
**Relationship**: Personal.
**Revenue**: Lane-metre rates.

## Segment Interactions

They compete for the first sailings.

## Excluded Segments

None.

## Open Questions

None.
"""
DOCUMENT_PATH = "segments/segments.md"


@pytest.fixture
def drafted(project: Project) -> Project:
    write(project, GOOD_PATH, GOOD)
    write(project, HAULIERS_PATH, HAULIERS)
    return project


def test_a_matching_segments_document_is_accepted(drafted: Project) -> None:
    assert make_validator(drafted)(DOCUMENT_PATH, DOCUMENT) == ([], [])


def test_a_drafted_segment_missing_from_the_document_is_a_problem(drafted: Project) -> None:
    start = DOCUMENT.index("### 2. Freight Hauliers")
    document = DOCUMENT[:start] + DOCUMENT[DOCUMENT.index("## Segment Interactions") :]
    problems, _ = make_validator(drafted)(DOCUMENT_PATH, document)
    assert problems == [
        f'Segments: "Freight Hauliers" has a draft ({HAULIERS_PATH}) but is not listed; add it '
        "as `### N. Freight Hauliers`, or if the segment was dropped, its draft must go: "
        "delete it with `remove` where that tool is offered, or else ask the consultant to "
        "delete it"
    ]


def test_a_listed_segment_without_a_draft_is_a_problem(drafted: Project) -> None:
    (drafted.project_dir / HAULIERS_PATH).unlink()
    problems, _ = make_validator(drafted)(DOCUMENT_PATH, DOCUMENT)
    assert len(problems) == 1
    assert problems[0].startswith(
        'Segments: "Freight Hauliers" (line 19) has no draft; write '
        "segments/drafts/freight-hauliers.md first"
    )


def test_value_proposition_names_must_match_the_drafts(drafted: Project) -> None:
    document = DOCUMENT.replace("**Early warning**", "**Early alerts**")
    problems, _ = make_validator(drafted)(DOCUMENT_PATH, document)
    assert problems == [
        'Segments: the value propositions of "Island Commuters" differ from its draft '
        f'({GOOD_PATH}): the draft has "Early warning", which it does not list; it lists '
        '"Early alerts", which the draft does not have; use the draft\'s names'
    ]


def test_segment_names_match_loosely(drafted: Project) -> None:
    document = DOCUMENT.replace("### 1. Island Commuters", "### 1. island  commuters")
    assert make_validator(drafted)(DOCUMENT_PATH, document) == ([], [])


@pytest.mark.parametrize(
    ("old", "new", "section"),
    [
        ("# Customer Segments — Acme Ltd", "# Segments of Acme", "Title"),
        ("## Open Questions\n\nNone.\n", "", "Open Questions"),
        ("**Channels**: The freight desk.\n", "", "Segments"),
        ("**Channels**: SMS alerts.", "**Channels**:", "Segments"),
        ("### 2. Freight Hauliers", "### 2. Island Commuters", "Segments"),
        ("2. **Early warning** — an alert", "2. Early warning, an alert", "Segments"),
    ],
)
def test_segments_document_shape_problems(
    drafted: Project, old: str, new: str, section: str
) -> None:
    assert old in DOCUMENT
    problems, _ = make_validator(drafted)(DOCUMENT_PATH, DOCUMENT.replace(old, new))
    assert section in sections(problems), problems


def test_draft_edited_before_the_document_catches_up_passes_with_a_warning(
    drafted: Project,
) -> None:
    write(drafted, DOCUMENT_PATH, DOCUMENT)
    edited = GOOD.replace("**Early warning**", "**Alerts before leaving home**")
    problems, warnings = make_validator(drafted)(GOOD_PATH, edited)
    assert problems == []
    assert warnings == [
        "Value propositions: segments/segments.md has not caught up with this draft (the draft "
        'has "Alerts before leaving home", which it does not list; it lists "Early warning", '
        "which the draft does not have); update it before asking for agreement"
    ]
    # Once the draft is on disk, the document itself is where the mismatch is a problem.
    write(drafted, GOOD_PATH, edited)
    problems, _ = make_validator(drafted)(DOCUMENT_PATH, DOCUMENT)
    assert sections(problems) == {"Segments"}


def test_new_draft_not_yet_in_the_document_passes_with_a_warning(drafted: Project) -> None:
    write(drafted, DOCUMENT_PATH, DOCUMENT)
    students = HAULIERS.replace("# Freight Hauliers", "# Students").replace(
        "Mainland hauliers carrying groceries, fuel and livestock to the islands on account, who\n"
        "must travel on the first sailings of the day.",
        "College students from the islands on a council concession pass.",
    )
    problems, warnings = make_validator(drafted)("segments/drafts/students.md", students)
    assert problems == []
    assert (
        'Title: segments/segments.md does not list "Students" yet; update it before asking '
        "for agreement"
    ) in warnings


# --- validate_project: statuses and cache --------------------------------------------------------


def test_statuses_of_a_project(drafted: Project) -> None:
    write(drafted, "segments/drafts/broken.md", "# Broken\n")
    reports = {r.path: r for r in validate_project(drafted)}
    assert list(reports) == [
        "segments/drafts/broken.md",
        HAULIERS_PATH,
        GOOD_PATH,
        DOCUMENT_PATH,
    ]
    assert reports[GOOD_PATH].status == "valid"
    assert reports["segments/drafts/broken.md"].status == "invalid"
    assert reports[DOCUMENT_PATH].status == "missing"


def test_only_the_given_files_are_validated(drafted: Project) -> None:
    reports = validate_project(drafted, [GOOD_PATH, "segments/drafts/nothing.md", "brief.md"])
    assert [(r.path, r.status) for r in reports] == [
        (GOOD_PATH, "valid"),
        ("segments/drafts/nothing.md", "missing"),
        ("brief.md", "missing"),
    ]


def test_an_empty_project_has_only_the_missing_segments_document(project: Project) -> None:
    [report] = validate_project(project)
    assert (report.path, report.status) == (DOCUMENT_PATH, "missing")


def test_an_unchanged_project_is_not_checked_again(
    drafted: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(drafted, DOCUMENT_PATH, DOCUMENT)
    first = validate_project(drafted)
    assert (drafted.state_dir / "validation.json").is_file()
    checked = count_checks(monkeypatch)
    assert validate_project(drafted) == first
    assert checked == []


def test_a_changed_resource_invalidates_the_drafts_citing_it(
    drafted: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    validate_project(drafted)
    survey = drafted.resources_dir / "passenger-survey-2026.md"
    survey.write_text(survey.read_text().replace("71% want an alert", "70% want an alert"))
    checked = count_checks(monkeypatch)
    reports = {r.path: r for r in validate_project(drafted)}
    assert checked == [GOOD_PATH]  # the hauliers' draft cites another file
    assert reports[GOOD_PATH].status == "invalid"
    assert "closest passage" in reports[GOOD_PATH].problems[0]


def test_a_new_draft_rechecks_the_others(drafted: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    validate_project(drafted)
    checked = count_checks(monkeypatch)
    write(drafted, "segments/drafts/skerry-commuters.md", REWORDED)
    reports = {r.path: r for r in validate_project(drafted)}
    assert sorted(checked) == sorted(
        [GOOD_PATH, HAULIERS_PATH, "segments/drafts/skerry-commuters.md"]
    )
    assert reports[GOOD_PATH].status == "invalid"  # each of the pair names the other


def test_a_damaged_cache_is_ignored(drafted: Project) -> None:
    first = validate_project(drafted)
    (drafted.state_dir / "validation.json").write_text("{not json")
    assert validate_project(drafted) == first
