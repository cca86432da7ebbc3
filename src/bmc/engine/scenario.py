"""`bmc run --record FILE`: save a real session as a scenario the scripted model can replay.

A firm can keep a good session as a regression test: serve the file with the scripted model
(`python -m bmc.scripted FILE --port-file P`, or `ScriptedModel(FILE)` in a test) and pipe
the scenario's `consultant` lines into `bmc run`: the consultant's messages and their
answers at agreement prompts, in the order they were typed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bmc.engine.conversation import CUT_TEXT, CUT_TOOL_CALL
from bmc.engine.session import Session
from bmc.workspace.paths import atomic_write

RUNNER_NOTES = {CUT_TEXT, CUT_TOOL_CALL}  # user turns the runner wrote, not the consultant
AGREEMENT = "request_agreement"
FEEDBACK = "Their feedback: "


def session_to_scenario(session: Session) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    consultant: list[str] = []
    names: dict[str, str] = {}  # tool_use id -> tool name, to find the agreement answers
    messages = session.messages
    for index, message in enumerate(messages):
        content = message["content"]
        if message["role"] == "assistant":
            names.update({b["id"]: b["name"] for b in content if b.get("type") == "tool_use"})
            following = messages[index + 1] if index + 1 < len(messages) else None
            steps.append({"reply": {"content": content, "stop_reason": _stop(content, following)}})
            continue
        for block in content:
            if block.get("type") == "tool_result" and names.get(block["tool_use_id"]) == AGREEMENT:
                answer = _agreement_answer(block)
                if answer is not None:
                    consultant.append(answer)
        texts = [b["text"] for b in content if b.get("type") == "text"]
        if texts and texts[0] not in RUNNER_NOTES and index > 0:  # [0] is the runner's opening
            consultant.append("\n".join(texts))
    return {
        "name": f"recorded {session.id}",
        "skill": session.skill,
        "consultant": consultant,
        "steps": steps,
    }


def _stop(content: list[dict[str, Any]], following: dict[str, Any] | None) -> str:
    """The reply's stop reason, as far as the conversation shows it: a reply the runner had
    to continue was cut at the output limit."""
    if following and following["role"] == "user":
        texts = [b.get("text") for b in following["content"] if b.get("type") == "text"]
        if texts and texts[0] in RUNNER_NOTES:
            return "max_tokens"
    return "tool_use" if any(b.get("type") == "tool_use" for b in content) else "end_turn"


def _agreement_answer(block: dict[str, Any]) -> str | None:
    """What the consultant typed at the prompt: yes, or their feedback (None when the
    runner refused before asking, e.g. a document with problems)."""
    text = block.get("content")
    if not isinstance(text, str) or block.get("is_error"):
        return None
    if text.startswith("agreed"):
        return "yes"
    return text.split(FEEDBACK, 1)[1] if FEEDBACK in text else None


def write_scenario(session: Session, path: Path) -> None:
    atomic_write(
        path, json.dumps(session_to_scenario(session), indent=2, ensure_ascii=False) + "\n"
    )
