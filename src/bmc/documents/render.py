"""Client-ready HTML pages of the canvas and the segments (SPEC section 8, `bmc render`).

`render_project` writes two self-contained pages into the project:

- `canvas/canvas.html`: the nine-block Business Model Canvas on one A3 landscape sheet, each
  item a sticky note coloured by the customer segment it serves, a legend, the evidence as a
  tooltip and as numbered footnotes, and below the sheet the Value Proposition Canvas of every
  segment whose draft describes one, then the tensions and the evidence list.
- `segments/segments.html`: the segments document for the client, each segment with its
  value propositions and, where its draft has them, its Value Proposition Canvas.

The agreed copy of a document is rendered when there is one ("Agreed" and the date of its
`decisions.md` entry), otherwise the working draft ("Draft").

The pages must open anywhere a client opens them: offline, from an e-mail attachment, on a
locked-down laptop. So they load nothing: no scripts, no web fonts, no images, CSS inline, a
Content-Security-Policy that forbids any fetch, and the system font stack. Every piece of
document text goes through jinja2's autoescaping; the little markdown the free-text sections
carry is turned into HTML here, after escaping, by `markdown` and `inline`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath
from typing import TypeVar

import jinja2
from markupsafe import Markup, escape

from bmc.documents import gate, stages, versions
from bmc.documents.credits import credit
from bmc.documents.schemas import Problem
from bmc.documents.schemas.canvas import Canvas, CanvasItem, parse_canvas
from bmc.documents.schemas.segments import (
    DraftParts,
    Evidence,
    SegmentsDocument,
    name_key,
    parse_segments_document,
    read_draft,
)
from bmc.errors import PrerequisiteError, UserError
from bmc.workspace.paths import Project, atomic_write

TEMPLATES_DIR = Path(__file__).parent / "templates" / "render"
# Each page sits beside the document it shows (`canvas/canvas.md` -> `canvas/canvas.html`);
# where those are is the stage table's, built from the packaged skills (`bmc.documents.stages`).
_CANVAS_STAGE = stages.packaged().with_schema("canvas")
_SEGMENTS_STAGE = stages.packaged().with_schema("segments")
CANVAS_HTML = PurePosixPath(_CANVAS_STAGE.document).with_suffix(".html").as_posix()
SEGMENTS_HTML = PurePosixPath(_SEGMENTS_STAGE.document).with_suffix(".html").as_posix()
DRAFTS_DIR = _SEGMENTS_STAGE.drafts_folder().rstrip("/")
ALL_SEGMENTS = "all segments"


# --- colours --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Colour:
    """A sticky-note colour: a light fill the text sits on, and a strong mark of the same hue
    for the stripe and the legend, so a segment stays recognisable on a multi-segment note."""

    fill: str
    mark: str


# Ten hues spread round the wheel (tests/test_render.py checks that every pair is far apart
# in CIELAB). A canvas with more segments reuses them with a hatched pattern on top.
PALETTE: tuple[Colour, ...] = (
    Colour("#fff0a0", "#c99a00"),  # yellow
    Colour("#cfe5ff", "#1f6fd0"),  # blue
    Colour("#ffd0ea", "#d02a68"),  # pink
    Colour("#cdf0c6", "#2a9a3c"),  # green
    Colour("#ffd3a8", "#e35d0a"),  # orange
    Colour("#e2d6ff", "#6a3fd8"),  # violet
    Colour("#bfeeee", "#0a8391"),  # teal
    Colour("#dcc6ae", "#7d4e24"),  # brown
    Colour("#d2e59a", "#6f8a00"),  # olive
    Colour("#f7b8b0", "#b3261e"),  # red
)


@dataclass(frozen=True)
class SegmentStyle:
    """How one customer segment looks on both pages (same colour on each)."""

    name: str
    index: int

    @property
    def colour(self) -> Colour:
        return PALETTE[self.index % len(PALETTE)]

    @property
    def hatched(self) -> bool:
        return self.index >= len(PALETTE)

    @property
    def css_class(self) -> str:
        return f"seg-{self.index}"


def segment_styles(names: Iterable[str]) -> dict[str, SegmentStyle]:
    """A style per segment, keyed by `name_key`, in the order given (first seen wins)."""
    styles: dict[str, SegmentStyle] = {}
    for name in names:
        key = name_key(name)
        if key and key not in styles and key != ALL_SEGMENTS:
            styles[key] = SegmentStyle(name, len(styles))
    return styles


# --- what the pages show ----------------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    """Whether a page shows an agreed document or a working draft."""

    agreed: bool
    source: str  # project-relative path of the file rendered
    date: str | None = None  # of the agreement
    note: str | None = None  # e.g. the draft changed after the agreement

    @property
    def label(self) -> str:
        if not self.agreed:
            return "Draft"
        return f"Agreed {self.date}" if self.date else "Agreed"


@dataclass
class Note:
    """One sticky note on the canvas."""

    name: str
    attribute: str | None
    description: str
    segments: list[SegmentStyle]  # the segments it serves, in legend order
    all_segments: bool
    unknown: list[str]  # serves names that are not among the segments
    evidence: list[Evidence]
    block: str = ""
    ref: int = 0  # its number in the evidence list

    @property
    def kind(self) -> str:
        if self.all_segments:
            return "all"
        if len(self.segments) == 1 and not self.unknown:
            return "single"
        return "multi" if self.segments else "none"

    @property
    def serves_label(self) -> str:
        if self.all_segments:
            return "Serves all segments"
        names = [s.name for s in self.segments] + self.unknown
        return "Serves " + "; ".join(names) if names else "Not tied to a segment"

    @property
    def tooltip(self) -> str:
        lines = [self.serves_label, *(f'{e.file}: "{e.quote}"' for e in self.evidence)]
        return "\n".join(lines)


@dataclass
class Block:
    """One of the nine blocks: where it sits in the grid and the notes in it."""

    key: str
    title: str
    area: str  # the grid-template-area name
    question: str
    notes: list[Note] = field(default_factory=list)
    lead: str = ""  # a line above the notes (the cost orientation)
    density: int = 0


@dataclass(frozen=True)
class Profile:
    """A segment's Value Proposition Canvas as its draft describes it (None: not described)."""

    jobs: list[str] | None
    pains: list[str] | None
    gains: list[str] | None
    pain_relievers: list[str] | None
    gain_creators: list[str] | None

    @classmethod
    def from_draft(cls, parts: DraftParts) -> Profile | None:
        canvas = parts.canvas
        if not canvas:
            return None
        return cls(
            canvas.get("customer_jobs"),
            canvas.get("pains"),
            canvas.get("gains"),
            canvas.get("pain_relievers"),
            canvas.get("gain_creators"),
        )


@dataclass(frozen=True)
class Offer:
    """A product or service of the value map: one of the segment's value propositions."""

    name: str
    description: str


@dataclass(frozen=True)
class Vpc:
    segment: SegmentStyle
    products: list[Offer]
    profile: Profile


# The classic layout, left to right and top to bottom; the evidence footnotes follow this order.
_BLOCKS = (
    ("key_partnerships", "Key Partners", "kp", "Who helps us, and what do they do?"),
    ("key_activities", "Key Activities", "ka", "What must we do well?"),
    ("key_resources", "Key Resources", "kr", "What must we have?"),
    ("value_propositions", "Value Propositions", "vp", "What do we offer each segment?"),
    ("relationships", "Customer Relationships", "cr", "How do we keep each segment?"),
    ("channels", "Channels", "ch", "How do we reach and serve them?"),
    ("segments", "Customer Segments", "cs", "Who do we create value for?"),
    ("costs", "Cost Structure", "cost", "What does it cost to run?"),
    ("revenue_streams", "Revenue Streams", "rev", "What is each segment paying for?"),
)

# Notes in a crowded block get a smaller type, one step at a time, until the sheet fits one
# A3 page; past the last step a block grows taller instead, so text never spills out of it.
FONT_STEPS = (1.0, 0.9, 0.8, 0.72, 0.64)


@dataclass(frozen=True)
class Metrics:
    """The CSS measures the layout estimate depends on; canvas.css.j2 is written from these,
    so the estimate and the page cannot drift apart. Pixels are CSS pixels (96 per inch)."""

    root: float = 16.0  # 1rem
    note_rem: float = 0.8  # note text at full size
    note_column_em: float = 9.5  # the narrowest column of notes
    gap: float = 5.0  # between notes, across and down
    note_pad: float = 6.0  # left and right inside a note
    note_pad_bottom: float = 5.0
    stripe: float = 5.0
    line: float = 1.25  # line height of note text
    block_pad_x: float = 7.0
    block_pad_top: float = 6.0
    block_pad_bottom: float = 8.0
    block_gap: float = 4.0
    # The printed page: A3 landscape less 8 mm margins (404 x 281 mm).
    page_width: float = 1527.0
    page_height: float = 1062.0
    # Kept free at the foot of the page for what the estimate cannot know (fonts differ).
    slack: float = 40.0


METRICS = Metrics()
# Average advance of a character in em, by kind, for DejaVu Sans (the widest common system
# sans; Segoe UI, San Francisco and Roboto are narrower, so they only leave more room).
_NARROW = frozenset(" .,;:'!|ilIjft()[]-\"’")
_WIDE = frozenset("mwMW@%")


def text_width(text: str, size: float, bold: bool = False) -> float:
    """An estimate of `text`'s width in pixels at font size `size`."""
    em = 0.0
    for char in text:
        if char in _NARROW:
            em += 0.32
        elif char in _WIDE:
            em += 0.92
        elif char.isupper() or char.isdigit():
            em += 0.68
        elif ord(char) > 0x2E80:  # CJK and the like: a full em each
            em += 1.0
        else:
            em += 0.58
    return em * size * (1.08 if bold else 1.0)


def line_count(text: str, width: float, size: float, bold: bool = False) -> int:
    """Lines `text` takes when wrapped at spaces to `width` (long words broken anywhere, as
    the notes' `overflow-wrap: anywhere` does)."""
    if not text.strip() or width <= 0:
        return 0
    space = text_width(" ", size, bold)
    lines, used = 1, 0.0
    for word in text.split():
        wide = text_width(word, size, bold)
        if used and used + space + wide <= width:
            used += space + wide
            continue
        if used:
            lines += 1
        extra, used = divmod(wide, width)
        lines += int(extra) if used else max(int(extra) - 1, 0)
        used = used or (width if wide else 0.0)
    return lines


def note_height(note: Note, width: float, size: float, m: Metrics = METRICS) -> float:
    """The height of a note `width` pixels wide with its text at `size` pixels."""
    inner = width - 2 * m.note_pad
    height = m.stripe + 4 + m.note_pad_bottom + 1.5  # stripe and its margin, padding, border
    name = note.name + (f" {note.ref}" if note.ref else "")
    height += line_count(name, inner, size, bold=True) * size * m.line
    chips = [note.attribute or "", "all segments" if note.all_segments else "", *note.unknown]
    chips = [c for c in chips if c]
    if chips:
        chip_size = size * 0.82
        # Chips flow like words; their padding and border count as two characters each.
        flow = "  ".join(f"xx{c}" for c in chips)
        height += 2 + line_count(flow, inner, chip_size) * (chip_size * m.line + 4)
    if note.description:
        desc_size = size * 0.92
        height += 2 + line_count(note.description, inner, desc_size) * desc_size * m.line
    return height


def note_columns(width: float, size: float, m: Metrics = METRICS) -> tuple[int, float]:
    """How many columns of notes fit across `width` with their text at `size` pixels, and
    how wide each one is."""
    count = max(1, int((width + m.gap) // (m.note_column_em * size + m.gap)))
    return count, (width - (count - 1) * m.gap) / count


def balanced_columns(heights: Sequence[float], count: int) -> tuple[float, list[int]]:
    """Balanced columns: the shortest height at which notes of `heights`, kept whole and in
    order, fill no more than `count` columns, and the column each note falls in."""
    target = max(max(heights), sum(heights) / count)
    while True:
        placed, column, filled = [], 0, 0.0
        for h in heights:
            if filled and filled + h > target:
                column, filled = column + 1, 0.0
            placed.append(column)
            filled += h
        if column < count:
            return target, placed
        target += 4.0


def notes_height(notes: Sequence[Note], width: float, size: float, m: Metrics = METRICS) -> float:
    """The height of a block's notes flowing down balanced columns across `width`."""
    if not notes or width <= 0:
        return 0.0
    count, column = note_columns(width, size, m)
    heights = [note_height(n, column, size, m) + m.gap for n in notes]
    return balanced_columns(heights, count)[0]


def block_height(block: Block, width: float, step: int, m: Metrics = METRICS) -> float:
    """The height `block` needs at `width` pixels with its notes at type step `step`."""
    inner = width - 2 * m.block_pad_x - 2
    height = m.block_pad_top + m.block_pad_bottom + 2
    height += line_count(block.title, inner, m.root, bold=True) * m.root * 1.2
    if block.lead:
        lead = m.root * 0.78
        height += m.block_gap + line_count(block.lead, inner, lead) * lead * 1.35
    size = m.root * m.note_rem * FONT_STEPS[step]
    if block.notes:
        height += m.block_gap + notes_height(block.notes, inner, size, m)
    return height


@dataclass(frozen=True)
class Layout:
    """The sheet's proportions: the widths of the five columns of the top rows (Key Partners,
    Key Activities/Resources, Value Propositions, Customer Relationships/Channels, Customer
    Segments) as fr weights, and the heights of the three rows in pixels on the printed page
    (also used as fr weights on screen)."""

    columns: tuple[float, float, float, float, float]
    rows: tuple[float, float, float]

    def widths(self, total: float) -> dict[str, float]:
        """Each block's width in pixels when the sheet is `total` pixels wide."""
        w = [c * total / sum(self.columns) for c in self.columns]
        return {
            "kp": w[0],
            "ka": w[1],
            "kr": w[1],
            "vp": w[2],
            "cr": w[3],
            "ch": w[3],
            "cs": w[4],
            # The bottom row splits in the middle of Value Propositions, as on the classic canvas.
            "cost": w[0] + w[1] + w[2] / 2,
            "rev": w[2] / 2 + w[3] + w[4],
        }

    def areas(self) -> dict[str, float]:
        """Each block's share of the sheet (the shares add up to 1)."""
        widths = self.widths(1.0)
        r = self.rows
        heights = {"ka": r[0], "cr": r[0], "kr": r[1], "ch": r[1], "cost": r[2], "rev": r[2]}
        total = sum(r)
        return {
            area: width * heights.get(area, r[0] + r[1]) / total for area, width in widths.items()
        }

    @property
    def grid_columns(self) -> str:
        w = self.columns
        tracks = (w[0], w[1], w[2] / 2, w[2] / 2, w[3], w[4])
        return " ".join(f"minmax(0, {t:.3f}fr)" for t in tracks)

    @property
    def grid_rows(self) -> str:
        """Rows on screen: the printed proportions, stretched to the window."""
        return " ".join(f"minmax(min-content, {r:.1f}fr)" for r in self.rows)

    @property
    def print_rows(self) -> str:
        """Rows on paper: the fitted heights, each free to grow if its notes need it."""
        return " ".join(f"minmax({r:.0f}px, auto)" for r in self.rows)


CLASSIC = Layout((1.0, 1.0, 1.0, 1.0, 1.0), (1.0, 1.0, 0.7))
_COLUMN_OF = {"kp": 0, "ka": 1, "kr": 1, "vp": 2, "cr": 3, "ch": 3, "cs": 4}
_ROW_OF = {"ka": 0, "cr": 0, "kr": 1, "ch": 1, "cost": 2, "rev": 2}
# A block's load beyond its notes' text (title, question), and a note's (stripe, padding).
BLOCK_CHARS = 120
NOTE_CHARS = 45


def block_load(block: Block) -> int:
    """The characters a block has to hold, counting each note's own overhead."""
    text = sum(len(n.name) + len(n.attribute or "") + len(n.description) for n in block.notes)
    return BLOCK_CHARS + len(block.lead) + text + NOTE_CHARS * len(block.notes)


def fit_columns(loads: dict[str, float]) -> tuple[float, float, float, float, float]:
    """Column widths that give crowded blocks more of the sheet, within limits that keep the
    classic canvas recognisable (no column under 0.6 or over 1.8 of an even share).

    A few rounds of proportional fitting: each column (and, provisionally, each row) is
    widened by a damped power of how overfull its fullest block is, so it settles."""
    columns, rows = list(CLASSIC.columns), list(CLASSIC.rows)
    for _ in range(30):
        shares = Layout(tuple(columns), tuple(rows)).areas()  # type: ignore[arg-type]
        fill = {area: loads[area] / share for area, share in shares.items()}
        for column in range(5):
            worst = max(f for area, f in fill.items() if _COLUMN_OF.get(area) == column)
            columns[column] *= worst**0.25
        mean = sum(columns) / 5
        columns = [min(max(c / mean, 0.6), 1.8) for c in columns]
        for row in range(3):
            worst = max(f for area, f in fill.items() if _ROW_OF.get(area) == row)
            rows[row] *= worst**0.25
        top = (rows[0] + rows[1]) / 2
        rows = [r / top for r in rows]
    return tuple(columns)  # type: ignore[return-value]


def fit_sheet(blocks: Sequence[Block], height: float, m: Metrics = METRICS) -> Layout:
    """Fit the blocks to a sheet `height` pixels tall and `m.page_width` wide: set each
    block's type step (`density`) and the rows' heights.

    A block's height at each type step is estimated from its notes (`block_height`); the
    rows are as tall as their tallest blocks. Spare height goes to the rows, so the sheet
    fills its page; a canvas too full even at the smallest type makes the sheet taller."""
    by_area = {b.area: b for b in blocks}
    columns = fit_columns({b.area: float(block_load(b)) for b in blocks})
    widths = Layout(columns, CLASSIC.rows).widths(m.page_width - 4)
    needs = {
        area: [block_height(block, widths[area], step, m) for step in range(len(FONT_STEPS))]
        for area, block in by_area.items()
    }

    def rows_for(steps: dict[str, int]) -> tuple[float, float, float]:
        need = {area: needs[area][step] for area, step in steps.items()}
        top = max(need["ka"], need["cr"])
        middle = max(need["kr"], need["ch"])
        spanning = max(need["kp"], need["vp"], need["cs"])
        if top + middle < spanning:  # the tall blocks need more: share it out
            extra = spanning - top - middle
            top, middle = top + extra / 2, middle + extra / 2
        return top, middle, max(need["cost"], need["rev"])

    def smallest(cap: int) -> dict[str, int]:
        # A smaller type can even need more height (one more column of notes can leave a
        # short column), so each block takes its least tall step up to the cap.
        return {
            area: min(range(cap + 1), key=lambda step, a=area: (needs[a][step], step))
            for area in by_area
        }

    # The type shrinks as evenly as it can: the smallest cap on the steps that lets the
    # sheet fit, then the blocks with the most text get their type back while it still fits.
    last = len(FONT_STEPS) - 1
    cap = next((c for c in range(last + 1) if sum(rows_for(smallest(c))) <= height), last)
    steps = smallest(cap)
    larger_first = sorted(by_area, key=lambda area: -block_load(by_area[area]))
    grown = True
    while grown:
        grown = False
        for area in larger_first:
            if steps[area] and sum(rows_for({**steps, area: steps[area] - 1})) <= height:
                steps[area] -= 1
                grown = True
    rows = rows_for(steps)
    spare = max(height - sum(rows), 0.0)
    # Spare height goes mostly to the top rows, which carry most of the canvas; a block
    # whose row ends up taller than it needs takes back the larger type that now fits.
    rows = (rows[0] + spare * 0.38, rows[1] + spare * 0.38, rows[2] + spare * 0.24)
    room = {"ka": rows[0], "cr": rows[0], "kr": rows[1], "ch": rows[1], "cost": rows[2]}
    room |= {"rev": rows[2], "kp": rows[0] + rows[1], "vp": rows[0] + rows[1]}
    room["cs"] = rows[0] + rows[1]
    for block in blocks:
        area = block.area
        block.density = next(
            step
            for step in range(steps[area] + 1)
            if step == steps[area] or needs[area][step] <= room[area]
        )
    return Layout(columns, rows)


# The legend's entries after the segments: how shared items and the rest look.
LEGEND_STYLES = (
    ("multi", "Several segments: a stripe for each"),
    ("all", "All segments"),
    ("none", "No particular segment"),
)


def sheet_height(
    canvas: Canvas, legend: Sequence[str], notice: bool, m: Metrics = METRICS, credit_line: str = ""
) -> float:
    """The height left for the sheet on the printed page under the heading and the legend
    (`legend`: the text of every legend entry) and above the credit line."""
    heading = m.root * 0.8 * 1.35 + 6 + 3  # the kicker, the rule under the heading
    title = m.root * 1.7
    heading += line_count(canvas.organisation, m.page_width - 420, title, bold=True) * title * 1.2
    label = m.root * 0.85
    lines, used = 1, 0.0
    for entry in legend:
        wide = 26 + 6 + text_width(entry, label) + 18
        if used and used + wide > m.page_width:
            lines, used = lines + 1, 0.0
        used += wide
    legend_height = 16 + lines * (label * 1.35 + 4)
    small = m.root * 0.72
    credit_height = 6 + line_count(credit_line, m.page_width, small) * small * 1.35
    return (
        m.page_height - heading - legend_height - credit_height - (40 if notice else 0) - 4
    ) - m.slack


def canvas_blocks(canvas: Canvas, styles: dict[str, SegmentStyle]) -> list[Block]:
    """The nine blocks with their notes, numbered for the evidence list."""
    grouped = {
        "value_propositions": canvas.value_propositions,
        "channels": canvas.channels,
    }
    flat = {
        "key_partnerships": canvas.key_partnerships,
        "key_activities": canvas.key_activities,
        "key_resources": canvas.key_resources,
        "relationships": canvas.relationships,
        "costs": canvas.costs,
        "revenue_streams": canvas.revenue_streams,
    }
    blocks = []
    ref = 0
    for key, title, area, question in _BLOCKS:
        block = Block(key, title, area, question)
        if key == "segments":
            block.notes = [_note(i, styles, title, default=i.name) for i in canvas.segments]
        elif key in grouped:
            block.notes = [
                _note(item, styles, title, default=segment)
                for segment, items in grouped[key].items()
                for item in items
            ]
        else:
            block.notes = [_note(item, styles, title) for item in flat[key]]
        if key == "costs":
            orientation = canvas.cost_orientation.capitalize()
            note = canvas.cost_orientation_note.strip()
            block.lead = f"{orientation} — {note}" if note else orientation
        for note in block.notes:
            if note.evidence:
                ref += 1
                note.ref = ref
        blocks.append(block)
    return blocks


def _note(
    item: CanvasItem, styles: dict[str, SegmentStyle], block: str, default: str | None = None
) -> Note:
    # Items listed under a `### Segment` subsection serve that segment even without `Serves:`.
    names = list(item.serves) or ([default] if default else [])
    keys = [name_key(n) for n in names]
    matched = {styles[k].index: styles[k] for k in keys if k in styles}
    return Note(
        name=item.name,
        attribute=item.attribute,
        description=item.description,
        segments=[matched[i] for i in sorted(matched)],
        all_segments=ALL_SEGMENTS in keys,
        unknown=[
            n for n, k in zip(names, keys, strict=True) if k not in styles and k != ALL_SEGMENTS
        ],
        evidence=list(item.evidence),
        block=block,
    )


def _vpcs(
    names: Iterable[str],
    offers: Callable[[str], list[Offer]],
    styles: dict[str, SegmentStyle],
    drafts: dict[str, DraftParts],
) -> list[Vpc]:
    found = []
    for name in names:
        parts = drafts.get(name_key(name))
        profile = Profile.from_draft(parts) if parts else None
        if profile is None:
            continue
        products = offers(name) or [
            Offer(vp.name, vp.description)
            for vp in parts.value_propositions  # type: ignore[union-attr]
        ]
        found.append(Vpc(styles[name_key(name)], products, profile))
    return found


# --- a little markdown, safely --------------------------------------------------------------

_LIST_ITEM = re.compile(r"^\s*(?P<marker>[-*+]|\d{1,3}[.)])\s+(?P<text>.*)$")
_HEADING = re.compile(r"^\s*#{1,6}\s+(?P<text>.*?)\s*#*\s*$")
_CODE = re.compile(r"`([^`]+)`")
_STRONG = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_EM = re.compile(r"(?<![\w*])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])")


def inline(text: str) -> Markup:
    """One line of document text as HTML: escaped first, then `code`, **bold**, *italic*.

    Links and images are left as the text they are: a page for a client never points at,
    or loads, anything on the network because a document said so."""
    out = []
    for position, part in enumerate(_CODE.split(text)):
        if position % 2:  # inside backticks
            out.append(f"<code>{escape(part)}</code>")
        else:
            html = str(escape(part))
            html = _STRONG.sub(r"<strong>\2</strong>", html)
            html = _EM.sub(r"<em>\1</em>", html)
            out.append(html)
    return Markup("".join(out))


def markdown(text: str) -> Markup:
    """Free text (paragraphs, bullet and numbered lists, headings) as escaped HTML."""
    html: list[str] = []
    paragraph: list[str] = []
    items: list[str] = []
    ordered = False

    def flush_paragraph() -> None:
        if paragraph:
            html.append(f"<p>{inline(' '.join(paragraph))}</p>")
            paragraph.clear()

    def flush_list() -> None:
        if items:
            tag = "ol" if ordered else "ul"
            html.append(f"<{tag}>" + "".join(f"<li>{inline(i)}</li>" for i in items) + f"</{tag}>")
            items.clear()

    for line in text.split("\n"):
        item = _LIST_ITEM.match(line)
        title = _HEADING.match(line)
        if not line.strip():
            flush_paragraph()
            flush_list()
        elif item:
            flush_paragraph()
            is_ordered = item.group("marker")[0].isdigit()
            if items and is_ordered != ordered:
                flush_list()
            ordered = is_ordered
            items.append(item.group("text"))
        elif title:
            flush_paragraph()
            flush_list()
            html.append(f'<p class="subhead">{inline(title.group("text"))}</p>')
        elif items and (line.startswith((" ", "\t")) or not paragraph):
            # A continuation of the last list item (indented, or straight after it).
            items[-1] = f"{items[-1]} {line.strip()}"
        else:
            flush_list()
            paragraph.append(line.strip())
    flush_paragraph()
    flush_list()
    return Markup("".join(html))


# --- pages ------------------------------------------------------------------------------------


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,
        # Every value is escaped unless marked safe: document text is the model's and the
        # client's, and must never become markup.
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["md"] = markdown
    env.filters["inline"] = inline
    return env


def _page(template: str, **context: object) -> str:
    return _environment().get_template(template).render(palette=PALETTE, **context)


def canvas_page(
    canvas: Canvas,
    *,
    status: Status,
    styles: dict[str, SegmentStyle] | None = None,
    drafts: dict[str, DraftParts] | None = None,
    one_page: bool = False,
    zoom: float = 1.0,
) -> str:
    """The HTML of `canvas/canvas.html`; with `one_page`, the page `bmc export pdf` prints:
    the sheet alone, at `zoom`."""
    styles = styles if styles is not None else segment_styles(s.name for s in canvas.segments)
    # A segment only the canvas names (a canvas behind its segments) still gets a colour.
    styles = {**styles}
    for segment in canvas.segments:
        styles.setdefault(name_key(segment.name), SegmentStyle(segment.name, len(styles)))
    blocks = canvas_blocks(canvas, styles)
    legend = [styles[name_key(s.name)] for s in canvas.segments]
    kinds = {n.kind for b in blocks for n in b.notes}
    # Shared and all-segment notes are always explained; untied ones only when there are some.
    legend_styles = [(k, label) for k, label in LEGEND_STYLES if k != "none" or k in kinds]
    labels = [s.name for s in legend] + [label for _, label in legend_styles]

    def offers(segment: str) -> list[Offer]:
        for name, items in canvas.value_propositions.items():
            if name_key(name) == name_key(segment):
                return [Offer(i.name, i.description) for i in items]
        return []

    vpcs = _vpcs((s.name for s in canvas.segments), offers, styles, drafts or {})
    credit_line = credit(value_proposition_canvas=bool(vpcs))
    height = sheet_height(canvas, labels, bool(status.note), credit_line=credit_line)
    layout = fit_sheet(blocks, height)
    return _page(
        "canvas.html.j2",
        canvas=canvas,
        status=status,
        blocks=blocks,
        layout=layout,
        legend=legend,
        legend_styles=legend_styles,
        styles=sorted(styles.values(), key=lambda s: s.index),
        font_steps=FONT_STEPS,
        metrics=METRICS,
        vpcs=vpcs,
        footnotes=[n for b in blocks for n in b.notes if n.ref],
        credit=credit_line,
        one_page=one_page,
        zoom=zoom,
    )


@dataclass(frozen=True)
class SegmentCard:
    number: int
    name: str
    who: str
    size: str | None
    offers: list[Offer]
    channels: str
    relationship: str
    revenue: str
    style: SegmentStyle
    vpc: Vpc | None
    evidence: list[Evidence]


def segments_page(
    doc: SegmentsDocument,
    *,
    status: Status,
    styles: dict[str, SegmentStyle] | None = None,
    drafts: dict[str, DraftParts] | None = None,
) -> str:
    """The HTML of `segments/segments.html`."""
    styles = styles if styles is not None else segment_styles(s.name for s in doc.segments)
    drafts = drafts or {}
    cards = []
    for segment in doc.segments:
        offers = [Offer(vp.name, vp.description) for vp in segment.value_propositions]
        style = styles[name_key(segment.name)]
        vpcs = _vpcs([segment.name], lambda _, o=offers: o, styles, drafts)
        parts = drafts.get(name_key(segment.name))
        cards.append(
            SegmentCard(
                number=segment.number,
                name=segment.name,
                who=segment.who,
                size=segment.size,
                offers=offers,
                channels=segment.channels,
                relationship=segment.relationship,
                revenue=segment.revenue,
                style=style,
                vpc=vpcs[0] if vpcs else None,
                evidence=list(parts.evidence) if parts else [],
            )
        )
    return _page(
        "segments.html.j2",
        doc=doc,
        status=status,
        cards=cards,
        styles=sorted(styles.values(), key=lambda s: s.index),
        credit=credit(value_proposition_canvas=any(c.vpc for c in cards)),
    )


# --- the project --------------------------------------------------------------------------------

T = TypeVar("T")


def render_project(project: Project) -> list[Path]:
    """Write `canvas/canvas.html` and `segments/segments.html`; return the paths written.

    Everything is read and checked before anything is written, so a refusal leaves the
    previous pages as they were."""
    written = []
    for relative, html in render_pages(project):
        path = project.project_dir / relative
        atomic_write(path, html)
        written.append(path)
    return written


def render_pages(project: Project) -> list[tuple[str, str]]:
    """The client pages as they would be written, by project path, in memory (the web
    workspace shows them without writing)."""
    canvas_stage, segments_stage = gate.STAGES["canvas"], gate.STAGES["segments"]
    canvas_status = _status(project, canvas_stage)
    segments_status = _status(project, segments_stage)
    if canvas_status is None and segments_status is None:
        # Nothing to show yet: a missing prerequisite (exit 2), like a missing gate.
        raise PrerequisiteError(
            f"neither {segments_stage.document} nor {canvas_stage.document} exists yet: run "
            "`bmc run bmc-segments` (and then `bmc run bmc-canvas`) first."
        )
    canvas = _parse(project, canvas_status.source, parse_canvas) if canvas_status else None
    doc = (
        _parse(project, segments_status.source, parse_segments_document)
        if segments_status
        else None
    )
    drafts = read_drafts(project)
    styles = _project_styles(doc, canvas)

    # The segments page is useful on its own during the segments stage, before any canvas.
    pages = []
    if canvas is not None and canvas_status is not None:
        html = canvas_page(canvas, status=canvas_status, styles=styles, drafts=drafts)
        pages.append((CANVAS_HTML, html))
    if doc is not None and segments_status is not None:
        html = segments_page(doc, status=segments_status, styles=styles, drafts=drafts)
        pages.append((SEGMENTS_HTML, html))
    return pages


def _project_styles(doc: SegmentsDocument | None, canvas: Canvas | None) -> dict[str, SegmentStyle]:
    # Colours follow the segments document's order so a segment wears the same colour on
    # both pages (and in the exports); a segment only the canvas names comes after.
    order = [s.name for s in doc.segments] if doc else []
    return segment_styles([*order, *(s.name for s in canvas.segments)] if canvas else order)


@dataclass(frozen=True)
class CanvasSource:
    """Everything the canvas's deliverables are made from, read as `bmc render` reads it:
    the agreed canvas when there is one, else the working draft (marked so)."""

    canvas: Canvas
    status: Status
    styles: dict[str, SegmentStyle]
    drafts: dict[str, DraftParts]


def load_canvas(project: Project) -> CanvasSource:
    """The canvas and what goes with it; exit 2 when there is no canvas yet, 1 when it
    cannot be read."""
    canvas_stage, segments_stage = gate.STAGES["canvas"], gate.STAGES["segments"]
    status = _status(project, canvas_stage)
    if status is None:
        raise PrerequisiteError(
            f"there is no canvas yet ({canvas_stage.document} is missing): run "
            "`bmc run bmc-canvas` first."
        )
    canvas = _parse(project, status.source, parse_canvas)
    segments_status = _status(project, segments_stage)
    doc = (
        _parse(project, segments_status.source, parse_segments_document)
        if segments_status
        else None
    )
    styles = _project_styles(doc, canvas)
    for segment in canvas.segments:
        styles.setdefault(name_key(segment.name), SegmentStyle(segment.name, len(styles)))
    return CanvasSource(canvas, status, styles, read_drafts(project))


def read_drafts(project: Project) -> dict[str, DraftParts]:
    """The segment drafts by `name_key` of their title, read as far as they can be read
    (a draft with a shape problem elsewhere still shows its Value Proposition Canvas)."""
    found: dict[str, DraftParts] = {}
    folder = project.project_dir / DRAFTS_DIR
    for path in sorted(folder.glob("*.md")) if folder.is_dir() else []:
        try:
            parts = read_draft(path.read_bytes())
        except OSError:
            continue
        if parts.title:
            found.setdefault(name_key(parts.title), parts)
    return found


def _status(project: Project, stage: gate.Stage) -> Status | None:
    """What to render for a stage: its gate when agreed, else its working document."""
    gate_path = project.project_dir / stage.gate
    document = project.project_dir / stage.document
    if gate_path.is_file():
        agreed = gate_path.read_bytes()
        note = None
        if document.is_file() and document.read_bytes() != agreed:
            note = (
                f"{stage.document} has changed since this was agreed; "
                "this page shows the agreed version."
            )
        return Status(True, stage.gate, _agreed_on(project, stage, agreed, gate_path), note)
    if document.is_file():
        return Status(False, stage.document)
    return None


def _agreed_on(project: Project, stage: gate.Stage, agreed: bytes, gate_path: Path) -> str:
    """The date of the `decisions.md` entry that agreed these very bytes (the latest one if
    none names their digest), else the day the gate file was written."""
    try:
        entries = [d for d in versions.decisions(project) if d.stage_number == stage.number]
    except OSError:  # an unreadable log dates the agreement by its file instead
        entries = []
    chosen = versions.entry_for(entries, stage, gate.digest(agreed)) or next(
        reversed(entries), None
    )
    if chosen is not None:
        return chosen.date
    return dt.date.fromtimestamp(gate_path.stat().st_mtime).isoformat()


def _parse(project: Project, source: str, parse: Callable[[bytes], T | list[Problem]]) -> T:
    try:
        data = (project.project_dir / source).read_bytes()
    except OSError as err:
        raise UserError(f"cannot read {source}: {err.strerror}.") from err
    result = parse(data)
    if isinstance(result, list):
        more = f" (and {len(result) - 1} more)" if len(result) > 1 else ""
        raise UserError(
            f"{source} cannot be rendered: {result[0]}{more}; fix it, or run `bmc validate` "
            "to see every problem."
        )
    return result
