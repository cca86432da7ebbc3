"""The agreed versions in the web workspace, used as a consultant uses it: from the project
page to a stage's versions, what changed since the latest one, and a comparison of two
versions chosen by their labels; a hostile name in the working document is shown as text.
Driven by Playwright in Debian's headless Chromium against `bmc serve` (the helpers and the
browser fixtures of tests/test_web_browser.py). Skipped where those are."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bmc.documents import versions
from bmc.documents.stages import packaged
from bmc.scripted import ScriptedModel
from bmc.workspace.paths import Project
from clihelp import run_bmc
from test_web_browser import (  # noqa: F401  (chromium, servers, tab: the browser fixtures)
    Browsing,
    chromium,
    expect,
    open_project,
    prepare,
    servers,
    shot,
    tab,
)

HOSTILE = 'Day visitors <img src=x onerror="window.__pwned=1">'
VISITORS = "Visitors and day-trippers"
OVERVIEW_END = "The engagement looks for £3.0m a year of new non-contract revenue by 2029."


def agree(project: Project, answer: str) -> None:
    where = ["--workspace", str(project.workspace), "--org", project.org, "--project", project.slug]
    done = run_bmc(["agree", "segments", *where], input=answer)
    assert done.exit_code == 0, done.output


def edit(project: Project, old: str, new: str) -> None:
    path = project.project_dir / "segments/segments.md"
    text = path.read_text("utf-8")
    assert old in text
    path.write_text(text.replace(old, new), "utf-8")


def test_a_stages_versions_and_what_changed_between_them(
    tmp_path: Path,
    scripted: Callable[..., ScriptedModel],
    servers: Callable[..., object],  # noqa: F811
    tab: Browsing,  # noqa: F811
) -> None:
    project = prepare(tmp_path, complete=True)
    agree(project, "yes, Fiona Galbraith\n")
    edit(project, OVERVIEW_END, OVERVIEW_END + " Speed matters.")
    agree(project, "yes\n")
    assert len(versions.list_versions(project, packaged()["segments"])) == 2
    edit(project, f"### 3. {VISITORS}", f"### 3. {HOSTILE}")  # mid-iteration, not agreed
    page = tab.page

    open_project(page, servers(project.workspace, scripted({"steps": []})))
    # Beside the stage's state at the top of the page, not below the whole decisions log.
    stages = page.get_by_role("list", name="Stages")
    expect(stages.get_by_role("link", name="Versions of the segments")).to_be_in_viewport()
    expect(stages.get_by_role("link", name="Versions of the canvas")).to_have_count(0)
    stages.get_by_role("link", name="Versions of the segments").click()

    expect(
        page.get_by_role("heading", name="Agreed versions of the customer segments")
    ).to_be_visible()
    rows = page.get_by_role("table", name="Versions").get_by_role("row")
    expect(rows).to_have_count(3)  # the header and two versions
    expect(rows.nth(1)).to_contain_text("Test Consultant (consultant); Fiona Galbraith (client)")
    expect(rows.nth(2)).to_contain_text("Stage 2: Customer segments re-agreed")
    expect(rows.nth(2)).to_contain_text("1 section changed")
    # By default: the latest version against the working document.
    expect(
        page.get_by_role(
            "heading", name="What changed from version 2 to the working segments/segments.md"
        )
    ).to_be_visible()
    changes = page.get_by_role("list", name="Changes")
    expect(changes.get_by_role("listitem")).to_have_text(
        [f'Segment "{VISITORS}" renamed to "{HOSTILE}".']
    )
    shot(page, tmp_path, "versions-working.png")

    page.get_by_role("combobox", name="From").select_option("1")
    page.get_by_role("combobox", name="To").select_option("2")
    page.get_by_role("button", name="Compare").click()

    expect(
        page.get_by_role("heading", name="What changed from version 1 to version 2")
    ).to_be_visible()
    expect(page.get_by_role("list", name="Changes").get_by_role("listitem")).to_have_text(
        ["Overview: rewritten."]
    )
    page.get_by_text("Read version 1").click()
    expect(page.get_by_role("article", name="Version 1 as agreed")).to_contain_text(OVERVIEW_END)
    screenshot = shot(page, tmp_path, "versions-compare.png")
    assert screenshot.exists()

    assert page.evaluate("window.__pwned") is None
    assert page.locator("img").count() == 0  # the name in the working document is text
    assert tab.console == [], "\n".join(tab.console)


def test_an_unknown_version_in_the_address_is_one_sentence_on_the_page(
    tmp_path: Path,
    scripted: Callable[..., ScriptedModel],
    servers: Callable[..., object],  # noqa: F811
    tab: Browsing,  # noqa: F811
) -> None:
    project = prepare(tmp_path, complete=True)
    agree(project, "yes\n")
    server = servers(project.workspace, scripted({"steps": []}))
    page = tab.page
    open_project(page, server)
    base = page.url.split("?")[0]

    page.goto(f"{base}/versions/segments?a=9")

    expect(page.get_by_role("alert")).to_have_text(
        "The segments stage has no version 9: it has versions 1."
    )
    expect(page.get_by_role("table", name="Versions").get_by_role("row")).to_have_count(2)
