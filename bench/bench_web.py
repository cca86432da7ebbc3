"""Benchmark of `bmc serve` (issue 11): how fast the page shows the model's words, how fast a
project with a full canvas loads, and what the server holds in memory.

    python bench/bench_web.py              # writes bench/web-results.md and prints it

Everything runs on loopback: the scripted model in this process, `bmc serve` as a child
process (`python -m bmc.cli serve`), and Debian's headless Chromium driven by Playwright.
No real API is called.

- Stream latency: a chat of N replies; for each, the moment the scripted model wrote the
  reply's first text delta (wall clock, recorded by the model) against the moment the
  browser showed those words (a MutationObserver in the page, wall clock from
  `performance.timeOrigin + performance.now()`). Both clocks are this machine's.
- Page load: the project page of the demo engagement (every stage agreed; its canvas has
  the item count printed below), by the browser's Navigation Timing, from the start of the
  navigation to the end of the load event (the documents panel, the canvas frame, script
  and styles all loaded); repeated, median and p95.
- Memory: the server's resident set (VmRSS) after start-up, and at rest after the chat
  and the page loads.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bmc.documents.schemas.canvas import parse_canvas
from bmc.scripted import ScriptedModel

HERE = Path(__file__).resolve().parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ORG, SLUG = "tidewater", "growth-2027"
WATCH = """
window.__shown = [];
new MutationObserver(() => {
  for (const node of document.querySelectorAll('#log .msg.assistant')) {
    if (!node.dataset.seen && node.textContent.length > 0) {
      node.dataset.seen = '1';
      window.__shown.push(performance.timeOrigin + performance.now());
    }
  }
}).observe(document.getElementById('log'), {childList: true, subtree: true, characterData: true});
"""


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]


def demo_workspace(folder: Path) -> Path:
    """The demo engagement played to the end in the terminal: every stage agreed."""
    workspace = folder / "ws"
    done = subprocess.run(
        [sys.executable, "-m", "bmc.cli", "demo", "--yes", "--workspace", str(workspace)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the demo failed:\n{done.stdout}\n{done.stderr}")
    return workspace


def canvas_items(workspace: Path) -> int:
    text = (workspace / "clients" / ORG / "projects" / SLUG / "canvas" / "canvas.md").read_text()
    canvas = parse_canvas(text)
    assert not isinstance(canvas, list), canvas
    blocks = [
        canvas.segments,
        *canvas.value_propositions.values(),
        *canvas.channels.values(),
        canvas.relationships,
        canvas.revenue_streams,
        canvas.key_resources,
        canvas.key_activities,
        canvas.key_partnerships,
        canvas.costs,
    ]
    return sum(len(block) for block in blocks)


@contextlib.contextmanager
def server(workspace: Path, model: ScriptedModel) -> Any:
    env = {
        **os.environ,
        "ANTHROPIC_BASE_URL": model.base_url,
        "ANTHROPIC_API_KEY": "bench-no-key",
        "BMC_MAX_RETRIES": "0",
        "BMC_CONSULTANT": "Bench Consultant",
    }
    command = [sys.executable, "-m", "bmc.cli", "serve", "--workspace", str(workspace)]
    process = subprocess.Popen(
        [*command, "--port", "0", "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"open (http://\S+)", line)
        if not match:
            raise SystemExit(f"bmc serve did not print its link: {line!r}")
        yield process, match.group(1)
    finally:
        process.terminate()
        process.wait(timeout=15)


def wait_state(page: Any, state: str, timeout: float = 30.0) -> None:
    # Polled from here: the page's CSP forbids the eval behind wait_for_function.
    deadline = time.monotonic() + timeout
    while page.locator("#project").get_attribute("data-state") != state:
        if time.monotonic() > deadline:
            raise SystemExit(f"the page never reached the state {state!r}")
        time.sleep(0.01)


def stream_latency(page: Any, base: str, model: ScriptedModel, replies: int) -> list[float]:
    page.goto(f"{base}p/{ORG}/{SLUG}")
    page.evaluate(WATCH)  # the page's own CSP allows no inline script; evaluate is the test's
    page.get_by_role("button", name="Start bmc-canvas", exact=True).click()
    for number in range(1, replies):
        wait_state(page, "message")
        page.locator("#project").evaluate("node => { node.dataset.state = 'sent'; }")
        page.get_by_role("textbox", name="Message", exact=True).fill(
            f"Next point, please ({number})."
        )
        page.get_by_role("button", name="Send", exact=True).click()
    wait_state(page, "message")
    shown = page.evaluate("() => window.__shown")
    page.get_by_role("button", name="Stop", exact=True).click()
    wait_state(page, "stopped")
    # The first delta of each reply: replies are split into three deltas by the model.
    sent = model.text_sent_at[::3]
    return [(seen / 1000.0 - at) * 1000.0 for at, seen in zip(sent, shown, strict=False)]


def page_loads(page: Any, base: str, rounds: int) -> list[float]:
    """The browser's own clock (Navigation Timing): from the start of the navigation to the
    end of the load event, which waits for the canvas frame, the script and the styles."""
    timings = []
    for _ in range(rounds):
        page.goto(f"{base}p/{ORG}/{SLUG}", wait_until="load")
        page.wait_for_selector("#documents [role=tab]")  # the documents panel is there
        timings.append(
            page.evaluate("() => performance.getEntriesByType('navigation')[0].loadEventEnd")
        )
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=40)
    parser.add_argument("--loads", type=int, default=15)
    parser.add_argument("--out", type=Path, default=HERE / "web-results.md")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    words = "Here is the next point on the canvas, with the evidence behind it."
    steps = [
        {"reply": {"content": [{"type": "text", "text": f"{words} ({n})"}]}}
        for n in range(args.replies)
    ]
    with tempfile.TemporaryDirectory(prefix="bmc-bench-web-") as folder:
        workspace = demo_workspace(Path(folder))
        items = canvas_items(workspace)
        with ScriptedModel({"steps": steps}) as model, server(workspace, model) as (process, url):
            base = url.split("?", 1)[0]
            time.sleep(0.5)
            at_start = rss_kib(process.pid)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(url)  # the token becomes a cookie
                loads = page_loads(page, base, args.loads)
                latency = stream_latency(page, base, model, args.replies)
                browser.close()
            time.sleep(1.0)
            at_rest = rss_kib(process.pid)

    lines = [
        "# bmc serve: benchmark results",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores, "
        f"`python bench/bench_web.py --replies {args.replies} --loads {args.loads}`; "
        "Debian's Chromium, headless, on loopback.",
        "",
        "| measure | median | p95 | target |",
        "|---|---|---|---|",
        f"| first streamed word: model -> shown in the browser ({len(latency)} replies) "
        f"| {statistics.median(latency):.1f} ms | {percentile(latency, 0.95):.1f} ms | <= 50 ms |",
        f"| project page with a {items}-item canvas: navigation start -> load event end "
        f"({len(loads)} loads) | {statistics.median(loads):.0f} ms "
        f"| {percentile(loads, 0.95):.0f} ms | <= 300 ms |",
        "",
        f"Server memory (VmRSS): {at_start / 1024:.0f} MiB after start-up, "
        f"{at_rest / 1024:.0f} MiB at rest after the chat and the page loads.",
        "",
    ]
    report = "\n".join(lines)
    args.out.write_text(report, "utf-8")
    print(report)


if __name__ == "__main__":
    main()
