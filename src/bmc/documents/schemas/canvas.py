"""The document of the canvas stage: `canvas/canvas.md`, the nine blocks of the Business Model
Canvas built on the agreed customer segments.

`parse_canvas` / `render_canvas` go between markdown and the pydantic `Canvas`. The canonical
form (what `canvas.md.j2` writes, shown in skills/bmc-canvas/references/canvas-template.md):

    # Business Model Canvas — <Organisation>
    ## Customer Segments            - **Name** — description, then `  - Evidence:` lines
    ## Value Propositions           `### <Segment>` subsections of items
    ## Channels                     `### <Segment>` subsections; items carry their phases
    ## Customer Relationships       items with a relationship type and a `Serves:` line
    ## Revenue Streams              `(type; pricing mechanism)`, `Serves:`
    ## Key Resources                `(physical|intellectual|human|financial)`, `Serves:`
    ## Key Activities               `(production|problem solving|platform/network)`, `Serves:`
    ## Key Partnerships             `(category)`, `Serves:`
    ## Cost Structure               `Orientation: cost-driven|value-driven — why`, then
                                    items `(fixed|variable)`, `Serves:` optional
    ## Tensions and Observations    free text

Every item has one or more `Evidence:` sub-bullets, except a `Not yet known` item standing in
for a segment's channel, relationship or revenue stream. Canonical markdown survives a round trip
byte for byte; hand-typed variations parse too, as for the segments documents: any list
marker, sub-bullets indented or not, em dash, en dash, spaced hyphen or colon between a name
and its description, bold or plain names, headings and attributes in any case, a few heading
aliases ("Relationships", "Key Partners", "Costs"), extra blank lines, wrapped lines, evidence
with or without backticks or "From", quotes in straight or typographic marks, `Serves:`
separated by semicolons (or commas when there is no semicolon), several phases or
relationship types separated by commas or bars.

This module checks the shape and the allowed attribute values; whether the segments are the
agreed ones and the quotes are in the research is checked in `bmc.documents.validate`, which uses
`read_canvas` to see every readable item even when the document has problems elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from bmc.documents.schemas import (
    BOLD_NAME,
    LEADING_SEPARATOR,
    NAME_SEPARATOR,
    RELATIONSHIP_SYNONYMS,
    RELATIONSHIP_TYPES,
    TITLE,
    VALUE_SEPARATOR,
    Line,
    Problem,
    Section,
    SectionSpec,
    allowed_values,
    evidence_reference,
    excerpt,
    heading,
    heading_key,
    match_sections,
    name_key,
    read_outline,
    render,
    strip_emphasis,
    subsections,
    title_organisation,
)
from bmc.documents.schemas.segments import Evidence

Text = Annotated[str, StringConstraints(min_length=1)]
Orientation = Literal["cost-driven", "value-driven"]
ORIENTATIONS: tuple[Orientation, ...] = get_args(Orientation)
PHASES = ("awareness", "evaluation", "purchase", "delivery", "after-sales")
RESOURCE_KINDS = ("physical", "intellectual", "human", "financial")
ACTIVITY_KINDS = ("production", "problem solving", "platform/network")
COST_KINDS = ("fixed", "variable")
# `Serves: all segments` is allowed wherever a block names the segments it serves.
ALL_SEGMENTS = "all segments"
# The name of an item that says the research is silent on what a segment needs here, in the
# blocks every segment must have an item in (channels, relationships, revenue streams). It
# needs no attribute and no evidence (there is none to quote); the HTML shows it as written,
# so the client sees the gap rather than an invented channel.
NOT_YET_KNOWN = "Not yet known"

KIND = "canvas"
TITLE_FORM = "`# Business Model Canvas — <Organisation>`"
EVIDENCE_FORM = '`  - Evidence: `resources/<file>.md`: "<verbatim quote>"`'


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CanvasItem(_Model):
    """One entry of a block: `- **Name** (attribute) — description` and its sub-bullets.

    `attribute` is None in the blocks that take none (segments, value propositions); it is
    stored in canonical form ("awareness, purchase", "usage fee; fixed list price").
    `serves` is empty for customer segments, the subsection's segment for value propositions
    and channels, and the `Serves:` names elsewhere (possibly `all segments`).
    """

    name: Text
    attribute: str | None = None
    description: Text
    serves: list[Text] = Field(default_factory=list)
    evidence: list[Evidence] = Field(default_factory=list)

    @model_validator(mode="after")
    def _grounded(self) -> CanvasItem:
        if not self.evidence and not is_gap(self.name):
            raise ValueError(f'"{self.name}" has no evidence')
        return self


def is_gap(name: str) -> bool:
    """True for a `Not yet known` item (see `NOT_YET_KNOWN`)."""
    return name_key(name) == name_key(NOT_YET_KNOWN)


class Canvas(_Model):
    """`canvas/canvas.md`: the nine blocks, built on the agreed segments."""

    organisation: Text
    segments: list[CanvasItem] = Field(min_length=1)
    value_propositions: dict[str, list[CanvasItem]]  # segment name -> items, document order
    channels: dict[str, list[CanvasItem]]
    relationships: list[CanvasItem] = Field(min_length=1)
    revenue_streams: list[CanvasItem] = Field(min_length=1)
    key_resources: list[CanvasItem] = Field(min_length=1)
    key_activities: list[CanvasItem] = Field(min_length=1)
    key_partnerships: list[CanvasItem] = Field(min_length=1)
    cost_orientation: Orientation
    cost_orientation_note: str = ""
    costs: list[CanvasItem] = Field(min_length=1)
    tensions: Text


# --- the blocks --------------------------------------------------------------------------


@dataclass(frozen=True)
class Attribute:
    """What goes in the parentheses after an item's name in one block.

    `allowed` empty means free text (a partnership's category); `multiple` lets one item
    name several values ("awareness, purchase"); `revenue` asks for `type; pricing`.
    """

    label: str  # what the value is called in messages ("phase")
    form: str  # how it is written, for messages
    allowed: tuple[str, ...] = ()
    synonyms: tuple[tuple[str, str], ...] = ()
    multiple: bool = False
    revenue: bool = False


@dataclass(frozen=True)
class Block:
    """One `##` block of the canvas: where its items go in the model and what they carry."""

    spec: SectionSpec
    by_segment: bool = False  # items in `### <Segment>` subsections
    attribute: Attribute | None = None
    serves: Literal["none", "required", "optional"] = "none"
    gaps: bool = False  # a `Not yet known` item may stand in for a segment's missing entry

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def field(self) -> str:
        """The `Canvas` field that holds the block's items: named as the section's key."""
        return self.spec.key

    def item_form(self) -> str:
        attribute = f" ({self.attribute.form})" if self.attribute else ""
        return f"`- **Name**{attribute} — description`"


PHASE = Attribute(
    "phase",
    "one or more of " + ", ".join(PHASES) + ", separated by commas",
    PHASES,
    (("after sales", "after-sales"), ("aftersales", "after-sales"), ("post-sales", "after-sales")),
    multiple=True,
)
RELATIONSHIP = Attribute(
    "relationship type",
    "one or more of " + ", ".join(RELATIONSHIP_TYPES) + ", separated by commas",
    RELATIONSHIP_TYPES,
    tuple(RELATIONSHIP_SYNONYMS.items()),
    multiple=True,
)
REVENUE = Attribute(
    "revenue type and pricing mechanism",
    "type; pricing mechanism, e.g. usage fee; fixed list price",
    revenue=True,
)
RESOURCE = Attribute("resource kind", "one of " + ", ".join(RESOURCE_KINDS), RESOURCE_KINDS)
ACTIVITY = Attribute(
    "activity kind",
    "one of " + ", ".join(ACTIVITY_KINDS),
    ACTIVITY_KINDS,
    (
        ("problem-solving", "problem solving"),
        ("problemsolving", "problem solving"),
        ("platform", "platform/network"),
        ("network", "platform/network"),
        ("platform / network", "platform/network"),
        ("platform and network", "platform/network"),
        ("platform-network", "platform/network"),
    ),
)
PARTNERSHIP = Attribute(
    "partnership category", "category, e.g. supplier, strategic alliance, joint venture"
)
COST = Attribute("cost kind", "fixed or variable", COST_KINDS)

SEGMENTS = Block(
    SectionSpec(
        "segments",
        "Customer Segments",
        "one `- **<Segment name, as agreed>** — <one line>` item per agreed segment",
        ("segments", "customer segment"),
    ),
)
VALUE_PROPOSITIONS = Block(
    SectionSpec(
        "value_propositions",
        "Value Propositions",
        "a `### <Segment name>` subsection per segment listing its agreed value propositions",
        ("value proposition",),
    ),
    by_segment=True,
)
CHANNELS = Block(
    SectionSpec(
        "channels",
        "Channels",
        "a `### <Segment name>` subsection per segment listing its channels with their phase",
        ("channel",),
    ),
    by_segment=True,
    attribute=PHASE,
    gaps=True,
)
RELATIONSHIPS = Block(
    SectionSpec(
        "relationships",
        "Customer Relationships",
        "items with their relationship type and a `Serves:` line",
        ("customer relationship", "relationships", "relationship"),
    ),
    attribute=RELATIONSHIP,
    serves="required",
    gaps=True,
)
REVENUE_STREAMS = Block(
    SectionSpec(
        "revenue_streams",
        "Revenue Streams",
        "items with their type and pricing mechanism and a `Serves:` line",
        ("revenue stream", "revenue", "revenues"),
    ),
    attribute=REVENUE,
    serves="required",
    gaps=True,
)
KEY_RESOURCES = Block(
    SectionSpec(
        "key_resources",
        "Key Resources",
        "items with their kind and a `Serves:` line",
        ("key resource", "resources"),
    ),
    attribute=RESOURCE,
    serves="required",
)
KEY_ACTIVITIES = Block(
    SectionSpec(
        "key_activities",
        "Key Activities",
        "items with their kind and a `Serves:` line",
        ("key activity", "activities"),
    ),
    attribute=ACTIVITY,
    serves="required",
)
KEY_PARTNERSHIPS = Block(
    SectionSpec(
        "key_partnerships",
        "Key Partnerships",
        "items with their category and a `Serves:` line",
        ("key partnership", "key partners", "partnerships", "partners"),
    ),
    attribute=PARTNERSHIP,
    serves="required",
)
COSTS = Block(
    SectionSpec(
        "costs",
        "Cost Structure",
        "`Orientation: cost-driven|value-driven — why`, then the costs, each fixed or variable",
        ("costs", "cost", "cost structures"),
    ),
    attribute=COST,
    serves="optional",
)
TENSIONS = SectionSpec(
    "tensions",
    "Tensions and Observations",
    "the tensions between blocks and what the consultant should raise with the client",
    ("tensions & observations", "tensions", "observations", "tensions and observation"),
)
BLOCKS = (
    SEGMENTS,
    VALUE_PROPOSITIONS,
    CHANNELS,
    RELATIONSHIPS,
    REVENUE_STREAMS,
    KEY_RESOURCES,
    KEY_ACTIVITIES,
    KEY_PARTNERSHIPS,
    COSTS,
)
SECTIONS = (*(block.spec for block in BLOCKS), TENSIONS)
_BLOCK_BY_KEY = {block.spec.key: block for block in BLOCKS}

_TITLE = re.compile(r"^business model canvas\s*(?:[—–:]|--?)\s*(?P<org>.+)$", re.IGNORECASE)
_BULLET = re.compile(r"^[ \t]*(?:[-*+]|\d{1,3}[.)])(?:[ \t]+(?P<text>.*))?$")
_SUB_LABEL = re.compile(
    r"^(?:\*\*|__)?(?P<label>[A-Za-z][A-Za-z ]{0,24}?)[ \t]*"
    r"(?::(?:\*\*|__)|(?:\*\*|__)[ \t]*:|:)[ \t]*(?P<value>.*)$"
)
_EVIDENCE_LABELS = frozenset({"evidence", "source", "sources"})
_SERVES_LABELS = frozenset({"serves", "serving", "segments", "segment", "serves segments"})
_TRAILING_ATTRIBUTE = re.compile(r"^(?P<name>.*?)\s*\((?P<attribute>[^()]*)\)\s*$")
_LEADING_ATTRIBUTE = re.compile(r"^\s*\((?P<attribute>[^()]*)\)")
_ORIENTATION = re.compile(
    r"^(?:[-*+][ \t]+)?(?:\*\*|__)?(?:cost[ \t]+)?orientation(?:\*\*|__)?[ \t]*:(?:\*\*|__)?"
    r"[ \t]*(?P<value>.*)$",
    re.IGNORECASE,
)
_ORIENTATION_VALUE = re.compile(
    r"^(?:\*\*|__)?(?P<kind>cost|value)[- ]?driven(?:\*\*|__)?(?![\w-])\s*(?:[—–:.,]|--?)?\s*"
    r"(?P<why>.*)$",
    re.IGNORECASE,
)
_SUBSECTION_NUMBER = re.compile(r"^\d{1,3}[.)]\s+")


# --- reading -----------------------------------------------------------------------------


@dataclass
class ReadItem:
    """One item as far as it could be read (the validator checks these even when the
    document has problems elsewhere)."""

    block: Block
    line: int
    name: str
    attribute: str | None = None
    description: str = ""
    segment: str | None = None  # the `### <Segment>` subsection it sits in
    serves: list[str] = field(default_factory=list)  # as written on its `Serves:` line
    evidence: list[Evidence] = field(default_factory=list)

    def label(self) -> str:
        """How problems refer to it: `"SMS alerts" (line 40)`."""
        return f'"{self.name}" (line {self.line})'

    def served(self) -> list[str]:
        """The segments it serves: its subsection's, or its `Serves:` names."""
        return [self.segment] if self.segment else self.serves


@dataclass(frozen=True)
class Subsection:
    name: str
    line: int


@dataclass
class CanvasParts:
    """What could be read of a canvas, and the problems with the rest."""

    organisation: str | None = None
    items: dict[str, list[ReadItem]] = field(default_factory=dict)  # block key -> items
    subsections: dict[str, list[Subsection]] = field(default_factory=dict)
    present: set[str] = field(default_factory=set)  # keys of the blocks with content
    cost_orientation: str | None = None
    cost_orientation_note: str = ""
    tensions: str | None = None
    problems: list[Problem] = field(default_factory=list)

    def all_items(self) -> list[ReadItem]:
        return [item for block in BLOCKS for item in self.items.get(block.spec.key, [])]


def read_canvas(data: str | bytes) -> CanvasParts:
    """Everything readable in a canvas, plus every shape problem found on the way."""
    parts = CanvasParts()
    canonical = {heading_key(spec.name) for spec in SECTIONS}
    doc, parts.problems = read_outline(
        data, KIND, TITLE_FORM, promote=lambda found: heading_key(found) in canonical
    )
    if doc is None:
        return parts
    # Unlike the segments document's, a bold canvas title is accepted.
    parts.organisation, problems = title_organisation(
        doc.title, _TITLE, TITLE_FORM, clean=strip_emphasis
    )
    parts.problems += problems
    sections, problems = match_sections(doc, SECTIONS, KIND)
    parts.problems += problems
    for key, section in sections.items():
        if not section.text():
            continue  # reported as empty by match_sections
        parts.present.add(key)
        if key == TENSIONS.key:
            parts.tensions = section.text()
        elif _BLOCK_BY_KEY[key].by_segment:
            _read_grouped(parts, _BLOCK_BY_KEY[key], section)
        else:
            _read_flat(parts, _BLOCK_BY_KEY[key], section.body)
    return parts


def parse_canvas(data: str | bytes) -> Canvas | list[Problem]:
    """The canvas as a model, or every problem with its shape."""
    parts = read_canvas(data)
    if parts.problems:
        return parts.problems
    fields: dict[str, object] = {}
    for block in BLOCKS:
        items = parts.items.get(block.spec.key, [])
        if block.by_segment:
            grouped: dict[str, list[CanvasItem]] = {
                sub.name: [] for sub in parts.subsections.get(block.spec.key, [])
            }
            for item in items:
                grouped[str(item.segment)].append(_model_item(item))
            fields[block.field] = grouped
        else:
            fields[block.field] = [_model_item(item) for item in items]
    try:
        return Canvas(
            organisation=parts.organisation,
            cost_orientation=parts.cost_orientation,
            cost_orientation_note=parts.cost_orientation_note,
            tensions=parts.tensions,
            **fields,
        )
    except ValidationError as err:  # the readers should have caught it; say so plainly
        names = {block.field: block.name for block in BLOCKS} | {"tensions": TENSIONS.name}
        names |= {"cost_orientation": COSTS.name, "organisation": TITLE}
        return [
            Problem(names.get(str(error["loc"][0]) if error["loc"] else "", KIND), error["msg"])
            for error in err.errors()
        ]


def render_canvas(canvas: Canvas) -> str:
    """The canvas as canonical markdown."""
    return render("canvas.md.j2", canvas=canvas, blocks=BLOCKS)


def _model_item(item: ReadItem) -> CanvasItem:
    return CanvasItem(
        name=item.name,
        attribute=item.attribute,
        description=item.description,
        serves=item.served(),
        evidence=item.evidence,
    )


# --- blocks with `### <Segment>` subsections ---------------------------------------------


def _read_grouped(parts: CanvasParts, block: Block, section: Section) -> None:
    before, segments = subsections(section.body)
    parts.problems += [
        Problem(
            block.name,
            f'line {line.number} ("{excerpt(line.text)}") is not under a `### <Segment name>` '
            "subsection; put every item under the segment it is for",
        )
        for line in before
    ]
    if not segments:
        parts.problems.append(
            Problem(
                block.name,
                "no `### <Segment name>` subsection; write one per agreed segment, with its "
                f"items as {block.item_form()}",
            )
        )
        return
    seen: dict[str, int] = {}
    found = parts.subsections.setdefault(block.spec.key, [])
    for subsection in segments:
        name = strip_emphasis(_SUBSECTION_NUMBER.sub("", subsection.heading))
        if not name:
            parts.problems.append(
                Problem(
                    block.name,
                    f"line {subsection.line}: the subsection has no name; write "
                    "`### <Segment name>`",
                )
            )
            continue
        key = name_key(name)
        if key in seen:
            parts.problems.append(
                Problem(
                    block.name,
                    f"`### {name}` appears twice (lines {seen[key]} and {subsection.line}); "
                    "merge the two subsections",
                )
            )
            continue
        seen[key] = subsection.line
        found.append(Subsection(name, subsection.line))
        before_count = len(parts.items.get(block.spec.key, []))
        _read_flat(parts, block, subsection.body, segment=name)
        if len(parts.items.get(block.spec.key, [])) == before_count and not any(
            line.text.strip() for line in subsection.body
        ):
            parts.problems.append(
                Problem(
                    block.name,
                    f"`### {name}` (line {subsection.line}) has no items; list them as "
                    f"{block.item_form()}, or remove the subsection",
                )
            )


# --- the items of a block ----------------------------------------------------------------


@dataclass
class _RawItem:
    line: int
    head: str
    subs: list[tuple[int, str]] = field(default_factory=list)


def _read_flat(
    parts: CanvasParts, block: Block, body: list[Line], segment: str | None = None
) -> None:
    paragraph = _orientation_line if block is COSTS else None
    raw_items, stray = _raw_items(body, paragraph)
    if block is COSTS and segment is None:
        stray = _read_orientation(parts, stray)
    for line in stray:
        parts.problems.append(_stray_problem(block, line, segment))
    items = parts.items.setdefault(block.spec.key, [])
    seen: dict[str, int] = {}
    for raw in raw_items:
        item = _read_item(parts, block, raw, segment)
        if item is None:
            continue
        key = name_key(item.name)
        if key in seen:
            where = f" under `### {segment}`" if segment else ""
            parts.problems.append(
                Problem(
                    block.name,
                    f'"{item.name}" is listed twice{where} (lines {seen[key]} and {raw.line}); '
                    "merge them into one item",
                )
            )
            continue
        seen[key] = raw.line
        items.append(item)
    if not raw_items and not stray and segment is None:
        parts.problems.append(
            Problem(block.name, f"the block has no items; list them as {block.item_form()}")
        )


def _stray_problem(block: Block, line: Line, segment: str | None) -> Problem:
    found = heading(line.text)
    if found:
        where = (
            "a `### <Segment>` subsection holds only items"
            if segment
            else "only Value Propositions and Channels have `### <Segment>` subsections; "
            "here name the segments on each item's `Serves:` line"
        )
        return Problem(
            block.name,
            f'line {line.number}: heading "{excerpt(found[1])}" is out of place: {where}',
        )
    hint = (
        " (the orientation is written `Orientation: cost-driven — why`, before the costs)"
        if block is COSTS and "orientation" in line.text.casefold()
        else ""
    )
    return Problem(
        block.name,
        f'line {line.number} ("{excerpt(line.text)}") is not an item; write every entry as '
        f"{block.item_form()} with its sub-bullets indented under it{hint}",
    )


def _raw_items(
    body: list[Line], paragraph: Callable[[str], bool] | None = None
) -> tuple[list[_RawItem], list[Line]]:
    """The items of a list with their sub-bullets, and the lines that belong to no item.

    A bullet at the left margin starts an item, unless its text is a `Serves:` or
    `Evidence:` line, which belongs to the item above (sub-bullets typed without the
    indent). An indented bullet is a sub-bullet of the open item. A line without a bullet
    continues the open item (wrapped text) when it is indented or follows without a blank
    line; otherwise it is stray. `paragraph(text)` marks lines that are never part of an
    item (the cost orientation).
    """
    items: list[_RawItem] = []
    stray: list[Line] = []
    after_blank = False
    for line in body:
        text = line.text
        if not text.strip():
            after_blank = True
            continue
        if paragraph is not None and paragraph(text):
            stray.append(line)
            after_blank = False
            continue
        bullet = _BULLET.match(text)
        indent = _indent(text)
        if bullet:
            content = (bullet.group("text") or "").strip()
            if items and (indent >= 2 or _sub_label(content) is not None):
                items[-1].subs.append((line.number, content))
            elif indent >= 2:
                stray.append(line)
            else:
                items.append(_RawItem(line.number, content))
        elif items and (indent >= 2 or not after_blank) and heading(text) is None:
            last = items[-1]
            if last.subs:
                number, sub = last.subs[-1]
                last.subs[-1] = (number, f"{sub} {text.strip()}".strip())
            else:
                last.head = f"{last.head} {text.strip()}".strip()
        else:
            stray.append(line)
        after_blank = False
    return items, stray


def _indent(text: str) -> int:
    width = 0
    for char in text:
        if char == " ":
            width += 1
        elif char == "\t":
            width += 4
        else:
            break
    return width


def _sub_label(text: str) -> tuple[str, str] | None:
    """("evidence" | "serves", value) when `text` is a `Label: value` sub-bullet."""
    match = _SUB_LABEL.match(text)
    if not match:
        return None
    label = " ".join(match.group("label").split()).casefold()
    if label in _EVIDENCE_LABELS:
        return "evidence", match.group("value")
    if label in _SERVES_LABELS:
        return "serves", match.group("value")
    return None


def _read_item(
    parts: CanvasParts, block: Block, raw: _RawItem, segment: str | None
) -> ReadItem | None:
    head = _split_head(raw.head, block)
    if isinstance(head, str):
        parts.problems.append(
            Problem(
                block.name,
                f'line {raw.line} ("{excerpt(raw.head)}") {head}; write it as {block.item_form()}',
            )
        )
        return None
    name, attribute_text, description = head
    item = ReadItem(block, raw.line, name, description=description, segment=segment)
    gap = is_gap(name) and block.gaps
    problems: list[str] = []
    bad_evidence = False
    if not description:
        what = " (say what is not known and whom to ask)" if gap else ""
        problems.append(f"has no description; write it as {block.item_form()}{what}")
    if not gap or (attribute_text or "").strip():
        problems += _read_attribute(item, block, attribute_text)
    serves_line: int | None = None
    for number, text in raw.subs:
        found = _sub_label(text)
        if found is None:
            problems.append(
                f'has a sub-bullet on line {number} ("{excerpt(text)}") that is neither '
                "`Serves:` nor `Evidence:`; put the description on the item's own line"
            )
        elif found[0] == "evidence":
            evidence_problems = _read_evidence(item, number, found[1])
            bad_evidence = bad_evidence or bool(evidence_problems)
            problems += evidence_problems
        elif serves_line is not None:
            problems.append(f"has two `Serves:` lines ({serves_line} and {number}); keep one")
        else:
            serves_line = number
            problems += _read_serves(item, block, segment, number, found[1])
    if not item.evidence and not bad_evidence and not gap:
        hint = (
            f" (a `{NOT_YET_KNOWN}` item stands in only in Channels, Customer Relationships and "
            "Revenue Streams; elsewhere leave out what the research does not show)"
            if is_gap(name)
            else ""
        )
        problems.append(f"has no evidence; add at least one sub-bullet {EVIDENCE_FORM}{hint}")
    if serves_line is None and block.serves == "required":
        problems.append(
            "has no `Serves:` line; add `  - Serves: <Segment>; <Segment>` naming the agreed "
            "segments it serves (or `Serves: all segments`)"
        )
    parts.problems += [Problem(block.name, f"{item.label()} {problem}") for problem in problems]
    return item


def _split_head(text: str, block: Block) -> tuple[str, str | None, str] | str:
    """(name, attribute text or None, description) of an item's first line, or what is
    wrong with it."""
    bold = BOLD_NAME.match(text)
    if bold:
        name = bold.group("name").strip().rstrip(":").strip()
        rest = bold.group("rest")
        attribute = None
        leading = _LEADING_ATTRIBUTE.match(rest)
        if leading:
            attribute, rest = leading.group("attribute"), rest[leading.end() :]
        elif block.attribute is not None:  # `**Fuel (variable)** — ...`
            inside = _TRAILING_ATTRIBUTE.match(name)
            if inside and inside.group("name"):
                name, attribute = inside.group("name"), inside.group("attribute")
        description = LEADING_SEPARATOR.sub("", rest, count=1).strip()
    else:
        separator = NAME_SEPARATOR.search(text)
        if not separator:
            return "has no name and description"
        name = strip_emphasis(text[: separator.start()])
        description = text[separator.end() :].strip()
        attribute = None
        trailing = _TRAILING_ATTRIBUTE.match(name)
        if trailing and trailing.group("name"):
            name, attribute = strip_emphasis(trailing.group("name")), trailing.group("attribute")
    if not name:
        return "has no name"
    return name, attribute, description


def _read_attribute(item: ReadItem, block: Block, text: str | None) -> list[str]:
    rule = block.attribute
    if rule is None:
        if text is not None:
            return [
                f'has "({excerpt(text, 40)})" after its name, but {block.name} items take no '
                "attribute; move it into the description"
            ]
        return []
    value = " ".join((text or "").replace("*", "").split())
    if not value:
        return [f"has no {rule.label}; write it in parentheses after the name: ({rule.form})"]
    if rule.revenue:
        return _read_revenue_attribute(item, value)
    if not rule.allowed:
        item.attribute = value
        return []
    # Several values are separated as people type lists; a single-valued kind is read
    # whole, since "platform/network" is one kind.
    terms = VALUE_SEPARATOR.split(value) if rule.multiple else [value]
    found, unknown = allowed_values(terms, rule.allowed, dict(rule.synonyms))
    problems = [
        f'has "{excerpt(term, 40)}" as its {rule.label}; write one of {", ".join(rule.allowed)}'
        for term in unknown
    ]
    item.attribute = ", ".join(found) if found and not problems else None
    return problems


def _read_revenue_attribute(item: ReadItem, value: str) -> list[str]:
    if ";" in value:
        kind, _, pricing = value.partition(";")
    elif value.count(",") == 1:
        kind, _, pricing = value.partition(",")
    else:
        kind, pricing = value, ""
    kind, pricing = kind.strip(), pricing.strip()
    if not kind or not pricing:
        return [
            f'has "({excerpt(value, 40)})", which needs both a revenue type and a pricing '
            "mechanism; write `(<type>; <pricing mechanism>)`, e.g. `(usage fee; fixed list "
            "price)`"
        ]
    item.attribute = f"{kind}; {pricing}"
    return []


def _read_evidence(item: ReadItem, number: int, value: str) -> list[str]:
    reference = evidence_reference(value.strip())
    if reference is None:
        return [
            f'has evidence on line {number} ("{excerpt(value)}") that is not of the form '
            f"{EVIDENCE_FORM}"
        ]
    file, quote = reference
    if not quote:
        return [
            f"has an empty quote on line {number}; copy the passage from `{file}` between "
            "the quote marks"
        ]
    item.evidence.append(Evidence(file=file, quote=quote))
    return []


def _read_serves(
    item: ReadItem, block: Block, segment: str | None, number: int, value: str
) -> list[str]:
    separator = ";" if ";" in value else ","
    names = [strip_emphasis(name) for name in value.split(separator)]
    names = [" ".join(name.split()) for name in names if name.strip()]
    if block.serves == "none":
        if segment is not None and all(name_key(n) == name_key(segment) for n in names):
            return []  # says again what its subsection says: harmless
        where = f"under `### {segment}` serve that segment" if segment else "are the segments"
        return [f"has a `Serves:` line (line {number}), but {block.name} items {where}; remove it"]
    if not names:
        return [f"has an empty `Serves:` line (line {number}); name the segments it serves"]
    item.serves = [ALL_SEGMENTS if name_key(n) == ALL_SEGMENTS else n for n in names]
    return []


def _orientation_line(text: str) -> bool:
    return _ORIENTATION.match(text.strip()) is not None


def _read_orientation(parts: CanvasParts, stray: list[Line]) -> list[Line]:
    """Take the `Orientation:` line out of the Cost Structure's stray lines; the rest stay."""
    rest = []
    found: Line | None = None
    for line in stray:
        match = _ORIENTATION.match(line.text.strip())
        if match is None:
            rest.append(line)
            continue
        if found is not None:
            parts.problems.append(
                Problem(
                    COSTS.name,
                    f"the orientation is given twice (lines {found.number} and {line.number}); "
                    "keep one",
                )
            )
            continue
        found = line
        value = _ORIENTATION_VALUE.match(match.group("value").strip())
        if value is None:
            parts.problems.append(
                Problem(
                    COSTS.name,
                    f'line {line.number}: "{excerpt(match.group("value"), 40)}" is not an '
                    "orientation; write `Orientation: cost-driven — why` (or value-driven)",
                )
            )
            continue
        parts.cost_orientation = f"{value.group('kind').casefold()}-driven"
        parts.cost_orientation_note = value.group("why").strip()
    if found is None:
        parts.problems.append(
            Problem(
                COSTS.name,
                "no orientation is given; start the block with "
                "`Orientation: cost-driven — why` (or value-driven)",
            )
        )
    return rest
