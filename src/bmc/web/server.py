"""Running `bmc serve`: one server per workspace, on loopback unless told otherwise, its URL
(with the secret token) printed and opened in the browser."""

from __future__ import annotations

import ipaddress
import socket
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from bmc.errors import UserError
from bmc.web.app import ServeOptions, create_app
from bmc.web.security import ServerSecret, guard, loopback_hosts, one_server

DEFAULT_PORT = 8765


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound now so a taken port is one clear sentence."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise UserError(
            f"cannot listen on {host}:{port} ({err.strerror or err}): another program uses the "
            "port; pass --port with another number."
        ) from None
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def serve(
    options: ServeOptions,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    open_browser: bool = True,
    new_token: bool = False,
    say: Callable[[str], None] = print,
) -> None:
    """Serve the workspace until Ctrl-C; prints the URL to open first."""
    workspace = options.workspace
    if not workspace.is_dir():
        raise UserError(f"{workspace} is not a folder: pass --workspace with your workspace.")
    sock = bind(host, port)
    port = sock.getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    address = f"http://{shown_host}:{port}/"
    with one_server(workspace, address):
        # Only once this is the workspace's one server: a refused second `--new-token`
        # must not rotate the token under the running one.
        secret = ServerSecret.load_or_create(workspace, rotate=new_token)
        if not is_loopback(host):
            say(
                f"Warning: listening on {host}, not only this computer: anyone who can reach "
                "it and has the link can drive your engagements."
            )
        inner = create_app(options, secret)
        app = guard(inner, secret, hosts=loopback_hosts(host, port))
        url = f"{address}?token={secret.token}"
        say(f"bmc serve: open {url}")
        say(f"Workspace: {Path(workspace).resolve()}. Ctrl-C stops the server.")
        if open_browser:
            webbrowser.open(url)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        _Server(config, inner.state.hub).run(sockets=[sock])


class _Server(uvicorn.Server):
    """Ends the pages' event streams on Ctrl-C: uvicorn's graceful shutdown waits for open
    responses, and an open tab's stream would otherwise keep the server (and the saving of
    its sessions, at the lifespan's end) waiting until the tab is closed."""

    def __init__(self, config: uvicorn.Config, hub: Any) -> None:
        super().__init__(config)
        self._hub = hub

    def handle_exit(self, sig: int, frame: Any) -> None:
        self._hub.end_streams()
        super().handle_exit(sig, frame)
