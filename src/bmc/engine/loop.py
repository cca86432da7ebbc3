"""The agent loop: ask the model, run the tools it calls, repeat until it hands back.

`Agent.run` reads top to bottom: check budgets, stream one reply, record it, then act on
its `stop_reason` (SPEC section 9). The conversation is a plain list of API messages and
nothing more; every change to it goes through the `Transcript` first, so the journal always
holds what the next request would send.

Why not the SDK's `client.beta.messages.tool_runner`: see docs/agent-loop.md. In short, it
cannot journal each tool result as it happens, pause for a human in the middle of a tool
round and resume days later, move a cache breakpoint along the conversation, or refuse to
run a tool call that `max_tokens` cut off.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import anthropic
import httpx2

from bmc.crashpoints import crash_point
from bmc.engine.conversation import (
    CACHE,
    CUT_TEXT,
    CUT_TOOL_CALL,
    SizeMemo,
    clear_old_context,
    clearing_point,
    merge_results,
    sendable_as_last,
    text_block,
    tool_result,
    unanswered_calls,
    with_cache_breakpoints,
)
from bmc.engine.usage import RunUsage, TurnUsage
from bmc.errors import ModelError, StoppedForPerson, UserError
from bmc.workspace.outcome import ToolOutcome
from bmc.workspace.tools import Toolbox

FAIL_FAST = {400, 401, 403, 404, 413}
MAX_TOKENS_CEILING = 32_000
EMPTY_REPLY = "(no reply)"


class Transcript(Protocol):
    """Where the loop reports every change to the conversation (the session journal)."""

    def message(self, message: dict[str, Any]) -> None: ...
    # `read_changes`: what the call changed in the hashes of what the model has seen (a
    # path's new hash, or None once it is forgotten), as `Toolbox.take_read_changes` gives it.
    def tool_result(self, block: dict[str, Any], read_changes: dict[str, str | None]) -> None: ...
    def turn(self, usage: TurnUsage) -> None: ...
    def cleared(self, upto: int) -> None: ...
    def commit(self) -> None: ...  # make the above durable: called before each request


class Display(Protocol):
    """What the loop shows the consultant; `api` turns it into events for a surface."""

    def reply_started(self) -> None: ...
    def text(self, delta: str) -> None: ...
    def reply_dropped(self, reason: str) -> None: ...
    def reply_finished(self) -> None: ...
    def tool(self, name: str, summary: str, outcome: ToolOutcome) -> None: ...
    def notice(self, text: str) -> None: ...


class Interrupted(Exception):
    """A surface asked the loop to stop: a half-streamed reply is dropped, and tool calls
    not yet run stay unanswered, to run on resume."""


@dataclass(frozen=True)
class RunnerTool:
    """A tool the runner itself answers (request_agreement); its handler may raise to pause."""

    definition: dict[str, Any]
    handle: Callable[[dict[str, Any]], ToolOutcome]


@dataclass
class Limits:
    max_turns: int | None = None
    max_cost: float | None = None
    # A model that works this many turns without handing back to the consultant is looping
    # (SPEC section 11): stop for a person, resumable. Always on (--max-turns-per-message
    # raises it); --max-turns is per run.
    turns_per_message: int = 60
    max_tokens: int = 8192
    retry_budget: int = 4
    # Past this estimate, old tool results are cleared down to half of it (in one step).
    context_budget_tokens: int = 150_000
    # Kept whole in a clearing, unless clearing everything older is not enough.
    keep_recent_messages: int = 6


@dataclass
class Agent:
    client: anthropic.Anthropic
    model: str
    system: str
    toolbox: Toolbox
    transcript: Transcript
    display: Display
    usage: RunUsage
    runner_tools: dict[str, RunnerTool] = field(default_factory=dict)
    server_tools: list[dict[str, Any]] = field(default_factory=list)  # e.g. web search (--web)
    limits: Limits = field(default_factory=Limits)
    turns_this_run: int = 0
    # Where the last clearing stopped: messages before it never change again, so a cache
    # breakpoint there lets the next clearing read them instead of writing them anew.
    boundary: int | None = None
    # Asked between stream events and tool calls; true once a surface wants the loop to stop.
    should_stop: Callable[[], bool] = lambda: False
    _sizes: SizeMemo = field(default_factory=lambda: SizeMemo(), init=False, repr=False)
    # The tool list, built once: it is fixed for the session (part of the cached prefix).
    _tools: list[dict[str, Any]] | None = field(default=None, init=False, repr=False)

    def run(self, messages: list[dict[str, Any]]) -> str:
        """Advance the conversation until the model ends its turn; returns the stop reason."""
        max_tokens = self.limits.max_tokens
        turns_here = cut_at_ceiling = 0
        while True:
            if self.should_stop():
                raise Interrupted
            self._check_budgets()
            if turns_here >= self.limits.turns_per_message:
                raise StoppedForPerson(
                    f"the model worked {turns_here} turns without handing back to you (the "
                    "--max-turns-per-message limit); check what it did, then `bmc resume` to "
                    "go on, with a higher --max-turns-per-message if the task needs it (a "
                    "research stage over many reports can), or give it a narrower task."
                )
            turns_here += 1
            cleared_upto = self._keep_inside_window(messages)
            reply = self._query(messages, max_tokens)
            if cleared_upto is not None:
                # From the next request on, the new boundary is the stable prefix to keep.
                self.boundary = cleared_upto
            self.turns_this_run += 1
            turn = TurnUsage.from_api(reply.usage)
            self.usage.add(turn)
            self.transcript.turn(turn)
            content = [_block(b) for b in reply.content]
            stop = reply.stop_reason
            if stop == "max_tokens":
                cut_at_ceiling = cut_at_ceiling + 1 if max_tokens == MAX_TOKENS_CEILING else 0
                self._continue_after_cut(messages, content)
                if cut_at_ceiling >= 2:  # raising the limit cannot help any more
                    raise StoppedForPerson(
                        f"the model's replies keep passing the {MAX_TOKENS_CEILING}-token output "
                        "limit; ask it for smaller pieces, then `bmc resume`."
                    )
                max_tokens = min(max_tokens * 2, MAX_TOKENS_CEILING)
                continue
            cut_at_ceiling = 0
            if stop == "pause_turn":
                content = sendable_as_last(content)
            # The API refuses an empty text block, and an end_turn reply with no content
            # does happen: keep a placeholder so the conversation stays sendable.
            self.append(
                messages, {"role": "assistant", "content": content or [text_block(EMPTY_REPLY)]}
            )
            if stop == "pause_turn":
                continue  # a server tool paused a long turn: send it back as it is
            if stop == "tool_use":
                self.run_tools(messages)
                continue
            return stop or "end_turn"

    def run_tools(self, messages: list[dict[str, Any]]) -> None:
        """Run every tool call of the last reply; all results go back in one user message.

        After a resume the results message may already hold some answers (journaled before
        the pause or crash): only the calls still unanswered run.
        """
        for call in unanswered_calls(messages):
            if self.should_stop():
                raise Interrupted
            block = tool_result(call["id"], self._run_one(call))
            crash_point("tool-result")
            self.transcript.tool_result(block, self.toolbox.take_read_changes())
            merge_results(messages, [block])
        if self.toolbox.livelock:
            raise StoppedForPerson(self.toolbox.livelock)

    def _run_one(self, call: dict[str, Any]) -> ToolOutcome:
        name, tool_input = call["name"], call.get("input") or {}
        if name in self.runner_tools:
            outcome = self.runner_tools[name].handle(tool_input)
        else:
            outcome = self.toolbox.run(name, tool_input)
        self.display.tool(name, _summarise(tool_input), outcome)
        return outcome

    def tool_definitions(self) -> list[dict[str, Any]]:
        # No breakpoint here: tools come first in the cache prefix, so the system block's
        # breakpoint already covers tools + system.
        runner = [t.definition for t in self.runner_tools.values()]
        return [*self.toolbox.definitions(), *runner, *self.server_tools]

    def _request(self, messages: list[dict[str, Any]], max_tokens: int) -> dict[str, Any]:
        if self._tools is None:
            self._tools = self.tool_definitions()
        return {
            "model": self.model,
            "max_tokens": max_tokens,
            "system": [{"type": "text", "text": self.system, "cache_control": CACHE}],
            "tools": self._tools,
            "messages": with_cache_breakpoints(messages, self.boundary),
        }

    def _query(self, messages: list[dict[str, Any]], max_tokens: int) -> Any:
        """Stream one reply. The SDK retries failed requests itself; a stream that breaks
        after it started is not retried by the SDK, so the partial reply is dropped and the
        turn asked again here, within one retry budget."""
        params = self._request(messages, max_tokens)
        failures = 0
        while True:
            started = False
            try:
                self.display.reply_started()
                self.transcript.commit()  # the journal's group commit: once per request
                with self.client.messages.stream(**params) as stream:
                    started = True
                    for event in stream:
                        if self.should_stop():
                            # Dropped as a broken stream is: nothing of it was recorded.
                            self.display.reply_dropped("stopped")
                            raise Interrupted
                        if event.type == "text":
                            self.display.text(event.text)
                            crash_point("stream-text")
                    reply = stream.get_final_message()
                self.display.reply_finished()
                return reply
            except anthropic.AuthenticationError as err:
                self.display.reply_finished()
                raise UserError(_describe(err)) from err
            except anthropic.APIStatusError as err:
                if not started or err.status_code in FAIL_FAST:
                    self.display.reply_finished()
                    raise ModelError(_describe(err)) from err
                reason = _describe(err)
            except (anthropic.APIConnectionError, httpx2.HTTPError) as err:
                if not started:
                    self.display.reply_finished()
                    # Name the endpoint: a wrong ANTHROPIC_BASE_URL is the usual cause.
                    raise ModelError(f"{_describe(err)} Endpoint: {self.client.base_url}") from err
                reason = f"the connection dropped mid-reply ({type(err).__name__})"
            failures += 1
            if failures > self.limits.retry_budget:
                self.display.reply_finished()
                raise ModelError(f"the model failed {failures} times in a row: {reason}")
            self.display.reply_dropped(reason)
            time.sleep(min(0.5 * 2 ** (failures - 1), 8.0))

    def _continue_after_cut(self, messages: list[dict[str, Any]], content: list[dict]) -> None:
        # A tool call cut off by max_tokens may have half its input: never run it.
        was_tool = not content or any(b.get("type") == "tool_use" for b in content)
        kept = [b for b in content if b.get("type") != "tool_use"] or [text_block("(cut off)")]
        self.append(messages, {"role": "assistant", "content": kept})
        note = CUT_TOOL_CALL if was_tool else CUT_TEXT
        self.append(messages, {"role": "user", "content": [text_block(note)]})

    def _check_budgets(self) -> None:
        limits = self.limits
        if limits.max_turns is not None and self.turns_this_run >= limits.max_turns:
            raise StoppedForPerson(
                f"the turn budget ({limits.max_turns} model turns) is spent; check the work so "
                "far, then `bmc resume` to go on."
            )
        if limits.max_cost is not None and self.usage.cost >= limits.max_cost:
            raise StoppedForPerson(
                f"the cost budget (${limits.max_cost:.2f}) is spent (${self.usage.cost:.4f}); "
                "check the work so far, then `bmc resume` to go on."
            )

    def _keep_inside_window(self, messages: list[dict[str, Any]]) -> int | None:
        """Past the budget, clear the oldest tool results (and the long inputs of the model's
        own writes, which the files hold) in one step, down to half the budget: the
        conversation then has room to grow before the next clearing, so the cache breaks
        once per clearing rather than on every turn. Returns where it cleared to, if it did."""
        budget = self.limits.context_budget_tokens
        if self._sizes.estimate(self.system, messages) <= budget:
            return None
        upto = clearing_point(self.system, messages, budget // 2, self.limits.keep_recent_messages)
        if not clear_old_context(messages, upto):
            return None
        self._sizes.forget()
        self.transcript.cleared(upto)
        self.display.notice("Older tool results were cleared to stay inside the model's window.")
        return upto

    def append(self, messages: list[dict[str, Any]], message: dict[str, Any]) -> None:
        self.transcript.message(message)
        messages.append(message)


def _block(block: Any) -> dict[str, Any]:
    """An API content block as the plain dict we send back next turn."""
    kind = block.type
    if kind == "text":
        return text_block(block.text)
    if kind == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    return block.model_dump(mode="json", exclude_none=True)


def _summarise(tool_input: dict[str, Any]) -> str:
    """What the consultant sees of a tool call: its file, or its pattern and where."""
    for key in ("file_path", "document", "pattern"):
        if key in tool_input:
            where = tool_input.get("path") if key == "pattern" else None
            return f"{tool_input[key]} in {where}" if where else str(tool_input[key])
    return ""


def _describe(err: Exception) -> str:
    if isinstance(err, anthropic.AuthenticationError):
        return "the API key was refused (401): check ANTHROPIC_API_KEY."
    if isinstance(err, anthropic.APIStatusError):
        message = err.message if isinstance(err.message, str) else str(err)
        return f"the model endpoint answered {err.status_code}: {message}"
    if isinstance(err, anthropic.APITimeoutError):
        return "the model endpoint did not answer in time."
    if isinstance(err, anthropic.APIConnectionError):
        return "could not reach the model endpoint (connection failed)."
    return f"{type(err).__name__}: {err}"
