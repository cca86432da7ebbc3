"""Every figure grounded: a draft, the segments document or the canvas that states a figure
the research does not hold is refused naming the figure; figures typed the ways people type
them are found; forecasts, self-counts and marked estimates are not claims of fact.

The corpora are built from the demo engagement (fixtures/): its real research reports, its
segment drafts and segments document, and the fixture canvas, each edited in one place."""

# Documents quote research sentences verbatim: long lines are the format.
# ruff: noqa: E501

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bmc.documents import figures
from bmc.documents.grounding import ResourceText, find_quote
from bmc.documents.validate import make_validator
from bmc.workspace.paths import Project
from projects import FIXTURES, demo_segment_files, write

COMMUTERS = "segments/drafts/island-commuters.md"
SEGMENTS = "segments/segments.md"
CANVAS = "canvas/canvas.md"
AGREED = "segments/segments.agreed.md"
CANVAS_TEXT = (FIXTURES / "canvas" / "tidewater-canvas.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The demo engagement with its segments written and agreed (the checks only read it:
    every document is given to the validator, never written)."""
    root = tmp_path_factory.mktemp("figures")
    shutil.copytree(FIXTURES / "workspace", root / "workspace")
    project = Project(root / "workspace", "tidewater", "growth-2027")
    for path, content in demo_segment_files().items():
        write(project, path, content)
    write(project, AGREED, demo_segment_files()[SEGMENTS])
    return project


def original(path: str) -> str:
    return CANVAS_TEXT if path == CANVAS else demo_segment_files()[path]


def edited(path: str, old: str, new: str) -> str:
    text = original(path)
    assert old in text, old
    return text.replace(old, new, 1)


def commuters_saying(sentence: str, section: str = "## Revenue potential") -> str:
    """The commuters draft with `sentence` ending the section. The draft cites the
    financial report (for its fare revenue), so every research figure of the sentence is in
    a cited source."""
    text = original(COMMUTERS)
    assert "From `resources/financials-2025.md`" in text
    start = text.index(section)
    end = text.index("\n\n## ", start)
    return text[:end] + " " + sentence + text[end:]


# --- figures that are not in the research: refused, naming the figure ---------------------


@dataclass(frozen=True)
class Invented:
    path: str
    old: str
    new: str
    figure: str  # how the refusal names it
    section: str  # what the refusal starts with


INVENTED = {
    # A segment draft: altered figures in each section, checked against its cited reports.
    "commuter share altered": Invented(
        COMMUTERS,
        "(81% of surveyed commuters)",
        "(86% of surveyed commuters)",
        "86%",
        "Who they are",
    ),
    "priority share altered": Invented(
        COMMUTERS, "61% rank the sailing", "67% rank the sailing", "67%", "Who they are"
    ),
    "satisfaction altered": Invented(
        COMMUTERS, "(58% satisfied against", "(53% satisfied against", "53%", "Who they are"
    ),
    "season tickets miscounted": Invented(
        COMMUTERS,
        "Size is disputed: 1,650 Skerry",
        "Size is disputed: 1,850 Skerry",
        "1,850",
        "Who they are",
    ),
    "count written without comma, wrong": Invented(
        COMMUTERS, "1,900 Skerry residents", "1700 Skerry residents", "1700", "Who they are"
    ),
    "hedged figure out of its rounding": Invented(
        COMMUTERS,
        "about 2,300 by the survey's estimate",
        "about 2,900 by the survey's estimate",
        "2,900",
        "Who they are",
    ),
    "invented sentence in who they are": Invented(
        COMMUTERS,
        "Residents' trips for",
        "37% of them drive to the pier. Residents' trips for",
        "37%",
        "Who they are",
    ),
    "alert percentage altered": Invented(
        COMMUTERS, "(71% want one)", "(76% want one)", "76%", "Value propositions"
    ),
    "willingness altered": Invented(
        COMMUTERS, "which 34% would pay £10", "which 36% would pay £10", "36%", "Value propositions"
    ),
    "price altered": Invented(
        COMMUTERS,
        "which 34% would pay £10 a month",
        "which 34% pay £15 a month",
        "£15",
        "Value propositions",
    ),
    "channel share altered": Invented(
        COMMUTERS, "SMS alert (48%)", "SMS alert (53%)", "53%", "Channels"
    ),
    "app share altered": Invented(
        COMMUTERS, "Tidewater app 31%", "Tidewater app 37%", "37%", "Channels"
    ),
    "revenue invented": Invented(
        COMMUTERS,
        "Islander season tickets (£1.7m in 2025)",
        "Islander season tickets (£2.75m in 2025)",
        "£2.75m",
        "Revenue potential",
    ),
    "revenue in words invented": Invented(
        COMMUTERS,
        "Islander season tickets (£1.7m in 2025)",
        "Islander season tickets (two point six million pounds in 2025), eighty-five thousand pounds of it online",
        "eighty-five thousand pounds",
        "Revenue potential",
    ),
    "market size invented": Invented(
        COMMUTERS,
        "Remote working is",
        "The commuter market is worth £12m. Remote working is",
        "£12m",
        "Revenue potential",
    ),
    "range with one end invented": Invented(
        COMMUTERS,
        "three sources give 1,650 to 2,300 commuters",
        "three sources give 1,650 to 2,700 commuters",
        "1,650 to 2,700",
        "Confidence",
    ),
    "response count altered": Invented(
        COMMUTERS, "High — 384 survey responses", "High — 480 survey responses", "480", "Confidence"
    ),
    "year as target invented": Invented(
        COMMUTERS,
        "Remote working is",
        "Tidewater's target is online renewals for all by 2033. Remote working is",
        "2033",
        "Revenue potential",
    ),
    "pains figure altered": Invented(
        COMMUTERS,
        "41% were late for work at least once",
        "43% were late for work at least once",
        "43%",
        "Pains",
    ),
    "alert lead time altered": Invented(
        COMMUTERS,
        "- Notice of disruption at least 60 minutes",
        "- Notice of disruption at least 75 minutes",
        "75",
        "Gains",
    ),
    "percentage without a marker": Invented(
        COMMUTERS,
        "Remote working is",
        "That is 62% of the route's fares. Remote working is",
        "62%",
        "Revenue potential",
    ),
    "bare estimate marker": Invented(
        COMMUTERS,
        "Remote working is",
        "That is 62% of the route's fares (estimate). Remote working is",
        "62%",
        "Revenue potential",
    ),
    # The segments document: no per-item citations, so all the research is searched.
    "overview revenue altered": Invented(
        SEGMENTS, "and earned £32.2m:", "and earned £34.2m:", "£34.2m", "Overview"
    ),
    "overview journeys altered": Invented(
        SEGMENTS,
        "2.22 million passenger journeys",
        "2.52 million passenger journeys",
        "2.52 million",
        "Overview",
    ),
    "overview margin altered": Invented(
        SEGMENTS,
        "a cost base that is 79% fixed",
        "a cost base that is 73% fixed",
        "73%",
        "Overview",
    ),
    "overview deadline altered": Invented(
        SEGMENTS,
        "re-let the contract by March 2028",
        "re-let the contract by March 2032",
        "2032",
        "Overview",
    ),
    "segment size altered": Invented(
        SEGMENTS,
        "**Size/scale**: 24% of the survey sample",
        "**Size/scale**: 28% of the survey sample",
        "28%",
        'Segments: "Island residents on non-work trips"',
    ),
    "visitor trips altered": Invented(
        SEGMENTS,
        "412,000 visitor trips",
        "512,000 visitor trips",
        "512,000",
        'Segments: "Visitors and day-trippers"',
    ),
    # The canvas: each item against the reports it cites; the rest against all research.
    "cost altered": Invented(
        CANVAS,
        "(fixed) — £11.6m, the largest",
        "(fixed) — £12.6m, the largest",
        "£12.6m",
        'Cost Structure: "Crew wages, pensions and training"',
    ),
    "fuel cost altered": Invented(
        CANVAS,
        "(variable) — £4.9m, the largest variable",
        "(variable) — £5.3m, the largest variable",
        "£5.3m",
        'Cost Structure: "Fuel"',
    ),
    "revenue stream altered": Invented(
        CANVAS,
        "(usage fee; fixed rate per lane metre) — £4.2m in 2025",
        "(usage fee; fixed rate per lane metre) — £4.6m in 2025",
        "£4.6m",
        'Revenue Streams: "Commercial vehicle fares"',
    ),
    "charter revenue altered": Invented(
        CANVAS,
        "Coach operators (£0.38m)",
        "Coach operators (£0.48m)",
        "£0.48m",
        'Revenue Streams: "Coach and cruise charters"',
    ),
    "reliability target altered": Invented(
        CANVAS,
        "run to the 97% reliability target",
        "run to the 98.5% reliability target",
        "98.5%",
        'Value Propositions: "Lifeline timetable delivered"',
    ),
    "fleet age altered": Invented(
        CANVAS,
        "Average age 27 years",
        "Average age 26 years",
        "26",
        'Key Resources: "Fleet of five vessels"',
    ),
    "staff count altered": Invented(
        CANVAS,
        "410 people in ferry operations",
        "450 people in ferry operations",
        "450",
        'Key Resources: "Crews and shore staff"',
    ),
    "replacement year altered": Invented(
        CANVAS,
        "replacement is planned for 2029",
        "replacement is planned for 2031",
        "2031",
        'Key Resources: "Fleet of five vessels"',
    ),
    "orientation share altered": Invented(
        CANVAS,
        "79% of the £31.5m cost base",
        "83% of the £31.5m cost base",
        "83%",
        "Cost Structure",
    ),
    "tension with an invented figure": Invented(
        CANVAS,
        "but islanders want priority.",
        "but 67% of islanders want priority.",
        "67%",
        "Tensions and Observations",
    ),
    "alert lead time on the canvas": Invented(
        CANVAS,
        "A warning at least 60 minutes before departure",
        "A warning at least 35 minutes before departure",
        "35",
        'Value Propositions: "Early disruption alerts"',
    ),
    "portal launch altered": Invented(
        CANVAS,
        "Launched in March 2025",
        "Launched in March 2021",
        "2021",
        'Channels: "Online freight portal"',
    ),
}


def test_the_invented_corpus_has_at_least_30_documents() -> None:
    assert len(INVENTED) >= 30
    assert {case.path for case in INVENTED.values()} == {COMMUTERS, SEGMENTS, CANVAS}


@pytest.mark.parametrize("name", sorted(INVENTED))
def test_an_invented_figure_is_refused_naming_it(project: Project, name: str) -> None:
    case = INVENTED[name]
    problems, _ = make_validator(project)(case.path, edited(case.path, case.old, case.new))
    named = [p for p in problems if f'the figure "{case.figure}"' in p]
    assert named, problems
    assert all(p.startswith(case.section) for p in named), named


def test_the_refusal_shows_the_nearest_figures_of_the_sources(project: Project) -> None:
    case = INVENTED["commuter share altered"]
    problems, _ = make_validator(project)(case.path, edited(case.path, case.old, case.new))
    (problem,) = [p for p in problems if '"86%"' in p]
    assert "resources/passenger-survey-2026.md" in problem
    assert 'the nearest figures there: "' in problem
    # The nearest are percentages (a percentage is looked for among percentages).
    nearest = problem.split("the nearest figures there: ")[1]
    assert nearest.count("%") >= 3
    assert "(estimate: <how>)" in problem


def test_a_bare_estimate_marker_is_explained(project: Project) -> None:
    case = INVENTED["bare estimate marker"]
    problems, _ = make_validator(project)(case.path, edited(case.path, case.old, case.new))
    assert any('a bare "(estimate)" does not count' in p for p in problems)


def test_the_demo_documents_state_no_invented_figure(project: Project) -> None:
    validate = make_validator(project)
    for path in [*demo_segment_files(), CANVAS]:
        problems, _ = validate(path, original(path))
        assert problems == [], (path, problems)


RESIDENTS = "segments/drafts/island-residents-on-non-work-trips.md"
# The residents draft cites the survey and the stakeholder interviews, not the financial
# report, which alone holds this share of fares.
CAR_FARES = (
    "reimbursed by the council.",
    "reimbursed by the council. Car and driver fares were 33.9% of fares in 2025.",
)
CAR_FARES_EVIDENCE = '- From `resources/financials-2025.md`: "Car and driver | 7.8 | 33.9% | Passengers in the car pay foot fares"'


def with_evidence(text: str, line: str) -> str:
    """`text` (a draft) with `line` ending its Evidence section."""
    start = text.index("## Evidence")
    end = text.index("\n\n## ", start)
    return text[:end] + "\n" + line + text[end:]


def test_a_real_figure_from_a_report_the_draft_does_not_cite_is_refused_naming_the_report(
    project: Project,
) -> None:
    problems, _ = make_validator(project)(RESIDENTS, edited(RESIDENTS, *CAR_FARES))
    (problem,) = [p for p in problems if '"33.9%"' in p]
    assert problem.startswith("Revenue potential: ")
    assert (
        "is not in the sources this draft draws on (resources/passenger-survey-2026.md, "
        "resources/stakeholder-interviews.md" in problem
    )
    assert "it is in resources/financials-2025.md: add a quote from there as evidence" in problem


def test_quoting_the_report_the_refusal_names_is_the_whole_fix(project: Project) -> None:
    text = with_evidence(edited(RESIDENTS, *CAR_FARES), CAR_FARES_EVIDENCE)
    assert make_validator(project)(RESIDENTS, text) == ([], [])


def test_a_canvas_item_stating_a_figure_of_a_report_it_does_not_cite_is_refused(
    project: Project,
) -> None:
    old = "shape the timetable with Tidewater."
    new = "shape the timetable with Tidewater, whose Skerry route carried 1,420,000 passenger journeys in 2025."
    problems, _ = make_validator(project)(CANVAS, edited(CANVAS, old, new))
    (problem,) = [p for p in problems if '"1,420,000"' in p]
    assert problem.startswith('Customer Relationships: "Community voice"')
    assert "the sources the item draws on (resources/stakeholder-interviews.md" in problem
    assert "it is in resources/financials-2025.md: add a quote from there as evidence" in problem
    cited = edited(CANVAS, old, new).replace(
        '"Our members aren\'t a segment you can choose to serve. We live here, and the boat is our road."',
        '"Our members aren\'t a segment you can choose to serve. We live here, and the boat is our road."\n'
        '  - Evidence: `resources/financials-2025.md`: "| Skerry | 25 min | 1,420,000 | 248,000 | 21,000 | £11.4m |"',
        1,
    )
    assert make_validator(project)(CANVAS, cited)[0] == []


def test_text_that_cites_nothing_may_state_a_figure_of_any_report(project: Project) -> None:
    """The tensions and the segments document have no evidence lines: all the research is
    theirs, so a real figure from any report passes there."""
    tension = edited(
        CANVAS,
        "but islanders want priority.",
        "but islanders want priority; Holmsey summer Saturdays run at 98%.",
    )
    assert make_validator(project)(CANVAS, tension)[0] == []
    overview = edited(
        SEGMENTS, "by 2029.\n", "by 2029. Car and driver fares were 33.9% of fares in 2025.\n"
    )
    assert make_validator(project)(SEGMENTS, overview)[0] == []


# --- research figures typed the ways people type them: accepted ---------------------------

TYPED = {
    "comma dropped": "Skerry has 1650 season tickets live per month.",
    "table cell under £m, as £x.ym": "Islander season tickets earned £1.7m in 2025.",
    "table cell under £m, as £x million": "Islander season tickets earned £1.7 million in 2025.",
    "table cell under £m, in full": "Islander season tickets earned £1,700,000 in 2025.",
    "per cent in words": "Walk-up foot fares were £5.1m, 22.2 per cent of fares.",
    "percent as one word": "Fares were 71.4 percent of all revenue.",
    "thousands as k": "The council deducted £140k for missed sailings in 2025.",
    "amount in words": "The council deducted one hundred and forty thousand pounds in 2025.",
    "target from the agreed brief": "The brief asks for £3 million a year of new revenue by 2029.",
    "hedged, rounded": "Fare revenue was about £23m.",
    "hedged millions": "Tidewater carried roughly 2.2 million passenger journeys.",
    "rounded without a hedge": "Passenger journeys rose from 2.15 million to 2.22 million.",
    "range": "Car crossings were 349,000–358,000 across the two years.",
    "range sharing its unit": "Skerry's peak and winter journeys were 540-550 thousand each.",
    "nearly": "Nearly 60% of Holmsey journeys are in the peak season.",
    "over": "Over 95% of Skerry sailings operated.",
    "time and percentage": "The weekday 07:15 Skerry departure runs at 96% all year.",
    "date as a deadline": "The contract runs to 31 March 2030.",
    "fare without pence": "A Skerry season ticket costs £78 a month.",
    "figure from the organisation's profile": "Tidewater employs 410 people in ferry operations.",
    "marked estimate": "That is about £7,000 a week from catering and other income (estimate: £1.4m over 4 routes and 52 weeks, spread evenly) on the routes.",
    "derived figure marker": "Each season ticket brings in about £85 a month (derived: £1.7m over 1,650 tickets and 12 months).",
    "forecast": "A re-tendered contract could push the next one into 2031 and cost 15% of the subsidy.",
    "judgment": "We think the work seat would fill 120 places at £12 a month.",
    "self-count": "The 3 value propositions above answer the 2 pains that matter most.",
    "labels": "See Stage 2 and line 40 of the survey; COVID-19 and 4G matter less.",
}


def test_the_typed_corpus_has_at_least_20_documents() -> None:
    assert len(TYPED) >= 20


@pytest.mark.parametrize("name", sorted(TYPED))
def test_research_figures_typed_as_people_type_them_are_accepted(
    project: Project, name: str
) -> None:
    validate = make_validator(project)
    problems, _ = validate(COMMUTERS, commuters_saying(TYPED[name]))
    assert problems == []


def test_a_canvas_with_figures_typed_differently_is_accepted(project: Project) -> None:
    text = CANVAS_TEXT
    for old, new in (
        ("£11.6m, the largest", "£11,600,000, the largest"),
        ("£4.9m, the largest variable", "£4.9 million, the largest variable"),
        ("79% of the £31.5m cost base", "79 per cent of the £31.5 million cost base"),
        ("£0.9m, mostly from visitors", "about £900k, mostly from visitors"),
        ("Average age 27 years", "Average age twenty-seven years"),
    ):
        assert old in text
        text = text.replace(old, new, 1)
    problems, _ = make_validator(project)(CANVAS, text)
    assert problems == []


def test_a_table_in_the_segments_document_is_read_by_its_column_unit(project: Project) -> None:
    table = "\n\n| Source | £m | Share |\n|---|---|---|\n| Fares | 23.0 | 71.4% |\n| Contract | 7.8 | 24.2% |\n"
    text = edited(SEGMENTS, "by 2029.\n", "by 2029." + table)
    assert make_validator(project)(SEGMENTS, text)[0] == []
    wrong = text.replace("| Contract | 7.8 |", "| Contract | 8.8 |")
    problems, _ = make_validator(project)(SEGMENTS, wrong)
    assert any('the figure "8.8"' in p and p.startswith("Overview") for p in problems)


# --- the rules, one by one ----------------------------------------------------------------


def found(stated: str, source: str) -> bool:
    (figure,) = figures.stated_figures(stated).figures
    return figures.FigureIndex.of(source).find_all_ways(figure)


@pytest.mark.parametrize(
    ("stated", "source"),
    [
        ("1,650 tickets", "Avg 1650 Skerry tickets"),
        ("1650 tickets", "Avg 1,650 Skerry tickets"),
        ("52% said so", "52 per cent said so"),
        ("52 per cent", "a share of 52%"),
        ("52 percent", "a share of 52%"),
        ("£3.0m", "£3 million"),
        ("£3 million", "£3,000,000"),
        ("£3,000,000", "£3.0m"),
        ("£8,000", "eight thousand pounds"),
        ("eight thousand pounds", "£8,000"),
        ("£180k", "£180,000"),
        ("£180,000", "£180k"),
        ("£11.6m", "| Cost | £m |\n|---|---|\n| Crew | 11.6 |\n"),
        ("£11.6m", "| Cost (£000) | Type |\n|---|---|\n| 11,600 | Fixed |\n"),
        ("62%", "| Route | Share (%) |\n|---|---|\n| Skerry | 62 |\n"),
        ("about 40%", "38% of them"),
        ("around 2.2 million", "2,220,000 journeys"),
        ("roughly £70k", "£72,500 a year"),
        ("some 265,000 trips", "roughly 265,000 round trips"),
        ("over 400 staff", "410 staff"),
        ("up to 60%", "58% of them"),
        ("by 2029", "planned for 2029"),
        ("at 06:40", "the 06:40 sailing"),
        ("closes at 5pm", "open 07:00–17:00"),
        ("forty per cent", "40% of them"),
    ],
)
def test_a_figure_is_found_the_way_a_person_would_find_it(stated: str, source: str) -> None:
    assert found(stated, source)


@pytest.mark.parametrize(
    ("stated", "source"),
    [
        ("40% of them", "38% of them"),  # not hedged: written to the unit
        ("about 50%", "38% of them"),  # hedged, but beyond its rounding
        ("£3m", "3 million journeys"),  # money is looked for among money
        ("52%", "52 respondents"),  # a percentage among percentages
        ("$180k", "£180,000"),  # the currency matters
        ("in 2028", "in 2029"),  # years are exact, hedged or not
        ("around 2028", "in 2029"),
        ("over 400 staff", "380 staff"),  # "over" allows more, not less
        ("£1,700,000", "£1.74m"),  # more precise than the source
        ("at 06:45", "the 06:40 sailing"),
    ],
)
def test_a_figure_is_not_found_where_a_person_would_not_find_it(stated: str, source: str) -> None:
    assert not found(stated, source)


@pytest.mark.parametrize(
    ("text", "checked"),
    [
        ("This could push first installs into 2028.", []),
        ("52% would use an off-peak fare.", ["52%"]),
        ("52% would use it, and 47% would buy one.", ["52%", "47%"]),
        ("If fares rose 10%, 30% of commuters would switch.", []),
        ("The council will decide by March 2028.", ["2028"]),
        ("The target is 97% of sailings.", ["97%"]),
        ("We recommend a 10% off-peak discount.", []),
        ("The 5 segments below and 3 value propositions each.", []),
        ("Three segments, twelve coach slots and forty per cent of trips.", ["forty per cent"]),
        ("Stage 2, line 40, Proposition 1-2, Q3, COVID-19, 4G, 3rd, 24/7.", []),
        (
            "About 3,200 a week (estimate: 265,000 round trips over 52 weeks) and 38% of them.",
            ["38%"],
        ),
        ("See `passenger-survey-2026.md` and [the 2026 report](https://x.org/2031).", ["2026"]),
        ("1. **Sailings that run** — 2. on time", ["2"]),
        ("From 1 April 2023 to 31 March 2030.", ["2023", "2030"]),
    ],
)
def test_what_counts_as_a_figure_stated_as_fact(text: str, checked: list[str]) -> None:
    assert [f.written for f in figures.stated_figures(text).figures] == checked


def test_a_range_is_found_only_when_both_ends_are() -> None:
    stated = figures.stated_figures("between 1,650 and 2,300 commuters").figures
    assert [f.value for f in stated] == [1650, 2300]
    both = figures.FigureIndex.of("1,650 tickets; 2,300 by the survey")
    one = figures.FigureIndex.of("1,650 tickets; 2,100 by the survey")
    assert all(both.find(f) for f in stated)
    assert not all(one.find(f) for f in stated)


def test_a_range_shares_its_units() -> None:
    low, high = figures.stated_figures("£3-5m and 52–58%").figures[:2]
    assert (low.kind, low.value, low.currency) == ("money", 3e6, "GBP")
    assert (high.kind, high.value) == ("money", 5e6)
    pct = figures.stated_figures("52–58% of them").figures
    assert [(f.kind, f.value) for f in pct] == [("percent", 52), ("percent", 58)]


# Property: however an amount is typed, it is found in a source that types it another way.
def _typings(pounds: int) -> list[str]:
    ways = [f"£{pounds:,}", f"£{pounds}"]
    if pounds % 1_000_000 == 0:
        ways += [f"£{pounds // 1_000_000}m", f"£{pounds // 1_000_000} million"]
    if pounds % 100_000 == 0:
        ways += [f"£{pounds / 1_000_000:.1f}m"]
    if pounds % 1_000 == 0:
        ways += [f"£{pounds // 1_000}k", f"£{pounds // 1_000} thousand"]
    return ways


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 999).map(lambda n: n * 1000)
    | st.integers(1, 99).map(lambda n: n * 100_000)
    | st.integers(1, 9999)
)
def test_amounts_typed_any_way_find_each_other(pounds: int) -> None:
    ways = _typings(pounds)
    for stated in ways:
        for source in ways:
            assert found(f"costs {stated} a year", f"Cost: {source}."), (stated, source)
    assert not found(f"costs £{pounds + 1:,} a year", f"Cost: £{pounds:,}.")


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 999_999), st.sampled_from(["%", " per cent", " percent"]))
def test_percentages_typed_any_way_find_each_other(tenths: int, sign: str) -> None:
    value = f"{tenths / 10:.1f}"
    assert found(f"{value}{sign} of them", f"a share of {value}%")
    assert not found(f"{value}{sign} of them", f"a share of {(tenths + 2) / 10:.1f}%")


@settings(max_examples=100, deadline=None)
@given(st.integers(20, 999_999))
def test_numbers_in_words_are_read_as_their_value(number: int) -> None:
    words = _in_words(number)
    (figure,) = figures.stated_figures(f"{words} visitors came").figures
    assert figure.value == number, words


def _in_words(n: int) -> str:
    units = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ]
    tens = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]

    def below_thousand(k: int) -> str:
        parts = []
        if k >= 100:
            parts.append(f"{units[k // 100]} hundred")
            k %= 100
            if k:
                parts.append("and")
        if k >= 20:
            parts.append(tens[k // 10] + (f"-{units[k % 10]}" if k % 10 else ""))
        elif k:
            parts.append(units[k])
        return " ".join(parts)

    if n >= 1000:
        rest = below_thousand(n % 1000)
        return f"{below_thousand(n // 1000)} thousand" + (f" {rest}" if rest else "")
    return below_thousand(n)


# --- markdown links in research ---------------------------------------------------------


LINKED = (
    "Visitors first hear of the islands on the [Isles Tourism Partnership website]"
    '(https://isles.example/visit_(2026) "Visit"), which links to\n[Tidewater\'s '
    "booking site][booking] but sells nothing itself. ![Map of the isles](map.png) shows it."
)


def test_a_quote_of_a_links_visible_text_is_found() -> None:
    text = ResourceText(LINKED)
    quote = "on the Isles Tourism Partnership website, which links to Tidewater's booking site but sells nothing"
    assert not hasattr(find_quote(quote, text), "passage")
    assert not hasattr(find_quote("Map of the isles shows it", text), "passage")
    # A quote copied with the markup still counts.
    assert not hasattr(find_quote("[Tidewater's booking site][booking] but sells", text), "passage")


def test_the_closest_passage_points_into_the_linked_text() -> None:
    text = ResourceText("Intro line.\n" * 50 + LINKED + "\nClosing line.\n" * 50)
    closest = find_quote(
        "the Isles Tourism Partnership webpage, which links to Tidewaters booking", text
    )
    assert hasattr(closest, "passage")
    assert "Isles Tourism Partnership website]" in closest.passage
    assert "Intro line" not in closest.passage and "Closing" not in closest.passage


def test_a_quote_from_a_linked_research_file_passes_validation(project: Project) -> None:
    report = project.resources_dir / "linked-note.md"
    report.write_text(LINKED + "\n", encoding="utf-8")
    try:
        text = original(COMMUTERS).replace(
            "\n\n## Confidence",
            '\n- From `resources/linked-note.md`: "the Isles Tourism Partnership website, which links to Tidewater\'s booking site"\n\n## Confidence',
            1,
        )
        assert make_validator(project)(COMMUTERS, text)[0] == []
    finally:
        report.unlink()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.text(alphabet="ab c\n", min_size=1, max_size=8)
        | st.builds(
            lambda a, b: f"[{a}]({b})",
            st.text(alphabet="xy z", max_size=6),
            st.text(alphabet="uv/", max_size=5),
        ),
        max_size=12,
    ).map("".join)
)
def test_visible_text_maps_back_to_the_source(markdown: str) -> None:
    from bmc.documents.grounding import visible_text

    visible = visible_text(markdown)
    for index, char in enumerate(visible.text):
        assert markdown[visible.source_offset(index)] == char


def test_an_edited_resource_changes_the_figures_found(tmp_path: Path) -> None:
    from bmc.documents.grounding import load_resource

    path = tmp_path / "r.md"
    path.write_text("Revenue was £4.2m.\n", encoding="utf-8")
    (figure,) = figures.stated_figures("£4.2m").figures
    assert figures.index_of(load_resource(path)).find(figure)
    path.write_text("Revenue was £4.7m in total.\n", encoding="utf-8")
    assert not figures.index_of(load_resource(path)).find(figure)
