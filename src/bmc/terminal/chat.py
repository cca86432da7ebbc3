"""The terminal surface: the engine's events rendered, the consultant's words read.

In a terminal, replies render as markdown while they stream and a spinner shows while the
model thinks or tools run. Piped, everything is plain text and each non-blank stdin line is
the consultant's next message (SPEC section 8), so sessions can be scripted. `drive` is the
whole of the terminal's part in a conversation: it reads the engine's events and answers
through the engine's API, and decides nothing the engine decides.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING

from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown
from rich.markup import escape
from rich.panel import Panel
from rich.status import Status

from bmc.engine import agreement
from bmc.engine import events as ev
from bmc.workspace.outcome import ToolOutcome

if TYPE_CHECKING:
    from bmc.engine.api import Conversation, RunOptions
    from bmc.engine.session import Session
    from bmc.workspace.paths import Project

PROMPT = "Does the client agree? Type yes (optionally `yes, <client contact>`), or their feedback: "


class TerminalDisplay:
    """Implements the agent loop's `Display` for a terminal or a pipe."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(highlight=False)
        self.rich = self.console.is_terminal
        self._status: Status | None = None
        self._live: Live | None = None
        self._buffer = ""

    def reply_started(self) -> None:
        self._buffer = ""
        self._spin("thinking…")

    def text(self, delta: str) -> None:
        self._buffer += delta
        if not self.rich:
            self.console.file.write(delta)
            self.console.file.flush()
            return
        self._stop_spinner()
        if self._live is None:
            self._live = Live(
                console=self.console, refresh_per_second=10, vertical_overflow="visible"
            )
            self._live.start()
        self._live.update(Markdown(self._buffer))

    def reply_dropped(self, reason: str) -> None:
        self._stop_live(keep=False)
        self.console.print(f"[dim](reply dropped: {reason}; asking again)[/dim]")
        self._buffer = ""

    def reply_finished(self) -> None:
        self._stop_spinner()
        self._stop_live(keep=True)
        if self._buffer and not self.rich:
            self.console.file.write("\n")
        self._buffer = ""

    def tool(self, name: str, summary: str, outcome: ToolOutcome) -> None:
        label = f"{name} {summary}".strip()
        shown = ""
        if outcome.is_error:
            lines = outcome.text.splitlines() or ["refused"]
            shown = "\n    ".join(lines[:4]) + ("\n    …" if len(lines) > 4 else "")
        if not self.rich:  # piped: plain text, no markup to parse on every tool call
            line = f"  ✗ {label}\n    {shown}" if outcome.is_error else f"  · {label}"
            self.console.file.write(line + "\n")
            return
        if outcome.is_error:
            self.console.print(f"  [red]✗ {escape(label)}[/red]\n    [dim]{escape(shown)}[/dim]")
        else:
            self.console.print(f"  [dim]· {escape(label)}[/dim]")

    def notice(self, text: str) -> None:
        if not self.rich:  # piped: no markup to build and parse
            self.console.file.write(text + "\n")
            return
        # soft_wrap: a command or path folded across lines cannot be copied.
        self.console.print(f"[yellow]{escape(text)}[/yellow]", soft_wrap=True)

    def agreed(self, event: ev.AgreementRecorded) -> None:
        self.console.print(
            f"[green]Agreed:[/green] {escape(event.gate)} written and recorded in decisions.md."
        )
        for gate in event.stale:
            self.console.print(f"{escape(gate)} is now stale: agree that stage again.")

    def summary(self, usage: ev.Usage) -> None:
        self.console.print(f"[dim]{escape(usage.summary)}[/dim]")

    def _spin(self, label: str) -> None:
        if self.rich and self._status is None:
            self._status = self.console.status(label, spinner="dots")
            self._status.start()

    def _stop_spinner(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def _stop_live(self, keep: bool) -> None:
        if self._live is not None:
            if not keep:
                self._live.update("")
            self._live.stop()
            self._live = None


class Consultant:
    """Where the consultant's words come from: the keyboard, or stdin lines when piped."""

    def __init__(self, console: Console, stream: IO[str] | None = None) -> None:
        self.console = console
        self.stream = stream or sys.stdin
        self.interactive = self.stream.isatty()
        self._lines: Iterator[str] | None = None

    def next_message(self) -> str | None:
        """The consultant's next message, or None when they are done (end of input)."""
        return self._ask("[bold cyan]you>[/bold cyan] ")

    def answer(self, prompt: str) -> str | None:
        """An answer at a prompt (the agreement gate), or None at end of input."""
        return self._ask(prompt)

    def _ask(self, prompt: str) -> str | None:
        if self.interactive:
            try:
                while True:
                    line = self.console.input(prompt)
                    if line.strip():
                        return line.strip()
            except (EOFError, KeyboardInterrupt):
                self.console.print()
                return None
        if self._lines is None:
            self._lines = (line.strip() for line in self.stream if line.strip())
        # The question shows before the answer is read, even when no answer comes.
        self.console.print(_plain(prompt), end="", soft_wrap=True, markup=False)
        line = next(self._lines, None)
        self.console.print(line if line is not None else "", markup=False, highlight=False)
        return line


def _plain(prompt: str) -> str:
    return Console().render_str(prompt).plain if "[" in prompt else prompt


def start(
    project: Project,
    skill: str,
    options: RunOptions,
    display: TerminalDisplay,
    consultant: Consultant,
    opening: str | None = None,
) -> Session | None:
    """`bmc run`: start the skill through the engine and chat in the terminal."""
    from bmc.engine import api as engine

    conversation = engine.start(project, skill, options, opening)
    drive(conversation, display, consultant)
    return conversation.session


def resume(
    project: Project,
    session_id: str | None,
    options: RunOptions,
    display: TerminalDisplay,
    consultant: Consultant,
) -> Session | None:
    """`bmc resume`: continue a session through the engine, in the terminal."""
    from bmc.engine import api as engine

    conversation = engine.resume(project, session_id, options)
    drive(conversation, display, consultant)
    return conversation.session


def drive(conversation: Conversation, display: TerminalDisplay, consultant: Consultant) -> None:
    """Show a conversation's events until it stops, answering with the consultant's words;
    re-raises what stopped it (a `BmcError` carries the exit code). Ctrl-C stops it, saved."""
    events = conversation.events()
    last_usage: ev.Usage | None = None
    while True:
        try:
            for event in events:
                if isinstance(event, ev.Usage):
                    last_usage = event
                elif isinstance(event, ev.Stopped):
                    display.reply_finished()
                    if last_usage is not None:
                        display.summary(last_usage)
                else:
                    _show(event, conversation, display, consultant)
            break
        except KeyboardInterrupt:
            conversation.stop()  # the worker saves and ends; keep showing until it has
    conversation.wait()


def _show(
    event: object, conversation: Conversation, display: TerminalDisplay, consultant: Consultant
) -> None:
    if isinstance(event, ev.TextDelta):
        display.text(event.text)
    elif isinstance(event, ev.ReplyStarted):
        display.reply_started()
    elif isinstance(event, ev.ReplyFinished):
        display.reply_finished()
    elif isinstance(event, ev.ReplyDropped):
        display.reply_dropped(event.reason)
    elif isinstance(event, ev.ToolLine):
        display.tool(event.name, event.summary, ToolOutcome(event.text, event.is_error))
    elif isinstance(event, ev.Notice):
        display.notice(event.text)
    elif isinstance(event, ev.AgreementRecorded):
        display.agreed(event)
    elif isinstance(event, ev.WaitingForMessage):
        text = consultant.next_message()
        if text is None:
            conversation.stop()
        else:
            conversation.send(text)
    elif isinstance(event, ev.AgreementRequested):
        answer = ask_agreement(display, consultant, event)
        if answer is None:
            conversation.stop()
        else:
            conversation.answer(answer)


def ask_agreement(
    display: TerminalDisplay,
    consultant: Consultant,
    request: ev.AgreementRequested,
    prompt: str = PROMPT,
) -> agreement.Answer | None:
    """Show what is to be agreed and read the answer (None: no answer, end of input)."""
    if request.changed_from:
        display.notice(
            f"{request.document} changed after you were shown it ({request.changed_from} -> "
            f"{request.digest}); nothing was agreed. This is the version now on disk:"
        )
    show_proposal(display.console, request)
    text = consultant.answer(prompt)
    return None if text is None else agreement.parse_answer(text, request.digest)


def show_proposal(console: Console, request: ev.AgreementRequested) -> None:
    # Item names and scope come from the document and the model: escaped, so text like
    # `[/bold]` cannot crash the panel and `[white on white]` cannot hide words from the
    # person who is about to agree them.
    lines = [f"[bold]{escape(request.document)}[/bold]  ({request.digest})", ""]
    lines += [f"• {escape(item)}" for item in request.items] or ["(no items found)"]
    if request.scope:
        lines += ["", f"Scope: {escape(request.scope)}"]
    console.print(Panel("\n".join(lines), title=f"Agree: {escape(request.what)}", expand=False))
