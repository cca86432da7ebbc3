"""`bmc import`: client documents become markdown sub-reports with page, slide and sheet
markers, listed in resources/index.md; bad input is refused and changes nothing.

The documents are made here with python-docx, python-pptx, openpyxl and fpdf2, so the
tests read what real Office and PDF writers produce. Runtime: about 8 s on the 2-core
machine, 3-4 s of it importing markitdown (and the onnxruntime it loads) once.
"""

from __future__ import annotations

import datetime as dt
import shutil
import zipfile
from pathlib import Path

import pytest

from bmc.documents.grounding import Match, find_quote
from bmc.documents.importer import READ_IT_PLACEHOLDER, import_files, slugify
from bmc.errors import UserError
from bmc.workspace.packaged import data_dir
from bmc.workspace.paths import Project, init_project

TODAY = dt.date(2026, 11, 23)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A copy of the Tidewater fixture: six hand-written sub-reports and their index."""
    workspace = tmp_path / "ws"
    shutil.copytree(data_dir("fixtures") / "workspace", workspace)
    return Project(workspace.resolve(), "tidewater", "growth-2027")


def snapshot(*folders: Path) -> dict[str, bytes]:
    """Every file under the folders, by path, with its bytes."""
    return {
        str(path): path.read_bytes()
        for folder in folders
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def index_section(index: str, name: str) -> str:
    """The `## name` section of the index, through the blank line that ends it."""
    start = index.index(f"## {name}\n")
    end = index.find("\n## ", start + 1)
    return index[start : end + 1 if end >= 0 else len(index)]


# --- documents made for the tests -------------------------------------------------------


def make_pdf(path: Path, pages: list[str], *, user_password: str | None = None) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    if user_password:
        pdf.set_encryption(owner_password="owner", user_password=user_password)
    for text in pages:
        pdf.add_page()
        if text:
            pdf.multi_cell(0, 8, text)
    pdf.output(str(path))
    return path


def make_docx(path: Path) -> Path:
    from docx import Document

    doc = Document()
    doc.add_heading("Ferry strategy memo", 1)
    doc.add_paragraph("Commuters value the 07:10 sailing above every other departure.")
    doc.add_heading("Freight", 2)
    table = doc.add_table(rows=2, cols=2)
    for (row, col), text in {
        (0, 0): "Route",
        (0, 1): "Lane metres",
        (1, 0): "Holmsey",
        (1, 1): "18,400",
    }.items():
        table.cell(row, col).text = text
    doc.save(str(path))
    return path


def make_pptx(path: Path) -> Path:
    from pptx import Presentation

    deck = Presentation()
    slides = [
        ("Board update", "Revenue grew 12% on the Skerry route", "Mention the fare freeze"),
        ("Freight", "Hauliers want certainty of a slot on the first sailing", None),
        ("Next steps", "Test a block-booking offer with ten hauliers", None),
    ]
    for title, body, notes in slides:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
        if notes:
            slide.notes_slide.notes_text_frame.text = notes
    deck.save(str(path))
    return path


def make_xlsx(path: Path) -> Path:
    from openpyxl import Workbook

    book = Workbook()
    fares = book.active
    fares.title = "Fares"
    fares.append(["Ticket", "Price", "Share"])
    fares.append(["Adult single", 7.5, 0.42])
    fares.append(["Child single", None, 0.08])
    for row in (2, 3):
        fares.cell(row, 2).number_format = "0.00"
        fares.cell(row, 3).number_format = "0%"
    routes = book.create_sheet("Routes")
    routes.append(["Route", "Journeys"])
    routes.append(["Skerry", 412000])
    routes.cell(2, 2).number_format = "#,##0"
    book.save(str(path))
    return path


HTML = """<!doctype html>
<html><head><title>Visit the Holmsey islands</title>
<style>body { color: red } .tracking-style { display: none }</style>
<script>var trackingSecret = "do-not-import";</script></head>
<body><h1>Holmsey</h1><p>Day trippers come for the <b>beaches</b> and the seal colony.</p>
<script>document.write("injected by script")</script></body></html>
"""


# --- good input ---------------------------------------------------------------------------


def test_pdf_keeps_each_page_under_its_marker_and_is_listed_in_the_index(
    project: Project,
) -> None:
    make_pdf(
        project.inbox_dir / "Harbour Report 2025.pdf",
        [
            "Harbour dues rose by 3% in 2025.",
            "",
            "The council expects dues to rise again, by 6%, once the new pontoon opens.",
        ],
    )
    index_before = (project.resources_dir / "index.md").read_text("utf-8")

    [result] = import_files(project, [project.inbox_dir / "Harbour Report 2025.pdf"], today=TODAY)

    assert result.resource == project.resources_dir / "harbour-report-2025.md"
    assert (result.sections, result.section_label, result.created) == (3, "page", True)
    text = result.resource.read_text("utf-8")
    assert text.startswith("# Harbour Report 2025\n")
    assert "\nSource: inbox/Harbour Report 2025.pdf (imported 2026-11-23)\n" in text
    # Each page's text sits between its own marker and the next one.
    page1, page2, page3 = (text.index(f"\n## Page {n}\n") for n in (1, 2, 3))
    assert page1 < text.index("Harbour dues rose by 3% in 2025.") < page2 < page3
    assert "no text on this page" in text[page2:page3]
    assert page3 < text.index("once the new pontoon opens")
    # A quote copied from the PDF, across its line break, is found by the grounding check.
    quote = "expects dues to rise again, by 6%, once the new pontoon opens"
    assert isinstance(find_quote(quote, text), Match)

    index_after = (project.resources_dir / "index.md").read_text("utf-8")
    section = index_section(index_after, "harbour-report-2025.md")
    assert "a 3-page PDF" in section
    assert "- Source: inbox/Harbour Report 2025.pdf; imported 2026-11-23" in section
    # The new section joins the list of sub-reports, ahead of the notes that follow it, and
    # everything that was there is unchanged byte for byte.
    assert index_after.index(section) < index_after.index("## Known conflicts")
    assert index_after.replace(section, "", 1) == index_before
    assert result.index_entry == "added"


def test_word_document_keeps_its_headings_and_tables(project: Project) -> None:
    make_docx(project.inbox_dir / "memo.docx")

    [result] = import_files(project, [project.inbox_dir / "memo.docx"], today=TODAY)

    text = result.resource.read_text("utf-8")
    assert "Source: inbox/memo.docx (imported 2026-11-23)" in text
    # The document's headings sit below the sub-report's own title.
    assert "\n## Ferry strategy memo\n" in text
    assert "\n### Freight\n" in text
    assert text.count("\n# ") == 0 and text.startswith("# memo\n")
    assert "Commuters value the 07:10 sailing above every other departure." in text
    assert isinstance(find_quote("Holmsey 18,400", text), Match)
    index = (project.resources_dir / "index.md").read_text("utf-8")
    assert "headings: Ferry strategy memo, Freight" in index_section(index, "memo.md")


def test_a_word_document_saved_by_libreoffice_imports(project: Project) -> None:
    # Saved by LibreOffice Writer (fixtures/import/README.md says how), not by python-docx:
    # a second writer's XML, and the file that failed with markitdown under lxml 6.2.0.
    shutil.copy(data_dir("fixtures") / "import" / "harbour-survey.docx", project.inbox_dir)

    [result] = import_files(project, [project.inbox_dir / "harbour-survey.docx"], today=TODAY)

    text = result.resource.read_text("utf-8")
    assert "\n## Harbour users survey 2026\n" in text and "\n### Freight\n" in text
    assert isinstance(find_quote("We need a guaranteed slot on the first boat.", text), Match)
    assert isinstance(find_quote("Holmsey 18,400", text), Match)
    assert "headings: Harbour users survey 2026, Freight, Next steps" in index_section(
        (project.resources_dir / "index.md").read_text("utf-8"), "harbour-survey.md"
    )


def test_a_library_failure_on_a_sound_file_does_not_blame_the_file(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mammoth

    make_docx(project.inbox_dir / "memo.docx")
    before = snapshot(project.resources_dir, project.inbox_dir)

    def broken_release(*args: object, **kwargs: object) -> None:
        # What a broken converter release said about every Word file (issue: lxml 6.2.0).
        raise ValueError("Could not find the body element: are you sure this is a docx file?")

    monkeypatch.setattr(mammoth, "convert_to_html", broken_release)
    with pytest.raises(UserError) as refused:
        import_files(project, [project.inbox_dir / "memo.docx"], today=TODAY)

    message = str(refused.value)
    assert "memo.docx looks intact" in message and "not in your file" in message
    assert "save a fresh copy" not in message and "could not be read" not in message
    assert "\n" not in message
    assert snapshot(project.resources_dir, project.inbox_dir) == before


def test_slides_keep_their_numbers_titles_and_speaker_notes(project: Project) -> None:
    make_pptx(project.inbox_dir / "board-deck.pptx")

    [result] = import_files(project, [project.inbox_dir / "board-deck.pptx"], today=TODAY)

    assert (result.sections, result.section_label) == (3, "slide")
    text = result.resource.read_text("utf-8")
    assert "Source: inbox/board-deck.pptx (imported 2026-11-23)" in text
    s1, s2, s3 = (text.index(f"\n## Slide {n}\n") for n in (1, 2, 3))
    assert s1 < text.index("### Board update") < text.index("Revenue grew 12%") < s2
    assert text.index("Mention the fare freeze") < s2  # notes stay with their slide
    assert s2 < text.index("slot on the first sailing") < s3
    assert s3 < text.index("Test a block-booking offer")
    index = (project.resources_dir / "index.md").read_text("utf-8")
    section = index_section(index, "board-deck.md")
    assert "slide titles: Board update, Freight, Next steps" in section


def test_spreadsheet_sheets_are_tables_with_the_figures_as_shown(project: Project) -> None:
    make_xlsx(project.inbox_dir / "fares.xlsx")

    [result] = import_files(project, [project.inbox_dir / "fares.xlsx"], today=TODAY)

    assert (result.sections, result.section_label) == (2, "sheet")
    text = result.resource.read_text("utf-8")
    fares, routes = text.index("\n## Sheet: Fares\n"), text.index("\n## Sheet: Routes\n")
    assert fares < text.index("| Adult single | 7.50 | 42% |") < routes
    assert "| Child single |  | 8% |" in text  # an empty cell is empty, not NaN or None
    assert "nan" not in text.lower() and "None" not in text
    # The figure as the spreadsheet shows it (412,000) is what a quote will carry.
    assert isinstance(find_quote("Skerry 412,000", text[routes:]), Match)
    index = (project.resources_dir / "index.md").read_text("utf-8")
    assert "sheets: Fares, Routes" in index_section(index, "fares.md")


def test_web_page_drops_scripts_and_styles(project: Project) -> None:
    (project.inbox_dir / "holmsey.html").write_text(HTML, "utf-8")
    # A Latin-1 page, as older sites still serve, is decoded by its declared charset.
    (project.inbox_dir / "cafe.htm").write_bytes(
        b'<html><head><meta charset="iso-8859-1"></head><body><p>Caf\xe9 cr\xe8me</p></body></html>'
    )

    results = import_files(
        project, [project.inbox_dir / "holmsey.html", project.inbox_dir / "cafe.htm"], today=TODAY
    )

    text = results[0].resource.read_text("utf-8")
    assert text.startswith("# Visit the Holmsey islands\n")
    assert "Source: inbox/holmsey.html (imported 2026-11-23)" in text
    assert "Day trippers come for the **beaches** and the seal colony." in text
    for leaked in ("trackingSecret", "do-not-import", "injected by script", "color: red"):
        assert leaked not in text
    assert "Café crème" in results[1].resource.read_text("utf-8")


def test_a_web_page_with_no_declared_charset_keeps_its_pound_signs(project: Project) -> None:
    # Not UTF-8 and nothing declared: read as windows-1252, as a browser would, not guessed
    # (a guess read this page as windows-1250 and turned the fare into "Ł9.50").
    page = "<html><body><p>Off-peak: the peak fare is £9.50 – Café open.</p></body></html>"
    (project.inbox_dir / "fares.html").write_bytes(page.encode("cp1252"))

    [result] = import_files(project, [project.inbox_dir / "fares.html"], today=TODAY)

    assert "the peak fare is £9.50 – Café open." in result.resource.read_text("utf-8")


def test_a_file_outside_inbox_is_copied_there_and_cited_from_there(
    project: Project, tmp_path: Path
) -> None:
    elsewhere = make_pdf(tmp_path / "Downloads survey.pdf", ["Ninety per cent want Wi-Fi."])

    [result] = import_files(project, [elsewhere], today=TODAY)

    copy = project.inbox_dir / "Downloads survey.pdf"
    assert copy.read_bytes() == elsewhere.read_bytes()
    assert result.copied_to_inbox and result.source_ref == "inbox/Downloads survey.pdf"
    assert "Source: inbox/Downloads survey.pdf (imported" in result.resource.read_text("utf-8")


def test_names_relative_to_the_project_folder_find_the_inbox(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_pdf(project.inbox_dir / "survey.pdf", ["Ninety per cent want Wi-Fi."])
    # The consultant works inside the project folder, where `inbox/` is not a subfolder.
    monkeypatch.chdir(project.project_dir)

    results = import_files(project, [Path("inbox/survey.pdf"), Path("survey.pdf")], today=TODAY)

    assert [r.source_ref for r in results] == ["inbox/survey.pdf"]  # the same file, once
    assert not results[0].copied_to_inbox


def test_reimport_replaces_the_sub_report_and_keeps_a_section_someone_wrote(
    project: Project,
) -> None:
    pdf = project.inbox_dir / "survey.pdf"
    make_pdf(pdf, ["First draft figures."])
    import_files(project, [pdf], today=TODAY)
    index_path = project.resources_dir / "index.md"

    # A newer version of the same file: the sub-report and the untouched section follow it.
    make_pdf(pdf, ["Final figures.", "An appendix page."])
    [again] = import_files(project, [pdf], today=TODAY + dt.timedelta(days=1))

    text = again.resource.read_text("utf-8")
    assert not again.created and again.index_entry == "refreshed"
    assert "Final figures." in text and "First draft" not in text
    assert "(imported 2026-11-24)" in text
    index = index_path.read_text("utf-8")
    assert index.count("## survey.md\n") == 1
    assert "a 2-page PDF" in index_section(index, "survey.md")

    # Once someone says what it is for, a re-import leaves the whole index alone.
    written = index.replace(READ_IT_PLACEHOLDER, "the passengers' view of Wi-Fi.")
    index_path.write_text(written, "utf-8")
    [third] = import_files(project, [pdf], today=TODAY + dt.timedelta(days=2))
    assert third.index_entry == "kept"
    assert index_path.read_text("utf-8") == written


def test_a_new_organisation_gets_an_index(tmp_path: Path) -> None:
    project = init_project(tmp_path, "acme", "growth", "Acme Ltd")
    make_xlsx(project.inbox_dir / "fares.xlsx")

    import_files(project, [project.inbox_dir / "fares.xlsx"], today=TODAY)

    index = (project.resources_dir / "index.md").read_text("utf-8")
    assert index.startswith("# Research index — Acme Ltd\n")
    assert "\n\n## fares.md\n\n- Holds: " in index


# --- bad input: one sentence, nothing written ----------------------------------------------


def _bad_source(kind: str, inbox: Path) -> tuple[Path, str]:
    """Make a bad source of the given kind; return it and words the refusal must contain."""
    if kind == "missing":
        return inbox / "nowhere.pdf", "does not exist"
    if kind == "unknown extension":
        (inbox / "notes.odt").write_bytes(b"PK\x03\x04 odt")
        return inbox / "notes.odt", "reads .pdf, .docx, .pptx, .xlsx and .html"
    if kind == "old Word format":
        (inbox / "old.doc").write_bytes(b"\xd0\xcf\x11\xe0 legacy")
        return inbox / "old.doc", "save it as .docx"
    if kind == "encrypted PDF":
        return make_pdf(inbox / "locked.pdf", ["secret"], user_password="pw"), "password"
    if kind == "truncated PDF":
        whole = make_pdf(inbox / "cut.pdf", ["A page that will be cut off."]).read_bytes()
        (inbox / "cut.pdf").write_bytes(whole[: len(whole) // 2])
        return inbox / "cut.pdf", "could not be read as a PDF"
    if kind == "scanned PDF":
        return make_pdf(inbox / "scan.pdf", ["", ""]), "no text to import"
    if kind == "damaged DOCX":
        (inbox / "broken.docx").write_bytes(b"PK\x03\x04 this is not a real zip archive")
        return inbox / "broken.docx", "could not be read as a Word document"
    if kind == "DOCX without its document part":
        with zipfile.ZipFile(inbox / "hollow.docx", "w") as archive:
            archive.writestr("[Content_Types].xml", "<Types/>")
        return inbox / "hollow.docx", "could not be read as a Word document (no word/document.xml)"
    if kind == "damaged XLSX":
        (inbox / "broken.xlsx").write_bytes(b"not a workbook at all")
        return inbox / "broken.xlsx", "could not be read as an Excel workbook"
    if kind == "password-protected XLSX":
        # Excel saves a protected workbook as an encrypted OLE container; this is its header.
        (inbox / "locked.xlsx").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504))
        return inbox / "locked.xlsx", "password-protected"
    if kind == "empty file":
        (inbox / "blank.html").write_bytes(b"")
        return inbox / "blank.html", "is empty"
    if kind == "clash with a hand-written sub-report":
        return make_pdf(inbox / "Financials 2025.pdf", ["Other figures."]), "already exists"
    if kind == "would replace the index":
        return make_pdf(inbox / "index.pdf", ["An index."]), "would replace resources/index.md"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "missing",
        "unknown extension",
        "old Word format",
        "encrypted PDF",
        "truncated PDF",
        "scanned PDF",
        "damaged DOCX",
        "DOCX without its document part",
        "damaged XLSX",
        "password-protected XLSX",
        "empty file",
        "clash with a hand-written sub-report",
        "would replace the index",
    ],
)
def test_bad_input_is_refused_in_one_sentence_and_nothing_is_written(
    project: Project, kind: str
) -> None:
    good = make_pdf(project.inbox_dir / "good.pdf", ["A perfectly fine page."])
    bad, words = _bad_source(kind, project.inbox_dir)
    before = snapshot(project.resources_dir, project.inbox_dir)

    # The good file comes first: all or nothing means it is not imported either.
    with pytest.raises(UserError) as refused:
        import_files(project, [good, bad], today=TODAY)

    message = str(refused.value)
    assert bad.name in message and words in message
    assert message.endswith("nothing was imported.") and "\n" not in message
    assert snapshot(project.resources_dir, project.inbox_dir) == before


def test_two_sources_that_would_share_a_sub_report_are_refused(project: Project) -> None:
    make_pdf(project.inbox_dir / "survey.pdf", ["The PDF version."])
    make_docx(project.inbox_dir / "Survey.docx")
    before = snapshot(project.resources_dir)

    with pytest.raises(UserError, match=r"would both become resources/survey\.md"):
        import_files(project, [project.inbox_dir / "survey.pdf", project.inbox_dir / "Survey.docx"])
    assert snapshot(project.resources_dir) == before


def test_an_outside_file_whose_name_would_not_travel_is_refused(
    project: Project, tmp_path: Path
) -> None:
    outside = make_pdf(tmp_path / "Q3: board.pdf", ["Board figures."])
    before = snapshot(project.resources_dir, project.inbox_dir)
    with pytest.raises(UserError, match=r"Q3: board\.pdf.*rename the file"):
        import_files(project, [outside], today=TODAY)
    assert snapshot(project.resources_dir, project.inbox_dir) == before


def test_two_outside_files_of_the_same_name_are_refused(project: Project, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = make_pdf(tmp_path / "a" / "survey.pdf", ["The spring survey."])
    second = make_pdf(tmp_path / "b" / "survey.pdf", ["The autumn survey."])
    before = snapshot(project.resources_dir, project.inbox_dir)

    with pytest.raises(UserError) as refused:
        import_files(project, [first, second])
    assert str(first) in str(refused.value) and str(second) in str(refused.value)
    assert snapshot(project.resources_dir, project.inbox_dir) == before


def test_an_outside_file_whose_name_is_taken_in_inbox_is_refused(
    project: Project, tmp_path: Path
) -> None:
    make_pdf(project.inbox_dir / "survey.pdf", ["The one already in inbox."])
    other = make_pdf(tmp_path / "survey.pdf", ["A different survey."])
    before = snapshot(project.resources_dir, project.inbox_dir)

    with pytest.raises(UserError, match=r"inbox/survey\.pdf already exists and is a different"):
        import_files(project, [other])
    assert snapshot(project.resources_dir, project.inbox_dir) == before


def test_slugs() -> None:
    assert slugify("Q3 Board Deck (FINAL).pptx") == "q3-board-deck-final"
    assert slugify("Études_2026.pdf") == "etudes-2026"
    assert slugify("東京.pdf") == ""
