"""The guard in front of `bmc serve` (issue 11, "Safe by construction"): the token in the URL
becomes a cookie, the Host header is checked (DNS rebinding), state changes need the page's
origin and anti-forgery token, every response carries the security headers; the token file
is its owner's alone and survives a restart; one server per workspace."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from bmc.errors import UserError
from bmc.web.security import ServerSecret, guard, loopback_hosts, one_server

BASE = "http://127.0.0.1:8765"
WS = "ws://127.0.0.1:8765/ws"
OWN_CSP = "default-src 'self'"


async def page(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"page {request.url.path}?{request.url.query}")


async def change(request: Request) -> PlainTextResponse:
    return PlainTextResponse("changed")


async def own_csp(request: Request) -> PlainTextResponse:
    return PlainTextResponse("framed", headers={"Content-Security-Policy": OWN_CSP})


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("hello")
    await websocket.close()


APP = Starlette(
    routes=[
        Route("/", page),
        Route("/page", page),
        Route("/change", change, methods=["POST"]),
        Route("/own-csp", own_csp),
        WebSocketRoute("/ws", echo),
    ]
)


def client_for(secret: ServerSecret) -> TestClient:
    guarded = guard(APP, secret, hosts=loopback_hosts("127.0.0.1", 8765))
    return TestClient(guarded, base_url=BASE, follow_redirects=False)


@pytest.fixture
def secret(tmp_path: Path) -> ServerSecret:
    return ServerSecret.load_or_create(tmp_path)


@pytest.fixture
def client(secret: ServerSecret) -> TestClient:
    """A browser that has opened the link `bmc serve` printed."""
    client = client_for(secret)
    assert client.get(f"/?token={secret.token}").status_code == 303
    return client


def post(client: TestClient, secret: ServerSecret, **headers: str):
    sent = {"origin": BASE, "x-bmc-csrf": secret.csrf_token()}
    sent.update(headers)
    return client.post("/change", headers={k: v for k, v in sent.items() if v})


# The token: in the printed URL once, then a cookie.


def test_the_token_in_the_url_becomes_a_cookie_and_leaves_the_address(
    secret: ServerSecret,
) -> None:
    browser = client_for(secret)
    response = browser.get(f"/page?a=1&token={secret.token}&b=x%20y")
    assert response.status_code == 303
    assert response.headers["location"] == "/page?a=1&b=x%20y"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"bmc_token={secret.token};")
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= {p.strip() for p in cookie.split(";")}
    assert "secure" not in cookie.lower()  # plain http on loopback: Secure would drop it

    followed = browser.get(response.headers["location"])
    assert followed.status_code == 200
    assert followed.text == "page /page?a=1&b=x%20y"


def test_the_redirect_never_leads_to_another_site(secret: ServerSecret) -> None:
    for path in ("//evil.example/x", "/\\evil.example/x"):
        response = client_for(secret).get(f"{BASE}{path}?token={secret.token}")
        assert response.headers["location"] == "/evil.example/x"


def test_without_the_cookie_the_page_says_to_open_the_printed_link(
    secret: ServerSecret,
) -> None:
    browser = client_for(secret)
    for response in (
        browser.get("/"),
        browser.get("/?token=not-the-token"),
        browser.get("/", headers={"cookie": "bmc_token=not-the-token"}),
        browser.get("/", headers={"cookie": f"bmc_token={secret.token[:-1]}"}),
        browser.get("/", headers={"cookie": "bmc_token=caf\u00e9".encode("latin-1")}),
        browser.get("/", headers={"cookie": f"other={secret.token}"}),
    ):
        assert response.status_code == 403
        assert response.headers["content-type"].startswith("text/html")
        assert "bmc serve" in response.text
        assert secret.token not in response.text
        assert "set-cookie" not in response.headers


def test_a_cookie_of_the_same_name_set_by_another_app_on_the_host_does_not_lock_out(
    secret: ServerSecret,
) -> None:
    # Cookies do not keep ports apart: another local app may have set its own bmc_token.
    cookies = f"bmc_token=someone-else; bmc_token={secret.token}"
    assert client_for(secret).get("/", headers={"cookie": cookies}).status_code == 200


def test_a_token_in_a_post_url_is_not_exchanged(secret: ServerSecret) -> None:
    response = client_for(secret).post(f"/change?token={secret.token}")
    assert response.status_code == 403
    assert "set-cookie" not in response.headers


# The Host header: DNS rebinding.


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8765", "127.0.0.1:9999", "127.0.0.1:8765.evil.example"]
)
def test_a_foreign_host_is_refused_even_with_the_cookie(client: TestClient, host: str) -> None:
    response = client.get("/", headers={"host": host})
    assert response.status_code == 400
    assert response.text.count(".") == 1 and "evil" not in response.text  # one sentence
    assert "content-security-policy" in response.headers


def test_the_host_names_of_loopback_are_allowed(client: TestClient) -> None:
    assert client.get("/", headers={"host": "localhost:8765"}).status_code == 200
    assert client.get("/", headers={"host": "LOCALHOST:8765"}).status_code == 200


def test_loopback_hosts() -> None:
    assert loopback_hosts("127.0.0.1", 8765) == {"127.0.0.1:8765", "localhost:8765"}
    assert "[::1]:8000" in loopback_hosts("::1", 8000)
    assert "192.168.1.20:8765" in loopback_hosts("192.168.1.20", 8765)
    assert "[fe80::1]:8765" in loopback_hosts("fe80::1", 8765)
    assert "0.0.0.0:8765" not in loopback_hosts("0.0.0.0", 8765)
    assert "localhost" in loopback_hosts("127.0.0.1", 80)


# State changes: same origin and the page's anti-forgery token.


def test_a_post_from_the_page_itself_goes_through(client: TestClient, secret: ServerSecret):
    response = post(client, secret)
    assert (response.status_code, response.text) == (200, "changed")


def test_a_post_without_the_anti_forgery_header_is_refused(
    client: TestClient, secret: ServerSecret
) -> None:
    for csrf in ("", "0" * 64, secret.token):
        response = post(client, secret, **{"x-bmc-csrf": csrf})
        assert response.status_code == 403
        assert "anti-forgery" in response.text


@pytest.mark.parametrize(
    "origin", ["http://evil.example", "null", "http://localhost:8765", "https://127.0.0.1:8765"]
)
def test_a_post_from_another_origin_is_refused(
    client: TestClient, secret: ServerSecret, origin: str
) -> None:
    response = post(client, secret, origin=origin)
    assert response.status_code == 403
    assert response.text.startswith("Refused: this request did not come from the bmc page")


def test_without_origin_the_referer_must_be_the_page(
    client: TestClient, secret: ServerSecret
) -> None:
    own = post(client, secret, origin="", referer=f"{BASE}/project/acme")
    assert own.status_code == 200
    for referer in ("", "http://127.0.0.1:8765.evil.example/", "http://evil.example/"):
        assert post(client, secret, origin="", referer=referer).status_code == 403


def test_a_post_without_the_cookie_is_refused(secret: ServerSecret) -> None:
    response = post(client_for(secret), secret)
    assert response.status_code == 403
    assert "bmc serve" in response.text


def test_the_anti_forgery_token_is_derived_and_stable(secret: ServerSecret, tmp_path: Path):
    csrf = secret.csrf_token()
    assert csrf == ServerSecret.load_or_create(tmp_path).csrf_token()
    assert secret.token not in csrf and len(csrf) >= 32
    assert ServerSecret.load_or_create(tmp_path, rotate=True).csrf_token() != csrf
    assert secret.token not in repr(secret)


# Security headers.


def test_every_response_carries_the_security_headers(client: TestClient) -> None:
    for response in (client.get("/"), client_for(ServerSecret("x" * 43)).get("/")):
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "frame-ancestors 'self'" in csp and "base-uri 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
        assert response.headers["cache-control"] == "no-store"


def test_a_routes_own_header_is_kept(client: TestClient) -> None:
    response = client.get("/own-csp")
    assert response.headers.get_list("content-security-policy") == [OWN_CSP]
    assert response.headers["x-content-type-options"] == "nosniff"


# Websockets: the cookie and the page's origin.


def test_a_websocket_needs_the_cookie_and_the_pages_origin(
    client: TestClient, secret: ServerSecret
) -> None:
    with client.websocket_connect(WS, headers={"origin": BASE}) as socket:
        assert socket.receive_text() == "hello"
    refused = [
        (client, {"origin": "http://evil.example"}),  # cross-site websocket hijacking
        (client, {"origin": "http://evil.example:8765", "host": "evil.example:8765"}),
        (client_for(secret), {"origin": BASE}),  # no cookie
    ]
    for browser, headers in refused:
        with (
            pytest.raises(WebSocketDisconnect),
            browser.websocket_connect(WS, headers=headers) as socket,
        ):
            socket.receive_text()


# The token file.


def test_the_token_file_is_the_owners_alone_and_survives_a_restart(tmp_path: Path) -> None:
    first = ServerSecret.load_or_create(tmp_path)
    path = tmp_path / ".bmc" / "serve-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first.token) >= 43  # 32 bytes of token_urlsafe
    assert ServerSecret.load_or_create(tmp_path) == first
    assert (tmp_path / ".bmc" / ".gitignore").read_text().splitlines()[-1] == "*"


def test_a_new_token_ends_the_old_cookie(tmp_path: Path) -> None:
    old = ServerSecret.load_or_create(tmp_path)
    browser = client_for(old)
    browser.get(f"/?token={old.token}")
    assert browser.get("/").status_code == 200

    new = ServerSecret.load_or_create(tmp_path, rotate=True)
    assert new.token != old.token
    assert ServerSecret.load_or_create(tmp_path) == new
    restarted = client_for(new)
    restarted.cookies = browser.cookies
    assert restarted.get("/").status_code == 403
    assert restarted.get(f"/?token={old.token}").status_code == 403


def test_a_token_file_others_can_read_is_replaced(tmp_path: Path) -> None:
    old = ServerSecret.load_or_create(tmp_path)
    path = tmp_path / ".bmc" / "serve-token"
    path.chmod(0o644)
    new = ServerSecret.load_or_create(tmp_path)
    assert new != old
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_symlink_or_a_damaged_token_file_is_replaced_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("A" * 43)
    elsewhere.chmod(0o600)
    path = tmp_path / ".bmc" / "serve-token"
    path.parent.mkdir()
    path.symlink_to(elsewhere)
    secret = ServerSecret.load_or_create(tmp_path)
    assert secret.token != "A" * 43
    assert not path.is_symlink() and elsewhere.read_text() == "A" * 43

    path.write_text("short")
    assert ServerSecret.load_or_create(tmp_path) != secret


# One server per workspace.


def test_a_second_server_on_the_workspace_is_refused_then_takes_over(tmp_path: Path) -> None:
    url = "http://127.0.0.1:8765/"
    with one_server(tmp_path, url + "?token=secret-one"):
        note = (tmp_path / ".bmc" / "serve.holder.json").read_text()
        assert "secret-one" not in note
        with pytest.raises(UserError) as refused, one_server(tmp_path, "http://127.0.0.1:8766/"):
            pass
        message = str(refused.value)
        assert f"at {url} (process {os.getpid()})" in message
        assert message.count(".") <= 4 and "\n" not in message
    with one_server(tmp_path, "http://127.0.0.1:8766/"):
        pass


def test_a_killed_server_leaves_the_workspace_free(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from bmc.web.security import one_server\n"
            "with one_server(Path(sys.argv[1]), 'http://127.0.0.1:9000/'):\n"
            "    print('ready', flush=True)\n"
            "    time.sleep(60)\n",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        held_by = rf"127\.0\.0\.1:9000/ \(process {holder.pid}\)"
        with pytest.raises(UserError, match=held_by), one_server(tmp_path, BASE + "/"):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with one_server(tmp_path, "http://127.0.0.1:8765/"):
        pass
