"""A scripted model: a loopback HTTP server that speaks the Anthropic Messages API.

Tests and `bmc demo` point the real `anthropic` SDK at it (`base_url` or
`ANTHROPIC_BASE_URL`), so everything between our runner and the wire is exercised:
streaming, retries, error classes, usage accounting. It replays a scenario file (the
format is described in docs/scenarios.md): each POST /v1/messages consumes the next step,
which is a reply, an injected fault, or both.

It is an honest test double. A request that leaves the script (no step left, an `expect`
that does not hold) or that the real API would refuse (tool_use without its tool_result,
roles that do not alternate, too many cache breakpoints) is answered with HTTP 400 whose
message starts with "scripted model:", and is recorded in `divergences`;
`assert_finished()` fails while any divergence or unconsumed step remains.

Prompt caching is simulated the way the API does it (prefix hashes at breakpoints, a
20-block lookback), so the runner's cache placement can be tested offline.

This module imports nothing else from bmc: it stands apart from the product it tests.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

# ---------------------------------------------------------------------------------------
# The scenario: pydantic models are the one source of truth for the file format.
# ---------------------------------------------------------------------------------------

StopReason = Literal["end_turn", "tool_use", "max_tokens", "pause_turn", "refusal"]

# HTTP status -> the error type the real API names in its body.
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
# Error type -> status, for a stream error fault met by a non-streaming request.
STATUS_OF_ERROR_TYPE: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
DEFAULT_RETRY_AFTER = 0.05  # seconds; small so the SDK's own retries are quick in tests
CACHE_LOOKBACK = 20  # blocks the API looks back from a breakpoint for an earlier cache hit
MAX_BREAKPOINTS = 4


class _Strict(BaseModel):
    # A typo in a scenario must fail at load time, not silently do nothing.
    model_config = ConfigDict(extra="forbid")


class TextBlock(_Strict):
    type: Literal["text"]
    text: str = Field(min_length=1, description="The real API never sends an empty text block.")


class ToolUseBlock(_Strict):
    type: Literal["tool_use"]
    id: str | None = Field(None, description="Generated as toolu_scripted_SSS_I when absent.")
    name: str = Field(min_length=1)
    input: dict[str, Any] = Field(default_factory=dict)


ReplyBlock = Annotated[TextBlock | ToolUseBlock, Field(discriminator="type")]


class Reply(_Strict):
    content: list[ReplyBlock] = Field(default_factory=list)
    stop_reason: StopReason | None = Field(
        None, description="Defaults to tool_use when the content calls a tool, else end_turn."
    )


class ToolResultExpect(_Strict):
    is_error: bool | None = None
    contains: str | None = Field(None, description="Substring of the result's text.")


class Expect(_Strict):
    last_user_text_contains: str | None = Field(
        None, description="Substring of the last user message's text or tool results."
    )
    tool_results: dict[str, ToolResultExpect] = Field(
        default_factory=dict, description="By tool_use_id, in the last user message."
    )


class Fault(_Strict):
    status: int | None = Field(None, ge=400, le=599, description="Answer this HTTP error.")
    error_type: str | None = Field(None, description="Overrides the type derived from status.")
    message: str | None = None
    error_code: str | None = Field(None, description="Sent as error.details.error_code.")
    retry_after: float | None = Field(None, ge=0, description="Seconds, for retryable statuses.")
    should_retry: bool | None = Field(None, description="Sent as the x-should-retry header.")
    cut_after_events: int | None = Field(None, ge=0, description="Drop the stream after N events.")
    stream_error: str | None = Field(None, description="Send an SSE error event of this type.")
    after_events: int = Field(0, ge=0, description="Events sent before the stream_error event.")
    delay: float | None = Field(None, ge=0, description="Seconds to wait before answering.")
    event_gap: float | None = Field(
        None, ge=0, description="Seconds between streamed events: a slow reply, to stop mid-way."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Fault:
        kinds = [
            k
            for k in ("status", "cut_after_events", "stream_error")
            if getattr(self, k) is not None
        ]
        if len(kinds) > 1:
            raise ValueError(
                f"a fault takes one of status, cut_after_events, stream_error; "
                f"got {', '.join(kinds)}"
            )
        if not kinds and self.delay is None and self.event_gap is None:
            raise ValueError(
                "a fault needs status, cut_after_events, stream_error, delay or event_gap"
            )
        if self.after_events and self.stream_error is None:
            raise ValueError("after_events only goes with stream_error")
        return self


class Step(_Strict):
    expect: Expect | None = None
    reply: Reply | None = None
    fault: Fault | None = None

    @model_validator(mode="after")
    def _coherent(self) -> Step:
        fault = self.fault
        if self.reply is None and fault is None:
            raise ValueError("a step needs a reply, a fault, or both")
        if fault and fault.status is not None and self.reply is not None:
            raise ValueError("a status fault answers an error, so its reply would never be sent")
        streams = fault and (fault.cut_after_events is not None or fault.stream_error)
        if streams and self.reply is None:
            raise ValueError("cut_after_events and stream_error stream a reply: add one")
        return self


class Scenario(BaseModel):
    # Top-level keys besides these are kept and ignored: other tools attach their own
    # material to a scenario (the demo's consultant lines, a recording's provenance).
    model_config = ConfigDict(extra="allow")

    name: str = "scenario"
    steps: list[Step]

    @model_validator(mode="after")
    def _fill_defaults(self) -> Scenario:
        # Filled here, not at serve time, so load_scenario() shows exactly what is replayed.
        for number, step in enumerate(self.steps, start=1):
            if step.reply is None:
                continue
            for index, block in enumerate(step.reply.content):
                if isinstance(block, ToolUseBlock) and block.id is None:
                    block.id = f"toolu_scripted_{number:03d}_{index}"
            if step.reply.stop_reason is None:
                calls = any(isinstance(b, ToolUseBlock) for b in step.reply.content)
                step.reply.stop_reason = "tool_use" if calls else "end_turn"
        return self


def _describe_validation(name: str, error: ValidationError) -> str:
    """One line per problem, naming the step (numbered from 1) and the field."""
    lines = []
    for problem in error.errors():
        loc = list(problem["loc"])
        where = "scenario"
        if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
            where, loc = f"step {loc[1] + 1}", loc[2:]
        path = ".".join(str(part) for part in loc)
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"  {where}: {path + ': ' if path else ''}{message}")
    return f"scenario {name!r} is invalid:\n" + "\n".join(lines)


def _parse_scenario(source: Mapping[str, Any] | str | os.PathLike[str]) -> Scenario:
    if isinstance(source, Mapping):
        data, name = dict(source), str(source.get("name", "scenario"))
    elif isinstance(source, str) and source.lstrip().startswith("{"):
        data, name = _json_or_value_error(source, "scenario text"), "scenario"
    else:
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read scenario file {path}: {exc.strerror}") from exc
        data, name = _json_or_value_error(text, str(path)), path.name
    if not isinstance(data, dict):
        raise ValueError(f"scenario {name!r} must be a JSON object with a 'steps' list")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ValueError(_describe_validation(str(data.get("name", name)), exc)) from None


def _json_or_value_error(text: str, origin: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{origin} is not valid JSON: {exc}") from None


def load_scenario(source: Mapping[str, Any] | str | os.PathLike[str]) -> dict[str, Any]:
    """Validate a scenario (a dict, JSON text, or a path to a JSON file) and return it with
    defaults filled in (tool_use ids, stop reasons). Raises ValueError naming the bad step."""
    return _parse_scenario(source).model_dump(mode="json", exclude_none=True)


# ---------------------------------------------------------------------------------------
# Reading requests: validity the real API enforces, and the scenario's expectations.
# ---------------------------------------------------------------------------------------


def _blocks(content: Any) -> list[dict[str, Any]]:
    """A message's content as a list of blocks (a string is one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return []


def _result_text(block: Mapping[str, Any]) -> str:
    return "\n".join(b.get("text", "") for b in _blocks(block.get("content", "")))


def check_request(body: Mapping[str, Any]) -> str | None:
    """The first reason the real Messages API would refuse this body with a 400, or None.

    Only rules our runner could plausibly break are checked; the SDK's types catch the rest.
    """
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: field required"
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        return "max_tokens: a positive integer is required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for check in (_check_roles, _check_content, _check_tool_pairing):
        problem = check(messages)
        if problem:
            return problem
    return _check_breakpoints(body)


def _check_roles(messages: list[Any]) -> str | None:
    previous = None
    for number, message in enumerate(messages, start=1):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            return f"messages.{number}: role must be 'user' or 'assistant', got {role!r}"
        if number == 1 and role != "user":
            return "messages.1: the first message must have role 'user'"
        if role == previous:
            return f"messages.{number}: roles must alternate, but two '{role}' messages follow"
        previous = role
    return None


def _check_content(messages: list[dict[str, Any]]) -> str | None:
    last = len(messages)
    for number, message in enumerate(messages, start=1):
        blocks = _blocks(message.get("content"))
        # The API allows an empty final assistant message (a prefill), nothing else.
        if not blocks and not (number == last and message["role"] == "assistant"):
            return f"messages.{number}: all messages must have non-empty content"
        texts = [str(b.get("text") or "") for b in blocks if b.get("type") == "text"]
        if any(not text.strip() for text in texts):
            return f"messages.{number}: text content blocks must contain non-whitespace text"
        if (
            number == last
            and message["role"] == "assistant"
            and texts
            and texts[-1].rstrip() != texts[-1]
        ):
            return "final assistant content cannot end with trailing whitespace"
    return None


def _check_tool_pairing(messages: list[dict[str, Any]]) -> str | None:
    seen: set[str] = set()
    asked: list[str] = []  # tool_use ids of the assistant message just before
    for number, message in enumerate(messages, start=1):
        blocks = _blocks(message.get("content"))
        if message["role"] == "user":
            problem = _check_results(number, blocks, asked)
            if problem:
                return problem
            asked = []
            continue
        # Roles alternate (checked before), so `asked` is empty here.
        asked = [str(b.get("id")) for b in blocks if b.get("type") == "tool_use"]
        if len(set(asked)) < len(asked) or seen.intersection(asked):
            return f"messages.{number}: tool_use ids must be unique; {asked} repeats one"
        seen.update(asked)
    if asked:
        return (
            f"messages.{len(messages)}: tool_use ids were found without tool_result "
            f"blocks immediately after: {asked}"
        )
    return None


def _check_results(number: int, blocks: list[dict[str, Any]], asked: list[str]) -> str | None:
    """A user message must answer every tool_use of the message before it, results first."""
    results = [str(b.get("tool_use_id")) for b in blocks if b.get("type") == "tool_result"]
    unexpected = [r for r in results if r not in asked]
    if unexpected:
        return (
            f"messages.{number}: unexpected tool_use_id in tool_result blocks: {unexpected}; "
            "each must answer a tool_use in the previous message"
        )
    missing = [a for a in asked if a not in results]
    if missing:
        return (
            f"messages.{number - 1}: tool_use ids were found without tool_result blocks "
            f"immediately after: {missing}"
        )
    kinds = [b.get("type") for b in blocks]
    if results and kinds[: len(results)] != ["tool_result"] * len(results):
        return f"messages.{number}: tool_result blocks must come before any other content"
    return None


def _check_breakpoints(body: Mapping[str, Any]) -> str | None:
    found = sum(1 for _, block in _flatten(body) if block.get("cache_control") is not None)
    if found > MAX_BREAKPOINTS:
        return (
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {found}."
        )
    return None


def check_expect(expect: Expect, body: Mapping[str, Any]) -> list[str]:
    """What differs between the request and the step's expectations (empty when it holds)."""
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    blocks = _blocks(users[-1].get("content")) if users else []
    differences = []
    needle = expect.last_user_text_contains
    if needle is not None:
        text = "\n".join(
            _result_text(b) if b.get("type") == "tool_result" else b.get("text", "") for b in blocks
        )
        if needle not in text:
            differences.append(
                f"expected the last user message to contain {needle!r}; it reads {_clip(text)!r}"
            )
    results = {b.get("tool_use_id"): b for b in blocks if b.get("type") == "tool_result"}
    for tool_id, want in expect.tool_results.items():
        differences.extend(_differs_result(tool_id, want, results))
    return differences


def _differs_result(
    tool_id: str, want: ToolResultExpect, results: Mapping[Any, dict[str, Any]]
) -> list[str]:
    block = results.get(tool_id)
    if block is None:
        return [
            f"expected a tool_result for {tool_id}; the last user message answers "
            f"{sorted(map(str, results)) or 'no tool'}"
        ]
    differences = []
    is_error = bool(block.get("is_error", False))
    if want.is_error is not None and is_error != want.is_error:
        differences.append(
            f"expected tool_result {tool_id} is_error={want.is_error}, "
            f"got is_error={is_error}: {_clip(_result_text(block))!r}"
        )
    if want.contains is not None and want.contains not in _result_text(block):
        differences.append(
            f"expected tool_result {tool_id} to contain {want.contains!r}; "
            f"it reads {_clip(_result_text(block))!r}"
        )
    return differences


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


# ---------------------------------------------------------------------------------------
# Prompt-cache simulation.
# ---------------------------------------------------------------------------------------


def _flatten(body: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The request as the API caches it: tools, then system, then messages, block by block.
    Each block is tagged with where it came from, so equal blocks in different roles differ."""
    items = [("tool", t) for t in body.get("tools") or [] if isinstance(t, dict)]
    items += [("system", b) for b in _blocks(body.get("system") or [])]
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            items += [(str(message.get("role")), b) for b in _blocks(message.get("content"))]
    return items


def _without_cache_control(block: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in block.items() if k != "cache_control"}


def _tokens(block: Mapping[str, Any]) -> int:
    return math.ceil(len(json.dumps(_without_cache_control(block), sort_keys=True)) / 4)


def count_input_tokens(body: Mapping[str, Any]) -> int:
    return sum(_tokens(block) for _, block in _flatten(body))


class PromptCache:
    """Cached prefixes across the requests one server sees, keyed by model and content."""

    def __init__(self) -> None:
        self._prefixes: set[str] = set()

    def account(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Input-side usage of one request; writes its breakpoints into the cache."""
        items = _flatten(body)
        tokens = [_tokens(block) for _, block in items]
        upto = [sum(tokens[: i + 1]) for i in range(len(tokens))]  # tokens through block i
        hashes = _prefix_hashes(str(body.get("model")), items)
        breakpoints = [i for i, (_, b) in enumerate(items) if b.get("cache_control") is not None]
        if not breakpoints:
            return _input_usage(sum(tokens), 0, 0, 0)
        hit = self._furthest_hit(hashes, breakpoints)
        read = upto[hit] if hit >= 0 else 0
        last = breakpoints[-1]
        one_hour = sum(
            tokens[i] for i in range(hit + 1, last + 1) if _ttl_of(items, breakpoints, i) == "1h"
        )
        self._prefixes.update(hashes[i] for i in breakpoints)
        return _input_usage(sum(tokens) - upto[last], upto[last] - read - one_hour, one_hour, read)

    def _furthest_hit(self, hashes: list[str], breakpoints: list[int]) -> int:
        # From the last breakpoint backwards, the first cached prefix found in a lookback
        # window is the furthest one: an earlier window never reaches past a later one.
        for breakpoint in reversed(breakpoints):
            for position in range(breakpoint, max(breakpoint - CACHE_LOOKBACK, 0) - 1, -1):
                if hashes[position] in self._prefixes:
                    return position
        return -1


def _prefix_hashes(model: str, items: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """hashes[i] identifies the model plus every block up to and including block i."""
    digest = hashlib.sha256(model.encode())
    hashes = []
    for origin, block in items:
        canonical = json.dumps([origin, _without_cache_control(block)], sort_keys=True)
        digest.update(canonical.encode() + b"\n")
        hashes.append(digest.copy().hexdigest())
    return hashes


def _ttl_of(items: list[tuple[str, dict[str, Any]]], breakpoints: list[int], i: int) -> str:
    """The ttl of the breakpoint that closes the segment holding block i."""
    closing = next(bp for bp in breakpoints if bp >= i)
    control = items[closing][1].get("cache_control") or {}
    return str(control.get("ttl", "5m")) if isinstance(control, dict) else "5m"


def _input_usage(input_tokens: int, write_5m: int, write_1h: int, read: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": write_5m + write_1h,
        "cache_read_input_tokens": read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": write_5m,
            "ephemeral_1h_input_tokens": write_1h,
        },
        "output_tokens": 0,
        "service_tier": "standard",
    }


# ---------------------------------------------------------------------------------------
# Writing answers: the message, its SSE events, error bodies.
# ---------------------------------------------------------------------------------------


def _output_tokens(reply: Reply) -> int:
    chars = sum(
        len(b.text) if isinstance(b, TextBlock) else len(json.dumps(b.input)) for b in reply.content
    )
    return math.ceil(chars / 4)


def _message(message_id: str, model: str, reply: Reply, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [b.model_dump(mode="json") for b in reply.content],
        "stop_reason": reply.stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }


def _pieces(text: str, count: int = 3) -> list[str]:
    """A few chunks, so clients see a stream of deltas rather than one lump."""
    size = max(1, math.ceil(len(text) / count))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


Event = tuple[str, dict[str, Any]]


def _stream_events(message: dict[str, Any]) -> list[Event]:
    """The SSE events the API sends for `message`, in its order (ping after the first block
    starts, as in the API's documented example)."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events: list[Event] = [("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(message["content"]):
        events += _block_events(index, block)
        if index == 0:
            events.append(("ping", {"type": "ping"}))
    if not message["content"]:
        events.append(("ping", {"type": "ping"}))
    delta_usage = {
        k: usage[k]
        for k in (
            "input_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
            "output_tokens",
        )
    }
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": delta_usage,
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def _block_events(index: int, block: dict[str, Any]) -> list[Event]:
    if block["type"] == "text":
        opening: dict[str, Any] = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in _pieces(block["text"])]
    else:
        opening = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        deltas = [
            {"type": "input_json_delta", "partial_json": p}
            for p in _pieces(json.dumps(block["input"]))
        ]
    events: list[Event] = [
        (
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": opening},
        )
    ]
    events += [
        ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
        for d in deltas
    ]
    events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    return events


def _error_body(
    error_type: str, message: str, request_id: str, error_code: str | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"type": error_type, "message": message}
    if error_code:
        error["details"] = {"error_code": error_code}
    return {"type": "error", "error": error, "request_id": request_id}


@dataclass
class Answer:
    """What the server sends for one request, decided under the lock, written outside it."""

    status: int = 200
    body: dict[str, Any] | None = None  # a JSON answer
    events: list[Event] | None = None  # an SSE answer
    headers: dict[str, str] = field(default_factory=dict)
    cut: bool = False  # drop the connection before the answer is complete
    delay: float = 0.0  # deliberate wait before answering
    event_gap: float = 0.0  # deliberate wait between streamed events
    drop: bool = False  # after the delay, close without answering at all


def _error_answer(
    status: int, error_type: str, message: str, request_id: str, *, error_code: str | None = None
) -> Answer:
    body = _error_body(error_type, message, request_id, error_code)
    return Answer(status=status, body=body, headers={"request-id": request_id})


def _retryable(status: int) -> bool:
    # The statuses the SDK retries by default (see _should_retry in its _base_client).
    return status in (408, 409, 429) or status >= 500


def _fault_answer(fault: Fault, request_id: str) -> Answer:
    status = fault.status or 500
    error_type = fault.error_type or ERROR_TYPES.get(status, "api_error")
    message = fault.message or f"scripted {error_type} ({status})"
    answer = _error_answer(status, error_type, message, request_id, error_code=fault.error_code)
    if _retryable(status):
        # retry-after-ms is what the SDK reads first; retry-after is the standard header.
        seconds = DEFAULT_RETRY_AFTER if fault.retry_after is None else fault.retry_after
        answer.headers["retry-after"] = f"{seconds:g}"
        answer.headers["retry-after-ms"] = f"{seconds * 1000:g}"
    if fault.should_retry is not None:
        answer.headers["x-should-retry"] = "true" if fault.should_retry else "false"
    return answer


def _stream_error_events(events: list[Event], fault: Fault, request_id: str) -> list[Event]:
    error_type = fault.stream_error or "api_error"
    message = fault.message or f"scripted {error_type} mid-stream"
    error = _error_body(error_type, message, request_id, fault.error_code)
    return [*events[: fault.after_events], ("error", error)]


# ---------------------------------------------------------------------------------------
# The server.
# ---------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client must never keep the test process alive
    scripted: ScriptedModel

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (a timeout, a killed process, stop()) is routine here, not
        # worth a traceback on stderr; anything else is a bug in this module and is shown.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streaming, as the SDK expects
    # Small SSE writes would otherwise wait for the client's delayed ACK: about 40 ms a reply.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # test output stays clean; divergences carry what matters

    def setup(self) -> None:
        super().setup()
        self.server.scripted._connections.add(self.connection)

    def finish(self) -> None:
        self.server.scripted._connections.discard(self.connection)
        super().finish()

    def do_GET(self) -> None:
        self._send_json(Answer(404, _error_body("not_found_error", "Not found", "req_scripted")))

    def do_POST(self) -> None:
        started = time.perf_counter()
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        path = urlsplit(self.path).path  # the beta client adds ?beta=true
        scripted = self.server.scripted
        if path == "/v1/messages":
            answer = scripted._answer(raw, self.headers)
        elif path == "/v1/messages/count_tokens":
            answer = scripted._count_tokens(raw, self.headers)
        else:
            answer = Answer(
                404, _error_body("not_found_error", f"Not found: {path}", "req_scripted")
            )
        if answer.delay and scripted._stopping.wait(answer.delay):
            answer.drop = True  # stopping: don't answer into a closing server
        try:
            self._send(answer)
        except OSError:
            self.close_connection = True  # the client went away (timed out, killed)
        scripted._add_served(time.perf_counter() - started - answer.delay)

    def _send(self, answer: Answer) -> None:
        if answer.drop:
            self._abort()
        elif answer.events is not None:
            self._send_events(answer)
        else:
            self._send_json(answer)

    def _send_json(self, answer: Answer) -> None:
        data = json.dumps(answer.body).encode()
        self.send_response(answer.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if answer.cut:
            self.wfile.write(data[: len(data) // 2])
            self._abort()
            return
        self.wfile.write(data)

    def _send_events(self, answer: Answer) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        for index, (name, payload) in enumerate(answer.events or []):
            if index and answer.event_gap:
                time.sleep(answer.event_gap)
            data = f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
            if payload.get("delta", {}).get("type") == "text_delta":
                # When each word left, by the wall clock: what bench/bench_web.py compares
                # with the moment a browser showed it.
                self.server.scripted.text_sent_at.append(time.time())
        if answer.cut:
            self._abort()  # no terminating chunk: the client sees an incomplete body
            return
        self.wfile.write(b"0\r\n\r\n")

    def _abort(self) -> None:
        self.wfile.flush()
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class ScriptedModel:
    """Serve a scenario on loopback until stopped; use as a context manager.

    Thread-safe: requests are matched to steps in arrival order under one lock.
    """

    def __init__(
        self,
        scenario: Mapping[str, Any] | str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        state_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self.scenario = _parse_scenario(scenario)
        self.requests: list[dict[str, Any]] = []
        self.text_sent_at: list[float] = []  # wall-clock time of every text delta sent
        self.divergences: list[str] = []
        self.usages: list[dict[str, Any]] = []
        self.served_seconds = 0.0
        self._address = (host, port)
        self._state_file = Path(state_file) if state_file is not None else None
        self._lock = threading.Lock()
        self._next_step = 0
        self._replies = 0
        self._cache = PromptCache()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> ScriptedModel:
        if self._server is not None:
            return self
        self._server = _Server(self._address, _Handler)
        self._server.scripted = self
        self._write_state()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"scripted-model-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        # Idle keep-alive connections would otherwise hold their threads until the client
        # closes; shut them so the client sees a closed server at once.
        for connection in list(self._connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> ScriptedModel:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the scripted model is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self._address[0]}:{self.port}"

    # -- inspection -------------------------------------------------------------------

    def remaining(self) -> int:
        """Steps not yet consumed."""
        return len(self.scenario.steps) - self._next_step

    def assert_finished(self) -> None:
        """Fail unless every step was consumed and no request left the script."""
        problems = list(self.divergences)
        for number in range(self._next_step + 1, len(self.scenario.steps) + 1):
            problems.append(
                f"step {number} was never requested: {_summarize(self.scenario.steps[number - 1])}"
            )
        if problems:
            raise AssertionError(
                f"scripted model {self.scenario.name!r} did not finish "
                "cleanly:\n  " + "\n  ".join(problems)
            )

    # -- answering (called from handler threads) ----------------------------------------

    def _answer(self, raw: bytes, headers: Mapping[str, str]) -> Answer:
        with self._lock:
            number = len(self.requests) + 1
            request_id = f"req_scripted_{number:04d}"
            body = _parse_body(raw)
            self.requests.append(body)
            try:
                return self._decide(number, request_id, body, headers)
            finally:
                # Written before the answer goes out, so whatever a client saw is counted.
                self._write_state()

    def _decide(
        self, number: int, request_id: str, body: dict[str, Any], headers: Mapping[str, str]
    ) -> Answer:
        if not _has_credentials(headers):
            return _error_answer(
                401, "authentication_error", "x-api-key header is required", request_id
            )
        if "unparseable" in body:
            return self._diverge(request_id, f"request {number}: the body is not a JSON object")
        problem = check_request(body)
        if problem:
            return self._diverge(
                request_id, f"request {number} is invalid for the Messages API: {problem}"
            )
        if self._next_step >= len(self.scenario.steps):
            return self._diverge(
                request_id,
                f"request {number}: no step left (the scenario has "
                f"{len(self.scenario.steps)}); "
                f"last user message: {_last_user_text(body)!r}",
            )
        self._next_step += 1
        step = self.scenario.steps[self._next_step - 1]
        differences = check_expect(step.expect, body) if step.expect else []
        if differences:
            return self._diverge(
                request_id, f"step {self._next_step} (request {number}): " + "; ".join(differences)
            )
        return self._play(step, request_id, body)

    def _play(self, step: Step, request_id: str, body: dict[str, Any]) -> Answer:
        fault = step.fault
        delay = (fault.delay or 0.0) if fault else 0.0
        streaming = body.get("stream") is True
        if fault and fault.status is not None:
            answer = _fault_answer(fault, request_id)
        elif step.reply is None:
            answer = Answer(drop=True)  # a bare delay: the client is meant to time out
        elif fault and fault.stream_error and not streaming:
            # Without a stream there is no error event: the API answers the error outright.
            status = STATUS_OF_ERROR_TYPE.get(fault.stream_error, 500)
            answer = _fault_answer(
                fault.model_copy(update={"status": status, "error_type": fault.stream_error}),
                request_id,
            )
        else:
            answer = self._reply(step.reply, fault, request_id, body, streaming)
        answer.delay = delay
        answer.event_gap = (fault.event_gap or 0.0) if fault else 0.0
        return answer

    def _reply(
        self,
        reply: Reply,
        fault: Fault | None,
        request_id: str,
        body: dict[str, Any],
        streaming: bool,
    ) -> Answer:
        self._replies += 1
        usage = self._cache.account(body)
        usage["output_tokens"] = _output_tokens(reply)
        self.usages.append(usage)
        message = _message(f"msg_scripted_{self._replies:04d}", str(body["model"]), reply, usage)
        answer = Answer(headers={"request-id": request_id})
        cut_after = fault.cut_after_events if fault else None
        answer.cut = cut_after is not None
        if not streaming:
            answer.body = message
            return answer
        events = _stream_events(message)
        if fault and fault.stream_error:
            events = _stream_error_events(events, fault, request_id)
        if cut_after is not None:
            events = events[:cut_after]
        answer.events = events
        return answer

    def _diverge(self, request_id: str, divergence: str) -> Answer:
        self.divergences.append(divergence)
        return _error_answer(
            400, "invalid_request_error", f"scripted model: {divergence}", request_id
        )

    def _count_tokens(self, raw: bytes, headers: Mapping[str, str]) -> Answer:
        # Not a step: the runner may size its context with it at any time.
        if not _has_credentials(headers):
            return _error_answer(
                401, "authentication_error", "x-api-key header is required", "req_scripted"
            )
        return Answer(body={"input_tokens": count_input_tokens(_parse_body(raw))})

    def _add_served(self, seconds: float) -> None:
        with self._lock:
            self.served_seconds += max(0.0, seconds)

    def _write_state(self) -> None:
        if self._state_file is None:
            return
        state = {
            "consumed": self._next_step,
            "divergences": list(self.divergences),
            "requests": len(self.requests),
        }
        _atomic_write_text(self._state_file, json.dumps(state, indent=1))


def _parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        return body
    return {"unparseable": raw.decode("utf-8", errors="replace")}


def _has_credentials(headers: Mapping[str, str]) -> bool:
    # Any key is accepted; only a request with no credentials at all is refused, as the
    # real API does. An OAuth bearer token counts too (the SDK's auth_token).
    return headers.get("x-api-key") is not None or headers.get("authorization") is not None


def _last_user_text(body: Mapping[str, Any]) -> str:
    users = [m for m in body.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        return ""
    blocks = _blocks(users[-1].get("content"))
    return _clip(" ".join(b.get("text") or _result_text(b) for b in blocks))


def _summarize(step: Step) -> str:
    if step.fault and step.fault.status is not None:
        return f"fault status {step.fault.status}"
    if step.reply is None:
        return "fault delay"
    parts = [
        _clip(b.text, 60) if isinstance(b, TextBlock) else f"tool_use {b.name}"
        for b in step.reply.content
    ]
    return "reply " + (" + ".join(repr(p) for p in parts) or "(empty)")


def _atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Temp file in the same folder, then rename: a reader sees old or new, never half."""
    target = Path(path)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------
# Entry point: `python -m bmc.scripted SCENARIO.json --port-file PATH [--state-file PATH]`,
# for tests that run (and kill) the client in another process.
# ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bmc.scripted",
        description="Serve a scenario as a loopback Anthropic Messages API until SIGTERM.",
    )
    parser.add_argument("scenario", help="the scenario JSON file")
    parser.add_argument("--port-file", help="write the listening port here, atomically")
    parser.add_argument("--state-file", help="after each request, write progress JSON here")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    try:
        scripted = ScriptedModel(
            args.scenario, host=args.host, port=args.port, state_file=args.state_file
        )
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    with scripted as model:
        if args.port_file:
            _atomic_write_text(args.port_file, str(model.port))
        while not done.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
