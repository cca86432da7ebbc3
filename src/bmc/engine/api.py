"""The engine's API: start or resume a skill on a project, talk to it, answer its agreements,
stop it; everything it does comes back as typed events (SPEC section 12).

    conversation = engine.start(project, "bmc-segments", options, opening="UK first")
    for event in conversation.events():          # ends with events.Stopped
        if isinstance(event, WaitingForMessage): conversation.send("...") or .stop()
        if isinstance(event, AgreementRequested): conversation.answer(Answer(...))

The conversation runs on its own worker thread, so a surface never blocks on the model.
The project's lock is held while the model works or a tool runs, and released while the
session waits for a person: then `bmc agree` or another surface may answer the pending
agreement, and the first answer wins (SPEC section 7). The journal and the lock are the
same whichever surface drives, so a session started in one can be resumed in another.

This module and `loop` are the only ones that use the SDK's client; surfaces import it lazily,
so commands that need no model start at once.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic

from bmc.documents import gate
from bmc.documents.skills import WARNING, Skill, cautions, check_requires, load_skill
from bmc.documents.validate import checker_digest, make_validator
from bmc.engine import agreement
from bmc.engine import session as sessions
from bmc.engine.events import (
    AgreementRecorded,
    AgreementRequested,
    Event,
    Notice,
    ReplyDropped,
    ReplyFinished,
    ReplyStarted,
    Stopped,
    TextDelta,
    ToolLine,
    Usage,
    WaitingForMessage,
)
from bmc.engine.lock import ProjectLock
from bmc.engine.loop import Agent, Interrupted, Limits, RunnerTool
from bmc.engine.prompt import render_system_prompt
from bmc.engine.usage import DEFAULT_MODEL, RunUsage, TurnUsage
from bmc.errors import BmcError, ModelError, StoppedForPerson, UserError
from bmc.workspace.confine import Refused
from bmc.workspace.outcome import ToolOutcome
from bmc.workspace.paths import Project
from bmc.workspace.tools import OPTIONAL_TOOLS, Toolbox

# The Messages API's server-side web search; the endpoint runs it, results arrive in the reply.
WEB_SEARCH = {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}

# How long a session that a person just answered waits for the project's lock, if another
# command (`bmc agree`, a second session) holds it for a moment.
LOCK_WAIT = 5.0


@dataclass
class RunOptions:
    model: str | None = None
    skills_dir: Path | None = None
    limits: Limits = field(default_factory=Limits)
    web: bool = False  # offer the endpoint's server-side web search tool (bmc-research --web)
    agreed_as: str | None = None  # who signs agreements (--as), else $BMC_CONSULTANT or git
    provider: str = "anthropic"
    client: anthropic.Anthropic | None = None  # the demo passes one pointed at its scripted model


def make_client(provider: str = "anthropic", api_key: str | None = None) -> anthropic.Anthropic:
    """The SDK client for `provider`: Anthropic's API, or the SDK's own Bedrock and Vertex
    clients for firms that must reach Claude through their cloud (credentials from the
    cloud's usual environment). `api_key` is one the web page took from the keyring."""
    # The SDK retries 408/409/429/5xx and connection failures itself, honouring retry-after;
    # four tries ride out a short overload without hiding a real outage for long.
    retries = _env_number("BMC_MAX_RETRIES", 4, int)
    timeout = anthropic.Timeout(_env_number("BMC_TIMEOUT", 120.0, float), connect=10.0)
    if provider == "bedrock":
        try:
            return anthropic.AnthropicBedrock(max_retries=retries, timeout=timeout)  # type: ignore[return-value]
        except ImportError:
            raise UserError("--provider bedrock needs: pip install 'anthropic[bedrock]'.") from None
    if provider == "vertex":
        try:
            return anthropic.AnthropicVertex(max_retries=retries, timeout=timeout)  # type: ignore[return-value]
        except ImportError:
            raise UserError("--provider vertex needs: pip install 'anthropic[vertex]'.") from None
    if not (api_key or os.environ.get("ANTHROPIC_API_KEY")):
        raise UserError(
            "ANTHROPIC_API_KEY is not set: export your Anthropic API key (or try `bmc demo`, "
            "which needs none)."
        )
    if api_key:
        return anthropic.Anthropic(api_key=api_key, max_retries=retries, timeout=timeout)
    return anthropic.Anthropic(max_retries=retries, timeout=timeout)


def _env_number(name: str, default: float, kind: type) -> Any:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise UserError(f"{name}={raw!r} is not a number.") from None
    if value < 0:
        raise UserError(f"{name} must not be negative.")
    return value


def model_name(options: RunOptions) -> str:
    return options.model or os.environ.get("BMC_MODEL") or DEFAULT_MODEL


def start(
    project: Project, skill_name: str, options: RunOptions, opening: str | None = None
) -> Conversation:
    """Start `skill_name` on the project. Checks the skill and its prerequisites before any
    API call or write (a missing gate costs nothing), then runs on a worker thread."""
    skill = load_skill(skill_name, options.skills_dir)
    gate.STAGES.for_gates(skill.agrees)  # an `agrees` naming no stage: one sentence, now
    check_requires(skill, project)
    client = options.client or make_client(options.provider)
    conversation = Conversation(project, options, client, label=skill.name)
    conversation.begin(lambda: conversation.create(skill, opening))
    return conversation


def resume(project: Project, session_id: str | None, options: RunOptions) -> Conversation:
    """Continue the latest session (or `session_id`) where it stopped."""
    sessions.session_path(project, session_id)  # an unknown session: one sentence, now
    client = options.client or make_client(options.provider)
    conversation = Conversation(project, options, client, label=session_id or "resume")
    conversation.begin(lambda: conversation.load(session_id))
    return conversation


class Conversation:
    """One session, driven on its own worker thread; a surface's whole view of it.

    Surfaces call `events`, `send`, `answer` and `stop` (from any thread); everything else
    here runs on the worker."""

    def __init__(
        self, project: Project, options: RunOptions, client: anthropic.Anthropic, label: str
    ) -> None:
        self.project = project
        self.options = options
        self.client = client
        self.session: sessions.Session | None = None
        self.error: BaseException | None = None
        self._label = label
        self._lock = ProjectLock(project)
        self._held: contextlib.ExitStack | None = None
        self._events: queue.Queue[Event] = queue.Queue()
        self._inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._stop = threading.Event()
        self._waiting: str | None = None  # "message" | "agreement" while a person is asked
        self._asking = threading.Lock()
        self._pending: AgreementRequested | None = None
        self._worker: threading.Thread | None = None

    # --- the surface's API ----------------------------------------------------------------

    def events(self, poll: float = 0.1) -> Iterator[Event]:
        """Every event in order, ending with `Stopped`. Polls, so Ctrl-C reaches the caller."""
        while True:
            try:
                event = self._events.get(timeout=poll)
            except queue.Empty:
                continue
            yield event
            if isinstance(event, Stopped):
                return

    def send(self, text: str) -> None:
        """The consultant's next message; only while the session waits for one, and only
        one per hand-back (a second, like a double click, is refused)."""
        self._take("message", "the assistant is still working: wait for it to hand back to you.")
        self._inbox.put(("message", text))

    def answer(self, reply: agreement.Answer) -> None:
        """A person's answer to the pending agreement (the digest they were shown in it);
        the first answer counts, a second is refused."""
        self._take(
            "agreement",
            "there is no agreement waiting for an answer in this session (it was answered "
            "already, or not asked yet): nothing more was done.",
        )
        self._inbox.put(("answer", reply))

    def _take(self, what: str, refusal: str) -> None:
        # Threat: two answers to one question (a double click, two tabs): the second would
        # sit in the inbox and be read as the answer to a later question.
        with self._asking:
            if self._waiting == "agreement" and what == "message":
                raise UserError(
                    "an agreement is waiting for your answer: agree, or send the client's feedback."
                )
            if self._waiting != what:
                raise UserError(refusal)
            self._waiting = None

    def stop(self) -> None:
        """Stop and save: a reply half-streamed is dropped; a question to a person ends
        unanswered (resumable). Safe to call at any time, more than once."""
        self._stop.set()
        self._inbox.put(("stop", None))

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the worker to end; re-raise what ended it (a `BmcError`), if anything."""
        if self._worker is not None:
            self._worker.join(timeout)
        if self.error is not None:
            raise self.error

    @property
    def pending(self) -> AgreementRequested | None:
        """The agreement waiting for an answer, if any."""
        return self._pending

    # --- the worker ---------------------------------------------------------------------

    def begin(self, setup: Any) -> None:
        self._worker = threading.Thread(target=self._work, args=(setup,), daemon=True)
        self._worker.start()

    def _work(self, setup: Any) -> None:
        code, reason = 0, ""
        try:
            with self._locked():
                note = gate.repair_decisions(self.project)
                if note:
                    self._emit(Notice(f"Repaired: {note}."))
                setup()
                reason = self._converse()
        except BmcError as err:
            self.error, code, reason = err, err.exit_code, str(err)
        except BaseException as err:  # a bug: the surface re-raises it from `wait`
            self.error, code, reason = err, 1, f"{type(err).__name__}: {err}"
        finally:
            if self.session is not None:
                self.session.close()
            session_id = self.session.id if self.session else None
            self._emit(Stopped(code, reason, session_id))

    def create(self, skill: Skill, opening: str | None) -> None:
        project, options = self.project, self.options
        text = f"Start the {skill.name} skill for this project now."
        if opening:
            text += f"\n\nThe consultant says: {opening}"
        # Said before anything else, on every surface: what bmc cannot promise for a skill
        # written for another runner (SPEC section 3; the rest holds whatever the skill).
        for caution in cautions(skill):
            loud = caution.startswith(WARNING)
            self._emit(Notice(f"{caution if loud else 'Note: ' + caution}."))
        system = render_system_prompt(
            skill,
            project,
            resources_writable=_writes_resources(skill),
            has_agreement=bool(skill.agreeable),
            optional_tools=_optional_tools(skill),
        )
        self.session = sessions.new_session(
            project,
            skill=skill.name,
            model=model_name(options),
            system=system,
            extra={
                "skill_digest": skill.digest(),
                "rules_digest": checker_digest(),
                "skills_dir": str(options.skills_dir or ""),
                "web": options.web,
                # Kept in the header so a crash before the first message reaches the journal
                # cannot lose the opening (converse sends it when the conversation is empty).
                "opening": text,
                "gate": skill.gate,
                "agrees": list(skill.agrees),
                "next": skill.next,
            },
            lock=self._lock,
        )
        self._agent = self._make_agent(skill)

    def load(self, session_id: str | None) -> None:
        session = sessions.load_session(self.project, session_id, lock=self._lock)
        self.session = session
        for note in session.notes:
            self._emit(Notice(f"Note: {note}."))
        skills_dir = self.options.skills_dir or (
            Path(session.header["skills_dir"]) if session.header.get("skills_dir") else None
        )
        skill = load_skill(session.skill, skills_dir)
        self.options.model = session.model
        self._agent = self._make_agent(skill)
        for drift in _drift(session, skill, self._agent.toolbox):
            self._emit(Notice(f"Since this session paused: {drift}"))

    def _converse(self) -> str:
        """The chat: the model works until it hands back, then the consultant speaks.
        Returns the last line for the person."""
        session, agent = self.session, self._agent
        assert session is not None
        try:
            try:
                if not session.messages:
                    opening = {"type": "text", "text": session.header["opening"]}
                    agent.append(session.messages, {"role": "user", "content": [opening]})
                if session.pending_calls():
                    agent.run_tools(session.messages)
                while True:
                    if session.messages and session.messages[-1]["role"] == "user":
                        session.set_status(sessions.ACTIVE)
                        agent.run(session.messages)
                    session.set_status(sessions.WAITING_CONSULTANT)
                    text = self._ask_for_message()
                    if text is None:
                        farewell = _farewell(session)
                        self._emit(Notice(farewell))
                        return farewell
                    agent.append(
                        session.messages,
                        {"role": "user", "content": [{"type": "text", "text": text}]},
                    )
            except agreement.Unanswered:
                session.set_status(sessions.WAITING_AGREEMENT)
                line = (
                    "Nothing was agreed. The session waits for the agreement: "
                    f"`bmc resume {session.id}`."
                )
                self._emit(Notice(line))
                return line
            except Interrupted:
                session.set_status(sessions.WAITING_CONSULTANT, "interrupted")
                line = f"Interrupted. Session saved: `bmc resume {session.id}`."
                self._emit(Notice(line))
                return line
            except StoppedForPerson as err:
                session.set_status(sessions.STOPPED, str(err))
                raise
            except ModelError as err:
                session.set_status(sessions.FAILED, str(err))
                raise ModelError(
                    f"{err} The session is saved: `bmc resume {session.id}` continues it."
                ) from err
            except UserError as err:  # e.g. the API key was refused mid-session
                session.set_status(sessions.FAILED, str(err))
                raise UserError(f"{err} The session is saved: `bmc resume {session.id}`.") from err
        finally:
            # Every run ends with what it used, including one stopped by an error or a budget.
            self._emit(ReplyFinished())
            self._emit(Usage(len(session.usage.turns), session.usage.cost, session.usage.summary()))

    # --- asking a person: the lock is let go meanwhile -----------------------------------

    def _ask_for_message(self) -> str | None:
        assert self.session is not None
        with self._waiting_for("message"):
            self._emit(WaitingForMessage(self.session.id))
            while True:
                kind, value = self._inbox.get()
                if kind == "stop":
                    return None
                if kind == "message":
                    return str(value)

    def _ask_for_agreement(
        self, proposal: gate.Proposal, scope: str, changed_from: str | None
    ) -> agreement.Answer | None:
        assert self.session is not None
        request = agreement.presented(proposal, scope, changed_from)
        # Journaled as waiting before it is asked: a process killed at the question leaves a
        # session any surface can see is waiting for this agreement, and present again.
        self.session.set_status(sessions.WAITING_AGREEMENT)
        with self._waiting_for("agreement"):
            self._pending = request
            try:
                self._emit(request)
                while True:
                    kind, value = self._inbox.get()
                    if kind == "stop":
                        return None
                    if kind == "answer":
                        self.session.set_status(sessions.ACTIVE)
                        return value  # type: ignore[no-any-return]
            finally:
                self._pending = None

    @contextlib.contextmanager
    def _waiting_for(self, what: str) -> Iterator[None]:
        """Let go of the project while a person is asked; take it back to go on."""
        if self._stop.is_set():
            self._inbox.put(("stop", None))
        with self._asking:
            self._waiting = what
        self._release()
        try:
            yield
        finally:
            with self._asking:
                self._waiting = None
            self._acquire(wait=LOCK_WAIT)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._acquire(wait=0)
        try:
            yield
        finally:
            self._release()

    def _acquire(self, wait: float) -> None:
        deadline = time.monotonic() + wait
        while True:
            stack = contextlib.ExitStack()
            session_id = self.session.id if self.session is not None else None
            try:
                stack.enter_context(self._lock.hold(self._label, session_id))
            except UserError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)
                continue
            self._held = stack
            return

    def _release(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            held.close()

    @contextlib.contextmanager
    def _recording(self) -> Iterator[None]:
        # The lock is held again once `_ask_for_agreement` returns; what the journal holds
        # is made durable before an agreement is recorded (SPEC section 7).
        assert self.session is not None
        self.session.commit()
        yield

    # --- wiring --------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        self._events.put(event)

    def _make_agent(self, skill: Skill) -> Agent:
        session, options = self.session, self.options
        assert session is not None
        project = session.project
        toolbox = Toolbox(
            project,
            skill.folder,
            resources_writable=_writes_resources(skill),
            validator=make_validator(project),
            optional_tools=_optional_tools(skill),
        )
        toolbox.read_hashes.update(session.read_hashes)
        runner_tools: dict[str, RunnerTool] = {}
        if skill.agreeable:
            runner_tools["request_agreement"] = RunnerTool(
                agreement.DEFINITION, self._agreement_handler(skill)
            )
        agent = Agent(
            client=self.client,
            model=session.model,
            system=session.system,
            toolbox=toolbox,
            transcript=_Reporting(session, self._emit),
            display=_Emitter(self._emit),
            usage=RunUsage(model=session.model),
            runner_tools=runner_tools,
            # Fixed for the session (kept in its header): the tool list is part of the prefix.
            server_tools=[WEB_SEARCH] if session.header.get("web") else [],
            limits=options.limits,
            should_stop=self._stop.is_set,
        )
        agent.boundary = session.boundary
        session.usage = agent.usage
        return agent

    def _agreement_handler(self, skill: Skill) -> Any:
        project = self.project

        def handle(tool_input: dict[str, Any]) -> ToolOutcome:
            try:
                document = str(tool_input.get("document", ""))
                stage = agreement.stage_for(document, skill.agreeable)
                proposal = agreement.check_ready(project, stage)
            except agreement.NotReady as err:
                return ToolOutcome(err.listing(), is_error=True)
            except BmcError as err:
                return ToolOutcome(str(err), is_error=True)
            if gate.gate_state(project, stage) == "agreed":
                # Typically a session paused here while the consultant ran `bmc agree`.
                text, _ = agreement.describe(agreement.AlreadyAgreed(stage), skill.next)
                return ToolOutcome(text)
            assert self.session is not None
            result = agreement.negotiate(
                project,
                proposal,
                scope=str(tool_input.get("scope_notes") or ""),
                consultant=agreement.consultant_name(self.options.agreed_as),
                ask=self._ask_for_agreement,
                recording=self._recording,
            )
            if isinstance(result, agreement.Recorded):
                stale = [s.gate for s in result.stale]
                self._emit(AgreementRecorded(result.stage.gate, stale))
            text, is_error = agreement.describe(result, skill.next)
            return ToolOutcome(text, is_error=is_error)

        return handle


class _Emitter:
    """The agent loop's `Display`, turned into events."""

    def __init__(self, emit: Any) -> None:
        self.emit = emit

    def reply_started(self) -> None:
        self.emit(ReplyStarted())

    def text(self, delta: str) -> None:
        self.emit(TextDelta(delta))

    def reply_dropped(self, reason: str) -> None:
        self.emit(ReplyDropped(reason))

    def reply_finished(self) -> None:
        self.emit(ReplyFinished())

    def tool(self, name: str, summary: str, outcome: ToolOutcome) -> None:
        self.emit(ToolLine(name, summary, outcome.text, outcome.is_error))

    def notice(self, text: str) -> None:
        self.emit(Notice(text))


class _Reporting:
    """The session as the loop's transcript, also reporting usage after every turn."""

    def __init__(self, session: sessions.Session, emit: Any) -> None:
        self.session = session
        self.emit = emit

    def message(self, message: dict[str, Any]) -> None:
        self.session.message(message)

    def tool_result(self, block: dict[str, Any], read_changes: dict[str, str | None]) -> None:
        self.session.tool_result(block, read_changes)

    def turn(self, usage: TurnUsage) -> None:
        self.session.turn(usage)
        totals = self.session.usage
        # Turns and cost after every turn; the one-line summary only in the run's last
        # Usage event (building it each turn showed up in the per-turn bench).
        self.emit(Usage(len(totals.turns), totals.cost, ""))

    def cleared(self, upto: int) -> None:
        self.session.cleared(upto)

    def commit(self) -> None:
        self.session.commit()


def _farewell(session: sessions.Session) -> str:
    """The last line of a run: the stage is done, or how to pick the session up again."""
    again = session.header.get("agrees") or []
    if again:
        stages = gate.STAGES.for_gates(again)
        if all(gate.gate_state(session.project, s) == "agreed" for s in stages):
            return f"Done: {' and '.join(s.gate for s in stages)} are agreed as they stand."
    skill_gate = session.header.get("gate")
    stage = next((s for s in gate.STAGES.values() if s.gate == skill_gate), None)
    if stage and gate.gate_state(session.project, stage) == "agreed":
        nxt = session.header.get("next")
        then = f" Next: `bmc run {nxt}`." if nxt else ""
        return f"Stage done: {stage.gate} is agreed.{then}"
    return f"Session saved. Continue it any time with `bmc resume {session.id}`."


def _moving(session: sessions.Session, toolbox: Toolbox) -> set[str]:
    """The drafts that the unanswered rename and remove calls of the last reply move."""
    found = set()
    for pending in session.pending_calls():
        spelled = (pending.get("input") or {}).get("file_path")
        if pending.get("name") in OPTIONAL_TOOLS and isinstance(spelled, str):
            with contextlib.suppress(Refused):
                found.add(toolbox.resolve(spelled).display)
    return found


def _optional_tools(skill: Skill) -> tuple[str, ...]:
    """The tools beyond the file tools that a skill asks for in its `allowed-tools`."""
    return tuple(name for name in OPTIONAL_TOOLS if name in skill.allowed_tools)


def _writes_resources(skill: Skill) -> bool:
    return any(p.startswith("resources/") for p in skill.produces)


def _drift(session: sessions.Session, skill: Skill, toolbox: Toolbox) -> list[str]:
    """What changed since the session paused; `toolbox` (the resumed run's) finds the files."""
    found = []
    if session.header.get("skill_digest") != skill.digest():
        found.append(
            f"the skill {skill.name} changed (the session keeps its original instructions)."
        )
    if session.header.get("rules_digest") not in (None, checker_digest()):
        found.append("the document checks changed (bmc was upgraded): drafts are checked anew.")
    moving = _moving(session, toolbox)
    for path, digest in sorted(session.read_hashes.items()):
        if path in moving:
            continue  # the model's own rename or removal, cut off before its result: it runs again
        now = toolbox.current_hash(path)
        if now != digest:
            state = "was deleted" if now is None else "changed"
            found.append(f"{path} {state} since the model read it.")
    return found
