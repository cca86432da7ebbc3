"""The engine's API driven with no terminal at all, as the web page and tests drive it:
start, events, send, answer, stop (SPEC section 12).

Every test runs the real `anthropic` client against the scripted model on loopback, with the
fixture's research and the demo's segment documents, so agreements are real ones."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import pytest

from bmc.documents import gate
from bmc.engine import agreement
from bmc.engine import api as engine
from bmc.engine.events import (
    AgreementRecorded,
    AgreementRequested,
    Event,
    Notice,
    Stopped,
    TextDelta,
    WaitingForMessage,
)
from bmc.engine.session import WAITING_AGREEMENT, load_session
from bmc.errors import UserError
from bmc.scripted import ScriptedModel
from bmc.workspace.paths import Project
from projects import segments_ready

ORG, SLUG = "tidewater", "growth-2027"
SEGMENTS_MD = "segments/segments.md"
GATE = "segments/segments.agreed.md"
Start = Callable[..., ScriptedModel]


@pytest.fixture
def ready(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """The fixture workspace with the demo's valid drafts and segments document."""
    project = segments_ready(tmp_path)
    monkeypatch.setenv("BMC_CONSULTANT", "Priya Raman")
    return project


def say(text: str) -> dict[str, Any]:
    return {"reply": {"content": [{"type": "text", "text": text}]}}


def ask_agreement(expect: dict[str, Any] | None = None) -> dict[str, Any]:
    call = {
        "type": "tool_use",
        "id": "toolu_agree",
        "name": "request_agreement",
        "input": {"document": SEGMENTS_MD, "scope_notes": "UK routes only"},
    }
    step: dict[str, Any] = {"reply": {"content": [call]}}
    if expect:
        step["expect"] = expect
    return step


def agreed_result() -> dict[str, Any]:
    return {"tool_results": {"toolu_agree": {"is_error": False, "contains": "agreed"}}}


def options(model: ScriptedModel) -> engine.RunOptions:
    client = anthropic.Anthropic(base_url=model.base_url, api_key="test", max_retries=0)
    return engine.RunOptions(client=client)


def until(conversation: engine.Conversation, kind: type, seen: list[Event] | None = None) -> Any:
    """The next event of `kind`, keeping what came before it in `seen`."""
    for event in conversation.events():
        if seen is not None:
            seen.append(event)
        if isinstance(event, kind):
            return event
        if isinstance(event, Stopped):
            raise AssertionError(f"stopped before a {kind.__name__}: {event}")
    raise AssertionError("the event stream ended without a Stopped event")


def finish(conversation: engine.Conversation) -> Stopped:
    for event in conversation.events():
        if isinstance(event, WaitingForMessage):
            conversation.stop()
        if isinstance(event, Stopped):
            return event
    raise AssertionError("no Stopped event")


def test_a_skill_driven_through_the_api_streams_and_agrees_on_a_click(
    ready: Project, scripted: Start
) -> None:
    model = scripted(
        {"steps": [say("Ready to agree?"), ask_agreement(), say("Agreed: on to the canvas.")]}
    )
    conversation = engine.start(ready, "bmc-segments", options(model), opening="UK first")

    seen: list[Event] = []
    until(conversation, WaitingForMessage, seen)
    assert "".join(e.text for e in seen if isinstance(e, TextDelta)) == "Ready to agree?"
    conversation.send("The client is ready.")

    request = until(conversation, AgreementRequested)
    document = (ready.project_dir / SEGMENTS_MD).read_bytes()
    assert request.digest == gate.digest(document)
    assert request.markdown == document.decode("utf-8")
    assert request.scope == "UK routes only"
    assert any(item.startswith("Island commuters: Sailings that run") for item in request.items)
    assert conversation.pending == request

    conversation.answer(agreement.Answer(True, request.digest, contact="Fiona Galbraith"))
    recorded = until(conversation, AgreementRecorded)
    assert recorded.gate == GATE
    stopped = finish(conversation)

    assert stopped.exit_code == 0 and "Stage done" in stopped.reason
    assert (ready.project_dir / GATE).read_bytes() == document
    decisions = (ready.project_dir / "decisions.md").read_text("utf-8")
    assert "Priya Raman (consultant); Fiona Galbraith (client)" in decisions
    assert "UK first" in model.requests[0]["messages"][0]["content"][0]["text"]
    model.assert_finished()


def test_a_yes_to_a_changed_document_agrees_nothing_and_the_new_version_is_presented(
    ready: Project, scripted: Start
) -> None:
    model = scripted({"steps": [ask_agreement(), say("Thank you.")]})
    conversation = engine.start(ready, "bmc-segments", options(model))
    first = until(conversation, AgreementRequested)

    path = ready.project_dir / SEGMENTS_MD
    path.write_text(path.read_text("utf-8") + "\nA note the partner added.\n", "utf-8")
    conversation.answer(agreement.Answer(True, first.digest))

    second = until(conversation, AgreementRequested)
    assert not (ready.project_dir / GATE).exists()  # the yes to the old bytes agreed nothing
    assert second.changed_from == first.digest
    assert second.digest == gate.digest(path.read_bytes()) != first.digest
    assert second.markdown.endswith("A note the partner added.\n")

    conversation.answer(agreement.Answer(True, second.digest))
    until(conversation, AgreementRecorded)
    finish(conversation)
    assert (ready.project_dir / GATE).read_bytes() == path.read_bytes()
    model.assert_finished()


def test_feedback_goes_to_the_model_as_the_clients_words(ready: Project, scripted: Start) -> None:
    feedback = {"toolu_agree": {"is_error": False, "contains": "Merge the two island segments"}}
    reply = say("I will merge them.") | {"expect": {"tool_results": feedback}}
    model = scripted({"steps": [ask_agreement(), reply]})
    conversation = engine.start(ready, "bmc-segments", options(model))
    request = until(conversation, AgreementRequested)
    conversation.answer(agreement.parse_answer("Merge the two island segments", request.digest))
    finish(conversation)
    assert not (ready.project_dir / GATE).exists()
    model.assert_finished()


def test_while_a_person_decides_the_project_is_free_and_the_first_answer_wins(
    ready: Project, scripted: Start
) -> None:
    model = scripted({"steps": [ask_agreement(), say("Noted.") | {"expect": agreed_result()}]})
    conversation = engine.start(ready, "bmc-segments", options(model))
    request = until(conversation, AgreementRequested)
    assert not (ready.state_dir / "session.holder.json").exists()  # the lock was let go

    # `bmc agree` in another terminal answers first, with the same document.
    outside = agreement.agree_outside(
        ready,
        gate.STAGES["segments"],
        scope="",
        consultant="Sam Okafor",
        ask=lambda proposal, scope, changed: agreement.Answer(True, proposal.digest),
        notify=lambda text: None,
    )
    assert isinstance(outside, agreement.Recorded)

    conversation.answer(agreement.Answer(True, request.digest, contact="Someone Else"))
    finish(conversation)
    decisions = (ready.project_dir / "decisions.md").read_text("utf-8")
    assert decisions.count("Customer segments agreed") == 1  # one entry: the first answer
    assert "Sam Okafor (consultant)" in decisions and "Someone Else" not in decisions
    result = model.requests[1]["messages"][-1]["content"][0]["content"]
    assert "agreed outside this chat" in result
    model.assert_finished()


def test_a_message_sent_while_the_model_works_is_refused_in_one_sentence(
    ready: Project, scripted: Start
) -> None:
    slow = say("Reading everything first, this takes a while.") | {"fault": {"event_gap": 0.05}}
    model = scripted({"steps": [slow]})
    conversation = engine.start(ready, "bmc-segments", options(model))
    until(conversation, TextDelta)
    with pytest.raises(UserError, match="still working"):
        conversation.send("Hello?")
    with pytest.raises(UserError, match="no agreement waiting"):
        conversation.answer(agreement.Answer(True, "sha256:0"))
    stopped = finish(conversation)
    # The refused message was dropped, not kept to be sent once the model handed back.
    assert len(model.requests) == 1
    session = load_session(ready, stopped.session_id)
    said = [b.get("text", "") for m in session.messages for b in m["content"]]
    assert not any("Hello?" in text for text in said)
    session.close()


def test_stop_mid_reply_drops_it_and_the_session_resumes_where_it_was(
    ready: Project, scripted: Start
) -> None:
    slow = say("One two three four five six seven eight nine ten eleven twelve.")
    slow["fault"] = {"event_gap": 0.2}
    model = scripted({"steps": [slow, say("Again, whole this time.")]})
    conversation = engine.start(ready, "bmc-segments", options(model))
    until(conversation, TextDelta)
    conversation.stop()
    stopped = finish(conversation)
    assert stopped.exit_code == 0 and "Interrupted" in stopped.reason
    session = load_session(ready, stopped.session_id)
    # Nothing of the half reply was kept: the conversation still ends with the opening.
    assert [m["role"] for m in session.messages] == ["user"]
    session.close()

    resumed = engine.resume(ready, stopped.session_id, options(model))
    until(resumed, WaitingForMessage)
    resumed.stop()
    finish(resumed)
    assert model.requests[0]["messages"] == model.requests[1]["messages"]
    model.assert_finished()


def test_a_pending_agreement_survives_kill_9_and_the_next_surface_presents_it(
    ready: Project, scripted: Start
) -> None:
    model = scripted({"steps": [ask_agreement(), say("Agreed, thank you.")]})
    env = {
        **os.environ,
        "ANTHROPIC_BASE_URL": model.base_url,
        "ANTHROPIC_API_KEY": "test",
        "BMC_MAX_RETRIES": "0",
    }
    command = [sys.executable, "-m", "bmc.cli", "run", "bmc-segments"]
    where = ["--workspace", str(ready.workspace), "--org", ORG, "--project", SLUG]
    process = subprocess.Popen(
        [*command, *where],
        stdin=subprocess.PIPE,  # held open: the run waits at the agreement prompt
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        holder = ready.state_dir / "session.holder.json"
        # At the prompt: the model asked, and the lock was let go for the person.
        while not (len(model.requests) == 1 and _journal_says_asked(ready) and not holder.exists()):
            assert time.monotonic() < deadline, "the run never reached the agreement prompt"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()

    resumed = engine.resume(ready, None, options(model))
    request = until(resumed, AgreementRequested)
    assert request.digest == gate.digest((ready.project_dir / SEGMENTS_MD).read_bytes())
    resumed.answer(agreement.Answer(True, request.digest))
    until(resumed, AgreementRecorded)
    finish(resumed)
    assert (ready.project_dir / GATE).is_file()
    model.assert_finished()


def _journal_says_asked(project: Project) -> bool:
    journals = list((project.state_dir / "sessions").glob("*.jsonl"))
    return bool(journals) and b"request_agreement" in journals[0].read_bytes()


def test_a_session_paused_at_the_agreement_is_presented_again_by_the_api(
    ready: Project, scripted: Start
) -> None:
    model = scripted({"steps": [ask_agreement(), say("Agreed, thank you.")]})
    conversation = engine.start(ready, "bmc-segments", options(model))
    until(conversation, AgreementRequested)
    conversation.stop()  # the person walks away: nothing agreed, the session waits
    stopped = finish(conversation)
    assert stopped.exit_code == 0 and "Nothing was agreed" in stopped.reason
    session = load_session(ready, stopped.session_id)
    assert session.status == WAITING_AGREEMENT
    session.close()

    resumed = engine.resume(ready, stopped.session_id, options(model))
    request = until(resumed, AgreementRequested)
    resumed.answer(agreement.Answer(True, request.digest))
    seen: list[Event] = []
    until(resumed, AgreementRecorded, seen)
    finish(resumed)
    assert not any(isinstance(e, Notice) and "Repaired" in e.text for e in seen)
    model.assert_finished()
