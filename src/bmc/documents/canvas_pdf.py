"""`bmc export pdf`: the canvas as one A3 landscape page, printed by the consultant's own
Chromium or Chrome from the page `bmc render` writes.

The sheet is already fitted to an A3 page (`render.fit_sheet`), but that fit is an estimate
and a row grows rather than clip its notes; so the printed PDF is counted, and a canvas that
spilled onto a second page is printed again a little smaller until it fits one. The PDF is
written whole or not at all: printed into a temporary folder, then moved into place.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path, PurePosixPath

from bmc.documents import render
from bmc.errors import UserError
from bmc.workspace import chromium
from bmc.workspace.paths import Project, atomic_write

CANVAS_PDF = PurePosixPath(render.CANVAS_HTML).with_suffix(".pdf").as_posix()
# Shrink steps for a canvas too full for its page; below the last, text is too small to read.
ZOOMS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)
_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")


def page_count(pdf: bytes) -> int:
    """The pages of a PDF as Chromium writes it (page objects are never compressed there)."""
    return len(_PAGE.findall(pdf))


def export_pdf(project: Project, out: Path | None = None) -> tuple[Path, render.Status]:
    """Write the one-page canvas PDF to `out` (default `canvas/canvas.pdf`); return where,
    and whether it shows the agreed canvas or the draft."""
    source = render.load_canvas(project)
    target = out if out is not None else project.project_dir / CANVAS_PDF
    check_target(target)
    binary = chromium.find_chromium()
    with tempfile.TemporaryDirectory(prefix="bmc-pdf-") as folder:
        page, pdf = Path(folder) / "canvas.html", Path(folder) / "canvas.pdf"
        for zoom in ZOOMS:
            html = render.canvas_page(
                source.canvas,
                status=source.status,
                styles=source.styles,
                drafts=source.drafts,
                one_page=True,
                zoom=zoom,
            )
            page.write_text(html, "utf-8")
            pdf.unlink(missing_ok=True)
            chromium.print_to_pdf(page, pdf, binary)
            data = pdf.read_bytes()
            if page_count(data) <= 1:
                break
        else:
            raise UserError(
                "the canvas is too full to print on one A3 page even at half size: shorten "
                "its notes, or print canvas/canvas.html over several pages instead."
            )
    atomic_write(target, data)
    return target, source.status


def check_target(target: Path) -> None:
    """Refuse an output path that is a folder, before any work is done."""
    if target.is_dir():
        raise UserError(f"{target} is a folder: give --out a file name inside it.")
