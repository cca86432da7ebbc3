"""`bmc demo`: a whole scripted engagement on the sample client, offline and with no key.

The fixture workspace is copied to a fresh folder, the scripted model serves the demo
scenario on loopback, and the real SDK talks to it exactly as it would to Anthropic. The
consultant's lines come from the scenario (the scripted model answers the same whatever is
typed); at an agreement prompt a newcomer at a terminal answers for real.
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

from rich.console import Console
from rich.markup import escape

from .errors import UserError
from .gate import is_yes
from .resources import data_dir

DEMO_ORG = "tidewater"
DEMO_PROJECT = "growth-2027"
SCENARIO = "demo-segments.json"


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
            if is_yes(line.split(",")[0]):
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
    shutil.copytree(data_dir("fixtures") / "workspace", target, dirs_exist_ok=True)
    return target


def run_demo(target: Path | None, *, assume_yes: bool) -> None:
    import anthropic

    from . import runner
    from .scripted import ScriptedModel
    from .session import WAITING_AGREEMENT, ProjectLock
    from .ui import TerminalDisplay
    from .workspace import locate

    workspace = prepare_workspace(target)
    scenario_path = data_dir("fixtures") / "scenarios" / SCENARIO
    scenario = json.loads(scenario_path.read_text("utf-8"))
    display = TerminalDisplay()
    console = display.console
    where = escape(str(workspace))
    intro = f"[bold]bmc demo[/bold]: a scripted engagement with {DEMO_ORG}, in {where}\n"
    console.print(intro, soft_wrap=True)
    project = locate(workspace, DEMO_ORG, DEMO_PROJECT)
    with _demo_consultant_name(), ScriptedModel(scenario) as model:
        client = anthropic.Anthropic(
            base_url=model.base_url, api_key="demo-no-key-needed", max_retries=4
        )
        options = runner.RunOptions(client=client)
        consultant = ScriptedConsultant(console, scenario.get("consultant", []), assume_yes)
        with ProjectLock(project).hold("demo"):
            session = runner.start(project, "bmc-segments", options, display, consultant)
        if session.status == WAITING_AGREEMENT:
            console.print("The demo stopped at the agreement: nothing was agreed.")
        else:
            model.assert_finished()  # a demo that went off script is a bug: say so loudly
    # soft_wrap: a path folded across lines cannot be copied; the folder is the point of
    # this line (a temporary one is otherwise hard to find).
    console.print(f"\nThe demo's workspace is {workspace}", soft_wrap=True, markup=False)
    console.print(
        f"Look around: cd {project.project_dir} && bmc status", soft_wrap=True, markup=False
    )


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
