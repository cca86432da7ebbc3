"""One writer per project (SPEC section 7): an OS file lock plus a note naming its holder.

The OS lock is released by the kernel when its process dies, so a kill -9 leaves no stale
lock: the next command simply takes it. The note (`.bmc/session.holder.json`) is only for
people: a second command is told who holds the project. The lock is taken before a session
exists, so whoever starts or loads a session under it names the session explicitly
(`ProjectLock.name_session`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bmc.errors import UserError
from bmc.workspace.paths import Project, atomic_write

LOCK_FILE = "session.lock"
HOLDER_NOTE = "session.holder.json"

# `workspace.atomic_write`'s temp files (`tempfile.mkstemp` names: `.<name>.<8 chars>.tmp`).
TEMP_FILE_RE = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")

# How long a refused command waits for the holder to write its note: the lock is taken a
# moment before the note is written, and a message naming "another process" helps nobody.
HOLDER_NOTE_WAIT = 2.0


class ProjectLock:
    """The project's lock. `with lock.hold("bmc-segments"):` takes it or refuses in one
    sentence naming the holder; inside, `lock.name_session(id)` puts the session's id in the
    note.

    Taking the lock also clears what a killed writer left in the project: the temp file of
    an atomic write it never renamed. Nothing else writes in the project while we hold the
    lock, so any such file is an orphan (its document was never replaced by it)."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.path = project.state_dir / LOCK_FILE
        self.holder_path = project.state_dir / HOLDER_NOTE
        self.label = ""
        self.since = ""
        self.held = False

    @contextmanager
    def hold(self, label: str, session_id: str | None = None) -> Iterator[ProjectLock]:
        """Hold the lock for the block, as `label` (the command, shown to a second one) and,
        when one is running already, `session_id` (as `name_session` names it)."""
        from filelock import FileLock, Timeout  # only commands that write pay its import

        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.path, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise UserError(self._busy_message()) from None
        try:
            remove_orphan_temp_files(self.project.project_dir)
            self.label = label
            self.since = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
            self.held = True
            self._write_note(session_id)
            yield self
        finally:
            self.held = False
            # The note goes with the lock; after a crash a stale one is simply overwritten.
            if (read_note(self.holder_path) or {}).get("pid") == os.getpid():
                self.holder_path.unlink(missing_ok=True)
            lock.release()

    def name_session(self, session_id: str) -> None:
        """Name the session this process now runs under the lock, for a second command's
        refusal ("in use by session <id>") and for `bmc sessions` (which one is running)."""
        if not self.held:
            raise RuntimeError(f"the lock of {self.project.project_dir} is not held")
        self._write_note(session_id)

    def _write_note(self, session_id: str | None) -> None:
        note = {
            "session": session_id,
            "command": self.label,
            "pid": os.getpid(),
            "since": self.since,
        }
        atomic_write(self.holder_path, json.dumps(note))

    def _busy_message(self) -> str:
        deadline = time.monotonic() + HOLDER_NOTE_WAIT
        note = read_note(self.holder_path)
        while not _names_live_holder(note) and time.monotonic() < deadline:
            time.sleep(0.05)
            note = read_note(self.holder_path)
        return (
            f"project {self.project.org}/{self.project.slug} is in use by {_holder(note)}; "
            "wait for it to finish or stop it, then try again."
        )


def _holder(note: dict[str, Any] | None) -> str:
    """Who holds the lock, in the words of the busy message."""
    if not (note and _names_live_holder(note)):
        return "another bmc process"
    since = f", since {note['since']}" if note.get("since") else ""
    if note.get("session"):
        return f"session {note['session']} (process {note['pid']}{since})"
    # A command with no session (yet): `bmc agree`, or a run starting up.
    return f"process {note['pid']} ({note.get('command') or 'bmc'}{since})"


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


def read_note(path: Path) -> dict[str, Any] | None:
    # Threat: the note is a plain file anyone with access to the project can edit; only a
    # JSON object is used, and only to word a message (never to decide who may write).
    try:
        note = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return note if isinstance(note, dict) else None


def _names_live_holder(note: dict[str, Any] | None) -> bool:
    return process_alive(note.get("pid") if note else None)


def process_alive(pid: object) -> bool:
    """Whether `pid` names a running process (read from a note or a journal)."""
    # Threat: pid 0 and negative pids name process groups (os.kill(-1, 0) asks about every
    # process), which would make any hand-edited note look alive.
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except PermissionError:  # someone else's process: alive
        return True
    except OSError:
        return False
    return True


def live_holder_session(project: Project) -> str | None:
    """The id of the session a live process is running on the project now, if any."""
    note = live_holder(project)
    session = note.get("session") if note else None
    return session if isinstance(session, str) else None


def live_holder(project: Project) -> dict[str, Any] | None:
    """Who holds the project now (`session`, `command`, `pid`, `since`), if a live process
    does: what another surface shows while it may only read."""
    note = read_note(project.state_dir / HOLDER_NOTE)
    return note if note and _names_live_holder(note) else None
