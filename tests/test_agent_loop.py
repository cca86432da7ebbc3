"""The agent loop against the scripted model, through the real SDK (SPEC sections 7 and 9).

Every test drives `bmc.engine.loop.Agent` (mostly through `bmc.runner.start`, as `bmc run` does)
with a real `anthropic.Anthropic` client pointed at the loopback scripted model, so the SDK's
own streaming, retries and error classes run exactly as they would against Claude. Each
scenario step carries `expect` checks and every test ends with `assert_finished()` (or counts
what was left), so a conversation that goes off script fails loudly.

Runtime: 26 tests in about 10 s on an idle 2-core machine (up to about 25 s while other test
runs share it); the slowest are the three that wait out the runner's 0.5 s pause before it
asks again after a dropped stream.
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import pytest
from rich.console import Console

from bmc.documents.skills import load_skill
from bmc.engine import session as sessions
from bmc.engine.api import RunOptions
from bmc.engine.conversation import (
    CLEARED,
    CLEARED_INPUT,
    clear_old_context,
    with_cache_breakpoints,
)
from bmc.engine.loop import Agent, Limits
from bmc.engine.usage import DEFAULT_MODEL, RunUsage, TurnUsage, price_for
from bmc.errors import BmcError, ModelError, StoppedForPerson, UserError
from bmc.scripted import ScriptedModel, check_request
from bmc.terminal.chat import TerminalDisplay, resume, start
from bmc.workspace.paths import Project, init_project
from bmc.workspace.tools import Toolbox

Start = Callable[..., ScriptedModel]
SKILL = "bmc-segments"
MODEL = DEFAULT_MODEL  # a priced model, so cost assertions are not against zero

HYPOTHESES = "# Hypotheses\n\n1. Island commuters will pay for a faster crossing.\n"
FERRIES = "# Ferry demand\n\nCommuter trips rose 12% in 2026; hauliers book a week ahead.\n"
INDEX = "# Research index\n\n- `resources/ferries.md`: ferry demand by segment, 2026.\n"


# --- building blocks --------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A project bmc-segments can start on: agreed brief, hypotheses, research index."""
    project = init_project(tmp_path, "acme", "growth-2027", "Acme Ltd")
    files = {
        project.project_dir / "brief.md": "# Brief\n\nGrow the ferry business by 2027.\n",
        project.project_dir / "brief.agreed.md": "# Brief\n\nGrow the ferry business by 2027.\n",
        project.project_dir / "hypotheses.md": HYPOTHESES,
        project.resources_dir / "index.md": INDEX,
        project.resources_dir / "ferries.md": FERRIES,
    }
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    return project


@dataclass
class Consultant:
    """The consultant's side of `bmc run` with piped input: scripted lines, then end of input.

    It remembers how many requests the model had received each time it was asked to speak,
    which is how the tests see that the model handed the turn back (and when).
    """

    model: ScriptedModel
    lines: list[str] = field(default_factory=list)
    asked_after: list[int] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)

    def next_message(self) -> str | None:
        self.asked_after.append(len(self.model.requests))
        return self.lines.pop(0) if self.lines else None

    def answer(self, prompt: str) -> str | None:
        self.prompts.append(prompt)
        return None


@dataclass
class Run:
    """What one `bmc run bmc-segments` left behind."""

    model: ScriptedModel
    consultant: Consultant
    out: io.StringIO
    session: sessions.Session | None = None
    error: BmcError | None = None

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.model.requests

    @property
    def output(self) -> str:
        return self.out.getvalue()


def client_for(model: ScriptedModel, retries: int = 3) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=model.base_url, api_key="test", max_retries=retries)


def run_segments(
    project: Project,
    model: ScriptedModel,
    lines: list[str] | None = None,
    limits: Limits | None = None,
    retries: int = 3,
) -> Run:
    """Start bmc-segments as `bmc run` does; a `BmcError` is kept, not raised."""
    out = io.StringIO()
    consultant = Consultant(model, list(lines or []))
    run = Run(model, consultant, out)
    options = RunOptions(model=MODEL, client=client_for(model, retries), limits=limits or Limits())
    display = TerminalDisplay(Console(file=out, width=120))
    try:
        run.session = start(project, SKILL, options, display, consultant)
    except BmcError as err:
        run.error = err
    return run


def say(text: str, stop: str | None = None) -> dict[str, Any]:
    reply: dict[str, Any] = {"content": [{"type": "text", "text": text}]}
    if stop:
        reply["stop_reason"] = stop
    return reply


def call(tool_id: str, name: str, **tool_input: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_id, "name": name, "input": tool_input}


def calls(*blocks: dict[str, Any], text: str | None = None, stop: str | None = None) -> dict:
    content = ([{"type": "text", "text": text}] if text else []) + list(blocks)
    reply: dict[str, Any] = {"content": content}
    if stop:
        reply["stop_reason"] = stop
    return reply


def results_ok(**contains: str) -> dict[str, Any]:
    """`expect` for tool results that succeeded and contain the given text."""
    return {
        "tool_results": {
            tool_id: {"is_error": False, "contains": text} for tool_id, text in contains.items()
        }
    }


def plain(value: Any) -> Any:
    """A deep copy without `cache_control` (what a conversation is, minus the breakpoints)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def breakpoints(request: dict[str, Any]) -> int:
    blocks = [*request.get("tools", []), *request["system"]]
    for message in request["messages"]:
        blocks += message["content"] if isinstance(message["content"], list) else []
    return sum(1 for block in blocks if "cache_control" in block)


def prefix_changes(requests: list[dict[str, Any]]) -> list[int]:
    """Request numbers (from 1) whose messages do not extend the previous request's: each
    one is a rewritten history, which breaks the prompt cache."""
    changed = []
    for number in range(2, len(requests) + 1):
        before = plain(requests[number - 2]["messages"])
        now = plain(requests[number - 1]["messages"])
        if now[: len(before)] != before:
            changed.append(number)
    return changed


def every_call_answered(messages: list[dict[str, Any]]) -> None:
    """The conversation is one the Messages API accepts: roles alternate, every tool_use is
    answered by a tool_result in the very next message (the scripted model's own rules)."""
    body = {"model": MODEL, "max_tokens": 1024, "messages": messages}
    assert check_request(body) is None, check_request(body)


def last_user(request: dict[str, Any]) -> dict[str, Any]:
    message = request["messages"][-1]
    assert message["role"] == "user"
    return message


def texts(message: dict[str, Any]) -> str:
    return "\n".join(b.get("text", "") for b in message["content"] if b["type"] == "text")


# --- a working session --------------------------------------------------------------------


def test_parallel_tool_calls_run_and_return_in_one_message_in_order(
    scripted: Start, project: Project
) -> None:
    steps = [
        {
            "expect": {"last_user_text_contains": "Start the bmc-segments skill"},
            "reply": calls(
                call("toolu_read_hyp", "read", file_path="hypotheses.md"),
                call("toolu_read_res", "read", file_path="resources/ferries.md"),
                call("toolu_write", "write", file_path="notes/plan.md", content="# Plan\n"),
                call("toolu_glob", "glob", pattern="resources/*.md"),
                text="I'll read the hypotheses and the research, and note a plan.",
            ),
        },
        {
            "expect": results_ok(
                toolu_read_hyp="Island commuters",
                toolu_read_res="Commuter trips rose 12%",
                toolu_write="wrote",
                toolu_glob="resources/ferries.md",
            ),
            "reply": calls(
                call(
                    "toolu_edit",
                    "edit",
                    file_path="notes/plan.md",
                    old_string="# Plan\n",
                    new_string="# Plan\n\nCommuters first.\n",
                ),
            ),
        },
        {
            "expect": results_ok(toolu_edit="edited notes/plan.md"),
            "reply": say("Commuters look like the first segment. Shall I draft it?"),
        },
        {
            "expect": {"last_user_text_contains": "Yes, go ahead"},
            "reply": say("Drafting now."),
        },
    ]
    model = scripted({"steps": steps})
    run = run_segments(project, model, lines=["Yes, go ahead"])
    assert run.error is None, run.error
    model.assert_finished()

    # All four results answer the four calls in ONE user message, in the calls' order.
    second = run.requests[1]
    assistant, results = second["messages"][-2], second["messages"][-1]
    asked = [b["id"] for b in assistant["content"] if b["type"] == "tool_use"]
    assert [b["type"] for b in results["content"]] == ["tool_result"] * 4
    assert [b["tool_use_id"] for b in results["content"]] == asked
    assert FERRIES in [b["content"] for b in results["content"]]
    # The tools really ran on the project's files.
    assert (project.project_dir / "notes/plan.md").read_text() == "# Plan\n\nCommuters first.\n"
    # end_turn handed the conversation to the consultant, after the third request and after
    # the fourth (where input ended); never in the middle of a tool round.
    assert run.consultant.asked_after == [3, 4]
    assert run.session is not None and run.session.status == sessions.WAITING_CONSULTANT
    assert "read resources/ferries.md" in run.output and "Drafting now." in run.output


def test_an_empty_reply_still_leaves_a_conversation_the_api_accepts(
    scripted: Start, project: Project
) -> None:
    # Claude sometimes ends a turn with no content at all; what we store for it must not be
    # an empty text block, which the API refuses on the next request.
    steps = [
        {"reply": {"content": [], "stop_reason": "end_turn"}},
        {"expect": {"last_user_text_contains": "Are you there?"}, "reply": say("Yes.")},
    ]
    model = scripted({"steps": steps})
    run = run_segments(project, model, lines=["Are you there?"])
    assert run.error is None, run.error
    model.assert_finished()


# --- each stop_reason ---------------------------------------------------------------------


@pytest.mark.parametrize("with_text", [True, False], ids=["text-then-call", "call-only"])
def test_a_tool_call_cut_off_by_max_tokens_is_never_run(
    scripted: Start, project: Project, with_text: bool
) -> None:
    draft = "# Commuters\n\nIsland residents who cross daily"
    cut = calls(
        call("toolu_cut", "write", file_path="notes/commuters.md", content=draft),
        text="Here is the commuter draft." if with_text else None,
        stop="max_tokens",
    )
    steps = [
        {"reply": cut},
        {
            "expect": {"last_user_text_contains": "nothing was run"},
            "reply": calls(
                call(
                    "toolu_whole", "write", file_path="notes/commuters.md", content="# Commuters\n"
                )
            ),
        },
        {"expect": results_ok(toolu_whole="wrote"), "reply": say("Written in parts.")},
    ]
    model = scripted({"steps": steps})
    run = run_segments(project, model)
    assert run.error is None, run.error
    model.assert_finished()

    first, second = run.requests[0], run.requests[1]
    # The cut call never reached the tools: the file holds only the later, whole write.
    assert (project.project_dir / "notes/commuters.md").read_text() == "# Commuters\n"
    # The request after the cut carries no tool_use (nothing to answer), tells the model
    # why, and gives it more room.
    kept = second["messages"][-2]
    assert kept["role"] == "assistant"
    assert all(b["type"] != "tool_use" for b in kept["content"])
    assert "write long documents in parts" in texts(last_user(second))
    assert second["max_tokens"] > first["max_tokens"]
    every_call_answered(plain(run.requests[-1]["messages"]))


def test_text_cut_off_by_max_tokens_is_kept_and_continued(
    scripted: Start, project: Project
) -> None:
    steps = [
        {"reply": say("The commuter segment is large: 4,000 daily", stop="max_tokens")},
        {
            "expect": {"last_user_text_contains": "Continue where you stopped"},
            "reply": say("crossings in 2026."),
        },
    ]
    model = scripted({"steps": steps})
    run = run_segments(project, model)
    assert run.error is None, run.error
    model.assert_finished()
    first, second = run.requests
    assert (
        second["messages"][-2]["content"][0]["text"] == "The commuter segment is large: 4,000 daily"
    )
    assert second["max_tokens"] > first["max_tokens"]
    assert run.consultant.asked_after == [2]  # the cut was not mistaken for a finished turn


def test_pause_turn_resends_the_reply_without_a_new_user_message(
    scripted: Start, project: Project
) -> None:
    steps = [
        {"reply": say("Still searching the research", stop="pause_turn")},
        {"reply": say("Found three candidate segments.")},
    ]
    model = scripted({"steps": steps})
    run = run_segments(project, model)
    assert run.error is None, run.error
    model.assert_finished()
    first, second = run.requests
    # The second request is the first plus the paused reply, as the last (assistant)
    # message: no user message was added and the consultant was not asked in between.
    assert plain(second["messages"][:-1]) == plain(first["messages"])
    assert plain(second["messages"][-1]) == {
        "role": "assistant",
        "content": [{"type": "text", "text": "Still searching the research"}],
    }
    assert run.consultant.asked_after == [2]


def test_a_refusal_ends_the_turn_and_the_consultant_speaks_next(
    scripted: Start, project: Project
) -> None:
    steps = [
        {"reply": say("I can't help with that part.", stop="refusal")},
        {
            "expect": {"last_user_text_contains": "Let's go back to the segments"},
            "reply": say("Back to the segments, then."),
        },
    ]
    model = scripted({"steps": steps})
    run = run_segments(project, model, lines=["Let's go back to the segments"])
    assert run.error is None, run.error
    model.assert_finished()
    assert run.consultant.asked_after == [1, 2]


# --- faults -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [{"status": 429, "retry_after": 0.05}, {"status": 529}, {"status": 500}],
    ids=["429-retry-after", "529-overloaded", "500-api-error"],
)
def test_http_faults_are_survived_by_the_sdks_retries(
    scripted: Start, project: Project, fault: dict[str, Any]
) -> None:
    steps = [
        {"fault": fault},
        {"reply": calls(call("toolu_1", "read", file_path="hypotheses.md"))},
        {"fault": fault},
        {"fault": fault},
        {"expect": results_ok(toolu_1="Island commuters"), "reply": say("Read it.")},
    ]
    model = scripted({"steps": steps})
    run = run_segments(project, model)
    assert run.error is None, run.error
    model.assert_finished()
    # The SDK re-sent the very same request each time; the loop saw one turn per reply.
    assert run.requests[0] == run.requests[1]
    assert run.requests[2] == run.requests[3] == run.requests[4]
    assert run.session is not None and len(run.session.usage.turns) == 2


@pytest.mark.parametrize(
    "fault",
    [{"cut_after_events": 5}, {"stream_error": "overloaded_error", "after_events": 5}],
    ids=["connection-dropped", "error-event"],
)
def test_a_reply_broken_mid_stream_is_dropped_and_asked_again(
    scripted: Start, project: Project, fault: dict[str, Any]
) -> None:
    broken = calls(
        call("toolu_partial", "write", file_path="notes/partial.md", content="half"),
        text="PARTIAL reply that never finished",
    )
    steps = [
        {"reply": calls(call("toolu_1", "read", file_path="hypotheses.md"))},
        {"expect": results_ok(toolu_1="Island commuters"), "reply": broken, "fault": fault},
        {"expect": results_ok(toolu_1="Island commuters"), "reply": say("Second try, whole.")},
        {"expect": {"last_user_text_contains": "thanks"}, "reply": say("You're welcome.")},
    ]
    model = scripted({"steps": steps})
    run = run_segments(project, model, lines=["thanks"])
    assert run.error is None, run.error
    model.assert_finished()
    # The SDK does not retry a stream that broke after it started: the runner asked again,
    # with exactly the request whose reply broke.
    assert run.requests[1] == run.requests[2]
    # The consultant saw the reply start streaming, then the note that it was dropped.
    assert run.output.index("PARTIAL") < run.output.index("reply dropped")
    # Nothing of the partial reply survived: not sent back, not run, not journaled.
    assert "PARTIAL" not in json.dumps(run.requests[3])
    assert not (project.project_dir / "notes/partial.md").exists()
    reloaded = sessions.load_session(project, run.session.id if run.session else None)
    assert "PARTIAL" not in json.dumps(reloaded.messages)
    assert plain(reloaded.messages) == [
        *plain(run.requests[3]["messages"]),
        {"role": "assistant", "content": [{"type": "text", "text": "You're welcome."}]},
    ]


def _finish_on_resume(scripted: Start, project: Project, expect: dict[str, Any]) -> ScriptedModel:
    """Resume the latest session against a fresh model that answers once; returns it."""
    model = scripted({"steps": [{"expect": expect, "reply": say("Picking up where we left.")}]})
    consultant = Consultant(model)
    display = TerminalDisplay(Console(file=io.StringIO()))
    resume(project, None, RunOptions(client=client_for(model)), display, consultant)
    return model


def test_a_fault_beyond_the_sdks_retries_fails_with_the_session_resumable(
    scripted: Start, project: Project
) -> None:
    steps = [
        {
            "reply": calls(
                call("toolu_a", "read", file_path="hypotheses.md"),
                call("toolu_b", "read", file_path="resources/ferries.md"),
            )
        },
        *[{"fault": {"status": 529}}] * 4,  # the first try and the SDK's three retries
    ]
    model = scripted({"steps": steps})
    run = run_segments(project, model, retries=3)
    model.assert_finished()
    assert isinstance(run.error, ModelError) and run.error.exit_code == 3
    assert "529" in str(run.error) and "bmc resume" in str(run.error)
    assert len(run.requests) == 5  # no extra tries on top of the SDK's budget

    # The journal rebuilds a conversation the API accepts, every call answered.
    saved = sessions.load_session(project)
    assert saved.status == sessions.FAILED
    assert saved.pending_calls() == []
    every_call_answered(saved.messages)
    assert plain(saved.messages) == plain(run.requests[-1]["messages"])
    # ... and `bmc resume` continues it from exactly there.
    again = _finish_on_resume(
        scripted, project, results_ok(toolu_a="Island commuters", toolu_b="Commuter trips")
    )
    again.assert_finished()


def test_a_stream_that_keeps_breaking_exhausts_the_runners_budget(
    scripted: Start, project: Project
) -> None:
    broken = {"reply": say("Half a th"), "fault": {"stream_error": "api_error", "after_events": 4}}
    model = scripted({"steps": [broken, broken]})
    run = run_segments(project, model, limits=Limits(retry_budget=1))
    model.assert_finished()
    assert isinstance(run.error, ModelError) and run.error.exit_code == 3
    assert len(run.requests) == 2  # the first try and one retry: the budget, no more
    saved = sessions.load_session(project)
    assert saved.status == sessions.FAILED
    assert "Half a th" not in json.dumps(saved.messages)
    every_call_answered(saved.messages)


def test_a_refused_api_key_is_a_user_error_without_retries(
    scripted: Start, project: Project
) -> None:
    model = scripted({"steps": [{"fault": {"status": 401}}, {"reply": say("never sent")}]})
    run = run_segments(project, model, retries=3)
    assert isinstance(run.error, UserError) and run.error.exit_code == 1
    assert "API key" in str(run.error)
    assert len(run.requests) == 1  # no retry storm against a key that will not work
    assert model.remaining() == 1 and model.divergences == []
    every_call_answered(sessions.load_session(project).messages)  # kept for `bmc resume`


@pytest.mark.parametrize("status", [400, 403, 404, 413])
def test_requests_the_api_will_never_accept_fail_fast(
    scripted: Start, project: Project, status: int
) -> None:
    model = scripted({"steps": [{"fault": {"status": status}}, {"reply": say("never sent")}]})
    run = run_segments(project, model, retries=3)
    assert isinstance(run.error, ModelError) and run.error.exit_code == 3
    assert str(status) in str(run.error)
    assert len(run.requests) == 1
    assert sessions.load_session(project).status == sessions.FAILED


# --- prompt caching and usage -------------------------------------------------------------


def _long_session(scripted: Start, project: Project) -> Run:
    """Five turns: a tool round, a consultant message, another tool round, two answers."""
    steps = [
        {
            "reply": calls(
                call("toolu_1", "read", file_path="hypotheses.md"),
                call("toolu_2", "read", file_path="resources/index.md"),
            )
        },
        {
            "expect": results_ok(toolu_1="Island", toolu_2="Research index"),
            "reply": say("Two hypotheses to test. Which first?"),
        },
        {
            "expect": {"last_user_text_contains": "Commuters"},
            "reply": calls(call("toolu_3", "grep", pattern="Commuter", path="resources")),
        },
        {"expect": results_ok(toolu_3="ferries.md"), "reply": say("Commuters grew 12%.")},
        {"expect": {"last_user_text_contains": "Good"}, "reply": say("Next, hauliers.")},
    ]
    model = scripted({"steps": steps})
    run = run_segments(project, model, lines=["Commuters", "Good"])
    assert run.error is None, run.error
    model.assert_finished()
    return run


def test_every_request_carries_cache_breakpoints_and_an_unchanging_prompt(
    scripted: Start, project: Project
) -> None:
    run = _long_session(scripted, project)
    first = run.requests[0]
    for request in run.requests:
        assert request["system"][-1]["cache_control"] == {"type": "ephemeral"}
        assert "cache_control" in request["messages"][-1]["content"][-1]
        assert breakpoints(request) <= 4
        # The prompt never changes inside a session (the cache keys on its exact bytes).
        assert json.dumps(request["tools"]) == json.dumps(first["tools"])
        assert json.dumps(request["system"]) == json.dumps(first["system"])
    assert prefix_changes(run.requests) == []
    # Each turn reads what the one before wrote, so the cached part keeps growing.
    reads = [usage["cache_read_input_tokens"] for usage in run.model.usages]
    assert reads[0] == 0
    assert all(later > earlier for earlier, later in itertools.pairwise(reads))
    assert all(usage["input_tokens"] == 0 for usage in run.model.usages)


def test_token_use_and_cost_are_recorded_per_turn(scripted: Start, project: Project) -> None:
    run = _long_session(scripted, project)
    usages = run.model.usages
    expected = [
        TurnUsage(
            u["input_tokens"],
            u["output_tokens"],
            u["cache_read_input_tokens"],
            u["cache_creation_input_tokens"],
        )
        for u in usages
    ]
    assert run.session is not None
    assert run.session.usage.turns == expected
    # The journal holds the same per-turn record, so `bmc resume` and `bmc sessions` see it.
    assert sessions.load_session(project, run.session.id).usage.turns == expected

    def total(key: str) -> int:
        return sum(u[key] for u in usages)

    summary = run.session.usage.summary()
    assert summary.startswith(f"{len(usages)} model turns · ")
    assert f"{total('input_tokens'):,} in, {total('output_tokens'):,} out" in summary
    assert f"{total('cache_read_input_tokens'):,} cache read" in summary
    assert f"{total('cache_creation_input_tokens'):,} cache write" in summary
    price, known = price_for(MODEL)
    assert known
    cost = (
        total("input_tokens") * price.input
        + total("output_tokens") * price.output
        + total("cache_read_input_tokens") * price.cache_read
        + total("cache_creation_input_tokens") * price.cache_write
    ) / 1_000_000
    assert run.session.usage.cost == pytest.approx(cost)
    assert f"${cost:.4f}" in summary


# --- budgets and livelock -----------------------------------------------------------------


def _reading_forever(count: int) -> list[dict[str, Any]]:
    return [
        {"reply": calls(call(f"toolu_{n}", "glob", pattern="*.md"))} for n in range(1, count + 1)
    ]


def test_the_turn_budget_stops_before_another_request(scripted: Start, project: Project) -> None:
    model = scripted({"steps": _reading_forever(3)})
    run = run_segments(project, model, limits=Limits(max_turns=2))
    assert isinstance(run.error, StoppedForPerson) and run.error.exit_code == 4
    assert "turn budget (2 model turns)" in str(run.error)
    assert len(run.requests) == 2 and model.remaining() == 1 and model.divergences == []
    saved = sessions.load_session(project)
    assert saved.status == sessions.STOPPED
    every_call_answered(saved.messages)  # the second round's results were kept: resumable


def test_a_model_that_never_hands_back_is_stopped_by_default(
    scripted: Start, project: Project
) -> None:
    # No --max-turns given: the per-message budget is always on (SPEC 11, a looping model).
    model = scripted({"steps": _reading_forever(5)})
    run = run_segments(project, model, limits=Limits(turns_per_message=3))
    assert isinstance(run.error, StoppedForPerson) and run.error.exit_code == 4
    assert "without handing back" in str(run.error)
    assert len(run.requests) == 3 and model.remaining() == 2 and model.divergences == []
    assert sessions.load_session(project).status == sessions.STOPPED


def test_the_cost_budget_stops_before_another_request(scripted: Start, project: Project) -> None:
    model = scripted({"steps": _reading_forever(3)})
    # The first turn alone writes the tools and system prompt to the cache (about a cent).
    run = run_segments(project, model, limits=Limits(max_cost=0.001))
    assert isinstance(run.error, StoppedForPerson) and run.error.exit_code == 4
    assert "cost budget" in str(run.error)
    assert len(run.requests) == 1 and model.remaining() == 2 and model.divergences == []
    assert sessions.load_session(project).status == sessions.STOPPED


def test_the_same_refused_draft_three_times_stops_for_a_person(
    scripted: Start, project: Project
) -> None:
    bad = "# Retail\n\nnot a draft yet\n"
    path = "segments/drafts/retail.md"
    steps = [{"reply": calls(call("toolu_w1", "write", file_path=path, content=bad))}]
    for n in (2, 3):
        steps.append(
            {
                "expect": {
                    "tool_results": {
                        f"toolu_w{n - 1}": {"is_error": True, "contains": "was not written"}
                    }
                },
                "reply": calls(call(f"toolu_w{n}", "write", file_path=path, content=bad)),
            }
        )
    model = scripted({"steps": steps})
    run = run_segments(project, model)
    model.assert_finished()
    assert isinstance(run.error, StoppedForPerson) and run.error.exit_code == 4
    assert path in str(run.error) and "3 times" in str(run.error)
    assert not (project.project_dir / path).exists()
    saved = sessions.load_session(project)
    assert saved.status == sessions.STOPPED
    assert saved.messages[-1]["content"][0]["tool_use_id"] == "toolu_w3"  # journaled
    every_call_answered(saved.messages)


# --- keeping inside the context window ----------------------------------------------------


@pytest.fixture
def research(project: Project) -> Iterator[list[str]]:
    """Six research files of about 500 tokens each, each with its own marker."""
    names = []
    for n in range(1, 7):
        body = f"# Report {n}\n\nMARKER-{n}\n" + f"finding {n} about ferry demand. " * 60
        (project.resources_dir / f"r{n}.md").write_text(body, encoding="utf-8")
        names.append(f"resources/r{n}.md")
    yield names


def test_old_tool_results_are_cleared_once_when_the_context_passes_its_budget(
    scripted: Start, project: Project, research: list[str]
) -> None:
    # Each read adds ~510 tokens; the fourth one passes the budget (the estimate goes from
    # ~1570 to ~2080). The three most recent results alone nearly fill the budget, so a
    # clearing that only got back under it would clear again on every following turn,
    # breaking the cache each time; after a proper clearing the session ends at ~1810.
    reads = ["r1", "r2", "r3", "r4", "r1", "r5"]  # after the clearing, r1 is read again
    steps: list[dict[str, Any]] = []
    for n, name in enumerate(reads, start=1):
        step: dict[str, Any] = {
            "reply": calls(call(f"toolu_{n}", "read", file_path=f"resources/{name}.md"))
        }
        if n > 1:
            step["expect"] = results_ok(**{f"toolu_{n - 1}": f"MARKER-{reads[n - 2][1:]}"})
        steps.append(step)
    steps.append({"expect": results_ok(toolu_6="MARKER-5"), "reply": say("All read.")})
    model = scripted({"steps": steps})

    session = sessions.new_session(project, skill=SKILL, model=MODEL, system="Test.", extra={})
    out = io.StringIO()
    agent = Agent(
        client=client_for(model),
        model=MODEL,
        system="You read the client's research for a test.",
        toolbox=Toolbox(project, load_skill(SKILL).folder),
        transcript=session,
        display=TerminalDisplay(Console(file=out)),
        usage=RunUsage(model=MODEL),
        limits=Limits(context_budget_tokens=1950),
    )
    messages = session.messages
    agent.append(messages, {"role": "user", "content": [{"type": "text", "text": "Read all."}]})
    assert agent.run(messages) == "end_turn"
    model.assert_finished()

    # One request rewrote the history (once, in one step); every other one extended it.
    changed = prefix_changes(model.requests)
    assert len(changed) == 1, f"the history was rewritten by requests {changed}"
    at = model.requests[changed[0] - 1]["messages"]
    results = [
        b for m in at if m["role"] == "user" for b in m["content"] if b["type"] == "tool_result"
    ]
    # The oldest results, and only those, now tell the model it can read the file again.
    cleared = [b["tool_use_id"] for b in results if "read the file again" in b["content"]]
    assert cleared and cleared == [b["tool_use_id"] for b in results[: len(cleared)]]
    assert all(b["content"] == CLEARED for b in results[: len(cleared)])
    assert all("MARKER" in b["content"] for b in results[len(cleared) :])
    assert out.getvalue().count("cleared") == 1
    # Every later request keeps a breakpoint where the clearing stopped (the prefix the next
    # clearing leaves unchanged), so that clearing can read it rather than write it anew.
    upto = agent.boundary
    assert upto is not None
    for request in model.requests[changed[0] :]:
        assert "cache_control" in request["messages"][upto - 1]["content"][-1]
    # The journal records the clearing, so a resumed session sends what this one sent.
    reloaded = sessions.load_session(project, session.id)
    assert reloaded.boundary == upto
    assert reloaded.messages == messages
    assert plain(model.requests[-1]["messages"]) == plain(messages[:-1])
    every_call_answered(reloaded.messages)


def test_no_clearing_while_the_conversation_fits(scripted: Start, project: Project) -> None:
    run = _long_session(scripted, project)
    assert CLEARED not in json.dumps(run.requests)
    assert "cleared" not in run.output


def test_a_clearing_also_drops_the_long_inputs_of_the_models_own_writes() -> None:
    # The files hold what the model wrote: repeating it in every request is pure cost.
    note = "A long note the model wrote. " * 20
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "text", "text": "Go."}]},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "t1",
                    "name": "write",
                    "input": {"file_path": "notes/a.md", "content": note},
                },
                {
                    "type": "tool_use",
                    "id": "t2",
                    "name": "edit",
                    "input": {"file_path": "notes/a.md", "old_string": note, "new_string": "x"},
                },
                {
                    "type": "tool_use",
                    "id": "t3",
                    "name": "read",
                    "input": {"file_path": "brief.md"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": t, "content": "done " * 50}
                for t in ("t1", "t2", "t3")
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "Noted."}]},
    ]
    assert clear_old_context(messages, 3)
    write, edit, read = messages[1]["content"]
    assert write["input"] == {"file_path": "notes/a.md", "content": CLEARED_INPUT}
    # Short inputs are kept: the stub would be no shorter.
    assert edit["input"] == {
        "file_path": "notes/a.md",
        "old_string": CLEARED_INPUT,
        "new_string": "x",
    }
    assert read["input"] == {"file_path": "brief.md"}
    assert all(b["content"] == CLEARED for b in messages[2]["content"])
    assert messages[3]["content"][0]["text"] == "Noted."
    assert not clear_old_context(messages, 3)  # already cleared: nothing changes twice


def test_breakpoints_sit_on_the_last_message_the_turn_before_and_the_clearing_boundary() -> None:
    messages = [
        {
            "role": "user" if i % 2 == 0 else "assistant",
            "content": [{"type": "text", "text": str(i)}],
        }
        for i in range(9)
    ]
    marked = with_cache_breakpoints(messages, boundary=3)
    at = [i for i, m in enumerate(marked) if "cache_control" in m["content"][-1]]
    assert at == [2, 6, 8]
    assert all("cache_control" not in m["content"][-1] for m in messages)  # history untouched
