"""`bmc export pptx`: the editable deck the client keeps (issue 13).

The deck is read back with python-pptx as a person opening it would meet it: the canvas
slide with its nine blocks, its notes in their segments' colours and its legend; a slide per
segment; the evidence in the speaker notes; the credit on every slide; and only shapes that
hold their own text, never a picture. A firm's template is built here with python-pptx and
its layouts, size and fonts must carry through. Last, LibreOffice Impress opens the deck
headless and turns it into a PDF and a PNG, as a client's office suite would.

Runtime: about 10 s, most of it LibreOffice (skipped, with the reason, where absent).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from pptx import Presentation
from pptx.dml.color import RGBColor
from pptx.enum.dml import MSO_FILL
from pptx.enum.shapes import MSO_SHAPE_TYPE
from pptx.util import Inches

from bmc.documents import render
from bmc.documents.credits import BMC_CREDIT, VPC_CREDIT
from bmc.documents.schemas.canvas import Canvas, parse_canvas
from bmc.documents.schemas.segments import read_draft
from bmc.workspace.paths import Project
from clihelp import run_bmc
from projects import FIXTURES, segments_ready

SOFFICE = shutil.which("soffice") or shutil.which("libreoffice")
SEGMENTS = [
    "Island commuters",
    "Island residents on non-work trips",
    "Visitors and day-trippers",
    "Freight hauliers and island businesses",
    "Public-service partners",
]
BLOCK_TITLES = [title for _, title, _, _ in render._BLOCKS]


def tidewater(tmp_path: Path) -> Project:
    """The demo client after the segments stage, with the fixture canvas as its draft."""
    project = segments_ready(tmp_path)
    canvas = project.project_dir / "canvas" / "canvas.md"
    canvas.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / "canvas" / "tidewater-canvas.md", canvas)
    return project


def fixture_canvas() -> Canvas:
    parsed = parse_canvas((FIXTURES / "canvas" / "tidewater-canvas.md").read_bytes())
    assert isinstance(parsed, Canvas)
    return parsed


def export(project: Project, *args: str) -> Path:
    result = run_bmc(["export", "pptx", *args], cwd=project.project_dir)
    assert result.exit_code == 0, result.output
    assert "the draft canvas, not agreed yet" in result.stdout
    return project.project_dir / "canvas" / "canvas.pptx"


def texts(slide) -> list[str]:  # type: ignore[no-untyped-def]
    """Every piece of text on a slide, tables' cells included."""
    found = []
    for shape in slide.shapes:
        if shape.has_text_frame and shape.text_frame.text.strip():
            found.append(shape.text_frame.text)
        if shape.has_table:
            found += [c.text for row in shape.table.rows for c in row.cells]
    return found


def notes(slide) -> str:  # type: ignore[no-untyped-def]
    return slide.notes_slide.notes_text_frame.text


def fill_of(shape) -> RGBColor | None:  # type: ignore[no-untyped-def]
    try:
        return shape.fill.fore_color.rgb
    except (AttributeError, TypeError):
        return None


@pytest.fixture(scope="module")
def deck(tmp_path_factory: pytest.TempPathFactory) -> Presentation:
    project = tidewater(tmp_path_factory.mktemp("deck"))
    return Presentation(str(export(project)))


def test_the_canvas_slide_then_a_slide_per_segment(deck: Presentation) -> None:
    slides = list(deck.slides)
    assert len(slides) == 1 + len(SEGMENTS)
    assert slides[0].shapes.title.text == ("Tidewater Ferries Ltd: Business Model Canvas (draft)")
    assert [s.shapes.title.text for s in slides[1:]] == SEGMENTS
    # Widescreen, PowerPoint's own 16:9.
    assert (deck.slide_width, deck.slide_height) == (12192000, 6858000)


def test_the_canvas_slide_has_the_nine_blocks_and_every_item(deck: Presentation) -> None:
    on_slide = texts(deck.slides[0])
    for title in BLOCK_TITLES:
        assert title in on_slide, title
    canvas = fixture_canvas()
    items = [*canvas.segments, *canvas.relationships, *canvas.revenue_streams]
    items += [*canvas.key_resources, *canvas.key_activities, *canvas.key_partnerships]
    items += [*canvas.costs]
    items += [i for group in canvas.value_propositions.values() for i in group]
    items += [i for group in canvas.channels.values() for i in group]
    notes_text = [t.split("\n")[0] for t in on_slide]
    for item in items:
        assert item.name in notes_text, item.name
    # Every shape sits on the slide.
    for shape in deck.slides[0].shapes:
        assert shape.left >= 0 and shape.left + shape.width <= deck.slide_width + 1, shape.name
        assert shape.top >= 0 and shape.top + shape.height <= deck.slide_height + 1, shape.name


def test_notes_wear_their_segments_colours_and_the_legend_names_them(deck: Presentation) -> None:
    slide = deck.slides[0]
    colours = {name: render.PALETTE[i] for i, name in enumerate(SEGMENTS)}
    by_text = {s.text_frame.text.split("\n")[0]: s for s in slide.shapes if s.has_text_frame}
    canvas = fixture_canvas()
    # A value proposition serves the segment it is listed under: its note has that fill.
    for segment, items in canvas.value_propositions.items():
        for item in items:
            assert fill_of(by_text[item.name]) == RGBColor.from_string(
                colours[segment].fill.lstrip("#")
            ), item.name
    # The legend: each segment's name beside a swatch of its colour, under the grid.
    fills = {fill_of(s) for s in slide.shapes if s.shape_type == MSO_SHAPE_TYPE.AUTO_SHAPE}
    grid_bottom = max(
        s.top + s.height
        for s in slide.shapes
        if s.has_text_frame and s.text_frame.text == "Cost Structure"
    )
    for name in SEGMENTS:
        labels = [s for s in slide.shapes if s.has_text_frame and s.text_frame.text == name]
        assert any(label.top >= grid_bottom for label in labels), name
        assert RGBColor.from_string(colours[name].fill.lstrip("#")) in fills
    legend = [s.text_frame.text for s in slide.shapes if s.has_text_frame]
    assert "Several segments: a stripe for each" in legend and "All segments" in legend


def test_speaker_notes_hold_the_evidence_and_its_sources(
    deck: Presentation, tmp_path: Path
) -> None:
    canvas_notes = notes(deck.slides[0])
    canvas = fixture_canvas()
    everything = [*canvas.segments, *canvas.costs, *canvas.key_partnerships]
    everything += [i for group in canvas.value_propositions.values() for i in group]
    for item in everything:
        for evidence in item.evidence:
            assert f'{evidence.file}: "{evidence.quote}"' in canvas_notes, item.name
    # A segment's slide carries what its draft quotes, with the source.
    project = tidewater(tmp_path)
    drafts = sorted((project.project_dir / "segments" / "drafts").glob("*.md"))
    checked = 0
    for path in drafts:
        draft = read_draft(path.read_bytes())
        slide = deck.slides[1 + SEGMENTS.index(draft.title)]
        for evidence in draft.evidence:
            assert f'"{evidence.quote}" ({evidence.file})' in notes(slide)
            checked += 1
    assert checked >= len(SEGMENTS)


def test_text_is_text_never_a_picture(deck: Presentation) -> None:
    for slide in deck.slides:
        for shape in slide.shapes:
            assert shape.shape_type != MSO_SHAPE_TYPE.PICTURE, shape.name
            assert not shape.element.xpath(".//a:blip"), shape.name  # no picture fills either


def test_jobs_pains_and_gains_where_the_drafts_have_them(deck: Presentation) -> None:
    commuters = deck.slides[1 + SEGMENTS.index("Island commuters")]
    tables = [s.table for s in commuters.shapes if s.has_table]
    assert len(tables) == 1
    cells = [[c.text for c in row.cells] for row in tables[0].rows]
    assert cells[0] == ["What the segment needs", "How our offer answers it"]
    assert cells[1][0].startswith("CUSTOMER JOBS") and "Get to work on the mainland" in cells[1][0]
    assert cells[2][0].startswith("PAINS") and cells[2][1].startswith("PAIN RELIEVERS")
    assert cells[3][0].startswith("GAINS") and cells[3][1].startswith("GAIN CREATORS")
    assert "Sailings that run" in cells[1][1]
    # A segment whose draft has no Value Proposition Canvas gets its value propositions and
    # channels, and no table.
    residents = deck.slides[1 + SEGMENTS.index("Island residents on non-work trips")]
    assert not [s for s in residents.shapes if s.has_table]
    said = "\n".join(texts(residents))
    assert "Later evening returns" in said and "Terminal desk and telephone" in said


def test_every_slide_carries_the_credit(deck: Presentation) -> None:
    for number, slide in enumerate(deck.slides):
        said = "\n".join(texts(slide))
        assert BMC_CREDIT in said, number
        has_table = any(s.has_table for s in slide.shapes)
        if has_table or number == 0:
            assert VPC_CREDIT in said, number
        else:
            assert VPC_CREDIT not in said, number


def assert_notes_inside_their_blocks(deck: Presentation, canvas: Canvas) -> None:
    """Every item's sticky note lies wholly inside the frame of the block it belongs to."""
    slide = deck.slides[0]
    shapes = list(slide.shapes)
    frames = [
        s
        for s in shapes
        if s.shape_type == MSO_SHAPE_TYPE.AUTO_SHAPE
        and s.fill.type == MSO_FILL.BACKGROUND
        and not s.text_frame.text
    ]
    assert len(frames) == 9

    def inside(shape, frame) -> bool:  # type: ignore[no-untyped-def]
        return (
            frame.left <= shape.left
            and shape.left + shape.width <= frame.left + frame.width
            and frame.top <= shape.top
            and shape.top + shape.height <= frame.top + frame.height
        )

    # A frame is the block whose title sits in it.
    titles = [s for s in shapes if s.has_text_frame and s.text_frame.text in BLOCK_TITLES]
    frame_of = {}
    for frame in frames:
        [title] = [t.text_frame.text for t in titles if inside(t, frame)]
        frame_of[title] = frame
    assert sorted(frame_of) == sorted(BLOCK_TITLES)
    # Where each item belongs, read from the canvas itself.
    blocks_of: dict[str, set[str]] = {}
    expected = 0
    for key, title, _, _ in render._BLOCKS:
        found = getattr(canvas, key)
        items = [i for group in found.values() for i in group] if isinstance(found, dict) else found
        for item in items:
            blocks_of.setdefault(item.name, set()).add(title)
        expected += len(items)
    notes = [
        s
        for s in shapes
        if s.shape_type == MSO_SHAPE_TYPE.AUTO_SHAPE
        and s.text_frame.text.split("\n")[0] in blocks_of
    ]
    assert len(notes) == expected
    for note in notes:
        name = note.text_frame.text.split("\n")[0]
        assert any(inside(note, frame_of[title]) for title in blocks_of[name]), name


def test_no_note_spills_out_of_its_block(deck: Presentation) -> None:
    assert_notes_inside_their_blocks(deck, fixture_canvas())


def test_no_note_spills_out_of_its_block_on_a_crowded_canvas(tmp_path: Path) -> None:
    from test_render import FIVE, bare_project, generated_canvas, parsed, write_canvas

    text = generated_canvas(FIVE, items=120)
    project = bare_project(tmp_path)
    write_canvas(project, text)
    assert_notes_inside_their_blocks(Presentation(str(export(project))), parsed(text))


# --- the firm's template --------------------------------------------------------------------


def firm_template(path: Path) -> Path:
    """A 4:3 template whose title-only layout is renamed, whose master sets titles in
    Georgia, and which holds a sample slide the client must never see."""
    template = Presentation()  # python-pptx's default is 4:3, 10 x 7.5 in
    layout = next(layout for layout in template.slide_layouts if layout.name == "Title Only")
    layout.name = "Firm title only"
    latin = template.slide_master.element.xpath(".//p:titleStyle//a:latin")[0]
    latin.set("typeface", "Georgia")
    sample = template.slides.add_slide(template.slide_layouts[0])
    sample.shapes.title.text = "Sample slide from the firm"
    template.save(str(path))
    return path


def test_a_firms_template_gives_its_size_layouts_and_fonts(tmp_path: Path) -> None:
    project = tidewater(tmp_path)
    template = firm_template(tmp_path / "firm.pptx")
    deck = Presentation(str(export(project, "--template", str(template))))
    assert (deck.slide_width, deck.slide_height) == (Inches(10), Inches(7.5))
    assert len(deck.slides) == 1 + len(SEGMENTS)
    assert_notes_inside_their_blocks(deck, fixture_canvas())  # the 4:3 slide is shorter
    for slide in deck.slides:
        assert slide.slide_layout.name == "Firm title only"
        assert "Sample slide from the firm" not in texts(slide)
        # Everything fits the template's narrower slide.
        for shape in slide.shapes:
            assert shape.left + shape.width <= deck.slide_width + 1, shape.name
        # bmc names no font: the runs take the template's theme and master fonts.
        assert not slide.shapes._spTree.xpath(".//a:latin"), "a font was forced"
    title_font = deck.slide_master.element.xpath(".//p:titleStyle//a:latin/@typeface")
    assert title_font == ["Georgia"]
    # The title is the template's placeholder, left where the template put it.
    layout = next(
        p for p in Presentation(str(template)).slide_layouts if p.name == "Firm title only"
    )
    template_title = next(p for p in layout.placeholders if p.placeholder_format.idx == 0)
    title = deck.slides[1].shapes.title
    assert (title.left, title.top, title.width) == (
        template_title.left,
        template_title.top,
        template_title.width,
    )


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["missing", "not a deck", "a folder"])
def test_a_bad_template_is_refused_in_one_sentence(tmp_path: Path, case: str) -> None:
    project = tidewater(tmp_path)
    template = tmp_path / "firm.pptx"
    if case == "not a deck":
        template.write_text("just some notes", "utf-8")
    elif case == "a folder":
        template.mkdir()
    result = run_bmc(["export", "pptx", "--template", str(template)], cwd=project.project_dir)
    assert result.exit_code == 1, result.output
    assert result.exception is None
    assert len(result.stderr.strip().splitlines()) == 1
    assert str(template) in result.stderr
    assert not (project.project_dir / "canvas" / "canvas.pptx").exists()


def test_no_canvas_yet_is_a_missing_prerequisite(tmp_path: Path) -> None:
    project = segments_ready(tmp_path)
    result = run_bmc(["export", "pptx"], cwd=project.project_dir)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        "bmc: there is no canvas yet (canvas/canvas.md is missing): run `bmc run bmc-canvas` first."
    )
    assert not (project.project_dir / "canvas").exists()


def test_an_unreadable_canvas_is_refused_and_the_old_deck_kept(tmp_path: Path) -> None:
    project = tidewater(tmp_path)
    deck = export(project)
    before = deck.read_bytes()
    (project.project_dir / "canvas" / "canvas.md").write_text("# Not a canvas\n", "utf-8")
    result = run_bmc(["export", "pptx"], cwd=project.project_dir)
    assert result.exit_code == 1 and result.exception is None, result.output
    assert "canvas/canvas.md cannot be rendered" in result.stderr
    assert deck.read_bytes() == before
    assert [p.name for p in deck.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_out_names_the_file_and_a_folder_is_refused(tmp_path: Path) -> None:
    project = tidewater(tmp_path)
    target = tmp_path / "for-client" / "tidewater.pptx"
    result = run_bmc(["export", "pptx", "--out", str(target)], cwd=project.project_dir)
    assert result.exit_code == 0, result.output
    assert Presentation(str(target)).slides[0].shapes.title.text.startswith("Tidewater")
    result = run_bmc(["export", "pptx", "--out", str(tmp_path)], cwd=project.project_dir)
    assert result.exit_code == 1 and "is a folder" in result.stderr


# --- a real office suite opens it -----------------------------------------------------------


@pytest.mark.skipif(
    SOFFICE is None,
    reason="LibreOffice is not installed (`apt-get install -y libreoffice-impress`): the "
    "check that an office suite opens and converts the deck cannot run",
)
def test_libreoffice_converts_the_deck_to_pdf_and_png(tmp_path: Path) -> None:
    project = tidewater(tmp_path)
    deck = export(project)
    out = tmp_path / "converted"
    for kind in ("pdf", "png"):
        done = subprocess.run(
            [
                str(SOFFICE),
                # Its own profile, so a LibreOffice already running elsewhere cannot block it.
                f"-env:UserInstallation={(tmp_path / 'lo-profile').as_uri()}",
                "--headless",
                "--convert-to",
                kind,
                "--outdir",
                str(out),
                str(deck),
            ],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "Error" not in done.stdout + done.stderr, done.stdout + done.stderr
    pdf = (out / "canvas.pdf").read_bytes()
    assert pdf.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page(?![A-Za-z])", pdf)) == 1 + len(SEGMENTS)
    png = (out / "canvas.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert abs(width / height - 16 / 9) < 0.02  # the canvas slide, widescreen
