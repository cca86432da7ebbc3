"""What a real model found unclear in bmc-segments and bmc-canvas (issue 15), each point
settled in the skills and held here where code decides it: the organisation's name in the
prompt, a file listing of only what the tools can open, evidence lines (one quote each, the
agreed brief citable), relationship types in any case, `Proposed:` value propositions,
`Not yet known` items, phases written with bars, Tensions bullets left unchecked, and the
templates saying what the skill text says.

The projects are the fixture workspace (Tidewater), with the demo's segments agreed where a
canvas is checked; the canvas is fixtures/canvas/tidewater-canvas.md.
"""

# Canvas items quote research sentences verbatim: long lines are the format.
# ruff: noqa: E501

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import pytest

from bmc.documents.render import render_project
from bmc.documents.schemas.canvas import parse_canvas, render_canvas
from bmc.documents.schemas.segments import parse_draft, render_draft
from bmc.documents.skills import load_skill
from bmc.documents.validate import make_validator, validate_project
from bmc.engine.api import RunOptions
from bmc.engine.prompt import list_files, render_system_prompt
from bmc.scripted import ScriptedModel
from bmc.terminal import chat as ui
from bmc.terminal.chat import TerminalDisplay
from bmc.workspace.packaged import data_dir
from bmc.workspace.paths import Project, atomic_write, locate
from bmc.workspace.tools import Toolbox
from projects import FIXTURES, demo_segment_files, segments_ready, write

CANVAS_PATH = "canvas/canvas.md"
CANVAS = (FIXTURES / "canvas" / "tidewater-canvas.md").read_text(encoding="utf-8")
SKILLS = data_dir("skills")


def fixture_project(root: Path) -> Project:
    shutil.copytree(FIXTURES / "workspace", root / "ws")
    return locate(root / "ws", "tidewater", "growth-2027")


def agreed_project(root: Path) -> Project:
    project = segments_ready(root)
    write(project, "segments/segments.agreed.md", demo_segment_files()["segments/segments.md"])
    return project


def replaced(old: str, new: str, text: str = CANVAS) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def check_canvas(project: Project, content: str) -> tuple[list[str], list[str]]:
    return make_validator(project)(CANVAS_PATH, content)


def prompt(project: Project, skill: str = "bmc-segments") -> str:
    return render_system_prompt(load_skill(skill), project)


def listed(system: str) -> list[str]:
    """The paths of the prompt's file listing."""
    section = system.split("# Files at the start of this session", 1)[1].split("# The skill")[0]
    return re.findall(r"^- `([^`]+)`$", section, re.MULTILINE)


# --- the organisation's name ------------------------------------------------------------


def test_the_prompt_names_the_organisation_from_org_md(tmp_path: Path) -> None:
    system = prompt(fixture_project(tmp_path))
    assert system.startswith(
        "You are the engagement assistant of a strategy consultant running a Business Model "
        "Canvas\nengagement for Tidewater Ferries Ltd (organisation `tidewater`, project "
        "`growth-2027`).\nToday is "
    )


def test_without_a_display_name_the_prompt_takes_the_briefs_client(tmp_path: Path) -> None:
    project = fixture_project(tmp_path)
    (project.org_dir / "org.md").write_text("---\n---\n\nA ferry company.\n", encoding="utf-8")
    system = prompt(project)
    # The fixture brief opens with `- **Client**: Tidewater Ferries Ltd`.
    assert "engagement for Tidewater Ferries Ltd (organisation `tidewater`" in system
    assert (
        "gives no display name, so Tidewater Ferries Ltd is the name the\nengagement brief"
        in system
    )


def test_without_a_client_line_the_brief_title_names_the_organisation(tmp_path: Path) -> None:
    project = fixture_project(tmp_path)
    (project.org_dir / "org.md").write_text("---\n---\n", encoding="utf-8")
    for brief in ("brief.md", "brief.agreed.md"):
        (project.project_dir / brief).write_text(
            "# Engagement brief — Merrow Isles Ferries Ltd\n\n## Purpose\n\nGrow.\n",
            encoding="utf-8",
        )
    assert "engagement for Merrow Isles Ferries Ltd (organisation" in prompt(project)


def test_with_no_name_anywhere_the_prompt_says_the_slug_is_only_a_folder_name(
    tmp_path: Path,
) -> None:
    project = fixture_project(tmp_path)
    (project.org_dir / "org.md").write_text("---\n---\n", encoding="utf-8")
    for brief in ("brief.md", "brief.agreed.md"):
        (project.project_dir / brief).unlink()
    system = prompt(project, "bmc-research")
    assert "engagement for tidewater (organisation `tidewater`" in system
    assert "`tidewater` is only its folder name" in system
    assert "ask the consultant when no file gives it" in system


def test_a_brief_linked_from_outside_does_not_name_the_organisation(tmp_path: Path) -> None:
    project = fixture_project(tmp_path)
    (project.org_dir / "org.md").write_text("---\n---\n", encoding="utf-8")
    elsewhere = tmp_path / "other-client-brief.md"
    elsewhere.write_text("- **Client**: Someone Else plc\n", encoding="utf-8")
    for brief in ("brief.md", "brief.agreed.md"):
        (project.project_dir / brief).unlink()
        os.symlink(elsewhere, project.project_dir / brief)
    system = prompt(project)
    assert "Someone Else" not in system
    assert "engagement for tidewater (organisation" in system


# --- the file listing ---------------------------------------------------------------------


def test_the_listing_leaves_out_links_that_lead_outside(tmp_path: Path) -> None:
    project = fixture_project(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text("another client's notes\n", encoding="utf-8")
    os.symlink(outside / "secret.md", project.resources_dir / "linked-out.md")
    os.symlink(outside, project.project_dir / "linked-folder")
    os.symlink(tmp_path / "gone.md", project.inbox_dir / "dangling.md")
    # A link that stays inside the permitted roots is readable, so it is listed.
    os.symlink(project.resources_dir / "index.md", project.project_dir / "research-index.md")
    (project.inbox_dir / "call-notes.md").write_text("Notes.\n", encoding="utf-8")

    files = listed(prompt(project))
    assert "resources/linked-out.md" not in files
    assert not any(path.startswith("linked-folder") for path in files)
    assert "inbox/dangling.md" not in files
    assert "research-index.md" in files
    assert "inbox/call-notes.md" in files
    assert "resources/passenger-survey-2026.md" in files


def test_every_listed_file_opens_with_read(tmp_path: Path) -> None:
    project = fixture_project(tmp_path)
    outside = tmp_path / "outside.md"
    outside.write_text("not the client's\n", encoding="utf-8")
    os.symlink(outside, project.resources_dir / "linked-out.md")
    os.symlink(outside, project.project_dir / "notes.md")
    skill = load_skill("bmc-segments")
    toolbox = Toolbox(project, skill.folder)
    files = list_files(project, skill.folder)
    assert len(files) >= 10
    for path in files:
        outcome = toolbox.run("read", {"file_path": path})
        assert not outcome.is_error, (path, outcome.text)


def test_skill_files_that_lead_outside_are_not_listed(tmp_path: Path) -> None:
    project = fixture_project(tmp_path)
    skills = tmp_path / "skills"
    shutil.copytree(SKILLS / "bmc-segments", skills / "bmc-segments")
    outside = tmp_path / "outside.md"
    outside.write_text("x\n", encoding="utf-8")
    os.symlink(outside, skills / "bmc-segments" / "references" / "linked.md")
    system = render_system_prompt(load_skill("bmc-segments", skills), project)
    assert "`skill/references/draft-template.md`" in system
    assert "linked.md" not in system


def test_hidden_files_and_folders_are_not_listed(tmp_path: Path) -> None:
    project = fixture_project(tmp_path)
    (project.project_dir / ".git").mkdir()
    (project.project_dir / ".git" / "HEAD").write_text("ref: refs/heads/main\n", encoding="utf-8")
    files = listed(prompt(project))
    assert not any(part.startswith(".") for path in files for part in path.split("/"))
    assert "brief.agreed.md" in files


# --- segment drafts: relationship case, evidence lines, proposed propositions ---------------

DRAFT = """\
# Island Commuters

## Who they are

Skerry residents who cross to work or study on the mainland three or more days a week.

## Value propositions

1. **Sailings that run** — a cancelled early sailing costs them half a day's pay.
2. **Commuter work seat** — Proposed: a reserved seat with a table and Wi-Fi on the 06:40.

## Channels

Tidewater SMS alerts and the terminal desk for season tickets.

## Relationship type

{relationship} — alerts are automated; commuters run their own Facebook group.

## Revenue potential

Monthly season tickets.

## Evidence

- From `resources/passenger-survey-2026.md`: "If the 06:40 goes off I'm docked half a day, simple as that."
- From `resources/passenger-survey-2026.md`: "71% want an alert at least 60 minutes before departure"
{extra}
## Confidence

High — a large survey sample.
"""
DRAFT_PATH = "segments/drafts/island-commuters.md"


@pytest.mark.parametrize(
    "written", ["automated, community", "Automated, community", "AUTOMATED, Community"]
)
def test_relationship_types_are_read_in_any_letter_case(written: str) -> None:
    draft = parse_draft(DRAFT.format(relationship=written, extra=""))
    assert not isinstance(draft, list), draft
    assert draft.relationship_types == ["automated", "community"]
    # The canonical form is the template's: the first word capitalised.
    assert "\n## Relationship type\n\nAutomated, community — " in render_draft(draft)


def test_two_quotes_of_one_file_are_two_lines_and_both_are_checked(tmp_path: Path) -> None:
    project = fixture_project(tmp_path)
    good = DRAFT.format(relationship="Automated", extra="")
    assert make_validator(project)(DRAFT_PATH, good) == ([], [])
    both_on_one_line = good.replace(
        'simple as that."\n- From `resources/passenger-survey-2026.md`: "71%',
        'simple as that." and "71%',
    )
    problems, _ = make_validator(project)(DRAFT_PATH, both_on_one_line)
    assert len(problems) == 1 and problems[0].startswith("Evidence: quote "), problems


def test_a_proposed_value_proposition_is_accepted_and_keeps_its_marker(tmp_path: Path) -> None:
    project = fixture_project(tmp_path)
    draft = DRAFT.format(relationship="Automated", extra="")
    assert make_validator(project)(DRAFT_PATH, draft) == ([], [])
    parsed = parse_draft(draft)
    assert not isinstance(parsed, list)
    seat = parsed.value_propositions[1]
    assert seat.name == "Commuter work seat"
    assert seat.description.startswith("Proposed: ")


def test_a_draft_may_cite_the_agreed_brief(tmp_path: Path) -> None:
    project = fixture_project(tmp_path)
    quote = '- From `brief.agreed.md`: "The board wants a growth strategy that does not depend on the subsidy growing."\n'
    draft = DRAFT.format(relationship="Automated", extra=quote)
    assert make_validator(project)(DRAFT_PATH, draft) == ([], [])


def test_a_quote_not_in_the_brief_is_refused_with_its_closest_passage(tmp_path: Path) -> None:
    project = fixture_project(tmp_path)
    quote = '- From `brief.agreed.md`: "The board wants a strategy that depends on the subsidy growing."\n'
    problems, _ = make_validator(project)(
        DRAFT_PATH, DRAFT.format(relationship="Automated", extra=quote)
    )
    assert len(problems) == 1, problems
    assert problems[0].startswith('Evidence: quote "The board wants a strategy')
    assert "is not in brief.agreed.md; closest passage" in problems[0]


def test_only_the_agreed_brief_is_citable_not_the_draft_brief(tmp_path: Path) -> None:
    project = fixture_project(tmp_path)
    (project.project_dir / "brief.agreed.md").unlink()
    for cited, says in (
        ("brief.agreed.md", "`brief.agreed.md` does not exist: the brief is not agreed yet"),
        ("brief.md", "`brief.md` is not in resources/"),
    ):
        quote = f'- From `{cited}`: "The board wants a growth strategy that does not depend on the subsidy growing."\n'
        problems, _ = make_validator(project)(
            DRAFT_PATH, DRAFT.format(relationship="Automated", extra=quote)
        )
        assert len(problems) == 1 and says in problems[0], problems


def test_a_changed_brief_re_checks_a_draft_that_cites_it(tmp_path: Path) -> None:
    project = fixture_project(tmp_path)
    quote = '- From `brief.agreed.md`: "The board wants a growth strategy that does not depend on the subsidy growing."\n'
    write(project, DRAFT_PATH, DRAFT.format(relationship="Automated", extra=quote))
    [report] = validate_project(project, [DRAFT_PATH])
    assert report.status == "valid", report.problems
    brief = project.project_dir / "brief.agreed.md"
    brief.write_text(
        brief.read_text(encoding="utf-8").replace("does not depend on", "leans on"),
        encoding="utf-8",
    )
    [report] = validate_project(project, [DRAFT_PATH])
    assert report.status == "invalid"
    assert "is not in brief.agreed.md" in report.problems[0]


# --- the canvas ------------------------------------------------------------------------------

NOT_YET_KNOWN_CHANNEL = (
    "### Public-service partners\n\n"
    "- **Not yet known** (purchase) — The research does not say how the health trust buys its staff crossings; ask the trust's estates team.\n"
)
PUBLIC_SERVICE_CHANNELS = CANVAS[
    CANVAS.index("### Public-service partners\n\n- **Contract management**") : CANVAS.index(
        "## Customer Relationships\n"
    )
]


@pytest.fixture(scope="module")
def agreed(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return agreed_project(tmp_path_factory.mktemp("agreed"))


def test_the_fixture_canvas_is_valid(agreed: Project) -> None:
    assert check_canvas(agreed, CANVAS) == ([], [])


def test_not_yet_known_stands_in_for_a_missing_channel(agreed: Project) -> None:
    canvas = replaced(PUBLIC_SERVICE_CHANNELS, NOT_YET_KNOWN_CHANNEL + "\n")
    assert check_canvas(agreed, canvas) == ([], [])
    # Without an attribute too: what is not known may be the whole channel.
    canvas = canvas.replace("**Not yet known** (purchase) —", "**Not yet known** —")
    assert check_canvas(agreed, canvas) == ([], [])


def test_not_yet_known_stands_in_for_a_relationship_and_a_revenue_stream(
    agreed: Project,
) -> None:
    canvas = replaced(
        "- **Contract partnership** (personal, co-creation) — Regular contract meetings with the council, and accounts with the health trust and the school.\n"
        "  - Serves: Public-service partners\n"
        '  - Evidence: `resources/stakeholder-interviews.md`: "S1 wants monthly reliability and passenger data by route"\n',
        "- **Not yet known** — How the council and the trust want to be served between contract meetings; ask the council's transport officer.\n"
        "  - Serves: Public-service partners\n",
    )
    canvas = replaced(
        "- **Public Service Contract and accounts** (contract payment; negotiated, indexed to CPI) — £7.8m contract payment, £1.6m concession reimbursement, health trust and school-call accounts.\n"
        "  - Serves: Public-service partners\n"
        '  - Evidence: `resources/financials-2025.md`: "Payment £7.8m in 2025 (£7.2m in the first contract year), indexed to CPI with a fuel adjustment."\n',
        "- **Not yet known** — What the re-let contract will pay from 2030; ask the council.\n"
        "  - Serves: Public-service partners\n",
        canvas,
    )
    assert check_canvas(agreed, canvas) == ([], [])
    parsed = parse_canvas(canvas)
    assert not isinstance(parsed, list), parsed
    gap = next(item for item in parsed.revenue_streams if item.name == "Not yet known")
    assert gap.evidence == [] and gap.attribute is None
    # The canonical form reads back to the same bytes.
    assert render_canvas(parse_canvas(render_canvas(parsed))) == render_canvas(parsed)  # type: ignore[arg-type]


def test_not_yet_known_is_refused_where_an_item_can_be_left_out(agreed: Project) -> None:
    canvas = replaced(
        "## Key Resources\n\n",
        "## Key Resources\n\n- **Not yet known** (physical) — Whether a second linkspan is needed.\n  - Serves: all segments\n",
    )
    problems, _ = check_canvas(agreed, canvas)
    assert problems == [
        'Key Resources: "Not yet known" (line 148) has no evidence; add at least one sub-bullet '
        '`  - Evidence: `resources/<file>.md`: "<verbatim quote>"` (a `Not yet known` item '
        "stands in only in Channels, Customer Relationships and Revenue Streams; elsewhere "
        "leave out what the research does not show)"
    ]


def test_not_yet_known_must_say_what_is_missing(agreed: Project) -> None:
    canvas = replaced(
        PUBLIC_SERVICE_CHANNELS, "### Public-service partners\n\n- **Not yet known**\n\n"
    )
    problems, _ = check_canvas(agreed, canvas)
    assert len(problems) == 1, problems
    assert "has no description" in problems[0]
    assert "(say what is not known and whom to ask)" in problems[0]


def test_not_yet_known_and_proposed_show_plainly_on_the_client_page(tmp_path: Path) -> None:
    project = agreed_project(tmp_path)
    canvas = replaced(PUBLIC_SERVICE_CHANNELS, NOT_YET_KNOWN_CHANNEL + "\n")
    canvas = replaced(
        "- **Commuter work seat** — A paid reserved seat",
        "- **Commuter work seat** — Proposed: a paid reserved seat",
        canvas,
    )
    atomic_write(project.project_dir / CANVAS_PATH, canvas)
    render_project(project)
    html = (project.project_dir / "canvas" / "canvas.html").read_text(encoding="utf-8")
    assert "Not yet known" in html
    assert "how the health trust buys its staff crossings" in html
    assert "Proposed: a paid reserved seat" in html


def test_phases_written_with_bars_read_as_with_commas(agreed: Project) -> None:
    canvas = replaced(
        "- **Contract management** (delivery, after-sales)",
        "- **Contract management** (delivery|after-sales)",
    )
    assert check_canvas(agreed, canvas) == ([], [])
    parsed = parse_canvas(canvas)
    assert not isinstance(parsed, list)
    item = parsed.channels["Public-service partners"][0]
    assert item.attribute == "delivery, after-sales"


def test_a_segment_that_brings_no_revenue_says_so_in_a_stream(agreed: Project) -> None:
    canvas = replaced(
        "- **Public Service Contract and accounts** (contract payment; negotiated, indexed to CPI)",
        "- **Public Service Contract and accounts** (none; not applicable)",
    )
    assert check_canvas(agreed, canvas) == ([], [])


def test_tensions_bullets_are_notes_not_checked_as_items(agreed: Project) -> None:
    tensions = (
        "## Tensions and Observations\n\n"
        "- Ask whether the Harbour Board should be a segment of its own.\n"
        "  - Serves: Harbour Board\n"
        '  - Evidence: `resources/nowhere.md`: "words that appear in no research file at all"\n'
        "- **A bold bullet** (with parentheses) — and a dash, still only a note.\n"
    )
    start = CANVAS.index("## Tensions and Observations")
    assert check_canvas(agreed, CANVAS[:start] + tensions) == ([], [])


# --- the templates say what the skill text says ----------------------------------------------


def test_the_canvas_template_writes_attributes_the_way_the_skill_describes() -> None:
    template = (SKILLS / "bmc-canvas" / "references" / "canvas-template.md").read_text("utf-8")
    skill = " ".join((SKILLS / "bmc-canvas" / "SKILL.md").read_text("utf-8").split())
    # Bars between choices read as a separator the text never mentions.
    assert not re.search(r"\([^)]*\w\|\w[^)]*\)", template)
    assert "separated by commas" in template and "separated by commas" in skill
    # Every example names its segments; `all segments` is the exception the text describes.
    assert "all segments" not in template
    assert "`Serves: all segments` is right only when" in skill


def test_the_skills_name_the_files_evidence_may_cite() -> None:
    for name in ("bmc-segments", "bmc-canvas"):
        body = " ".join(load_skill(name).body.split())
        assert '`brief.agreed.md`: "<quote>"' in body, name
        assert "cannot be cited" in body, name


# --- what a second round of capable models found unclear (the skills say what these show) -----


def test_a_quote_may_run_over_several_sentences_of_one_passage(tmp_path: Path) -> None:
    project = fixture_project(tmp_path)
    several = (
        '- From `resources/passenger-survey-2026.md`: "Disruption news reaches them by Tidewater SMS '
        'alert (48%), the "Skerry Ferry Watch" Facebook group (33%), the website (12%) or at the '
        'pier (7%). 71% want an alert at least 60 minutes before departure."\n'
    )
    assert make_validator(project)(
        DRAFT_PATH, DRAFT.format(relationship="Automated", extra=several)
    ) == ([], [])
    # Sentences from two places joined into one quote are not a passage of the file.
    joined = several.replace(
        "71% want an alert", "29% now work from home one or two days a week. 71% want an alert"
    )
    problems, _ = make_validator(project)(
        DRAFT_PATH, DRAFT.format(relationship="Automated", extra=joined)
    )
    assert len(problems) == 1 and problems[0].startswith("Evidence: quote "), problems


@pytest.mark.parametrize(
    "row",
    [
        "| **Total** | **21,460** | **96.1%** |",
        "**Total** | **21,460** | **96.1%**",
        "Total | 21,460 | 96.1%",
        "Total 21,460 96.1%",
    ],
)
def test_part_of_a_table_row_with_bold_cells_may_be_quoted(agreed: Project, row: str) -> None:
    # financials-2025.md has `| **Total** | **21,460** | **96.1%** | | |`.
    evidence = '  - Evidence: `resources/financials-2025.md`: "The weekday 07:15 Skerry departure runs at 96% all year"\n'
    canvas = replaced(
        evidence, evidence + f'  - Evidence: `resources/financials-2025.md`: "{row}"\n'
    )
    assert check_canvas(agreed, canvas) == ([], [])


ORIENTATION = "Orientation: cost-driven — 79% of the £31.5m cost base is fixed, and the lifeline timetable sets most of it.\n"


def test_the_orientation_line_takes_no_evidence_and_its_figures_are_checked(
    agreed: Project,
) -> None:
    with_evidence = replaced(
        ORIENTATION,
        ORIENTATION + '  - Evidence: `resources/financials-2025.md`: "79% fixed"\n',
    )
    problems, _ = check_canvas(agreed, with_evidence)
    assert len(problems) == 1 and "is not an item" in problems[0], problems
    unfound = replaced(ORIENTATION, ORIENTATION.replace("79%", "77%"))
    problems, _ = check_canvas(agreed, unfound)
    assert len(problems) == 1 and 'the figure "77%" is not in the sources' in problems[0]


def tension(note: str) -> str:
    start = CANVAS.index("## Tensions and Observations\n")
    return CANVAS[:start] + "## Tensions and Observations\n\n- " + note + "\n"


def test_figures_in_tensions_are_checked_and_the_skills_marker_lets_a_working_through(
    agreed: Project,
) -> None:
    problems, _ = check_canvas(agreed, tension("The work seat is worth about £67,000 a year."))
    assert len(problems) == 1, problems
    assert problems[0].startswith('Tensions and Observations: the figure "£67,000"')
    # The skills' own example of a worked figure, and its refusals.
    example = "about £7,000 a week (estimate: £1.4m over 4 routes and 52 weeks)"
    for skill in ("bmc-segments", "bmc-canvas", "bmc-iterate"):
        assert example in " ".join(load_skill(skill).body.split()), skill
    assert check_canvas(agreed, tension(f"Catering brings in {example}.")) == ([], [])
    for weak in ("(estimate)", "(our arithmetic: £1.4m over 4 routes and 52 weeks)"):
        problems, _ = check_canvas(
            agreed, tension(f"Catering brings in about £7,000 a week {weak}.")
        )
        assert any(p.startswith('Tensions and Observations: the figure "£7,000"') for p in problems)


def test_a_forecast_is_not_checked_wherever_it_stands_and_a_fact_is(agreed: Project) -> None:
    # What the bmc-canvas skill says: it is the wording that counts, not the place.
    seat = "- **Commuter work seat** — A paid reserved seat with a table and working Wi-Fi on the 06:40 and 07:15."
    forecast = "The work seat would be worth about £67,000 a year."
    assert check_canvas(agreed, replaced(seat, f"{seat} {forecast}")) == ([], [])
    assert check_canvas(agreed, tension(forecast)) == ([], [])
    fact = "The work seat is worth about £67,000 a year."
    for canvas in (replaced(seat, f"{seat} {fact}"), tension(fact)):
        problems, _ = check_canvas(agreed, canvas)
        assert len(problems) == 1 and '"£67,000"' in problems[0], problems


def test_a_revenue_stream_whose_pricing_is_not_documented_says_not_known(
    agreed: Project,
) -> None:
    canvas = replaced(
        "(contract payment; negotiated, indexed to CPI)", "(contract payment; not known)"
    )
    assert check_canvas(agreed, canvas) == ([], [])
    problems, _ = check_canvas(
        agreed, replaced("(contract payment; negotiated, indexed to CPI)", "(contract payment)")
    )
    assert len(problems) == 1 and "needs both a revenue type and a pricing mechanism" in problems[0]


def test_a_segments_document_laid_out_as_the_template_is_accepted(tmp_path: Path) -> None:
    # Blank lines between the labelled lines, no size line, a relationship with its why:
    # as skills/bmc-segments/references/segments-template.md lays an entry out.
    project = segments_ready(tmp_path)
    document = demo_segment_files()["segments/segments.md"]
    spaced = re.sub(
        r"\n(\*\*(?:Who they are|Size/scale|Value propositions|Channels|Relationship|Revenue)\*\*:)",
        r"\n\n\1",
        document,
    ).replace("**Value propositions**:\n", "**Value propositions**:\n\n")
    spaced = re.sub(r"\n\*\*Size/scale\*\*:[^\n]*\n", "\n", spaced)
    spaced = spaced.replace(
        "**Relationship**: Automated, self-service.",
        "**Relationship**: Automated, self-service — alerts and the app; few ever call.",
    )
    assert "**Size/scale**" not in spaced and "\n\n**Channels**:" in spaced
    assert make_validator(project)("segments/segments.md", spaced) == ([], [])
    template = (SKILLS / "bmc-segments" / "references" / "segments-template.md").read_text("utf-8")
    assert "\n\n**Channels**:" in template and "leave this line out" in template


def test_the_prompt_says_what_the_skill_folder_holds(tmp_path: Path) -> None:
    project = fixture_project(tmp_path)
    segments = " ".join(prompt(project).split())
    assert "no need to read its `SKILL.md`; its templates and other files are listed" in segments
    assert "`edit` (replace one exact string, or every copy of it with `replace_all`)" in segments
    # bmc-iterate has no templates: the prompt must not promise any.
    iterate = load_skill("bmc-iterate")
    assert iterate.references() == []
    text = " ".join(render_system_prompt(iterate, project).split())
    assert "no need to read its `SKILL.md`; it has no other files." in text
    assert "with its templates" not in text


# --- the organisation's profile -------------------------------------------------------------

PROFILE_HEADING = "# The organisation, from its profile (`org.md`)"


def test_the_prompt_carries_the_profile_from_org_md(tmp_path: Path) -> None:
    # The model cannot open org.md (it is outside the project folder), but the validator
    # finds figures in it, so the prompt must show it.
    system = prompt(fixture_project(tmp_path))
    profile = system.split(PROFILE_HEADING, 1)[1].split("# How you work here")[0]
    assert "employs 410 people in ferry operations" in profile
    assert "Public Service Contract with Merrow & Isles Regional Council" in profile
    assert "name:" not in profile  # the front matter is not the profile
    assert "its profile above and the files below" in " ".join(system.split())


@pytest.mark.parametrize(
    "org_md",
    [
        '---\nname: "Tidewater Ferries Ltd"\n---\n',
        # What `bmc init --name` writes: a title that only repeats the name.
        '---\nname: "Tidewater Ferries Ltd"\n---\n\n# Tidewater Ferries Ltd\n',
    ],
)
def test_without_a_profile_body_the_prompt_has_no_profile_section(
    tmp_path: Path, org_md: str
) -> None:
    project = fixture_project(tmp_path)
    (project.org_dir / "org.md").write_text(org_md, encoding="utf-8")
    system = prompt(project)
    assert PROFILE_HEADING not in system
    assert "profile above" not in system
    assert "Tidewater Ferries Ltd (organisation `tidewater`" in system


def test_an_org_md_linked_from_elsewhere_is_not_shown(tmp_path: Path) -> None:
    project = fixture_project(tmp_path)
    elsewhere = tmp_path / "other-org.md"
    elsewhere.write_text("---\n---\n\nSomeone Else plc makes widgets.\n", encoding="utf-8")
    (project.org_dir / "org.md").unlink()
    os.symlink(elsewhere, project.org_dir / "org.md")
    system = prompt(project)
    assert "Someone Else" not in system
    assert PROFILE_HEADING not in system


def test_the_profile_is_read_once_and_the_sessions_prompt_never_changes(
    tmp_path: Path, scripted: Callable[..., ScriptedModel]
) -> None:
    project = fixture_project(tmp_path)
    model = scripted({"steps": [says("Here are my questions."), says("Going on.")]})

    def client() -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=model.base_url, api_key="test-key", max_retries=0)

    ui.start(project, "bmc-segments", RunOptions(client=client()), TerminalDisplay(), Lines())
    # While the session waits, the consultant rewrites the profile.
    org_md = project.org_dir / "org.md"
    org_md.write_text(
        org_md.read_text("utf-8").replace("410 people", "395 people"), encoding="utf-8"
    )
    ui.resume(project, None, RunOptions(client=client()), TerminalDisplay(), Lines("Go on."))
    assert len(model.requests) == 2
    first, second = (request["system"] for request in model.requests)
    assert second == first, "the system prompt changed inside one session"
    text = first if isinstance(first, str) else "".join(block["text"] for block in first)
    assert "employs 410 people" in text
    assert prompt(project) != text  # a new session would show the new profile
    model.assert_finished()


def test_the_prompt_names_request_agreement_among_the_tools(tmp_path: Path) -> None:
    project = fixture_project(tmp_path)
    tools = " ".join(prompt(project).split()).split("Tools: ", 1)[1].split(". Call ")[0]
    assert "`request_agreement`" in tools
    research = render_system_prompt(load_skill("bmc-segments"), project, has_agreement=False)
    tools = " ".join(research.split()).split("Tools: ", 1)[1].split(". Call ")[0]
    assert "request_agreement" not in tools


def says(words: str) -> dict[str, Any]:
    return {"reply": {"content": [{"type": "text", "text": words}]}}


class Lines:
    """The consultant's side: these lines, then end of input."""

    def __init__(self, *lines: str) -> None:
        self.lines = list(lines)

    def next_message(self) -> str | None:
        return self.lines.pop(0) if self.lines else None

    def answer(self, prompt: str) -> str | None:
        return self.next_message()
