"""Faults mid-session, end to end: the session completes, or stops with exit 3 and resumes to
completion, and nothing written is lost or half-written (SPEC sections 7, 8 and 9).

One scripted bmc-segments session (read the brief's inputs, write a segment draft and a
working note, write a second draft, hand back to the consultant) runs on a copy of the
fixture workspace with one fault injected after the first writes. Every run goes through
the real anthropic SDK to the scripted model on loopback, and through the `bmc` command line
wherever the fault can be produced there.

The two timeout cases run `bmc.runner.start` in-process with their own client: `make_client`
fixes a 120 s timeout and four retries and no environment variable changes them, so a
timeout through the CLI would take minutes. Their `bmc resume` still goes through the CLI.

Connection refused is the one fault that cannot happen inside a single scripted run: the
endpoint has to be gone. It strikes as a consultant would meet it: the session paused at
the consultant's turn, and `bmc resume` the next morning finds no endpoint listening.

Runtime: 8 tests in about 23 s wall, 6 s of CPU, on a 2-core machine shared with other test
runs. Most of it is waiting: the SDK's own backoff over its four retries of the refused
connection (about 6 s), the 2 s client timeouts (three of them, plus backoff), and the
runner's 0.5 s pause before it asks again after a dropped stream.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import anthropic
import pytest
from rich.console import Console

from bmc.documents.validate import validate_project
from bmc.engine import session as sessions
from bmc.engine.api import RunOptions
from bmc.engine.journal import read_journal
from bmc.engine.usage import DEFAULT_MODEL
from bmc.errors import BmcError
from bmc.scripted import ScriptedModel, check_request
from bmc.terminal.chat import Consultant, TerminalDisplay, start
from bmc.workspace.packaged import data_dir
from bmc.workspace.paths import Project, locate
from clihelp import run_bmc, scripted_env, snapshot

Start = Callable[..., ScriptedModel]
Snapshot = dict[str, str]

ORG, SLUG, SKILL = "tidewater", "growth-2027", "bmc-segments"
PROJECT_REL = f"clients/{ORG}/projects/{SLUG}"
STATE = f"{PROJECT_REL}/.bmc/"  # runner state: the journal is checked on its own
THANKS = "Thanks, that's all for today."

# Client settings for the in-process timeout runs: a healthy reply from the scripted model
# takes milliseconds, so 2 s leaves room on a busy machine; the faulty step waits far longer
# (the scripted model cuts its wait short when it stops).
CLIENT_TIMEOUT = 2.0
HANG = 60.0


@cache
def _demo_writes() -> dict[str, dict[str, str]]:
    """The demo's write calls by id: drafts known to pass validation on this workspace."""
    scenario = json.loads((data_dir("fixtures") / "scenarios/demo-segments.json").read_text())
    return {
        block["id"]: block["input"]
        for step in scenario["steps"]
        for block in step.get("reply", {}).get("content", [])
        if block["type"] == "tool_use" and block["name"] == "write"
    }


def commuters() -> dict[str, str]:
    return _demo_writes()["toolu_demo_14"]  # segments/drafts/island-commuters.md


def freight() -> dict[str, str]:
    return _demo_writes()["toolu_demo_16"]  # segments/drafts/freight-hauliers-and-...


NOTES = {
    "file_path": "notes/summary.md",
    "content": "# Working notes\n\nCommuters drafted first: reliability ranks first for 61%.\n",
}
# What a reply broken by the fault tries to put in the note: if any of it ever ran, the
# note written before the fault would change.
CLOBBER = {"file_path": "notes/summary.md", "content": "# Working notes\n\nHALF A NOT"}


# --- the scripted session -------------------------------------------------------------------


def call(tool_id: str, name: str, tool_input: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_id, "name": name, "input": tool_input}


def reply(*blocks: dict[str, Any], text: str | None = None, stop: str | None = None) -> dict:
    content = ([{"type": "text", "text": text}] if text else []) + list(blocks)
    answer: dict[str, Any] = {"content": content}
    if stop:
        answer["stop_reason"] = stop
    return answer


def results_ok(**contains: str) -> dict[str, Any]:
    return {
        "tool_results": {
            tool_id: {"is_error": False, "contains": text} for tool_id, text in contains.items()
        }
    }


# The first request after the fault must carry both writes' results: they were journaled,
# and neither was lost nor run twice.
WRITES_DONE = results_ok(toolu_w_commuters="wrote", toolu_w_notes="wrote")
# Every tool call the finished conversation holds, in order: nothing dropped, nothing twice.
CALLS = ["toolu_r_hyp", "toolu_r_index", "toolu_w_commuters", "toolu_w_notes", "toolu_w_freight"]


def before_fault() -> list[dict[str, Any]]:
    """Read the inputs, then write a draft and a note: what is on disk when the fault hits."""
    return [
        {
            "expect": {"last_user_text_contains": "Start the bmc-segments skill"},
            "reply": reply(
                call("toolu_r_hyp", "read", {"file_path": "hypotheses.md"}),
                call("toolu_r_index", "read", {"file_path": "resources/index.md"}),
                text="Reading the hypotheses and the research index.",
            ),
        },
        {
            "expect": results_ok(toolu_r_hyp="Hypotheses", toolu_r_index="index"),
            "reply": reply(
                call("toolu_w_commuters", "write", commuters()),
                call("toolu_w_notes", "write", NOTES),
                text="Drafting the commuters first, with a working note.",
            ),
        },
    ]


def after_fault(first: dict[str, Any] = WRITES_DONE) -> list[dict[str, Any]]:
    """The second draft, then the consultant's turn; `first` is what the first request
    after the fault must carry."""
    return [
        {"expect": first, "reply": reply(call("toolu_w_freight", "write", freight()))},
        *handing_back(),
        *consultant_turn(),
    ]


def handing_back() -> list[dict[str, Any]]:
    return [
        {
            "expect": results_ok(toolu_w_freight="wrote"),
            "reply": reply(text="Two drafts are saved: commuters and freight. Anything else?"),
        }
    ]


def consultant_turn() -> list[dict[str, Any]]:
    return [
        {"expect": {"last_user_text_contains": THANKS}, "reply": reply(text="Until next time.")}
    ]


# --- the faults -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    name: str
    # Survived: scripted steps standing in for the first request after the writes, and what
    # the request after them must carry.
    steps: list[dict[str, Any]] = field(default_factory=list)
    then: dict[str, Any] = field(default_factory=lambda: WRITES_DONE)
    persists: bool = False
    # (timeout, max_retries) of a client built here for an in-process run; None: the CLI.
    client: tuple[float, int] | None = None
    shows: str = ""  # what the consultant is told of the fault, if anything


FAULTS = [
    Fault("429-retry-after", [{"fault": {"status": 429, "retry_after": 0.05}}]),
    Fault("529-overloaded", [{"fault": {"status": 529, "retry_after": 0.05}}] * 2),
    Fault("500-api-error", [{"fault": {"status": 500, "retry_after": 0.05}}]),
    # The stream breaks after the text, inside the tool call's input (event 10 of the
    # reply): the SDK does not retry a started stream, the runner drops it and asks again.
    Fault(
        "stream-cut",
        [
            {
                "expect": WRITES_DONE,
                "reply": reply(call("toolu_partial", "write", CLOBBER), text="PARTIAL reply"),
                "fault": {"cut_after_events": 10},
            }
        ],
        shows="reply dropped",
    ),
    # The output limit cuts a tool call off: it must never run; the model is told to go on.
    Fault(
        "max-tokens-cut-call",
        [
            {
                "expect": WRITES_DONE,
                "reply": reply(call("toolu_cut", "write", CLOBBER), stop="max_tokens"),
            }
        ],
        then={"last_user_text_contains": "nothing was run"},
    ),
    # One request hangs past the client's timeout; the SDK's retry gets the reply.
    Fault("timeout-once", [{"fault": {"delay": HANG}}], client=(CLIENT_TIMEOUT, 2)),
    # Every try hangs: the first and the one retry this client allows.
    Fault(
        "timeout-always",
        [{"fault": {"delay": HANG}}] * 2,
        persists=True,
        client=(CLIENT_TIMEOUT, 1),
        shows="did not answer in time",
    ),
    Fault("connection-refused", persists=True, shows="could not reach the model endpoint"),
]


# --- running bmc ----------------------------------------------------------------------------


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    target = tmp_path / "ws"
    shutil.copytree(data_dir("fixtures") / "workspace", target)
    return target


def where(workspace: Path) -> list[str]:
    return ["--workspace", str(workspace), "--org", ORG, "--project", SLUG]


def stdin(*lines: str) -> str:
    return "".join(f"{line}\n" for line in lines)


def bmc_run(workspace: Path, model: ScriptedModel, *lines: str) -> tuple[int, str]:
    result = run_bmc(
        ["run", SKILL, *where(workspace)], input=stdin(*lines), env=scripted_env(model)
    )
    assert result.exception is None, result.stderr  # a traceback is never an answer
    return result.exit_code, result.output


def bmc_resume(workspace: Path, env: dict[str, str], *lines: str) -> tuple[int, str]:
    result = run_bmc(["resume", *where(workspace)], input=stdin(*lines), env=env)
    assert result.exception is None, result.stderr
    return result.exit_code, result.output


def run_in_process(
    project: Project, model: ScriptedModel, client: tuple[float, int], *lines: str
) -> tuple[int, str]:
    """`bmc run` as the CLI does it, but with a client whose timeout and retries we choose."""
    timeout, retries = client
    sdk = anthropic.Anthropic(
        base_url=model.base_url, api_key="sk-test-scripted", timeout=timeout, max_retries=retries
    )
    out = io.StringIO()
    display = TerminalDisplay(Console(file=out, width=200))
    consultant = Consultant(display.console, io.StringIO(stdin(*lines)))
    options = RunOptions(model=DEFAULT_MODEL, client=sdk)
    try:
        start(project, SKILL, options, display, consultant)
    except BmcError as err:
        return err.exit_code, f"{out.getvalue()}\nbmc: {err}"
    return 0, out.getvalue()


def closed_port() -> int:
    """A loopback port nothing listens on: bound, then let go."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- what must hold after every run ---------------------------------------------------------


def files(workspace: Path) -> Snapshot:
    """Every file and folder of the workspace but the runner's state, by content hash."""
    return snapshot(workspace, exclude=[STATE])


def written(*inputs: dict[str, str]) -> Snapshot:
    """What `files` shows for the given write calls once they have run, folders included."""
    entries: Snapshot = {}
    for tool_input in inputs:
        rel = f"{PROJECT_REL}/{tool_input['file_path']}"
        entries[rel] = hashlib.sha256(tool_input["content"].encode("utf-8")).hexdigest()
        parent = Path(rel).parent
        while parent.as_posix() != PROJECT_REL:
            entries[f"{parent.as_posix()}/"] = "dir"
            parent = parent.parent
    return entries


def leftover_temp_files(workspace: Path) -> list[str]:
    return [
        str(Path(root, name).relative_to(workspace))
        for root, _dirs, names in os.walk(workspace)
        for name in names
        if name.endswith(".tmp")
    ]


def assert_intact(workspace: Path, expected: Snapshot) -> None:
    """The workspace holds exactly `expected`, no temp file anywhere (state included), and
    the one session's journal reads cleanly into a conversation the API accepts."""
    assert files(workspace) == expected
    assert leftover_temp_files(workspace) == []
    journals = list((workspace / STATE / "sessions").glob("*.jsonl"))
    assert len(journals) == 1, journals  # resuming continued the session, never a new one
    read = read_journal(journals[0])
    assert read.notes == []  # no torn record
    project = locate(workspace, ORG, SLUG)
    saved = sessions.load_session(project)
    problem = check_request(
        {"model": DEFAULT_MODEL, "max_tokens": 1024, "messages": saved.messages}
    )
    assert problem is None, problem
    assert saved.pending_calls() == []


def tool_calls(workspace: Path) -> list[str]:
    saved = sessions.load_session(locate(workspace, ORG, SLUG))
    return [
        block["id"]
        for message in saved.messages
        if message["role"] == "assistant"
        for block in message["content"]
        if block["type"] == "tool_use"
    ]


def session_status(workspace: Path) -> str:
    return sessions.load_session(locate(workspace, ORG, SLUG)).status


# --- the test -------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_a_fault_mid_session_is_survived_or_resumed_and_nothing_written_is_lost(
    scripted: Start, workspace: Path, fault: Fault
) -> None:
    project = locate(workspace, ORG, SLUG)
    untouched = files(workspace)
    # Written before the fault, and to stay byte for byte as written whatever follows.
    first_writes = {**untouched, **written(commuters(), NOTES)}

    if not fault.persists:
        model = scripted({"steps": [*before_fault(), *fault.steps, *after_fault(fault.then)]})
        if fault.client:
            code, output = run_in_process(project, model, fault.client, THANKS)
        else:
            code, output = bmc_run(workspace, model, THANKS)
        assert code == 0, output
        assert fault.shows in output
        model.assert_finished()
    else:
        if fault.client:
            # The endpoint hangs on every try: exit 3 once the client's retries are spent.
            model = scripted({"steps": [*before_fault(), *fault.steps]})
            code, output = run_in_process(project, model, fault.client, THANKS)
            model.assert_finished()
            healthy, lines = after_fault(), [THANKS]
        else:
            # Connection refused: the session pauses at the consultant's turn (end of input),
            # then `bmc resume` finds nothing listening at the endpoint.
            model = scripted({"steps": [*before_fault(), *after_fault()[:2]]})
            code, output = bmc_run(workspace, model)
            assert code == 0, output
            model.assert_finished()
            first_writes = {**first_writes, **written(freight())}
            assert_intact(workspace, first_writes)
            gone = {
                **scripted_env(model),
                "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{closed_port()}",
            }
            code, output = bmc_resume(workspace, gone, THANKS)
            healthy, lines = consultant_turn(), []  # THANKS is journaled already
        assert code == 3, output
        assert fault.shows in output
        assert "bmc resume" in output  # the consultant is told how to go on
        assert session_status(workspace) == sessions.FAILED
        assert_intact(workspace, first_writes)

        again = scripted({"steps": healthy})
        code, output = bmc_resume(workspace, scripted_env(again), *lines)
        assert code == 0, output
        again.assert_finished()

    # Both drafts and the note are on disk exactly as the model wrote them, and no broken
    # reply (a cut stream, a cut-off call) ever touched the note written before the fault.
    assert_intact(workspace, {**first_writes, **written(freight())})
    assert tool_calls(workspace) == CALLS
    assert session_status(workspace) == sessions.WAITING_CONSULTANT
    reports = {r.path: r.status for r in validate_project(project)}
    assert [p for p, status in reports.items() if status == "invalid"] == []
    assert reports[commuters()["file_path"]] == reports[freight()["file_path"]] == "valid"
