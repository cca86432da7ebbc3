"""Governed documents: their shape as pydantic models, read from markdown, written back.

Each schema module offers `parse_<document>(text) -> Model | list[Problem]` and
`render_<document>(model) -> str`; rendering a parsed canonical document gives back the
same bytes. This package holds what every schema shares: the `Problem` a parser reports,
decoding the raw text safely, splitting markdown into headed sections and list items, the
forms that segment drafts and the canvas write alike (names and their descriptions,
evidence lines, relationship types, the title), the jinja2 environment of the templates,
and a digest of all of it (so sessions and the validation cache notice when the rules
change). It imports neither pydantic nor jinja2 up front: the models live in the schema
modules, and the templates load on first use.

Parsers never raise on bad input: a draft the model wrote is data, and every shape problem
is collected and returned at once so the model can fix them all in one retry.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    import jinja2

TEMPLATES_DIR = Path(__file__).parent / "templates"

# A governed document is a few kilobytes of prose; anything near a megabyte is a mistake
# (a pasted resource, a runaway generation) and is refused before any parsing work.
MAX_DOCUMENT_BYTES = 1_000_000

# The section name of problems about the file as a whole (encoding, size, emptiness).
FILE = "File"
TITLE = "Title"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a document: the section it is in and how to fix it."""

    section: str
    message: str

    def __str__(self) -> str:
        return f"{self.section}: {self.message}"


@dataclass(frozen=True)
class Line:
    """One line of a document with its 1-based line number (problems cite it)."""

    number: int
    text: str


@dataclass
class Section:
    """A heading and the lines under it, up to the next heading of its level."""

    heading: str
    line: int
    body: list[Line] = field(default_factory=list)
    level: int = 2

    def text(self) -> str:
        """The body as stored in a model: trimmed, at most one blank line in a row."""
        return tidy(line.text for line in self.body)


def size_label(n_bytes: int) -> str:
    """`n_bytes` the way a person reads it (12.3 MB, 850 KB)."""
    if n_bytes >= 1_000_000:
        return f"{n_bytes / 1_000_000:.1f} MB"
    return f"{max(1, round(n_bytes / 1000))} KB"


def decode(data: str | bytes, kind: str) -> str | Problem:
    """The document as clean text (LF newlines, no trailing spaces), or why it is not text.

    `kind` names the document in messages ("segment draft"). Bytes come from disk; a str
    comes from the model and can still carry NULs or lone surrogates.
    """
    if isinstance(data, bytes):
        text = _decode_bytes(data, kind)
        if isinstance(text, Problem):
            return text
    else:
        text = data
        problem = _check_str(text, kind)
        if problem:
            return problem
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        return Problem(FILE, f"the {kind} is empty; write the whole document")
    return "\n".join(line.rstrip() for line in text.split("\n"))


def _decode_bytes(data: bytes, kind: str) -> str | Problem:
    if len(data) > MAX_DOCUMENT_BYTES:
        return _too_large(len(data), kind)
    # UTF-16/32 carry NUL bytes, so look for their byte-order marks before calling it binary.
    for bom, name in (
        (codecs.BOM_UTF32_LE, "UTF-32"),
        (codecs.BOM_UTF32_BE, "UTF-32"),
        (codecs.BOM_UTF16_LE, "UTF-16"),
        (codecs.BOM_UTF16_BE, "UTF-16"),
    ):
        if data.startswith(bom):
            return Problem(FILE, f"the {kind} is {name} text; save it as UTF-8")
    if b"\x00" in data:
        return _binary(kind)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        return Problem(
            FILE,
            f"the {kind} is not UTF-8 text (byte 0x{data[err.start]:02x} at offset "
            f"{err.start}); save it as UTF-8",
        )


def _check_str(text: str, kind: str) -> Problem | None:
    # Four bytes per character is the UTF-8 worst case: only measure when it could matter.
    if len(text) * 4 > MAX_DOCUMENT_BYTES:
        n_bytes = len(text.encode("utf-8", "surrogatepass"))
        if n_bytes > MAX_DOCUMENT_BYTES:
            return _too_large(n_bytes, kind)
    if "\x00" in text:
        return _binary(kind)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return Problem(
            FILE, f"the {kind} holds an invalid character at offset {err.start}; remove it"
        )
    return None


def _too_large(n_bytes: int, kind: str) -> Problem:
    return Problem(
        FILE,
        f"the {kind} is {size_label(n_bytes)}, over the {size_label(MAX_DOCUMENT_BYTES)} "
        "limit; a governed document is a few KB of prose, so write only the document itself",
    )


def _binary(kind: str) -> Problem:
    return Problem(FILE, f"the {kind} is binary (it contains NUL bytes), not markdown text")


def tidy(lines: Iterable[str]) -> str:
    """Join lines, dropping blank lines at either end and repeats of blank lines."""
    out: list[str] = []
    for line in lines:
        if line.strip() or (out and out[-1].strip()):
            out.append(line)
    while out and not out[-1].strip():
        out.pop()
    return "\n".join(out)


_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def heading(text: str) -> tuple[int, str] | None:
    """(level, text) when `text` is an ATX heading line (`## Evidence`), else None."""
    match = _HEADING.match(text)
    if not match:
        return None
    return len(match.group(1)), (match.group(2) or "").strip()


def scan(text: str) -> list[tuple[Line, tuple[int, str] | None]]:
    """Every line of a decoded document, with (level, text) when it is a heading.

    Lines inside fenced code blocks are never headings.
    """
    out: list[tuple[Line, tuple[int, str] | None]] = []
    in_fence = False
    for number, raw in enumerate(text.split("\n"), start=1):
        if _FENCE.match(raw):
            in_fence = not in_fence
        out.append((Line(number, raw), None if in_fence else heading(raw)))
    return out


def split_at(
    lines: list[tuple[Line, tuple[int, str] | None]],
    level: int,
    promote: Callable[[str], bool] | None = None,
) -> tuple[list[Line], list[Section]]:
    """Cut scanned lines at the headings of `level`: (lines before the first, sections).

    Deeper headings stay in the body of the section they fall in, unless `promote` says
    their text names a section: a `### Channels` is then the Channels section, written at
    the wrong level, rather than stray text in the section above it.
    """
    before: list[Line] = []
    sections: list[Section] = []
    for line, found in lines:
        if found and (found[0] == level or (found[0] > level and promote and promote(found[1]))):
            sections.append(Section(found[1], line.number, level=found[0]))
        elif sections:
            sections[-1].body.append(line)
        else:
            before.append(line)
    return before, sections


@dataclass
class Outline:
    """A document cut at its `#` title and its `##` sections."""

    title: Line | None  # the title's text and line number
    preamble: list[Line]  # non-blank text between the title and the first section
    sections: list[Section]
    extra_titles: list[Line]  # `#` headings other than the title


def outline(text: str, promote: Callable[[str], bool] | None = None) -> Outline:
    """Cut a decoded document into its title and `##` sections (see `split_at`)."""
    scanned = scan(text)
    titles = [Line(line.number, found[1]) for line, found in scanned if found and found[0] == 1]
    rest = [(line, found) for line, found in scanned if not (found and found[0] == 1)]
    before, sections = split_at(rest, 2, promote)
    first_text = next((line for line, _ in scanned if line.text.strip()), None)
    title = None
    if titles and first_text is not None and first_text.number == titles[0].number:
        title = titles.pop(0)
    preamble = [line for line in before if line.text.strip()]
    # Any other `#` heading is reported by the schema, not silently kept as body text.
    return Outline(title, preamble, sections, titles)


def read_outline(
    data: str | bytes, kind: str, title_form: str, promote: Callable[[str], bool] | None = None
) -> tuple[Outline | None, list[Problem]]:
    """The start of every reader: the decoded document cut into its outline, and the
    problems with its text or its title (the outline is None when it is not text at all).

    `title_form` is how the title is written (`` `# <Segment name>` ``), for messages.
    """
    text = decode(data, kind)
    if isinstance(text, Problem):
        return None, [text]
    doc = outline(text, promote)
    return doc, title_problems(doc, title_form)


def title_problems(doc: Outline, form: str) -> list[Problem]:
    """What is wrong around the sections: a missing or empty title, text above the first
    section, and `#` headings other than the title."""
    problems = []
    if doc.title is None:
        problems.append(Problem(TITLE, f"the document must start with the title {form}"))
    elif not doc.title.text:
        problems.append(
            Problem(TITLE, f"the title on line {doc.title.number} is empty; write {form}")
        )
    problems += [
        Problem(
            TITLE,
            f'line {line.number} ("{excerpt(line.text)}") is outside any section; '
            "move it under one of the `##` headings",
        )
        for line in doc.preamble
    ]
    problems += [
        Problem(
            TITLE,
            f"line {line.number}: only the title is a `#` heading; make "
            f'"{excerpt(line.text)}" a `##` section or part of one',
        )
        for line in doc.extra_titles
    ]
    return problems


def title_organisation(
    title: Line | None,
    pattern: re.Pattern[str],
    form: str,
    clean: Callable[[str], str] = str.strip,
) -> tuple[str | None, list[Problem]]:
    """The organisation a `# <Document> — <Organisation>` title names, and the problem when
    the title is not in `form` (no organisation and no problem when there is no title text:
    `title_problems` reports that).

    `pattern` matches the title after `clean`, with the organisation as group `org`.
    """
    if title is None or not title.text:
        return None, []
    match = pattern.match(clean(title.text))
    if match is None:
        return None, [
            Problem(TITLE, f'"{excerpt(title.text)}" is not {form}; write it in that form')
        ]
    return match.group("org").strip(), []


def heading_key(text: str) -> str:
    """A heading compared loosely: case, emphasis, spacing and a trailing colon ignored."""
    text = re.sub(r"[*_`]", "", text).strip().rstrip(":").strip()
    return re.sub(r"\s+", " ", text).casefold()


@dataclass(frozen=True)
class SectionSpec:
    """One `##` section a schema expects: its canonical heading and what belongs in it."""

    key: str
    name: str  # the canonical heading, as rendered
    hint: str  # what to write in it, phrased to follow "write" or "with"
    aliases: tuple[str, ...] = ()  # other headings accepted (already in `heading_key` form)
    required: bool = True

    def accepts(self, text: str) -> bool:
        key = heading_key(text)
        return key == heading_key(self.name) or key in self.aliases


def match_sections(
    doc: Outline, specs: tuple[SectionSpec, ...], kind: str
) -> tuple[dict[str, Section], list[Problem]]:
    """The document's sections by spec key, and the problems with the set of sections.

    Reported: unknown headings (their text would be lost), duplicates, headings at the
    wrong level, missing required sections, empty sections.
    """
    found: dict[str, Section] = {}
    problems: list[Problem] = []
    for section in doc.sections:
        spec = next((s for s in specs if s.accepts(section.heading)), None)
        if spec is None:
            problems.append(_unknown_section(section, specs, kind))
        elif spec.key in found:
            first = found[spec.key].line
            problems.append(
                Problem(
                    spec.name,
                    f"the section appears twice (lines {first} and "
                    f"{section.line}); keep one `## {spec.name}`",
                )
            )
        else:
            found[spec.key] = section
            if section.level != 2:
                problems.append(
                    Problem(
                        spec.name,
                        f"the heading is written as `{'#' * section.level} {section.heading}` "
                        f"(line {section.line}); make it `## {spec.name}`",
                    )
                )
    for spec in specs:
        section = found.get(spec.key)
        if section is None and spec.required:
            problems.append(
                Problem(spec.name, f"the section is missing; add `## {spec.name}` with {spec.hint}")
            )
        elif section is not None and not section.text():
            problems.append(Problem(spec.name, f"the section is empty; write {spec.hint}"))
    return found, problems


def subsections(body: list[Line]) -> tuple[list[Line], list[Section]]:
    """A section's body cut at its `###` headings: the non-blank lines above the first one
    (text that belongs to no subsection), and the subsections."""
    scanned = [(line, _level3(line.text)) for line in body]
    before, found = split_at(scanned, 3)
    return [line for line in before if line.text.strip()], found


def _level3(text: str) -> tuple[int, str] | None:
    found = heading(text)
    return found if found and found[0] == 3 else None


def _unknown_section(section: Section, specs: tuple[SectionSpec, ...], kind: str) -> Problem:
    names = ", ".join(f"`## {spec.name}`" for spec in specs)
    return Problem(
        section.heading or "(untitled section)",
        f"line {section.line}: `## {section.heading}` is not a section of a {kind}; the "
        f"sections are {names}: move its text into one of them",
    )


_ITEM = re.compile(r"^ ?(?:[-*+]|\d{1,3}[.)])(?:[ \t]+(.*))?$")


@dataclass(frozen=True)
class Item:
    """One list item, continuation lines joined with a space."""

    number: int
    text: str


def list_items(body: list[Line]) -> tuple[list[Item], list[Line]]:
    """The list items of a section body, and the lines that belong to no item.

    Any bullet (`-`, `*`, `+`) or number (`1.`, `1)`) starts an item; a non-blank line right
    below an item continues it (wrapped text, nested bullets); after a blank line, text
    that is not an item is stray.
    """
    items: list[Item] = []
    stray: list[Line] = []
    open_item = False
    for line in body:
        if not line.text.strip():
            open_item = False
            continue
        match = _ITEM.match(line.text)
        if match:
            items.append(Item(line.number, (match.group(1) or "").strip()))
            open_item = True
        elif open_item:
            last = items[-1]
            items[-1] = Item(last.number, f"{last.text} {line.text.strip()}".strip())
        else:
            stray.append(line)
    return items, stray


def excerpt(text: str, limit: int = 60) -> str:
    """`text` on one line, cut to `limit` characters, for quoting back in a message."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def strip_emphasis(text: str) -> str:
    """`**Name**` or `_Name_` without the markers around it."""
    match = re.fullmatch(r"(\*\*|__|\*|_)(.+)\1", text.strip())
    return match.group(2).strip() if match else text.strip()


def name_key(name: str) -> str:
    """A segment or value proposition name compared loosely (case, spacing, dashes, quotes)."""
    table = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "–": "-", "—": "-"})
    return " ".join(strip_emphasis(name).translate(table).casefold().split()).rstrip(".:")


# --- forms the segment drafts and the canvas share ---------------------------------------

RelationshipType = Literal["personal", "automated", "self-service", "community", "co-creation"]
RELATIONSHIP_TYPES: tuple[RelationshipType, ...] = get_args(RelationshipType)

# Names a consultant may use for a relationship type (Osterwalder's longer labels, plurals,
# missing hyphens), mapped to the five types of the schema.
RELATIONSHIP_SYNONYMS: dict[str, RelationshipType] = {
    "personal assistance": "personal",
    "dedicated personal assistance": "personal",
    "automated service": "automated",
    "automated services": "automated",
    "self service": "self-service",
    "selfservice": "self-service",
    "communities": "community",
    "co creation": "co-creation",
    "cocreation": "co-creation",
}

# Between a name and its text: an em or en dash (spaced or not), a spaced hyphen or double
# hyphen, or a colon. Unspaced hyphens stay inside names ("Self-service booking").
NAME_SEPARATOR = re.compile(r"\s*[—–]\s*|\s+--?\s+|\s*:\s+|\s*:$")
# The same separator at the start of what follows a bold name.
LEADING_SEPARATOR = re.compile(r"^\s*(?:[—–:]|--?)\s*")
BOLD_NAME = re.compile(r"^(\*\*|__)(?P<name>.+?)\1(?P<rest>.*)$")
EVIDENCE_REFERENCE = re.compile(
    r"""^(?:(?:\*\*|__)?from(?:\*\*|__)?\s+)?      # "From", maybe bold, maybe left out
        (?:`(?P<quoted>[^`]+)`|(?P<bare>[^\s`"“”„«]+?))  # the file, in backticks or bare
        \s*(?:[:—–]|--?)?\s*                           # a colon or dash, or nothing
        ["“”„«](?P<quote>.*)["“”»]                      # the quote, in any quote marks
        \s*[.,;]?$""",
    re.IGNORECASE | re.VERBOSE,
)
# How people separate the values of a list they type ("automated, community"); a bar too,
# since templates write the choices as `awareness|purchase` and a model may copy that.
VALUE_SEPARATOR = re.compile(r",|;|/|\||&|\+|\band\b", re.IGNORECASE)


def evidence_reference(text: str) -> tuple[str, str] | None:
    """(file, quote) of an evidence reference (`` From `resources/x.md`: "quote" ``), or
    None when `text` is not one. The quote may be empty: the caller says how to fix that."""
    match = EVIDENCE_REFERENCE.match(text)
    if match is None:
        return None
    return (match.group("quoted") or match.group("bare")).strip(), match.group("quote").strip()


def allowed_values(
    terms: Iterable[str], allowed: tuple[str, ...], synonyms: Mapping[str, str]
) -> tuple[list[str], list[str]]:
    """The allowed values `terms` name, canonical and without repeats, in the order given,
    and the terms (trimmed) that name none. Case, spacing, emphasis and synonyms are
    ignored; blank terms are skipped."""
    found: list[str] = []
    unknown: list[str] = []
    for term in terms:
        key = " ".join(term.replace("*", "").split()).casefold()
        if not key:
            continue
        canonical = synonyms.get(key, key)
        if canonical not in allowed:
            unknown.append(term.strip())
        elif canonical not in found:
            found.append(canonical)
    return found, unknown


@cache
def environment() -> jinja2.Environment:
    """The templates' environment: a missing variable fails loudly instead of rendering blank."""
    import jinja2  # here: validation needs no templates, and `bmc status` should start fast

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # markdown out, not HTML
    )


def render(template: str, **context: object) -> str:
    return environment().get_template(template).render(**context)


@cache
def schema_digest() -> str:
    """A short hash of the schema code and templates: it changes when the rules change."""
    digest = hashlib.sha256()
    files = sorted(Path(__file__).parent.glob("*.py")) + sorted(TEMPLATES_DIR.glob("*.j2"))
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
