"""The scripted model: a loopback Messages API the real SDK talks to (SPEC section 10).

Every test drives the real `anthropic` client against the server; nothing in the SDK is
mocked, so what passes here is what the runner will meet.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest

from bmc.scripted import ScriptedModel, load_scenario

Start = Callable[..., ScriptedModel]
MODEL = "claude-scripted-test"
HELLO = [{"role": "user", "content": "Which customer segments should we study for growth?"}]
TEXT = "Start with the freight hauliers; their volumes grew fastest last year."


def text_reply(text: str = TEXT) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}]}


def client_for(model: ScriptedModel, retries: int = 0, **options: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=model.base_url, api_key="test-key", max_retries=retries, **options
    )


def ask(client: anthropic.Anthropic, messages: list[dict[str, Any]] = HELLO, **extra: Any) -> Any:
    with client.messages.stream(model=MODEL, max_tokens=512, messages=messages, **extra) as s:
        return s.get_final_message()


# --- replies ---------------------------------------------------------------------------


def test_text_reply_streams_in_deltas_and_accumulates(scripted: Start) -> None:
    model = scripted({"steps": [{"reply": text_reply()}]})
    client = client_for(model)
    with client.messages.stream(model=MODEL, max_tokens=512, messages=HELLO) as stream:
        deltas = list(stream.text_stream)
        message = stream.get_final_message()
    assert len(deltas) > 1 and "".join(deltas) == TEXT
    assert message.content[0].text == TEXT
    assert message.stop_reason == "end_turn"
    assert message.id == "msg_scripted_0001" and message.model == MODEL
    assert message.usage.output_tokens == -(-len(TEXT) // 4)
    assert model.usages == [message.usage.model_dump(exclude_none=True)]
    model.assert_finished()


def test_tool_use_input_arrives_intact_through_json_deltas(scripted: Start) -> None:
    tool_input = {"file_path": "brief.agreed.md", "range": [1, 40], "note": 'naïve ✓ "quoted"'}
    reply = {
        "content": [
            {"type": "text", "text": "Let me read the brief."},
            {"type": "tool_use", "id": "toolu_01", "name": "read", "input": tool_input},
        ]
    }
    model = scripted({"steps": [{"reply": reply}]})
    with client_for(model).messages.stream(model=MODEL, max_tokens=512, messages=HELLO) as s:
        json_deltas = [event for event in s if event.type == "input_json"]
        message = s.get_final_message()
    assert len(json_deltas) > 1
    call = message.content[1]
    assert (call.id, call.name, call.input) == ("toolu_01", "read", tool_input)
    assert message.stop_reason == "tool_use"


def test_non_streaming_create_returns_the_whole_message(scripted: Start) -> None:
    model = scripted({"steps": [{"reply": {**text_reply(), "stop_reason": "max_tokens"}}]})
    message = client_for(model).messages.create(model=MODEL, max_tokens=512, messages=HELLO)
    assert message.content[0].text == TEXT
    assert message.stop_reason == "max_tokens"
    assert message.usage.input_tokens > 0
    assert model.requests[0]["messages"] == HELLO


# --- faults ----------------------------------------------------------------------------

STATUS_ERRORS = [
    (429, anthropic.RateLimitError),
    (529, anthropic.OverloadedError),
    (500, anthropic.InternalServerError),
]


@pytest.mark.parametrize(("status", "_error"), STATUS_ERRORS)
def test_retryable_status_is_retried_by_the_sdk_then_succeeds(
    scripted: Start, status: int, _error: type
) -> None:
    model = scripted({"steps": [{"fault": {"status": status}}, {"reply": text_reply()}]})
    started = time.monotonic()
    message = ask(client_for(model, retries=2))
    assert message.content[0].text == TEXT
    assert len(model.requests) == 2 and model.remaining() == 0
    assert time.monotonic() - started < 2  # the retry-after header kept the SDK's pause short
    model.assert_finished()


@pytest.mark.parametrize(("status", "error"), STATUS_ERRORS)
def test_status_fault_answers_the_apis_error(scripted: Start, status: int, error: type) -> None:
    model = scripted({"steps": [{"fault": {"status": status, "retry_after": 0.01}}]})
    with pytest.raises(error) as raised:
        ask(client_for(model))
    assert raised.value.status_code == status
    assert raised.value.body["type"] == "error"
    assert raised.value.response.headers["retry-after-ms"] == "10"


def test_stream_cut_mid_reply_raises_in_the_client(scripted: Start) -> None:
    model = scripted({"steps": [{"fault": {"cut_after_events": 3}, "reply": text_reply()}]})
    seen = []
    # A dropped connection surfaces in the client mid-iteration: as the transport's own
    # error up to anthropic 2.16, wrapped as APIConnectionError from 2.17 on. The agent
    # loop catches both (tests/test_agent_loop.py asks again after either).
    stream = client_for(model).messages.stream(model=MODEL, max_tokens=512, messages=HELLO)
    with (
        pytest.raises((anthropic.APIConnectionError, httpx2.RemoteProtocolError)),
        stream as events,
    ):
        seen.extend(event.type for event in events)
    assert seen[0] == "message_start" and "message_stop" not in seen
    model.assert_finished()  # the step was played as scripted


def test_stream_error_event_raises_after_partial_text(scripted: Start) -> None:
    fault = {"stream_error": "overloaded_error", "after_events": 4}
    model = scripted({"steps": [{"fault": fault, "reply": text_reply()}]})
    texts: list[str] = []
    stream = client_for(model).messages.stream(model=MODEL, max_tokens=512, messages=HELLO)
    with pytest.raises(anthropic.APIStatusError) as raised, stream as events:
        texts.extend(events.text_stream)
    assert raised.value.type == "overloaded_error"
    assert texts and TEXT.startswith("".join(texts)) and "".join(texts) != TEXT


def test_delay_lets_the_client_time_out_and_is_not_counted_as_serving(scripted: Start) -> None:
    model = scripted({"steps": [{"fault": {"delay": 0.6}, "reply": text_reply()}]})
    with pytest.raises(anthropic.APITimeoutError):
        ask(client_for(model, timeout=0.1))
    time.sleep(0.6)  # let the server finish its deliberate wait
    assert model.served_seconds < 0.3


# --- going off script ------------------------------------------------------------------


def test_request_after_the_last_step_is_a_divergence(scripted: Start) -> None:
    model = scripted({"name": "one-step", "steps": [{"reply": text_reply()}]})
    client = client_for(model)
    ask(client)
    with pytest.raises(anthropic.BadRequestError, match="scripted model: request 2: no step left"):
        ask(client)
    assert len(model.divergences) == 1
    with pytest.raises(AssertionError, match="no step left"):
        model.assert_finished()


def test_expect_mismatch_is_a_divergence_naming_the_step(scripted: Start) -> None:
    steps = [{"reply": text_reply()}, {"expect": {"last_user_text_contains": "growth"}}]
    steps[1]["reply"] = text_reply("Noted.")
    model = scripted({"steps": steps})
    client = client_for(model)
    conversation = [*HELLO, {"role": "assistant", "content": TEXT}]
    ask(client)
    with pytest.raises(anthropic.BadRequestError, match="scripted model: step 2"):
        ask(client, [*conversation, {"role": "user", "content": "Thanks, go on."}])
    assert "'growth'" in model.divergences[0] and "Thanks, go on." in model.divergences[0]
    with pytest.raises(AssertionError):
        model.assert_finished()


def test_expect_checks_tool_results_by_id(scripted: Start) -> None:
    call = {"type": "tool_use", "id": "toolu_01", "name": "read", "input": {"file_path": "a.md"}}
    expect = {"tool_results": {"toolu_01": {"is_error": False, "contains": "Tidewater"}}}
    model = scripted({"steps": [{"expect": expect, "reply": text_reply()}]})
    result = {"type": "tool_result", "tool_use_id": "toolu_01", "content": "Tidewater Ferries"}
    messages = [
        *HELLO,
        {"role": "assistant", "content": [call]},
        {"role": "user", "content": [result]},
    ]
    ask(client_for(model), messages)
    model.assert_finished()


def test_unfinished_scenario_fails_assert_finished(scripted: Start) -> None:
    model = scripted({"steps": [{"reply": text_reply()}, {"reply": text_reply("More.")}]})
    ask(client_for(model))
    assert model.remaining() == 1
    with pytest.raises(AssertionError, match="step 2 was never requested"):
        model.assert_finished()


CALL = {"type": "tool_use", "id": "toolu_07", "name": "glob", "input": {"pattern": "*.md"}}
RESULT = {"type": "tool_result", "tool_use_id": "toolu_07", "content": "a.md"}
CACHED = {"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}
INVALID_CONVERSATIONS = {
    "tool_use without its result": (
        [*HELLO, {"role": "assistant", "content": [CALL]}, {"role": "user", "content": "go on"}],
        "without tool_result",
    ),
    "result after other content": (
        [
            *HELLO,
            {"role": "assistant", "content": [CALL]},
            {"role": "user", "content": [{"type": "text", "text": "here"}, RESULT]},
        ],
        "must come before",
    ),
    "first message from the assistant": ([{"role": "assistant", "content": "Hi"}], "first"),
    "roles not alternating": ([*HELLO, *HELLO], "alternate"),
    "five cache breakpoints": ([{"role": "user", "content": [CACHED] * 5}], "maximum of 4"),
}


@pytest.mark.parametrize("case", INVALID_CONVERSATIONS)
def test_request_the_real_api_would_refuse_is_rejected(scripted: Start, case: str) -> None:
    messages, reason = INVALID_CONVERSATIONS[case]
    model = scripted({"steps": [{"reply": text_reply()}]})
    with pytest.raises(anthropic.BadRequestError, match=f"scripted model: .*{reason}"):
        ask(client_for(model), messages)
    assert len(model.divergences) == 1 and model.remaining() == 1


def test_missing_api_key_is_refused_but_any_key_is_accepted(scripted: Start) -> None:
    model = scripted({"steps": [{"reply": text_reply()}]})
    body = json.dumps({"model": MODEL, "max_tokens": 10, "messages": HELLO}).encode()
    request = urllib.request.Request(f"{model.base_url}/v1/messages", data=body, method="POST")
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=5)
    assert raised.value.code == 401
    assert json.load(raised.value)["error"]["type"] == "authentication_error"
    assert model.remaining() == 1 and not model.divergences
    assert ask(client_for(model)).content[0].text == TEXT


# --- prompt caching --------------------------------------------------------------------


def test_cache_reads_exactly_the_prefix_an_earlier_request_wrote(scripted: Start) -> None:
    model = scripted({"steps": [{"reply": text_reply()} for _ in range(3)]})
    client = client_for(model)
    system = [
        {
            "type": "text",
            "text": "You are a consultant. " * 200,
            "cache_control": {"type": "ephemeral"},
        }
    ]

    def user(text: str) -> dict[str, Any]:
        block = {"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}
        return {"role": "user", "content": [block]}

    first = ask(client, HELLO, system=system).usage
    assert first.cache_read_input_tokens == 0 and first.cache_creation_input_tokens > 0

    turn_two = [*HELLO, {"role": "assistant", "content": TEXT}, user("Go on.")]
    second = ask(client, turn_two, system=system).usage
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens
    assert second.input_tokens == 0  # everything sits before the last breakpoint

    # The breakpoint moves to the newest message; the lookback finds the previous one.
    moved = {"role": "user", "content": [{"type": "text", "text": "Go on."}]}
    turn_three = [*turn_two[:2], moved, {"role": "assistant", "content": "Sure."}, user("And?")]
    third = ask(client, turn_three, system=system).usage
    assert third.cache_read_input_tokens == (
        second.cache_read_input_tokens + second.cache_creation_input_tokens
    )
    assert [u["cache_read_input_tokens"] for u in model.usages] == [
        0,
        second.cache_read_input_tokens,
        third.cache_read_input_tokens,
    ]


def test_cache_is_keyed_by_model(scripted: Start) -> None:
    model = scripted({"steps": [{"reply": text_reply()} for _ in range(2)]})
    client = client_for(model)
    system = [{"type": "text", "text": "Long. " * 100, "cache_control": {"type": "ephemeral"}}]
    ask(client, HELLO, system=system)
    with client.messages.stream(
        model="another-model", max_tokens=64, messages=HELLO, system=system
    ) as stream:
        assert stream.get_final_message().usage.cache_read_input_tokens == 0


# --- scenario files and the subprocess entry point -------------------------------------


def test_load_scenario_names_the_bad_step(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps(
            {"steps": [{"reply": text_reply()}, {"fault": {"status": 429}, "reply": text_reply()}]}
        )
    )
    with pytest.raises(ValueError, match=r"step 2: .*reply would never be sent"):
        load_scenario(path)
    with pytest.raises(ValueError, match=r"step 1: reply\.content\.0\.text.*stop_reson"):
        load_scenario(
            {
                "steps": [
                    {
                        "reply": {
                            "content": [{"type": "text", "text": "x", "stop_reson": "end_turn"}]
                        }
                    }
                ]
            }
        )


def test_load_scenario_fills_in_defaults() -> None:
    loaded = load_scenario(
        {
            "steps": [
                {
                    "reply": {
                        "content": [{"type": "tool_use", "name": "glob", "input": {"pattern": "*"}}]
                    }
                }
            ],
            "consultant": [],
        }
    )
    reply = loaded["steps"][0]["reply"]
    assert reply["stop_reason"] == "tool_use"
    assert reply["content"][0]["id"] == "toolu_scripted_001_0"
    assert loaded["consultant"] == []  # other tools' top-level keys are kept


def test_entry_point_writes_its_port_and_progress_and_stops_on_sigterm(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"steps": [{"reply": text_reply()}]}))
    port_file, state_file = tmp_path / "port", tmp_path / "state.json"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bmc.scripted",
            str(scenario),
            "--port-file",
            str(port_file),
            "--state-file",
            str(state_file),
        ],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 10
        while not port_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        port = int(port_file.read_text())
        client = anthropic.Anthropic(
            base_url=f"http://127.0.0.1:{port}", api_key="k", max_retries=0
        )
        assert ask(client).content[0].text == TEXT
        state = json.loads(state_file.read_text())
        assert state == {"consumed": 1, "divergences": [], "requests": 1}
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
