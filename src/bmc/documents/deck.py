"""`bmc export pptx`: the canvas as an editable PowerPoint deck the client keeps.

Slide 1 is the nine-block canvas: every item a sticky note (a shape holding its own text)
coloured by the segment it serves, as on the canvas page, with the legend under the grid.
Then one slide per customer segment: who they are, the value propositions it is offered and,
where its draft describes them, its jobs, pains and gains beside the offer's answers (the
same table of our own as the pages; see `bmc.documents.credits`). The evidence quotes and
their sources go in each slide's speaker notes. Every piece of text is text, so the deck can
be edited; nothing is a picture.

With `--template`, the deck is built inside the firm's own presentation: its slide size, its
masters and layouts (a title-only layout is used), its theme fonts and colours; only the
segment colours, which carry meaning, are bmc's. Text size and placement come from the same
width estimate the canvas page uses (`render.line_count`, for the widest common sans), so a
note's text stays inside its note in PowerPoint, Keynote and LibreOffice alike.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pptx import Presentation
from pptx.dml.color import RGBColor
from pptx.enum.dml import MSO_LINE_DASH_STYLE, MSO_THEME_COLOR
from pptx.enum.shapes import MSO_SHAPE, PP_PLACEHOLDER
from pptx.enum.text import MSO_ANCHOR, MSO_AUTO_SIZE, PP_ALIGN
from pptx.presentation import Presentation as Deck
from pptx.slide import Slide, SlideLayout
from pptx.text.text import TextFrame
from pptx.util import Emu, Pt

from bmc.documents import render
from bmc.documents.canvas_pdf import check_target
from bmc.documents.credits import credit
from bmc.documents.render import CanvasSource, Note, Profile, SegmentStyle
from bmc.documents.schemas.canvas import CanvasItem
from bmc.documents.schemas.segments import name_key
from bmc.errors import UserError
from bmc.workspace.paths import Project, atomic_write

CANVAS_PPTX = PurePosixPath(render.CANVAS_HTML).with_suffix(".pptx").as_posix()
EMU_PER_PX = 9525  # CSS pixels, 96 to the inch: the unit render's text estimate works in
WIDESCREEN = (Emu(12192000), Emu(6858000))  # 13.33 x 7.5 in, PowerPoint's own 16:9
INK = RGBColor(0x1C, 0x22, 0x30)  # text on the light sticky-note colours, whatever the theme
MUTED = RGBColor(0x58, 0x61, 0x74)
NEUTRAL = RGBColor(0xF4, 0xF2, 0xEC)
WHITE = RGBColor(0xFF, 0xFF, 0xFF)
# Type sizes tried for the notes, largest first: with their descriptions, then (a canvas
# too full for that) names only, the descriptions moving to the speaker notes.
NOTE_SIZES_PT = (10.0, 9.0, 8.0, 7.5, 7.0, 6.5, 6.0, 5.5, 5.0)
# Names alone go smaller still before a note may leave its block: the slide can be zoomed
# and the speaker notes hold every note's text.
NAME_SIZES_PT = (*NOTE_SIZES_PT, 4.5, 4.0, 3.5, 3.0, 2.5, 2.0)
# The slide's own measures, in pixels at 96 per inch (render.Metrics for the page).
SLIDE_METRICS = render.Metrics(
    note_column_em=10.0,
    gap=4.0,
    note_pad=4.0,
    note_pad_bottom=3.0,
    stripe=3.0,
    line=1.25,
)


# --- building blocks ----------------------------------------------------------------------------


def rgb(hex_colour: str) -> RGBColor:
    return RGBColor.from_string(hex_colour.lstrip("#"))


def px(emu: int) -> float:
    return emu / EMU_PER_PX


def emu(pixels: float) -> Emu:
    return Emu(round(pixels * EMU_PER_PX))


def pt_to_px(points: float) -> float:
    return points * 96 / 72


@dataclass(frozen=True)
class Run:
    text: str
    bold: bool = False
    italic: bool = False
    scale: float = 1.0  # of the frame's type size
    colour: RGBColor | None = None


Paragraph = list[Run]


def text_height(paragraphs: Sequence[Paragraph], width: float, size: float) -> float:
    """Pixels `paragraphs` take wrapped to `width` pixels at `size` pixels (the widest run
    of a paragraph sets its line height)."""
    total = 0.0
    for paragraph in paragraphs:
        scale = max((r.scale for r in paragraph), default=1.0)
        bold = any(r.bold for r in paragraph)
        text = "".join(r.text for r in paragraph)
        lines = max(render.line_count(text, width, size * scale, bold=bold), 1)
        total += lines * size * scale * SLIDE_METRICS.line
    return total


def add_text(
    slide: Slide,
    box: tuple[float, float, float, float],
    paragraphs: Sequence[Paragraph],
    size_pt: float,
    *,
    inset: tuple[float, float, float, float] = (0, 0, 0, 0),
    colour: RGBColor | None = None,
    shape: object = None,
) -> object:
    """Text in a text box at `box` (left, top, width, height in pixels), or in `shape`'s own
    text frame. Theme fonts are kept: only size, weight and (on our colours) the ink are set."""
    if shape is None:
        left, top, width, height = box
        shape = slide.shapes.add_textbox(emu(left), emu(top), emu(width), emu(height))
    frame = shape.text_frame  # type: ignore[attr-defined]
    frame.word_wrap = True
    frame.auto_size = MSO_AUTO_SIZE.NONE
    frame.vertical_anchor = MSO_ANCHOR.TOP
    frame.margin_left, frame.margin_top, frame.margin_right, frame.margin_bottom = (
        emu(v) for v in inset
    )
    write_paragraphs(frame, paragraphs, size_pt, colour=colour, line_spacing=1.0)
    return shape


def write_paragraphs(
    frame: TextFrame,
    paragraphs: Sequence[Paragraph],
    size_pt: float,
    *,
    colour: RGBColor | None = None,
    line_spacing: float | None = None,
) -> None:
    """`paragraphs` into an empty text frame (a text box's or a table cell's), its first
    paragraph reused. A run's own colour wins over `colour`; without either, the theme's
    ink stays."""
    for position, runs in enumerate(paragraphs):
        paragraph = frame.paragraphs[0] if position == 0 else frame.add_paragraph()
        if line_spacing is not None:
            paragraph.line_spacing = line_spacing
        for part in runs:
            run = paragraph.add_run()
            run.text = part.text
            run.font.size = Pt(round(size_pt * part.scale * 2) / 2)
            run.font.bold = part.bold
            run.font.italic = part.italic
            if part.colour or colour:
                run.font.color.rgb = part.colour or colour


def add_rect(
    slide: Slide,
    box: tuple[float, float, float, float],
    fill: RGBColor | None,
    line: RGBColor | MSO_THEME_COLOR | None = None,
    *,
    dashed: bool = False,
    line_pt: float = 0.75,
) -> object:
    left, top, width, height = box
    shape = slide.shapes.add_shape(
        MSO_SHAPE.RECTANGLE, emu(left), emu(top), emu(max(width, 1)), emu(max(height, 1))
    )
    shape.shadow.inherit = False  # flat notes: a theme's shadow blurs small type
    if fill is None:
        shape.fill.background()
    else:
        shape.fill.solid()
        shape.fill.fore_color.rgb = fill
    if line is None:
        shape.line.fill.background()
    else:
        if isinstance(line, RGBColor):
            shape.line.color.rgb = line
        else:
            shape.line.color.theme_color = line
        shape.line.width = Pt(line_pt)
        if dashed:
            shape.line.dash_style = MSO_LINE_DASH_STYLE.DASH
    shape.text_frame.text = ""
    return shape


# --- the presentation and its layouts -----------------------------------------------------------


def open_presentation(template: Path | None) -> Deck:
    """A new deck: the firm's template emptied of its own slides, or PowerPoint's default
    made widescreen."""
    if template is None:
        deck = Presentation()
        deck.slide_width, deck.slide_height = WIDESCREEN
        return deck
    if not template.exists():
        raise UserError(f"the template {template} does not exist.")
    if template.is_dir():
        raise UserError(f"the template {template} is a folder, not a PowerPoint file.")
    try:
        deck = Presentation(str(template))
    except Exception:  # python-pptx raises several kinds for a file that is not a deck
        raise UserError(
            f"{template} is not a PowerPoint presentation bmc can read: give a .pptx file "
            "(a .potx template saved from PowerPoint as .pptx works too)."
        ) from None
    slides = deck.slides._sldIdLst  # the template's sample slides are not the client's
    for slide_id in list(slides):
        rel = slide_id.rId
        slides.remove(slide_id)
        deck.part.drop_rel(rel)
    return deck


_TITLE_KINDS = (PP_PLACEHOLDER.TITLE, PP_PLACEHOLDER.CENTER_TITLE)
_FURNITURE = (PP_PLACEHOLDER.DATE, PP_PLACEHOLDER.FOOTER, PP_PLACEHOLDER.SLIDE_NUMBER)


def title_only_layout(deck: Deck) -> SlideLayout:
    """The template's layout with a title and nothing else to fill (its "Title Only"), else
    the one with the fewest placeholders."""

    def kinds(layout: SlideLayout) -> list[object]:
        return [p.placeholder_format.type for p in layout.placeholders]

    def rank(layout: SlideLayout) -> tuple[int, int, int]:
        found = kinds(layout)
        title = PP_PLACEHOLDER.TITLE in found or PP_PLACEHOLDER.CENTER_TITLE in found
        extra = [k for k in found if k not in _TITLE_KINDS and k not in _FURNITURE]
        return (len(extra), 0 if title else 1, 0 if PP_PLACEHOLDER.TITLE in found else 1)

    return min(deck.slide_layouts, key=rank)


@dataclass(frozen=True)
class Frame:
    """Where a slide's content goes, in pixels, under its title and above its credit."""

    left: float
    top: float
    width: float
    bottom: float


def new_slide(
    deck: Deck, layout: SlideLayout, title: str, *, own_title: bool
) -> tuple[Slide, Frame]:
    """A slide with `title` in the layout's title placeholder (sized here when the deck is
    bmc's own, left to the template otherwise) and every other placeholder removed."""
    slide = deck.slides.add_slide(layout)
    width, height = px(deck.slide_width), px(deck.slide_height)
    margin = width * 0.025
    for placeholder in list(slide.placeholders):
        if placeholder.placeholder_format.type not in _TITLE_KINDS:
            placeholder._element.getparent().remove(placeholder._element)
    heading = slide.shapes.title
    if heading is None:
        heading = add_text(
            slide, (margin, height * 0.03, width - 2 * margin, height * 0.09), [], 24
        )
    if own_title:
        heading.left, heading.top = emu(margin), emu(height * 0.025)
        heading.width, heading.height = emu(width - 2 * margin), emu(height * 0.085)
    heading.text_frame.text = title
    frame = heading.text_frame
    if own_title:
        frame.vertical_anchor = MSO_ANCHOR.MIDDLE
    # A long title keeps the template's font and colour but not a size that would spill
    # out of its placeholder onto the content below.
    size = 24.0 if own_title else title_size(heading, layout)
    fitting = title_fit(title, heading, size)
    for paragraph in frame.paragraphs:
        if own_title:
            paragraph.alignment = PP_ALIGN.LEFT
        for run in paragraph.runs:
            if own_title or fitting < size:
                run.font.size = Pt(fitting)
            if own_title:
                run.font.bold = True
    # The content starts under the title, wherever the template put it (within reason).
    title_bottom = px(heading.top + heading.height) if heading.top is not None else height * 0.12
    top = min(max(title_bottom + height * 0.012, height * 0.08), height * 0.25)
    return slide, Frame(margin, top, width - 2 * margin, height - margin * 0.6)


def title_size(heading: object, layout: SlideLayout) -> float:
    """The title's type size in points as the template sets it: on the slide's title, the
    layout's, else the master's title style (PowerPoint's 44 when none says)."""
    placeholder = next(
        (p for p in layout.placeholders if p.placeholder_format.type in _TITLE_KINDS), None
    )
    for element in (heading, placeholder):
        if element is not None:
            found = element._element.xpath(".//a:lvl1pPr/a:defRPr/@sz")  # type: ignore[attr-defined]
            if found:
                return int(found[0]) / 100
    found = layout.slide_master.element.xpath(".//p:titleStyle/a:lvl1pPr/a:defRPr/@sz")
    return int(found[0]) / 100 if found else 44.0


def title_fit(title: str, heading: object, size: float) -> float:
    """The largest size up to `size` at which `title` fits its placeholder (12pt at least)."""
    width = px(heading.width) - 20  # type: ignore[attr-defined]
    height = px(heading.height) - 8  # type: ignore[attr-defined]
    while size > 12 and text_height([[Run(title)]], width, pt_to_px(size)) > height:
        size -= 2
    return max(size, 12.0)


def add_credit(slide: Slide, frame: Frame, line: str) -> float:
    """The credit line at the foot of the slide; returns the top of it."""
    size = 7.0
    height = text_height([[Run(line)]], frame.width, pt_to_px(size)) + 2
    top = frame.bottom - height
    add_text(slide, (frame.left, top, frame.width, height), [[Run(line)]], size, colour=MUTED)
    return top


def set_notes(slide: Slide, lines: Sequence[str]) -> None:
    slide.notes_slide.notes_text_frame.text = "\n".join(lines)


# --- the canvas slide ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Fit:
    """The type the notes are set in, and whether their descriptions fit on the slide."""

    size_pt: float
    descriptions: bool
    rows: tuple[float, float, float]


def slide_note(note: Note, descriptions: bool) -> Note:
    """The note as the slide shows it: no evidence number, and no description when the
    canvas is too full for them."""
    return dataclasses.replace(note, ref=0, description=note.description if descriptions else "")


def note_paragraphs(note: Note) -> list[Paragraph]:
    paragraphs: list[Paragraph] = [[Run(note.name, bold=True)]]
    chips = [note.attribute or "", "all segments" if note.all_segments else "", *note.unknown]
    if any(chips):
        paragraphs.append([Run(" · ".join(c for c in chips if c), italic=True, scale=0.82)])
    if note.description:
        paragraphs.append([Run(note.description, scale=0.92)])
    return paragraphs


def block_needs(block: render.Block, width: float, fit_size: float, descriptions: bool) -> float:
    """Pixels `block` needs at `width` with its notes at `fit_size` pixels."""
    m = SLIDE_METRICS
    title = pt_to_px(title_pt(fit_size))
    height = m.block_pad_top + render.line_count(block.title, width - 14, title, True) * title * 1.2
    if block.lead:
        height += text_height([[Run(block.lead)]], width - 14, fit_size * 0.9) + 3
    notes = [slide_note(n, descriptions) for n in block.notes]
    if notes:
        inner = width - 2 * m.block_pad_x
        height += m.block_gap + render.notes_height(notes, inner, fit_size, m)
    return height + m.block_pad_bottom


def title_pt(note_px: float) -> float:
    return min(max(note_px * 72 / 96 + 2, 8.0), 12.0)


def fit_canvas(blocks: Sequence[render.Block], widths: dict[str, float], height: float) -> Fit:
    """The largest type at which every block's notes fit the grid `height` pixels tall."""
    tries = [(s, True) for s in NOTE_SIZES_PT] + [(s, False) for s in NAME_SIZES_PT]
    by_area = {b.area: b for b in blocks}
    rows = (0.0, 0.0, 0.0)
    for size_pt, descriptions in tries:
        need = {
            area: block_needs(b, widths[area], pt_to_px(size_pt), descriptions)
            for area, b in by_area.items()
        }
        top, middle = max(need["ka"], need["cr"]), max(need["kr"], need["ch"])
        spanning = max(need["kp"], need["vp"], need["cs"])
        if top + middle < spanning:
            top, middle = (
                top + (spanning - top - middle) / 2,
                middle + (spanning - top - middle) / 2,
            )
        rows = (top, middle, max(need["cost"], need["rev"]))
        if sum(rows) <= height:
            break
    spare = max(height - sum(rows), 0.0)
    rows = (rows[0] + spare * 0.38, rows[1] + spare * 0.38, rows[2] + spare * 0.24)
    return Fit(size_pt, descriptions, rows)


def canvas_slide(deck: Deck, layout: SlideLayout, source: CanvasSource, own: bool) -> None:
    canvas, status = source.canvas, source.status
    label = "draft" if not status.agreed else status.label.lower()
    slide, frame = new_slide(
        deck, layout, f"{canvas.organisation}: Business Model Canvas ({label})", own_title=own
    )
    blocks = render.canvas_blocks(canvas, source.styles)
    legend = [source.styles[name_key(s.name)] for s in canvas.segments]
    kinds = {n.kind for b in blocks for n in b.notes}
    vpcs = any(Profile.from_draft(p) for p in source.drafts.values())
    credit_top = add_credit(slide, frame, credit(value_proposition_canvas=vpcs))
    legend_top = add_legend(slide, frame, credit_top, legend, kinds)

    columns = render.fit_columns({b.area: float(render.block_load(b)) for b in blocks})
    widths = render.Layout(columns, render.CLASSIC.rows).widths(frame.width)
    grid_height = legend_top - frame.top - 4
    fit = fit_canvas(blocks, widths, grid_height)
    lefts = grid_lefts(frame.left, columns, frame.width)
    r0, r1, r2 = fit.rows
    scale = min(1.0, grid_height / sum(fit.rows))  # a canvas beyond even the smallest names
    r0, r1, r2 = r0 * scale, r1 * scale, r2 * scale
    tops = {"kp": (0, r0 + r1), "ka": (0, r0), "kr": (r0, r1), "vp": (0, r0 + r1)}
    tops |= {"cr": (0, r0), "ch": (r0, r1), "cs": (0, r0 + r1)}
    tops |= {"cost": (r0 + r1, r2), "rev": (r0 + r1, r2)}
    for block in blocks:
        offset, block_height = tops[block.area]
        box = (lefts[block.area], frame.top + offset, widths[block.area], block_height)
        draw_block(slide, block, box, fit)
    lines = [
        f"{canvas.organisation}: Business Model Canvas, {status.label} (from {status.source})."
    ]
    if not fit.descriptions:
        lines.append("The canvas is full: the slide shows each note's name; its text is below.")
    lines.append("Evidence, numbered as on the canvas page:")
    for block in blocks:
        for note in block.notes:
            head = f"{note.ref}. " if note.ref else "- "
            lines.append(
                f"{head}{note.name} ({block.title}; {note.serves_label}): {note.description}"
            )
            lines += [f'    {e.file}: "{e.quote}"' for e in note.evidence]
    set_notes(slide, lines)


def grid_lefts(left: float, columns: Sequence[float], width: float) -> dict[str, float]:
    share = [c * width / sum(columns) for c in columns]
    x = [left + sum(share[:i]) for i in range(5)]
    return {
        "kp": x[0], "ka": x[1], "kr": x[1], "vp": x[2], "cr": x[3], "ch": x[3], "cs": x[4],
        "cost": x[0], "rev": x[2] + share[2] / 2,
    }  # fmt: skip


def draw_block(
    slide: Slide, block: render.Block, box: tuple[float, float, float, float], fit: Fit
) -> None:
    m = SLIDE_METRICS
    left, top, width, _ = box
    add_rect(slide, box, None, MSO_THEME_COLOR.TEXT_1)
    size = pt_to_px(fit.size_pt)
    heading = title_pt(size)
    title_height = render.line_count(block.title, width - 14, pt_to_px(heading), True)
    title_height *= pt_to_px(heading) * 1.2
    add_text(
        slide,
        (left + m.block_pad_x, top + m.block_pad_top, width - 2 * m.block_pad_x, title_height + 2),
        [[Run(block.title, bold=True)]],
        heading,
    )
    y = top + m.block_pad_top + title_height
    if block.lead:
        lead = [[Run(block.lead, italic=True, scale=0.9)]]
        lead_height = text_height(lead, width - 14, size) + 3
        add_text(slide, (left + m.block_pad_x, y + 2, width - 14, lead_height), lead, fit.size_pt)
        y += lead_height
    notes = [slide_note(n, fit.descriptions) for n in block.notes]
    if not notes:
        return
    y += m.block_gap
    count, column = render.note_columns(width - 2 * m.block_pad_x, size, m)
    heights = [render.note_height(n, column, size, m) for n in notes]
    _, placed = render.balanced_columns([h + m.gap for h in heights], count)
    filled = [y] * count
    for note, note_height, at in zip(notes, heights, placed, strict=True):
        x = left + m.block_pad_x + at * (column + m.gap)
        draw_note(slide, note, (x, filled[at], column, note_height), fit.size_pt)
        filled[at] += note_height + m.gap


def draw_note(
    slide: Slide, note: Note, box: tuple[float, float, float, float], size_pt: float
) -> None:
    m = SLIDE_METRICS
    left, top, width, _ = box
    if note.kind == "single":
        fill = rgb(note.segments[0].colour.fill)
    else:
        fill = WHITE if note.kind == "all" else NEUTRAL
    line = INK if note.kind == "all" else None
    shape = add_rect(slide, box, fill, line, dashed=note.kind == "all", line_pt=0.5)
    add_text(
        slide,
        box,
        note_paragraphs(note),
        size_pt,
        inset=(m.note_pad, m.stripe + 3, m.note_pad, m.note_pad_bottom),
        colour=INK,
        shape=shape,
    )
    marks = [INK] if note.kind == "all" else [rgb(s.colour.mark) for s in note.segments]
    for position, mark in enumerate(marks):
        stripe = width / len(marks)
        add_rect(slide, (left + position * stripe, top, stripe, m.stripe), mark)


def add_legend(
    slide: Slide,
    frame: Frame,
    bottom: float,
    legend: Sequence[SegmentStyle],
    kinds: set[str],
) -> float:
    """The legend in rows above `bottom`: each segment's colour, then how shared notes look.
    Returns its top."""
    size_pt = 9.0
    size = pt_to_px(size_pt)
    entries: list[tuple[str, list[RGBColor], RGBColor, bool]] = [
        (s.name, [rgb(s.colour.mark)], rgb(s.colour.fill), False) for s in legend
    ]
    palette = [rgb(c.mark) for c in render.PALETTE[:3]]
    for kind, label in render.LEGEND_STYLES:
        if kind == "multi":
            entries.append((label, palette, NEUTRAL, False))
        elif kind == "all":
            entries.append((label, [INK], WHITE, True))
        elif kind in kinds:
            entries.append((label, [], NEUTRAL, False))
    swatch, gap, row_height = 22.0, 16.0, size * 1.5
    rows: list[list[tuple[float, tuple[str, list[RGBColor], RGBColor, bool]]]] = [[]]
    used = 0.0
    for entry in entries:
        wide = swatch + 5 + render.text_width(entry[0], size) + 8
        if used and used + wide > frame.width:
            rows.append([])
            used = 0.0
        rows[-1].append((used, entry))
        used += wide + gap
    top = bottom - len(rows) * row_height - 4
    for number, row in enumerate(rows):
        y = top + number * row_height
        for x, (label, marks, fill, dashed) in row:
            left = frame.left + x
            add_rect(
                slide,
                (left, y + 3, swatch, size),
                fill,
                INK if dashed else None,
                dashed=dashed,
                line_pt=0.5,
            )
            for position, mark in enumerate(marks):
                add_rect(
                    slide,
                    (left + position * swatch / len(marks), y + 3, swatch / len(marks), 3),
                    mark,
                )
            text_width = render.text_width(label, size) + 8
            add_text(slide, (left + swatch + 5, y, text_width, row_height), [[Run(label)]], size_pt)
    return top


# --- a slide per segment ------------------------------------------------------------------------


def segment_slide(
    deck: Deck, layout: SlideLayout, source: CanvasSource, segment_name: str, own: bool
) -> None:
    canvas = source.canvas
    key = name_key(segment_name)
    style = source.styles[key]
    slide, frame = new_slide(deck, layout, segment_name, own_title=own)
    parts = source.drafts.get(key)
    profile = Profile.from_draft(parts) if parts else None
    credit_top = add_credit(slide, frame, credit(value_proposition_canvas=profile is not None))
    add_rect(slide, (frame.left, frame.top, frame.width, 5), rgb(style.colour.mark))
    top = frame.top + 14
    bottom = credit_top - 8

    who = next((s.description for s in canvas.segments if name_key(s.name) == key), "")
    offers = next(
        (items for name, items in canvas.value_propositions.items() if name_key(name) == key), []
    )
    left: list[Paragraph] = [heading("Who they are"), [Run(who)], [Run("")]]
    left.append(heading("Value propositions"))
    left += [[Run(o.name, bold=True), Run(f" — {o.description}")] for o in offers]
    left_box = (frame.left, top, frame.width * (0.38 if profile else 0.5) - 10, bottom - top)
    right_left = frame.left + left_box[2] + 20
    right_box = (right_left, top, frame.left + frame.width - right_left, bottom - top)
    if profile is not None:
        table = profile_table(profile, offers)
        size = min(column_size(left, left_box), table_size(table, right_box))
        add_table(slide, right_box, table, size)
    else:
        channels = next(
            (items for name, items in canvas.channels.items() if name_key(name) == key), []
        )
        revenue = [i for i in canvas.revenue_streams if serves(i.serves, key)]
        right: list[Paragraph] = [heading("Channels")]
        right += [[Run(c.name, bold=True), Run(f" — {c.description}")] for c in channels]
        right += [[Run("")], heading("Revenue streams")]
        right += [[Run(r.name, bold=True), Run(f" — {r.description}")] for r in revenue]
        size = min(column_size(left, left_box), column_size(right, right_box))
        add_text(slide, right_box, right, size)
    add_text(slide, left_box, left, size)

    lines = [f"{segment_name}: what the research says."]
    for item in parts.evidence if parts else []:
        lines.append(f'"{item.quote}" ({item.file})')
    for offer in offers:
        lines += [f'{offer.name}: "{e.quote}" ({e.file})' for e in offer.evidence]
    set_notes(slide, lines)


def serves(names: Sequence[str], key: str) -> bool:
    keys = {name_key(n) for n in names}
    return key in keys or render.ALL_SEGMENTS in keys


def heading(text: str) -> Paragraph:
    return [Run(text, bold=True, scale=0.85, colour=MUTED)]


SIZES_PT = (14.0, 12.0, 11.0, 10.0, 9.0, 8.0, 7.0)


def largest_size(fits: Callable[[float], bool]) -> float:
    """The largest of SIZES_PT at which `fits`, else the smallest."""
    return next((size for size in SIZES_PT if fits(size)), SIZES_PT[-1])


def column_size(paragraphs: Sequence[Paragraph], box: tuple[float, float, float, float]) -> float:
    _, _, width, height = box
    return largest_size(lambda s: text_height(paragraphs, width, pt_to_px(s)) <= height)


# A row per pairing: a need of the segment beside how the offer answers it.
_TABLE_ROWS = (
    ("Customer jobs", "jobs", "Products & services", None),
    ("Pains", "pains", "Pain relievers", "pain_relievers"),
    ("Gains", "gains", "Gain creators", "gain_creators"),
)
CELL_PAD = 6.0
Table = list[tuple[list[Paragraph], list[Paragraph]]]


def profile_table(profile: Profile, offers: Sequence[CanvasItem]) -> Table:
    """The segment's needs beside the offer's answers: the same table of our own as the
    pages show (never the Value Proposition Canvas artwork)."""
    rows: Table = [
        (
            [[Run("What the segment needs", bold=True)]],
            [[Run("How our offer answers it", bold=True)]],
        )
    ]
    for need_title, need_key, answer_title, answer_key in _TABLE_ROWS:
        needs = getattr(profile, need_key) or []
        answers = [o.name for o in offers] if answer_key is None else getattr(profile, answer_key)
        rows.append((cell(need_title, needs), cell(answer_title, answers or [])))
    return rows


def row_heights(table: Table, width: float, size_pt: float) -> list[float]:
    inner = width / 2 - 2 * CELL_PAD
    size = pt_to_px(size_pt)
    return [
        max(text_height(a, inner, size), text_height(b, inner, size)) + 2 * CELL_PAD
        for a, b in table
    ]


def table_size(table: Table, box: tuple[float, float, float, float]) -> float:
    _, _, width, height = box
    return largest_size(lambda s: sum(row_heights(table, width, s)) <= height)


def add_table(
    slide: Slide, box: tuple[float, float, float, float], table: Table, size_pt: float
) -> None:
    """A real table (editable cells, the template's table style) sized to its text."""
    left, top, width, _ = box
    heights = row_heights(table, width, size_pt)
    shape = slide.shapes.add_table(
        len(table), 2, emu(left), emu(top), emu(width), emu(sum(heights))
    )
    grid = shape.table
    grid.horz_banding = False
    for number, row_height in enumerate(heights):
        grid.rows[number].height = emu(row_height)
    for number, pair in enumerate(table):
        for column, paragraphs in enumerate(pair):
            target = grid.cell(number, column)
            target.margin_left = target.margin_right = emu(CELL_PAD)
            target.margin_top = target.margin_bottom = emu(CELL_PAD)
            frame = target.text_frame
            frame.word_wrap = True
            write_paragraphs(frame, paragraphs, size_pt)


def cell(title: str, items: Sequence[str]) -> list[Paragraph]:
    paragraphs: list[Paragraph] = [[Run(title.upper(), bold=True, scale=0.8, colour=MUTED)]]
    paragraphs += [[Run(f"• {item}")] for item in items] or [
        [Run("Not described yet", italic=True)]
    ]
    return paragraphs


# --- the deck -----------------------------------------------------------------------------------


def build_deck(source: CanvasSource, template: Path | None = None) -> bytes:
    """The deck's bytes: the canvas slide, then a slide per segment in the legend's order."""
    deck = open_presentation(template)
    layout = title_only_layout(deck)
    own = template is None
    canvas_slide(deck, layout, source, own)
    for segment in source.canvas.segments:
        segment_slide(deck, layout, source, segment.name, own)
    buffer = io.BytesIO()
    deck.save(buffer)
    return buffer.getvalue()


def export_pptx(
    project: Project, out: Path | None = None, template: Path | None = None
) -> tuple[Path, render.Status]:
    """Write the deck to `out` (default `canvas/canvas.pptx`) whole or not at all; return
    where, and whether it shows the agreed canvas or the draft."""
    source = render.load_canvas(project)
    target = out if out is not None else project.project_dir / CANVAS_PPTX
    check_target(target)
    atomic_write(target, build_deck(source, template))
    return target, source.status
