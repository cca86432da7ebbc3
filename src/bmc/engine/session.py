"""Sessions: one skill run on one project, journaled so it survives anything (SPEC section 7).

The journal under `.bmc/sessions/<id>.jsonl` is the session: its records rebuild the
conversation exactly, so `bmc resume` continues after Ctrl-C, kill -9, a network failure or
a pause of days. One session writes to a project at a time: the caller holds the project's
`lock.ProjectLock` and passes it to `new_session`/`load_session`, which name the session in
the lock's holder note.

Threat: a resumed conversation that differs from what was sent (a hand-edited or damaged
journal): every record carries a checksum and its sequence number, and damage anywhere but
a torn last record stops the resume, leaving the file as it is. Threat: a resume that acts on
stale reads: the hashes of what the model read are journaled, and drift is reported before
anything is sent (`engine`), so a file a person changed meanwhile is never overwritten unseen.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bmc.engine.conversation import clear_old_context, merge_results, unanswered_calls
from bmc.engine.journal import Journal, Record, read_journal
from bmc.engine.lock import ProjectLock, live_holder_session, process_alive
from bmc.engine.usage import RunUsage, TurnUsage
from bmc.errors import UserError
from bmc.workspace.paths import Project

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

    # --- Transcript: the agent loop reports every change here before it is sent -----------

    def message(self, message: dict[str, Any]) -> None:
        self.journal.append("message", message)

    def tool_result(self, block: dict[str, Any], read_changes: dict[str, str | None]) -> None:
        changed = {
            k: v for k, v in read_changes.items() if v is not None and self.read_hashes.get(k) != v
        }
        # A draft renamed or removed is no longer one the model has seen: forgotten here too,
        # or a resume would report it "deleted since the model read it".
        dropped = sorted(k for k, v in read_changes.items() if v is None and k in self.read_hashes)
        self.read_hashes.update(changed)
        for path in dropped:
            del self.read_hashes[path]
        record: dict[str, Any] = {"block": block, "read_hashes": changed}
        if dropped:
            record["forgotten"] = dropped
        self.journal.append("tool_result", record)

    def turn(self, usage: TurnUsage) -> None:
        self.journal.append("usage", usage.__dict__)

    def cleared(self, upto: int) -> None:
        self.journal.append("cleared", {"upto": upto})

    def set_status(self, status: str, detail: str = "") -> None:
        """Record the session's state. Any state but ACTIVE hands the session to a person
        (or ends it), a wait that may last days: the journal is committed and its file let
        go first (the next record opens it again)."""
        self.status, self.detail = status, detail
        # The pid says who waits: a surface can tell a session waiting in another window
        # (leave it be) from one whose process was killed at the question (present it again).
        self.journal.append("status", {"status": status, "detail": detail, "pid": os.getpid()})
        if status != ACTIVE:
            self.journal.close()

    def commit(self) -> None:
        """Make everything recorded so far durable (the journal's group commit). The loop
        calls it before each model request; call it before recording an agreement."""
        self.journal.commit()

    # --- the end of the session in this process ----------------------------------------

    def close(self) -> None:
        """Commit the journal and close its file."""
        self.journal.close()

    # --- what the conversation needs next ----------------------------------------------

    def pending_calls(self) -> list[dict[str, Any]]:
        """Tool calls of the last reply that have no result yet."""
        return unanswered_calls(self.messages)


def new_session(
    project: Project,
    *,
    skill: str,
    model: str,
    system: str,
    extra: dict[str, Any],
    lock: ProjectLock | None = None,
) -> Session:
    """A new session, its start record written; `lock`, the project's lock this process
    holds, then names it in its holder note."""
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
    session = Session(project, session_id, journal, header, usage=RunUsage(model=model))
    _name_in_lock(lock, session)
    return session


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


def load_session(
    project: Project, session_id: str | None = None, *, lock: ProjectLock | None = None
) -> Session:
    """Rebuild a session from its journal, ready to go on (a torn tail is cut off); `lock`,
    the project's lock this process holds, then names it in its holder note.

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
    _name_in_lock(lock, session)
    return session


def _name_in_lock(lock: ProjectLock | None, session: Session) -> None:
    if lock is None:
        return
    if lock.project != session.project:  # a caller's mix-up: the note would name a stranger
        raise ValueError(f"the lock is {lock.project.slug}'s, the session {session.project.slug}'s")
    lock.name_session(session.id)


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
        merge_results(messages, [data["block"]])  # the same rule the loop applied
        session.read_hashes.update(data.get("read_hashes", {}))
        for path in data.get("forgotten", []):
            session.read_hashes.pop(path, None)
    elif kind == "usage":
        session.usage.add(TurnUsage(**data))
    elif kind == "cleared":
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
    # A live process other than this one that waits on the session for a person (its pid).
    waiting_in: int | None = None


def list_sessions(project: Project) -> list[SessionSummary]:
    folder = sessions_dir(project)
    running = live_holder_session(project)
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
        status, pid = ACTIVE, None
        for record in read.records:
            if record.kind == "usage":
                usage.add(TurnUsage(**record.data))
            elif record.kind == "status":
                status, pid = record.data["status"], record.data.get("pid")
        if status == ACTIVE and running != path.stem:
            status = INTERRUPTED_STATUS
        waiting = status in (WAITING_AGREEMENT, WAITING_CONSULTANT) and isinstance(pid, int)
        elsewhere = pid if waiting and pid != os.getpid() and process_alive(pid) else None
        summaries.append(
            SessionSummary(
                path.stem,
                header.get("skill", "?"),
                status,
                len(usage.turns),
                usage.cost,
                read.records[-1].time,
                elsewhere,
            )
        )
    return summaries
