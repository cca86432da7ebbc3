"""`bmc serve` as a person meets it (issue 11): every route of the web workspace, driven
through Starlette's test client with the guard in front exactly as `server.serve` builds it,
the real `anthropic` client talking to the scripted model on loopback, and the fixture's
engagement with the demo's valid segment documents (so agreements are real ones).

A page reads the conversation as server-sent events; `Events` reads them on a thread of its
own so a hang fails the test after a few seconds instead of blocking it."""

from __future__ import annotations

import io
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from keyring.backend import KeyringBackend
from starlette.testclient import TestClient

from bmc.documents import gate
from bmc.engine.session import WAITING_AGREEMENT, list_sessions
from bmc.scripted import ScriptedModel
from bmc.web.app import ServeOptions, create_app
from bmc.web.security import ServerSecret, guard, loopback_hosts
from bmc.workspace.paths import Project
from projects import segments_ready

pytestmark = pytest.mark.timeout(60)

BASE = "http://127.0.0.1:8765"
ORG, SLUG = "tidewater", "growth-2027"
P = f"/p/{ORG}/{SLUG}"
SEGMENTS_MD = "segments/segments.md"
GATE = "segments/segments.agreed.md"
DRAFT = "segments/drafts/island-commuters.md"
CONTACT = "Fiona Galbraith, Commercial Director"
WAIT = 10.0  # seconds an event may take on loopback before the test calls it a hang
Start = Callable[..., ScriptedModel]

# What a hostile research file or a steered model may carry (issue 11, "Safe by construction").
HOSTILE = (
    "Beware <script>alert(1)</script> and <img src=x onerror=alert(1)> and "
    "[x](javascript:alert(1)) and [a](java&#115;cript:x) and <javascript:alert(1)> and "
    "[b](JAVASCRIPT:alert(2)) and [c](  vbscript:msgbox) and "
    "[d](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==) and "
    '<a href="javascript:alert(3)">e</a> and the report <https://example.com/report>.'
)
SCRIPT_SHOWN = "&lt;script&gt;alert(1)&lt;/script&gt;"
IMG_SHOWN = "&lt;img src=x onerror=alert(1)&gt;"
OWN_SCRIPT = r'<script src="/static/app\.js(\?v=[0-9a-f]+)?" defer></script>'


# --- a browser on `bmc serve` ------------------------------------------------------------


class Events:
    """A page's event stream (`/p/<org>/<slug>/events`), read on its own thread."""

    def __init__(self, http: TestClient, url: str, last_event_id: str | None = None) -> None:
        headers = {"last-event-id": last_event_id} if last_event_id else {}
        self._context = http.stream("GET", url, headers=headers)
        self.response = self._context.__enter__()
        assert self.response.status_code == 200, self.response.read()
        assert self.response.headers["content-type"].startswith("text/event-stream")
        self.seen: list[dict[str, Any]] = []
        self.last_id = ""  # the `id:` of the last event taken, as a browser keeps it
        self._queue: queue.Queue[tuple[str, dict[str, Any]] | BaseException | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            last_id = ""
            for line in self.response.iter_lines():
                if line.startswith("id: "):
                    last_id = line[len("id: ") :]
                elif line.startswith("data: "):
                    self._queue.put((last_id, json.loads(line[len("data: ") :])))
        except BaseException as err:  # closed under the reader: the test is over
            self._queue.put(err)
        finally:
            self._queue.put(None)

    def until(self, kind: str, timeout: float = WAIT) -> dict[str, Any]:
        """The next event of `kind`; what came before it is kept in `seen`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                kinds = [e["type"] for e in self.seen[-8:]]
                raise AssertionError(f"no {kind} within {timeout}s; last events: {kinds}") from None
            if item is None or isinstance(item, BaseException):
                raise AssertionError(f"the stream ended before a {kind}: {item!r}")
            self.last_id, event = item
            self.seen.append(event)
            if event["type"] == kind:
                return event
            if event["type"] == "Stopped":
                raise AssertionError(f"stopped before a {kind}: {event}")

    def ends(self, timeout: float = WAIT) -> None:
        """The server ends the stream (with no more events) within `timeout`."""
        item = self._queue.get(timeout=timeout)
        assert item is None or isinstance(item, BaseException), item

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.seen if e["type"] == kind]

    def close(self) -> None:
        self._context.__exit__(None, None, None)
        self._thread.join(timeout=WAIT)


class Web:
    """A person's browser on one `bmc serve` of `workspace`: the app wrapped in the guard as
    `server.serve` does, the printed link opened once (so the token became a cookie)."""

    def __init__(self, workspace: Path, client: Any) -> None:
        self.secret = ServerSecret.load_or_create(workspace)
        self.app = create_app(ServeOptions(workspace, client=client), self.secret)
        guarded = guard(self.app, self.secret, hosts=loopback_hosts("127.0.0.1", 8765))
        self.http = TestClient(guarded, base_url=BASE)
        self.streams: list[Events] = []
        self.http.__enter__()  # one event loop for the server's life, and its lifespan
        opened = self.http.get(f"/?token={self.secret.token}")
        assert opened.status_code == 200 and "Engagements" in opened.text

    def get(self, path: str, **options: Any) -> httpx.Response:
        return self._seen(self.http.get(path, **options))

    def post(self, path: str, body: Any = None, **options: Any) -> httpx.Response:
        headers = {"origin": BASE, "x-bmc-csrf": self.secret.csrf_token()}
        headers.update(options.pop("headers", {}))
        if body is not None:
            options["json"] = body
        return self._seen(self.http.post(path, headers=headers, **options))

    def _seen(self, response: httpx.Response) -> httpx.Response:
        # Threat: the token (or the key, see the key test) echoed into any answer.
        assert self.secret.token not in response.text
        assert "Traceback" not in response.text
        return response

    def events(self, project: str = P, last_event_id: str | None = None) -> Events:
        stream = Events(self.http, f"{project}/events", last_event_id)
        self.streams.append(stream)
        return stream

    def stop_at_hand_back(self, events: Events, project: str = P) -> dict[str, Any]:
        """Wait for the model to hand back, press Stop, and wait for the run to end."""
        events.until("WaitingForMessage")
        assert self.post(f"{project}/stop", {}).status_code == 200
        return events.until("Stopped")

    def close(self) -> None:
        for stream in self.streams:
            stream.close()
        self.streams = []
        self.http.__exit__(None, None, None)  # the lifespan's end: running sessions stop


@pytest.fixture
def ready(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """The fixture workspace with the demo's valid drafts and segments document."""
    project = segments_ready(tmp_path)
    monkeypatch.setenv("BMC_CONSULTANT", "Priya Raman")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    return project


@pytest.fixture
def web() -> Iterator[Callable[..., Web]]:
    """`web(project, model)`: a server on the project's workspace whose runs use the scripted
    model (`model=None`: no client given, as a consultant's own `bmc serve`)."""
    opened: list[Web] = []

    def open_web(project: Project, model: ScriptedModel | None) -> Web:
        client = None
        if model is not None:
            client = anthropic.Anthropic(base_url=model.base_url, api_key="test", max_retries=0)
        server = Web(project.workspace, client)
        opened.append(server)
        return server

    yield open_web
    for server in opened:
        server.close()


# --- the scripted model's lines ---------------------------------------------------------------


def say(text: str) -> dict[str, Any]:
    return {"reply": {"content": [{"type": "text", "text": text}]}}


def read_call(call_id: str, path: str) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": "read", "input": {"file_path": path}}


def ask_agreement(scope: str = "UK routes only") -> dict[str, Any]:
    call = {
        "type": "tool_use",
        "id": "toolu_agree",
        "name": "request_agreement",
        "input": {"document": SEGMENTS_MD, "scope_notes": scope},
    }
    return {"reply": {"content": [call]}}


def after_agreement(contains: str = "agreed") -> dict[str, Any]:
    return {"tool_results": {"toolu_agree": {"is_error": False, "contains": contains}}}


def agreed_then(text: str) -> dict[str, Any]:
    """The model asks for agreement, then says `text` once it has been agreed."""
    return {"steps": [ask_agreement(), say(text) | {"expect": after_agreement()}]}


# --- what a person would notice -----------------------------------------------------------


def one_sentence(response: httpx.Response, status: int, says: str = "") -> str:
    """A refusal: the status, and one sentence (no traceback, no second line) saying `says`."""
    assert response.status_code == status, (response.status_code, response.text)
    error = response.json()["error"]
    assert "\n" not in error and error.endswith((".", "!", "?")), error
    assert says.lower() in error.lower(), error
    return str(error)


def files_of(root: Path) -> dict[str, bytes]:
    """Every file under `root` but the runner's own state (locks, notes, journals)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".bmc" not in p.relative_to(root).parts
    }


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.script_text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.script_text.append(data)


def assert_inert(html: str, where: str) -> None:
    """Nothing in `html` can run: no script but the page's own file, no event handler, no
    `javascript:` (or `vbscript:`, or a `data:` page) in any link or source."""
    body = re.sub(OWN_SCRIPT, "", html)
    assert "<script" not in body.lower(), where
    assert not re.search(r"<[a-z][^<>]*\bon[a-z]+\s*=", body, re.I), where
    assert 'href="javascript:' not in body.lower(), where
    parsed = _Tags()
    parsed.feed(html)
    assert not parsed.script_text, where
    for tag, attrs in parsed.tags:
        if tag == "script":
            assert len(attrs) == 2 and attrs[1] == ("defer", None), where
            assert re.fullmatch(r"/static/app\.js(\?v=[0-9a-f]+)?", attrs[0][1] or ""), where
        assert tag not in ("img", "object", "embed", "base"), f"{where}: <{tag} {attrs}>"
        if tag == "meta":  # the client pages' own CSP is welcome; a redirect is not
            assert (dict(attrs).get("http-equiv") or "").lower() != "refresh", where
        if tag == "iframe":  # only the page's own canvas, sandboxed
            found = dict(attrs)
            assert "sandbox" in found and (found.get("src") or "").startswith(f"{P}/page/"), where
        for name, value in attrs:
            assert not name.startswith("on"), f"{where}: <{tag} {name}=...>"
            url = re.sub(r"[\s\x00-\x1f]", "", value or "").lower()
            assert not url.startswith(("javascript:", "vbscript:")), f"{where}: {name}={value}"
            assert not url.startswith("data:") or url == "data:,", f"{where}: {name}={value}"


def assert_shown_escaped(html: str, where: str) -> None:
    """The hostile words are still there for a person to read, as text."""
    assert SCRIPT_SHOWN in html, where
    assert IMG_SHOWN in html, where
    assert "[x](javascript:alert(1))" in html, where


# --- engagements ------------------------------------------------------------------------------


def test_engagements_lists_each_project_with_its_stages_and_init_makes_a_new_one(
    ready: Project, web: Callable[..., Web]
) -> None:
    server = web(ready, None)
    page = server.get("/")
    assert page.status_code == 200
    assert "Tidewater Ferries Ltd" in page.text and f'href="{P}"' in page.text
    for stage in ("brief: agreed", "segments: valid", "canvas: missing"):
        assert stage in page.text
    assert "Agree the segments with the client" in page.text  # the next step, in the page's words

    made = server.post("/init", {"org": "acme", "project": "growth-2027", "name": "Acme Ltd"})
    assert made.status_code == 200 and made.json() == {"url": "/p/acme/growth-2027"}
    assert (ready.workspace / "clients/acme/projects/growth-2027").is_dir()
    listed = server.get("/").text
    assert "Acme Ltd" in listed and 'href="/p/acme/growth-2027"' in listed
    assert server.get("/p/acme/growth-2027").status_code == 200

    before = files_of(ready.workspace)
    for bad in ({"org": "Acme Ltd", "project": "x"}, {"org": "..", "project": "x"}):
        one_sentence(server.post("/init", bad), 409, "not a valid slug")
    one_sentence(server.post("/init", {"org": "acme"}), 409, "project is empty")
    one_sentence(server.post("/init", content=b"org=acme"), 409, "must be JSON")
    one_sentence(server.post("/init", ["acme"]), 409, "JSON object")
    assert files_of(ready.workspace) == before


def test_a_missing_project_is_a_404_in_one_sentence(
    ready: Project, web: Callable[..., Web]
) -> None:
    server = web(ready, None)
    before = files_of(ready.workspace)
    for path in (f"/p/{ORG}/no-such-project", f"/p/nobody/{SLUG}", f"/p/{ORG}/nope/documents"):
        one_sentence(server.get(path), 404, "bmc init")
    one_sentence(server.get(f"{P}/events"), 404, "no session")
    one_sentence(server.post(f"/p/{ORG}/nope/start", {"skill": "bmc-segments"}), 404, "no project")
    # Asking for a project that is not there creates nothing.
    assert files_of(ready.workspace) == before
    assert not (ready.workspace / "clients" / "nobody").exists()


def test_no_path_parameter_reaches_outside_the_workspace_or_into_another_client(
    ready: Project, web: Callable[..., Web]
) -> None:
    outside = ready.workspace.parent / "outside"
    (outside / "projects/x").mkdir(parents=True)
    (outside / "projects/x/brief.md").write_text("OUTSIDE-SECRET\n", "utf-8")
    (outside / "secret.md").write_text("OUTSIDE-SECRET\n", "utf-8")
    other = ready.workspace / "clients/rival"
    (other / "resources").mkdir(parents=True)
    (other / "resources/plans.md").write_text("RIVAL-SECRET\n", "utf-8")
    server = web(ready, None)

    tricks = [
        "/p/%2E%2E/growth-2027",
        "/p/../outside",
        "/p/..%2F..%2Foutside/x",
        "/p/tidewater%2F..%2F..%2F..%2Foutside/x",
        "/p/tidewater/..%2F..%2F..%2Foutside%2Fprojects%2Fx",
        "/p/rival/..%2F..%2Ftidewater%2Fprojects%2Fgrowth-2027",
        "/p/%2E%2E%2F%2E%2E/x/documents",
        f"{P}/page/..%2F..%2F..%2Foutside%2Fsecret",
        f"{P}/file?path=../../../../outside/secret.md",
        f"{P}/file?path=%2E%2E/%2E%2E/%2E%2E/%2E%2E/outside/secret.md",
        f"{P}/file?path={ready.workspace.parent}/outside/secret.md",
        f"{P}/file?path=../../rival/resources/plans.md",
        f"{P}/file?path=../../../rival/resources/plans.md",
        "/static/..%2F..%2F..%2F..%2Foutside%2Fsecret.md",
        "/static/%2E%2E/app.py",
    ]
    for trick in tricks:
        answer = server.get(trick)
        assert 400 <= answer.status_code < 500, (trick, answer.status_code)
        assert "SECRET" not in answer.text and "def create_app" not in answer.text, trick
    for body in (server.get(P).text, server.get(f"{P}/documents").text):
        assert "RIVAL-SECRET" not in body and "/rival" not in body


# --- a chat -----------------------------------------------------------------------------------


def test_a_chat_streams_words_and_tool_lines_hands_back_and_refuses_to_interrupt(
    ready: Project, scripted: Start, web: Callable[..., Web]
) -> None:
    slow = say("Thinking about the UK routes, one sailing at a time, slowly.")
    slow |= {"expect": {"last_user_text_contains": "Focus on the UK"}}
    slow["fault"] = {"event_gap": 0.1}
    first = {"reply": {"content": [{"type": "text", "text": "Reading the brief first."}]}}
    first["reply"]["content"].append(read_call("toolu_r1", "brief.agreed.md"))
    brief_read = {"tool_results": {"toolu_r1": {"is_error": False, "contains": "Tidewater"}}}
    model = scripted(
        {
            "steps": [
                first,
                say("The brief is clear. **What** should I focus on?") | {"expect": brief_read},
                slow,
                say("Carrying on.") | {"expect": {"last_user_text_contains": "Carry on"}},
            ]
        }
    )
    server = web(ready, model)
    one_sentence(server.post(f"{P}/send", {"text": "Hello"}), 409, "no session is running")
    one_sentence(server.post(f"{P}/stop", {}), 409, "no session is running")
    one_sentence(server.post(f"{P}/start", {"skill": "bmc-nothing"}), 409, "bmc-nothing")
    one_sentence(server.post(f"{P}/start", {"skill": "bmc-canvas"}), 409, "segments")
    one_sentence(server.post(f"{P}/start", {"skill": "bmc-segments", "max_cost": "lots"}), 409)
    assert not (ready.state_dir / "sessions").exists() or not list_sessions(ready)

    started = server.post(f"{P}/start", {"skill": "bmc-segments", "message": "UK first"})
    assert started.status_code == 200, started.text
    one_sentence(server.post(f"{P}/start", {"skill": "bmc-segments"}), 409, "already running")
    events = server.events()
    events.until("WaitingForMessage")
    words = "".join(e["text"] for e in events.of("TextDelta"))
    assert "Reading the brief first." in words and "What** should I focus on?" in words
    [tool] = events.of("ToolLine")
    assert (tool["name"], tool["summary"], tool["is_error"]) == ("read", "brief.agreed.md", False)
    htmls = [e["html"] for e in events.of("ReplyFinished") if e["html"]]
    assert htmls[-1] == "<p>The brief is clear. <strong>What</strong> should I focus on?</p>\n"
    assert events.of("Usage")[-1]["turns"] == 2
    state = server.get(f"{P}/state").json()
    assert state["state"] == "message" and state["turns"] == 2 and state["pending"] is None
    assert "UK first" in model.requests[0]["messages"][0]["content"][0]["text"]
    with pytest.raises(AssertionError, match="no AgreementRequested within"):
        events.until("AgreementRequested", timeout=0.3)  # a hang fails, it does not block

    # The server stopping ends every open stream (so its shutdown is not held by a tab);
    # the tab reconnects with the id it last saw and is sent only what is new.
    server.app.state.hub.end_streams()
    events.ends()
    seen = len(events.seen)
    events = server.events(last_event_id=events.last_id)

    assert server.post(f"{P}/send", {"text": "Focus on the UK"}).status_code == 200
    # A double click on Send: the second message is refused, not queued for later.
    one_sentence(server.post(f"{P}/send", {"text": "Focus on the UK"}), 409, "still working")
    events.until("TextDelta")  # the slow reply is streaming
    # The consultant's words first (so a reload shows what is being answered), then the reply.
    assert [e["type"] for e in events.seen[:2]] == ["ConsultantSaid", "ReplyStarted"]
    assert events.seen[0]["text"] == "Focus on the UK" and events.seen[0]["id"] == seen + 1
    one_sentence(server.post(f"{P}/send", {"text": "Hello?"}), 409, "still working")
    one_sentence(server.post(f"{P}/send", {"text": "   "}), 409, "text is empty")
    one_sentence(server.post(f"{P}/answer", {"agreed": True, "digest": "sha256:0"}), 409)
    assert server.get(f"{P}/state").json()["state"] == "working"
    events.until("WaitingForMessage")

    assert server.post(f"{P}/send", {"text": "Carry on"}).status_code == 200
    events.until("WaitingForMessage")
    assert server.post(f"{P}/stop", {}).status_code == 200
    stopped = events.until("Stopped")
    assert stopped["exit_code"] == 0 and stopped["session_id"] in stopped["reason"]
    assert server.get(f"{P}/state").json()["state"] == "stopped"
    one_sentence(server.post(f"{P}/stop", {}), 409, "no session is running")
    model.assert_finished()

    # The project page now shows the conversation from the journal, and the session.
    page = server.get(P).text
    assert "Reading the brief first." in page and "Focus on the UK" in page
    assert "· read brief.agreed.md" in page
    assert f"Resume {stopped['session_id']}" in page and "waiting for consultant" in page

    # Resume it: the session waits for the consultant, so no model call is made.
    one_sentence(server.post(f"{P}/resume", {"session": "20200101-no-such"}), 409, "20200101")
    resumed = server.post(f"{P}/resume", {"session": stopped["session_id"]})
    assert resumed.status_code == 200, resumed.text
    again = server.events()
    again.until("WaitingForMessage")
    assert server.post(f"{P}/stop", {}).status_code == 200
    again.until("Stopped")
    assert len(model.requests) == 4


# --- the agreement ------------------------------------------------------------------------------


def test_an_agreement_clicked_in_the_page_writes_the_gate_and_the_contact_once(
    ready: Project, scripted: Start, web: Callable[..., Web]
) -> None:
    model = scripted(agreed_then("Agreed: on to the canvas."))
    server = web(ready, model)
    assert server.post(f"{P}/start", {"skill": "bmc-segments"}).status_code == 200
    events = server.events()
    asked = events.until("AgreementRequested")
    document = (ready.project_dir / SEGMENTS_MD).read_bytes()
    assert asked["digest"] == gate.digest(document) and asked["document"] == SEGMENTS_MD
    assert asked["markdown"] == document.decode("utf-8") and asked["scope"] == "UK routes only"
    assert asked["html"].startswith("<h1>Customer Segments")
    assert any(item.startswith("Island commuters") for item in asked["items"])
    assert asked["changed_from"] is None
    assert server.get(f"{P}/state").json()["pending"] == asked
    # A tab closed and opened again (or a second tab) is shown the same agreement.
    assert server.events().until("AgreementRequested") == asked

    one_sentence(server.post(f"{P}/answer", {"agreed": True}), 409, "digest is empty")
    one_sentence(server.post(f"{P}/answer", {"digest": asked["digest"]}), 409, "feedback")
    one_sentence(server.post(f"{P}/send", {"text": "yes"}), 409)  # not a message: an answer
    yes = {"agreed": True, "digest": asked["digest"], "contact": CONTACT}
    assert server.post(f"{P}/answer", yes).status_code == 200
    one_sentence(server.post(f"{P}/answer", yes), 409, "agreement")  # a double click
    recorded = events.until("AgreementRecorded")
    assert recorded["gate"] == GATE
    one_sentence(server.post(f"{P}/answer", yes), 409, "agreement")
    server.stop_at_hand_back(events)
    model.assert_finished()

    assert (ready.project_dir / GATE).read_bytes() == document
    decisions = (ready.project_dir / "decisions.md").read_text("utf-8")
    assert decisions.count("Customer segments agreed") == 1
    assert f"Priya Raman (consultant); {CONTACT} (client)" in decisions
    page = server.get(P).text
    panel = page[page.index('id="decisions-heading"') :]
    assert "Customer segments agreed" in panel and CONTACT in panel
    # Each field of the entry on its own line, as in the file, not run into one paragraph.
    assert "<br />\n<strong>Digest</strong>:" in panel
    assert "<strong>segments</strong> agreed" in page


def test_feedback_from_the_page_reaches_the_model_and_agrees_nothing(
    ready: Project, scripted: Start, web: Callable[..., Web]
) -> None:
    words = "Merge the two island segments, please"
    model = scripted(
        {
            "steps": [
                ask_agreement(),
                say("I will merge them.") | {"expect": after_agreement(words)},
            ]
        }
    )
    server = web(ready, model)
    server.post(f"{P}/start", {"skill": "bmc-segments"})
    events = server.events()
    asked = events.until("AgreementRequested")
    answer = {"agreed": False, "digest": asked["digest"], "feedback": words, "contact": "X"}
    assert server.post(f"{P}/answer", answer).status_code == 200
    one_sentence(server.post(f"{P}/answer", answer), 409)
    events.until("WaitingForMessage")
    assert not events.of("AgreementRecorded")
    server.post(f"{P}/stop", {})
    events.until("Stopped")
    model.assert_finished()
    assert not (ready.project_dir / GATE).exists()
    assert "segments agreed" not in (ready.project_dir / "decisions.md").read_text("utf-8")


def test_a_document_changed_after_it_was_shown_agrees_nothing_and_is_shown_again(
    ready: Project, scripted: Start, web: Callable[..., Web]
) -> None:
    model = scripted(agreed_then("Thank you."))
    server = web(ready, model)
    server.post(f"{P}/start", {"skill": "bmc-segments"})
    events = server.events()
    first = events.until("AgreementRequested")

    path = ready.project_dir / SEGMENTS_MD
    path.write_text(path.read_text("utf-8") + "\nA note the partner added.\n", "utf-8")
    old = {"agreed": True, "digest": first["digest"], "contact": CONTACT}
    assert server.post(f"{P}/answer", old).status_code == 200
    second = events.until("AgreementRequested")
    assert not (ready.project_dir / GATE).exists()  # the yes to the old bytes agreed nothing
    assert second["changed_from"] == first["digest"]
    assert second["digest"] == gate.digest(path.read_bytes()) != first["digest"]
    assert "A note the partner added." in second["html"]
    assert server.get(f"{P}/state").json()["pending"]["digest"] == second["digest"]

    new = {"agreed": True, "digest": second["digest"], "contact": CONTACT}
    assert server.post(f"{P}/answer", new).status_code == 200
    events.until("AgreementRecorded")
    server.stop_at_hand_back(events)
    model.assert_finished()
    assert (ready.project_dir / GATE).read_bytes() == path.read_bytes()
    decisions = (ready.project_dir / "decisions.md").read_text("utf-8")
    assert decisions.count("Customer segments agreed") == 1


def test_a_pending_agreement_survives_a_restart_of_the_server(
    ready: Project, scripted: Start, web: Callable[..., Web]
) -> None:
    model = scripted(agreed_then("Agreed, thank you."))
    before = web(ready, model)
    before.post(f"{P}/start", {"skill": "bmc-segments"})
    tab = before.events()
    asked = tab.until("AgreementRequested")
    before.close()  # the server stops: the running session saves itself, waiting
    [session] = list_sessions(ready)
    assert session.status == WAITING_AGREEMENT

    # The same workspace: the same token, so the open tab's stream reconnects (with the id
    # it last saw, before any page load) and is shown the agreement again.
    after = web(ready, model)
    events = after.events(last_event_id=tab.last_id)
    again = events.until("AgreementRequested")
    page = after.get(P)
    assert page.status_code == 200 and 'data-live="yes"' in page.text
    assert again["digest"] == asked["digest"] and again["markdown"] == asked["markdown"]
    assert len(model.requests) == 1  # presented again from the journal, no model call
    yes = {"agreed": True, "digest": again["digest"], "contact": CONTACT}
    assert after.post(f"{P}/answer", yes).status_code == 200
    events.until("AgreementRecorded")
    after.stop_at_hand_back(events)
    model.assert_finished()
    assert (ready.project_dir / GATE).read_bytes() == (ready.project_dir / SEGMENTS_MD).read_bytes()
    assert CONTACT in (ready.project_dir / "decisions.md").read_text("utf-8")


def _terminal_at_the_agreement(ready: Project, model: ScriptedModel) -> subprocess.Popen[bytes]:
    """A terminal's `bmc run` waiting at the agreement prompt (the lock let go meanwhile)."""
    env = {
        **os.environ,
        "ANTHROPIC_BASE_URL": model.base_url,
        "ANTHROPIC_API_KEY": "test",
        "BMC_MAX_RETRIES": "0",
    }
    where = ["--workspace", str(ready.workspace), "--org", ORG, "--project", SLUG]
    process = subprocess.Popen(
        [sys.executable, "-m", "bmc.cli", "run", "bmc-segments", *where],
        stdin=subprocess.PIPE,  # held open: the run waits at the agreement prompt
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.monotonic() + 30
    holder = ready.state_dir / "session.holder.json"
    while not (len(model.requests) == 1 and _asked(ready) and not holder.exists()):
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("the run never reached the agreement prompt")
        time.sleep(0.05)
    return process


def test_after_kill_9_at_an_agreement_opening_the_page_presents_it_again(
    ready: Project, scripted: Start, web: Callable[..., Web]
) -> None:
    """A terminal's run killed at the agreement: the journal says it waits for the agreement
    and names the process that asked, which is gone, so the page presents it again."""
    model = scripted(agreed_then("Agreed, thank you."))
    process = _terminal_at_the_agreement(ready, model)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)

    server = web(ready, model)
    server.get(P)
    events = server.events()
    asked = events.until("AgreementRequested")
    assert asked["digest"] == gate.digest((ready.project_dir / SEGMENTS_MD).read_bytes())
    yes = {"agreed": True, "digest": asked["digest"]}
    assert server.post(f"{P}/answer", yes).status_code == 200
    events.until("AgreementRecorded")
    server.stop_at_hand_back(events)
    model.assert_finished()
    assert (ready.project_dir / GATE).is_file()


def test_an_agreement_waiting_in_a_live_terminal_is_left_to_it(
    ready: Project, scripted: Start, web: Callable[..., Web]
) -> None:
    model = scripted(agreed_then("Agreed, thank you."))
    process = _terminal_at_the_agreement(ready, model)
    try:
        server = web(ready, model)
        [session] = list_sessions(ready)
        assert session.status == "waiting for agreement" and session.waiting_in == process.pid
        page = server.get(P).text
        # Not taken over: no run in this server, the terminal still holds the question.
        one_sentence(server.get(f"{P}/events"), 404, "no session")
        assert "waiting for agreement" in page
        assert not (ready.project_dir / GATE).exists()
    finally:
        process.kill()
        process.wait(timeout=10)


def _asked(project: Project) -> bool:
    journals = list((project.state_dir / "sessions").glob("*.jsonl"))
    return bool(journals) and b"request_agreement" in journals[0].read_bytes()


# --- nothing runs as code ---------------------------------------------------------------------


def test_hostile_research_and_replies_are_shown_as_text_in_every_page(
    ready: Project, scripted: Start, web: Callable[..., Web]
) -> None:
    notes_read = {"tool_results": {"toolu_r1": {"is_error": False, "contains": "onerror"}}}
    first = {"reply": {"content": [{"type": "text", "text": "I read the notes. " + HOSTILE}]}}
    first["reply"]["content"].append(read_call("toolu_r1", "resources/hostile-notes.md"))
    second = ask_agreement(scope=HOSTILE)
    second["reply"]["content"].insert(0, {"type": "text", "text": "The notes say: " + HOSTILE})
    second["expect"] = notes_read
    model = scripted(
        {
            "steps": [
                first,
                second,
                say("Agreed. " + HOSTILE) | {"expect": after_agreement()},
                say("Noted.") | {"expect": {"last_user_text_contains": "onerror"}},
            ]
        }
    )
    server = web(ready, model)
    # A research file carrying it, uploaded as client material...
    uploaded = server.post(
        f"{P}/upload",
        files={"file": ("hostile-notes.md", f"# Notes\n\n{HOSTILE}\n".encode(), "text/markdown")},
    )
    assert uploaded.status_code == 200, uploaded.text
    # ... and a document quoting it, saved from the page's editor (still a valid document).
    segments = (ready.project_dir / SEGMENTS_MD).read_text("utf-8")
    quoted = segments.replace("## Overview\n\n", f"## Overview\n\n{HOSTILE}\n\n", 1)
    saved = server.post(f"{P}/save", {"path": SEGMENTS_MD, "text": quoted})
    assert saved.status_code == 200, saved.text
    # ... and a client named with it.
    named = server.post("/init", {"org": "hostile", "project": "x", "name": HOSTILE[:60]})
    assert named.status_code == 200

    server.post(f"{P}/start", {"skill": "bmc-segments", "message": HOSTILE})
    events = server.events()
    asked = events.until("AgreementRequested")
    yes = {"agreed": True, "digest": asked["digest"], "contact": HOSTILE[:150]}
    assert server.post(f"{P}/answer", yes).status_code == 200
    events.until("WaitingForMessage")
    assert server.post(f"{P}/send", {"text": HOSTILE}).status_code == 200
    server.stop_at_hand_back(events)
    model.assert_finished()

    replies = [e["html"] for e in events.of("ReplyFinished") if "Beware" in e["html"]]
    assert len(replies) == 3
    for number, html in enumerate(replies):
        assert_inert(html, f"ReplyFinished {number}")
        assert_shown_escaped(html, f"ReplyFinished {number}")
    assert_inert(asked["html"], "AgreementRequested")
    assert_shown_escaped(asked["html"], "AgreementRequested")

    documents = server.get(f"{P}/documents").text
    assert_inert(documents, "documents")
    assert_shown_escaped(documents, "documents")
    assert 'href="https://example.com/report"' in documents  # a safe autolink still works

    page = server.get(P).text
    assert_inert(page, "project page")
    log = page[page.index('id="log"') : page.index('id="usage"')]
    assert log.count(SCRIPT_SHOWN) >= 4  # three replies and the consultant's message
    assert_shown_escaped(log, "transcript")
    panel = page[page.index('id="decisions-heading"') :]
    assert SCRIPT_SHOWN in panel and IMG_SHOWN in panel, "decisions panel"

    engagements = server.get("/").text
    assert_inert(engagements, "engagements")
    assert SCRIPT_SHOWN in engagements

    client_page = server.get(f"{P}/page/segments")
    assert client_page.status_code == 200
    assert_inert(client_page.text, "segments page")
    assert "script-src" not in client_page.headers["content-security-policy"]

    stream = server.get(f"{P}/events").text  # the whole run, replayed to a new tab
    assert "<script>" not in "".join(
        json.loads(line[6:]).get("html", "") for line in stream.splitlines() if line[:6] == "data: "
    )


# --- documents: read, edit, check -----------------------------------------------------------


def test_only_the_engagements_documents_can_be_read_or_saved_and_a_save_is_checked(
    ready: Project, web: Callable[..., Web]
) -> None:
    server = web(ready, None)
    shown = server.get(f"{P}/file", params={"path": SEGMENTS_MD})
    assert shown.status_code == 200
    assert shown.json()["text"] == (ready.project_dir / SEGMENTS_MD).read_text("utf-8")
    assert server.get(f"{P}/file", params={"path": "brief.md"}).status_code == 200

    before = files_of(ready.workspace)
    refused = [
        GATE,
        "brief.agreed.md",
        "decisions.md",
        ".bmc/serve-token",
        ".gitignore",
        "../../org.md",
        "../../resources/index.md",
        "segments/../decisions.md",
        "./segments/segments.md",
        "segments//segments.md",
        "/etc/passwd",
        str(ready.project_dir / SEGMENTS_MD),
        "",
    ]
    for path in refused:
        one_sentence(server.get(f"{P}/file", params={"path": path}), 409, "documents")
        answer = server.post(f"{P}/save", {"path": path, "text": "# overwritten\n"})
        assert answer.status_code == 409 and "\n" not in answer.json()["error"], path
    assert files_of(ready.workspace) == before

    draft = (ready.project_dir / DRAFT).read_text("utf-8")
    broken = draft.replace("I don't need a faster boat", "I badly want a faster boat")
    refusal = server.post(f"{P}/save", {"path": DRAFT, "text": broken})
    one_sentence(refusal, 422, "was not saved")
    problems = refusal.json()["problems"]
    assert problems and any("faster boat" in p for p in problems), problems
    one_sentence(server.post(f"{P}/save", {"path": DRAFT, "text": 5}), 409, "text")
    one_sentence(server.post(f"{P}/save", {"path": DRAFT, "text": "x" * 1_000_001}), 409, "1 MB")
    assert files_of(ready.workspace) == before

    edited = draft.replace("Reliability dominates", "Reliability, above all, dominates")
    saved = server.post(f"{P}/save", {"path": DRAFT, "text": edited})
    assert saved.status_code == 200 and saved.json() == {"saved": DRAFT}
    assert (ready.project_dir / DRAFT).read_text("utf-8") == edited
    documents = server.get(f"{P}/documents").text
    assert "Reliability, above all, dominates" in documents
    assert "draft: island commuters" in documents.lower() and "state-valid" in documents


def test_validate_render_and_agree_outside_a_chat(ready: Project, web: Callable[..., Web]) -> None:
    server = web(ready, None)
    checked = server.post(f"{P}/validate", {})
    assert checked.status_code == 200
    reports = {r["path"]: r for r in checked.json()["reports"]}
    assert reports[SEGMENTS_MD]["status"] == "valid" and not reports[SEGMENTS_MD]["problems"]

    one_sentence(server.get(f"{P}/page/canvas"), 409, "cannot be made yet")
    one_sentence(server.get(f"{P}/page/elsewhere"), 404, "canvas or segments")
    client_page = server.get(f"{P}/page/segments", params={"download": "1"})
    assert client_page.status_code == 200 and "Island commuters" in client_page.text
    assert client_page.headers["content-disposition"] == (
        f'attachment; filename="{ORG}-{SLUG}-segments.html"'
    )
    rendered = server.post(f"{P}/render", {})
    assert rendered.status_code == 200 and "segments/segments.html" in rendered.json()["written"]
    assert (ready.project_dir / "segments/segments.html").is_file()

    digest = gate.digest((ready.project_dir / SEGMENTS_MD).read_bytes())
    one_sentence(server.post(f"{P}/agree", {"stage": "nothing", "digest": digest}), 409, "stage")
    one_sentence(server.post(f"{P}/agree", {"stage": "segments"}), 409, "digest is empty")
    stale = {"stage": "segments", "digest": "sha256:" + "0" * 64, "contact": CONTACT}
    one_sentence(server.post(f"{P}/agree", stale), 409, "nothing was agreed")
    assert not (ready.project_dir / GATE).exists()

    agreed = server.post(f"{P}/agree", {"stage": "segments", "digest": digest, "contact": CONTACT})
    assert agreed.status_code == 200 and agreed.json() == {"agreed": GATE}
    assert (ready.project_dir / GATE).read_bytes() == (ready.project_dir / SEGMENTS_MD).read_bytes()
    decisions = (ready.project_dir / "decisions.md").read_text("utf-8")
    assert decisions.count("Customer segments agreed") == 1 and CONTACT in decisions
    again = server.post(f"{P}/agree", {"stage": "segments", "digest": digest, "contact": CONTACT})
    assert again.status_code in (200, 409)
    assert (ready.project_dir / "decisions.md").read_text("utf-8").count("segments agreed") == 1
    assert "segments: agreed" in server.get("/").text
    assert server.get(f"{P}/state").json()["state"] == "stopped"


# --- client material --------------------------------------------------------------------------


def test_uploads_go_into_the_research_and_bad_ones_change_nothing(
    ready: Project, web: Callable[..., Web]
) -> None:
    server = web(ready, None)
    resources = ready.resources_dir
    text = "# Harbour survey\n\nHauliers want a 05:30 sailing.\n"
    added = server.post(f"{P}/upload", files={"file": ("harbour.md", text.encode(), "text/plain")})
    assert added.status_code == 200 and "resources/harbour.md" in added.json()["imported"]
    assert (resources / "harbour.md").read_text("utf-8") == text

    before = files_of(ready.workspace)
    one_sentence(
        server.post(f"{P}/upload", files={"file": ("harbour.md", b"# other\n", "text/plain")}),
        409,
        "already exists",
    )
    one_sentence(
        server.post(f"{P}/upload", files={"file": ("tool.exe", b"MZ\x90\x00", "application/x")}),
        409,
        "not a file bmc can read",
    )
    one_sentence(
        server.post(f"{P}/upload", files={"file": ("latin.md", b"caf\xe9\n", "text/plain")}),
        409,
        "UTF-8",
    )
    one_sentence(
        server.post(f"{P}/upload", files={"file": ("broken.docx", b"not a zip", "application/x")}),
        409,
        "broken.docx",
    )
    huge = server.post(
        f"{P}/upload",
        content=b"--x--\r\n",
        headers={
            "content-type": "multipart/form-data; boundary=x",
            "content-length": str(60 * 1024 * 1024),
        },
    )
    one_sentence(huge, 409, "larger than 50 MB")
    one_sentence(server.post(f"{P}/upload", data={"note": "no file"}), 409, "choose a file")
    one_sentence(server.post(f"{P}/upload", files={"file": ("", b"", "text/plain")}), 409)
    assert files_of(ready.workspace) == before

    # A path in the name never leaves resources/.
    sneaky = server.post(
        f"{P}/upload", files={"file": ("../../../escape.md", b"# Escape\n", "text/plain")}
    )
    assert sneaky.status_code == 200
    assert (resources / "escape.md").is_file() and not (ready.workspace / "escape.md").exists()

    docx = pytest.importorskip("docx")
    document = docx.Document()
    document.add_heading("Freight interviews", level=1)
    document.add_paragraph("Hauliers would pay for a guaranteed 05:30 freight sailing.")
    data = io.BytesIO()
    document.save(data)
    word = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    imported = server.post(
        f"{P}/upload", files={"file": ("freight-interviews.docx", data.getvalue(), word)}
    )
    assert imported.status_code == 200, imported.text
    assert "resources/freight-interviews.md" in imported.json()["imported"]
    converted = (resources / "freight-interviews.md").read_text("utf-8")
    assert "guaranteed 05:30 freight sailing" in converted
    assert "freight-interviews.md" in (resources / "index.md").read_text("utf-8")


# --- the API key ------------------------------------------------------------------------------


class MemoryKeyring(KeyringBackend):
    """A keyring that keeps passwords in this process only."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.kept: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.kept.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.kept[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.kept.pop((service, username), None)


class BrokenKeyring(MemoryKeyring):
    def set_password(self, service: str, username: str, password: str) -> None:
        raise RuntimeError(f"no keyring daemon (tried to keep {password})")


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    import keyring

    before = keyring.get_keyring()
    kept = MemoryKeyring()
    keyring.set_keyring(kept)
    yield kept
    keyring.set_keyring(before)


def test_a_key_entered_in_the_page_goes_to_the_keyring_and_nowhere_else(
    ready: Project, web: Callable[..., Web], memory_keyring: MemoryKeyring
) -> None:
    import keyring

    server = web(ready, None)  # a consultant's own server: no client, no key in the env
    banner = "No Anthropic API key is set up"
    assert banner in server.get("/").text and banner in server.get(P).text
    before = files_of(ready.workspace)

    key = "sk-ant-api03-" + "Kq7" * 20
    bad = "sk-ant-api03-" + "Zx9" * 10 + " with a space"
    one_sentence(server.post("/key", {"key": "short"}), 409, "does not look like")
    refused = server.post("/key", {"key": bad})
    one_sentence(refused, 409, "does not look like")
    assert "Zx9" not in refused.text
    keyring.set_keyring(BrokenKeyring())
    broken = server.post("/key", {"key": key})
    one_sentence(broken, 409, "ANTHROPIC_API_KEY")
    assert key not in broken.text
    keyring.set_keyring(memory_keyring)

    stored = server.post("/key", {"key": f"  {key}\n"})
    assert stored.status_code == 200 and stored.json() == {"stored": True}
    assert memory_keyring.kept == {("bmc", "anthropic-api-key"): key}
    bodies = [stored.text]
    for path in ("/", P, f"{P}/documents", f"{P}/state"):
        answer = server.get(path)
        assert answer.status_code == 200
        bodies.append(answer.text)
    assert banner not in bodies[1] and banner not in bodies[2]
    assert not any(key in body or "Kq7Kq7" in body for body in bodies)
    after = files_of(ready.workspace)
    assert after == before
    for folder in (ready.workspace, ready.workspace / ".bmc"):
        for file in folder.rglob("*") if folder.is_dir() else []:
            if file.is_file():
                assert key.encode() not in file.read_bytes(), file
