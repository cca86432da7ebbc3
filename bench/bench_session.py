"""How well a bmc session uses the prompt cache, what the runner costs per turn, and how it
compares with other ways of driving the same conversation. Writes bench/results.md.

Everything runs against the scripted model (`bmc.scripted.ScriptedModel`) on loopback, in
this process; each client (bmc's runner, or another loop) runs in a child process, so its
timings and its memory are its own. Scenarios are generated here: in a session of N turns,
turn k writes a note about the resource read at turn k-1 and reads resource k (realistic
markdown of a few KB), and the last turn ends with text.

Measured:

- prompt-cache efficiency: of the tokens each request repeats from the request before it
  (their common prefix, counted block by block as the scripted model counts), the share read
  from the cache; and the billed-token equivalent (input 1x, cache writes 1.25x, cache reads
  0.1x) against the same requests with caching off (every input token at 1x);
- runner overhead per turn: from the scripted model's side, the gap between the end of one
  answer and the arrival of the next request (client-side time only: parsing the reply,
  running tools, journaling, building and sending the next request); 10, 50 and 200 turns;
  peak memory (VmHWM) of the client process;
- the same session driven by a bare streaming SDK loop (the floor), pydantic-ai's Anthropic
  model (defaults; cache settings on) and the SDK's beta tool runner (`thread=False`, without
  and with automatic `cache_control`): per-turn time and cache efficiency as ratios to the
  bare loop, all from one run, rounds interleaved so background load hits them alike;
- context bounds: the largest request of a session that pages and greps a 1.5 MB resource,
  and of a 200-turn session that reads a lot, with what each clearing of old tool results
  costs the cache;
- start-up: `bmc --help` and `bmc status` wall time (subprocess, median of several runs).

Run:   python bench/bench_session.py            (a few minutes; writes bench/results.md)
       python bench/bench_session.py --profile-dump FILE  (adds a cProfile run of bmc)
Optional comparisons need `pip install -r bench/requirements.txt`; without them their rows
say so.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
import json
import math
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from bmc.scripted import PromptCache, ScriptedModel, _Handler

HERE = Path(__file__).resolve().parent
ORG, PROJECT, SKILL = "bench", "session-bench", "bmc-research"
WINDOW_TOKENS = 200_000  # the context window of current Claude models
READ_CAP = 256 * 1024  # bmc's Toolbox read cap: a page may be at most this many bytes
BILLED = {"input": 1.0, "write": 1.25, "read": 0.1}
TARGET_EFFICIENCY = 0.97
TARGET_RATIO = 1.2
TARGET_STATUS_S = 0.3

# ---------------------------------------------------------------------------------------
# Generated material: research that reads like research, so sizes and JSON escaping are real.
# ---------------------------------------------------------------------------------------

SEGMENTS = [
    "commuters",
    "hauliers",
    "day-trippers",
    "island residents",
    "coach operators",
    "cyclists",
    "students",
    "second-home owners",
    "tour groups",
    "business travellers",
]
FACTORS = [
    "punctuality",
    "fare levels",
    "booking flexibility",
    "onboard wifi",
    "vehicle deck space",
    "connections to buses",
    "refund speed",
    "loyalty discounts",
    "cabin comfort",
    "timetable frequency",
    "winter reliability",
    "accessible boarding",
]
SOURCES = [
    "passenger survey",
    "haulier interviews",
    "booking data",
    "annual accounts",
    "tourism board report",
    "stakeholder workshop",
    "complaints log",
    "competitor scan",
]
ROUTES = ["Harbourside-Northisle", "Port Fell-Kilbride", "Southwick-Eastholm", "Ardmore-Lune"]
COMMENTS = [
    "the early sailing is often late and I miss my connection",
    "prices went up again but the service did not improve",
    "booking a vehicle slot in summer is nearly impossible",
    "staff were helpful when the crossing was cancelled",
    "the refund took six weeks and three phone calls",
    "wifi drops halfway across so I cannot work",
    "a season ticket would make me travel more often",
    "freight gets priority and foot passengers wait outside",
]


def _sentence(rng: random.Random) -> str:
    segment, factor = rng.choice(SEGMENTS), rng.choice(FACTORS)
    templates = [
        f"{segment.capitalize()} named {factor} as their first concern "
        f"({rng.randint(12, 78)}% of {rng.randint(80, 900)} respondents).",
        f"Among {segment}, {factor} moved from rank {rng.randint(2, 9)} to rank "
        f"{rng.randint(1, 4)} between {rng.randint(2019, 2023)} and 2026.",
        f"Revenue from {segment} was £{rng.randint(1, 40)}.{rng.randint(0, 9)}m, "
        f"{rng.choice(['up', 'down'])} {rng.randint(1, 19)}% on the year before.",
        f"Interviewees linked {factor} to how often {segment} travel, "
        f"especially in {rng.choice(['winter', 'summer', 'school holidays', 'peak weeks'])}.",
    ]
    return rng.choice(templates)


def research_doc(rng: random.Random, title: str, target_bytes: int) -> str:
    source = rng.choice(SOURCES)
    parts = [f"# {title}", "", f"Source: {source}, {rng.randint(2024, 2026)}.", ""]
    size = sum(len(p) + 1 for p in parts)
    section = 1
    while size < target_bytes:
        block = [f"## {section}. {rng.choice(FACTORS).capitalize()}", ""]
        block.append(" ".join(_sentence(rng) for _ in range(rng.randint(3, 6))))
        block.append("")
        if rng.random() < 0.5:
            block += [f"- {_sentence(rng)}" for _ in range(rng.randint(3, 5))]
            block.append("")
        parts += block
        size += sum(len(p) + 1 for p in block)
        section += 1
    return "\n".join(parts)


def note_doc(rng: random.Random, about: str, target_bytes: int) -> str:
    lines = [f"# Notes on {about}", ""]
    while sum(len(x) + 1 for x in lines) < target_bytes:
        lines.append(f"- {_sentence(rng)}")
    return "\n".join(lines) + "\n"


def survey_dump(rng: random.Random, target_bytes: int) -> str:
    """A raw survey export: one respondent per line, far over the read cap."""
    lines = ["# Raw passenger survey export 2026", ""]
    size, number = 0, 0
    while size < target_bytes:
        number += 1
        line = (
            f"| R-{number:06d} | {rng.choice(ROUTES)} | {rng.choice(SEGMENTS)} | "
            f"{rng.randint(1, 5)}/5 | '{rng.choice(COMMENTS)}' |"
        )
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# Scenarios: files to put in the project, and the scripted model's steps.
# ---------------------------------------------------------------------------------------


@dataclass
class Session:
    name: str
    files: dict[str, str]  # path under the org folder (resources/...) -> text
    steps: list[dict[str, Any]]

    @property
    def scenario(self) -> dict[str, Any]:
        return {"name": self.name, "steps": self.steps}


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _call(call_id: str, name: str, **tool_input: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": name, "input": tool_input}


def reading_session(
    n_turns: int,
    *,
    seed: int = 7,
    resource_bytes: tuple[int, int] = (2500, 5000),
    note_bytes: tuple[int, int] = (600, 1200),
) -> Session:
    """N requests: turn k writes a note on resource k-1 and reads resource k; the last turn
    ends with text. Each step checks the results it answers, so a loop that sent wrong
    tool results fails loudly instead of being timed."""
    rng = random.Random(seed)
    files: dict[str, str] = {}
    titles: dict[int, str] = {}
    for k in range(1, n_turns):
        titles[k] = f"Source {k:03d}: {rng.choice(SOURCES)} on {rng.choice(SEGMENTS)}"
        files[f"resources/source-{k:03d}.md"] = research_doc(
            rng, titles[k], rng.randint(*resource_bytes)
        )
    steps: list[dict[str, Any]] = []
    for k in range(1, n_turns + 1):
        expect: dict[str, Any] = {}
        if k > 1:
            expect[f"toolu_read_{k - 1:03d}"] = {"is_error": False, "contains": titles[k - 1]}
        if k > 2:
            expect[f"toolu_write_{k - 2:03d}"] = {"is_error": False, "contains": "wrote"}
        if k == n_turns:
            content = [_text("Every source is read and noted; the notes are in notes/.")]
        else:
            content = [_text(f"Noting source {k - 1:03d}, then reading source {k:03d}.")]
            if k > 1:
                note = note_doc(rng, titles[k - 1], rng.randint(*note_bytes))
                content.append(
                    _call(
                        f"toolu_write_{k - 1:03d}",
                        "write",
                        file_path=f"notes/source-{k - 1:03d}.md",
                        content=note,
                    )
                )
            content.append(
                _call(f"toolu_read_{k:03d}", "read", file_path=f"resources/source-{k:03d}.md")
            )
        step: dict[str, Any] = {"reply": {"content": content}}
        if expect:
            step["expect"] = {"tool_results": expect}
        steps.append(step)
    return Session(f"reading-{n_turns}", files, steps)


def paging_session(megabytes: float = 1.5, seed: int = 11) -> Session:
    """A 1.5 MB resource met the way a model meets it: list, try to read it whole (refused),
    grep it, then page through all of it with pages as large as the read cap allows (the
    worst case the tools permit), writing a note on each page."""
    rng = random.Random(seed)
    big = "resources/archive/survey-raw-2026.md"
    dump = survey_dump(rng, int(megabytes * 1_000_000))
    files = {big: dump}
    for k in range(1, 4):
        files[f"resources/source-{k:03d}.md"] = research_doc(rng, f"Source {k:03d}", 3000)
    lines = dump.splitlines(keepends=True)
    pages: list[tuple[int, int]] = []
    start, size = 1, 0
    for number, line in enumerate(lines, 1):
        if size + len(line.encode()) > READ_CAP - 256:
            pages.append((start, number - 1))
            start, size = number, 0
        size += len(line.encode())
    pages.append((start, len(lines)))
    steps: list[dict[str, Any]] = [
        {
            "reply": {
                "content": [
                    _text("Listing the research."),
                    _call("toolu_glob", "glob", pattern="**/*.md", path="resources"),
                ]
            }
        },
        {
            "expect": {"tool_results": {"toolu_glob": {"contains": "survey-raw-2026"}}},
            "reply": {
                "content": [
                    _text("Reading the survey export."),
                    _call("toolu_whole", "read", file_path=big),
                ]
            },
        },
        {
            "expect": {
                "tool_results": {"toolu_whole": {"is_error": True, "contains": "view_range"}}
            },
            "reply": {
                "content": [
                    _text("Too big to read whole: searching it first."),
                    _call("toolu_grep", "grep", pattern="refund took", path=big),
                ]
            },
        },
    ]
    previous = "toolu_grep"
    for index, (first, last) in enumerate(pages, 1):
        content = [_text(f"Reading lines {first}-{last} of the export.")]
        if index > 1:
            content.append(
                _call(
                    f"toolu_note_{index - 1}",
                    "write",
                    file_path=f"notes/survey-page-{index - 1}.md",
                    content=note_doc(rng, f"survey page {index - 1}", 900),
                )
            )
        content.append(
            _call(f"toolu_page_{index}", "read", file_path=big, view_range=[first, last])
        )
        marker = lines[first - 1].strip()[:40]
        steps.append(
            {
                "expect": {"tool_results": {previous: {"is_error": False}}},
                "reply": {"content": content},
            }
        )
        previous = f"toolu_page_{index}"
        steps[-1]["_marker"] = (previous, marker)
    steps.append(
        {
            "reply": {
                "content": [
                    _text("Writing the summary of the export."),
                    _call(
                        f"toolu_note_{len(pages)}",
                        "write",
                        file_path=f"notes/survey-page-{len(pages)}.md",
                        content=note_doc(rng, f"survey page {len(pages)}", 900),
                    ),
                ]
            }
        }
    )
    steps.append({"reply": {"content": [_text("The export is read; notes are in notes/.")]}})
    # Each page read is checked by the step after it: its first respondent must be there.
    for at, step in enumerate(steps):
        marked = step.pop("_marker", None)
        if marked is not None:
            steps[at + 1].setdefault("expect", {"tool_results": {}})
            steps[at + 1]["expect"]["tool_results"][marked[0]] = {
                "is_error": False,
                "contains": marked[1],
            }
    return Session("paging-1.5MB", files, steps)


def build_project(root: Path, session: Session) -> Path:
    """A fresh workspace holding the session's resources; returns the workspace folder."""
    from bmc.workspace.paths import init_project

    workspace = root / "workspace"
    project = init_project(workspace, ORG, PROJECT, "Bench Ferries Ltd")
    for rel, text in session.files.items():
        target = project.org_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return workspace


# ---------------------------------------------------------------------------------------
# The scripted model, plus what the bench needs from its side.
# ---------------------------------------------------------------------------------------


def with_automatic_breakpoint(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """The API's top-level `cache_control` (automatic caching) puts a breakpoint on the last
    cacheable block of the request. The scripted model ignores the top-level field, which
    would score the SDK tool runner's and pydantic-ai's automatic caching as no caching at
    all; this applies the API's rule before the scripted model's accounting."""
    control = body.get("cache_control")
    messages = body.get("messages")
    if not isinstance(control, dict) or not isinstance(messages, list) or not messages:
        return body
    last = messages[-1]
    content = last.get("content")
    blocks = [_text(content)] if isinstance(content, str) else list(content or [])
    if not blocks:
        return body
    blocks[-1] = {**blocks[-1], "cache_control": blocks[-1].get("cache_control") or control}
    return {**body, "messages": [*messages[:-1], {**last, "content": blocks}]}


# The scripted model sends each SSE event (and a JSON answer's headers, then its body) as a
# separate small write on a socket without TCP_NODELAY: Nagle's algorithm then holds the last
# segment until the client's delayed ACK, about 40 ms on Linux, on every reply. That would
# add 40 ms to every turn of every loop and hide the differences measured here, so the
# bench's own server turns Nagle off (socketserver's switch for it). Worth fixing in
# bmc.scripted itself: tests and `bmc demo` pay the same 40 ms per request.
_Handler.disable_nagle_algorithm = True


class _AutomaticCache(PromptCache):
    def account(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return super().account(with_automatic_breakpoint(body))


class TimedModel(ScriptedModel):
    """The scripted model, recording when each request arrived and when its answer ended.

    Hooks `_add_served`, which the server calls once per request with the seconds it spent
    (from reading the request to the end of the answer), right after the answer is sent.
    """

    def __init__(self, scenario: Mapping[str, Any]) -> None:
        super().__init__(scenario)
        self.spans: list[tuple[float, float]] = []
        self._cache = _AutomaticCache()

    def _add_served(self, seconds: float) -> None:
        end = time.perf_counter()
        self.spans.append((end - seconds, end))
        super()._add_served(seconds)


# ---------------------------------------------------------------------------------------
# Counting tokens the way the scripted model does (docs/scenarios.md, "Prompt caching").
# ---------------------------------------------------------------------------------------


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [_text(content)] if content else []
    return [b for b in content or [] if isinstance(b, dict)]


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def flatten(body: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(identity, tokens) of each block as the cache sees it: tools, system, messages."""
    items = [("tool", t) for t in body.get("tools") or []]
    items += [("system", b) for b in _blocks(body.get("system"))]
    for message in body.get("messages") or []:
        items += [(message["role"], b) for b in _blocks(message.get("content"))]
    out = []
    for origin, block in items:
        bare = {k: v for k, v in block.items() if k != "cache_control"}
        out.append(
            (
                json.dumps([origin, bare], sort_keys=True),
                math.ceil(len(json.dumps(bare, sort_keys=True)) / 4),
            )
        )
    return out


@dataclass
class Clearing:
    request: int  # 1-based
    before: int  # tokens of the request before
    after: int  # tokens of this request
    new: int  # tokens this turn added (blocks past the previous request's length)
    read: int
    written: int
    repeated: int
    one_off: float  # billed tokens paid beyond a normal cached turn of this size
    saving_per_turn: float  # billed tokens each later turn saves (a smaller prefix to read)


@dataclass
class CacheStats:
    requests: int
    total: int  # every input token of every request
    repeated: int  # tokens each request repeats from the request before it
    read: int
    written: int
    uncached: int
    efficiency: float
    billed_cached: float
    billed_off: float
    largest: int
    largest_at: int
    clearings: list[Clearing]


def cache_stats(bodies: list[dict[str, Any]], usages: list[dict[str, Any]]) -> CacheStats:
    previous: list[tuple[str, int]] = []
    total = repeated = read_share = read = written = uncached = 0
    billed_cached = billed_off = 0.0
    largest, largest_at = 0, 0
    clearings = []
    for number, (body, usage) in enumerate(zip(bodies, usages, strict=True), 1):
        blocks = flatten(body)
        size = sum(t for _, t in blocks)
        common = 0
        for (key, tokens), (old_key, _) in zip(blocks, previous, strict=False):
            if key != old_key:
                break
            common += tokens
        r = usage["cache_read_input_tokens"]
        w = usage["cache_creation_input_tokens"]
        i = usage["input_tokens"]
        billed = i * BILLED["input"] + w * BILLED["write"] + r * BILLED["read"]
        if number > 1:
            repeated += common
            read_share += min(r, common)
        prev_size = sum(t for _, t in previous)
        if number > 1 and common < prev_size:  # the previous request is not a prefix: cleared
            new = sum(t for _, t in blocks[len(previous) :])
            normal = (size - new) * BILLED["read"] + new * BILLED["write"]
            shrink = prev_size - (size - new)
            clearings.append(
                Clearing(
                    number,
                    prev_size,
                    size,
                    new,
                    r,
                    w,
                    common,
                    billed - normal,
                    shrink * BILLED["read"],
                )
            )
        total += size
        read += r
        written += w
        uncached += i
        billed_cached += billed
        billed_off += size
        if size > largest:
            largest, largest_at = size, number
        previous = blocks
    return CacheStats(
        len(bodies),
        total,
        repeated,
        read,
        written,
        uncached,
        read_share / repeated if repeated else 0.0,
        billed_cached,
        billed_off,
        largest,
        largest_at,
        clearings,
    )


# ---------------------------------------------------------------------------------------
# Running one client against one session.
# ---------------------------------------------------------------------------------------


@dataclass
class Run:
    kind: str
    bodies: list[dict[str, Any]] = field(default_factory=list)
    usages: list[dict[str, Any]] = field(default_factory=list)
    spans: list[tuple[float, float]] = field(default_factory=list)
    child: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    launched: float = 0.0  # perf_counter just before the child process was started
    _cache: CacheStats | None = field(default=None, repr=False)

    @property
    def all_gaps_ms(self) -> list[float]:
        """Client time per turn: end of one answer to the arrival of the next request."""
        return [(b[0] - a[1]) * 1000 for a, b in zip(self.spans, self.spans[1:], strict=False)]

    @property
    def gaps_ms(self) -> list[float]:
        """The steady turns: the first gap pays one-off warm-up (lazy imports, first tool
        call), so it is reported apart."""
        return self.all_gaps_ms[1:]

    @property
    def served_s(self) -> float:
        return sum(end - start for start, end in self.spans)

    def timing(self, label: str) -> tuple[float, float]:
        """(ms, calls) per steady turn spent in an INSTRUMENTED function (bmc runs only)."""
        seconds, calls = (self.child.get("timings") or {}).get(label, [0.0, 0])
        turns = max(1, len(self.gaps_ms))
        return seconds * 1000 / turns, calls / turns

    def cache(self) -> CacheStats:
        if self._cache is None:
            self._cache = cache_stats(self.bodies, self.usages)
        return self._cache


def run_client(
    kind: str,
    session: Session,
    spec: dict[str, Any] | None = None,
    *,
    profile_dump: str | None = None,
) -> Run:
    """Serve `session` and drive it with client `kind` in a child process."""
    run = Run(kind)
    with tempfile.TemporaryDirectory(prefix="bmc-bench-") as tmp:
        workspace = build_project(Path(tmp), session)
        with TimedModel(session.scenario) as model:
            child_spec = {
                **(spec or {}),
                "kind": kind,
                "base_url": model.base_url,
                "workspace": str(workspace),
                "profile_dump": profile_dump,
            }
            run.launched = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--child"],
                input=json.dumps(child_spec),
                capture_output=True,
                text=True,
                timeout=600,
            )
            lines = proc.stdout.strip().splitlines()
            try:
                run.child = json.loads(lines[-1]) if lines else {}
            except json.JSONDecodeError:
                run.child = {}
            if proc.returncode != 0 or "error" in run.child or not run.child:
                tail = (run.child.get("error") if run.child else None) or proc.stderr[-600:]
                run.error = f"{kind} failed (exit {proc.returncode}): {tail}"
            elif model.divergences or model.remaining():
                problems = model.divergences[:2] or [f"{model.remaining()} steps never requested"]
                run.error = f"{kind} left the script: {'; '.join(problems)}"
            run.bodies = list(model.requests)
            run.usages = list(model.usages)
            run.spans = list(model.spans)
    return run


# ---------------------------------------------------------------------------------------
# The clients (run with --child; the spec comes on stdin, the result goes to stdout).
# ---------------------------------------------------------------------------------------


def _memory_kb(field_name: str) -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


class PlainTools:
    """Hand-written tools for the other loops: the same results bmc's Toolbox gives for the
    calls these sessions make (whole reads and writes), with none of its checks."""

    def __init__(self, workspace: Path) -> None:
        org = workspace / "clients" / ORG
        self.project = org / "projects" / PROJECT
        self.resources = org / "resources"

    def _path(self, file_path: str) -> Path:
        if file_path.startswith("resources/"):
            return self.resources / file_path.removeprefix("resources/")
        return self.project / file_path

    def read(self, file_path: str, view_range: list[int] | None = None) -> str:
        return self._path(file_path).read_text(encoding="utf-8")

    def write(self, file_path: str, content: str) -> str:
        target = self._path(file_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode("utf-8")
        target.write_bytes(data)
        return f"wrote {len(data)} bytes to {file_path}"

    def functions(self) -> dict[str, Callable[..., str]]:
        def unused(**_: Any) -> str:
            raise RuntimeError("this session never calls it")

        def edit(
            file_path: str, old_string: str, new_string: str, replace_all: bool | None = None
        ) -> str:
            return unused()

        def glob(pattern: str, path: str | None = None) -> str:
            return unused()

        def grep(pattern: str, path: str | None = None) -> str:
            return unused()

        def request_agreement(document: str, scope_notes: str | None = None) -> str:
            return unused()

        return {
            "read": self.read,
            "write": self.write,
            "edit": edit,
            "glob": glob,
            "grep": grep,
            "request_agreement": request_agreement,
        }


class _Quiet:
    """bmc's consultant at end of input: the session runs until the model hands back."""

    def next_message(self) -> str | None:
        return None

    def answer(self, prompt: str) -> str | None:
        return None


def child_bmc(spec: dict[str, Any]) -> str:
    """The real runner, as `bmc run` drives it: session journal, lock, toolbox, validator,
    display (to /dev/null, as when piped)."""
    import anthropic
    from rich.console import Console

    from bmc import runner
    from bmc.engine.session import ProjectLock
    from bmc.terminal.chat import TerminalDisplay
    from bmc.workspace.paths import locate

    project = locate(Path(spec["workspace"]), ORG, PROJECT)
    client = anthropic.Anthropic(
        base_url=spec["base_url"],
        api_key="bench",
        max_retries=4,
        timeout=anthropic.Timeout(120.0, connect=10.0),
    )
    _instrument()
    with open(os.devnull, "w", encoding="utf-8") as sink:
        display = TerminalDisplay(Console(file=sink, highlight=False))
        _mark("before")
        with ProjectLock(project).hold("bench"):
            session = runner.start(
                project, SKILL, runner.RunOptions(client=client), display, _Quiet()
            )
    return session.status


# Timed in every bmc run: (label, module, class or None, function). Nested rows (indented)
# are also inside the row above them.
INSTRUMENTED = [
    ("journal: Journal.append", "bmc.engine.journal", "Journal", "append"),
    ("tools: Toolbox.run", "bmc.workspace.tools", "Toolbox", "run"),
    ("  path checks: Confinement.resolve", "bmc.workspace.confine", "Confinement", "resolve"),
    (
        "  atomic_write (file fsync, rename, folder fsync)",
        "bmc.workspace.tools",
        None,
        "atomic_write",
    ),
    ("display: TerminalDisplay.tool", "bmc.terminal.chat", "TerminalDisplay", "tool"),
    ("display: TerminalDisplay.text", "bmc.terminal.chat", "TerminalDisplay", "text"),
    (
        "estimate_tokens (json.dumps of the conversation)",
        "bmc.engine.loop",
        None,
        "estimate_tokens",
    ),
    ("tool_definitions (a deep copy per request)", "bmc.engine.loop", "Agent", "tool_definitions"),
    ("with_cache_breakpoints", "bmc.engine.loop", None, "with_cache_breakpoints"),
    ("os.fsync, all callers (journal and atomic_write above)", "os", None, "fsync"),
]
FSYNC_LABEL = INSTRUMENTED[-1][0]
PATH_LABEL = INSTRUMENTED[2][0]
_TIMINGS: dict[str, list[float]] = {}


def _instrument() -> None:
    """Wrap the INSTRUMENTED functions with timers (about a microsecond a call, unlike a
    profiler). Counting starts with the second request, so the first turn's one-off
    warm-up stays out, as it does in the per-turn figures."""
    import importlib

    from bmc.engine.loop import Agent

    def timed(label: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                entry = _TIMINGS.setdefault(label, [0.0, 0])
                entry[0] += time.perf_counter() - started
                entry[1] += 1

        return wrapper

    for label, module_name, owner_name, name in INSTRUMENTED:
        module = importlib.import_module(module_name)
        owner = getattr(module, owner_name) if owner_name else module
        setattr(owner, name, timed(label, getattr(owner, name)))
    query = Agent._query
    queries = [0]

    def counting_query(self: Any, *args: Any, **kwargs: Any) -> Any:
        queries[0] += 1
        if queries[0] == 2:
            _TIMINGS.clear()
        return query(self, *args, **kwargs)

    Agent._query = counting_query  # type: ignore[method-assign]


def child_bare(spec: dict[str, Any]) -> str:
    """The floor: a hand-written streaming loop with the same system prompt, tools and
    tool results, and breakpoints on the system prompt and the last message."""
    import anthropic

    tools = PlainTools(Path(spec["workspace"])).functions()
    client = anthropic.Anthropic(base_url=spec["base_url"], api_key="bench", max_retries=4)
    cache = {"type": "ephemeral"}
    system = [{"type": "text", "text": spec["system"], "cache_control": cache}]
    messages: list[dict[str, Any]] = [{"role": "user", "content": [_text(spec["opening"])]}]
    _mark("before")
    while True:
        last = messages[-1]
        marked = {
            **last,
            "content": [*last["content"][:-1], {**last["content"][-1], "cache_control": cache}],
        }
        with client.messages.stream(
            model=spec["model"],
            max_tokens=spec["max_tokens"],
            system=system,
            tools=spec["tools"],
            messages=[*messages[:-1], marked],
        ) as stream:
            for _event in stream:
                pass
            reply = stream.get_final_message()
        content = [
            _text(b.text)
            if b.type == "text"
            else {"type": "tool_use", "id": b.id, "name": b.name, "input": b.input}
            for b in reply.content
        ]
        messages.append({"role": "assistant", "content": content})
        if reply.stop_reason != "tool_use":
            return str(reply.stop_reason)
        results = [
            {
                "type": "tool_result",
                "tool_use_id": b["id"],
                "content": tools[b["name"]](**b["input"]),
            }
            for b in content
            if b["type"] == "tool_use"
        ]
        messages.append({"role": "user", "content": results})


def child_pydantic_ai(spec: dict[str, Any], cached: bool) -> str:
    """pydantic-ai's Anthropic model with the same prompt and tool schemas; `cached` turns
    on its cache settings (automatic caching plus instructions and tool definitions).

    One default is lifted: `UsageLimits.request_limit` (50) would stop a 100-turn session
    at request 51."""
    from pydantic_ai import Agent, Tool
    from pydantic_ai.models.anthropic import AnthropicModel, AnthropicModelSettings
    from pydantic_ai.providers.anthropic import AnthropicProvider
    from pydantic_ai.usage import UsageLimits

    functions = PlainTools(Path(spec["workspace"])).functions()
    model = AnthropicModel(
        spec["model"], provider=AnthropicProvider(base_url=spec["base_url"], api_key="bench")
    )
    tools = [
        Tool.from_schema(
            functions[d["name"]],
            name=d["name"],
            description=d["description"],
            json_schema=d["input_schema"],
        )
        for d in spec["tools"]
    ]
    agent = Agent(model, system_prompt=spec["system"], tools=tools)
    settings = AnthropicModelSettings(max_tokens=spec["max_tokens"])
    if cached:
        settings.update(
            anthropic_cache=True,
            anthropic_cache_instructions=True,
            anthropic_cache_tool_definitions=True,
        )
    _mark("before")
    result = agent.run_sync(
        spec["opening"], model_settings=settings, usage_limits=UsageLimits(request_limit=None)
    )
    return "end_turn" if result.output else "empty"


def child_tool_runner(spec: dict[str, Any], cached: bool) -> str:
    """The SDK's beta tool runner, unthreaded; `cached` adds automatic cache_control."""
    import anthropic
    from anthropic.lib.tools import BetaFunctionTool

    functions = PlainTools(Path(spec["workspace"])).functions()
    client = anthropic.Anthropic(base_url=spec["base_url"], api_key="bench", max_retries=4)
    tools = [
        BetaFunctionTool(
            functions[d["name"]],
            name=d["name"],
            description=d["description"],
            input_schema=d["input_schema"],
        )
        for d in spec["tools"]
    ]
    extra: dict[str, Any] = {"cache_control": {"type": "ephemeral"}} if cached else {}
    _mark("before")
    runner = client.beta.messages.tool_runner(
        model=spec["model"],
        max_tokens=spec["max_tokens"],
        system=spec["system"],
        tools=tools,
        messages=[{"role": "user", "content": [_text(spec["opening"])]}],
        thread=False,
        **extra,
    )
    stop = None
    for message in runner:
        stop = message.stop_reason
    return str(stop)


CLIENTS: dict[str, Callable[[dict[str, Any]], str]] = {
    "bmc": child_bmc,
    "bare": child_bare,
    "pydantic-ai": lambda spec: child_pydantic_ai(spec, cached=False),
    "pydantic-ai+cache": lambda spec: child_pydantic_ai(spec, cached=True),
    "tool_runner": lambda spec: child_tool_runner(spec, cached=False),
    "tool_runner+cache": lambda spec: child_tool_runner(spec, cached=True),
}
LABELS = {
    "bare": "bare streaming SDK loop (floor)",
    "bmc": "bmc runner (`bmc.runner.start`)",
    "pydantic-ai": "pydantic-ai, defaults (request_limit lifted)",
    "pydantic-ai+cache": "pydantic-ai, cache settings on",
    "tool_runner": "SDK tool_runner, thread=False",
    "tool_runner+cache": "SDK tool_runner, thread=False, automatic cache_control",
}
_MARKS: dict[str, float] = {}


def _mark(name: str) -> None:
    _MARKS[name] = time.perf_counter()
    _MARKS[name + "_rss_kb"] = _memory_kb("VmRSS")


def child_main() -> int:
    spec = json.loads(sys.stdin.read())
    result: dict[str, Any] = {}
    profiler = cProfile.Profile() if spec.get("profile_dump") else None
    try:
        if profiler:
            profiler.enable()
        result["stop"] = CLIENTS[spec["kind"]](spec)
        if profiler:
            profiler.disable()
            profiler.dump_stats(spec["profile_dump"])
    except ImportError as exc:
        result["error"] = f"not installed ({exc.name}): pip install -r bench/requirements.txt"
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    result.update(_MARKS)
    if _TIMINGS:
        result["timings"] = _TIMINGS
    result["ended"] = time.perf_counter()
    result["peak_rss_kb"] = _memory_kb("VmHWM")
    print(json.dumps(result))
    return 0


# ---------------------------------------------------------------------------------------
# Start-up timing.
# ---------------------------------------------------------------------------------------


def _bmc_commands() -> list[tuple[str, list[str]]]:
    """The installed console script; on a pyenv machine also the shim a user's PATH finds."""
    installed = Path(sys.executable).parent / "bmc"
    found = shutil.which("bmc")
    commands = []
    if installed.exists():
        commands.append(("installed script", [str(installed)]))
    if found and Path(found).resolve() != installed.resolve():
        commands.append((f"`bmc` on PATH ({found})", [found]))
    if not commands:
        commands.append(("python -m bmc.cli", [sys.executable, "-m", "bmc.cli"]))
    return commands


def time_command(argv: list[str], runs: int, cwd: Path | None = None) -> list[float]:
    subprocess.run(argv, capture_output=True, cwd=cwd, check=False)  # warm the file cache
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, cwd=cwd, check=False)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.decode()[-400:]}")
    return times


def import_costs(argv: list[str]) -> list[tuple[str, float]]:
    """The costliest imports of a command (python -X importtime, cumulative): bmc's modules
    and third-party packages (their top module), at any depth."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *argv], capture_output=True, text=True, check=False
    )
    costs: dict[str, float] = {}
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)", line)
        if match is None:
            continue
        name = match.group(3)
        if name.startswith("bmc.") or "." not in name:
            costs[name] = max(costs.get(name, 0.0), int(match.group(1)) / 1e6)
    ranked = sorted(costs.items(), key=lambda c: -c[1])
    return [c for c in ranked if c[1] >= 0.015][:12]


def startup(runs: int) -> dict[str, Any]:
    from bmc.cli.demo import DEMO_ORG, DEMO_PROJECT, prepare_workspace

    out: dict[str, Any] = {"rows": []}
    with tempfile.TemporaryDirectory(prefix="bmc-bench-status-") as tmp:
        workspace = prepare_workspace(Path(tmp) / "ws")
        status = [
            "status",
            "--workspace",
            str(workspace),
            "--org",
            DEMO_ORG,
            "--project",
            DEMO_PROJECT,
        ]
        for label, prefix in _bmc_commands():
            for name, args in (("bmc --help", ["--help"]), ("bmc status", status)):
                times = time_command([*prefix, *args], runs)
                out["rows"].append((name, label, statistics.median(times), min(times), max(times)))
        installed = Path(sys.executable).parent / "bmc"
        script = [str(installed)] if installed.exists() else ["-m", "bmc.cli"]
        out["imports"] = import_costs([*script, *status])
        out["python"] = statistics.median(time_command([sys.executable, "-c", "pass"], runs))
    return out


# ---------------------------------------------------------------------------------------
# The report.
# ---------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    low = math.floor(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> str:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    versions = ", ".join(
        f"{name} {_version(name)}"
        for name in ("anthropic", "httpx2", "pydantic", "pydantic-ai-slim", "bmc")
    )
    return (
        f"- CPU: {cpu}, {os.cpu_count()} cores; {platform.system()} {platform.release()}\n"
        f"- Python {platform.python_version()} ({platform.python_implementation()}); "
        f"{versions}\n- load average at start: {load} (the machine is shared: other "
        "test runs may overlap this one)"
    )


def _k(tokens: float) -> str:
    return f"{tokens / 1000:,.1f}k"


def _ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q):.1f}" if values else "-"


class Report:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, text: str = "") -> None:
        self.lines.append(text)
        print(text, flush=True)

    def table(self, headers: list[str], rows: list[list[Any]]) -> None:
        self("| " + " | ".join(headers) + " |")
        self("|" + "|".join("---" for _ in headers) + "|")
        for row in rows:
            self("| " + " | ".join(str(c) for c in row) + " |")
        self()


def _same_content(run: Run, reference: Run) -> str:
    """Whether a loop sent what bmc sent (cache_control and equivalent spellings aside)."""

    def normal(body: dict[str, Any]) -> Any:
        def block(b: dict[str, Any]) -> dict[str, Any]:
            b = {k: v for k, v in _strip(b).items() if not (k == "is_error" and v is False)}
            if b.get("type") == "tool_result":
                b["content"] = _blocks(b.get("content"))
            return b

        return {
            "system": [block(b) for b in _blocks(body.get("system"))],
            "tools": [block(t) for t in body.get("tools") or []],
            "messages": [
                {"role": m["role"], "content": [block(b) for b in _blocks(m["content"])]}
                for m in body.get("messages") or []
            ],
        }

    if len(run.bodies) != len(reference.bodies):
        return f"{len(run.bodies)} requests vs {len(reference.bodies)}"
    for number, (a, b) in enumerate(zip(run.bodies, reference.bodies, strict=True), 1):
        mine, theirs = normal(a), normal(b)
        for part in ("system", "tools", "messages"):
            if mine[part] != theirs[part]:
                return f"differs in {part} from request {number}"
    return "same"


def compare_loops(session: Session, rounds: int) -> dict[str, list[Run]]:
    """Every loop on the same session, `rounds` times, interleaved so that background load
    falls on all of them alike. bmc goes first: the others take its prompt and tools."""
    runs: dict[str, list[Run]] = {kind: [] for kind in CLIENTS}
    spec: dict[str, Any] | None = None
    for _ in range(rounds):
        for kind in CLIENTS:
            if kind != "bmc" and spec is None:
                continue
            if runs[kind] and runs[kind][-1].error and "not installed" in runs[kind][-1].error:
                continue
            run = run_client(kind, session, spec)
            runs[kind].append(run)
            print(f"  {kind}: {run.error or 'ok'}", file=sys.stderr, flush=True)
            if kind == "bmc" and spec is None and not run.error:
                spec = _spec_from(run.bodies[0])
    return runs


def section_cache(say: Report, run: Run) -> None:
    stats = run.cache()
    met = stats.efficiency >= TARGET_EFFICIENCY
    say("## 1. Prompt-cache efficiency, 100-turn session, default settings")
    say()
    say(
        "Each turn writes a note on the resource read the turn before and reads the next one "
        "(resources 2.5-5 KB, notes 0.6-1.2 KB). *Repeated* is the common prefix of each "
        "request with the request before it; *efficiency* is the share of it read from the "
        "cache. Billed-token equivalent: input 1x, cache writes 1.25x, cache reads 0.1x; "
        "caching off bills every input token at 1x (the same requests without breakpoints)."
    )
    say()
    say.table(
        [
            "requests",
            "input tokens (all requests)",
            "repeated",
            "read from cache",
            "written",
            "uncached",
            "efficiency",
            "billed, cached",
            "billed, caching off",
            "cached / off",
        ],
        [
            [
                stats.requests,
                _k(stats.total),
                _k(stats.repeated),
                _k(stats.read),
                _k(stats.written),
                _k(stats.uncached),
                f"**{stats.efficiency:.2%}**",
                _k(stats.billed_cached),
                _k(stats.billed_off),
                f"{stats.billed_cached / stats.billed_off:.3f}",
            ]
        ],
    )
    say(
        f"Target: at least {TARGET_EFFICIENCY:.0%}: **{'met' if met else 'missed'}**. "
        f"Largest request: {_k(stats.largest)} tokens (request {stats.largest_at}); "
        f"clearings: {len(stats.clearings)}."
    )
    say()


def section_overhead(say: Report) -> dict[int, Run]:
    say("## 2. Runner overhead per turn (bmc), from the scripted model's side")
    say()
    say(
        "Per turn: the gap between the end of one answer and the arrival of the next request, "
        "i.e. wall time minus the scripted model's own time. The first request (from "
        "launching the client process: interpreter, imports, session set-up) and the first "
        "gap (one-off warm-up: lazy imports, first tool call) are shown apart; median, p95 "
        "and max are over the other turns. Peak memory is the client "
        "process's VmHWM; *growth* is peak minus the resident size just before the session."
    )
    say()
    rows, done = [], {}
    for turns in (10, 50, 200):
        run = done[turns] = run_client("bmc", reading_session(turns))
        if run.error:
            rows.append([turns, run.error, *[""] * 9])
            continue
        gaps, child = run.gaps_ms, run.child
        rows.append(
            [
                turns,
                _ms(gaps, 0.5),
                _ms(gaps, 0.95),
                f"{max(gaps):.1f}",
                f"{run.all_gaps_ms[0]:.0f}",
                f"{run.spans[0][0] - run.launched:.2f} s",
                f"{run.served_s / len(run.spans) * 1000:.1f}",
                f"{child['peak_rss_kb'] / 1024:.0f} MB",
                f"{(child['peak_rss_kb'] - child.get('before_rss_kb', 0)) / 1024:.1f} MB",
                f"{run.cache().largest / 1000:.0f}k",
                "{:.1f} ({:.1f} calls)".format(*run.timing(FSYNC_LABEL)),
            ]
        )
    say.table(
        [
            "turns",
            "median ms",
            "p95 ms",
            "max ms",
            "1st gap ms",
            "launch to 1st request",
            "scripted model ms/request",
            "peak RSS",
            "growth",
            "largest request (tokens)",
            "of a turn, fsync ms (mean)",
        ],
        rows,
    )
    return done


def section_loops(say: Report, runs: dict[str, list[Run]], rounds: int) -> float:
    """The comparison table; returns how many ms per turn bmc takes beyond the bare loop
    (NaN when either failed)."""
    say("## 3. The same 100-turn session, other loops (ratios to the bare loop, same run)")
    say()
    say(
        f"{rounds} interleaved rounds; per-turn figures pool the steady turns of every round. "
        "All loops get bmc's system prompt, tool definitions and first message (taken from "
        "bmc's first request) and run the same tool calls; *content* says whether a loop's "
        "requests carried the same system, tools and messages as bmc's, cache_control and "
        "equivalent spellings aside. The tool runner's and pydantic-ai's automatic caching "
        "use the API's top-level `cache_control`, which the scripted model does not simulate: "
        "the bench applies the API's rule (a breakpoint on the last block) before the "
        "scripted model's accounting."
    )
    say()
    reference = next((r for r in runs["bmc"] if not r.error), None)
    base = [g for r in runs["bare"] if not r.error for g in r.gaps_ms]
    base_run = next((r for r in runs["bare"] if not r.error), None)
    rows = []
    for kind in ["bare", *[k for k in CLIENTS if k != "bare"]]:
        done = [r for r in runs[kind] if not r.error]
        if not done or not base or base_run is None or reference is None:
            error = runs[kind][0].error if runs[kind] else "not run (bmc or the bare loop failed)"
            rows.append([LABELS[kind], error, *[""] * 7])
            continue
        gaps = [g for r in done for g in r.gaps_ms]
        cs, bs = done[0].cache(), base_run.cache()
        stream = "yes" if done[0].bodies[0].get("stream") else "no"
        rows.append(
            [
                LABELS[kind],
                _ms(gaps, 0.5),
                _ms(gaps, 0.95),
                f"**{percentile(gaps, 0.5) / percentile(base, 0.5):.2f}x**",
                f"{percentile(gaps, 0.95) / percentile(base, 0.95):.2f}x",
                f"{cs.efficiency:.2%}",
                f"{cs.billed_cached / cs.billed_off:.3f}",
                f"{cs.billed_cached / bs.billed_cached:.2f}x",
                f"{stream}; {_same_content(done[0], reference)}",
            ]
        )
    say.table(
        [
            "loop",
            "median ms/turn",
            "p95 ms/turn",
            "median vs bare",
            "p95 vs bare",
            "cache efficiency",
            "billed / caching off",
            "billed vs bare",
            "streams; content vs bmc",
        ],
        rows,
    )
    bmc_gaps = [g for r in runs["bmc"] if not r.error for g in r.gaps_ms]
    if not bmc_gaps or not base:
        return float("nan")
    fsync = FSYNC_LABEL
    rounds_ratio = [
        f"{percentile(m.gaps_ms, 0.5) / percentile(b.gaps_ms, 0.5):.2f}x "
        f"(bmc's fsync calls: {m.timing(fsync)[0]:.1f} ms per turn)"
        for m, b in zip(runs["bmc"], runs["bare"], strict=False)
        if not (m.error or b.error)
    ]
    say(
        "Round by round, bmc's median over the bare loop's: "
        + "; ".join(rounds_ratio)
        + ". Turn times on this shared machine vary from run to run, bmc's most, because "
        "its fsync calls wait on other processes' disk writes."
    )
    say()
    ratio = percentile(bmc_gaps, 0.5) / percentile(base, 0.5)
    say(
        f"Target: bmc's per-turn median at most {TARGET_RATIO}x the bare loop's: "
        f"**{'met' if ratio <= TARGET_RATIO else 'missed'}** ({ratio:.2f}x; "
        f"{percentile(bmc_gaps, 0.5):.1f} ms against {percentile(base, 0.5):.1f} ms)."
    )
    say()
    return percentile(bmc_gaps, 0.5) - percentile(base, 0.5) if ratio > TARGET_RATIO else 0.0


def section_breakdown(say: Report, bmc_runs: list[Run], extra_ms: float, bare_ms: float) -> None:
    """Where bmc's turn goes, from the timers in its runs above."""
    done = [r for r in bmc_runs if not r.error and r.child.get("timings")]
    if not done:
        return
    say(
        "Where bmc's client time goes, from timers around its own work in the runs above "
        "(about a microsecond a call; means over the steady turns of every round). Indented "
        "rows are inside the row above; the rest of a turn is the SDK finishing the stream "
        "and building and sending the next request, and the loop itself, which the bare "
        "loop pays too."
    )
    say()
    per_turn = {
        label: statistics.mean(r.timing(label)[0] for r in done) for label, *_ in INSTRUMENTED
    }
    calls = {label: statistics.mean(r.timing(label)[1] for r in done) for label, *_ in INSTRUMENTED}
    gap = statistics.mean(g for r in done for g in r.gaps_ms)
    top = [label for label, *_ in INSTRUMENTED if not label.startswith((" ", "os."))]
    own = sum(per_turn[label] for label in top)
    rows = [["all client time per turn (mean)", f"{gap:.2f}", ""]]
    rows += [
        [label.replace("  ", "&nbsp;&nbsp;"), f"{per_turn[label]:.2f}", f"{calls[label]:.1f}"]
        for label, *_ in INSTRUMENTED
    ]
    rows.append(["everything else (SDK, loop)", f"{gap - own:.2f}", ""])
    say.table(["where", "ms per turn", "calls per turn"], rows)
    if extra_ms <= 0:
        return
    ranked = sorted(((per_turn[label], label) for label in top), reverse=True)
    fsync_ms, fsync_calls = per_turn[FSYNC_LABEL], calls[FSYNC_LABEL]
    say(
        f"Cause: bmc's median turn takes {extra_ms:.1f} ms more than the bare loop's. bmc's "
        f"own work adds up to {own:.1f} ms per turn on average, led by "
        + ", ".join(f"{label.split(' (')[0]} ({ms:.1f} ms)" for ms, label in ranked[:3])
        + f". Of that, {fsync_ms:.1f} ms is {fsync_calls:.1f} fsync calls "
        f"({fsync_ms / max(fsync_calls, 1e-9):.2f} ms each on this disk during these runs; "
        "other processes' writes make that vary tenfold). Fixes, outside bench/ (so "
        "proposed, not made):"
    )
    say()
    say(
        "- journal (journal.py, session.py, agent.py): one fsync per turn instead of one per "
        "record: write each record at once (a process kill loses nothing once write() "
        "returned; only a power loss needs the fsync) and sync the journal just before the "
        "next request goes out (a `Transcript.sync()` that `Agent.run` calls before `_query`)."
    )
    say(
        "- display (ui.py): `TerminalDisplay.tool` renders rich markup even when the output "
        "is piped or discarded; write plain text when the console is not a terminal."
    )
    say(
        "- tools (tools.py, confine.py): `Toolbox.run` costs more than a plain read or write "
        "because each call checks its path twice (as spelled and canonical) and every write "
        "is atomic with two fsyncs (the file, then its folder). Both are wanted, but "
        "`Confinement._locate` resolves the four mount roots again on every call (resolve "
        "them once per toolbox), and the folder's fsync could join the per-turn sync above."
    )
    each = fsync_ms / max(fsync_calls, 1e-9)
    kept = 3 * each + per_turn[PATH_LABEL]
    say(
        f"- Even with all of these, bmc's turn keeps work the bare loop does not do: the "
        f"journal's fsync and the note's two ({3 * each:.1f} ms at this run's fsync "
        f"latency) and the path checks ({per_turn[PATH_LABEL]:.1f} ms as they are), "
        f"about {kept:.1f} ms against the {0.2 * bare_ms:.1f} ms that 1.2x of a "
        f"{bare_ms:.1f} ms bare turn allows."
    )
    say()


def section_bounds(say: Report, standard_200: Run) -> None:
    say("## 4. Context bounds")
    say()
    from bmc.engine.loop import Limits

    say(
        f"Window: {WINDOW_TOKENS:,} tokens; bmc's budget (`Limits.context_budget_tokens`) "
        f"{Limits().context_budget_tokens:,}, past which old tool results are cleared in one "
        "step (`Agent._keep_inside_window`). A clearing makes the next request's prefix "
        "differ from the cached "
        "one, so that request writes its conversation anew; *one-off* is what it bills beyond "
        "a normal turn of its size (reading all but its new blocks), *saving* what each later "
        "turn saves by reading a shorter prefix."
    )
    say()
    heavy = run_client(
        "bmc", reading_session(200, seed=13, resource_bytes=(6000, 10000), note_bytes=(800, 1600))
    )
    paging = run_client("bmc", paging_session())
    rows, details = [], []
    for label, run in (
        ("pages and greps a 1.5 MB resource (pages up to the 256 KB read cap)", paging),
        ("200 turns reading 6-10 KB resources (≈1.6 MB read)", heavy),
        ("200 turns, standard sizes (section 2)", standard_200),
    ):
        if run.error:
            rows.append([label, run.error, *[""] * 5])
            continue
        cs = run.cache()
        inside = "yes" if cs.largest <= WINDOW_TOKENS else "**NO**"
        rows.append(
            [
                label,
                cs.requests,
                f"{_k(cs.largest)} (request {cs.largest_at})",
                inside,
                len(cs.clearings),
                f"{cs.efficiency:.2%}",
                f"{cs.billed_cached / cs.billed_off:.3f}",
            ]
        )
        for c in cs.clearings:
            payback = c.one_off / c.saving_per_turn if c.saving_per_turn > 0 else float("inf")
            details.append(
                [
                    label.split(" (")[0],
                    c.request,
                    f"{_k(c.before)} → {_k(c.after)}",
                    _k(c.read),
                    _k(c.written),
                    f"{min(c.read, c.repeated) / c.repeated:.1%}" if c.repeated else "-",
                    _k(c.one_off),
                    _k(c.saving_per_turn),
                    f"{payback:.1f}",
                ]
            )
    say.table(
        [
            "session",
            "requests",
            "largest request (tokens)",
            "inside the window",
            "clearings",
            "cache efficiency",
            "billed / caching off",
        ],
        rows,
    )
    if details:
        say("Each clearing:")
        say()
        say.table(
            [
                "session",
                "request",
                "request size before → after",
                "read",
                "written",
                "efficiency on this request",
                "one-off (billed tokens)",
                "saving per later turn",
                "turns to pay back",
            ],
            details,
        )
    if not heavy.error:
        clearing_findings(say, heavy)


def clearing_findings(say: Report, run: Run) -> None:
    """What the clearings of the read-heavy session show, in numbers."""
    cs = run.cache()
    if len(cs.clearings) < 2:
        return
    first, last = cs.clearings[0], cs.clearings[-1]
    spacing = [b.request - a.request for a, b in zip(cs.clearings, cs.clearings[1:], strict=False)]
    own = sum(t for key, t in flatten(run.bodies[-1]) if key.startswith('["assistant"'))
    say(
        f"In the read-heavy session, what is left after a clearing grows from "
        f"{_k(first.after)} to {_k(last.after)} tokens (clearings every "
        f"{', '.join(map(str, spacing))} turns); the one-off goes from {_k(first.one_off)} to "
        f"{_k(last.one_off)} billed tokens, and the last clearing request reads "
        f"{_k(last.read)} of the {_k(last.repeated)} tokens it repeats. `src/bmc/agent.py` "
        "keeps a cache breakpoint where the previous clearing stopped (so a clearing reads "
        "the unchanged prefix instead of writing it anew) and clears the long inputs of the "
        "model's old `write`/`edit` calls along with old tool results (the files hold them). "
        f"What still grows is the model's own prose: {_k(own)} of the last request's "
        f"{_k(flatten_total(run.bodies[-1]))} tokens are assistant blocks."
    )
    say()


def flatten_total(body: Mapping[str, Any]) -> int:
    return sum(t for _, t in flatten(body))


def section_startup(say: Report, runs: int) -> None:
    say("## 5. Start-up (subprocess wall time)")
    say()
    up = startup(runs)
    say(
        f"Median of {runs} runs after one warm-up; `bmc status` on a copy of the demo "
        "workspace (tidewater/growth-2027, brief agreed)."
    )
    say()
    say.table(
        ["command", "how", "median s", "min s", "max s"],
        [[n, how, f"{m:.3f}", f"{lo:.3f}", f"{hi:.3f}"] for n, how, m, lo, hi in up["rows"]],
    )
    status_median = next(m for n, _, m, _, _ in up["rows"] if n == "bmc status")
    say(
        f"Target: `bmc status` under {TARGET_STATUS_S} s (installed script): "
        f"**{'met' if status_median < TARGET_STATUS_S else 'missed'}** ({status_median:.3f} s)."
    )
    say()
    imports = dict(up["imports"])
    say(
        f"For scale: `python -c pass` takes {up['python']:.3f} s. The costliest imports of "
        "`bmc status` (`python -X importtime`, cumulative, bmc's modules and third-party "
        "packages at any depth; one run):"
    )
    say()
    say.table(["module", "s"], [[name, f"{seconds:.3f}"] for name, seconds in up["imports"]])
    if status_median >= TARGET_STATUS_S:
        sdk = "imports" if "anthropic" in imports else "does not import"
        say(
            f"Cause: imports. `bmc status` {sdk} the SDK; importing `bmc.documents.status` alone "
            f"takes {imports.get('bmc.documents.status', float('nan')):.3f} s, most of it "
            "`bmc.documents.validate`, which imports the document schemas "
            "(`bmc.documents.schemas.*`, pydantic models built at "
            "import) and rapidfuzz, even when every document's result is already in the "
            "validation cache (`.bmc/`). Proposed fix (validate.py, status.py): look the "
            "documents up in the cache first and import the schemas and grounding only for a "
            "document whose content hash is not there."
        )
        say()


NOTES_MARK = (
    "<!-- Below this line: notes written by hand, kept when the bench rewrites this file. -->"
)


def write_results(path: Path, lines: list[str]) -> None:
    """The generated report, then whatever hand-written notes the file already had."""
    kept = NOTES_MARK + "\n"
    if path.exists():
        old = path.read_text(encoding="utf-8")
        if NOTES_MARK in old:
            kept = old[old.index(NOTES_MARK) :]
    path.write_text("\n".join(lines) + "\n" + kept, encoding="utf-8")


def _phase(began: float, name: str) -> None:
    print(f"[{time.perf_counter() - began:5.0f} s] {name}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="interleaved rounds of the loop comparison (default 3)",
    )
    parser.add_argument(
        "--startup-runs",
        type=int,
        default=7,
        help="timed runs of each start-up command (default 7)",
    )
    parser.add_argument(
        "--profile-dump",
        metavar="FILE",
        help="also run bmc's 100-turn session under cProfile and keep the raw "
        "stats here (read them with python -m pstats FILE)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=HERE / "results.md",
        help="where to write the report (default bench/results.md)",
    )
    args = parser.parse_args(argv)
    if args.child:
        return child_main()

    began = time.perf_counter()
    say = Report()
    say("# Session benchmark: prompt cache, runner overhead, context bounds, start-up")
    say()
    say(
        f"Generated by `python bench/bench_session.py` on {dt.date.today().isoformat()}: the "
        "scripted model (`bmc.scripted`) on loopback, each client in its own process."
    )
    say()
    say(machine())
    say()
    hundred = reading_session(100)
    _phase(began, f"the 100-turn session, every loop, {args.rounds} rounds")
    runs = compare_loops(hundred, args.rounds)
    bmc100 = next((r for r in runs["bmc"] if not r.error), None)
    if bmc100 is None:
        say(f"bmc's 100-turn session failed: {runs['bmc'][0].error}")
        write_results(args.out, say.lines)
        return 1
    section_cache(say, bmc100)
    _phase(began, "runner overhead: 10, 50, 200 turns")
    by_length = section_overhead(say)
    extra_ms = section_loops(say, runs, args.rounds)
    bare = [g for r in runs["bare"] if not r.error for g in r.gaps_ms]
    section_breakdown(say, runs["bmc"], extra_ms, percentile(bare, 0.5))
    if args.profile_dump:
        _phase(began, "one more bmc run under cProfile")
        dumped = run_client("bmc", hundred, profile_dump=args.profile_dump)
        print(f"cProfile stats in {args.profile_dump}: {dumped.error or 'ok'}", file=sys.stderr)
    _phase(began, "context bounds")
    section_bounds(say, by_length[200])
    _phase(began, "start-up")
    section_startup(say, args.startup_runs)
    say(
        f"Bench wall time: {time.perf_counter() - began:.0f} s; load average at the end: "
        + ", ".join(f"{x:.2f}" for x in os.getloadavg())
        + "."
    )
    say()
    write_results(args.out, say.lines)
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


def _spec_from(first: dict[str, Any]) -> dict[str, Any]:
    """What the other loops send: bmc's own system prompt, tools and opening message."""
    system = _blocks(first["system"])[0]["text"]
    tools = [_strip(t) for t in first["tools"]]
    opening = _blocks(first["messages"][0]["content"])[0]["text"]
    return {
        "system": system,
        "tools": tools,
        "opening": opening,
        "model": first["model"],
        "max_tokens": first["max_tokens"],
    }


if __name__ == "__main__":
    sys.exit(main())
