"""The conversation's rules: what a list of Messages API messages must look like, and every
change the loop and the journal make to it (SPEC sections 7 and 9).

Kept apart from the loop (and free of the SDK) so that the journal's replay applies exactly
the rules the loop applied, `bmc sessions` and `--record` can read a conversation without
loading the model client, and `loop.py` reads as the loop alone:

- a tool round: which calls are still unanswered, and results merged into one message;
- the runner's own notes after a reply cut at the output limit;
- prompt-cache breakpoints along the conversation;
- clearing old tool results (and the model's own long write inputs) to stay inside the
  window, and the size estimate that decides when.
"""

from __future__ import annotations

import json
from typing import Any

from bmc.workspace.outcome import ToolOutcome

CACHE = {"type": "ephemeral"}
CLEARED = (
    "[cleared to keep the conversation inside the model's window: "
    "read the file again if you need it]"
)
CLEARED_INPUT = "[cleared: the file holds it]"
CUT_TOOL_CALL = (
    "Your last reply reached the output limit before its tool call was complete, so nothing "
    "was run. Continue; write long documents in parts (write the first sections, then add the "
    "rest with edit)."
)
CUT_TEXT = "Your last reply reached the output limit. Continue where you stopped."


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


def with_cache_breakpoints(
    messages: list[dict[str, Any]], boundary: int | None = None
) -> list[dict[str, Any]]:
    """Copies of the messages with breakpoints on the last block of the last message and of
    the user message before it: the new one writes this turn's prefix, the older one sits
    exactly where the previous request wrote, so a long tool round (more than 20 new blocks)
    still reads the cache. With a clearing `boundary`, one more sits at its end: the prefix
    that the next clearing leaves unchanged. With the system block's, at most four."""
    marked = list(messages)
    user_turns = [i for i, m in enumerate(messages) if m["role"] == "user"]
    targets = {len(messages) - 1, *user_turns[-2:-1]}
    if boundary:
        targets.add(boundary - 1)
    for index in targets:
        if index < 0:
            continue
        message = messages[index]
        content = message["content"]
        if isinstance(content, str):
            content = [text_block(content)]
        if not content:
            continue
        last = {**content[-1], "cache_control": CACHE}
        marked[index] = {**message, "content": [*content[:-1], last]}
    return marked


def clearing_point(
    system: str, messages: list[dict[str, Any]], target: int, keep_recent: int
) -> int:
    """How many of the oldest messages to clear: every one but the `keep_recent` newest, and
    more if that does not bring the estimate down to `target` (a few big reads can fill the
    budget on their own), but never the newest message: the model has not seen it yet."""
    upto = max(0, len(messages) - keep_recent)
    saved = [_size(m) - _size(_cleared(m)) for m in messages]
    left = estimate_tokens(system, messages) - sum(saved[:upto])
    while left > target and upto < len(messages) - 1:
        left -= saved[upto]
        upto += 1
    return upto


def _size(message: dict[str, Any]) -> int:
    return len(json.dumps(message, ensure_ascii=False)) // 4


def _cleared(message: dict[str, Any]) -> dict[str, Any]:
    copy = json.loads(json.dumps(message))
    clear_old_context([copy], 1)
    return copy


# The inputs of the model's own calls that the files on disk already hold.
CLEARABLE_INPUTS = {"write": ("content",), "edit": ("old_string", "new_string")}


def clear_old_context(messages: list[dict[str, Any]], upto: int) -> bool:
    """In messages[:upto], replace the text of tool results and the long inputs of `write`
    and `edit` calls with a short note; True if anything changed. The same rule replays a
    journal's `cleared` record, so a resumed conversation is the one that was sent."""
    changed = False
    for message in messages[:upto]:
        if isinstance(message["content"], str):
            continue
        for block in message["content"]:
            if block.get("type") == "tool_result" and block.get("content") != CLEARED:
                block["content"] = CLEARED
                changed = True
            elif block.get("type") == "tool_use":
                changed |= _clear_inputs(block)
    return changed


def _clear_inputs(call: dict[str, Any]) -> bool:
    changed = False
    for key in CLEARABLE_INPUTS.get(call.get("name", ""), ()):
        value = call.get("input", {}).get(key)
        if isinstance(value, str) and len(value) > len(CLEARED_INPUT):
            call["input"] = {**call["input"], key: CLEARED_INPUT}
            changed = True
    return changed


class SizeMemo:
    """`estimate_tokens` without re-serialising the whole conversation every turn (it grows
    with the session), and without walking it either: a running total of the messages
    before the last, which never change again (only the last message grows, as tool
    results are merged into it), plus the last one's size, kept until its block count
    changes. A clearing rewrites old blocks (`forget`); another list, or a shorter one, or
    another message where the total stopped, starts the count again."""

    def __init__(self) -> None:
        self.forget()

    def estimate(self, system: str, messages: list[dict[str, Any]]) -> int:
        settled = len(messages) - 1  # every message but the last is final
        if (
            id(messages) != self._list
            or settled < self._counted
            or (self._counted and id(messages[self._counted - 1]) != self._edge)
        ):
            self.forget()
            self._list = id(messages)
        if settled > self._counted:
            # The message that was last the time before is usually among these: measured then.
            self._total += sum(self._measure(m) for m in messages[self._counted : settled])
            self._counted = settled
            self._edge = id(messages[settled - 1])
        total = len(system) + self._total
        if messages:
            total += self._measure(messages[-1], keep=True)
        return total // 4

    def _measure(self, message: dict[str, Any], keep: bool = False) -> int:
        blocks = len(message["content"]) if isinstance(message["content"], list) else -1
        if self._last[:2] == (id(message), blocks):
            return self._last[2]
        size = _chars(message)
        if keep:
            self._last = (id(message), blocks, size)
        return size

    def forget(self) -> None:
        self._list: int | None = None
        self._counted = 0  # messages[:_counted] are in _total
        self._total = 0
        self._edge: int | None = None  # id of messages[_counted - 1]
        self._last: tuple[int, int, int] = (0, 0, 0)  # id, block count, size of the last


def _chars(message: dict[str, Any]) -> int:
    return len(json.dumps(message, ensure_ascii=False))


def estimate_tokens(system: str, messages: list[dict[str, Any]]) -> int:
    return (len(system) + len(json.dumps(messages, ensure_ascii=False))) // 4


def merge_results(messages: list[dict[str, Any]], results: list[dict[str, Any]]) -> None:
    """Tool results join the results message after the reply, or start it."""
    if not results:
        return
    last = messages[-1] if messages else None
    if (
        last
        and last["role"] == "user"
        and all(b.get("type") == "tool_result" for b in last["content"])
    ):
        last["content"].extend(results)
    else:
        messages.append({"role": "user", "content": results})


def sendable_as_last(content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A paused reply is sent back as the last message, and the API refuses a final
    assistant text that ends in whitespace."""
    if content and content[-1].get("type") == "text":
        text = content[-1]["text"].rstrip()
        content = [*content[:-1], text_block(text)] if text else content[:-1]
    return content


def tool_result(tool_use_id: str, outcome: ToolOutcome) -> dict[str, Any]:
    block: dict[str, Any] = {
        "type": "tool_result",
        "tool_use_id": tool_use_id,
        "content": outcome.text,
    }
    if outcome.is_error:
        block["is_error"] = True
    return block


def text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}
