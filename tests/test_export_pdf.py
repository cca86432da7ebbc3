"""`bmc export pdf`, and the credit on every rendered page (issue 13).

The PDF is printed by a real headless Chromium (Debian's), found the way the product finds
one on a consultant's machine; it must be one A3 landscape page carrying the credit, even
for a canvas too full for its sheet. Where no browser can be found the command says in one
sentence how to get one and writes nothing. The pages `bmc render` writes carry the credit
too, and show each Value Proposition Canvas as a table, never Strategyzer's drawing.

Runtime: about 10 s, nearly all of it Chromium (skipped, with the reason, where absent).
"""

from __future__ import annotations

import io
import re
import stat
from pathlib import Path

import pytest
from pdfminer.high_level import extract_text

from bmc.documents import render
from bmc.documents.canvas_pdf import page_count
from bmc.documents.credits import BMC_CREDIT, VPC_CREDIT
from bmc.workspace import chromium
from bmc.workspace.paths import Project
from browser import find_chromium
from clihelp import run_bmc
from projects import segments_ready
from test_export_pptx import tidewater

needs_chromium = pytest.mark.skipif(
    find_chromium() is None,
    reason="no Chromium or Chrome found (install it with `apt-get install -y chromium`, or set "
    "BMC_CHROMIUM): the printed PDF cannot be checked",
)
FIVE = ["North", "South", "East", "West", "Centre"]


def export(project: Project, *args: str) -> Path:
    result = run_bmc(["export", "pdf", *args], cwd=project.project_dir)
    assert result.exit_code == 0, result.output
    return project.project_dir / "canvas" / "canvas.pdf"


def words(text: str) -> str:
    return " ".join(text.split())


def a3_landscape(pdf: bytes) -> bool:
    boxes = re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf)
    return bool(boxes) and all(
        (round(float(w) / 72 * 25.4), round(float(h) / 72 * 25.4)) == (420, 297) for w, h in boxes
    )


@needs_chromium
def test_the_canvas_on_one_a3_page_with_the_credit(tmp_path: Path) -> None:
    project = tidewater(tmp_path)
    pdf = export(project).read_bytes()
    assert pdf.startswith(b"%PDF") and pdf.rstrip().endswith(b"%%EOF")
    assert page_count(pdf) == 1
    assert a3_landscape(pdf)
    text = words(extract_text(io.BytesIO(pdf)))
    assert "Tidewater Ferries Ltd" in text and "Draft" in text
    for block in ("Key Partners", "Value Propositions", "Revenue Streams"):
        assert block in text
    # The credit line, whole: the canvas's licence, and the Value Proposition Canvas by
    # name (the canvas page shows the segments' tables).
    assert BMC_CREDIT in text
    assert VPC_CREDIT in text
    # The PDF is the sheet alone: the evidence list and the tables stay on the web page.
    assert "What the segment needs" not in text


@needs_chromium
def test_a_canvas_too_full_for_its_sheet_is_shrunk_onto_one_page(tmp_path: Path) -> None:
    from test_render import bare_project, generated_canvas, write_canvas

    project = bare_project(tmp_path)
    write_canvas(project, generated_canvas(FIVE, items=120))
    target = tmp_path / "out" / "crowded.pdf"
    result = run_bmc(["export", "pdf", "--out", str(target)], cwd=project.project_dir)
    assert result.exit_code == 0, result.output
    pdf = target.read_bytes()
    assert page_count(pdf) == 1 and a3_landscape(pdf)
    assert BMC_CREDIT in words(extract_text(io.BytesIO(pdf)))


def test_no_browser_anywhere_says_how_to_get_one(tmp_path: Path) -> None:
    project = tidewater(tmp_path)
    empty = tmp_path / "bin"
    empty.mkdir()
    result = run_bmc(
        ["export", "pdf"], cwd=project.project_dir, env={"BMC_CHROMIUM": None, "PATH": str(empty)}
    )
    assert result.exit_code == 1 and result.exception is None, result.output
    assert result.stderr.strip() == f"bmc: {chromium.HOW_TO_GET_ONE}"
    assert not (project.project_dir / "canvas" / "canvas.pdf").exists()


def test_the_override_pointing_nowhere_is_named(tmp_path: Path) -> None:
    project = tidewater(tmp_path)
    nowhere = tmp_path / "no" / "chromium"
    result = run_bmc(
        ["export", "pdf"],
        cwd=project.project_dir,
        env={"BMC_CHROMIUM": str(nowhere), "PATH": str(tmp_path)},
    )
    assert result.exit_code == 1 and result.exception is None, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert f"BMC_CHROMIUM is set to {nowhere}" in result.stderr
    assert not (project.project_dir / "canvas" / "canvas.pdf").exists()


def test_a_browser_that_fails_half_way_leaves_the_old_pdf(tmp_path: Path) -> None:
    """A browser that dies after writing half a PDF: the half is never the client's file."""
    project = tidewater(tmp_path)
    old = project.project_dir / "canvas" / "canvas.pdf"
    old.write_bytes(b"%PDF-1.4 the PDF sent to the client last week\n%%EOF\n")
    broken = tmp_path / "broken-chrome"
    broken.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do case "$a" in --print-to-pdf=*) printf "%%PDF-1.4 half" > "${a#*=}";; '
        "esac; done\necho 'crashed while printing' >&2\nexit 3\n",
        "utf-8",
    )
    broken.chmod(broken.stat().st_mode | stat.S_IXUSR)
    result = run_bmc(["export", "pdf"], cwd=project.project_dir, env={"BMC_CHROMIUM": str(broken)})
    assert result.exit_code == 1 and result.exception is None, result.output
    assert "could not print the canvas to PDF (it said: crashed while printing)" in result.stderr
    assert old.read_bytes() == b"%PDF-1.4 the PDF sent to the client last week\n%%EOF\n"
    assert sorted(p.name for p in old.parent.iterdir()) == ["canvas.md", "canvas.pdf"]


def test_no_canvas_yet_is_a_missing_prerequisite(tmp_path: Path) -> None:
    project = segments_ready(tmp_path)
    result = run_bmc(["export", "pdf"], cwd=project.project_dir)
    assert result.exit_code == 2, result.output
    assert "run `bmc run bmc-canvas` first" in result.stderr
    assert not (project.project_dir / "canvas").exists()


@pytest.mark.parametrize(
    ("platform", "environ", "where"),
    [
        ("win32", {"PROGRAMFILES": "{tmp}"}, "{tmp}/Google/Chrome/Application/chrome.exe"),
        ("win32", {"LOCALAPPDATA": "{tmp}"}, "{tmp}/Microsoft/Edge/Application/msedge.exe"),
        ("darwin", {"HOME": "{tmp}"}, "{tmp}/Applications/Chromium.app/Contents/MacOS/Chromium"),
    ],
)
def test_the_usual_install_places_are_looked_in(
    tmp_path: Path, platform: str, environ: dict[str, str], where: str
) -> None:
    browser = Path(where.format(tmp=tmp_path))
    browser.parent.mkdir(parents=True)
    browser.write_text("", "utf-8")
    given = {k: v.format(tmp=tmp_path) for k, v in environ.items()} | {"PATH": str(tmp_path)}
    assert chromium.find_chromium(given, platform) == str(browser)
    browser.unlink()
    with pytest.raises(chromium.UserError) as refused:
        chromium.find_chromium(given, platform)
    assert str(refused.value) == chromium.HOW_TO_GET_ONE


# --- the credit and the Value Proposition Canvas on the rendered pages ------------------------


def test_every_rendered_page_carries_the_credit(tmp_path: Path) -> None:
    project = tidewater(tmp_path)
    for path in render.render_project(project):
        page = words(path.read_text("utf-8"))
        assert BMC_CREDIT in page, path.name
        # Both pages show the segments' Value Proposition Canvases, and name it.
        assert VPC_CREDIT.replace('"', "&#34;") in page, path.name


def test_the_value_proposition_canvas_is_a_table_not_the_drawing(tmp_path: Path) -> None:
    project = tidewater(tmp_path)
    page = render.render_project(project)[0].read_text("utf-8")
    articles = re.findall(r'<article class="vpc .*?</article>', page, re.DOTALL)
    assert len(articles) == 2
    for article in articles:
        assert '<table class="fit-table">' in article
        rows = re.findall(r"<tr>.*?</tr>", article, re.DOTALL)
        assert len(rows) == 4  # the header, then jobs, pains and gains each beside its answer
        assert "Customer jobs" in rows[1] and "Products &amp; services" in rows[1]
        assert "Pains" in rows[2] and "Pain relievers" in rows[2]
        assert "Gains" in rows[3] and "Gain creators" in rows[3]
    # Nothing left of the artwork: no value-map square, no rounded customer-profile shape.
    assert 'class="value-map"' not in page and 'class="profile"' not in page
    assert "border-radius: 42px" not in page
