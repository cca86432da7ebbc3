"""One run of one case: a scratch copy of its workspace, the skill started through the
engine's API exactly as `bmc run` starts it, and the consultant's lines played from the case.

What the run leaves behind (`RunRecord`) is all the graders read: the events the engine
emitted, the session's messages and system prompt, its usage and wall time. The scripted
model's requests are kept too (offline), so a test can show what reached the model.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bmc.documents.skills import Skill
from bmc.engine import agreement
from bmc.engine import api as engine
from bmc.engine import events as ev
from bmc.engine.loop import Limits
from bmc.engine.usage import TOKEN_FIELDS
from bmc.errors import BmcError
from bmc.evals.cases import FileSpec, LoadedCase
from bmc.workspace.paths import Project, atomic_write, locate

SIGNATORY = "bmc eval"  # who signs the agreements of an eval run (never a real consultant)


@dataclass
class RunRecord:
    case: LoadedCase
    repeat: int
    project: Project
    scripted: bool
    exit_code: int = 0
    reason: str = ""
    transcript: list[str] = field(default_factory=list)  # replies and tool lines, in order
    tools: list[ev.ToolLine] = field(default_factory=list)
    recorded: list[ev.AgreementRecorded] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    system: str = ""
    turns: int = 0
    tokens: dict[str, int] = field(default_factory=dict)
    cost: float = 0.0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # e.g. the scripted model left its script
    requests: list[dict[str, Any]] = field(default_factory=list)  # offline: what the model got

    def tool_calls(self) -> list[dict[str, Any]]:
        """Every tool call the model made, with its input (from the session's messages)."""
        return [
            block
            for message in self.messages
            if message["role"] == "assistant"
            for block in message["content"]
            if block.get("type") == "tool_use"
        ]


def prepare(loaded: LoadedCase, scratch: Path) -> Project:
    """Copy the case's workspace to `scratch` (new) and put its files in place."""
    case = loaded.case
    shutil.copytree(loaded.path(case.workspace), scratch, symlinks=True)
    project = locate(scratch, case.org, case.project)
    for entry in case.files:
        if isinstance(entry, str):  # skill-creator's form: material handed over
            source = loaded.path(entry)
            _copy(source, project.inbox_dir / source.name)
        else:
            _place(loaded, entry, scratch)
    return project


def _place(loaded: LoadedCase, entry: FileSpec, scratch: Path) -> None:
    target = scratch / entry.path
    target.parent.mkdir(parents=True, exist_ok=True)
    if entry.content is not None:
        atomic_write(target, entry.content)
    elif entry.link_to is not None:
        if target.exists() or target.is_symlink():
            target.unlink()
        os.symlink(entry.link_to, target)
    elif entry.source is not None:
        source = loaded.path(entry.source)
        if entry.repeat_to_bytes:
            text = source.read_text("utf-8")
            copies = entry.repeat_to_bytes // max(1, len(text.encode())) + 1
            atomic_write(target, (text + "\n") * copies)
        else:
            _copy(source, target)


def _copy(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def converse(
    record: RunRecord,
    skill: Skill,
    *,
    client: Any,
    model: str,
    skills_dir: Path | None,
    consultant: list[str],
) -> RunRecord:
    """Run the skill on the record's project until it stops; fill in the record."""
    budgets = record.case.case.budgets
    # Offline the cost is the scripted model's invention: no budget is enforced on it.
    max_cost = None if record.scripted else budgets.max_cost
    options = engine.RunOptions(
        model=model,
        skills_dir=skills_dir,
        limits=Limits(max_turns=budgets.max_turns, max_cost=max_cost),
        agreed_as=SIGNATORY,
        client=client,
    )
    lines = list(consultant)
    started = time.monotonic()
    try:
        conversation = engine.start(record.project, skill.name, options, record.case.case.prompt)
    except BmcError as err:
        record.exit_code, record.reason = err.exit_code, str(err)
        return record
    reply = ""
    for event in conversation.events():
        if isinstance(event, ev.TextDelta):
            reply += event.text
        elif isinstance(event, ev.ReplyDropped):
            reply = ""
        elif isinstance(event, ev.ReplyFinished):
            if reply.strip():
                record.transcript.append(f"assistant: {reply}")
            reply = ""
        elif isinstance(event, ev.ToolLine):
            record.tools.append(event)
            outcome = f"refused: {event.text}" if event.is_error else "ok"
            record.transcript.append(f"tool {event.name} {event.summary}: {outcome}")
        elif isinstance(event, ev.WaitingForMessage):
            if lines:
                conversation.send(lines.pop(0))
            else:
                conversation.stop()  # the consultant has nothing more to say: end of input
        elif isinstance(event, ev.AgreementRequested):
            if lines:
                conversation.answer(agreement.parse_answer(lines.pop(0), event.digest))
            else:
                conversation.stop()
        elif isinstance(event, ev.AgreementRecorded):
            record.recorded.append(event)
        elif isinstance(event, ev.Stopped):
            record.exit_code, record.reason = event.exit_code, event.reason
    with contextlib.suppress(BmcError):  # its exit code and sentence came with Stopped
        conversation.wait()
    record.seconds = time.monotonic() - started
    session = conversation.session
    if session is not None:
        record.messages = session.messages
        record.system = session.system
        usage = session.usage
        record.turns = len(usage.turns)
        record.cost = usage.cost
        record.tokens = {name: usage.total(name) for name in TOKEN_FIELDS}
    return record
