"""`bmc serve`: the routes of the web workspace (SPEC section 12).

The page talks to the engine only through its API (`bmc.engine.api`: start, resume, send,
answer, stop) and its events, relayed by `live.Hub` as server-sent events; what it shows of
documents comes from the same rules as the command line (`views`). Every state-changing
route is a JSON POST that the page's script sends with the anti-forgery header; `security`
checks the token, the Host and the origin before any route runs.

Bad input gets one sentence and changes nothing: each route answers `{"error": ...}` with
a 4xx status, from the same `BmcError` sentences the commands print.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from bmc.documents import gate, stages
from bmc.documents.render import render_pages, render_project
from bmc.documents.skills import check_requires, scan_skills
from bmc.documents.validate import make_validator, validate_project
from bmc.engine import agreement
from bmc.engine.lock import ProjectLock, live_holder
from bmc.errors import BmcError, PrerequisiteError, UserError
from bmc.web import keys, views
from bmc.web.live import Hub, Live
from bmc.web.security import ServerSecret
from bmc.workspace.paths import Project, atomic_write, init_project, locate

HERE = Path(__file__).parent
# Names the static files in the page, so a new bmc's script is never taken from a cache.
STATIC_VERSION = hashlib.sha256(
    b"".join(path.read_bytes() for path in sorted((HERE / "static").iterdir()))
).hexdigest()[:10]
MAX_MESSAGE = 20_000  # characters: a chat message, or an opening
MAX_DOCUMENT = 1_000_000  # bytes: a document saved from the page's editor


@dataclass
class ServeOptions:
    """What `bmc serve` was started with; a page's run options are added per run."""

    workspace: Path
    client: Any = None  # tests pass a client for the scripted model
    # `bmc demo --serve`: a client per skill, each pointed at that stage's scripted model.
    clients: dict[str, Any] = field(default_factory=dict)
    skills_dir: Path | None = None
    demo_lines: dict[str, list[str]] = field(default_factory=dict)  # skill -> lines to offer


def create_app(options: ServeOptions, secret: ServerSecret) -> Starlette:
    """The web workspace over `options.workspace`; wrap it in `security.guard`."""
    hub = Hub(lambda text: str(views.safe_markdown(text)))
    templates = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # everything from a document, a model or a file is escaped
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )

    def page(name: str, **context: Any) -> HTMLResponse:
        html = templates.get_template(name).render(
            csrf=secret.csrf_token(), version=STATIC_VERSION, **context
        )
        return HTMLResponse(html)

    def project_of(request: Request) -> Project:
        # Threat: a path parameter naming another folder; `locate` checks both slugs
        # (letters, digits, hyphens) before any path is built from them.
        try:
            return locate(
                options.workspace, request.path_params["org"], request.path_params["slug"]
            )
        except UserError as err:  # no such project (or no such name): a 404, any method
            raise NotFound(str(err)) from None

    async def engagements(request: Request) -> Response:
        return page(
            "engagements.html",
            engagements=views.engagements(options.workspace),
            workspace=str(options.workspace),
            key_missing=not keys.have_key(options.client or options.clients or None),
        )

    async def init(request: Request) -> Response:
        body = await _json(request)
        project = init_project(
            options.workspace,
            _text(body, "org", 60),
            _text(body, "project", 60),
            _text(body, "name", 200, required=False) or None,
        )
        return JSONResponse({"url": f"/p/{project.org}/{project.slug}"})

    async def project_page(request: Request) -> Response:
        project = project_of(request)
        listed = await run_in_threadpool(views.sessions, project)
        live = hub.get(project)
        if live is None or not live.running:
            live = _present_pending_agreement(project, listed) or live
        running = bool(live and live.running)

        def render() -> HTMLResponse:
            # Reading the documents and rendering take tens of milliseconds: all of it off
            # the event loop, so the page's script, styles and live events are not held up.
            # One validation serves the stage strip and the documents panel.
            reports = validate_project(project)
            return page(
                "project.html",
                project=project,
                org_name=project.org_name(),
                status=views.page_status(project, reports),
                skills=_startable(project),
                sessions=listed,
                transcript=[] if running else views.transcript(project, None),
                live=live,
                holder=None if running else live_holder(project),
                decisions=views.decisions(project),
                documents=views.documents(project, reports),
                key_missing=not keys.have_key(options.client or options.clients or None),
                demo_lines=options.demo_lines,
            )

        return await run_in_threadpool(render)

    def _present_pending_agreement(project: Project, listed: list[Any]) -> Live | None:
        """A session left waiting for an agreement (a closed tab, a restart, kill -9) is
        resumed so the engine presents the agreement again: no model call is made before
        the person answers. One still waiting in a live window elsewhere (a terminal's
        prompt) is left to it: `bmc agree` or that window answers it."""
        waiting = [
            s for s in listed if s.status == "waiting for agreement" and s.waiting_in is None
        ]
        if not waiting or live_holder(project) is not None:
            return None
        try:
            return hub.begin(project, lambda: _resume(project, waiting[0].id, {}))
        except BmcError:
            return None

    def _startable(project: Project) -> list[dict[str, str]]:
        found = []
        for skill in scan_skills(options.skills_dir).skills:
            try:
                check_requires(skill, project)
                blocked = ""
            except PrerequisiteError as err:
                blocked = str(err)
            found.append({"name": skill.name, "blocked": blocked, "what": skill.description})
        return found

    def _run_options(body: dict[str, Any], skill: str | None = None) -> Any:
        from bmc.engine.api import RunOptions, make_client
        from bmc.engine.loop import Limits

        max_cost = body.get("max_cost")
        try:
            cost = float(max_cost) if max_cost not in (None, "") else None
        except (TypeError, ValueError):
            raise UserError("the cost budget must be a number of dollars, e.g. 5.") from None
        provider = str(body.get("provider") or "anthropic")
        if provider not in ("anthropic", "bedrock", "vertex"):
            raise UserError("the provider must be anthropic, bedrock or vertex.")
        client = (
            options.clients.get(skill or "")
            or options.client
            or make_client(provider, api_key=keys.stored_key())
        )
        return RunOptions(
            model=(str(body.get("model") or "").strip() or None),
            skills_dir=options.skills_dir,
            limits=Limits(max_cost=cost),
            agreed_as=(str(body.get("as") or "").strip() or None),
            provider=provider,
            client=client,
        )

    def _resume(project: Project, session_id: str | None, body: dict[str, Any]) -> Any:
        from bmc.engine import api

        return api.resume(project, session_id, _run_options(body, _skill_of(project, session_id)))

    async def start(request: Request) -> Response:
        from bmc.engine import api

        project = project_of(request)
        body = await _json(request)
        skill = _text(body, "skill", 100)
        opening = _text(body, "message", MAX_MESSAGE, required=False) or None
        _not_running(project)
        hub.begin(
            project, lambda: api.start(project, skill, _run_options(body, skill), opening), opening
        )
        return JSONResponse({"started": skill})

    async def resume(request: Request) -> Response:
        project = project_of(request)
        body = await _json(request)
        session_id = _text(body, "session", 100, required=False) or None
        _not_running(project)
        hub.begin(project, lambda: _resume(project, session_id, body))
        return JSONResponse({"resumed": session_id or "latest"})

    def _skill_of(project: Project, session_id: str | None) -> str | None:
        found = [s for s in views.sessions(project) if session_id in (None, s.id)]
        return found[0].skill if found else None

    def _not_running(project: Project) -> None:
        live = hub.running(project)
        if live is not None:
            raise UserError("a session is already running in this project: stop it first.")
        holder = live_holder(project)
        if holder is not None:
            raise UserError(_holder_sentence(project, holder))

    def _live(project: Project) -> Live:
        live = hub.running(project)
        if live is None:
            raise UserError("no session is running in this project: start or resume one.")
        return live

    async def send(request: Request) -> Response:
        project = project_of(request)
        body = await _json(request)
        _live(project).send(_text(body, "text", MAX_MESSAGE))
        return JSONResponse({"sent": True})

    async def answer(request: Request) -> Response:
        project = project_of(request)
        body = await _json(request)
        digest = _text(body, "digest", 100)
        if body.get("agreed") is True:
            reply = agreement.Answer(
                True, digest, contact=_text(body, "contact", 200, required=False)
            )
        else:
            feedback = _text(body, "feedback", MAX_MESSAGE)
            reply = agreement.Answer(False, digest, feedback=feedback)
        _live(project).answer(reply)
        return JSONResponse({"answered": True})

    async def stop(request: Request) -> Response:
        _live(project_of(request)).stop()
        return JSONResponse({"stopping": True})

    async def events(request: Request) -> Response:
        project = project_of(request)
        live = hub.get(project)
        if live is None or not live.running:
            # A tab left open across a restart reconnects here before any page load: a
            # session waiting for an agreement is presented again to it as well.
            listed = await run_in_threadpool(views.sessions, project)
            live = _present_pending_agreement(project, listed) or live
        if live is None:
            raise UserError("no session has run in this project since the server started.")
        after = live.after(
            request.headers.get("last-event-id") or request.query_params.get("after")
        )
        return StreamingResponse(
            _sse(live.subscribe(after), request.is_disconnected),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    async def documents_fragment(request: Request) -> Response:
        project = project_of(request)

        def render() -> HTMLResponse:
            # With the stages and the decisions log as they are now, for the page to refresh.
            reports = validate_project(project)
            now = {
                "status": views.page_status(project, reports),
                "decisions": views.decisions(project),
            }
            documents = views.documents(project, reports)
            return page("documents.html", project=project, documents=documents, now=now)

        return await run_in_threadpool(render)

    async def state(request: Request) -> Response:
        project = project_of(request)
        live = hub.get(project)
        holder = live_holder(project)
        return JSONResponse(
            {
                "state": live.state if live else "stopped",
                "pending": live.pending if live else None,
                "turns": live.turns if live else 0,
                "cost": live.cost if live else 0.0,
                "holder": _holder_sentence(project, holder)
                if holder and not (live and live.running)
                else None,
            }
        )

    async def client_page(request: Request) -> Response:
        """The canvas or segments page `bmc render` would write, made now, not written."""
        project = project_of(request)
        wanted = {"canvas": "canvas/canvas.html", "segments": "segments/segments.html"}
        relative = wanted.get(request.path_params["which"])
        if relative is None:
            return _error(UserError("there is no such page: canvas or segments."), 404)
        pages = dict(await run_in_threadpool(render_pages, project))
        if relative not in pages:
            raise PrerequisiteError(f"{relative} cannot be made yet: its document does not exist.")
        headers = {
            # Our own page, self-contained: its styles are inline and nothing may run.
            "content-security-policy": (
                "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                "frame-ancestors 'self'"
            ),
        }
        if request.query_params.get("download"):
            name = f"{project.org}-{project.slug}-{Path(relative).name}"
            headers["content-disposition"] = f'attachment; filename="{name}"'
        return HTMLResponse(pages[relative], headers=headers)

    async def file_text(request: Request) -> Response:
        """A governed document's exact text, for the editor (only those the page lists)."""
        project = project_of(request)
        path = _governed(project, request.query_params.get("path", ""))
        try:
            data = (project.project_dir / path).read_bytes()
        except FileNotFoundError:
            data = b""
        text = data.decode("utf-8", errors="replace")
        return JSONResponse({"path": path, "text": text, "digest": gate.digest(data)})

    async def save(request: Request) -> Response:
        """A person's edit, checked by the same rules as the model's writes; nothing is
        written when they find problems. Saving changes the file's bytes, so the model's
        hand-edit rule then refuses to overwrite it before reading it again."""
        project = project_of(request)
        body = await _json(request)
        path = _governed(project, _text(body, "path", 300))
        text = body.get("text")
        if not isinstance(text, str) or len(text.encode("utf-8")) > MAX_DOCUMENT:
            raise UserError("the document must be text of at most 1 MB.")
        started_from = body.get("digest")
        with ProjectLock(project).hold("the web page (a saved edit)"):
            # A stale page: the file changed (the model wrote it, a colleague saved it) since
            # the editor opened it, and saving would silently drop that change.
            if isinstance(started_from, str) and started_from != _digest_of(project, path):
                raise UserError(
                    f"{path} changed since you opened it: nothing was saved; copy your edit, "
                    "reload the page and edit the new version."
                )
            problems, _warnings = make_validator(project)(path, text)
            if problems:
                return JSONResponse(
                    {
                        "error": f"{path} was not saved: fix the problems first.",
                        "problems": problems,
                    },
                    status_code=422,
                )
            atomic_write(project.project_dir / path, text)
        return JSONResponse({"saved": path})

    def _digest_of(project: Project, path: str) -> str:
        try:
            return gate.digest((project.project_dir / path).read_bytes())
        except FileNotFoundError:
            return gate.digest(b"")

    async def proposal(request: Request) -> Response:
        """What `bmc agree STAGE` would show, for agreeing outside a chat in the page."""
        project = project_of(request)
        stage = stages.packaged().named(request.query_params.get("stage", ""))
        ready = await run_in_threadpool(agreement.check_ready, project, stage)
        shown = asdict(agreement.presented(ready, ""))
        shown["html"] = str(views.safe_markdown(shown["markdown"]))
        return JSONResponse(shown)

    def _governed(project: Project, path: str) -> str:
        # Threat: a path parameter reaching outside the project, or at a gate, the log or
        # .bmc/: only the documents the page itself lists can be read or saved here.
        listed = {d.path for d in views.documents(project)}
        listed |= {"brief.md", "hypotheses.md"}
        if path not in listed or path.endswith(".agreed.md"):
            raise UserError(f"{path!r} is not one of this engagement's documents.")
        return path

    async def validate(request: Request) -> Response:
        reports = validate_project(project_of(request))
        return JSONResponse({"reports": [r.__dict__ for r in reports]})

    async def render(request: Request) -> Response:
        project = project_of(request)
        with ProjectLock(project).hold("the web page (render)"):
            written = render_project(project)
        return JSONResponse({"written": [str(p.relative_to(project.project_dir)) for p in written]})

    async def agree_outside(request: Request) -> Response:
        """`bmc agree` from the page: the same flow, answered by the click that sent this."""
        project = project_of(request)
        body = await _json(request)
        stage = stages.packaged().named(_text(body, "stage", 40))
        digest = _text(body, "digest", 100)
        contact = _text(body, "contact", 200, required=False)
        if hub.running(project) is not None:
            raise UserError("a session is running in this project: agree in its chat.")
        try:
            result: agreement.Result | None = agreement.agree_outside(
                project,
                stage,
                scope=_text(body, "scope", 2000, required=False),
                consultant=agreement.consultant_name(
                    _text(body, "as", 200, required=False) or None
                ),
                ask=_one_answer(agreement.Answer(True, digest, contact=contact)),
                notify=lambda _text: None,
            )
        except agreement.Unanswered:  # the click's digest was not the document's: asked again
            result = None
        if result is None or isinstance(result, agreement.Changed):
            raise UserError(
                f"{stage.document} changed since it was shown: nothing was agreed; look again."
            )
        return JSONResponse({"agreed": stage.gate})

    async def versions_of(request: Request) -> Response:
        """A stage's agreed versions, and what changed between two of them (or one and the
        working document): `?a=1&b=working`, defaults the latest version and the document."""
        from bmc.web.versions_page import versions_page

        project = project_of(request)
        query = request.query_params
        try:
            view = await run_in_threadpool(
                versions_page, project, request.path_params["stage"], query.get("a"), query.get("b")
            )
        except UserError as err:  # an unknown stage
            raise NotFound(str(err)) from None
        return page(
            "versions.html",
            project=project,
            org_name=project.org_name(),
            view=view,
            key_missing=False,
        )

    async def upload(request: Request) -> Response:
        from bmc.web.uploads import receive

        project = project_of(request)
        with ProjectLock(project).hold("the web page (an upload)"):
            summary = await receive(project, request)
        return JSONResponse({"imported": summary})

    async def store_key(request: Request) -> Response:
        body = await _json(request)
        keys.store_key(_text(body, "key", 400))
        return JSONResponse({"stored": True})

    routes = [
        Route("/", engagements),
        Route("/init", _guarded(init), methods=["POST"]),
        Route("/key", _guarded(store_key), methods=["POST"]),
        Route("/p/{org}/{slug}", _guarded(project_page)),
        Route("/p/{org}/{slug}/events", _guarded(events)),
        Route("/p/{org}/{slug}/state", _guarded(state)),
        Route("/p/{org}/{slug}/documents", _guarded(documents_fragment)),
        Route("/p/{org}/{slug}/file", _guarded(file_text)),
        Route("/p/{org}/{slug}/page/{which}", _guarded(client_page)),
        Route("/p/{org}/{slug}/start", _guarded(start), methods=["POST"]),
        Route("/p/{org}/{slug}/resume", _guarded(resume), methods=["POST"]),
        Route("/p/{org}/{slug}/send", _guarded(send), methods=["POST"]),
        Route("/p/{org}/{slug}/answer", _guarded(answer), methods=["POST"]),
        Route("/p/{org}/{slug}/stop", _guarded(stop), methods=["POST"]),
        Route("/p/{org}/{slug}/save", _guarded(save), methods=["POST"]),
        Route("/p/{org}/{slug}/validate", _guarded(validate), methods=["POST"]),
        Route("/p/{org}/{slug}/render", _guarded(render), methods=["POST"]),
        Route("/p/{org}/{slug}/agree", _guarded(agree_outside), methods=["POST"]),
        Route("/p/{org}/{slug}/proposal", _guarded(proposal)),
        Route("/p/{org}/{slug}/upload", _guarded(upload), methods=["POST"]),
        Route("/p/{org}/{slug}/versions/{stage}", _guarded(versions_of)),
        Mount("/static", _CachedStatic(directory=HERE / "static"), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        # Each running session saves itself, resumable; waited for (off the event loop,
        # which still relays their last events) so the process does not end mid-save.
        await asyncio.to_thread(hub.stop_all)

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.hub = hub
    return app


class _CachedStatic(StaticFiles):
    """The page's own script and styles, kept by the browser for a day: they change only
    with bmc, and the page names them with a digest of their bytes (`STATIC_VERSION`), so a
    new bmc's script is never taken from the cache."""

    async def get_response(self, path: str, scope: Any) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["cache-control"] = "private, max-age=86400"
        return response


class NotFound(UserError):
    """What the address names does not exist (a project): 404, whatever the method."""


def _guarded(
    route: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """One sentence and a 4xx status for every refusal, never a traceback."""

    async def run(request: Request) -> Response:
        try:
            return await route(request)
        except NotFound as err:
            return _error(err, 404)
        except PrerequisiteError as err:
            return _error(err, 409)
        except BmcError as err:
            missing = "does not exist" in str(err) or "no session" in str(err)
            return _error(err, 404 if missing and request.method == "GET" else 409)

    return run


def _error(err: BmcError, status: int) -> Response:
    return JSONResponse({"error": views.sentence(str(err))}, status_code=status)


def _one_answer(reply: agreement.Answer) -> agreement.Ask:
    """An `ask` that gives the page's click once, then nothing (the document changed)."""
    given = [reply]

    def ask(_proposal: Any, _scope: str, _changed: str | None) -> agreement.Answer | None:
        return given.pop() if given else None

    return ask


def _holder_sentence(project: Project, holder: dict[str, Any]) -> str:
    who = (
        f"session {holder['session']}"
        if holder.get("session")
        else str(holder.get("command") or "bmc")
    )
    since = f" since {holder['since']}" if holder.get("since") else ""
    return (
        f"{project.org}/{project.slug} is in use by {who} (process {holder.get('pid')}{since}): "
        "this page can only read until it finishes."
    )


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise UserError("the request was not understood (it must be JSON).") from None
    if not isinstance(body, dict):
        raise UserError("the request was not understood (it must be a JSON object).")
    return body


def _text(body: dict[str, Any], name: str, limit: int, *, required: bool = True) -> str:
    value = body.get(name, "")
    if not isinstance(value, str):
        raise UserError(f"{name} must be text.")
    value = value.strip()
    if required and not value:
        raise UserError(f"{name} is empty: fill it in.")
    if len(value) > limit:
        raise UserError(f"{name} is too long (at most {limit} characters).")
    return value


async def _sse(
    source: AsyncIterator[dict[str, Any]], disconnected: Callable[[], Awaitable[bool]]
) -> AsyncIterator[bytes]:
    yield b": connected\n\n"
    async for event in source:
        if await disconnected():
            return
        data = json.dumps(event, ensure_ascii=False)
        yield f"id: {event['run']}-{event['id']}\nevent: bmc\ndata: {data}\n\n".encode()
