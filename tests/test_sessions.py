"""Sessions survive everything (SPEC section 7): the journal, `bmc resume`, `bmc sessions`,
the pause at the agreement gate, and one writer per project.

Most commands run in this process through `bmc.cli.main` (fast); the ones the contract is
about processes for (a resume in a new process, two runs racing, a kill -9) run as
`python -m bmc.cli` subprocesses against the scripted model served from this process.
Runtime: 20-45 s on 2 cores, depending on load: the five subprocesses' SDK import
(2-9 s each on a loaded machine) is nearly all of it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bmc.cli import main
from bmc.documents.gate import digest
from bmc.engine import session as sessions
from bmc.engine.api import RunOptions
from bmc.engine.journal import Journal, read_journal
from bmc.engine.lock import ProjectLock
from bmc.engine.usage import RunUsage, TurnUsage
from bmc.errors import UserError
from bmc.scripted import ScriptedModel
from bmc.terminal import chat as ui
from bmc.terminal.chat import TerminalDisplay
from bmc.workspace.paths import Project, locate
from clihelp import Done

ROOT = Path(__file__).resolve().parent.parent
ORG, SLUG = "tidewater", "growth-2027"
GATE = "segments/segments.agreed.md"
# Generous: a subprocess imports the SDK first, which takes seconds on a loaded machine.
PROCESS_WAIT = 90.0

Start = Callable[..., ScriptedModel]


@pytest.fixture
def project(tmp_path: Path) -> Project:
    ws = tmp_path / "ws"
    shutil.copytree(ROOT / "fixtures" / "workspace", ws)
    return locate(ws, ORG, SLUG)


@pytest.fixture
def bmc(
    project: Project, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Done]:
    """Run a `bmc` command in this process on the project, with `stdin` as piped input."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    monkeypatch.setenv("BMC_CONSULTANT", "Test Consultant")
    monkeypatch.setenv("COLUMNS", "300")
    monkeypatch.delenv("BMC_CRASH_AT", raising=False)

    def run(*argv: str, stdin: str = "", model: ScriptedModel | None = None) -> Done:
        if model is not None:
            monkeypatch.setenv("ANTHROPIC_BASE_URL", model.base_url)
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        capsys.readouterr()
        where = ["--workspace", str(project.workspace), "--org", ORG, "--project", SLUG]
        with pytest.raises(SystemExit) as exit_:
            main([*argv, *where])
        captured = capsys.readouterr()
        code = exit_.value.code
        return Done(code if isinstance(code, int) else 1, captured.out, captured.err)

    return run


def python_bmc(project: Project, *argv: str) -> list[str]:
    """The argv of `python -m bmc.cli ...` on the project."""
    where = ["--workspace", str(project.workspace), "--org", ORG, "--project", SLUG]
    return [sys.executable, "-m", "bmc.cli", *argv, *where]


def process_env(model: ScriptedModel) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "BMC_CRASH_AT"}
    env.update(
        ANTHROPIC_BASE_URL=model.base_url,
        ANTHROPIC_API_KEY="test-key",
        BMC_CONSULTANT="Test Consultant",
        COLUMNS="300",
    )
    return env


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def call(call_id: str, name: str, **tool_input: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": name, "input": tool_input}


def says(words: str) -> dict[str, Any]:
    return {"reply": {"content": [text(words)]}}


def journal_of(project: Project) -> Path:
    [path] = sessions.sessions_dir(project).glob("*.jsonl")
    return path


def wait_until(condition: Callable[[], bool], what: str, timeout: float = PROCESS_WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def rows(done: Done) -> dict[str, list[str]]:
    """`bmc sessions`' table: session id -> [skill, status, turns, cost, updated]."""
    found = {}
    for line in done.out.splitlines():
        cells = [c.strip() for c in line.strip().strip("│┃").split("│")]
        if len(cells) == 6 and cells[0] not in ("session", ""):
            found[cells[0]] = cells[1:]
    return found


def first_text(request: dict[str, Any]) -> str:
    content = request["messages"][0]["content"]
    return content if isinstance(content, str) else content[0]["text"]


def last_results(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in request["messages"][-1]["content"] if b.get("type") == "tool_result"]


# --- the journal -------------------------------------------------------------------------


RECORDS = [
    ("start", {"skill": "bmc-segments", "model": "m", "system": "Tidewater — “quotes”"}),
    ("message", {"role": "user", "content": [text("Å line\nwith a newline inside")]}),
    ("usage", {"input_tokens": 3, "output_tokens": 5}),
    ("status", {"status": "waiting for consultant", "detail": ""}),
]


def test_journal_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    journal = Journal(path)
    for kind, data in RECORDS:
        journal.append(kind, data)

    read = read_journal(path)
    assert [(r.seq, r.kind, r.data) for r in read.records] == [
        (i, kind, data) for i, (kind, data) in enumerate(RECORDS)
    ]
    assert read.notes == []
    assert read.good_bytes == path.stat().st_size
    # One record per line, whatever the data holds.
    assert path.read_bytes().count(b"\n") == len(RECORDS)

    reopened, _ = Journal.open_existing(path)
    reopened.append("cleared", {"upto": 1})
    assert [r.seq for r in read_journal(path).records] == [0, 1, 2, 3, 4]


def test_torn_last_record_is_dropped_with_a_note_and_the_file_stays_appendable(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.jsonl"
    journal = Journal(path)
    for kind, data in RECORDS[:3]:
        journal.append(kind, data)
    whole = path.read_bytes()
    # A crash inside the fourth append: half its line reached the disk.
    scratch = Journal(tmp_path / "scratch.jsonl", next_seq=3)
    scratch.append(*RECORDS[3])
    line = scratch.path.read_bytes()
    path.write_bytes(whole + line[: len(line) // 2])
    torn = path.read_bytes()

    read = read_journal(path)
    assert [r.kind for r in read.records] == ["start", "message", "usage"]
    assert read.notes == [
        "the last journal record of s.jsonl was cut off by a crash and was dropped"
    ]
    assert path.read_bytes() == torn  # reading alone changes nothing

    reopened, _ = Journal.open_existing(path)
    assert path.read_bytes() == whole  # the torn half is gone before anything is appended
    reopened.append(*RECORDS[3])
    again = read_journal(path)
    assert again.notes == []
    assert [(r.seq, r.kind) for r in again.records] == [
        (0, "start"),
        (1, "message"),
        (2, "usage"),
        (3, "status"),
    ]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(data=st.dictionaries(st.text(), JSON, max_size=5))
def test_any_record_reads_back_exactly_as_it_was_written(data: dict[str, Any]) -> None:
    # What the model sends is arbitrary JSON (tool inputs, text in any script): each record
    # must pass its checksum and keep its keys in their order (a resumed conversation sends
    # the model's tool calls back as the model wrote them).
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "s.jsonl"
        with Journal(path) as journal:
            journal.append("start", {"skill": "bmc-segments"})
            journal.append("message", data)
        read = read_journal(path)
    assert read.notes == []
    assert read.records[1].data == data
    assert list(read.records[1].data) == list(data)


def test_a_journal_written_by_an_earlier_bmc_still_reads(tmp_path: Path) -> None:
    # Earlier versions summed each record with its data's keys sorted.
    import hashlib

    path = tmp_path / "s.jsonl"
    lines = []
    for seq, (kind, data) in enumerate(RECORDS):
        body = json.dumps([seq, kind, data], sort_keys=True, ensure_ascii=False)
        total = hashlib.sha256(body.encode("utf-8")).hexdigest()[:16]
        record = {"seq": seq, "kind": kind, "time": "", "data": data, "sum": total}
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    path.write_text("".join(lines), "utf-8")

    reopened, read = Journal.open_existing(path)
    assert read.notes == [] and [r.kind for r in read.records] == [k for k, _ in RECORDS]
    reopened.append("cleared", {"upto": 1})
    reopened.close()
    assert [r.seq for r in read_journal(path).records] == [0, 1, 2, 3, 4]


def test_the_running_cost_is_the_sum_of_the_turns_so_far() -> None:
    usage = RunUsage(model="claude-sonnet-5-5")
    turns = [TurnUsage(1000 * n, 50 * n, 9000 * n, 700) for n in range(1, 30)]
    for count, turn in enumerate(turns, 1):
        usage.add(turn)
        so_far = turns[:count]
        assert usage.cost == pytest.approx(sum(t.cost(usage.model) for t in so_far))
        assert usage.total("cache_read_tokens") == sum(t.cache_read_tokens for t in so_far)
    usage.turns.append(TurnUsage(output_tokens=1))  # a caller appending to the list itself
    assert usage.total("output_tokens") == sum(t.output_tokens for t in turns) + 1
    usage.turns = turns[:2]
    assert usage.total("input_tokens") == 3000
    assert f"${sum(t.cost(usage.model) for t in turns[:2]):.4f}" in usage.summary()


def test_a_write_the_disk_cuts_short_leaves_only_whole_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.jsonl"
    journal = Journal(path)
    journal.append(*RECORDS[0])
    whole = path.read_bytes()
    real_write = os.write

    def disk_fills_up(fd: int, data: Any) -> int:
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", disk_fills_up)
    with pytest.raises(OSError, match="No space left"):
        journal.append(*RECORDS[1])
    monkeypatch.setattr(os, "write", real_write)

    # The half record is gone at once: appending after it would make it damage mid-file.
    assert path.read_bytes() == whole
    journal.append(*RECORDS[2])
    journal.close()
    read = read_journal(path)
    assert read.notes == []
    assert [r.kind for r in read.records] == ["start", "usage"]


def test_a_journal_torn_in_its_first_record_has_nothing_to_resume(project: Project) -> None:
    folder = sessions.sessions_dir(project)
    folder.mkdir(parents=True)
    scratch = Journal(project.workspace / "scratch.jsonl")
    scratch.append(*RECORDS[0])
    line = scratch.path.read_bytes()
    path = folder / "20270101-000000-bmc-segments-abcd.jsonl"
    path.write_bytes(line[:40])

    with pytest.raises(UserError, match="no session to resume"):
        sessions.load_session(project)
    with pytest.raises(UserError, match="stopped before it had started"):
        sessions.load_session(project, path.stem)
    assert path.read_bytes() == line[:40]
    assert sessions.list_sessions(project) == []


def damage_checksum(line: bytes) -> bytes:
    record = json.loads(line)
    record["data"]["role"] = "assistant"  # still JSON, but no longer what was summed
    return json.dumps(record, ensure_ascii=False).encode("utf-8")


@pytest.mark.parametrize(
    "damage",
    [damage_checksum, lambda line: line[:20] + b"\x00garbage" + line[20:]],
    ids=["checksum", "unparseable"],
)
def test_damage_inside_the_journal_stops_the_resume_and_leaves_the_file(
    damage: Callable[[bytes], bytes], project: Project, bmc: Callable[..., Done], scripted: Start
) -> None:
    model = scripted({"steps": [says("Ready."), says("Should never be asked.")]})
    assert bmc("run", "bmc-segments", model=model).rc == 0
    path = journal_of(project)
    lines = path.read_bytes().split(b"\n")
    lines[1] = damage(lines[1])  # the opening message, record 2 of 6
    path.write_bytes(b"\n".join(lines))
    damaged = path.read_bytes()

    done = bmc("resume", stdin="go on\n", model=model)

    assert done.rc == 1
    assert f"session journal {path.name} is damaged at record 2" in done.text
    assert "left as it is" in done.text
    assert "Traceback" not in done.text
    assert path.read_bytes() == damaged
    assert len(model.requests) == 1  # nothing was sent
    with pytest.raises(UserError, match="damaged at record 2"):
        sessions.load_session(project)
    assert path.read_bytes() == damaged
    listed = bmc("sessions")
    assert listed.rc == 0 and rows(listed)[path.stem][:2] == ["?", "damaged"]


# --- resume and sessions -----------------------------------------------------------------


def test_resume_continues_the_latest_session_or_the_one_named(
    project: Project, bmc: Callable[..., Done], scripted: Start
) -> None:
    model = scripted(
        {
            "steps": [
                says("Alpha ready."),
                says("Beta ready."),
                says("Beta again."),
                says("Alpha again."),
            ]
        }
    )
    assert bmc("run", "bmc-segments", "-m", "alpha engagement", model=model).rc == 0
    [alpha] = sessions.sessions_dir(project).glob("*.jsonl")
    os.utime(alpha, (time.time() - 60, time.time() - 60))  # unambiguously the older one
    assert bmc("run", "bmc-segments", "-m", "beta engagement", model=model).rc == 0
    [beta] = [p for p in sessions.sessions_dir(project).glob("*.jsonl") if p != alpha]

    latest = bmc("resume", stdin="more please\n", model=model)
    assert latest.rc == 0, latest.text
    assert "beta engagement" in first_text(model.requests[2])
    assert model.requests[2]["messages"][-1]["content"][-1]["text"] == "more please"
    assert "Beta again." in latest.out

    named = bmc("resume", alpha.stem, stdin="and you\n", model=model)
    assert named.rc == 0, named.text
    assert "alpha engagement" in first_text(model.requests[3])
    assert "Alpha again." in named.out
    model.assert_finished()

    listed = bmc("sessions")
    assert listed.rc == 0
    table = rows(listed)
    assert set(table) == {alpha.stem, beta.stem}
    for session_id in (alpha.stem, beta.stem):
        skill, status, turns, cost, _ = table[session_id]
        assert (skill, status, turns) == ("bmc-segments", "waiting for consultant", "2")
        assert cost.startswith("$") and float(cost[1:]) > 0

    unknown = bmc("resume", "20270101-000000-bmc-segments-ffff", model=model)
    assert unknown.rc == 1 and "no session '20270101-000000-bmc-segments-ffff'" in unknown.text


class RecordingDisplay(TerminalDisplay):
    """Notes how many requests the model had received when each notice was shown."""

    def __init__(self, model: ScriptedModel) -> None:
        super().__init__()
        self.model = model
        self.notices: list[tuple[str, int]] = []

    def notice(self, text: str) -> None:
        self.notices.append((text, len(self.model.requests)))
        super().notice(text)


class Lines:
    """The consultant's side: these lines, then end of input."""

    def __init__(self, *lines: str) -> None:
        self.lines = list(lines)

    def next_message(self) -> str | None:
        return self.lines.pop(0) if self.lines else None

    def answer(self, prompt: str) -> str | None:
        return self.next_message()


def test_drift_is_reported_before_anything_is_sent(
    project: Project, tmp_path: Path, scripted: Start
) -> None:
    skills = tmp_path / "firm-skills"
    shutil.copytree(ROOT / "skills" / "bmc-segments", skills / "bmc-segments")
    model = scripted(
        {
            "steps": [
                {"reply": {"content": [call("toolu_h", "read", file_path="hypotheses.md")]}},
                says("I have read the hypotheses."),
                says("Going on with what you said."),
            ]
        }
    )

    def client() -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=model.base_url, api_key="test-key", max_retries=0)

    ui.start(
        project,
        "bmc-segments",
        RunOptions(skills_dir=skills, client=client()),
        TerminalDisplay(),
        Lines(),
    )
    assert len(model.requests) == 2
    # While the session waits: a hand edit to a file the model read, and the firm's copy
    # of the skill gets a new instruction.
    hypotheses = project.project_dir / "hypotheses.md"
    hypotheses.write_text(hypotheses.read_text("utf-8") + "\n- A sixth hypothesis.\n", "utf-8")
    skill_md = skills / "bmc-segments" / "SKILL.md"
    skill_md.write_text(skill_md.read_text("utf-8") + "\nAlways cite page numbers.\n", "utf-8")

    display = RecordingDisplay(model)
    resumed = ui.resume(project, None, RunOptions(client=client()), display, Lines("Go on."))

    drift = [(t, n) for t, n in display.notices if t.startswith("Since this session paused")]
    assert sorted(t for t, _ in drift) == [
        "Since this session paused: hypotheses.md changed since the model read it.",
        "Since this session paused: the skill bmc-segments changed (the session keeps its "
        "original instructions).",
    ]
    assert all(n == 2 for _, n in drift), "drift was reported after a request went out"
    assert len(model.requests) == 3
    # The original instructions are kept: the system prompt did not change.
    assert model.requests[2]["system"] == model.requests[0]["system"]
    assert resumed.status == sessions.WAITING_CONSULTANT
    model.assert_finished()


class SyncWatch:
    """Which files were fsynced, with their size at the time (by inode), recorded once the
    fsync has returned; `delay` makes every fsync that much slower (a loaded disk)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, delay: float = 0.0) -> None:
        self.synced: list[tuple[int, int]] = []
        real_fsync = os.fsync

        def fsync(fd: int) -> None:
            info = os.fstat(fd)
            time.sleep(delay)
            real_fsync(fd)
            self.synced.append((info.st_ino, info.st_size))

        monkeypatch.setattr(os, "fsync", fsync)

    def of(self, path: Path) -> list[int]:
        inode = path.stat().st_ino
        return [size for ino, size in self.synced if ino == inode]


def open_handles(path: Path) -> list[str]:
    """This process's open files that are `path` (Linux's /proc)."""
    fds = Path("/proc/self/fd")
    found = []
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            if Path(os.readlink(fd)) == path:
                found.append(fd.name)
    return found


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux's /proc")
def test_the_journal_is_durable_before_each_request_with_one_fsync_per_turn(
    project: Project, scripted: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = scripted(
        {
            "steps": [
                {
                    "reply": {
                        "content": [
                            text("Reading both."),
                            call("toolu_h", "read", file_path="hypotheses.md"),
                            call("toolu_b", "read", file_path="brief.md"),
                        ]
                    }
                },
                {"reply": {"content": [call("toolu_h2", "read", file_path="hypotheses.md")]}},
                says("Both read."),
            ]
        }
    )
    client = anthropic.Anthropic(base_url=model.base_url, api_key="test-key", max_retries=0)
    # Checked where it counts, as each request reaches the model, with a slow disk (an fsync
    # recorded only once it has returned): a request that did not wait for it would show.
    watch = SyncWatch(monkeypatch, delay=0.05)
    unsynced_at_request: list[int] = []
    answer = model._answer

    def arriving(raw: bytes, headers: Any) -> Any:
        journal = journal_of(project)
        synced = watch.of(journal)
        on_disk = journal.stat().st_size
        unsynced_at_request.append(on_disk - (synced[-1] if synced else 0))
        return answer(raw, headers)

    monkeypatch.setattr(model, "_answer", arriving)

    session = ui.start(
        project, "bmc-segments", RunOptions(client=client), TerminalDisplay(), Lines()
    )
    journal = journal_of(project)
    assert open_handles(journal) == [], "the journal was left open after the run"
    assert session is not None

    # Every record reached the disk before the request that follows it went out...
    assert unsynced_at_request == [0, 0, 0]
    # ...with one fsync per request, not one per record (and one when the session hands
    # back to the consultant), so the journal costs a turn one wait on the disk.
    records = read_journal(journal).records
    assert len(watch.of(journal)) == len(model.requests) + 1 == 4
    assert len(records) >= 3 * len(watch.of(journal))
    assert watch.of(journal)[-1] == journal.stat().st_size
    assert session.status == sessions.WAITING_CONSULTANT
    model.assert_finished()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux's /proc")
def test_a_journal_that_cannot_be_synced_sends_no_request(
    project: Project, scripted: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = scripted(
        {
            "steps": [
                {"reply": {"content": [call("toolu_h", "read", file_path="hypotheses.md")]}},
                says("Read."),
            ]
        }
    )
    client = anthropic.Anthropic(base_url=model.base_url, api_key="test-key", max_retries=0)
    real_fsync, failed = os.fsync, []

    def failing(fd: int) -> None:
        # The journal's commit after the first reply (before the second request) fails, once.
        if model.requests and not failed and os.readlink(f"/proc/self/fd/{fd}").endswith(".jsonl"):
            failed.append(fd)
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(BaseException):  # noqa: B017 (how the run reports it is not the point)
        ui.start(project, "bmc-segments", RunOptions(client=client), TerminalDisplay(), Lines())
    # The records of the first turn did not reach the disk then, so the second request never
    # left (the session's close synced them afterwards).
    assert failed
    assert len(model.requests) == 1


def test_a_session_under_the_lock_is_named_in_its_note_only_while_it_is_held(
    project: Project, bmc: Callable[..., Done]
) -> None:
    created = {"skill": "bmc-segments", "model": "m", "system": "S.", "extra": {}}
    with ProjectLock(project).hold("bmc-segments") as lock:
        note = json.loads(holder_note(project))
        assert (note["session"], note["command"], note["pid"]) == (
            None,
            "bmc-segments",
            os.getpid(),
        )
        session = sessions.new_session(project, **created, lock=lock)
        session.close()
        assert json.loads(holder_note(project))["session"] == session.id
        # The running session is listed as running, not as interrupted.
        assert rows(bmc("sessions"))[session.id][1] == sessions.ACTIVE
        # Another project's session cannot borrow this lock's note.
        other = Project(project.workspace, ORG, "another-project")
        with pytest.raises(ValueError):
            sessions.new_session(other, **created, lock=lock)

        resumed = sessions.load_session(project, session.id, lock=lock)
        resumed.close()
        assert json.loads(holder_note(project))["session"] == session.id

    assert not (project.state_dir / "session.holder.json").exists()
    assert rows(bmc("sessions"))[session.id][1] == sessions.INTERRUPTED_STATUS
    with pytest.raises(RuntimeError, match="not held"):
        lock.name_session(session.id)
    # Without a lock, a session is created and nothing else is written.
    sessions.new_session(project, **created).close()
    assert not (project.state_dir / "session.holder.json").exists()


# --- the agreement gate ------------------------------------------------------------------


def write_segment_documents(project: Project) -> bytes:
    """The four drafts and segments.md the kill scenario writes (valid), as if written
    earlier in the engagement; returns segments.md's bytes."""
    scenario = json.loads((ROOT / "fixtures" / "scenarios" / "kill.json").read_text("utf-8"))
    for step in scenario["steps"]:
        for block in step["reply"]["content"]:
            if block["type"] == "tool_use" and block["name"] == "write":
                target = project.project_dir / block["input"]["file_path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(block["input"]["content"], "utf-8")
    return (project.project_dir / "segments" / "segments.md").read_bytes()


def test_pause_at_the_gate_then_agree_on_resume_in_a_new_process(
    project: Project, bmc: Callable[..., Done], scripted: Start
) -> None:
    segments = write_segment_documents(project)
    decisions = project.project_dir / "decisions.md"
    decisions_before = decisions.read_bytes()
    model = scripted(
        {
            "steps": [
                {
                    "reply": {
                        "content": [
                            text("The client is ready: asking you to confirm."),
                            call(
                                "toolu_gate", "request_agreement", document="segments/segments.md"
                            ),
                        ]
                    }
                },
                {
                    "expect": {
                        "tool_results": {"toolu_gate": {"is_error": False, "contains": "agreed"}}
                    },
                    "reply": {"content": [text("Agreed. Next: `bmc run bmc-canvas`.")]},
                },
            ]
        }
    )

    paused = bmc("run", "bmc-segments", stdin="", model=model)

    assert paused.rc == 0, paused.text
    session_id = journal_of(project).stem
    assert "Nothing was agreed" in paused.text
    assert f"bmc resume {session_id}" in paused.text
    assert not (project.project_dir / GATE).exists()
    assert decisions.read_bytes() == decisions_before
    assert rows(bmc("sessions"))[session_id][:3] == ["bmc-segments", "waiting for agreement", "1"]

    resumed = subprocess.run(
        python_bmc(project, "resume"),
        input="yes\n",
        capture_output=True,
        text=True,
        env=process_env(model),
        timeout=PROCESS_WAIT,
    )

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (project.project_dir / GATE).read_bytes() == segments
    added = decisions.read_bytes()[len(decisions_before) :].decode("utf-8")
    assert decisions.read_bytes().startswith(decisions_before)
    assert "Stage 2: Customer segments agreed" in added
    assert added.count(digest(segments)) == 1
    assert "Test Consultant (consultant)" in added
    [result] = last_results(model.requests[1])
    assert result["content"].startswith("agreed")
    model.assert_finished()
    assert rows(bmc("sessions"))[session_id][1:3] == ["waiting for consultant", "2"]


# --- one writer per project --------------------------------------------------------------


def test_two_runs_racing_for_one_project_one_runs_the_other_is_told_who_holds_it(
    project: Project, bmc: Callable[..., Done], scripted: Start
) -> None:
    # One step only: a second session talking to the model would be a divergence. The
    # model takes its time, so the winner holds the lock (it is let go only while the
    # session waits for the consultant, SPEC section 7).
    model = scripted({"steps": [says("Ready when you are.") | {"fault": {"delay": 4}}]})
    racers = [
        subprocess.Popen(
            python_bmc(project, "run", "bmc-segments"),
            stdin=subprocess.PIPE,  # held open: the winner then waits for the consultant
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=process_env(model),
        )
        for _ in range(2)
    ]
    try:
        wait_until(lambda: any(p.poll() is not None for p in racers), "one racer to give up")
        [loser] = [p for p in racers if p.poll() is not None]
        [winner] = [p for p in racers if p is not loser]
        _, err = loser.communicate(timeout=PROCESS_WAIT)
        assert loser.returncode == 1, err
        message = " ".join(err.split())
        assert f"project {ORG}/{SLUG} is in use by" in message
        assert f"process {winner.pid}" in message and "bmc-segments" in message
        assert "Traceback" not in err

        # Once the winner's session exists, a refusal names it exactly.
        wait_until(lambda: len(model.requests) == 1, "the winner's first request")
        wait_until(lambda: journal_of_if_any(project) is not None, "the winner's journal")
        session_id = journal_of(project).stem
        wait_until(lambda: session_id in holder_note(project), "the holder note")
        another = bmc("run", "bmc-segments", model=model)
        assert another.rc == 1
        assert f"is in use by session {session_id} (process {winner.pid}" in another.text
        assert winner.poll() is None
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.communicate(input="", timeout=PROCESS_WAIT)  # end of input: clean exit
    assert winner.returncode == 0
    model.assert_finished()
    assert not (project.state_dir / "session.holder.json").exists()


def journal_of_if_any(project: Project) -> Path | None:
    found = list(sessions.sessions_dir(project).glob("*.jsonl"))
    return found[0] if found else None


def holder_note(project: Project) -> str:
    try:
        return (project.state_dir / "session.holder.json").read_text("utf-8")
    except OSError:
        return ""


def test_a_lock_left_by_a_killed_process_is_taken_over(
    project: Project, bmc: Callable[..., Done], scripted: Start
) -> None:
    # The first request hangs (no answer), so the run is mid-turn, lock held, when killed.
    model = scripted({"steps": [{"fault": {"delay": 60}}, says("Back again. Where were we?")]})
    victim = subprocess.Popen(
        python_bmc(project, "run", "bmc-segments"),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=process_env(model),
    )
    try:
        wait_until(lambda: len(model.requests) == 1, "the run's first request")
    finally:
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=PROCESS_WAIT)
    assert victim.returncode == -signal.SIGKILL
    session_id = journal_of(project).stem
    # What the dead process left: its lock file and a note naming it.
    assert (project.state_dir / "session.lock").exists()
    note = json.loads(holder_note(project))
    assert note["pid"] == victim.pid and note["session"] == session_id
    assert rows(bmc("sessions"))[session_id][1:3] == ["interrupted", "0"]

    resumed = bmc("resume", stdin="", model=model)

    assert resumed.rc == 0, resumed.text
    assert "Back again. Where were we?" in resumed.out
    assert "Start the bmc-segments skill" in first_text(model.requests[1])
    assert rows(bmc("sessions"))[session_id][1:3] == ["waiting for consultant", "1"]
    assert not (project.state_dir / "session.holder.json").exists()
    model.assert_finished()
