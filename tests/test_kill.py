"""kill -9 at two dozen points of a `bmc run bmc-segments` session, then `bmc resume` (SPEC 7).

Each case copies fixtures/workspace, starts the scripted model (fixtures/scenarios/kill.json:
read, write four drafts, write segments.md, ask for the agreement, end), runs the CLI with
`BMC_CRASH_AT=<point>:<n>` so the process SIGKILLs itself exactly there, photographs the
workspace, resumes in a fresh process, and checks what a consultant would notice: the resume
exits 0; nothing that was on disk at the kill is lost or altered except what the resumed
session rewrote; no half-written document; every governed document validates; the journal
reads cleanly and its conversation is one the API accepts (every `tool_use` answered); the
scripted model saw no invalid request; an agreement interrupted between its gate and its
`decisions.md` entry is completed exactly once.

Speed: a CLI process spends most of its start-up importing the anthropic SDK (2-4 s on a
loaded 2-core machine), and 26 cases need 52 of them. So the commands run in children forked
from one pre-warmed "zygote" process: each child is still a separate process running
`bmc.cli.main(argv)` with its own environment, stdin, stdout and stderr, and the SIGKILL
from the crash point kills it alone. tests/test_sessions.py covers `python -m bmc.cli` proper.
Runtime: 30-40 s for the whole file on 2 cores under load (about 10 s of it the zygote's
warm-up; each case is about 1 s).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from bmc.documents.gate import digest
from bmc.documents.validate import validate_project
from bmc.engine.journal import read_journal
from bmc.engine.session import WAITING_CONSULTANT, load_session, sessions_dir
from bmc.scripted import ScriptedModel, check_request
from bmc.workspace.paths import locate
from bmc.workspace.tools import Toolbox
from clihelp import Done

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "fixtures" / "scenarios" / "kill.json"
ORG, SLUG = "tidewater", "growth-2027"
PROJECT_ARGS = ["--workspace", ".", "--org", ORG, "--project", SLUG]  # run in the workspace
GATE = "segments/segments.agreed.md"
DECISIONS = "decisions.md"

# Runs in its own interpreter: import the heavy modules once, then fork one child per
# command. Jobs arrive as JSON lines on stdin; each answer is a JSON line with the exit code
# (negative: killed by that signal, as subprocess reports it).
ZYGOTE = r"""
import io, json, os, shutil, sys, tempfile, threading, time, traceback
import bmc.cli, bmc.engine.api  # the SDK import is most of a command's start-up
from bmc.scripted import ScriptedModel

# Warm up: one whole uninterrupted session, so the SDK's lazily built models, the templates
# and the validators are ready in every child. Its server is stopped and its threads have
# ended before the first fork (forking a process with live threads is unsafe).
commands, real_stdout = sys.stdin, sys.stdout
warm = tempfile.mkdtemp(prefix="bmc-zygote-")
shutil.copytree(os.path.join(sys.argv[1], "fixtures", "workspace"), warm, dirs_exist_ok=True)
with ScriptedModel(os.path.join(sys.argv[1], "fixtures", "scenarios", "kill.json")) as model:
    saved_env = dict(os.environ)
    os.environ.update(ANTHROPIC_BASE_URL=model.base_url, ANTHROPIC_API_KEY="warm-up")
    sys.stdin, sys.stdout = io.StringIO("yes\n"), io.StringIO()
    try:
        bmc.cli.main(["run", "bmc-segments", "--workspace", warm, "--org", "tidewater",
                      "--project", "growth-2027"])
    except SystemExit:
        pass
    sys.stdin, sys.stdout = commands, real_stdout
    os.environ.clear()
    os.environ.update(saved_env)
shutil.rmtree(warm)
deadline = time.monotonic() + 10
while threading.active_count() > 1 and time.monotonic() < deadline:
    time.sleep(0.02)
assert threading.active_count() == 1, threading.enumerate()
print(json.dumps({"ready": True}), flush=True)

for line in sys.stdin:
    job = json.loads(line)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            os.chdir(job["cwd"])
            os.environ.update(job["env"])
            for fd, path, flags in (
                (0, job["stdin"], os.O_RDONLY),
                (1, job["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                (2, job["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
            ):
                opened = os.open(path, flags, 0o644)
                os.dup2(opened, fd)
                os.close(opened)
            sys.stdin = open(0, encoding="utf-8", closefd=False)
            sys.stdout = open(1, "w", encoding="utf-8", closefd=False)
            sys.stderr = open(2, "w", encoding="utf-8", closefd=False)
            try:
                bmc.cli.main(job["argv"])
                code = 0
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"rc": os.waitstatus_to_exitcode(status)}), flush=True)
"""


class Zygote:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.count = 0
        self.process = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE, str(ROOT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            # No BMC_* settings from the developer's shell (a crash point, a workspace).
            env={k: v for k, v in os.environ.items() if not k.startswith("BMC_")},
        )
        self.ready = False

    def bmc(self, argv: list[str], *, stdin: str, env: dict[str, str], cwd: Path) -> Done:
        self.count += 1
        files = {
            name: self.tmp / f"job{self.count}.{name}" for name in ("stdin", "stdout", "stderr")
        }
        files["stdin"].write_text(stdin, "utf-8")
        job = {"argv": argv, "env": env, "cwd": str(cwd), **{k: str(v) for k, v in files.items()}}
        pipe_in: IO[str] = self.process.stdin  # type: ignore[assignment]
        pipe_out: IO[str] = self.process.stdout  # type: ignore[assignment]
        if not self.ready:
            assert json.loads(pipe_out.readline() or "{}").get("ready"), "the zygote did not start"
            self.ready = True
        pipe_in.write(json.dumps(job) + "\n")
        pipe_in.flush()
        answer = pipe_out.readline()
        assert answer, "the zygote process died"
        rc = json.loads(answer)["rc"]
        return Done(rc, files["stdout"].read_text("utf-8"), files["stderr"].read_text("utf-8"))

    def close(self) -> None:
        # Nothing to flush or save in it: end it at once rather than wait for its shutdown.
        self.process.kill()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zygote]:
    warm = Zygote(tmp_path_factory.mktemp("zygote"))
    yield warm
    warm.close()


# Where the crash points fall in this scenario when nothing goes wrong (n counts passes):
#   journal-append  1 start, 2 opening message, 3 status, 4 usage, 5 reply (4 tool calls),
#                   6-9 their results, 10 usage, 11 reply (4 draft writes), 12-15 results,
#                   16 usage, 17 reply (segments.md), 18 result, 19 usage,
#                   20 reply (request_agreement), 21 status: waiting for the agreement,
#                   22 status: active again (answered), 23 the decisions.md entry, 24 its
#                   result, 25 usage, 26 final reply, 27 status
#   stream-text     three text deltas per reply: 1-3, 4-6, 7-9, 10-12, 13-15
#   tool-result     1-4 glob and reads, 5-8 draft writes, 9 segments.md, 10 agreement
#   atomic-write    1 lock holder note, 2 its session id, 3-6 drafts, 7 segments.md,
#                   8 validation cache; the lock is let go while the consultant answers,
#                   so 9 and 10 are the holder note and session id again, 11 agreement
#                   intent, 12 the gate
#   gate-written    1
# Points before the session's first record (journal-append:1, atomic-write:1-2) leave
# nothing to resume and are left out. `journal-append` counts the journal's records
# (`Journal.append`) and the decisions.md entry (`workspace.append_record`) alike.
# The journal is fsynced once per request (a group commit), so most points fall between
# commits: tool-result:4 and journal-append:7 kill with several records written but not
# yet fsynced, and a kill must still lose none of them (only a power cut could).


KILL_POINTS: list[Any] = [
    "journal-append:2",
    "journal-append:3",
    "journal-append:5",
    "journal-append:7",
    "journal-append:11",
    "journal-append:13",
    "journal-append:17",
    "journal-append:20",
    "journal-append:21",
    "journal-append:23",
    "journal-append:24",
    "journal-append:27",
    "stream-text:1",
    "stream-text:5",
    "stream-text:8",
    "stream-text:11",
    "stream-text:14",
    "tool-result:1",
    "tool-result:4",
    "tool-result:6",
    "tool-result:9",
    "tool-result:10",
    "atomic-write:4",
    "atomic-write:7",
    "atomic-write:9",
    "atomic-write:10",
    "atomic-write:11",
    "gate-written:1",
]


# For the atomic-write cases, the document whose temp file the kill left unrenamed: checks
# that the map above still holds, so each case kills where it says it does.
TEMP_LEFT_BY = {
    "atomic-write:4": "visitors-and-day-trippers.md",
    "atomic-write:7": "segments.md",
    "atomic-write:9": "session.holder.json",
    "atomic-write:10": "agreement-intent.json",
    "atomic-write:11": "segments.agreed.md",
}


def check_kill_landed(point: str, before: dict[str, bytes], prefix: str, journal: bytes) -> None:
    names = [Path(rel).name for rel in before]
    if point in TEMP_LEFT_BY:
        name = TEMP_LEFT_BY[point]
        assert any(n.startswith(f".{name}.") and n.endswith(".tmp") for n in names), names
        assert name not in names
    elif point == "journal-append:2":
        assert journal.count(b"\n") == 1 and not journal.endswith(b"\n")
    elif point == "journal-append:23":
        assert not before[prefix + DECISIONS].endswith(b"\n")  # mid-entry
    elif point in ("gate-written:1", "tool-result:10"):
        assert prefix + GATE in before


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def calls_by_id(messages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        block["id"]: block
        for message in messages
        if message["role"] == "assistant"
        for block in message["content"]
        if block.get("type") == "tool_use"
    }


@pytest.mark.parametrize("point", KILL_POINTS)
def test_killed_session_resumes_intact(point: str, zygote: Zygote, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(ROOT / "fixtures" / "workspace", ws)
    project = locate(ws, ORG, SLUG)
    prefix = f"clients/{ORG}/projects/{SLUG}/"
    decisions_at_start = (project.project_dir / DECISIONS).read_bytes()

    with ScriptedModel(SCENARIO) as model:
        env = {
            "ANTHROPIC_BASE_URL": model.base_url,
            "ANTHROPIC_API_KEY": "test-key",
            "BMC_CONSULTANT": "Test Consultant",
            "COLUMNS": "300",
        }
        killed = zygote.bmc(
            ["run", "bmc-segments", *PROJECT_ARGS],
            stdin="yes\n",
            env={**env, "BMC_CRASH_AT": point},
            cwd=ws,
        )
        assert killed.rc == -9, f"{point} was never reached:\n{killed.text}"

        before = snapshot(ws)
        [journal] = sessions_dir(project).glob("*.jsonl")
        jrel = journal.relative_to(ws).as_posix()
        torn = not before[jrel].endswith(b"\n")
        check_kill_landed(point, before, prefix, before[jrel])
        kept = read_journal(journal)  # reading never changes the file
        assert snapshot(ws) == before

        resumed = zygote.bmc(["resume", *PROJECT_ARGS], stdin="yes\n", env=env, cwd=ws)
        assert resumed.rc == 0, resumed.text
        assert model.divergences == [], "the resumed session sent a request the API refuses"

    after = snapshot(ws)

    # The journal reads cleanly, holds every record the killed run completed, and rebuilds a
    # conversation the API accepts; the session waits for the consultant, not for a tool.
    read = read_journal(journal)
    assert read.notes == []
    assert after[jrel].startswith(before[jrel][: kept.good_bytes])
    session = load_session(project)
    first = session.messages[0]["content"][0]
    assert first["text"].startswith("Start the bmc-segments skill"), "the opening was lost"
    assert session.pending_calls() == []
    request = {"model": session.model, "max_tokens": 1, "messages": session.messages}
    assert check_request(request) is None
    # A cut-off record is dropped with a note; nothing that stood still is called drift.
    assert ("was cut off by a crash and was dropped" in resumed.text) == torn
    assert "Since this session paused" not in resumed.text

    # What the resumed session legitimately rewrote: files its successful writes named, and
    # the gate when it recorded an agreement.
    calls = calls_by_id(session.messages)
    rewritten = set()
    for record in read.records[len(kept.records) :]:
        if record.kind != "tool_result" or record.data["block"].get("is_error"):
            continue
        call = calls[record.data["block"]["tool_use_id"]]
        if call["name"] in ("write", "edit"):
            rewritten.add(prefix + call["input"]["file_path"])
        if call["name"] == "request_agreement":
            rewritten.add(prefix + GATE)
    for rel, data in before.items():
        if "/.bmc/" in rel or rel.endswith(".tmp"):
            continue  # runner state (the journal is checked above) and temp files
        if rel == prefix + DECISIONS:
            assert after[rel].startswith(data), "decisions.md lost or changed an entry"
        elif rel not in rewritten:
            assert after.get(rel) == data, f"{rel} changed or vanished after the resume"

    # No half-written document: a temp file a kill left behind was hidden, and the resume
    # cleared it; no tool or check sees one; every governed document that exists is valid.
    leftovers = [rel for rel in before if rel.endswith(".tmp")]
    assert all(Path(rel).name.startswith(".") for rel in leftovers), leftovers
    assert [rel for rel in after if rel.endswith(".tmp")] == []
    listing = Toolbox(project, ROOT / "skills" / "bmc-segments").run("glob", {"pattern": "**"})
    assert ".tmp" not in listing.text
    reports = validate_project(project)
    assert all(r.status != "invalid" for r in reports), [r for r in reports if r.problems]
    assert all(not r.path.endswith(".tmp") for r in reports)

    # An agreement is the gate plus exactly one decisions entry for its digest, whatever the
    # kill interrupted; decisions.md only ever grew by whole entries.
    decisions = after[prefix + DECISIONS]
    assert decisions.startswith(decisions_at_start)
    added = decisions[len(decisions_at_start) :].decode("utf-8")
    gate = after.get(prefix + GATE)
    if gate is None:
        assert added == ""
    else:
        assert gate == after[prefix + "segments/segments.md"]
        assert added.count(digest(gate)) == 1
        assert added.startswith("\n## ") and added.count("\n## ") == 1
        assert added.rstrip().endswith("(consultant)")
        assert not (project.state_dir / "agreement-intent.json").exists()
    if point == "gate-written:1":
        # The kill left a gate with no entry; the resume completed the entry and said so.
        assert before[prefix + GATE] == gate
        assert digest(before[prefix + GATE]).encode() not in before[prefix + DECISIONS]
        assert "Repaired:" in resumed.text

    # The session went on from where it was: it now waits for the consultant (stdin ended),
    # not for a tool or an agreement.
    assert session.status == WAITING_CONSULTANT

    # A tool call the kill cut off is answered truthfully: nobody edited a file by hand here,
    # so a refusal saying the model had not read (or had changed) a file is the runner
    # blaming the model for its own write.
    results = [b for m in session.messages if m["role"] == "user" for b in m["content"]]
    stale = [
        b["content"]
        for b in results
        if b.get("type") == "tool_result"
        and b.get("is_error")
        and ("you have not read it" in b["content"] or "changed since you read it" in b["content"])
    ]
    assert stale == []
