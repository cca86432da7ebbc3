"""`bmc import`: the client's documents turned into markdown sub-reports (SPEC sections 2, 8).

Each source (PDF, DOCX, PPTX, XLSX or HTML) becomes `resources/<slug>.md`: a title, a
`Source: inbox/<name> (imported <date>)` line, then the text with the original's page,
slide or sheet boundaries kept as headings (`## Page 3`, `## Slide 4`, `## Sheet: Fares`),
so a quote in a draft can say where in the original it came from. Each import adds a
`## <slug>.md` section to `resources/index.md`.

Conversion is left to libraries, each used where it is strongest:

- PPTX, HTML: markitdown's converters (python-pptx for slides, BeautifulSoup + markdownify
  for web pages). They are called directly by format rather than through
  `MarkItDown.convert`, whose content sniffing turns a damaged file into "plain text"
  garbage instead of failing.
- DOCX: mammoth to HTML, then markitdown's HTML converter. markitdown's own Word converter
  first rewrites `word/document.xml` for its maths support, and with lxml 6.2.0 that rewrite
  drops the `w:` prefixes, so every document came out as "Could not find the body element"
  (docs/import.md). mammoth reads the file as saved.
- PDF: pdfminer.six page by page. markitdown's own PDF converter joins all pages into one
  text, which would lose the page numbers evidence needs.
- XLSX: openpyxl sheet by sheet. markitdown goes through pandas, which shows empty cells as
  `NaN` and drops the cells' number formats (412,000 becomes 412000.0), so quotes copied
  from the spreadsheet would not be found.

All or nothing: every source is checked and converted in memory before anything is
written, so a bad file (missing, unknown type, damaged, encrypted, empty, name clash)
raises one `UserError` and leaves `inbox/` and `resources/` exactly as they were.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bmc.errors import UserError
from bmc.workspace.confine import portability_problem
from bmc.workspace.paths import Project, atomic_write
from bmc.workspace.paths import slugify as workspace_slug

INDEX = "index.md"

# Extension -> the name a consultant knows the format by.
FORMATS = {
    ".pdf": "PDF",
    ".docx": "Word document",
    ".pptx": "PowerPoint deck",
    ".xlsx": "Excel workbook",
    ".html": "web page",
    ".htm": "web page",
}
# Old binary Office formats: the converters read only the XML-based ones.
_LEGACY = {".doc": ".docx", ".ppt": ".pptx", ".xls": ".xlsx"}
_TEXT_ALREADY = {".md", ".markdown", ".txt"}
_OOXML = {".docx", ".pptx", ".xlsx"}
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"

# The index line an import writes for "when to read it"; while it is still this, the
# section is the import's own and a re-import may refresh it (see `_merge_index`).
READ_IT_PLACEHOLDER = "not described yet: read it, then say here which questions it answers."

_SOURCE_LINE = re.compile(r"^Source: (?P<ref>.+) \(imported \d{4}-\d{2}-\d{2}\)$", re.MULTILINE)
_SLIDE_MARKER = re.compile(r"^<!-- Slide number: (\d+) -->$")
_HEADING = re.compile(r"^(#{1,6})(?=\s|$)")
_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
# Latin ligatures that PDF text extraction leaves in words ("ﬁnance"); a quote typed or
# copied from a viewer spells them as letters. Only these: full NFKC would also turn "m²"
# into "m2" and change figures.
_LIGATURES = str.maketrans(
    {"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st", "ﬆ": "st"}
)
_LIST_LIMIT = 8


@dataclass(frozen=True)
class ImportResult:
    """What one source became."""

    source: Path  # the file read (resolved)
    source_ref: str  # how the sub-report names it, relative to the org folder: inbox/x.pdf
    resource: Path  # the sub-report written: resources/<slug>.md
    kind: str  # "PDF", "Word document", ...
    sections: int  # pages, slides or sheets (0 for Word and HTML, which have none)
    section_label: str  # "page", "slide", "sheet" or ""
    created: bool  # False when an earlier import of the same source was replaced
    copied_to_inbox: bool  # the source lay outside inbox/ and was copied there
    index_entry: str  # "added", "refreshed" or "kept" (a section someone has written)

    def summary(self) -> str:
        """One line for the terminal: `inbox/x.pdf -> resources/x.md (3 pages, new)`."""
        parts = []
        if self.section_label:
            plural = "" if self.sections == 1 else "s"
            parts.append(f"{self.sections} {self.section_label}{plural}")
        parts.append("new" if self.created else "replaced")
        if self.copied_to_inbox:
            parts.append("original copied to inbox/")
        return f"{self.source_ref} -> resources/{self.resource.name} ({', '.join(parts)})"


@dataclass
class _Converted:
    """A source converted in memory, before anything is written."""

    title: str
    intro: str  # one sentence on what the markers mean
    body: str  # markdown, page/slide/sheet headings included
    sections: int
    section_label: str
    contents: list[str]  # slide titles, sheet names or headings, for the index entry


@dataclass
class _Plan:
    source: Path
    source_ref: str
    data: bytes
    copy_to_inbox: Path | None
    resource: Path
    text: str
    created: bool
    holds: str
    converted: _Converted


def import_files(
    project: Project, sources: list[Path], *, today: dt.date | None = None
) -> list[ImportResult]:
    """Convert each source into `resources/<slug>.md` and list it in `resources/index.md`.

    A relative path that does not exist from the current folder is also looked for in the
    organisation's folder (`inbox/x.pdf`) and, as a bare name, in `inbox/`. A source outside
    `inbox/` is copied there first, so the sub-report's `Source:` line points at a file
    that travels with the workspace. Re-importing the same source replaces its sub-report;
    a different file whose name would give the same sub-report is refused.

    Raises `UserError` (nothing written) for any bad source; the message names the file.
    """
    if not sources:
        raise UserError("name at least one file to import, e.g. `bmc import inbox/report.pdf`.")
    day = (today or dt.date.today()).isoformat()
    index_path = project.resources_dir / INDEX
    _read_index(index_path)  # refuse an unreadable index before converting anything

    plans: dict[Path, _Plan] = {}  # by sub-report, to catch two sources with one name
    for given in sources:
        plan = _plan(project, _find(project, Path(given)), day)
        earlier = plans.get(plan.resource)
        if earlier is None:
            plans[plan.resource] = plan
            continue
        if earlier.source_ref == plan.source_ref and earlier.data == plan.data:
            continue  # the same file named twice (or an identical copy of it): import it once
        first, second = earlier.source_ref, plan.source_ref
        if first == second:  # two different files of the same name outside inbox/
            first, second = str(earlier.source), str(plan.source)
        raise _refusal(
            f"{first} and {second} would both become resources/{plan.resource.name}: "
            "rename one of them"
        )

    # Everything checked and converted: now write. Sub-reports before the index, so a crash
    # in between leaves sub-reports that a re-run (same source, so replaced) lists again.
    for plan in plans.values():
        if plan.copy_to_inbox is not None:
            atomic_write(plan.copy_to_inbox, plan.data)
        atomic_write(plan.resource, plan.text)
    # Re-read the index just before replacing it, so an edit made while the documents were
    # converting (a consultant, or a running session's model) is kept.
    index_text = _read_index(index_path)
    new_index, entries = _merge_index(index_text, project, list(plans.values()), day)
    if new_index != index_text:
        atomic_write(index_path, new_index)

    return [
        ImportResult(
            source=plan.source,
            source_ref=plan.source_ref,
            resource=plan.resource,
            kind=FORMATS[plan.source.suffix.lower()],
            sections=plan.converted.sections,
            section_label=plan.converted.section_label,
            created=plan.created,
            copied_to_inbox=plan.copy_to_inbox is not None,
            index_entry=entry,
        )
        for plan, entry in zip(plans.values(), entries, strict=True)
    ]


def slugify(name: str) -> str:
    """The sub-report name for a source file name, without `.md`: `Q3 Board Deck.pptx` ->
    `q3-board-deck`. Empty when the name has no latin letter or digit."""
    return workspace_slug(Path(name).stem)[:63].rstrip("-")


# --- checking and converting one source -----------------------------------------------


def _html_charset(data: bytes) -> str:
    """The page's encoding as a browser would take it: a byte order mark, else the declared
    charset, else UTF-8 if the bytes are UTF-8, else windows-1252. A statistical guess can
    turn "£9.50" into "Ł9.50", and a quote copied from the page would then not be found."""
    from bs4.dammit import EncodingDetector

    _, bom = EncodingDetector.strip_byte_order_mark(data)
    declared = bom or EncodingDetector.find_declared_encoding(data, is_html=True)
    if declared:
        return declared
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "windows-1252"
    return "utf-8"


def _refusal(sentence: str) -> UserError:
    # Every refusal says that the call imported nothing, since one bad file stops them all.
    return UserError(f"{sentence}; nothing was imported.")


def _find(project: Project, given: Path) -> Path:
    given = given.expanduser()
    candidates = [given]
    if not given.is_absolute():
        candidates.append(project.org_dir / given)
        if len(given.parts) == 1:
            candidates.append(project.inbox_dir / given)
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    if given.is_dir():
        raise _refusal(f"{given} is a folder: name the files in it to import")
    where = "" if given.is_absolute() else " (looked in the current folder and in inbox/)"
    raise _refusal(f"{given} does not exist{where}")


def _plan(project: Project, source: Path, day: str) -> _Plan:
    suffix = source.suffix.lower()
    name = source.name
    if suffix not in FORMATS:
        if suffix in _LEGACY:
            raise _refusal(
                f"{name} is an old-style {suffix} file: save it as {_LEGACY[suffix]} and "
                "import that"
            )
        if suffix in _TEXT_ALREADY:
            raise _refusal(
                f"{name} is text already: put it in resources/ (or leave it in inbox/) "
                "instead of importing it"
            )
        kind = f"a {suffix} file" if suffix else "a file with no extension"
        raise _refusal(
            f"{name} is {kind}: bmc import reads .pdf, .docx, .pptx, .xlsx and .html files"
        )
    slug = slugify(name)
    if not slug:
        raise _refusal(f"{name} gives no usable file name: rename it with latin letters or digits")
    if slug == Path(INDEX).stem:
        raise _refusal(f"{name} would replace resources/{INDEX}: rename it")

    try:
        data = source.read_bytes()
    except OSError as err:
        raise _refusal(f"{name} cannot be read ({err.strerror or err})") from None
    if not data.strip():
        raise _refusal(f"{name} is empty")

    if suffix in _OOXML and data.startswith(_OLE_MAGIC):
        # An Office file saved with a password is an encrypted OLE container, not the zip
        # of XML parts its extension promises (and so is an old .doc renamed .docx).
        raise _refusal(
            f"{name} is password-protected or saved in an old format: save an unprotected "
            f"{suffix} copy and import that"
        )
    source_ref, copy_to = _source_ref(project, source, data)
    converted = _convert(name, suffix, data)

    resource = project.resources_dir / f"{slug}.md"
    created = True
    if resource.exists():
        earlier = _earlier_source(resource)
        if earlier != source_ref:
            made_from = f"was made from {earlier}" if earlier else "was not made by bmc import"
            raise _refusal(
                f"resources/{resource.name} already exists and {made_from}, so importing "
                f"{source_ref} would overwrite it: rename {name} and import again"
            )
        created = False

    text = (
        f"# {converted.title}\n\n"
        f"Source: {source_ref} (imported {day})\n\n"
        f"{converted.intro}\n\n"
        f"{converted.body.strip()}\n"
    )
    holds = _holds(name, FORMATS[suffix], converted)
    return _Plan(source, source_ref, data, copy_to, resource, text, created, holds, converted)


def _source_ref(project: Project, source: Path, data: bytes) -> tuple[str, Path | None]:
    """How the sub-report names its source, and where to copy the source if it must be."""
    inbox = project.inbox_dir.resolve()
    if source.is_relative_to(inbox):
        return "inbox/" + source.relative_to(inbox).as_posix(), None
    # Threat: a file name Windows or a git checkout of the engagement cannot hold (`Q3: board.pdf`,
    # `nul.pdf`) copied into inbox/, where the consultant's colleagues would trip over it.
    problem = portability_problem(source.name)
    if problem is not None:
        raise _refusal(f"the name {source.name!r} {problem}: rename the file and import it again")
    target = inbox / source.name
    if target.exists():
        try:
            same = target.read_bytes() == data
        except OSError:
            same = False
        if not same:
            raise _refusal(
                f"inbox/{source.name} already exists and is a different file from {source}: "
                "rename one of them"
            )
        return f"inbox/{source.name}", None
    return f"inbox/{source.name}", target


def _earlier_source(resource: Path) -> str | None:
    """The `Source:` of an existing sub-report, when an import wrote it."""
    try:
        head = resource.read_bytes()[:4096].decode("utf-8", errors="replace")
    except OSError:
        return None
    match = _SOURCE_LINE.search(head)
    return match.group("ref") if match else None


def _convert(name: str, suffix: str, data: bytes) -> _Converted:
    try:
        with _quiet_libraries():
            if suffix == ".pdf":
                converted = _pdf(name, data)
            elif suffix == ".xlsx":
                converted = _xlsx(name, data)
            else:
                converted = _markitdown(name, suffix, data)
    except UserError:
        raise
    except Exception as err:
        raise _conversion_failed(name, suffix, data, err) from None
    if not _has_text(converted):
        hint = " (a scanned PDF needs OCR first)" if suffix == ".pdf" else ""
        raise _refusal(f"{name} has no text to import{hint}")
    return converted


def _conversion_failed(name: str, suffix: str, data: bytes, err: Exception) -> UserError:
    """The refusal for a converter that raised: the file's fault, or a library's.

    Converters fail on damaged input in library-specific ways (BadZipFile, PSEOF, KeyError
    from a broken XML part...), and they also fail on sound files when a library release
    breaks them. Telling a consultant to re-save a file that is fine sends them round in
    circles, so the file is checked on its own first: only a file that fails that check is
    called damaged. The library's own words come along in brackets for whoever digs further.
    """
    detail = str(err).strip().splitlines()[0][:120] if str(err).strip() else ""
    cause = f"{type(err).__name__}: {detail}" if detail else type(err).__name__
    damage = _damage(suffix, data, err)
    if damage is not None:
        return _refusal(
            f"{name} could not be read as {_a(FORMATS[suffix])} ({damage or cause}): check "
            "that it opens, then save a fresh copy and import that"
        )
    return _refusal(
        f"{name} looks intact, but bmc's converter failed on it ({cause}): this is a fault "
        "in bmc or one of its libraries, not in your file; please report it with the output "
        "of `pip list`"
    )


# Where each Office format keeps its main part: a file without it (or with one that is not
# XML) is damaged, whatever a converter then says about it.
_MAIN_PART = {
    ".docx": "word/document.xml",
    ".pptx": "ppt/presentation.xml",
    ".xlsx": "xl/workbook.xml",
}


def _damage(suffix: str, data: bytes, err: Exception) -> str | None:
    """What is wrong with the file itself, or None when it looks sound and the converter
    is to blame."""
    if suffix == ".pdf":
        from pdfminer.pdfparser import PDFSyntaxError
        from pdfminer.psparser import PSException

        # pdfminer's own parse errors are about the file; anything else is a bug.
        return "" if isinstance(err, (PDFSyntaxError, PSException)) else None
    if suffix not in _MAIN_PART:
        return None  # HTML: any bytes are a page a browser would show
    import zipfile
    from xml.etree import ElementTree

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if archive.testzip() is not None:
                return "one of its parts is damaged"
            ElementTree.fromstring(archive.read(_MAIN_PART[suffix]))
    except zipfile.BadZipFile:
        return "not a zip archive"
    except KeyError:
        return f"no {_MAIN_PART[suffix]}"
    except ElementTree.ParseError:
        return f"{_MAIN_PART[suffix]} is not XML"
    return None


def _a(kind: str) -> str:
    return ("an " if kind[0].lower() in "aeiou" else "a ") + kind


@contextmanager
def _quiet_libraries() -> Iterator[None]:
    # pdfminer logs warnings about harmless quirks of real-world PDFs; with no logging set
    # up, Python would print them at the consultant. The outcome is reported by us instead.
    logger = logging.getLogger("pdfminer")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _has_text(converted: _Converted) -> bool:
    marker = re.compile(
        r"^## (Page|Slide) \d+$|^## Sheet: .*$|^_\((no text on this page|empty sheet)\)_$"
    )
    return any(line.strip() and not marker.match(line) for line in converted.body.splitlines())


def _pdf(name: str, data: bytes) -> _Converted:
    from pdfminer.high_level import extract_pages
    from pdfminer.layout import LTTextContainer
    from pdfminer.pdfdocument import PDFEncryptionError, PDFPasswordIncorrect

    parts = []
    try:
        # One page's layout at a time: a long PDF's layouts together would fill memory.
        for number, layout in enumerate(extract_pages(io.BytesIO(data)), start=1):
            text = "".join(el.get_text() for el in layout if isinstance(el, LTTextContainer))
            text = _escape_headings(text.translate(_LIGATURES)).strip()
            parts.append(f"## Page {number}\n\n{text or '_(no text on this page)_'}")
    except (PDFPasswordIncorrect, PDFEncryptionError):
        raise _refusal(
            f"{name} is password-protected: save a copy without the password and import that"
        ) from None
    pages = len(parts)
    return _Converted(
        title=Path(name).stem,
        intro=(
            f"Converted by `bmc import` from a {pages}-page PDF: each `## Page N` heading marks "
            "where page N of the original starts."
        ),
        body="\n\n".join(parts),
        sections=pages,
        section_label="page",
        contents=[],
    )


def _escape_headings(text: str) -> str:
    # A PDF line that starts with "#" would read as a markdown heading, and could pass for
    # one of the page markers; a backslash keeps it text (quote matching ignores it).
    return re.sub(r"(?m)^(\s{0,3})#", r"\1\\#", text)


def _markitdown(name: str, suffix: str, data: bytes) -> _Converted:
    from markitdown import StreamInfo
    from markitdown.converters import HtmlConverter, PptxConverter

    if suffix == ".pptx":
        result = PptxConverter().convert(io.BytesIO(data), StreamInfo(extension=suffix))
        body, slides, titles = _slides(result.markdown)
        return _Converted(
            title=Path(name).stem,
            intro=(
                f"Converted by `bmc import` from a {slides}-slide PowerPoint deck: each "
                "`## Slide N` heading marks where slide N starts, speaker notes included."
            ),
            body=body,
            sections=slides,
            section_label="slide",
            contents=titles,
        )
    if suffix == ".docx":
        result = HtmlConverter().convert_string(_docx_html(data))
        title = Path(name).stem
        intro = (
            "Converted by `bmc import` from a Word document, which has no fixed pages: its "
            "own headings are kept to point back into it."
        )
    else:
        charset = _html_charset(data)
        result = HtmlConverter().convert(
            io.BytesIO(data), StreamInfo(extension=suffix, charset=charset)
        )
        title = (result.title or "").strip() or Path(name).stem
        intro = (
            "Converted by `bmc import` from a web page (scripts and styles dropped), which "
            "has no pages: its own headings are kept to point back into it."
        )
    body = _shift_headings(result.markdown, top=2)
    return _Converted(
        title=" ".join(title.split()),
        intro=intro,
        body=body,
        sections=0,
        section_label="",
        # The document's top two heading levels outline it for the index.
        contents=_headings(body, level=2, deepest=3),
    )


def _docx_html(data: bytes) -> str:
    """A Word document as HTML, headings and tables kept (mammoth's default style map, plus
    the document's own and underlines, as markitdown sets them)."""
    import mammoth

    embedded = mammoth.read_embedded_style_map(io.BytesIO(data))
    style_map = "\n".join(part for part in (embedded, "u => u") if part)
    result = mammoth.convert_to_html(
        io.BytesIO(data), style_map=style_map, include_embedded_style_map=False
    )
    return str(result.value)


def _slides(markdown: str) -> tuple[str, int, list[str]]:
    """markitdown's `<!-- Slide number: N -->` comments become `## Slide N` headings, with
    each slide's own headings moved below them; returns (body, slide count, slide titles)."""
    out: list[str] = []
    chunk: list[str] = []
    titles: list[str] = []
    slides = 0

    def flush() -> None:
        # markitdown writes a slide's title as `#` and its notes as `###`: two levels down
        # puts both under the `## Slide N` heading, the title at level 3.
        text = _shift_headings("\n".join(chunk), by=2).strip()
        if slides:
            out.append(text)
            found = _headings(text, level=3)
            if found:
                titles.append(found[0])
        chunk.clear()

    for line in markdown.splitlines():
        match = _SLIDE_MARKER.match(line.strip())
        if match:
            flush()
            slides += 1
            out.append(f"## Slide {match.group(1)}")
        else:
            chunk.append(line)
    flush()
    if not slides and markdown.strip():
        # markitdown changed how it marks slides: fail loudly rather than lose them.
        raise RuntimeError("markitdown's slide markers were not found in its PPTX output")
    return "\n\n".join(part for part in out if part), slides, titles


def _shift_headings(markdown: str, top: int = 1, by: int | None = None) -> str:
    """Move headings down `by` levels, or so that the highest becomes level `top`; fenced
    code is left alone, and no heading goes below level 6."""
    lines = markdown.splitlines()
    levels = [len(m.group(1)) for m in (_HEADING.match(x) for x in _outside_fences(lines)) if m]
    shift = by if by is not None else top - min(levels, default=top)
    if shift <= 0:
        return markdown
    out = []
    fenced = False
    for line in lines:
        if _FENCE.match(line):
            fenced = not fenced
        match = None if fenced else _HEADING.match(line)
        if match:
            level = min(6, len(match.group(1)) + shift)
            line = "#" * level + line[match.end() :]
        out.append(line)
    return "\n".join(out)


def _outside_fences(lines: list[str]) -> Iterator[str]:
    fenced = False
    for line in lines:
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            yield line


def _headings(markdown: str, level: int, deepest: int | None = None) -> list[str]:
    """The text of the headings from `level` down to `deepest` (default: `level` only)."""
    found = []
    for line in _outside_fences(markdown.splitlines()):
        match = _HEADING.match(line)
        if match and level <= len(match.group(1)) <= (deepest or level):
            text = line[match.end() :].strip().strip("*_ ")
            if text:
                found.append(text)
    return found


def _xlsx(name: str, data: bytes) -> _Converted:
    from openpyxl import load_workbook

    # data_only: a formula cell shows the value Excel last computed, as the reader saw it.
    workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    try:
        parts = []
        names = []
        for sheet in workbook.worksheets:
            names.append(sheet.title)
            rows = [[_cell(c) for c in row] for row in sheet.iter_rows()]
            table = _table(rows)
            parts.append(f"## Sheet: {sheet.title}\n\n{table or '_(empty sheet)_'}")
    finally:
        workbook.close()
    return _Converted(
        title=Path(name).stem,
        intro=(
            f"Converted by `bmc import` from an Excel workbook with {len(names)} "
            f"sheet{'s' if len(names) != 1 else ''}: each `## Sheet: <name>` heading starts "
            "one sheet, shown as a table with cell values as last calculated."
        ),
        body="\n\n".join(parts),
        sections=len(names),
        section_label="sheet",
        contents=names,
    )


def _cell(cell: Any) -> str:
    value = getattr(cell, "value", None)
    if value is None:
        return ""
    if isinstance(value, bool):
        text = "TRUE" if value else "FALSE"
    elif isinstance(value, int | float):
        text = _number(value, getattr(cell, "number_format", "General") or "General")
    elif isinstance(value, dt.datetime):
        text = value.date().isoformat() if value.time() == dt.time() else value.isoformat(" ")
    elif isinstance(value, dt.date | dt.time):
        text = value.isoformat()
    else:
        text = str(value)
    # One table row per sheet row: line breaks in a cell become spaces, pipes are escaped.
    return " ".join(text.split()).replace("|", "\\|")


def _number(value: float, number_format: str) -> str:
    """A number as the spreadsheet shows it, for the common formats: thousands separators,
    fixed decimals and percentages (`#,##0`, `0.0`, `0%`). Anything else: plain."""
    fmt = number_format.split(";")[0]
    fmt = re.sub(r'"[^"]*"|\[[^\]]*\]|\\.', "", fmt)  # quoted text, [colours], escapes
    if fmt in ("", "General", "@") or not re.search(r"[0#]", fmt):
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)
    percent = "%" in fmt
    if percent:
        value *= 100
    decimals_match = re.search(r"\.([0#]+)", fmt)
    decimals = len(decimals_match.group(1)) if decimals_match else 0
    grouping = "," if re.search(r"[0#],[0#]", fmt) else ""
    text = f"{value:{grouping}.{decimals}f}"
    return text + "%" if percent else text


def _table(rows: list[list[str]]) -> str:
    rows = [row for row in rows if any(row)]
    if not rows:
        return ""
    width = max(max((i + 1 for i, v in enumerate(row) if v), default=0) for row in rows)
    rows = [(row + [""] * width)[:width] for row in rows]
    # Markdown tables need a header row; the sheet's first row is the usual one.
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + " --- |" * width]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


# --- the research index ------------------------------------------------------------------


def _holds(name: str, kind: str, converted: _Converted) -> str:
    what = {
        "page": f"a {converted.sections}-page PDF, one `## Page N` section per page",
        "slide": f"a {converted.sections}-slide deck, one `## Slide N` section per slide",
        "sheet": f"a workbook of {converted.sections} sheet"
        + ("s" if converted.sections != 1 else ""),
        "": f"a {kind}",
    }[converted.section_label]
    label = {"slide": "slide titles", "sheet": "sheets", "page": "", "": "headings"}[
        converted.section_label
    ]
    listed = converted.contents[:_LIST_LIMIT]
    if label and listed:
        more = len(converted.contents) - len(listed)
        tail = f" and {more} more" if more else ""
        what += f"; {label}: " + ", ".join(listed) + tail
    return f"the text of {name}, {what}."


def _read_index(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return ""
    except UnicodeDecodeError:
        raise _refusal(f"resources/{INDEX} is not UTF-8 text: save it as UTF-8 first") from None
    except OSError as err:
        raise _refusal(f"resources/{INDEX} cannot be read ({err.strerror or err})") from None


def _entry(plan: _Plan, day: str) -> str:
    return (
        f"## {plan.resource.name}\n\n"
        f"- Holds: {plan.holds}\n"
        f"- Source: {plan.source_ref}; imported {day} with `bmc import`.\n"
        f"- Read it for: {READ_IT_PLACEHOLDER}\n"
    )


def _sections(text: str) -> list[tuple[str, int, int]]:
    """(heading text, start, end) of each `## ` section; a section runs to the next `#` or
    `##` heading. Offsets are into `text`, so untouched sections stay byte-identical."""
    found: list[tuple[str, int]] = []
    ends: list[int] = []
    offset = 0
    for line in text.splitlines(keepends=True):
        if line.startswith("## "):
            if len(ends) < len(found):
                ends.append(offset)
            found.append((line[3:].strip(), offset))
        elif line.startswith("# ") and len(ends) < len(found):
            ends.append(offset)
        offset += len(line)
    if len(ends) < len(found):
        ends.append(len(text))
    return [(title, start, end) for (title, start), end in zip(found, ends, strict=True)]


def _merge_index(
    text: str, project: Project, plans: list[_Plan], day: str
) -> tuple[str, list[str]]:
    """The index with a section for each plan, and what happened to each ("added",
    "refreshed", "kept").

    Only the sections of this import change: a section an earlier import wrote, still
    carrying the placeholder "Read it for" line, is replaced with the fresh one; a section
    that someone has written is kept as it is. New sections go after the last sub-report
    section (before notes such as "Known conflicts" that follow the list), else at the end.
    """
    if not text.strip():
        text = (
            f"# Research index — {project.org_name()}\n\n"
            "Sub-reports of the client's research, one section each: what it holds, where it "
            "came from, and when to read it.\n"
        )
    outcomes = []
    for plan in plans:
        entry = _entry(plan, day)
        sections = _sections(text)
        mine = [s for s in sections if s[0] == plan.resource.name]
        if mine:
            _, start, end = mine[0]
            current = text[start:end]
            if f"- Read it for: {READ_IT_PLACEHOLDER}" in current:
                # Keep the blank line(s) that separated it from what follows.
                trailing = current[len(current.rstrip("\n")) :]
                text = text[:start] + entry.rstrip("\n") + (trailing or "\n") + text[end:]
                outcomes.append("refreshed")
            else:
                outcomes.append("kept")
            continue
        reports = [s for s in sections if s[0].endswith(".md")]
        if reports and reports[-1][2] < len(text):
            at = reports[-1][2]
            text = text[:at] + entry + "\n" + text[at:]
            # The section before must end in a blank line for the new heading to stand apart.
            if not text[:at].endswith("\n\n"):
                text = text[:at] + "\n" + text[at:]
        else:
            if not text.endswith("\n"):
                text += "\n"
            if not text.endswith("\n\n"):
                text += "\n"
            text += entry
        outcomes.append("added")
    return text, outcomes
