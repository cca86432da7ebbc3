"""`bmc serve` end to end in a real headless Chromium, used as a consultant uses it (issue 11,
"Tests and evidence"): Playwright for Python drives Debian's chromium against `bmc serve`
started as a subprocess, and the scripted model plays the assistant through the real
`anthropic` client in the server (never the real API). Everything is found by its accessible
name ("Start bmc-segments", "Message", "Send", "Client contact", "Agree", "Send feedback",
"Stop"), as a screen reader would find it.

The project is the fixture workspace with the demo's valid segment documents, all but one
draft: `segments.md` lists five segments and starts invalid (one has no draft), the model
writes the missing draft, and both turn valid in the documents panel.

- a whole run: the printed link, the engagements page, the project, a skill started with an
  opening message, the words streaming, a message sent, the draft and its validation state
  appearing, the agreement with a client contact and a click; then the gate and the
  decisions entry on disk;
- feedback instead of a yes reaches the model as the client's words;
- a document changed between showing and clicking: nothing agreed, the new version shown
  with a note, a second click agrees the new bytes;
- kill -9 of the server while the agreement is shown, a restart on the same port and token
  file, a reload: the same agreement is shown again without a model call (at once, or after
  "Resume where it stopped" where the page cannot tell the killed run from a terminal still
  at its prompt), and a click agrees;
- hostile research, a hostile draft quoting it and hostile model replies never run: no
  console error, `window.__pwned` never set, no script but /static/app.js, no `on*`
  attribute, no `javascript:` or `data:` link, before and after a reload; a real link opens
  in a new tab.

Also: a remote image in a document is never fetched (markdown images are off), a second
tab or a reload mid-run shows the consultant's own words as well as the assistant's, and a
project opened after a session shows the end of its conversation.

The first test also takes the screenshots of docs/ (engagements, a project mid-chat, the
agreement); they are written into docs/ only with BMC_WEB_SCREENSHOTS=1, so a test run leaves
the checkout alone: `BMC_WEB_SCREENSHOTS=1 python -m pytest tests/test_web_browser.py -k whole`.

Skipped with the reason when no Chromium or no Playwright is installed. Runtime: 25-50 s on
two cores (one browser for the file; each server start imports the SDK, 2-4 s).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import browser
from bmc.scripted import ScriptedModel
from bmc.workspace.paths import Project
from projects import demo_segment_files, segments_ready

CHROMIUM = browser.find_chromium()
if CHROMIUM is None:
    pytest.skip(
        "no Chromium binary found (install it with `apt-get install -y chromium`, or set "
        "BMC_CHROMIUM): the web workspace cannot be checked in a browser",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="Playwright for Python is not installed (pip install -e '.[test]'): the web "
    "workspace cannot be driven in a browser",
)
expect = sync_api.expect
Page = sync_api.Page

ROOT = Path(__file__).resolve().parents[1]
ORG, SLUG = "tidewater", "growth-2027"
SEGMENTS_MD = "segments/segments.md"
GATE = "segments/segments.agreed.md"
RESIDENTS = "segments/drafts/island-residents-on-non-work-trips.md"
CONSULTANT = "Priya Raman"
CONTACT = "Fiona Galbraith, Commercial Director"
WAIT_MS = 20_000  # a loaded 2-core machine; a healthy run takes well under a second a step
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = os.environ.get("BMC_WEB_SCREENSHOTS") == "1"
VIEWPORT = {"width": 1440, "height": 960}

expect.set_options(timeout=WAIT_MS)


# --- the scripted model's steps ----------------------------------------------------------


def say(text: str, **more: Any) -> dict[str, Any]:
    return {"reply": {"content": [{"type": "text", "text": text}]}, **more}


def tool(id: str, name: str, **given: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": id, "name": name, "input": given}


def reply(*content: dict[str, Any] | str, **more: Any) -> dict[str, Any]:
    blocks = [{"type": "text", "text": c} if isinstance(c, str) else c for c in content]
    return {"reply": {"content": blocks}, **more}


def ask_agreement(scope: str = "UK routes only") -> dict[str, Any]:
    return tool("toolu_agree", "request_agreement", document=SEGMENTS_MD, scope_notes=scope)


def result_of(tool_id: str, *, error: bool = False, contains: str = "") -> dict[str, Any]:
    wanted: dict[str, Any] = {"is_error": error}
    if contains:
        wanted["contains"] = contains
    return {"expect": {"tool_results": {tool_id: wanted}}}


AGREED = result_of("toolu_agree", contains="agreed")


# --- the workspace, the server, the browser ----------------------------------------------


def prepare(root: Path, *, complete: bool = False) -> Project:
    """The fixture workspace with the demo's documents: all but the residents' draft
    (segments.md then lists a segment with no draft), or all of them (`complete`)."""
    return segments_ready(root, leave_out=None if complete else RESIDENTS)


@dataclass
class Server:
    """`bmc serve` in its own process, as a consultant starts it."""

    workspace: Path
    model: ScriptedModel
    port: int = 0
    url: str = ""
    process: subprocess.Popen[str] | None = None
    log: Any = field(default=None, repr=False)

    def start(self) -> Server:
        env = {
            **os.environ,
            "ANTHROPIC_BASE_URL": self.model.base_url,
            "ANTHROPIC_API_KEY": "test",
            "BMC_MAX_RETRIES": "0",
            "BMC_CONSULTANT": CONSULTANT,
            # Never the developer's own keyring: the key comes from the environment.
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
        }
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (the server's stderr; closed in stop)
        command = [sys.executable, "-m", "bmc.cli", "serve", "--workspace", str(self.workspace)]
        self.process = subprocess.Popen(
            [*command, "--port", str(self.port), "--no-browser"],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
        )
        line = self.process.stdout.readline() if self.process.stdout else ""
        found = re.fullmatch(
            r"bmc serve: open (http://127\.0\.0\.1:(\d+)/\?token=\S+)", line.strip()
        )
        if not found:
            self.process.kill()
            self.process.wait()
            self.log.seek(0)
            raise AssertionError(f"bmc serve printed {line!r}; stderr: {self.log.read()[-2000:]}")
        self.url, self.port = found[1], int(found[2])
        return self

    def kill_9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # Ctrl-C's path: sessions save themselves
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stdout:
            self.process.stdout.close()
        if self.log:
            self.log.close()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def servers() -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(workspace: Path, model: ScriptedModel, port: int = 0) -> Server:
        server = Server(workspace, model, port).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@dataclass
class Browsing:
    page: Page
    console: list[str]  # errors the page's console showed, and uncaught exceptions


@pytest.fixture
def tab(chromium: Any, servers: Callable[..., Server]) -> Iterator[Browsing]:
    """One browser tab; closed before the servers stop (an open event stream would hold
    their shutdown)."""
    context = chromium.new_context(viewport=VIEWPORT)
    page = context.new_page()
    seen = Browsing(page, [])
    page.on("console", lambda m: seen.console.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: seen.console.append(f"uncaught: {error} {error.stack}"))
    yield seen
    context.close()


def open_project(page: Page, server: Server) -> None:
    """The printed link, then the project from the engagements page."""
    page.goto(server.url)
    page.get_by_role("link", name=SLUG).click()
    expect(page.get_by_role("heading", name="Chat", exact=True)).to_be_visible()
    expect(page.get_by_role("tablist", name="Documents")).to_be_visible()


def start_skill(page: Page, opening: str = "") -> None:
    if opening:
        page.get_by_role("textbox", name="Opening message").fill(opening)
    page.get_by_role("button", name="Start bmc-segments").click()


def conversation(page: Page) -> Any:
    return page.get_by_role("log", name="Conversation")


def agreement_shown(page: Page) -> None:
    expect(page.get_by_role("button", name="Agree", exact=True)).to_be_enabled()
    expect(page.get_by_role("textbox", name="Client contact")).to_be_visible()


def document_tab(page: Page, label: str) -> Any:
    return page.get_by_role("tablist", name="Documents").get_by_role(
        "tab", name=re.compile(rf"^{re.escape(label)}")
    )


def shot(page: Page, tmp_path: Path, name: str, at: str = "") -> Path:
    """A screenshot of the window scrolled to the top (or to the element `at`), kept in
    docs/ when BMC_WEB_SCREENSHOTS=1."""
    target = (ROOT / "docs" if SCREENSHOTS else tmp_path) / name
    if at:
        page.locator(at).evaluate(
            "(e) => { e.scrollIntoView({block: 'start'}); scrollBy(0, -12); }"
        )
    else:
        page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(target))
    assert target.stat().st_size > 10_000
    return target


def watch_streaming(page: Page) -> None:
    """Record every text a streaming reply shows, as it changes (`window.__streamed`)."""
    page.evaluate(
        """() => {
          window.__streamed = [];
          new MutationObserver(() => {
            for (const node of document.querySelectorAll("#log .streaming"))
              window.__streamed.push(node.textContent);
          }).observe(document.getElementById("log"),
                     {childList: true, subtree: true, characterData: true});
        }"""
    )


# --- the tests ---------------------------------------------------------------------------

OPENING = "Focus on the islanders first."
FIRST_WORDS = (
    "The survey shows islanders travelling for shopping, appointments and family are a "
    "customer of their own: I will draft them as a fifth segment."
)
READY = "The client is ready: please ask for their agreement."


def test_a_whole_run_from_the_printed_link_to_the_gate_on_disk(
    tmp_path: Path, scripted: Callable[..., ScriptedModel], servers: Any, tab: Browsing
) -> None:
    project = prepare(tmp_path)
    residents = demo_segment_files()[RESIDENTS]
    model = scripted(
        {
            "steps": [
                reply(
                    FIRST_WORDS,
                    tool("toolu_write", "write", file_path=RESIDENTS, content=residents),
                    expect={"last_user_text_contains": OPENING},
                    fault={"event_gap": 0.03},  # the words come one by one, visibly
                ),
                say(
                    "The residents' draft is saved and segments.md now has a draft for each "
                    "of its five segments. Shall I ask the client to agree?",
                    **result_of("toolu_write"),
                ),
                reply(
                    "Asking you to confirm the agreement on the segments document.",
                    ask_agreement(),
                    expect={"last_user_text_contains": READY},
                ),
                say("Agreed: the next stage is the canvas.", **AGREED),
            ]
        }
    )
    server = servers(project.workspace, model)
    page = tab.page

    page.goto(server.url)
    expect(page).to_have_url(re.compile(r"/$"))  # the token left the address bar
    row = page.get_by_role("row", name=re.compile("Tidewater Ferries Ltd"))
    expect(row).to_contain_text("brief: agreed")
    shot(page, tmp_path, "web-engagements.png")
    row.get_by_role("link", name=SLUG).click()

    # Before: segments.md lists a segment with no draft yet.
    segments_tab = document_tab(page, "Segments")
    expect(segments_tab).to_contain_text("invalid")
    expect(document_tab(page, "Draft: Island residents")).to_have_count(0)

    watch_streaming(page)
    start_skill(page, OPENING)
    log = conversation(page)
    expect(log).to_contain_text(OPENING)  # the consultant's opening is part of the chat
    expect(log).to_contain_text("a customer of their own")
    streamed = page.evaluate("window.__streamed")
    partial = [t for t in streamed if t and len(t) < len(FIRST_WORDS)]
    assert partial and all(FIRST_WORDS.startswith(t) for t in partial), streamed

    # The draft appears with its state, and segments.md turns valid.
    residents_tab = document_tab(page, "Draft: Island residents")
    expect(residents_tab).to_contain_text("valid")
    expect(segments_tab).to_contain_text("valid")
    expect(segments_tab).not_to_contain_text("invalid")
    expect(log).to_contain_text("Shall I ask the client to agree?")
    expect(log.get_by_text(re.compile(rf"write {re.escape(RESIDENTS)}"))).to_be_visible()
    residents_tab.click()
    panel = page.get_by_role("tabpanel", name=re.compile("^Draft: Island residents"))
    expect(panel.get_by_role("heading", name="Island residents on non-work trips")).to_be_visible()
    shot(page, tmp_path, "web-chat.png")

    message = page.get_by_role("textbox", name="Message", exact=True)
    message.fill(READY)
    page.get_by_role("button", name="Send", exact=True).click()
    expect(log).to_contain_text(READY)

    agreement_shown(page)
    agreement = page.get_by_role("region", name=re.compile("^Agree"))
    expect(agreement).to_contain_text("Island commuters")
    expect(agreement).to_contain_text("UK routes only")
    expect(
        agreement.get_by_role("heading", name="Customer Segments — Tidewater Ferries Ltd")
    ).to_be_visible()
    page.get_by_role("textbox", name="Client contact").fill(CONTACT)
    # The documents panel turned to the document being agreed.
    expect(document_tab(page, "Segments")).to_have_attribute("aria-selected", "true")
    shot(page, tmp_path, "web-agreement.png", at="#agreement")
    page.get_by_role("button", name="Agree", exact=True).click()

    expect(log).to_contain_text(f"Agreed: {GATE}")
    expect(log).to_contain_text("the next stage is the canvas")
    expect(page.get_by_role("region", name=re.compile("^Agree"))).to_be_hidden()

    document = (project.project_dir / SEGMENTS_MD).read_bytes()
    assert (project.project_dir / GATE).read_bytes() == document
    decisions = (project.project_dir / "decisions.md").read_text("utf-8")
    assert f"{CONSULTANT} (consultant); {CONTACT} (client)" in decisions
    assert tab.console == [], "\n".join(tab.console)

    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_role("status").first).to_contain_text("Stopping")
    model.assert_finished()


def test_feedback_instead_of_a_yes_goes_to_the_model_as_the_clients_words(
    tmp_path: Path, scripted: Callable[..., ScriptedModel], servers: Any, tab: Browsing
) -> None:
    project = prepare(tmp_path, complete=True)
    feedback = "Merge the two island segments: the board sees one islander market."
    model = scripted(
        {
            "steps": [
                reply("Here are the five segments for the client.", ask_agreement()),
                say(
                    "I will merge the two island segments.",
                    **result_of("toolu_agree", contains=feedback),
                ),
            ]
        }
    )
    page = tab.page
    open_project(page, servers(project.workspace, model))
    start_skill(page)
    agreement_shown(page)
    page.get_by_role("textbox", name="Client feedback").fill(feedback)
    page.get_by_role("button", name="Send feedback").click()

    log = conversation(page)
    expect(log).to_contain_text("I will merge the two island segments.")
    expect(page.get_by_role("region", name=re.compile("^Agree"))).to_be_hidden()
    told = model.requests[-1]["messages"][-1]["content"]
    answer = next(b for b in told if b.get("tool_use_id") == "toolu_agree")
    assert feedback in str(answer["content"]) and not answer.get("is_error")
    assert not (project.project_dir / GATE).exists()
    assert "Customer segments agreed" not in (project.project_dir / "decisions.md").read_text()
    model.assert_finished()


def test_a_document_changed_after_it_was_shown_is_not_agreed_and_is_shown_again(
    tmp_path: Path, scripted: Callable[..., ScriptedModel], servers: Any, tab: Browsing
) -> None:
    project = prepare(tmp_path, complete=True)
    model = scripted(
        {"steps": [reply("Please confirm.", ask_agreement()), say("Thank you.", **AGREED)]}
    )
    page = tab.page
    open_project(page, servers(project.workspace, model))
    start_skill(page)
    agreement_shown(page)
    first = page.locator("#agreement-digest").text_content()

    # A colleague saves an edit while the page shows the agreement.
    path = project.project_dir / SEGMENTS_MD
    note = "A note the partner added after the meeting."
    path.write_text(path.read_text("utf-8") + f"\n{note}\n", "utf-8")
    page.get_by_role("textbox", name="Client contact").fill(CONTACT)
    page.get_by_role("button", name="Agree", exact=True).click()

    agreement = page.get_by_role("region", name=re.compile("^Agree"))
    expect(agreement.get_by_text("changed after you were shown it")).to_be_visible()
    expect(agreement.get_by_text("nothing was agreed")).to_be_visible()
    expect(page.get_by_label("The document as the client reads it")).to_contain_text(note)
    expect(page.locator("#agreement-digest")).not_to_have_text(first or "")
    assert not (project.project_dir / GATE).exists()  # the click agreed nothing

    page.get_by_role("button", name="Agree", exact=True).click()
    expect(conversation(page)).to_contain_text(f"Agreed: {GATE}")
    expect(conversation(page)).to_contain_text("Thank you.")  # the model was told, and went on
    assert (project.project_dir / GATE).read_bytes() == path.read_bytes()
    assert note in (project.project_dir / GATE).read_text("utf-8")
    model.assert_finished()


def test_kill_9_of_the_server_at_the_agreement_then_a_restart_shows_it_again(
    tmp_path: Path, scripted: Callable[..., ScriptedModel], servers: Any, tab: Browsing
) -> None:
    project = prepare(tmp_path, complete=True)
    model = scripted(
        {
            "steps": [
                reply("Please confirm the segments.", ask_agreement()),
                say("Agreed, thank you.", **AGREED),
            ]
        }
    )
    page = tab.page
    first = servers(project.workspace, model)
    open_project(page, first)
    start_skill(page)
    agreement_shown(page)
    digest = page.locator("#agreement-digest").text_content()

    first.kill_9()
    again = servers(project.workspace, model, port=first.port)
    assert again.url == first.url  # the same token file: the open tab's link still works
    page.reload()
    # Either the page presents the agreement again at once, or (when it cannot tell the
    # killed run from one still waiting at a terminal's prompt) it says the session stopped
    # unexpectedly and offers to resume it where it stopped.
    agree = page.get_by_role("button", name="Agree", exact=True)
    offer = page.get_by_role("region", name="Interrupted session")
    expect(agree.or_(offer).first).to_be_visible()
    if offer.is_visible():
        expect(offer).to_contain_text("stopped unexpectedly")
        offer.get_by_role("button", name="Resume where it stopped").click()
        expect(offer).to_be_hidden()
    agreement_shown(page)
    expect(page.locator("#agreement-digest")).to_have_text(digest or "")
    assert len(model.requests) == 1  # presented again without asking the model anything

    page.get_by_role("textbox", name="Client contact").fill(CONTACT)
    page.get_by_role("button", name="Agree", exact=True).click()
    expect(conversation(page)).to_contain_text("Agreed, thank you.")
    document = (project.project_dir / SEGMENTS_MD).read_bytes()
    assert (project.project_dir / GATE).read_bytes() == document
    decisions = (project.project_dir / "decisions.md").read_text("utf-8")
    assert decisions.count("Customer segments agreed") == 1 and CONTACT in decisions
    model.assert_finished()


# What a hostile research file, a draft quoting it and a steered model carry. Each would set
# window.__pwned if it ran; the CSP would also log an error for any inline code it blocked.
PWN = "window.__pwned = 1"
GO = "window.__pwned=1"  # the same, with no space: a link's destination may hold no space
HOSTILE_RESEARCH = f"""# Notes from the island drop-in sessions

Residents said: <script>{PWN}</script> the last boat home decides whether an evening in town
is possible at all.

A visitor wrote <img src=x onerror="{PWN}"> on the feedback card about the booking line.

[Read the full survey](javascript:{GO}) and <a href="javascript:{GO}">the appendix</a>.
"""
HOSTILE_QUOTE = f"Residents said: <script>{PWN}</script> the last boat home decides whether"
HOSTILE_REPLY = f"""I read the drop-in notes. <script>{PWN}</script>

<img src=x onerror="{PWN}"> <svg onload="{PWN}"></svg> <iframe src="javascript:{PWN}"></iframe>

[the survey](javascript:{GO}) · [cased](JaVaScRiPt:{GO}) · [encoded](&#x6A;avascript:{GO})
· [tabbed](java%09script:{GO}) · [entity](javascript&#58;{GO}) · <javascript:{GO}>
· ![pixel](javascript:{GO}) · [vb](vbscript:{GO}) · <a href="javascript:{GO}">raw link</a>
· [page](data:text/html;base64,PHNjcmlwdD53aW5kb3cuX19wd25lZD0xPC9zY3JpcHQ+)
· [titled](/x "a\\" onmouseover=\\"{PWN}")
· [the operator's timetable](https://example.com/timetable)
"""
NOTHING_RAN = """() => ({
  pwned: typeof window.__pwned,
  scripts: [...document.scripts].map((s) => s.getAttribute("src")),
  handlers: [...document.querySelectorAll("*")].flatMap((e) =>
    [...e.attributes].filter((a) => a.name.startsWith("on")).map((a) => `${e.tagName} ${a.name}`)),
  links: [...document.querySelectorAll("a[href], [src], [action], [formaction]")]
    .map((e) => e.href || e.src || e.action || e.formAction || "")
    .filter((u) => u && !/^https?:/i.test(u)),
  embedded: [...document.querySelectorAll("iframe, object, embed, svg, img")]
    .map((e) => e.outerHTML.slice(0, 120)),
})"""


def hostile_draft(residents: str, quote: str) -> str:
    """The residents' draft with hostile markup in its text and a quote from the notes."""
    evidence = f'- From `resources/drop-in-notes.md`: "{quote}"\n'
    return residents.replace(
        "so an evening in town is possible again.",
        f'so an evening in town is possible again <img src=x onerror="{PWN}"> '
        f"[see](javascript:{GO}).",
    ).replace(
        '- From `resources/passenger-survey-2026.md`: "I phone',
        evidence + '- From `resources/passenger-survey-2026.md`: "I phone',
    )


def assert_nothing_ran(page: Page, console: list[str]) -> None:
    found = page.evaluate(NOTHING_RAN)
    assert found["pwned"] == "undefined"
    # The page's own script, named with its version (a query the browser keeps in `src`).
    assert [src.split("?")[0] for src in found["scripts"]] == ["/static/app.js"]
    assert found["handlers"] == [] and found["links"] == [] and found["embedded"] == []
    assert console == [], "\n".join(console)


def test_hostile_research_drafts_and_replies_are_shown_as_text_and_never_run(
    tmp_path: Path, scripted: Callable[..., ScriptedModel], servers: Any, tab: Browsing
) -> None:
    project = prepare(tmp_path)
    (project.resources_dir / "drop-in-notes.md").write_text(HOSTILE_RESEARCH, "utf-8")
    residents = demo_segment_files()[RESIDENTS]
    near_miss = HOSTILE_QUOTE.replace("decides whether", "decide if")  # refused, quoted back
    model = scripted(
        {
            "steps": [
                reply(
                    HOSTILE_REPLY,
                    tool("toolu_read", "read", file_path="resources/drop-in-notes.md"),
                    tool(
                        "toolu_bad",
                        "write",
                        file_path=RESIDENTS,
                        content=hostile_draft(residents, near_miss),
                    ),
                ),
                reply(
                    "My quote was off; writing it exactly.",
                    tool(
                        "toolu_good",
                        "write",
                        file_path=RESIDENTS,
                        content=hostile_draft(residents, HOSTILE_QUOTE),
                    ),
                    expect={
                        "tool_results": {
                            "toolu_read": {"is_error": False, "contains": "<script>"},
                            "toolu_bad": {"is_error": True},
                        }
                    },
                ),
                say(HOSTILE_REPLY, **result_of("toolu_good")),
            ]
        }
    )
    page = tab.page
    page.on("dialog", lambda dialog: tab.console.append(f"dialog: {dialog.message}"))
    open_project(page, servers(project.workspace, model))
    start_skill(page, f"<script>{PWN}</script> Start with the drop-in notes.")

    log = conversation(page)
    expect(log.locator(".msg.assistant:not(.streaming)").last).to_contain_text(
        f"<script>{PWN}</script>"
    )  # shown as the text it is, once rendered by the server
    expect(log).to_contain_text("My quote was off")
    expect(log.locator(".tool.refused")).to_contain_text("drop-in-notes.md")
    draft = document_tab(page, "Draft: Island residents")
    expect(draft).to_contain_text("valid")
    draft.click()
    panel = page.get_by_role("tabpanel", name=re.compile("^Draft: Island residents"))
    expect(panel).to_contain_text(f'<img src=x onerror="{PWN}">')
    expect(panel).to_contain_text(HOSTILE_QUOTE)
    page.wait_for_timeout(300)  # an injected handler (onerror, onload) would have fired by now
    assert_nothing_ran(page, tab.console)
    # A real link leads to a new tab and tells the site nothing of this page.
    away = log.get_by_role("link", name="the operator's timetable").last
    expect(away).to_have_attribute("target", "_blank")
    expect(away).to_have_attribute("rel", "noopener noreferrer")

    # Stopped and reopened, the transcript comes from the journal, rendered by the server.
    page.get_by_role("button", name="Stop").click()
    expect(log).to_contain_text("saved")
    page.reload()
    expect(conversation(page)).to_contain_text(f"<script>{PWN}</script>")
    expect(conversation(page)).to_contain_text("My quote was off")
    document_tab(page, "Draft: Island residents").click()
    expect(page.get_by_role("tabpanel", name=re.compile("^Draft: Island"))).to_contain_text(
        HOSTILE_QUOTE
    )
    page.wait_for_timeout(300)
    assert_nothing_ran(page, tab.console)
    model.assert_finished()


def test_a_remote_image_in_a_document_is_not_fetched(
    tmp_path: Path, scripted: Callable[..., ScriptedModel], servers: Any, tab: Browsing
) -> None:
    project = prepare(tmp_path)
    hypotheses = project.project_dir / "hypotheses.md"
    leak = "![chart](https://example.com/leak.png?client=tidewater)"
    hypotheses.write_text(hypotheses.read_text("utf-8") + f"\n{leak}\n", "utf-8")
    page = tab.page
    open_project(page, servers(project.workspace, scripted({"steps": []})))
    document_tab(page, "Hypotheses").click()
    page.wait_for_timeout(300)
    images = page.evaluate("[...document.images].map((i) => i.src)")
    assert [src for src in images if "example.com" in src] == []
    assert tab.console == [], "\n".join(tab.console)


def test_a_second_tab_mid_run_shows_the_consultants_own_words(
    tmp_path: Path, scripted: Callable[..., ScriptedModel], servers: Any, tab: Browsing
) -> None:
    project = prepare(tmp_path, complete=True)
    model = scripted(
        {
            "steps": [
                say("What should I look at first?"),
                say("Noted: the UK routes first.", expect={"last_user_text_contains": "UK"}),
            ]
        }
    )
    page = tab.page
    open_project(page, servers(project.workspace, model))
    start_skill(page, OPENING)
    expect(conversation(page)).to_contain_text("What should I look at first?")
    page.get_by_role("textbox", name="Message", exact=True).fill("The UK routes, please.")
    page.get_by_role("button", name="Send", exact=True).click()
    expect(conversation(page)).to_contain_text("Noted: the UK routes first.")

    second = page.context.new_page()
    second.goto(page.url)
    log = conversation(second)
    expect(log).to_contain_text("Noted: the UK routes first.")
    consultant = log.locator(".msg.consultant")  # replayed at once: no need to wait long
    expect(consultant).to_have_text([OPENING, "The UK routes, please."], timeout=3_000)
    expect(conversation(page).locator(".msg.consultant")).to_have_count(2)  # no echo twice
    model.assert_finished()


def test_a_reloaded_project_shows_the_end_of_its_conversation(
    tmp_path: Path, scripted: Callable[..., ScriptedModel], servers: Any, tab: Browsing
) -> None:
    """A conversation kept from a session opens at its newest words (what the assistant
    last asked), as a streaming one follows them, not at its first lines."""
    project = prepare(tmp_path, complete=True)
    points = [
        f"Point {n}: the islanders' trips, the freight sailings and the fares."
        for n in range(1, 25)
    ]
    question = "Which segment shall we take to the client first?"
    model = scripted({"steps": [say("\n\n".join([*points, question]))]})
    page = tab.page
    open_project(page, servers(project.workspace, model))
    start_skill(page)
    expect(conversation(page)).to_contain_text(question)
    page.get_by_role("button", name="Stop", exact=True).click()
    expect(page.locator("#project")).to_have_attribute("data-state", "stopped")
    model.assert_finished()

    page.goto(page.url)  # opened again (a reload would also restore the window's scroll)
    log = conversation(page)
    expect(log).to_contain_text(points[0])  # the whole transcript, from the journal
    expect(log.get_by_text(question)).to_be_in_viewport()
    expect(log.get_by_text(points[0])).not_to_be_in_viewport()
    assert tab.console == [], "\n".join(tab.console)


def test_agreeing_outside_a_chat_is_the_same_click_on_the_same_document(
    tmp_path: Path, scripted: Callable[..., ScriptedModel], servers: Any, tab: Browsing
) -> None:
    """As `bmc agree segments`, from the page: the segments document as it is now, the
    client contact, Agree; the gate is exactly those bytes, with no session and no model."""
    project = prepare(tmp_path, complete=True)
    page = tab.page
    open_project(page, servers(project.workspace, scripted({"steps": []})))
    page.get_by_role("button", name="Agree the segments", exact=True).click()
    agreement_shown(page)
    assert page.get_by_role("button", name="Send feedback", exact=True).is_hidden()
    page.get_by_label("Client contact").fill("Fiona Galbraith, Commercial Director")
    page.get_by_role("button", name="Agree", exact=True).click()
    expect(page.locator("#status-line")).to_contain_text("written and recorded in decisions.md")

    segments = (project.project_dir / "segments/segments.md").read_bytes()
    assert (project.project_dir / "segments/segments.agreed.md").read_bytes() == segments
    decisions = (project.project_dir / "decisions.md").read_text("utf-8")
    assert "Fiona Galbraith, Commercial Director (client)" in decisions
    assert not list((project.state_dir / "sessions").glob("*.jsonl"))  # no chat was needed
    assert tab.console == [], "\n".join(tab.console)


def test_the_demo_in_the_browser_offers_the_scripted_lines_and_waits_for_a_click(
    tmp_path: Path, tab: Browsing
) -> None:
    """`bmc demo --serve`: the scripted model plays the assistant; the person sends the
    offered lines and agrees the brief with their own click."""
    workspace = tmp_path / "demo"
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}
    command = [sys.executable, "-m", "bmc.cli", "demo", "--serve", "--no-browser"]
    process = subprocess.Popen(
        [*command, "--port", "0", "--workspace", str(workspace)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline(), process.stdout.readline()]
        url = re.search(r"open (http://\S+)", lines[1])
        assert url and f"The demo's workspace is {workspace}" in lines[0], lines
        page = tab.page
        page.goto(url[1])
        page.get_by_role("link", name=SLUG).click()
        assert "API key" not in page.content()  # the scripted model needs none
        page.get_by_role("button", name="Start bmc-research", exact=True).click()
        offered = page.locator("button.demo-line[data-skill='bmc-research']")
        gate = workspace / "clients" / ORG / "projects" / SLUG / "brief.agreed.md"
        sent, deadline = 0, time.monotonic() + 60
        while not gate.exists():
            assert time.monotonic() < deadline, "the demo's brief was never agreed"
            agree = page.get_by_role("button", name="Agree", exact=True)
            composer = page.get_by_role("textbox", name="Message", exact=True)
            if agree.is_visible() and agree.is_enabled():
                page.get_by_label("Client contact").fill("Fiona Galbraith, Commercial Director")
                agree.click()
            elif page.locator("#project").get_attribute("data-state") == "message":
                offered.nth(sent).click()  # the scripted line lands in the message box
                assert composer.input_value() == offered.nth(sent).get_attribute("data-line")
                sent += 1
                page.locator("#project").evaluate("node => { node.dataset.state = 'sent'; }")
                page.get_by_role("button", name="Send", exact=True).click()
            page.wait_for_timeout(100)
        decisions = gate.with_name("decisions.md").read_text("utf-8")
        assert "Stage 1: Engagement brief agreed" in decisions
        assert "Fiona Galbraith, Commercial Director (client)" in decisions
        assert tab.console == [], "\n".join(tab.console)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        if process.stdout:
            process.stdout.close()
