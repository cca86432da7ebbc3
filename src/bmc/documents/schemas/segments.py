"""The two documents of the segments stage: one draft per segment, and the segments document.

`parse_draft` / `render_draft` and `parse_segments_document` / `render_segments_document`
go between markdown and the pydantic models. Canonical markdown (what the templates write)
survives a round trip byte for byte; hand-typed variations parse too: any list marker,
em dash, en dash, hyphen or colon between a name and its text, bold or plain names, extra
blank lines, trailing spaces, CRLF, headings in any case. Whatever cannot be read is
reported as a `Problem` naming its section and saying how to write it instead.

The `read_*` functions return what they could read alongside the problems, so the validator
can also check the evidence and the file name of a draft whose shape is wrong, and the model
gets every problem in one answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from bmc.documents.schemas import (
    BOLD_NAME,
    LEADING_SEPARATOR,
    NAME_SEPARATOR,
    RELATIONSHIP_SYNONYMS,
    RELATIONSHIP_TYPES,
    VALUE_SEPARATOR,
    Line,
    Problem,
    RelationshipType,
    Section,
    SectionSpec,
    allowed_values,
    evidence_reference,
    excerpt,
    list_items,
    match_sections,
    name_key,
    read_outline,
    render,
    strip_emphasis,
    subsections,
    tidy,
    title_organisation,
)

Text = Annotated[str, StringConstraints(min_length=1)]
ConfidenceLevel = Literal["High", "Medium", "Low"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ValueProposition(_Model):
    name: Text
    description: Text


class Evidence(_Model):
    file: Text  # the path as written in the draft, normally `resources/<file>.md`
    quote: Text


class SegmentDraft(_Model):
    """`segments/drafts/<slug>.md`: one customer segment and what it gets."""

    title: Text
    who: Text
    value_propositions: list[ValueProposition] = Field(min_length=1)
    channels: Text
    relationship_types: list[RelationshipType] = Field(min_length=1)
    relationship_note: str = ""
    revenue: Text
    evidence: list[Evidence] = Field(min_length=1)
    confidence: ConfidenceLevel
    confidence_reasoning: Text
    # Value Proposition Canvas (optional): None when the section is absent.
    customer_jobs: list[Text] | None = None
    pains: list[Text] | None = None
    gains: list[Text] | None = None
    pain_relievers: list[Text] | None = None
    gain_creators: list[Text] | None = None


class SegmentSummary(_Model):
    """One `### N. Name` entry of the segments document."""

    number: int
    name: Text
    who: Text
    size: str | None = None  # "if known": the line is left out when absent
    value_propositions: list[ValueProposition] = Field(min_length=1)
    channels: Text
    relationship: Text
    revenue: Text


class SegmentsDocument(_Model):
    """`segments/segments.md`: the consolidated segments the client is asked to agree."""

    organisation: Text
    overview: Text
    segments: list[SegmentSummary] = Field(min_length=1)
    interactions: Text
    excluded: Text
    open_questions: Text


DRAFT_KIND = "segment draft"
DOCUMENT_KIND = "segments document"

WHO = SectionSpec(
    "who",
    "Who they are",
    "who they are: demographics, needs, behaviours, size",
    ("who", "who are they"),
)
VALUE_PROPOSITIONS = SectionSpec(
    "value_propositions",
    "Value propositions",
    "a numbered list of `1. **Name** — what they get and why they care`",
    ("value proposition",),
)
CHANNELS = SectionSpec("channels", "Channels", "how this segment is reached", ("channel",))
RELATIONSHIP = SectionSpec(
    "relationship",
    "Relationship type",
    "one or more of personal, automated, self-service, community, co-creation "
    "(comma-separated), then ` — ` and why",
    (
        "relationship types",
        "relationship",
        "relationships",
        "customer relationship",
        "customer relationships",
    ),
)
REVENUE = SectionSpec(
    "revenue",
    "Revenue potential",
    "how this segment pays or could pay",
    ("revenue", "revenue model", "revenue streams"),
)
EVIDENCE = SectionSpec(
    "evidence",
    "Evidence",
    'one line per quote: `- From `resources/<file>`: "<quote>"`',
)
CONFIDENCE = SectionSpec(
    "confidence", "Confidence", "High, Medium or Low, then ` — ` and the reasoning"
)
CANVAS_SECTIONS = (
    SectionSpec(
        "customer_jobs", "Customer jobs", "`- ` items", ("jobs", "jobs to be done"), required=False
    ),
    SectionSpec("pains", "Pains", "`- ` items", ("customer pains",), required=False),
    SectionSpec("gains", "Gains", "`- ` items", ("customer gains",), required=False),
    SectionSpec("pain_relievers", "Pain relievers", "`- ` items", required=False),
    SectionSpec("gain_creators", "Gain creators", "`- ` items", required=False),
)
DRAFT_SECTIONS = (
    WHO,
    VALUE_PROPOSITIONS,
    CHANNELS,
    RELATIONSHIP,
    REVENUE,
    EVIDENCE,
    CONFIDENCE,
    *CANVAS_SECTIONS,
)

EVIDENCE_FORM = '`- From `resources/<file>`: "<quote>"`'
VP_FORM = "`1. **Name** — what they get and why they care`"

_CONFIDENCE = re.compile(
    r"^(?:\*\*|__)?(?P<level>high|medium|low)(?:\*\*|__)?(?![\w-])\s*(?:[—–:.,]|--?)?\s*"
    r"(?P<why>.*)$",
    re.IGNORECASE | re.DOTALL,
)


# --- segment drafts -------------------------------------------------------------------


@dataclass
class DraftParts:
    """What could be read of a draft (None where a section is missing or unreadable), and
    the problems with the rest."""

    title: str | None = None
    who: str | None = None
    value_propositions: list[ValueProposition] = field(default_factory=list)
    channels: str | None = None
    relationship_types: list[RelationshipType] = field(default_factory=list)
    relationship_note: str = ""
    revenue: str | None = None
    evidence: list[Evidence] = field(default_factory=list)
    confidence: str | None = None
    confidence_reasoning: str | None = None
    canvas: dict[str, list[str]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def read_draft(data: str | bytes) -> DraftParts:
    """Everything readable in a draft, plus every shape problem found on the way."""
    parts = DraftParts()
    doc, parts.problems = read_outline(
        data,
        DRAFT_KIND,
        "`# <Segment name>`",
        promote=lambda heading: any(s.accepts(heading) for s in DRAFT_SECTIONS),
    )
    if doc is None:
        return parts
    if doc.title and doc.title.text:
        parts.title = strip_emphasis(doc.title.text)
    sections, problems = match_sections(doc, DRAFT_SECTIONS, DRAFT_KIND)
    parts.problems += problems
    for key, section in sections.items():
        if section.text():
            _read_draft_section(parts, key, section)
    return parts


def parse_draft(data: str | bytes) -> SegmentDraft | list[Problem]:
    """The draft as a model, or every problem with its shape."""
    parts = read_draft(data)
    if parts.problems:
        return parts.problems
    try:
        return SegmentDraft(
            title=parts.title,
            who=parts.who,
            value_propositions=parts.value_propositions,
            channels=parts.channels,
            relationship_types=parts.relationship_types,
            relationship_note=parts.relationship_note,
            revenue=parts.revenue,
            evidence=parts.evidence,
            confidence=parts.confidence,
            confidence_reasoning=parts.confidence_reasoning,
            **parts.canvas,
        )
    except ValidationError as err:  # the readers should have caught it; say so plainly
        return _pydantic_problems(err, DRAFT_SECTIONS)


def render_draft(draft: SegmentDraft) -> str:
    """The draft as canonical markdown."""
    canvas = [
        (spec.name, getattr(draft, spec.key))
        for spec in CANVAS_SECTIONS
        if getattr(draft, spec.key) is not None
    ]
    relationship = ", ".join(draft.relationship_types)
    relationship = relationship[:1].upper() + relationship[1:]
    return render("draft.md.j2", draft=draft, relationship=relationship, canvas=canvas)


def _read_draft_section(parts: DraftParts, key: str, section: Section) -> None:
    if key in ("who", "channels", "revenue"):
        setattr(parts, key, section.text())
    elif key == "value_propositions":
        parts.value_propositions, problems = _read_value_propositions(
            section.body, VALUE_PROPOSITIONS.name
        )
        parts.problems += problems
    elif key == "relationship":
        parts.problems += _read_relationship(parts, section)
    elif key == "evidence":
        parts.problems += _read_evidence(parts, section)
    elif key == "confidence":
        parts.problems += _read_confidence(parts, section)
    else:
        parts.problems += _read_bullets(parts, key, section)


def _read_value_propositions(
    body: list[Line], section: str
) -> tuple[list[ValueProposition], list[Problem]]:
    items, stray = list_items(body)
    problems = [
        Problem(
            section,
            f'line {line.number} ("{excerpt(line.text)}") is not a list item; '
            f"write each value proposition as {VP_FORM}",
        )
        for line in stray
    ]
    vps: list[ValueProposition] = []
    seen: dict[str, int] = {}
    for item in items:
        vp = value_proposition(item.text)
        if isinstance(vp, str):
            problems.append(
                Problem(
                    section,
                    f'line {item.number} ("{excerpt(item.text)}") {vp}; write it as {VP_FORM}',
                )
            )
            continue
        key = name_key(vp.name)
        if key in seen:
            problems.append(
                Problem(
                    section,
                    f'"{vp.name}" is listed twice (lines {seen[key]} '
                    f"and {item.number}); merge them into one",
                )
            )
        seen.setdefault(key, item.number)
        vps.append(vp)
    if not items:
        problems.append(
            Problem(section, f"no value proposition is listed; write at least one as {VP_FORM}")
        )
    return vps, problems


def value_proposition(text: str) -> ValueProposition | str:
    """A `**Name** — description` item as a model, or what is wrong with it."""
    bold = BOLD_NAME.match(text)
    if bold:
        name = bold.group("name").strip().rstrip(":").strip()
        description = LEADING_SEPARATOR.sub("", bold.group("rest"), count=1).strip()
    else:
        separator = NAME_SEPARATOR.search(text)
        if not separator:
            return "has no name and description"
        name = strip_emphasis(text[: separator.start()])
        description = text[separator.end() :].strip()
    if not name:
        return "has no name"
    if not description:
        return "has no description"
    return ValueProposition(name=name, description=description)


def _read_relationship(parts: DraftParts, section: Section) -> list[Problem]:
    text = section.text()
    first, _, rest = text.partition("\n")
    separator = NAME_SEPARATOR.search(first)
    head = first[: separator.start()] if separator else first
    note = first[separator.end() :] if separator else ""
    note = tidy([note, *rest.split("\n")]) if rest else note.strip()
    types, unknown = allowed_values(
        VALUE_SEPARATOR.split(strip_emphasis(head)), RELATIONSHIP_TYPES, RELATIONSHIP_SYNONYMS
    )
    problems = [
        Problem(
            RELATIONSHIP.name,
            f'"{excerpt(term, 40)}" is not a relationship type; start the section with '
            f"{RELATIONSHIP.hint}",
        )
        for term in unknown
    ]
    if not types and not problems:
        problems.append(
            Problem(
                RELATIONSHIP.name,
                f"no relationship type is named; start the section with {RELATIONSHIP.hint}",
            )
        )
    # allowed_values returns only members of RELATIONSHIP_TYPES.
    parts.relationship_types = types  # type: ignore[assignment]
    parts.relationship_note = note
    return problems


def _read_evidence(parts: DraftParts, section: Section) -> list[Problem]:
    items, stray = list_items(section.body)
    problems = [_bad_evidence_line(line.number, line.text) for line in stray]
    for item in items:
        reference = evidence_reference(item.text)
        if reference is None:
            problems.append(_bad_evidence_line(item.number, item.text))
            continue
        file, quote = reference
        if not quote:
            problems.append(
                Problem(
                    EVIDENCE.name,
                    f"line {item.number} has an empty quote; copy "
                    f"the passage from `{file}` between the quote marks",
                )
            )
            continue
        parts.evidence.append(Evidence(file=file, quote=quote))
    if not items:
        problems.append(
            Problem(
                EVIDENCE.name, f"no evidence is listed; write at least one line as {EVIDENCE_FORM}"
            )
        )
    return problems


def _bad_evidence_line(number: int, text: str) -> Problem:
    return Problem(
        EVIDENCE.name,
        f'line {number} ("{excerpt(text)}") is not {EVIDENCE_FORM}; write it in that form',
    )


def _read_confidence(parts: DraftParts, section: Section) -> list[Problem]:
    text = section.text()
    match = _CONFIDENCE.match(text)
    if not match:
        return [
            Problem(
                CONFIDENCE.name,
                f'"{excerpt(text, 40)}" does not start with High, '
                "Medium or Low; write `High — <reasoning>` (or Medium, Low)",
            )
        ]
    level = match.group("level").capitalize()
    why = match.group("why").strip()
    if not why:
        return [Problem(CONFIDENCE.name, f"{level} has no reasoning; write `{level} — <why>`")]
    parts.confidence, parts.confidence_reasoning = level, why
    return []


def _read_bullets(parts: DraftParts, key: str, section: Section) -> list[Problem]:
    spec = next(s for s in CANVAS_SECTIONS if s.key == key)
    items, stray = list_items(section.body)
    problems = [
        Problem(
            spec.name,
            f'line {line.number} ("{excerpt(line.text)}") is not a `- ` item; '
            "write every entry as a `- ` bullet",
        )
        for line in stray
    ]
    texts = [item.text for item in items if item.text]
    if texts:
        parts.canvas[key] = texts
    elif not stray:
        problems.append(
            Problem(spec.name, "the section has no `- ` items; list them or remove the heading")
        )
    return problems


# --- segments document ----------------------------------------------------------------

OVERVIEW = SectionSpec("overview", "Overview", "a short account of the organisation's market")
SEGMENTS = SectionSpec(
    "segments",
    "Segments",
    "one `### 1. <Segment name>` entry per segment",
    ("customer segments",),
)
INTERACTIONS = SectionSpec(
    "interactions",
    "Segment Interactions",
    "how the segments relate to each other (None if they do not)",
    ("interactions",),
)
EXCLUDED = SectionSpec(
    "excluded",
    "Excluded Segments",
    "the segments considered and left out, with the reason (None if there were none)",
    ("excluded",),
)
OPEN_QUESTIONS = SectionSpec(
    "open_questions",
    "Open Questions",
    "the uncertainties only the client can settle (None if there are none)",
    ("questions",),
)
DOCUMENT_SECTIONS = (OVERVIEW, SEGMENTS, INTERACTIONS, EXCLUDED, OPEN_QUESTIONS)
DOCUMENT_TITLE_FORM = "`# Customer Segments — <Organisation>`"

_DOCUMENT_TITLE = re.compile(r"^customer segments\s*(?:[—–:]|--?)\s*(?P<org>.+)$", re.I)
_ENTRY_HEADING = re.compile(r"^(?:(?P<number>\d{1,3})[.)]\s*)?(?P<name>.+)$")
_FIELD = re.compile(
    r"^(?:[-*+][ \t]+)?(?:\*\*|__)?(?P<label>[A-Za-z][A-Za-z /&-]{0,40}?)[ \t]*"
    r"(?::(?:\*\*|__)|(?:\*\*|__)[ \t]*:|:)[ \t]*(?P<value>.*)$"
)


@dataclass(frozen=True)
class _Field:
    key: str
    label: str  # the canonical label, as rendered
    hint: str
    aliases: tuple[str, ...]


_FIELDS = (
    _Field("who", "Who they are", "one sentence on who they are", ("who they are", "who")),
    _Field(
        "size",
        "Size/scale",
        "the size if known",
        ("size/scale", "size / scale", "size", "scale", "size and scale"),
    ),
    _Field(
        "value_propositions",
        "Value propositions",
        f"a list below it of {VP_FORM}",
        ("value propositions", "value proposition"),
    ),
    _Field("channels", "Channels", "how they are reached", ("channels", "channel")),
    _Field(
        "relationship",
        "Relationship",
        "the relationship type",
        (
            "relationship",
            "relationships",
            "relationship type",
            "relationship types",
            "customer relationship",
            "customer relationships",
        ),
    ),
    _Field(
        "revenue",
        "Revenue",
        "the revenue model",
        ("revenue", "revenue model", "revenue potential", "revenue streams"),
    ),
)
_FIELD_BY_ALIAS = {alias: f for f in _FIELDS for alias in f.aliases}


@dataclass(frozen=True)
class Entry:
    """A `### N. Name` entry as far as the cross-checks need it, even when incomplete."""

    name: str
    line: int
    value_propositions: list[ValueProposition]


@dataclass
class DocumentParts:
    """What could be read of a segments document, and the problems with the rest."""

    organisation: str | None = None
    fields: dict[str, object] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)
    segments: list[SegmentSummary] = field(default_factory=list)  # the complete entries
    problems: list[Problem] = field(default_factory=list)


def read_segments_document(data: str | bytes) -> DocumentParts:
    """Everything readable in a segments document, plus every shape problem."""
    parts = DocumentParts()
    doc, parts.problems = read_outline(data, DOCUMENT_KIND, DOCUMENT_TITLE_FORM)
    if doc is None:
        return parts
    parts.organisation, problems = title_organisation(
        doc.title, _DOCUMENT_TITLE, DOCUMENT_TITLE_FORM
    )
    parts.problems += problems
    sections, problems = match_sections(doc, DOCUMENT_SECTIONS, DOCUMENT_KIND)
    parts.problems += problems
    for key, section in sections.items():
        if key != "segments":
            parts.fields[key] = section.text()
        elif section.text():
            _read_segment_entries(parts, section)
    return parts


def parse_segments_document(data: str | bytes) -> SegmentsDocument | list[Problem]:
    """The segments document as a model, or every problem with its shape."""
    parts = read_segments_document(data)
    if parts.problems:
        return parts.problems
    try:
        return SegmentsDocument(
            organisation=parts.organisation, segments=parts.segments, **parts.fields
        )
    except ValidationError as err:
        return _pydantic_problems(err, DOCUMENT_SECTIONS)


def render_segments_document(doc: SegmentsDocument) -> str:
    """The segments document as canonical markdown."""
    return render("segments.md.j2", doc=doc)


def _read_segment_entries(parts: DocumentParts, section: Section) -> None:
    before, entries = subsections(section.body)
    parts.problems += [
        Problem(
            SEGMENTS.name,
            f'line {line.number} ("{excerpt(line.text)}") is not inside a '
            "`### N. <Segment name>` entry; move it into one, or into the Overview",
        )
        for line in before
    ]
    if not entries:
        parts.problems.append(
            Problem(
                SEGMENTS.name,
                "no segment is listed; write one `### 1. <Segment name>` entry per segment",
            )
        )
    for position, entry in enumerate(entries, start=1):
        _read_segment_entry(parts, entry, position)


def _read_segment_entry(parts: DocumentParts, entry: Section, position: int) -> None:
    match = _ENTRY_HEADING.match(entry.heading)
    if not match:
        parts.problems.append(
            Problem(
                SEGMENTS.name,
                f"line {entry.line}: the entry has no name; write `### N. <Segment name>`",
            )
        )
        return
    name = strip_emphasis(match.group("name"))
    if any(name_key(name) == name_key(e.name) for e in parts.entries):
        parts.problems.append(
            Problem(
                SEGMENTS.name,
                f'"{name}" is listed twice (line {entry.line}); merge the two entries',
            )
        )
        return
    values, vp_lines, problems = _entry_fields(entry, name)
    vps: list[ValueProposition] = []
    if "value_propositions" in values:
        vps, vp_problems = _read_value_propositions(vp_lines, SEGMENTS.name)
        problems += [Problem(p.section, f'"{name}": {p.message}') for p in vp_problems]
    problems += [
        Problem(
            SEGMENTS.name,
            f'"{name}" (line {entry.line}) has no `**{f.label}**:` line; add it with {f.hint}',
        )
        for f in _FIELDS
        if f.key != "size" and f.key not in values
    ]
    parts.entries.append(Entry(name, entry.line, vps))
    parts.problems += problems
    if problems:
        return
    parts.segments.append(
        SegmentSummary(
            number=int(match.group("number") or position),
            name=name,
            who=values["who"],
            size=values.get("size") or None,
            value_propositions=vps,
            channels=values["channels"],
            relationship=values["relationship"],
            revenue=values["revenue"],
        )
    )


def _entry_fields(entry: Section, name: str) -> tuple[dict[str, str], list[Line], list[Problem]]:
    """The `**Label**: value` fields of one entry, the lines of its value proposition list,
    and the problems (stray lines, repeated or empty fields)."""
    values: dict[str, list[str]] = {}
    vp_lines: list[Line] = []
    problems: list[Problem] = []
    current: str | None = None
    for line in entry.body:
        if not line.text.strip():
            current = current if current == "value_propositions" else None
            continue
        label = _FIELD.match(line.text)
        found = (
            _FIELD_BY_ALIAS.get(" ".join(label.group("label").split()).casefold())
            if label
            else None
        )
        if label and found:
            if found.key in values:
                problems.append(
                    Problem(
                        SEGMENTS.name,
                        f'"{name}": `**{found.label}**:` appears '
                        f"twice (line {line.number}); keep one",
                    )
                )
            current = found.key
            values[current] = [label.group("value")]
            if current == "value_propositions" and label.group("value").strip():
                vp_lines.append(Line(line.number, f"- {label.group('value')}"))
        elif current == "value_propositions":
            vp_lines.append(line)
        elif current:
            values[current].append(line.text)
        else:
            problems.append(
                Problem(
                    SEGMENTS.name,
                    f'"{name}": line {line.number} '
                    f'("{excerpt(line.text)}") is not a `**Label**: value` line; '
                    "the labels are " + ", ".join(f"`**{f.label}**:`" for f in _FIELDS),
                )
            )
    text_values = {key: tidy(lines) for key, lines in values.items()}
    problems += [
        Problem(SEGMENTS.name, f'"{name}": `**{f.label}**:` is empty; write {f.hint}')
        for f in _FIELDS
        if f.key not in ("size", "value_propositions") and text_values.get(f.key) == ""
    ]
    return text_values, vp_lines, problems


def _pydantic_problems(err: ValidationError, specs: tuple[SectionSpec, ...]) -> list[Problem]:
    names = {spec.key: spec.name for spec in specs}
    problems = []
    for error in err.errors():
        key = str(error["loc"][0]) if error["loc"] else ""
        problems.append(Problem(names.get(key, key or "File"), str(error["msg"])))
    return problems
