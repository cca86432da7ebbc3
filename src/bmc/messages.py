"""The conversation as API messages: what the loop and the journal both need to know.

Kept apart from both (and free of the SDK) so `bmc sessions` and the resume checks can ask
it without loading the model client.
"""

from __future__ import annotations

from typing import Any


def unanswered_calls(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool calls of the last reply that have no result yet: all of them right after the
    reply, the rest when a crash or a pause came in the middle of the round."""
    if not messages:
        return []
    last = len(messages) - 1
    at = last if messages[last]["role"] == "assistant" else last - 1
    if at < 0 or messages[at]["role"] != "assistant":
        return []
    calls = [b for b in messages[at]["content"] if b.get("type") == "tool_use"]
    answered: set[str] = set()
    if at + 1 < len(messages):
        reply = messages[at + 1]["content"]
        answered = {b.get("tool_use_id") for b in reply if isinstance(b, dict)}
    return [c for c in calls if c["id"] not in answered]
