"""The segments schemas: canonical documents round-trip exactly, hand-typed ones still parse,
and real drafts written in many styles are accepted by the full validator (no false alarms).
"""

# Drafts quote research sentences verbatim, one evidence line each: long lines are the format.
# ruff: noqa: E501

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bmc.documents.schemas import RELATIONSHIP_TYPES, Problem
from bmc.documents.schemas.segments import (
    Evidence,
    SegmentDraft,
    SegmentsDocument,
    ValueProposition,
    parse_draft,
    parse_segments_document,
    render_draft,
    render_segments_document,
)
from bmc.documents.validate import make_validator, slugify, validate_project
from bmc.workspace.paths import Project
from projects import research_project


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A project whose resources are the demo fixture's real research reports."""
    return research_project(tmp_path)


CANONICAL_DRAFT = """\
# Island Commuters

## Who they are

Skerry residents who cross to work or study on the mainland three or more days a week:
about 1,650 to 2,300 people, depending on the source.

Reliability comes first for them; a third now work from home one or two days a week.

## Value propositions

1. **Sailings that run** — a cancelled early sailing costs them half a day's pay.
2. **Early warning** — an alert before they leave home, not at the pier.

## Channels

Tidewater SMS alerts, the "Skerry Ferry Watch" Facebook group, the terminal desk for season
tickets, and the app.

## Relationship type

Automated, community — alerts and the app are automated; commuters run their own Facebook group.

## Revenue potential

Monthly season tickets; 34% would pay £10 a month more for a reserved seat with Wi-Fi.

## Evidence

- From `resources/passenger-survey-2026.md`: "If the 06:40 goes off I'm docked half a day, simple as that."
- From `resources/passenger-survey-2026.md`: "71% want an alert at least 60 minutes before departure"

## Confidence

High — a large survey sample, consistent with the council's travel-to-work analysis.
"""

CANONICAL_DRAFT_WITH_CANVAS = (
    CANONICAL_DRAFT
    + """
## Customer jobs

- Get to work on time
- Renew the season ticket

## Pains

- Late for work after a cancellation
- The desk shuts at five

## Gains

- A working hour on board

## Pain relievers

- Alerts an hour before departure

## Gain creators

- Reserved seats with a table and Wi-Fi
"""
)

CANONICAL_DOCUMENT = """\
# Customer Segments — Tidewater Ferries Ltd

## Overview

Tidewater runs the lifeline ferries to four islands under a council contract.

## Segments

### 1. Island Commuters

**Who they are**: Skerry residents who cross to work on the mainland most days.
**Size/scale**: About 1,650 to 2,300 people.
**Value propositions**:
1. **Sailings that run** — a cancelled early sailing costs them half a day's pay.
2. **Early warning** — an alert before they leave home.
**Channels**: SMS alerts and the Skerry Ferry Watch Facebook group.
**Relationship**: Automated, community.
**Revenue**: Monthly season tickets.

### 2. Freight Hauliers

**Who they are**: Hauliers and island businesses moving goods by lorry.
**Value propositions**:
1. **Guaranteed first-sailing lanes** — chilled food and livestock travel early or not at all.
**Channels**: The freight desk by telephone.
**Relationship**: Personal.
**Revenue**: Lane-metre rates on monthly account.

## Segment Interactions

Commuters and freight compete for the 05:50 and 06:40 sailings.

## Excluded Segments

Cruise passengers: too few take an island trip.

## Open Questions

How many commuters are there really?
"""


def test_canonical_draft_round_trips_exactly() -> None:
    draft = parse_draft(CANONICAL_DRAFT)
    assert isinstance(draft, SegmentDraft)
    assert render_draft(draft) == CANONICAL_DRAFT


def test_canonical_draft_with_value_proposition_canvas_round_trips_exactly() -> None:
    draft = parse_draft(CANONICAL_DRAFT_WITH_CANVAS)
    assert isinstance(draft, SegmentDraft)
    assert draft.pains == ["Late for work after a cancellation", "The desk shuts at five"]
    assert render_draft(draft) == CANONICAL_DRAFT_WITH_CANVAS


def test_draft_fields_are_read_into_the_model() -> None:
    draft = parse_draft(CANONICAL_DRAFT)
    assert isinstance(draft, SegmentDraft)
    assert draft.title == "Island Commuters"
    assert [vp.name for vp in draft.value_propositions] == ["Sailings that run", "Early warning"]
    assert draft.relationship_types == ["automated", "community"]
    assert draft.relationship_note.startswith("alerts and the app")
    assert draft.evidence[0].file == "resources/passenger-survey-2026.md"
    assert draft.evidence[0].quote == "If the 06:40 goes off I'm docked half a day, simple as that."
    assert (draft.confidence, draft.customer_jobs) == ("High", None)


def test_relationship_without_explanation_round_trips() -> None:
    text = CANONICAL_DRAFT.replace(
        "Automated, community — alerts and the app are automated; commuters run their own "
        "Facebook group.",
        "Self-service",
    )
    draft = parse_draft(text)
    assert isinstance(draft, SegmentDraft)
    assert (draft.relationship_types, draft.relationship_note) == (["self-service"], "")
    assert render_draft(draft) == text


def test_canonical_segments_document_round_trips_exactly() -> None:
    document = parse_segments_document(CANONICAL_DOCUMENT)
    assert isinstance(document, SegmentsDocument)
    assert render_segments_document(document) == CANONICAL_DOCUMENT


def test_segments_document_fields_are_read_into_the_model() -> None:
    document = parse_segments_document(CANONICAL_DOCUMENT)
    assert isinstance(document, SegmentsDocument)
    assert document.organisation == "Tidewater Ferries Ltd"
    commuters, hauliers = document.segments
    assert (commuters.number, commuters.name, hauliers.number) == (1, "Island Commuters", 2)
    assert commuters.size == "About 1,650 to 2,300 people."
    assert hauliers.size is None  # "if known": the line was left out
    assert [vp.name for vp in hauliers.value_propositions] == ["Guaranteed first-sailing lanes"]
    assert document.open_questions == "How many commuters are there really?"


def test_hand_typed_segments_document_parses_to_the_canonical_one() -> None:
    hand_typed = (
        CANONICAL_DOCUMENT.replace("# Customer Segments — ", "# Customer segments - ")
        .replace("**Who they are**:", "- **Who they are:**")
        .replace("**Channels**: The freight", "Channels: The freight")
        .replace("1. **Guaranteed first-sailing lanes** —", "* Guaranteed first-sailing lanes:")
        .replace("## Open Questions", "## open questions")
        .replace("\n", "  \r\n")
    )
    document = parse_segments_document(hand_typed)
    assert isinstance(document, SegmentsDocument), document
    assert render_segments_document(document) == CANONICAL_DOCUMENT


def test_hand_typed_draft_parses_to_the_canonical_one() -> None:
    hand_typed = (
        CANONICAL_DRAFT.replace("## Value propositions", "## VALUE PROPOSITIONS")
        .replace("1. **Sailings that run** —", "- Sailings that run –")
        .replace("2. **Early warning** —", "* __Early warning__:")
        .replace("Automated, community —", "AUTOMATED SERVICES and Communities -")
        .replace("High —", "**high**:")
        .replace(
            "- From `resources/passenger-survey-2026.md`",
            "+ from resources/passenger-survey-2026.md",
        )
        .replace("\n\n", "\n\n\n")
        .replace("\n", " \r\n")
    )
    draft = parse_draft(hand_typed)
    assert isinstance(draft, SegmentDraft), draft
    assert render_draft(draft) == CANONICAL_DRAFT


@pytest.mark.parametrize(
    ("title", "slug"),
    [
        ("St Aidan's Trust", "st-aidan-s-trust"),
        ("Cafés & Bakeries", "cafes-bakeries"),
        ("  --Island Commuters--  ", "island-commuters"),
        ("Straße Ørsted Æble", "strasse-orsted-aeble"),
        ("Visitors (day-trippers), 2027", "visitors-day-trippers-2027"),
        # Typographic punctuation separates words like its ASCII twin, never vanishes.
        ("St Aidan’s Trust", "st-aidan-s-trust"),
        ("Skerry–Holmsey commuters", "skerry-holmsey-commuters"),
    ],
)
def test_slug_of_a_title(title: str, slug: str) -> None:
    assert slugify(title) == slug


def test_parse_errors_are_collected_not_raised() -> None:
    broken = CANONICAL_DRAFT.replace("## Channels", "## Chanels").replace("High —", "Sure —")
    problems = parse_draft(broken)
    assert isinstance(problems, list)
    assert all(isinstance(problem, Problem) for problem in problems)
    assert {problem.section for problem in problems} == {"Chanels", "Channels", "Confidence"}


# --- real drafts in many hand-typed styles, all accepted --------------------------------

# Each is a distinct segment of the fixture's ferry operator, citing its real research, and
# each is typed differently: list markers, separators, heading case, blank lines, CRLF,
# trailing spaces, typographic quotes, wrapped lines, sections out of order.
STYLED_DRAFTS: dict[str, str] = {
    "island-commuters.md": CANONICAL_DRAFT_WITH_CANVAS,
    # CRLF, trailing spaces, `*` bullets, "Value Propositions" capitalised, en dashes.
    "visitors-and-day-trippers.md": """\
# Visitors and Day-Trippers

## Who They Are

Tourists and day-trippers who live off the islands, most heading for Holmsey in summer;
they value easy booking and a trip they can plan from end to end.

## Value Propositions

1. **One ticket for the day** – ferry, island bus and attraction on a single booking.
2. **Car space you can count on** – a confirmed return sailing for those who bring the car.

## Channels

The Isles Tourism Partnership website, holiday-let hosts and online booking on the website.

## Relationship Type

Self-service – they book online and rarely speak to staff.

## Revenue Potential

Single and return fares; combined tickets with a share of bus and attraction revenue.

## Evidence

* From `resources/passenger-survey-2026.md`: "47% would buy a combined ferry, island bus and attraction ticket if offered."
* From `resources/tourism-market.md`: "What we can't sell is a trip people can't plan from end to end."

## Confidence

Medium – visitor numbers disagree by about a third between sources.
""".replace("\n", "   \r\n"),
    # `+` markers, plain names with hyphens, synonyms in capitals, lowercase confidence.
    "island-residents-on-non-work-trips.md": """\
# Island residents on non-work trips

## Who they are

Islanders crossing for shopping, hospital appointments and family, often on foot because
of the car fare; many are over 55 and book by phone or at the desk.

## Value propositions

+ Affordable car crossings - a midweek off-peak car fare for the big shop.
+ Evening return sailings - a later boat home on Friday and Saturday nights.

## Channels

The terminal desk, the telephone booking line and notices on board.

## Relationship type

PERSONAL ASSISTANCE, Self Service: they like to talk to someone who knows the boats, and
some book online.

## Revenue potential

Off-peak car fares would trade price for volume on quiet midweek sailings.

## Evidence

+ From `resources/passenger-survey-2026.md`: "52% would use a discounted midweek off-peak car fare"
+ From `resources/passenger-survey-2026.md`: "I phone to book because I like to talk to someone who knows the boats."

## Confidence

medium: one survey wave, but the open answers agree with the figures.
""",
    # `1)` numbering, `**Name**: description`, extra blank lines, typographic quotes.
    "students.md": """\


# Students


## Who they are


Students aged 16 to 24 at college in Port Merrow, mostly from Skerry, travelling on the
council's young persons' concession pass.


## Value propositions


1) **Late sailings**: a boat home after evening classes, sport and part-time work.

2) **Fares within a student budget**: price matters more to them than to any other group.


## Channels


The college's student services and word of mouth.


## Relationship type


Automated — they travel on a council pass and rarely deal with Tidewater directly.


## Revenue potential


Concession reimbursement from the council rather than fares.


## Evidence


- From `resources/passenger-survey-2026.md`: “68% say the last sailing is too early for evening classes, sport or part-time work.”
- From `resources/stakeholder-interviews.md`: “Our Holmsey students simply can’t do evening courses.”


## Confidence


Low — only 96 students were surveyed (margin of error about ±10 points).
""",
    # Sections out of order, headings in capitals, `**Name:** description`, a quote that
    # spans a line break in the source.
    "freight-hauliers.md": """\
# Freight Hauliers

## EVIDENCE

- From `resources/freight-and-hauliers.md`: "11 of 14 said a guaranteed slot mattered more to them than the rate"
- From `resources/freight-and-hauliers.md`: "Chilled goods come on the first boat or they don't come at all."

## WHO THEY ARE

Mainland hauliers carrying groceries, fuel and livestock to the islands on account, who
must travel on the first sailings.

## VALUE PROPOSITIONS

1. **Guaranteed first-sailing lanes:** chilled food and livestock travel early or not at all.
2. **Changes outside office hours:** drivers start at four, the desk opens at seven.

## CHANNELS

Telephone to the freight desk, email and the online freight portal.

## RELATIONSHIP TYPE:

Personal — the freight desk holds standing bookings by informal agreement.

## REVENUE POTENTIAL

Lane-metre rates invoiced monthly on account; 186 account customers.

## CONFIDENCE

High — fourteen interviews agree with the desk data on what matters.
""",
    # Value Proposition Canvas sections with mixed markers, an evidence line wrapped onto a
    # second line, bold confidence level.
    "construction-firms.md": """\
# Construction firms

## Who they are

Building and civil engineering firms with island projects lasting a year or more, moving
aggregates and site materials on set days.

## Value propositions

1. **Block booking for the life of a project** — set days reserved for 12 to 18 months.

## Channels

The freight desk; site managers call to book each crossing.

## Relationship type

Co-creation, personal — a block-booking product would be designed with the firms.

## Revenue potential

Forward contracts for set days, paid on account.

## Evidence

- From `resources/freight-and-hauliers.md`: "I'd take a block booking for every Tuesday
  and Thursday if someone would sell me one."

## Confidence

**Medium** — three construction firms interviewed; the landing craft competes for bulk loads.

## Customer jobs

* Keep a site supplied on schedule

## Pains

- Booking each crossing by phone
+ Losing loads to the landing craft

## Gains

- Certainty over a whole project

## Pain relievers

- A standing booking on set days

## Gain creators

- One contract for the project
""",
    # A title with closing hashes, a hyphen where the source has an en dash, no backticks.
    "coach-and-tour-operators.md": """\
# Coach and Tour Operators #

## Who they are

Coach operators who bring group tours to the islands, mostly to Holmsey, planning their
brochures nine to twelve months ahead.

## Value propositions

1. **Vehicle space confirmed at brochure time** — twelve slots confirmed in January.

## Channels

Direct contact with the commercial team at the start of each season.

## Relationship type

Personal — each operator negotiates its season's slots.

## Revenue potential

Coach return fares: about £0.38m in 2025.

## Evidence

- From resources/tourism-market.md: "I need twelve coach slots confirmed in January or the tour doesn't go in the brochure."
- From resources/tourism-market.md: "Operators plan their brochures 9 to 12 months ahead"
- From resources/index.md: "holiday lets, summer car-deck shortfalls on Holmsey"

## Confidence

Medium — one operator interviewed, but the figures come from ticketing data.
""",
    # Unspaced em dashes, relationship types in any case, a quote from a table row.
    "cruise-excursion-agents.md": """\
# Cruise Excursion Agents

## Who they are

Shore-excursion agents selling island trips to cruise passengers who have seven to nine
hours in Port Merrow.

## Value propositions

1. **A guaranteed boat back**—the ship sails whether or not the ferry is late.
2. **Charter sailings for a whole ship**—one booking for hundreds of passengers.

## Channels

Charter enquiries from ground agents before the cruise season.

## Relationship type

co-creation, PERSONAL—excursions are designed with each agent.

## Revenue potential

Chartered sailings: £0.09m in 2025, with more calls scheduled for 2027.

## Evidence

- From `resources/tourism-market.md`: "I can't sell an island trip unless the boat back is guaranteed."
- From `resources/tourism-market.md`: "46 calls are scheduled for 2027, with about 88,000 passengers."

## Confidence

Low—one interview and a small charter business so far.
""",
    # Alias headings ("Relationship", "Revenue"), lowercase relationship type.
    "regional-council.md": """\
# Regional Council

## Who they are

Merrow & Isles Regional Council, which buys the lifeline timetable under the Public Service
Contract and reimburses concession fares.

## Value propositions

1. **A lifeline timetable** — islanders reach work, school and hospital every day.
2. **Monthly reliability figures** — data members can see during the year.

## Channels

The contract management meetings and the ferry users' forum.

## Relationship

personal — the contract is managed by the Head of Transport Contracts.

## Revenue

The council pays £7.8m a year under the contract and £1.6m in concession reimbursement.

## Evidence

- From `resources/stakeholder-interviews.md`: "The council pays £7.8m a year under the Public Service Contract"
- From `resources/stakeholder-interviews.md`: "I need monthly reliability figures I can put in front of members, not a report at the year end."

## Confidence

High — the contract terms are documented and the officer was interviewed.
""",
    # Bold "From", a double-hyphen separator, a full stop after the level.
    "health-trust.md": """\
# Health Trust

## Who they are

Merrow Coast Health Trust, whose nurses, GPs and midwives cross to island clinics and whose
patients travel to the mainland hospital.

## Value propositions

1. __Staff on the first boat__ -- district nurses reach the island clinics on time.
2. __Crossings booked with appointments__ -- patients stop missing hospital appointments.

## Channels

The trust's Tidewater account for staff crossings.

## Relationship type

Personal, automated — an account for staff crossings; patients book for themselves.

## Revenue potential

Staff crossings on account, about £0.31m in 2025.

## Evidence

- **From** `resources/stakeholder-interviews.md`: "96 clinic sessions were cancelled or shortened in 2025 because staff could not cross."
- **From** `resources/stakeholder-interviews.md`: "If we could book the crossing with the appointment, half the missed appointments would go."

## Confidence

Low. Two interviews with one organisation; patient numbers come from the trust alone.
""",
    # Plain names with colons, tab-free indentation, a quote across markdown table cells.
    "island-shops-and-food-exporters.md": """\
# Island Shops and Food Exporters

## Who they are

Island retailers and producers whose chilled, frozen and live goods must cross on the first
sailing, such as Skerry Stores and a shellfish exporter.

## Value propositions

- Export route for live produce: a missed sailing with live shellfish is a write-off.
- Fresh stock every morning: chilled goods on the first boat for the island shops.

## Channels

Their hauliers' bookings, and the store managers' own calls to the freight desk.

## Relationship type

Personal — they rely on the desk to hold space on the first sailing.

## Revenue potential

Freight charges passed on through their hauliers' accounts.

## Evidence

- From `resources/freight-and-hauliers.md`: "Groceries, chilled and frozen food | 24% | 50,880"
- From `resources/freight-and-hauliers.md`: "The boat is our export route. A missed sailing with live langoustine is a write-off."

## Confidence

Medium — two interviews, consistent with the commodity figures.
""",
}


def test_at_least_ten_styles_are_covered() -> None:
    assert len(STYLED_DRAFTS) >= 10


@pytest.mark.parametrize("name", sorted(STYLED_DRAFTS))
def test_hand_typed_draft_is_accepted_by_the_validator(project: Project, name: str) -> None:
    problems, warnings = make_validator(project)(f"segments/drafts/{name}", STYLED_DRAFTS[name])
    assert problems == []
    assert warnings == []


def test_all_styled_drafts_together_are_distinct_segments(project: Project) -> None:
    """Written side by side, none is taken for another (the similarity check does not
    fire on genuinely different segments of one organisation)."""
    drafts = project.project_dir / "segments" / "drafts"
    drafts.mkdir(parents=True)
    for name, text in STYLED_DRAFTS.items():
        (drafts / name).write_bytes(text.encode("utf-8"))
    reports = validate_project(project)
    by_path = {report.path: report for report in reports}
    for name in STYLED_DRAFTS:
        report = by_path[f"segments/drafts/{name}"]
        assert (report.status, report.problems, report.warnings) == ("valid", [], [])
    assert by_path["segments/segments.md"].status == "missing"


# --- any canonical draft round-trips ------------------------------------------------------

# Plain prose: no markup characters, so generated text cannot be read as markup.
WORD = st.text(alphabet=string.ascii_letters + string.digits + "'%£()&,", min_size=1, max_size=9)


def phrase(max_words: int = 12) -> st.SearchStrategy[str]:
    return st.lists(WORD, min_size=1, max_size=max_words).map(" ".join)


def prose() -> st.SearchStrategy[str]:
    """Paragraphs of lines, as a tidy section body holds them."""
    paragraph = st.lists(phrase(), min_size=1, max_size=3).map("\n".join)
    return st.lists(paragraph, min_size=1, max_size=3).map("\n\n".join)


def bullets() -> st.SearchStrategy[list[str] | None]:
    return st.none() | st.lists(phrase(), min_size=1, max_size=4)


drafts = st.builds(
    SegmentDraft,
    title=phrase(5),
    who=prose(),
    value_propositions=st.lists(
        st.builds(ValueProposition, name=phrase(4), description=phrase()),
        min_size=1,
        max_size=4,
        unique_by=lambda vp: vp.name.casefold(),
    ),
    channels=prose(),
    relationship_types=st.lists(
        st.sampled_from(RELATIONSHIP_TYPES), min_size=1, max_size=5, unique=True
    ),
    relationship_note=st.just("") | prose(),
    revenue=prose(),
    evidence=st.lists(
        st.builds(
            Evidence,
            file=st.from_regex(r"resources/[a-z0-9-]{1,12}\.md", fullmatch=True),
            quote=phrase(),
        ),
        min_size=1,
        max_size=4,
    ),
    confidence=st.sampled_from(["High", "Medium", "Low"]),
    confidence_reasoning=phrase(),
    customer_jobs=bullets(),
    pains=bullets(),
    gains=bullets(),
    pain_relievers=bullets(),
    gain_creators=bullets(),
)


@settings(max_examples=150, deadline=None)
@given(drafts)
def test_any_rendered_draft_parses_back_to_the_same_model(draft: SegmentDraft) -> None:
    text = render_draft(draft)
    assert parse_draft(text) == draft
    assert render_draft(parse_draft(text)) == text  # type: ignore[arg-type]
