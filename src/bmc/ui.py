"""The terminal side of a conversation: streamed markdown, a spinner, the consultant's input.

In a terminal, replies render as markdown while they stream and a spinner shows while the
model thinks or tools run. Piped, everything is plain text and each non-blank stdin line is
the consultant's next message (SPEC section 8), so sessions can be scripted.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import IO

from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown
from rich.markup import escape
from rich.status import Status

from .outcome import ToolOutcome


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
        # soft_wrap: a command or path folded across lines cannot be copied.
        self.console.print(f"[yellow]{escape(text)}[/yellow]", soft_wrap=True)

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
