"""The append-only session journal: one checksummed JSON record per line.

Each record is written whole in one `write` on a handle the journal keeps open, so a process
killed at any moment loses nothing it finished appending, and the only damage a crash can do
is a torn last line. Records are fsynced together (a group commit, SPEC section 7): on
`Journal.commit()`, which the agent loop calls before each model request and the agreement
flow before it records an agreement, and on `close()`. Until then only a power loss or a
kernel crash could lose them, and at worst it loses the records of the turn in progress.

Reading drops a torn tail with a note; a bad record anywhere else means the file was damaged
by something other than a crash, and reading stops with a clear message, leaving the file
exactly as it is.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from bmc.crashpoints import crash_point
from bmc.errors import UserError
from bmc.workspace.paths import fsync_dir


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()[:16]


def _sum_matches(total: object, seq: int, kind: str, data: object) -> bool:
    """Whether `total` is the record's checksum: of `[seq, kind, data]` serialized as the
    record holds it (what `Journal.append` writes), or, in journals written before that,
    with the data's keys sorted. JSON read back and written again gives the same text, so
    the record's own bytes need not be kept."""
    if total == _digest(json.dumps([seq, kind, data], ensure_ascii=False)):
        return True
    return total == _digest(json.dumps([seq, kind, data], sort_keys=True, ensure_ascii=False))


@dataclass
class Record:
    seq: int
    kind: str
    data: dict
    time: str


@dataclass
class JournalRead:
    records: list[Record]
    notes: list[str] = field(default_factory=list)
    good_bytes: int = 0  # length of the intact prefix; a torn tail lies past it


def read_journal(path: Path) -> JournalRead:
    raw = path.read_bytes()
    result = JournalRead(records=[])
    lines = raw.split(b"\n")
    # `split` leaves a final empty string after a trailing newline; anything else there
    # is a record whose newline never reached the disk (records are written whole, newline
    # last, so only the tail can be torn).
    offset = 0
    for index, line in enumerate(lines):
        is_last = index == len(lines) - 1
        if is_last and line == b"":
            break
        if is_last:
            # No newline after it: the process died inside the append.
            result.notes.append(
                f"the last journal record of {path.name} was cut off by a crash and was dropped"
            )
            break
        record = _parse(line, expected_seq=len(result.records))
        if record is None:
            raise UserError(
                f"session journal {path.name} is damaged at record {index + 1} (it does not "
                "parse or fails its checksum); it was left as it is."
            )
        result.records.append(record)
        offset += len(line) + 1
        result.good_bytes = offset
    return result


def _parse(line: bytes, expected_seq: int) -> Record | None:
    try:
        obj = json.loads(line.decode("utf-8"))
        seq, kind, data = obj["seq"], obj["kind"], obj["data"]
        if seq != expected_seq or not _sum_matches(obj["sum"], seq, kind, data):
            return None
        return Record(seq=seq, kind=kind, data=data, time=obj.get("time", ""))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


class Journal:
    """Appends records to one session's journal file; `commit` makes them durable.

    The file is opened on the first append and stays open until `close` (a closed journal
    opens again on the next append), so a turn's records cost one `write` each and one
    `fsync` together. Use it as a context manager, or call `close`, when the session ends."""

    def __init__(self, path: Path, next_seq: int = 0) -> None:
        self.path = path
        self.next_seq = next_seq
        self._fd: int | None = None
        self._size = 0  # bytes in the file after the last whole record
        self._unsynced = False
        self._created = False  # this handle made the file: its folder entry needs a sync too

    @classmethod
    def open_existing(cls, path: Path) -> tuple[Journal, JournalRead]:
        """Open for appending after reading (see `continue_after`)."""
        read = read_journal(path)
        return cls.continue_after(path, read), read

    @classmethod
    def continue_after(cls, path: Path, read: JournalRead) -> Journal:
        """Open for appending after `read`: a torn tail is cut off first, so new records
        follow whole ones (appending after half a record would make it damage mid-file)."""
        if path.stat().st_size > read.good_bytes:
            with open(path, "r+b") as handle:
                handle.truncate(read.good_bytes)
                os.fsync(handle.fileno())
        return cls(path, next_seq=len(read.records))

    def append(self, kind: str, data: dict) -> None:
        self._write_whole(record_line(self.next_seq, kind, data).encode("utf-8"))
        self.next_seq += 1

    def commit(self) -> None:
        """Make every record appended so far durable (fsync); nothing to do if they are."""
        if self._fd is None or not self._unsynced:
            return
        os.fsync(self._fd)
        if self._created:
            fsync_dir(self.path.parent)  # a new file is only found after a power cut then
            self._created = False
        self._unsynced = False

    def close(self) -> None:
        """Commit, then let the file go (the next append, if any, opens it again)."""
        if self._fd is None:
            return
        try:
            self.commit()
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            existed = self.path.exists()
            # O_APPEND: every write lands at the end, whatever else holds the file open.
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._size = os.fstat(self._fd).st_size
            self._created = not existed
        return self._fd

    def _write_whole(self, data: bytes) -> None:
        """Append `data` in one write. If the write fails part-way (a full disk), the part
        is cut off again, so a torn record can only ever be the last one."""
        fd = self._open()
        try:
            if os.environ.get("BMC_CRASH_AT", "").startswith("journal-append:"):
                # Tests only: die with half the record on disk, as a crash mid-append would.
                _write_all(fd, data[: len(data) // 2])
                crash_point("journal-append")
                _write_all(fd, data[len(data) // 2 :])
            else:
                _write_all(fd, data)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self._size)
            raise
        self._size += len(data)
        self._unsynced = True


def record_line(seq: int, kind: str, data: dict) -> str:
    """One journal line. The data is serialized once, for the line and its checksum alike
    (a tool result can be a 256 KB read), in the order its keys came: a resumed
    conversation sends the model's tool inputs as the model wrote them."""
    kind_text = json.dumps(kind, ensure_ascii=False)
    data_text = json.dumps(data, ensure_ascii=False)
    # The same text `json.dumps([seq, kind, data], ensure_ascii=False)` gives.
    total = _digest(f"[{seq}, {kind_text}, {data_text}]")
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")  # digits and -:+ only
    return (
        f'{{"seq": {seq}, "kind": {kind_text}, "time": "{now}", "data": {data_text}, '
        f'"sum": "{total}"}}\n'
    )


def _write_all(fd: int, data: bytes) -> None:
    # A regular file takes the whole buffer in one write unless the disk fills up or a
    # signal interrupts it; the loop finishes such a short write instead of dropping bytes.
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
