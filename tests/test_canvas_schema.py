"""The canvas schema: canonical canvases round-trip byte for byte, hand-typed ones parse to
the same model, and no input makes the parser raise. (Refusals of broken canvases and the
checks against the agreed segments are in tests/test_canvas_validate.py.)

Runtime: 3-7 s depending on machine load (the two hypothesis tests dominate).
"""

# Canvas items quote research sentences verbatim: long lines are the format.
# ruff: noqa: E501

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bmc.documents.schemas import RELATIONSHIP_TYPES, Problem, name_key
from bmc.documents.schemas.canvas import (
    ACTIVITY_KINDS,
    ALL_SEGMENTS,
    COST_KINDS,
    PHASES,
    RESOURCE_KINDS,
    Canvas,
    CanvasItem,
    parse_canvas,
    read_canvas,
    render_canvas,
)
from bmc.documents.schemas.segments import Evidence
from bmc.workspace.packaged import data_dir

TIDEWATER = (data_dir("fixtures") / "canvas" / "tidewater-canvas.md").read_text(encoding="utf-8")

SMALL = """\
# Business Model Canvas — Acme Ltd

## Customer Segments

- **Island commuters** — Islanders who cross to work most days.
  - Evidence: `resources/survey.md`: "If the 06:40 goes off I'm docked half a day"
- **Freight hauliers** — Hauliers moving goods to the islands.
  - Evidence: `resources/freight.md`: "Chilled goods come on the first boat"

## Value Propositions

### Island commuters

- **Sailings that run** — The early sailings go as timetabled.
  - Evidence: `resources/survey.md`: "I need the one on the timetable to actually sail"
- **Early disruption alerts** — A warning before they leave home.
  - Evidence: `resources/survey.md`: "71% want an alert"

### Freight hauliers

- **Guaranteed slots** — Space they can count on.
  - Evidence: `resources/freight.md`: "Certainty is worth more to me than the rate"

## Channels

### Island commuters

- **SMS alerts** (awareness, after-sales) — Texts about disruption.
  - Evidence: `resources/survey.md`: "Tidewater SMS alert (48%)"

### Freight hauliers

- **Freight desk** (purchase) — Telephone bookings.
  - Evidence: `resources/freight.md`: "telephone to the freight desk 72%"

## Customer Relationships

- **Automated alerts** (automated, self-service) — Alerts and the app.
  - Serves: Island commuters
  - Evidence: `resources/survey.md`: "71% want an alert"
- **Account management** (personal) — Standing bookings with the desk.
  - Serves: Freight hauliers
  - Evidence: `resources/freight.md`: "a standing booking is held only by informal agreement"

## Revenue Streams

- **Season tickets** (usage fee; capped at CPI) — Monthly tickets.
  - Serves: Island commuters
  - Evidence: `resources/fin.md`: "Islander fares are capped at CPI"
- **Lane-metre fares** (usage fee; fixed rate per lane metre) — Invoiced monthly.
  - Serves: Freight hauliers
  - Evidence: `resources/fin.md`: "Charged per lane metre"

## Key Resources

- **Fleet** (physical) — Five vessels.
  - Serves: all segments
  - Evidence: `resources/fin.md`: "the fleet's average age is 27 years"

## Key Activities

- **Deck allocation** (problem solving) — Holding space for freight.
  - Serves: Freight hauliers; Island commuters
  - Evidence: `resources/freight.md`: "20% of deck space on each sailing is held"
- **Booking systems** (platform/network) — App, website and portal.
  - Serves: Island commuters
  - Evidence: `resources/freight.md`: "online freight portal 7%"

## Key Partnerships

- **Regional council** (strategic alliance) — Buys the lifeline timetable.
  - Serves: all segments
  - Evidence: `resources/fin.md`: "Counterparty: Merrow & Isles Regional Council."

## Cost Structure

Orientation: cost-driven — 79% of costs are fixed.

- **Crew wages** (fixed) — £11.6m.
  - Evidence: `resources/fin.md`: "Crew wages, pensions and training"
- **Fuel** (variable) — £4.9m.
  - Serves: Freight hauliers
  - Evidence: `resources/fin.md`: "Fuel"

## Tensions and Observations

Freight and commuters compete for the first sailings.

The council expects growth to pay its own way.
"""

# The same canvas as a consultant might type it: other list markers, unindented or
# tab-indented sub-bullets, plain or bold labels, dashes and colons of every kind, headings in
# other cases and aliases, attributes in capitals and long forms, commas in Serves, CRLF-free
# but with trailing spaces, extra blank lines and wrapped lines.
HAND_TYPED = """\
#  Business model canvas: Acme Ltd

## customer segments:

* **Island commuters** – Islanders who cross to work most days.
    * Evidence: resources/survey.md: “If the 06:40 goes off I'm docked half a day”
* Freight hauliers - Hauliers moving goods to the islands.
* **Evidence**: From `resources/freight.md`: "Chilled goods come on the first boat"


## VALUE PROPOSITIONS

### 1. Island commuters

1. **Sailings that run**: The early sailings go
   as timetabled.
   - Evidence: `resources/survey.md`: "I need the one on the timetable to actually sail"

2. **Early disruption alerts** — A warning before they leave home.

   - Evidence: `resources/survey.md` — "71% want an alert"

### **Freight hauliers**

- **Guaranteed slots** -- Space they can count on.
\t- Evidence: `resources/freight.md`: "Certainty is worth more to me than the rate"

## Channels

### Island commuters

- **SMS alerts** (Awareness / After sales) — Texts about disruption.
  - Evidence: `resources/survey.md`: "Tidewater SMS alert (48%)"

### Freight hauliers

- Freight desk (PURCHASE) — Telephone bookings.
  - Evidence: `resources/freight.md`: "telephone to the freight desk 72%"

## Relationships

- **Automated alerts** (Automated services and self service) — Alerts and the app.
  - **Serves**: Island commuters
  - Evidence: `resources/survey.md`: "71% want an alert"
- **Account management (Personal assistance)** — Standing bookings with the desk.
  - Serves: Freight hauliers
  - Evidence: `resources/freight.md`: "a standing booking is held only by informal agreement"

## Revenue streams

- **Season tickets** (usage fee, capped at CPI) — Monthly tickets.
  - Serves: Island commuters
  - Evidence: `resources/fin.md`: "Islander fares are capped at CPI"
+ **Lane-metre fares** (usage fee; fixed rate per lane metre) — Invoiced monthly.
  + Serves: Freight hauliers
  + Evidence: `resources/fin.md`: "Charged per lane metre"

## Key resources

- **Fleet** (Physical) — Five vessels.
  - Serves: All Segments
  - Evidence: `resources/fin.md`: "the fleet's average age is 27 years"

## Key Activities

- **Deck allocation** (Problem-solving) — Holding space for freight.
  - Serves: Freight hauliers, Island commuters
  - Evidence: `resources/freight.md`: "20% of deck space on each sailing is held"
- **Booking systems** (platform / network) — App, website and portal.
  - Serves: Island commuters
  - Evidence: `resources/freight.md`: "online freight portal 7%"

## Key Partners

- **Regional council** (strategic alliance) — Buys the lifeline timetable.
  - Serves: all segments
  - Evidence: `resources/fin.md`: "Counterparty: Merrow & Isles Regional Council."

## Costs

**Orientation**: Cost driven - 79% of costs are fixed.

- **Crew wages** (Fixed) — £11.6m.
  - Evidence: `resources/fin.md`: "Crew wages, pensions and training"
- **Fuel** (VARIABLE) — £4.9m.
  - Serves: Freight hauliers
  - Evidence: `resources/fin.md`: "Fuel"

## Tensions & Observations

Freight and commuters compete for the first sailings.


The council expects growth to pay its own way.
"""


def parsed(text: str | bytes) -> Canvas:
    canvas = parse_canvas(text)
    assert isinstance(canvas, Canvas), canvas
    return canvas


# --- round trip -------------------------------------------------------------------------


@pytest.mark.parametrize("text", [SMALL, TIDEWATER], ids=["small", "tidewater"])
def test_canonical_canvas_round_trips_exactly(text: str) -> None:
    assert render_canvas(parsed(text)) == text


def test_the_model_holds_what_the_document_says() -> None:
    canvas = parsed(SMALL)
    assert canvas.organisation == "Acme Ltd"
    assert [s.name for s in canvas.segments] == ["Island commuters", "Freight hauliers"]
    assert canvas.segments[0].serves == []
    assert list(canvas.value_propositions) == ["Island commuters", "Freight hauliers"]
    vp = canvas.value_propositions["Island commuters"][1]
    assert (vp.name, vp.attribute, vp.serves) == (
        "Early disruption alerts",
        None,
        ["Island commuters"],
    )
    assert canvas.channels["Island commuters"][0].attribute == "awareness, after-sales"
    assert canvas.relationships[0].attribute == "automated, self-service"
    assert canvas.revenue_streams[1].attribute == "usage fee; fixed rate per lane metre"
    assert canvas.key_resources[0].serves == [ALL_SEGMENTS]
    assert canvas.key_activities[0].serves == ["Freight hauliers", "Island commuters"]
    assert canvas.key_partnerships[0].attribute == "strategic alliance"
    assert (canvas.cost_orientation, canvas.cost_orientation_note) == (
        "cost-driven",
        "79% of costs are fixed.",
    )
    assert canvas.costs[0].serves == [] and canvas.costs[1].serves == ["Freight hauliers"]
    assert canvas.costs[1].evidence == [Evidence(file="resources/fin.md", quote="Fuel")]
    assert canvas.tensions.endswith("\n\nThe council expects growth to pay its own way.")


def test_the_fixture_canvas_covers_every_attribute_kind() -> None:
    """The renderer's sample: five segments, every block, several phases and kinds."""
    canvas = parsed(TIDEWATER)
    assert len(canvas.segments) == 5
    phases = {
        p for items in canvas.channels.values() for i in items for p in i.attribute.split(", ")
    }  # type: ignore[union-attr]
    assert phases == set(PHASES)
    assert {i.attribute for i in canvas.costs} == set(COST_KINDS)
    assert {i.attribute for i in canvas.key_resources} == {"physical", "human", "financial"}


# --- hand-typed variations --------------------------------------------------------------


def test_a_hand_typed_canvas_parses_to_the_canonical_model() -> None:
    hand = parsed(HAND_TYPED.replace("\n", "  \n"))  # trailing spaces everywhere, too
    assert hand == parsed(SMALL)
    assert render_canvas(hand) == SMALL


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("\n", "\r\n"),  # Windows line endings
        ("## Key Partnerships", "## Partnerships"),
        ("## Customer Relationships", "## customer relationships:"),
        ("## Cost Structure", "## Cost structure"),
        ("Orientation: cost-driven —", "Cost orientation: Cost-driven:"),
        ("Orientation: cost-driven —", "- Orientation: **cost-driven** —"),
        ("(awareness, after-sales)", "(Awareness & After-sales)"),
        ("(platform/network)", "(Platform)"),
        ("(problem solving)", "(problemsolving)"),
        (
            '  - Serves: all segments\n  - Evidence: `resources/fin.md`: "the',
            '  - Serves: ALL SEGMENTS\n  - Evidence: `resources/fin.md`: "the',
        ),
        ("- **Fleet** (physical) — Five vessels.", "- **Fleet** (physical) — Five\n  vessels."),
        ("\n## Value Propositions\n", "\n\n\n## Value Propositions\n\n\n"),
        ("### Island commuters\n\n- **Sailings", "### Island commuters ###\n- **Sailings"),
    ],
)
def test_hand_typed_variations_parse_to_the_same_model(old: str, new: str) -> None:
    assert old in SMALL
    variant = SMALL.replace(old, new)
    assert parsed(variant) == parsed(SMALL)


def test_a_section_heading_typed_one_level_too_deep_is_named_at_its_level() -> None:
    problems = parse_canvas(SMALL.replace("## Key Activities", "### Key Activities"))
    line = SMALL.split("\n").index("## Key Activities") + 1
    assert problems == [
        Problem(
            "Key Activities",
            f"the heading is written as `### Key Activities` (line {line}); make it `## Key Activities`",
        )
    ]


def test_read_canvas_keeps_every_readable_item_beside_the_problems() -> None:
    """The validator checks evidence and segment names even in a canvas with shape problems."""
    broken = SMALL.replace("(physical)", "(tangible)").replace(
        "## Tensions and Observations", "## Notes"
    )
    parts = read_canvas(broken)
    assert {p.section for p in parts.problems} == {
        "Key Resources",
        "Notes",
        "Tensions and Observations",
    }
    assert [item.name for item in parts.all_items()][:2] == ["Island commuters", "Freight hauliers"]
    assert [i.name for i in parts.items["key_resources"]] == ["Fleet"]
    assert parts.items["key_resources"][0].evidence


# --- any canonical canvas round-trips -----------------------------------------------------

# Tokens rather than free text keep generation fast; they include what could trip a parser:
# dashes, colons, parentheses, quotes, semicolons and markdown-looking characters.
TOKENS = ["ferry", "Skerry", "£3.0m", "(48%)", "—", "-", "it's", "a:b", "x;y", "'q'", "#1",
          "*", "07:15", "and", "/", "“isles”", "Ü", "all", "segments"]  # fmt: skip
PHRASE = st.lists(st.sampled_from(TOKENS), min_size=1, max_size=6).map(" ".join)
NAME = st.lists(
    st.sampled_from(["Island", "commuters", "St", "Aidan's", "B&B", "day-trippers", "Ü", "x2"]),
    min_size=1,
    max_size=3,
).map(" ".join)
# Attribute text: no parentheses or semicolons (they delimit it).
PLAIN = st.lists(
    st.sampled_from(["usage", "fee", "fixed", "list", "price", "£7.40"]), min_size=1, max_size=3
).map(" ".join)
EVIDENCE = st.builds(
    Evidence, file=st.sampled_from(["resources/a.md", "resources/sub/b-2.md"]), quote=PHRASE
)


def subset(values: tuple[str, ...]) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(values), min_size=1, max_size=3, unique=True).map(", ".join)


def items(attribute: st.SearchStrategy[str | None], serves: st.SearchStrategy[list[str]]):  # type: ignore[no-untyped-def]
    item = st.builds(
        CanvasItem,
        name=NAME,
        attribute=attribute,
        description=PHRASE,
        serves=serves,
        evidence=st.lists(EVIDENCE, min_size=1, max_size=2),
    )
    return st.lists(item, min_size=1, max_size=2, unique_by=lambda i: name_key(i.name))


@st.composite
def canvases(draw: st.DrawFn) -> Canvas:
    segments = draw(items(st.none(), st.just([])))
    names = [s.name for s in segments]
    serves = st.lists(st.sampled_from([*names, ALL_SEGMENTS]), min_size=1, max_size=2, unique=True)
    grouped = {
        block: {name: draw(items(attribute, st.just([name]))) for name in names}
        for block, attribute in (("value_propositions", st.none()), ("channels", subset(PHASES)))
    }
    return Canvas(
        organisation=draw(PHRASE),
        segments=segments,
        **grouped,
        relationships=draw(items(subset(RELATIONSHIP_TYPES), serves)),
        revenue_streams=draw(items(st.tuples(PLAIN, PLAIN).map("; ".join), serves)),
        key_resources=draw(items(st.sampled_from(RESOURCE_KINDS), serves)),
        key_activities=draw(items(st.sampled_from(ACTIVITY_KINDS), serves)),
        key_partnerships=draw(items(PLAIN, serves)),
        cost_orientation=draw(st.sampled_from(["cost-driven", "value-driven"])),
        cost_orientation_note=draw(st.just("") | PHRASE),
        costs=draw(items(st.sampled_from(COST_KINDS), st.just([]) | serves)),
        tensions=draw(st.lists(PHRASE, min_size=1, max_size=3).map("\n\n".join)),
    )


@settings(max_examples=25, deadline=None)
@given(canvases())
def test_any_canonical_canvas_round_trips(canvas: Canvas) -> None:
    text = render_canvas(canvas)
    assert parsed(text) == canvas
    assert render_canvas(parsed(text)) == text


MARKDOWN_LINES = st.sampled_from(
    ["# Business Model Canvas — X", "## Channels", "## Cost Structure", "### A", "```", "",
     "- **A** (fixed) — b", "  - Evidence: `resources/a.md`: \"q\"", "  - Serves: A; B",
     "- Serves: x", "Orientation: value-driven", "  -", "(", "- **", "\t- Evidence:", "\r"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.text() | st.binary() | st.lists(MARKDOWN_LINES | st.text(max_size=12)).map("\n".join))
def test_the_parser_never_raises_on_arbitrary_input(data: str | bytes) -> None:
    parts = read_canvas(data)
    for problem in parts.problems:
        assert isinstance(problem, Problem) and problem.section and "\n" not in problem.message
    result = parse_canvas(data)
    assert isinstance(result, Canvas) or all(isinstance(p, Problem) for p in result)
