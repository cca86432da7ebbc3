"""The consultant's own Chromium or Chrome, found and run headless to print a page to PDF.

bmc ships no browser: `bmc export pdf` uses one already on the machine. `$BMC_CHROMIUM`
names it outright (a path or a command); otherwise the usual command names are looked up on
PATH, then the places the installers put it on macOS and Windows (Microsoft Edge counts: it
is Chromium and is on every Windows machine). Each run gets a throwaway profile and every
background service off, so printing touches nothing outside a temporary folder and asks
nothing of the network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from bmc.errors import UserError

ENV = "BMC_CHROMIUM"
NAMES = (
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
    "chrome",
    "microsoft-edge",
)
TIMEOUT = 120  # seconds: a busy laptop can be slow to start a browser
HOW_TO_GET_ONE = (
    "no Chromium or Chrome was found on this computer: install Google Chrome "
    "(google.com/chrome) or Chromium (on Debian or Ubuntu: `sudo apt-get install chromium`), "
    f"or set {ENV} to the browser's program."
)


def candidates(platform: str, environ: Mapping[str, str]) -> list[Path]:
    """Where the installers put a Chromium-family browser on `platform` (sys.platform)."""
    if platform == "darwin":
        apps = [Path("/Applications"), Path(environ.get("HOME", "~")).expanduser() / "Applications"]
        bundles = (
            "Google Chrome.app/Contents/MacOS/Google Chrome",
            "Chromium.app/Contents/MacOS/Chromium",
            "Microsoft Edge.app/Contents/MacOS/Microsoft Edge",
        )
        return [folder / bundle for folder in apps for bundle in bundles]
    if platform.startswith("win"):
        keys = ("PROGRAMFILES", "PROGRAMFILES(X86)", "LOCALAPPDATA")
        roots = [root for key in keys if (root := environ.get(key))]
        programs = (
            "Google/Chrome/Application/chrome.exe",
            "Chromium/Application/chrome.exe",
            "Microsoft/Edge/Application/msedge.exe",
        )
        return [Path(root) / program for root in roots for program in programs]
    # Linux and the rest: package managers put it on PATH; Snap's folder may not be.
    return [Path("/snap/bin/chromium")]


def find_chromium(environ: Mapping[str, str] | None = None, platform: str | None = None) -> str:
    """The program to run, or a `UserError` saying in one sentence how to get one."""
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    path = environ.get("PATH", "")
    configured = environ.get(ENV, "").strip()
    if configured:
        found = shutil.which(configured, path=path)
        if found or Path(configured).is_file():
            return found or configured
        raise UserError(
            f"{ENV} is set to {configured}, which is not a program on this computer: point it "
            "at Chromium or Chrome, or unset it to let bmc look for one."
        )
    for name in NAMES:
        found = shutil.which(name, path=path)
        if found:
            return found
    for place in candidates(platform, environ):
        if place.is_file():
            return str(place)
    raise UserError(HOW_TO_GET_ONE)


def print_to_pdf(page: Path, pdf: Path, binary: str) -> None:
    """Print the HTML file `page` to `pdf` as the browser's own print-to-PDF would, without
    header or footer, honouring the page's CSS `@page` size."""
    with tempfile.TemporaryDirectory(prefix="bmc-chromium-") as profile:
        command = [
            binary,
            "--headless",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--mute-audio",
            f"--user-data-dir={profile}",
            f"--print-to-pdf={pdf}",
            "--no-pdf-header-footer",
            page.resolve().as_uri(),
        ]
        if _as_root():
            # Chromium refuses to run its sandbox as root (containers, CI runners).
            command.insert(2, "--no-sandbox")
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired:
            raise UserError(
                f"{binary} did not finish printing within {TIMEOUT} seconds; try again, or "
                f"set {ENV} to another Chromium or Chrome."
            ) from None
        except OSError as err:
            raise UserError(f"{binary} could not be started: {err.strerror or err}.") from None
    if done.returncode != 0 or not pdf.is_file() or pdf.stat().st_size == 0:
        said = (done.stderr or "").strip().splitlines()
        last = f" (it said: {said[-1][:200]})" if said else ""
        raise UserError(f"{binary} could not print the canvas to PDF{last}.")


def _as_root() -> bool:
    geteuid = getattr(os, "geteuid", None)
    return bool(geteuid and geteuid() == 0)
