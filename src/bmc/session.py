"""Sessions: one skill run on one project, journaled so it survives anything (SPEC section 7).

The journal under `.bmc/sessions/<id>.jsonl` is the session: its records rebuild the
conversation exactly, so `bmc resume` continues after Ctrl-C, kill -9, a network failure or
a pause of days. One session writes to a project at a time (`ProjectLock`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UserError
from .journal import Journal, read_journal
from .usage import RunUsage, TurnUsage
from .workspace import Project, atomic_write

INTERRUPTED = "interrupted before this tool ran (the session stopped); call it again if still needed"

# Session states, as `bmc sessions` shows them.
ACTIVE = "active"
WAITING_CONSULTANT = "waiting for consultant"
WAITING_AGREEMENT = "waiting for agreement"
STOPPED = "stopped"
FAILED = "failed"
ENDED = "ended"


def sessions_dir(project: Project) -> Path:
    return project.state_dir / "sessions"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class Session:
    """A conversation rebuilt from (or being written to) its journal."""

    project: Project
    id: str
    journal: Journal
    header: dict[str, Any]
    messages: list[dict[str, Any]] = field(default_factory=list)
    read_hashes: dict[str, str] = field(default_factory=dict)
    usage: RunUsage = field(default_factory=lambda: RunUsage(model=""))
    status: str = ACTIVE
    detail: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def skill(self) -> str:
        return str(self.header["skill"])

    @property
    def model(self) -> str:
        return str(self.header["model"])

    @property
    def system(self) -> str:
        return str(self.header["system"])

    # --- Recorder: the agent loop reports every change here before it is sent -----------

    def message(self, message: dict[str, Any]) -> None:
        self.journal.append("message", message)

    def tool_result(self, block: dict[str, Any], read_hashes: dict[str, str]) -> None:
        changed = {k: v for k, v in read_hashes.items() if self.read_hashes.get(k) != v}
        self.read_hashes.update(changed)
        self.journal.append("tool_result", {"block": block, "read_hashes": changed})

    def turn(self, usage: TurnUsage) -> None:
        self.journal.append("usage", usage.__dict__)

    def cleared(self, upto: int) -> None:
        self.journal.append("cleared", {"upto": upto})

    def set_status(self, status: str, detail: str = "") -> None:
        self.status, self.detail = status, detail
        self.journal.append("status", {"status": status, "detail": detail})

    # --- what the conversation needs next ----------------------------------------------

    def pending_calls(self) -> list[dict[str, Any]]:
        """Tool calls of the last reply that have no result yet."""
        if not self.messages:
            return []
        at = len(self.messages) - 1 if self.messages[-1]["role"] == "assistant" else len(self.messages) - 2
        if at < 0 or self.messages[at]["role"] != "assistant":
            return []
        calls = [b for b in self.messages[at]["content"] if b.get("type") == "tool_use"]
        answered: set[str] = set()
        if at + 1 < len(self.messages):
            answered = {b.get("tool_use_id") for b in self.messages[at + 1]["content"] if isinstance(b, dict)}
        return [c for c in calls if c["id"] not in answered]


def new_session(project: Project, *, skill: str, model: str, system: str, extra: dict[str, Any]) -> Session:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    session_id = f"{stamp}-{skill}-{secrets.token_hex(2)}"
    path = sessions_dir(project) / f"{session_id}.jsonl"
    header = {
        "skill": skill,
        "model": model,
        "system": system,
        "org": project.org,
        "project": project.slug,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **extra,
    }
    journal = Journal(path)
    journal.append("start", header)
    return Session(project, session_id, journal, header, usage=RunUsage(model=model))


def session_path(project: Project, session_id: str | None) -> Path:
    """The journal of `session_id`, or of the latest session when None."""
    folder = sessions_dir(project)
    if session_id:
        path = folder / f"{session_id}.jsonl"
        if not path.is_file() or path.parent != folder:
            raise UserError(f"no session {session_id!r} in this project: `bmc sessions` lists them.")
        return path
    journals = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    if not journals:
        raise UserError("this project has no session to resume: start one with `bmc run <skill>`.")
    return max(journals, key=lambda p: (p.stat().st_mtime, p.name))


def load_session(project: Project, session_id: str | None = None) -> Session:
    """Rebuild a session from its journal, ready to go on (a torn tail is cut off)."""
    path = session_path(project, session_id)
    journal, read = Journal.open_existing(path)
    return rebuild(project, path.stem, journal, read.records, read.notes)


def rebuild(project: Project, session_id: str, journal: Journal, records: list, notes: list[str]) -> Session:
    if not records or records[0].kind != "start":
        raise UserError(f"session journal {session_id} has no start record; it was left as it is.")
    header = records[0].data
    session = Session(project, session_id, journal, header, usage=RunUsage(model=header["model"]))
    session.notes = list(notes)
    for record in records[1:]:
        _apply(session, record.kind, record.data)
    return session


def _apply(session: Session, kind: str, data: dict[str, Any]) -> None:
    messages = session.messages
    if kind == "message":
        messages.append(json.loads(json.dumps(data)))
    elif kind == "tool_result":
        block = data["block"]
        last = messages[-1] if messages else None
        if last and last["role"] == "user" and all(b.get("type") == "tool_result" for b in last["content"]):
            last["content"].append(block)
        else:
            messages.append({"role": "user", "content": [block]})
        session.read_hashes.update(data.get("read_hashes", {}))
    elif kind == "usage":
        session.usage.add(TurnUsage(**data))
    elif kind == "cleared":
        from .agent import clear_tool_results  # the same rule the loop applied

        clear_tool_results(messages, int(data["upto"]))
    elif kind == "status":
        session.status, session.detail = data["status"], data.get("detail", "")


@dataclass(frozen=True)
class SessionSummary:
    id: str
    skill: str
    status: str
    turns: int
    cost: float
    updated: str


def list_sessions(project: Project) -> list[SessionSummary]:
    folder = sessions_dir(project)
    summaries = []
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        try:
            read = read_journal(path)
        except UserError:
            summaries.append(SessionSummary(path.stem, "?", "damaged", 0, 0.0, ""))
            continue
        if not read.records:
            continue
        header = read.records[0].data
        usage = RunUsage(model=header.get("model", ""))
        status = ACTIVE
        for record in read.records:
            if record.kind == "usage":
                usage.add(TurnUsage(**record.data))
            elif record.kind == "status":
                status = record.data["status"]
        updated = read.records[-1].time
        summaries.append(SessionSummary(path.stem, header.get("skill", "?"), status, len(usage.turns), usage.cost, updated))
    return summaries


class ProjectLock:
    """One writer per project. An OS file lock (released by the kernel when its process
    dies, so a kill -9 leaves no stale lock) plus a note naming the holder."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.path = project.state_dir / "session.lock"
        self.holder_path = project.state_dir / "session.holder.json"

    @contextmanager
    def hold(self, session_label: str) -> Iterator[None]:
        from filelock import FileLock, Timeout

        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.path, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise UserError(self._busy_message()) from None
        try:
            atomic_write(self.holder_path, json.dumps({"session": session_label, "pid": os.getpid()}))
            yield
        finally:
            lock.release()

    def _busy_message(self) -> str:
        try:
            holder = json.loads(self.holder_path.read_text("utf-8"))
            who = f"session {holder['session']} (process {holder['pid']})"
        except (OSError, ValueError, KeyError):
            who = "another bmc process"
        return (
            f"project {self.project.org}/{self.project.slug} is in use by {who}; "
            "wait for it to finish or stop it, then try again."
        )
