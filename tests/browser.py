"""Find and drive a headless Chromium for the rendering tests (test helper, not a test).

The browser is the one `bmc export pdf` would use (`bmc.workspace.chromium`). Each call
starts a fresh browser with a throwaway profile and every background service switched off,
so a run touches nothing outside its temporary folder and asks nothing of the network.
CI installs it with `apt-get install -y chromium` (Debian's package; `chromium-browser` on
Ubuntu is a snap wrapper and is found too if present).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from bmc.errors import UserError
from bmc.workspace import chromium

# One landscape A3 sheet at CSS's 96 pixels per inch: 420 x 297 mm.
A3_LANDSCAPE = (1587, 1123)
TIMEOUT = 90  # seconds; a loaded 2-core machine can be slow to start a browser


def find_chromium() -> str | None:
    """The browser the product would find, or None (the tests that need one skip)."""
    try:
        return chromium.find_chromium()
    except UserError:
        return None


def run(page: Path, *args: str, binary: str | None = None) -> subprocess.CompletedProcess[str]:
    """Open `page` in headless Chromium with `args` (e.g. `--dump-dom`) and wait for it."""
    binary = binary or find_chromium()
    if binary is None:
        raise RuntimeError("no Chromium found (set BMC_CHROMIUM or install chromium)")
    with tempfile.TemporaryDirectory(prefix="bmc-chromium-") as profile:
        command = [
            binary,
            "--headless",
            "--no-sandbox",  # containers and CI runners rarely allow the sandbox
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--hide-scrollbars",
            "--mute-audio",
            f"--user-data-dir={profile}",
            *args,
            page.resolve().as_uri(),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr[-2000:]}")
    return done


def screenshot(
    page: Path, png: Path, size: tuple[int, int] = A3_LANDSCAPE, scale: float = 1.0
) -> Path:
    """A PNG of the first `size` CSS pixels of the page as a screen shows it, at `scale`
    device pixels per CSS pixel."""
    run(
        page,
        f"--screenshot={png}",
        f"--window-size={size[0]},{size[1]}",
        f"--force-device-scale-factor={scale}",
    )
    if not png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot to {png}")
    return png


def dump_dom(page: Path, size: tuple[int, int] = A3_LANDSCAPE) -> str:
    """The DOM after the page's scripts ran, serialised, at a window of `size`."""
    return run(
        page,
        "--run-all-compositor-stages-before-draw",
        "--virtual-time-budget=5000",
        f"--window-size={size[0]},{size[1]}",
        "--dump-dom",
    ).stdout


def print_pdf(page: Path, pdf: Path) -> Path:
    """The page printed to PDF as a person's print-to-PDF would, without header or footer."""
    run(page, f"--print-to-pdf={pdf}", "--no-pdf-header-footer")
    if not pdf.is_file():
        raise RuntimeError(f"chromium wrote no PDF to {pdf}")
    return pdf


if __name__ == "__main__":
    # `python tests/browser.py PAGE.html OUT.png [WIDTHxHEIGHT]`: a screenshot by hand, e.g.
    # docs/canvas.png from the fixture canvas rendered with `bmc render`.
    import sys

    if len(sys.argv) not in (3, 4):
        sys.exit("usage: python tests/browser.py PAGE.html OUT.png [WIDTHxHEIGHT]")
    size = A3_LANDSCAPE
    if len(sys.argv) == 4:
        width, height = sys.argv[3].lower().split("x")
        size = (int(width), int(height))
    print(screenshot(Path(sys.argv[1]), Path(sys.argv[2]), size))
