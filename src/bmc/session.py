"""Sessions: one skill run on one project, journaled so it survives anything (SPEC section 7).

The journal under `.bmc/sessions/<id>.jsonl` is the session: its records rebuild the
conversation exactly, so `bmc resume` continues after Ctrl-C, kill -9, a network failure or
a pause of days. One session writes to a project at a time (`ProjectLock`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UserError
from .journal import Journal, Record, read_journal
from .messages import unanswered_calls
from .usage import RunUsage, TurnUsage
from .workspace import Project, atomic_write

# Session states, as `bmc sessions` shows them.
ACTIVE = "active"
WAITING_CONSULTANT = "waiting for consultant"
WAITING_AGREEMENT = "waiting for agreement"
STOPPED = "stopped"
FAILED = "failed"
# Shown by `bmc sessions` for a session whose journal says it was running but whose process
# is gone (Ctrl-C before the status was written, a crash, kill -9): `bmc resume` continues it.
INTERRUPTED_STATUS = "interrupted"


def sessions_dir(project: Project) -> Path:
    return project.state_dir / "sessions"


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
    boundary: int | None = None  # where the last context clearing stopped (a cache breakpoint)

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
        return unanswered_calls(self.messages)


def new_session(
    project: Project, *, skill: str, model: str, system: str, extra: dict[str, Any]
) -> Session:
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
    _name_holder(project, session_id)
    return Session(project, session_id, journal, header, usage=RunUsage(model=model))


def session_path(project: Project, session_id: str | None) -> Path:
    """The journal of `session_id`, or of the latest session when None."""
    folder = sessions_dir(project)
    if session_id:
        path = folder / f"{session_id}.jsonl"
        if not path.is_file() or path.parent != folder:
            raise UserError(
                f"no session {session_id!r} in this project: `bmc sessions` lists them."
            )
        return path
    # A journal without one whole record is a run that died while it was being created:
    # there is nothing in it to resume, and `bmc sessions` does not list it either.
    journals = [p for p in folder.glob("*.jsonl") if _has_a_record(p)] if folder.is_dir() else []
    if not journals:
        raise UserError("this project has no session to resume: start one with `bmc run <skill>`.")
    return max(journals, key=lambda p: (p.stat().st_mtime, p.name))


def _has_a_record(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return b"\n" in handle.read(1 << 20)
    except OSError:
        return False


def load_session(project: Project, session_id: str | None = None) -> Session:
    """Rebuild a session from its journal, ready to go on (a torn tail is cut off).

    Every check happens before the file is touched: a damaged journal, or one with no
    whole start record, is refused and left byte for byte as it was."""
    path = session_path(project, session_id)
    read = read_journal(path)
    if not read.records or read.records[0].kind != "start":
        raise UserError(
            f"session {path.stem} stopped before it had started, so there is nothing to "
            "resume; its journal was left as it is. Start again with `bmc run <skill>`."
        )
    journal = Journal.continue_after(path, read)
    session = rebuild(project, path.stem, journal, read.records, read.notes)
    _name_holder(project, session.id)
    return session


def rebuild(
    project: Project, session_id: str, journal: Journal, records: list[Record], notes: list[str]
) -> Session:
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
        if (
            last
            and last["role"] == "user"
            and all(b.get("type") == "tool_result" for b in last["content"])
        ):
            last["content"].append(block)
        else:
            messages.append({"role": "user", "content": [block]})
        session.read_hashes.update(data.get("read_hashes", {}))
    elif kind == "usage":
        session.usage.add(TurnUsage(**data))
    elif kind == "cleared":
        from .agent import clear_old_context  # the same rule the loop applied

        clear_old_context(messages, int(data["upto"]))
        session.boundary = int(data["upto"])
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
    running = _live_holder_session(project)
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
        if status == ACTIVE and running != path.stem:
            status = INTERRUPTED_STATUS
        summaries.append(
            SessionSummary(
                path.stem,
                header.get("skill", "?"),
                status,
                len(usage.turns),
                usage.cost,
                read.records[-1].time,
            )
        )
    return summaries


# The locks this process holds, by state folder, so a session created or loaded under one can
# write its id into the holder note (the lock is taken before the session id is known).
_HELD: dict[Path, ProjectLock] = {}

# `workspace.atomic_write`'s temp files (`tempfile.mkstemp` names: `.<name>.<8 chars>.tmp`).
TEMP_FILE_RE = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")

# How long a refused command waits for the holder to write its note: the lock is taken a
# moment before the note is written, and a message naming "another process" helps nobody.
HOLDER_NOTE_WAIT = 2.0


class ProjectLock:
    """One writer per project. An OS file lock (released by the kernel when its process
    dies, so a kill -9 leaves no stale lock: the next command simply takes it) plus a note
    naming the holder, for the message a second command gets.

    Taking the lock also clears what a killed writer left in the project: the temp file of
    an atomic write it never renamed. Nothing else writes in the project while we hold the
    lock, so any such file is an orphan (its document was never replaced by it)."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.path = project.state_dir / "session.lock"
        self.holder_path = project.state_dir / "session.holder.json"
        self.label = ""
        self.since = ""

    @contextmanager
    def hold(self, session_label: str) -> Iterator[None]:
        from filelock import FileLock, Timeout

        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.path, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise UserError(self._busy_message()) from None
        key = self.project.state_dir
        try:
            remove_orphan_temp_files(self.project.project_dir)
            self.label = session_label
            self.since = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
            self.write_note(None)
            _HELD[key] = self
            yield
        finally:
            _HELD.pop(key, None)
            # The note goes with the lock; after a crash a stale one is simply overwritten.
            if (_read_note(self.holder_path) or {}).get("pid") == os.getpid():
                self.holder_path.unlink(missing_ok=True)
            lock.release()

    def write_note(self, session_id: str | None) -> None:
        note = {
            "session": session_id,
            "command": self.label,
            "pid": os.getpid(),
            "since": self.since,
        }
        atomic_write(self.holder_path, json.dumps(note))

    def _busy_message(self) -> str:
        deadline = time.monotonic() + HOLDER_NOTE_WAIT
        note = _read_note(self.holder_path)
        while not _names_live_holder(note) and time.monotonic() < deadline:
            time.sleep(0.05)
            note = _read_note(self.holder_path)
        if note and _names_live_holder(note):
            since = f", since {note['since']}" if note.get("since") else ""
            if note.get("session"):
                who = f"session {note['session']} (process {note['pid']}{since})"
            else:  # a command with no session (yet): `bmc agree`, or a run starting up
                who = f"process {note['pid']} ({note.get('command') or 'bmc'}{since})"
        else:
            who = "another bmc process"
        return (
            f"project {self.project.org}/{self.project.slug} is in use by {who}; "
            "wait for it to finish or stop it, then try again."
        )


def remove_orphan_temp_files(folder: Path) -> list[Path]:
    """Delete the atomic-write temp files under `folder` (call it only under the lock);
    returns what was removed. The client's `resources/` is shared by every project of the
    organisation, so it is not swept here."""
    removed = []
    for root, _dirs, files in os.walk(folder):
        for name in files:
            if TEMP_FILE_RE.fullmatch(name):
                path = Path(root) / name
                try:
                    path.unlink()
                except OSError:
                    continue
                removed.append(path)
    return removed


def _name_holder(project: Project, session_id: str) -> None:
    """Put the session's id in the holder note of the lock this process holds, if any."""
    lock = _HELD.get(project.state_dir)
    if lock is not None:
        lock.write_note(session_id)


def _read_note(path: Path) -> dict[str, Any] | None:
    try:
        note = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return note if isinstance(note, dict) else None


def _names_live_holder(note: dict[str, Any] | None) -> bool:
    if not note or not isinstance(note.get("pid"), int):
        return False
    return _alive(note["pid"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except OSError:
        return False
    return True


def _live_holder_session(project: Project) -> str | None:
    """The id of the session a live process is running on the project now, if any."""
    note = _read_note(project.state_dir / "session.holder.json")
    if note and _names_live_holder(note):
        return note.get("session")
    return None
