"""`bmc run --record FILE`: save a real session as a scenario the scripted model can replay.

A firm can then keep a good session as a regression test: `ScriptedModel(FILE)` answers
with the same replies, and the scenario's `consultant` lines play the consultant's side.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .agent import CUT_TEXT, CUT_TOOL_CALL
from .session import Session
from .workspace import atomic_write

RUNNER_NOTES = {CUT_TEXT, CUT_TOOL_CALL}  # user turns the runner wrote, not the consultant


def session_to_scenario(session: Session) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    consultant: list[str] = []
    user_texts = 0
    for message in session.messages:
        content = message["content"]
        if message["role"] == "assistant":
            has_tool = any(b.get("type") == "tool_use" for b in content)
            steps.append(
                {
                    "reply": {
                        "content": content,
                        "stop_reason": "tool_use" if has_tool else "end_turn",
                    }
                }
            )
            continue
        texts = [b["text"] for b in content if b.get("type") == "text"]
        if texts and texts[0] not in RUNNER_NOTES:
            user_texts += 1
            if user_texts > 1:  # the first is the runner's opening, not the consultant
                consultant.append("\n".join(texts))
    return {
        "name": f"recorded {session.id}",
        "skill": session.skill,
        "consultant": consultant,
        "steps": steps,
    }


def write_scenario(session: Session, path: Path) -> None:
    atomic_write(
        path, json.dumps(session_to_scenario(session), indent=2, ensure_ascii=False) + "\n"
    )
