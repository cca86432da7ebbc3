"""`bmc demo`: a whole scripted engagement on the sample client, offline and with no key.

The engagement fixture (the client's material in the inbox, no brief yet) is copied to a
fresh folder, and the chain runs as a consultant would run it: bmc-research, bmc-segments,
bmc-canvas, then one iteration after the agreement (bmc-iterate: the client renames a
segment, and the segments and the canvas are agreed again), then render. For each skill
the scripted model serves that stage's scenario on loopback and the real SDK talks to it
exactly as it would to Anthropic. The consultant's
lines come from the scenario (the scripted model answers the same whatever is typed); at an
agreement prompt a newcomer at a terminal answers for real.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from bmc.engine.agreement import parse_answer
from bmc.errors import UserError
from bmc.workspace.packaged import data_dir
from bmc.workspace.paths import Project

DEMO_ORG = "tidewater"
DEMO_PROJECT = "growth-2027"
# The chain, in order: each skill with the scenario that plays its stage.
CHAIN = (
    ("bmc-research", "demo-research.json"),
    ("bmc-segments", "demo-segments.json"),
    ("bmc-canvas", "demo-canvas.json"),
    ("bmc-iterate", "demo-iterate.json"),
)


class ScriptedConsultant:
    """Plays the consultant's side from the scenario, showing each line as if typed."""

    def __init__(self, console: Console, lines: list[str], assume_yes: bool) -> None:
        self.console = console
        self.lines = list(lines)
        self.assume_yes = assume_yes
        self.interactive = sys.stdin.isatty() and not assume_yes

    def next_message(self) -> str | None:
        if not self.lines:
            return None
        line = self.lines.pop(0)
        self.console.print(f"[bold cyan]consultant>[/bold cyan] {line}")
        return line

    def answer(self, prompt: str) -> str | None:
        if not self.interactive:
            self.console.print(f"{prompt}yes")
            return "yes"
        # The script goes on only with the client's yes (the scripted model cannot rework the
        # segments), so other answers are asked again rather than sent off script.
        while True:
            try:
                line = self.console.input(prompt).strip()
            except (EOFError, KeyboardInterrupt):
                self.console.print()
                return None
            if parse_answer(line, digest="").agreed:
                return line
            self.console.print(
                "In this demo the client agrees: type yes to go on (Ctrl-D stops here, "
                "with nothing agreed)."
            )


def prepare_workspace(target: Path | None) -> Path:
    if target is not None:
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise UserError(
                f"{target} exists and is not empty: give the demo a new or empty folder."
            )
        target.mkdir(parents=True, exist_ok=True)
    else:
        target = Path(tempfile.mkdtemp(prefix="bmc-demo-"))
    shutil.copytree(data_dir("fixtures") / "engagement", target, dirs_exist_ok=True)
    return target


def run_demo(target: Path | None, *, assume_yes: bool) -> None:
    from bmc.documents.render import render_project
    from bmc.terminal.chat import TerminalDisplay
    from bmc.workspace.paths import locate

    workspace = prepare_workspace(target)
    display = TerminalDisplay()
    console = display.console
    where = escape(str(workspace))
    intro = f"[bold]bmc demo[/bold]: a scripted engagement with {DEMO_ORG}, in {where}\n"
    console.print(intro, soft_wrap=True)
    project = locate(workspace, DEMO_ORG, DEMO_PROJECT)
    with _demo_consultant_name():
        for skill, scenario in CHAIN:
            console.rule(f"[bold]bmc run {skill}[/bold]")
            if not _play(project, skill, scenario, display, assume_yes):
                console.print("The demo stopped at the agreement: nothing was agreed.")
                break
        else:
            console.rule("[bold]bmc render[/bold]")
            for path in render_project(project):
                console.print(f"Wrote {path}", soft_wrap=True, markup=False)
    # soft_wrap: a path folded across lines cannot be copied; the folder is the point of
    # this line (a temporary one is otherwise hard to find).
    console.print(f"\nThe demo's workspace is {workspace}", soft_wrap=True, markup=False)
    console.print(
        f"Look around: cd {project.project_dir} && bmc status", soft_wrap=True, markup=False
    )


def _play(project: Project, skill: str, scenario_name: str, display: Any, assume_yes: bool) -> bool:
    """One stage of the chain; False when the newcomer stopped at its agreement."""
    import anthropic

    from bmc.engine.api import RunOptions
    from bmc.engine.session import WAITING_AGREEMENT
    from bmc.scripted import ScriptedModel
    from bmc.terminal.chat import start

    scenario = json.loads((data_dir("fixtures") / "scenarios" / scenario_name).read_text("utf-8"))
    lines = scenario.get("consultant", [])
    with ScriptedModel(scenario) as model:
        client = anthropic.Anthropic(
            base_url=model.base_url, api_key="demo-no-key-needed", max_retries=4
        )
        consultant = ScriptedConsultant(display.console, lines, assume_yes)
        session = start(project, skill, RunOptions(client=client), display, consultant)
        if session is None or session.status == WAITING_AGREEMENT:
            return False
        model.assert_finished()  # a demo that went off script is a bug: say so loudly
    return True


@contextlib.contextmanager
def _demo_consultant_name() -> Iterator[None]:
    """Sign the demo's agreement as a demo consultant unless the user set a name, without
    leaving the variable set in the process afterwards."""
    if os.environ.get("BMC_CONSULTANT"):
        yield
        return
    os.environ["BMC_CONSULTANT"] = "Demo Consultant"
    try:
        yield
    finally:
        os.environ.pop("BMC_CONSULTANT", None)


def serve_demo(target: Path | None, *, port: int, open_browser: bool) -> None:
    """`bmc demo --serve`: the demo engagement in the web workspace. Each stage's scripted
    model plays the assistant; the consultant's scripted lines are offered on the page to
    send, and agreeing is the person's own click."""
    import anthropic

    from bmc.scripted import ScriptedModel
    from bmc.web.app import ServeOptions
    from bmc.web.server import serve

    workspace = prepare_workspace(target)
    models, clients, lines = [], {}, {}
    try:
        for skill, scenario_name in CHAIN:
            path = data_dir("fixtures") / "scenarios" / scenario_name
            scenario = json.loads(path.read_text("utf-8"))
            model = ScriptedModel(scenario).start()
            models.append(model)
            clients[skill] = anthropic.Anthropic(
                base_url=model.base_url, api_key="demo-no-key-needed", max_retries=4
            )
            # Answers at agreements are clicks on the page, not lines to send.
            said = scenario.get("consultant", [])
            lines[skill] = [line for line in said if not parse_answer(line, digest="").agreed]
        options = ServeOptions(workspace=workspace, clients=clients, demo_lines=lines)
        print(f"The demo's workspace is {workspace}")
        with _demo_consultant_name():
            serve(options, port=port, open_browser=open_browser)
    finally:
        for model in models:
            model.stop()
