"""What a tool call returns to the model; kept apart so the terminal and the gate can name it
without importing the SDK (commands that need no model must start at once)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ToolOutcome:
    """What goes back to the model as a `tool_result`."""

    text: str
    is_error: bool = False
