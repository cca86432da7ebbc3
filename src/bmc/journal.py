"""The append-only session journal: one checksummed JSON record per line.

A record is written whole in one `write` and fsynced (`workspace.append_record`), so the
only damage a crash can do is a torn last line. Reading drops such a tail with a note;
a bad record anywhere else means the file was damaged by something other than a crash, and
reading stops with a clear message, leaving the file exactly as it is.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError
from .workspace import append_record


def _checksum(seq: int, kind: str, data: object) -> str:
    body = json.dumps([seq, kind, data], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()[:16]


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
        if seq != expected_seq or obj["sum"] != _checksum(seq, kind, data):
            return None
        return Record(seq=seq, kind=kind, data=data, time=obj.get("time", ""))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


class Journal:
    """Appends records to one session's journal file."""

    def __init__(self, path: Path, next_seq: int = 0) -> None:
        self.path = path
        self.next_seq = next_seq

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
        seq = self.next_seq
        line = json.dumps(
            {
                "seq": seq,
                "kind": kind,
                "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "data": data,
                "sum": _checksum(seq, kind, data),
            },
            ensure_ascii=False,
        )
        append_record(self.path, line + "\n")
        self.next_seq += 1
