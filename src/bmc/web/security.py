"""The guard in front of `bmc serve`: who may drive the web workspace (issue 11, SPEC section 12).

Trust model
-----------
The server serves one person, in their own browser, on their own machine. Trusted: that
person, and the page this server sent them. Hostile: every other web site their browser
visits (it may send requests to 127.0.0.1, or re-point a name of its own at it: DNS
rebinding), other users of the machine (they can reach a loopback port, but cannot read the
person's files), and everything the page displays (research files and model output may
carry HTML or instructions; the page never runs them, and this guard never trusts a request
because of what the page displayed).

So every request must carry the secret token: once in the URL `bmc serve` printed, which
is swapped at once for a cookie, then the cookie (as Jupyter server does). The Host header
must name this server (a rebinding site cannot send its own name), and a request that
changes anything must also come from this server's own origin and carry the anti-forgery
token only the page knows (a site can make the browser send the cookie, but cannot set a
header or read the page). Every response carries a Content-Security-Policy that allows no
inline script and no other site, so markup that slips through escaping still cannot run.

The token lives in `<workspace>/.bmc/serve-token`, readable by its owner only, so a restart
keeps an open tab working. A token file that others could read (or a symlink, or one owned
by another user, as a git checkout or a colleague's copy would give) is treated as spent: a
new token is made and the old links and cookies stop working. Nothing is asked of the person
but to open the new link. On Windows the file relies on the folder's access rights (the
mode bits mean nothing there).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from bmc.engine.lock import process_alive, read_note
from bmc.errors import UserError
from bmc.workspace.paths import STATE_DIR, atomic_write

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TOKEN_FILE = "serve-token"
SERVE_LOCK = "serve.lock"
SERVE_NOTE = "serve.holder.json"
COOKIE = "bmc_token"
CSRF_HEADER = "x-bmc-csrf"
COOKIE_MAX_AGE = 30 * 24 * 3600  # as Jupyter's login cookie; --new-token ends it sooner
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{43,128}")
CSRF_LABEL = b"bmc serve: anti-forgery token, v1"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
HOLDER_NOTE_WAIT = 2.0  # as engine/lock.py: the lock is taken a moment before the note is written

SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; frame-src 'self'; form-action 'self'; base-uri 'none'; "
        b"frame-ancestors 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    # Threat: a link in a model reply or a research file would tell the site it leads to
    # which page (and project) the person was on. "same-origin" sends no Referer to any
    # other site; "no-referrer" would also make browsers send `Origin: null` on the page's
    # own POSTs (Fetch standard, "append a request Origin header"), which the origin check
    # below would then refuse.
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]

BAD_HOST = "This server answers only at the address `bmc serve` printed.\n"
NO_TOKEN = (
    "<!doctype html>\n<meta charset=utf-8><title>bmc</title>\n"
    "<p>Open the link that <code>bmc serve</code> printed in its terminal to use this workspace."
    "</p>\n"
)
CROSS_ORIGIN = "Refused: this request did not come from the bmc page itself; nothing changed.\n"
NO_CSRF = "Refused: the page's anti-forgery token is missing or old; reload the page.\n"


@dataclass(frozen=True)
class ServerSecret:
    """The server's secret token; `csrf_token()` is what the page sends back in X-BMC-CSRF."""

    # Threat: a traceback or a log line that prints the object must not print the token.
    token: str = field(repr=False)

    @classmethod
    def load_or_create(cls, workspace: Path, *, rotate: bool = False) -> ServerSecret:
        """The token kept in `<workspace>/.bmc/serve-token`, or a new one (`rotate`, or no
        usable file: missing, damaged, or readable by others). Call it inside `one_server`,
        so two servers never rotate one file."""
        path = workspace / STATE_DIR / TOKEN_FILE
        token = None if rotate else _read_private(path)
        if token is None:
            token = secrets.token_urlsafe(32)
            _write_private(path, token + "\n")
        return cls(token)

    def csrf_token(self) -> str:
        # Derived one-way, so the page can embed it without embedding the token itself.
        return hmac.new(self.token.encode(), CSRF_LABEL, hashlib.sha256).hexdigest()


def _read_private(path: Path) -> str | None:
    """The token in `path` if the file is ours alone, else None (make a new one)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        # Threat: a symlink planted at the token's name (O_NOFOLLOW refuses it) or a FIFO
        # (O_NONBLOCK: opening it does not hang the server; it is not a regular file).
        fd = os.open(path, flags)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None
        # Threat: a token others could read (a checkout, a copy, a loose umask) is spent;
        # one owned by another user was planted by them.
        if os.name != "nt" and (info.st_mode & 0o077 or info.st_uid != os.getuid()):
            return None
        text = handle.read(256).decode("ascii", "replace").strip()
    return text if TOKEN_RE.fullmatch(text) else None


def _write_private(path: Path, text: str) -> None:
    """Replace `path` atomically with a file only its owner can read, from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ignore = path.parent / ".gitignore"
    if not ignore.exists():
        # Threat: a workspace shared through git would otherwise carry the token to others.
        atomic_write(ignore, "# bmc's own state (the web token among it): never commit it.\n*\n")
    # mkstemp creates the file 0600 (no window where it is readable by others, unlike
    # atomic_write, which widens it to the umask); the rename replaces a symlink, never
    # writes through it.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def loopback_hosts(bind: str, port: int) -> set[str]:
    """The Host header values a browser sends to a server bound to `bind`:`port`."""
    names = {"127.0.0.1", "localhost"}
    if bind in ("::1", "::"):
        names.add("[::1]")
    if bind not in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::"):
        # Another interface, asked for explicitly: its own address (an IPv6 one in brackets).
        names.add(f"[{bind}]" if ":" in bind else bind.lower())
    # "0.0.0.0" and "::" listen on every interface, yet only the loopback names are allowed:
    # to be reached by another address, bind to that address.
    hosts = {f"{name}:{port}" for name in names}
    if port == 80:  # a browser leaves out the default port
        hosts |= names
    return hosts


def guard(app: ASGIApp, secret: ServerSecret, *, hosts: set[str]) -> ASGIApp:
    """`app` behind the checks of the trust model (module docstring), for http and websocket
    requests; anything else (lifespan) passes through."""
    allowed = frozenset(host.lower() for host in hosts)
    token = secret.token
    csrf = secret.csrf_token()

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await app(scope, receive, send)
            return
        headers = _headers(scope)
        host_values = headers.get("host", [])
        host = host_values[0].lower() if len(host_values) == 1 else ""
        origin = f"http://{host}"
        has_cookie = any(_same(value, token) for value in _cookies(headers, COOKIE))

        if scope["type"] == "websocket":
            # Threat: the browser opens a websocket to any address for any site, with our
            # cookie when the page is ours; only Origin tells (cross-site websocket hijacking).
            if host in allowed and has_cookie and headers.get("origin") == [origin]:
                await app(scope, receive, send)
            else:
                await send({"type": "websocket.close", "code": 1008})
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                own = list(message.get("headers", []))
                present = {bytes(name).lower() for name, _ in own}
                added = [(n, v) for n, v in SECURITY_HEADERS if n not in present]
                message = {**message, "headers": own + added}
            await send(message)

        # Threat: DNS rebinding. A site re-points its own name at 127.0.0.1, and its pages
        # become same-origin with us; the browser still sends that name as Host.
        if host not in allowed:
            await _respond(send_secured, 400, BAD_HOST, "text/plain")
            return

        method = scope["method"]
        kept, offered = _split_token(scope.get("query_string", b""))
        if method in ("GET", "HEAD") and any(_same(value, token) for value in offered):
            # Threat: a token left in the address bar ends up in history, bookmarks and
            # screenshots; swap it for a cookie no script can read and no other site sends.
            path = bytes(scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
            # Threat: "//evil.example" (or "/\evil.example", which browsers read alike)
            # would send the person to another site: an open redirect.
            location = "/" + path.lstrip("/\\") + ("?" + kept if kept else "")
            cookie = (
                f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={COOKIE_MAX_AGE}"
            )
            await _respond(
                send_secured,
                303,
                "",
                "text/plain",
                [(b"location", location), (b"set-cookie", cookie)],
            )
            return

        # Threat: any site, or any user of the machine, can send requests to the port.
        if not has_cookie:
            await _respond(send_secured, 403, NO_TOKEN, "text/html")
            return

        if method not in SAFE_METHODS:
            # Threat: cross-site request forgery. A site's form or script makes the browser
            # send our cookie (SameSite=Strict aside, as older browsers ignore it); it cannot
            # send our origin, nor read the page to learn the anti-forgery token.
            if not _same_origin(headers, origin):
                await _respond(send_secured, 403, CROSS_ORIGIN, "text/plain")
                return
            if not any(_same(value, csrf) for value in headers.get(CSRF_HEADER, [])):
                await _respond(send_secured, 403, NO_CSRF, "text/plain")
                return

        await app(scope, receive, send_secured)

    return guarded


def _headers(scope: Scope) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in scope.get("headers", []):
        found.setdefault(bytes(name).decode("latin-1").lower(), []).append(
            bytes(value).decode("latin-1")
        )
    return found


def _cookies(headers: dict[str, list[str]], name: str) -> list[str]:
    """Every value the browser sent for cookie `name`: another app on this host (cookies do
    not keep ports apart) may have set one of the same name beside ours."""
    values = []
    for line in headers.get("cookie", []):
        for pair in line.split(";"):
            key, _, value = pair.strip().partition("=")
            if key == name:
                values.append(value.strip().strip('"'))
    return values


def _split_token(query: bytes) -> tuple[str, list[str]]:
    """The query string without its `token` parameters (the rest kept byte for byte), and
    the token values offered."""
    kept, offered = [], []
    for part in query.decode("latin-1").split("&"):
        key, _, value = part.partition("=")
        if unquote_plus(key) == "token":
            offered.append(unquote_plus(value))
        elif part:
            kept.append(part)
    return "&".join(kept), offered


def _same_origin(headers: dict[str, list[str]], origin: str) -> bool:
    origins = headers.get("origin", [])
    if origins:
        return origins == [origin]  # "null" (a sandboxed frame, a data: page) never matches
    referers = headers.get("referer", [])
    return len(referers) == 1 and (referers[0] == origin or referers[0].startswith(origin + "/"))


def _same(offered: str, secret: str) -> bool:
    # Threat: timing. Compare in constant time; bytes, as compare_digest refuses non-ASCII str.
    return hmac.compare_digest(offered.encode("utf-8", "replace"), secret.encode())


async def _respond(
    send: Send,
    status: int,
    body: str,
    content_type: str,
    extra: list[tuple[bytes, str]] | None = None,
) -> None:
    raw = body.encode("utf-8")
    headers = [
        (b"content-type", f"{content_type}; charset=utf-8".encode()),
        (b"content-length", str(len(raw)).encode()),
        *((name, value.encode("latin-1")) for name, value in extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": raw})


@contextmanager
def one_server(workspace: Path, url: str) -> Iterator[None]:
    """One `bmc serve` per workspace: an OS file lock (released by the kernel if the server
    dies, so kill -9 leaves nothing to clean) plus a note with its pid and `url`, for the
    refusal a second server gets. `url` is the address without the token."""
    from filelock import FileLock, Timeout

    state = workspace / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    note_path = state / SERVE_NOTE
    lock = FileLock(state / SERVE_LOCK, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise UserError(_running_message(note_path)) from None
    try:
        # Threat: the note is readable by others; a token in the URL would not stay secret.
        address = url.split("?", 1)[0].split("#", 1)[0]
        since = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
        atomic_write(note_path, json.dumps({"pid": os.getpid(), "url": address, "since": since}))
        yield
    finally:
        if (read_note(note_path) or {}).get("pid") == os.getpid():
            note_path.unlink(missing_ok=True)
        lock.release()


def _running_message(note_path: Path) -> str:
    deadline = time.monotonic() + HOLDER_NOTE_WAIT
    note = read_note(note_path)
    while not _live(note) and time.monotonic() < deadline:
        time.sleep(0.05)
        note = read_note(note_path)
    if note and _live(note):
        url = note.get("url")
        # Threat: the note is a plain file; only a printable address reaches the terminal
        # (no escape sequences).
        where = (
            f" at {url}"
            if isinstance(url, str) and re.fullmatch(r"https?://[!-~]{1,200}", url)
            else ""
        )
        return (
            f"bmc serve is already running on this workspace{where} (process {note['pid']}): "
            "use that one, or stop it first."
        )
    return "bmc serve is already running on this workspace: use that one, or stop it first."


def _live(note: dict[str, Any] | None) -> bool:
    return process_alive(note.get("pid") if note else None)
