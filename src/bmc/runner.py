"""Starting and resuming a conversation: the client, the tools, the loop and the consultant.

This is the only module (with `agent`) that imports the SDK, and the CLI imports it lazily,
so commands that need no model start at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anthropic

from . import gate
from . import session as sessions
from .agent import Agent, Limits, RunnerTool
from .agreement import DEFINITION, PausedForAgreement, make_handler
from .errors import ModelError, StoppedForPerson, UserError
from .lock import ProjectLock
from .prompt import render_system_prompt
from .skills import Skill, check_requires, load_skill
from .tools import Toolbox
from .ui import TerminalDisplay
from .usage import DEFAULT_MODEL, RunUsage
from .validate import checker_digest, make_validator
from .workspace import Project

# The Messages API's server-side web search; the endpoint runs it, results arrive in the reply.
WEB_SEARCH = {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}


class ConsultantInput(Protocol):
    def next_message(self) -> str | None: ...
    def answer(self, prompt: str) -> str | None: ...


@dataclass
class RunOptions:
    model: str | None = None
    skills_dir: Path | None = None
    limits: Limits = field(default_factory=Limits)
    web: bool = False  # offer the endpoint's server-side web search tool (bmc-research --web)
    agreed_as: str | None = None  # who signs agreements (--as), else $BMC_CONSULTANT or git
    client: anthropic.Anthropic | None = None  # the demo passes one pointed at its scripted model
    lock: ProjectLock | None = None  # the project's lock the caller holds: names the session


def make_client(provider: str = "anthropic") -> anthropic.Anthropic:
    """The SDK client for `provider`: Anthropic's API, or the SDK's own Bedrock and Vertex
    clients for firms that must reach Claude through their cloud (credentials from the
    cloud's usual environment)."""
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
    if not os.environ.get("ANTHROPIC_API_KEY"):
        raise UserError(
            "ANTHROPIC_API_KEY is not set: export your Anthropic API key (or try `bmc demo`, "
            "which needs none)."
        )
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
    project: Project,
    skill_name: str,
    options: RunOptions,
    display: TerminalDisplay,
    consultant: ConsultantInput,
    opening: str | None = None,
) -> sessions.Session:
    skill = load_skill(skill_name, options.skills_dir)
    check_requires(skill, project)  # before any API call: a missing gate costs nothing
    client = options.client or make_client()
    writable = _writes_resources(skill)
    text = f"Start the {skill.name} skill for this project now."
    if opening:
        text += f"\n\nThe consultant says: {opening}"
    system = render_system_prompt(
        skill, project, resources_writable=writable, has_agreement=bool(skill.gate)
    )
    session = sessions.new_session(
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
            "next": skill.next,
        },
        lock=options.lock,
    )
    agent = _agent(client, session, skill, options, display, consultant)
    converse(session, agent, consultant, display)
    return session


def resume(
    project: Project,
    session_id: str | None,
    options: RunOptions,
    display: TerminalDisplay,
    consultant: ConsultantInput,
) -> sessions.Session:
    session = sessions.load_session(project, session_id, lock=options.lock)
    for note in session.notes:
        display.notice(f"Note: {note}.")
    skills_dir = options.skills_dir or (
        Path(session.header["skills_dir"]) if session.header.get("skills_dir") else None
    )
    skill = load_skill(session.skill, skills_dir)
    for drift in _drift(session, skill):
        display.notice(f"Since this session paused: {drift}")
    options.model = session.model
    client = options.client or make_client()
    agent = _agent(client, session, skill, options, display, consultant)
    converse(session, agent, consultant, display)
    return session


def converse(
    session: sessions.Session, agent: Agent, consultant: ConsultantInput, display: TerminalDisplay
) -> None:
    """The chat: the model works until it hands back, then the consultant speaks."""
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
            text = consultant.next_message()
            if text is None:
                display.notice(_farewell(session))
                return
            agent.append(
                session.messages, {"role": "user", "content": [{"type": "text", "text": text}]}
            )
    except PausedForAgreement:
        session.set_status(sessions.WAITING_AGREEMENT)
        display.notice(
            f"Nothing was agreed. The session waits for the agreement: `bmc resume {session.id}`."
        )
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
    except KeyboardInterrupt:
        session.set_status(sessions.WAITING_CONSULTANT, "interrupted")
        display.notice(f"Interrupted. Session saved: `bmc resume {session.id}`.")
    finally:
        display.reply_finished()
        # Every run ends with what it used, including one stopped by an error or a budget.
        display.console.print(f"[dim]{session.usage.summary()}[/dim]")


def _farewell(session: sessions.Session) -> str:
    """The last line of a run: the stage is done, or how to pick the session up again."""
    skill_gate = session.header.get("gate")
    stage = next((s for s in gate.STAGES.values() if s.gate == skill_gate), None)
    if stage and gate.gate_state(session.project, stage) == "agreed":
        nxt = session.header.get("next")
        then = f" Next: `bmc run {nxt}`." if nxt else ""
        return f"Stage done: {stage.gate} is agreed.{then}"
    return f"Session saved. Continue it any time with `bmc resume {session.id}`."


def _agent(
    client: anthropic.Anthropic,
    session: sessions.Session,
    skill: Skill,
    options: RunOptions,
    display: TerminalDisplay,
    consultant: ConsultantInput,
) -> Agent:
    project = session.project
    toolbox = Toolbox(
        project,
        skill.folder,
        resources_writable=_writes_resources(skill),
        validator=make_validator(project),
    )
    toolbox.read_hashes.update(session.read_hashes)
    runner_tools: dict[str, RunnerTool] = {}
    if skill.gate:
        handle = make_handler(
            project,
            skill,
            consultant,
            display.console,
            gate.check_stage,
            gate.summarise,
            agreed_by=lambda: gate.consultant_name(options.agreed_as),
        )
        runner_tools["request_agreement"] = RunnerTool(DEFINITION, handle)
    agent = Agent(
        client=client,
        model=session.model,
        system=session.system,
        toolbox=toolbox,
        recorder=session,
        display=display,
        usage=RunUsage(model=session.model),
        runner_tools=runner_tools,
        # Fixed for the session (kept in its header): the tool list is part of the cache prefix.
        server_tools=[WEB_SEARCH] if session.header.get("web") else [],
        limits=options.limits,
    )
    agent.boundary = session.boundary
    session.usage = agent.usage
    return agent


def _writes_resources(skill: Skill) -> bool:
    return any(p.startswith("resources/") for p in skill.produces)


def _drift(session: sessions.Session, skill: Skill) -> list[str]:
    found = []
    if session.header.get("skill_digest") != skill.digest():
        found.append(
            f"the skill {skill.name} changed (the session keeps its original instructions)."
        )
    if session.header.get("rules_digest") not in (None, checker_digest()):
        found.append("the document checks changed (bmc was upgraded): drafts are checked anew.")
    toolbox = Toolbox(session.project, skill.folder)
    for path, digest in sorted(session.read_hashes.items()):
        now = toolbox.current_hash(path)
        if now != digest:
            state = "was deleted" if now is None else "changed"
            found.append(f"{path} {state} since the model read it.")
    return found
