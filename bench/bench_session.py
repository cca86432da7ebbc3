"""How well a bmc session uses the prompt cache, what bmc costs per turn, and how it compares
with other ways of driving the same conversation. Writes bench/results.md.

Everything runs against the scripted model (`bmc.scripted.ScriptedModel`) on loopback, in
this process; each client (bmc, or another loop) runs in a child process, so its timings and
its memory are its own. Scenarios are generated here: the read session is N requests of one
`read` each; in the write session, turn k writes a note about the resource read at turn k-1
and reads resource k (realistic markdown of a few KB); the last turn ends with text.

Measured:

- prompt-cache efficiency: of the tokens each request repeats from the request before it
  (their common prefix, counted block by block as the scripted model counts), the share read
  from the cache; and the billed-token equivalent (input 1x, cache writes 1.25x, cache reads
  0.1x) against the same requests with caching off (every input token at 1x);
- per-turn time, the target: on the 100-turn read session, bmc (as `bmc run` drives it) against
  a bare streaming SDK loop with bmc's own system prompt, tools and tool results, in
  alternating rounds; per turn is the gap at the scripted model between the end of one answer
  and the arrival of the next request (the client's time alone);
- the write session driven by bmc, the bare loop, pydantic-ai's Anthropic model (defaults;
  cache settings on) and the SDK's beta tool runner (`thread=False`, without and with
  automatic `cache_control`), as ratios to the bare loop, with the share of bmc's ratio that
  is its document writes' own fsyncs;
- bmc alone on write sessions of 10, 50 and 200 turns: per-turn time, peak memory (VmHWM);
- context bounds: the largest request of a session that pages and greps a 1.5 MB resource,
  and of a 200-turn session that reads a lot, with what each clearing of old tool results
  costs the cache;
- start-up: `bmc --help` and `bmc status` wall time (subprocess, median of several runs);
- with --profile-dump: bmc and the bare loop on the read session under cProfile, compared
  area by area.

Run:   python bench/bench_session.py            (5-8 minutes; writes bench/results.md)
       python bench/bench_session.py --profile-dump FILE  (adds the profile section)
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


def research_sources(
    rng: random.Random, count: int, sizes: tuple[int, int]
) -> tuple[dict[str, str], dict[int, str]]:
    """`count` research files (`resources/source-NNN.md`) and their titles, by number."""
    files: dict[str, str] = {}
    titles: dict[int, str] = {}
    for k in range(1, count + 1):
        titles[k] = f"Source {k:03d}: {rng.choice(SOURCES)} on {rng.choice(SEGMENTS)}"
        files[f"resources/source-{k:03d}.md"] = research_doc(rng, titles[k], rng.randint(*sizes))
    return files, titles


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
    files, titles = research_sources(rng, n_turns - 1, resource_bytes)
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


def read_only_session(
    n_turns: int, *, seed: int = 7, resource_bytes: tuple[int, int] = (2500, 5000)
) -> Session:
    """N requests of single `read` calls and nothing else: turn k reads resource k, the last
    turn ends with text. No document is written, so no fsync but the journal's is bmc's
    own: this is the session the per-turn target is measured on. Each step checks the read
    it answers."""
    rng = random.Random(seed)
    files, titles = research_sources(rng, n_turns - 1, resource_bytes)
    steps: list[dict[str, Any]] = []
    for k in range(1, n_turns + 1):
        if k == n_turns:
            content = [_text("Every source is read.")]
        else:
            content = [
                _text(f"Reading source {k:03d}."),
                _call(f"toolu_read_{k:03d}", "read", file_path=f"resources/source-{k:03d}.md"),
            ]
        step: dict[str, Any] = {"reply": {"content": content}}
        if k > 1:
            read = {"is_error": False, "contains": titles[k - 1]}
            step["expect"] = {"tool_results": {f"toolu_read_{k - 1:03d}": read}}
        steps.append(step)
    return Session(f"reads-{n_turns}", files, steps)


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
    order: int = 0  # its place in its round of `compare_loops`
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
    """The real engine, as `bmc run` drives it: session journal, lock, toolbox, validator,
    display (to /dev/null, as when piped)."""
    import anthropic
    from rich.console import Console

    from bmc.terminal.chat import TerminalDisplay
    from bmc.workspace.paths import locate

    project = locate(Path(spec["workspace"]), ORG, PROJECT)
    client = anthropic.Anthropic(
        base_url=spec["base_url"],
        api_key="bench",
        max_retries=4,
        timeout=anthropic.Timeout(120.0, connect=10.0),
    )
    _instrument(timers=_PROFILER is None)
    with open(os.devnull, "w", encoding="utf-8") as sink:
        display = TerminalDisplay(Console(file=sink, highlight=False))
        _mark("before")
        return run_bmc_session(project, client, display)


def run_bmc_session(project: Any, client: Any, display: Any) -> str:
    """bmc's whole session, as `bmc run` drives it piped: the engine on its worker thread
    (which takes the project's lock), its events shown by the terminal surface. The one
    place the bench calls bmc's run API: adapt it here when that API changes. Returns the
    session's last status."""
    from bmc.engine.api import RunOptions
    from bmc.engine.loop import Limits
    from bmc.terminal import chat

    # One default is lifted, as pydantic-ai's request_limit is: bmc stops a model that works
    # 60 turns without handing back to the consultant, and these sessions run 100 or 200.
    options = RunOptions(client=client, limits=Limits(turns_per_message=10_000))
    session = chat.start(project, SKILL, options, display, _Quiet())
    return session.status if session else "no session"


def child_bmc_inline(spec: dict[str, Any]) -> str:
    """A diagnostic, not a way to run bmc: the same engine, its conversation run on the
    calling thread instead of a worker, and its events left unread (nothing is shown). Set
    against `child_bmc`, it prices the worker thread and the event hand-off to the surface.
    Uses the engine's private `begin`/`_work`/`_inbox`; where they change, its row says so."""
    import anthropic

    from bmc.engine import api
    from bmc.engine.loop import Limits
    from bmc.workspace.paths import locate

    def inline(self: Any, setup: Any) -> None:
        self._inbox.put(("stop", None))  # end of input, as `_Quiet` gives
        self._work(setup)

    api.Conversation.begin = inline  # type: ignore[method-assign]
    project = locate(Path(spec["workspace"]), ORG, PROJECT)
    client = anthropic.Anthropic(base_url=spec["base_url"], api_key="bench", max_retries=4)
    _instrument(timers=_PROFILER is None)
    _mark("before")
    options = api.RunOptions(client=client, limits=Limits(turns_per_message=10_000))
    conversation = api.start(project, SKILL, options)
    conversation.wait()
    return conversation.session.status if conversation.session else "no session"


# Timed in every bmc run: (label, module, class or None, function). Nested rows (indented)
# are also inside the row above them. A function a bmc version does not have is skipped.
JOURNAL, TOOLS, CONFINE = "bmc.engine.journal", "bmc.workspace.tools", "bmc.workspace.confine"
CHAT, LOOP, RULES = "bmc.terminal.chat", "bmc.engine.loop", "bmc.engine.conversation"
INSTRUMENTED = [
    ("journal: Journal.append (one write per record)", JOURNAL, "Journal", "append"),
    ("journal: Journal.commit (group commit)", JOURNAL, "Journal", "commit"),
    ("tools: Toolbox.run", TOOLS, "Toolbox", "run"),
    ("  path checks: Confinement.resolve", CONFINE, "Confinement", "resolve"),
    ("  atomic_write (file fsync, rename, folder fsync)", TOOLS, None, "atomic_write"),
    ("display: TerminalDisplay.tool", CHAT, "TerminalDisplay", "tool"),
    ("display: TerminalDisplay.text", CHAT, "TerminalDisplay", "text"),
    ("context size estimate (SizeMemo.estimate)", RULES, "SizeMemo", "estimate"),
    ("tool_definitions (built once per agent since 2026-12-06)", LOOP, "Agent", "tool_definitions"),
    # The loop imports it by name: timed where the loop looks it up.
    ("with_cache_breakpoints", LOOP, None, "with_cache_breakpoints"),
    ("os.fsync, all callers", "os", None, "fsync"),
]
FSYNC_LABEL = INSTRUMENTED[-1][0]
PATH_LABEL = INSTRUMENTED[3][0]
ATOMIC_LABEL = INSTRUMENTED[4][0]
COMMIT_LABEL = INSTRUMENTED[1][0]
# os.fsync calls split by the instrumented caller they ran inside.
FSYNC_IN_WRITE = "  fsync in a document write (atomic_write)"
FSYNC_IN_JOURNAL = "  fsync in the journal's commit"
FSYNC_BY_CALLER = {ATOMIC_LABEL: FSYNC_IN_WRITE, COMMIT_LABEL: FSYNC_IN_JOURNAL}
_TIMINGS: dict[str, list[float]] = {}
_ACTIVE: list[str] = []  # the instrumented calls under way, innermost last
_TIMED: list[str] = []  # the INSTRUMENTED labels this bmc has (the others are skipped)


def _instrument(timers: bool) -> None:
    """Wrap the INSTRUMENTED functions with timers (about a microsecond a call, unlike a
    profiler). Counting starts with the second request, so the first turn's one-off
    warm-up stays out, as it does in the per-turn figures; so does the profiler, when the
    run is profiled (and then the timers stay out of its way)."""
    import importlib

    from bmc.engine.loop import Agent

    def add(label: str, seconds: float) -> None:
        entry = _TIMINGS.setdefault(label, [0.0, 0])
        entry[0] += seconds
        entry[1] += 1

    def timed(label: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            _ACTIVE.append(label)
            try:
                return function(*args, **kwargs)
            finally:
                _ACTIVE.pop()
                seconds = time.perf_counter() - started
                add(label, seconds)
                if label == FSYNC_LABEL:
                    caller = next((FSYNC_BY_CALLER[a] for a in _ACTIVE if a in FSYNC_BY_CALLER), "")
                    if caller:
                        add(caller, seconds)

        return wrapper

    for label, module_name, owner_name, name in INSTRUMENTED if timers else []:
        module = importlib.import_module(module_name)
        owner = getattr(module, owner_name, None) if owner_name else module
        if owner is None or not hasattr(owner, name):
            continue
        setattr(owner, name, timed(label, getattr(owner, name)))
        _TIMED.append(label)
    query = Agent._query
    queries = [0]

    def counting_query(self: Any, *args: Any, **kwargs: Any) -> Any:
        queries[0] += 1
        if queries[0] == 2:
            _TIMINGS.clear()
            if _PROFILER is not None:
                _PROFILER.enable()  # on the thread that runs the loop (the engine's worker)
        return query(self, *args, **kwargs)

    Agent._query = counting_query  # type: ignore[method-assign]
    if _PROFILER is not None:
        _profile_the_surface_too()


def _profile_the_surface_too() -> None:
    """The terminal surface shows the engine's events on the main thread; a profiler covers
    one thread, so a second one starts there with the second reply."""
    from bmc.terminal.chat import TerminalDisplay

    started = TerminalDisplay.reply_started
    replies = [0]

    def counting(self: Any) -> None:
        replies[0] += 1
        if replies[0] == 2 and _SURFACE_PROFILER is not None:
            _SURFACE_PROFILER.enable()
        started(self)

    TerminalDisplay.reply_started = counting  # type: ignore[method-assign]


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
        if len(messages) == 3 and _PROFILER is not None:
            _PROFILER.enable()  # from the second request on, as bmc's run is profiled
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
    "bmc-inline": child_bmc_inline,
    "bare": child_bare,
    "pydantic-ai": lambda spec: child_pydantic_ai(spec, cached=False),
    "pydantic-ai+cache": lambda spec: child_pydantic_ai(spec, cached=True),
    "tool_runner": lambda spec: child_tool_runner(spec, cached=False),
    "tool_runner+cache": lambda spec: child_tool_runner(spec, cached=True),
}
LABELS = {
    "bare": "bare streaming SDK loop (floor)",
    "bmc": "bmc (`chat.start`: the engine, as `bmc run` drives it)",
    "bmc-inline": "diagnostic: bmc's engine on one thread, events unread",
    "pydantic-ai": "pydantic-ai, defaults (request_limit lifted)",
    "pydantic-ai+cache": "pydantic-ai, cache settings on",
    "tool_runner": "SDK tool_runner, thread=False",
    "tool_runner+cache": "SDK tool_runner, thread=False, automatic cache_control",
}
_MARKS: dict[str, float] = {}


def _dump_profiles(path: str) -> None:
    import pstats

    profiles = [p for p in (_PROFILER, _SURFACE_PROFILER) if p is not None and p.getstats()]
    if profiles:
        pstats.Stats(*profiles).dump_stats(path)  # type: ignore[arg-type]


def _mark(name: str) -> None:
    _MARKS[name] = time.perf_counter()
    _MARKS[name + "_rss_kb"] = _memory_kb("VmRSS")


# A run under cProfile (--profile-dump): the loop's thread, and bmc's main thread apart.
_PROFILER: cProfile.Profile | None = None
_SURFACE_PROFILER: cProfile.Profile | None = None


def child_main() -> int:
    global _PROFILER, _SURFACE_PROFILER
    spec = json.loads(sys.stdin.read())
    result: dict[str, Any] = {}
    if spec.get("profile_dump"):
        _PROFILER = cProfile.Profile()  # enabled at the second request (`_instrument`)
        _SURFACE_PROFILER = cProfile.Profile()
    try:
        result["stop"] = CLIENTS[spec["kind"]](spec)
        if _PROFILER is not None and _SURFACE_PROFILER is not None:
            _PROFILER.disable()
            _SURFACE_PROFILER.disable()
            _dump_profiles(spec["profile_dump"])
    except ImportError as exc:
        result["error"] = f"not installed ({exc.name}): pip install -r bench/requirements.txt"
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    result.update(_MARKS)
    if _TIMINGS:
        result["timings"] = _TIMINGS
        result["timed"] = _TIMED
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


def compare_loops(session: Session, rounds: int, kinds: tuple[str, ...]) -> dict[str, list[Run]]:
    """The loops `kinds` on the same session, `rounds` times, interleaved so that background
    load falls on all of them alike, and in reverse order every other round so that none
    always runs right after another. bmc goes first once: the others take its prompt and
    tools."""
    runs: dict[str, list[Run]] = {kind: [] for kind in kinds}
    spec: dict[str, Any] | None = None
    for number in range(rounds):
        order = list(kinds) if number % 2 == 0 or spec is None else list(reversed(kinds))
        for kind in order:
            if kind != "bmc" and spec is None:
                continue
            if runs[kind] and runs[kind][-1].error and "not installed" in runs[kind][-1].error:
                continue
            run = run_client(kind, session, spec)
            run.order = order.index(kind)
            runs[kind].append(run)
            print(f"  {kind}: {run.error or 'ok'}", file=sys.stderr, flush=True)
            if kind == "bmc" and spec is None and not run.error:
                spec = _spec_from(run.bodies[0])
    return runs


def section_cache(say: Report, sessions: list[tuple[str, Run]]) -> None:
    say("## 1. Prompt-cache efficiency, 100-turn sessions, default settings")
    say()
    say(
        "The write session: each turn writes a note on the resource read the turn before and "
        "reads the next one (resources 2.5-5 KB, notes 0.6-1.2 KB). The read session: one "
        "`read` per turn. *Repeated* is the common prefix of each request with the request "
        "before it; *efficiency* is the share of it read from the cache. Billed-token "
        "equivalent: input 1x, cache writes 1.25x, cache reads 0.1x; caching off bills every "
        "input token at 1x (the same requests without breakpoints)."
    )
    say()
    rows = []
    for label, run in sessions:
        stats = run.cache()
        rows.append(
            [
                label,
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
        )
    say.table(
        [
            "session",
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
        rows,
    )
    worst = min(run.cache().efficiency for _, run in sessions)
    met = worst >= TARGET_EFFICIENCY
    say(
        f"Target: at least {TARGET_EFFICIENCY:.0%} on each: **{'met' if met else 'missed'}**. "
        + "; ".join(
            f"{label}: largest request {_k(run.cache().largest)} tokens (request "
            f"{run.cache().largest_at}), {len(run.cache().clearings)} clearings"
            for label, run in sessions
        )
        + "."
    )
    say()


def _pooled(runs: list[Run]) -> list[float]:
    return [g for r in runs if not r.error for g in r.gaps_ms]


def _round_ratios(bmc: list[Run], bare: list[Run]) -> list[float]:
    """bmc's median over the bare loop's, for each round both finished."""
    return [
        percentile(m.gaps_ms, 0.5) / percentile(b.gaps_ms, 0.5)
        for m, b in zip(bmc, bare, strict=False)
        if not (m.error or b.error)
    ]


READ_LOOPS = ("bmc", "bare", "bmc-inline")
WRITE_LOOPS = tuple(kind for kind in CLIENTS if kind != "bmc-inline")


def _median_ms(run: Run) -> str:
    return run.error or _ms(run.gaps_ms, 0.5)


def section_read(say: Report, runs: dict[str, list[Run]], rounds: int) -> None:
    """The target: bmc's turn against the bare loop's on a session of single reads."""
    say("## 2. Per-turn time: 100 single reads, bmc against a bare streaming SDK loop")
    say()
    say(
        "The read session: 100 requests, each answering one `read` of a 2.5-5 KB resource, no "
        "document written. Per turn is the median gap at the scripted model between the end "
        "of one answer and the arrival of the next request (the client's time alone); the "
        "first gap (one-off warm-up) is left out. The bare loop is a hand-written streaming "
        "SDK loop sending bmc's own system prompt, tool definitions and first message (taken "
        "from bmc's first request) with the same tool results (*content* checks it). "
        f"{rounds} rounds, the loops one after another, the order reversed every other round. "
        "The third column is a diagnostic, not a way bmc runs: the same engine with its "
        "conversation on the calling thread and its events left unread, which prices the "
        "worker thread and the hand-off of every event to the terminal."
    )
    say()
    bmc, bare, inline = runs["bmc"], runs["bare"], runs.get("bmc-inline", [])
    ratios = _round_ratios(bmc, bare)
    headers = ["round", "bmc ms", "bare ms", "engine on one thread ms", "bmc / bare"]
    rows = []
    for number, (m, b) in enumerate(zip(bmc, bare, strict=False), 1):
        one = inline[number - 1] if number <= len(inline) else None
        ratio = (
            ""
            if m.error or b.error
            else f"{percentile(m.gaps_ms, 0.5) / percentile(b.gaps_ms, 0.5):.2f}x"
        )
        first = "bmc" if m.order < b.order else "bare"
        rows.append(
            [
                f"{number} ({first} first)",
                _median_ms(m),
                _median_ms(b),
                _median_ms(one) if one else "-",
                ratio,
            ]
        )
    mine, base, single = _pooled(bmc), _pooled(bare), _pooled(inline)
    if not (mine and base and ratios):
        say.table(headers, rows)
        say("bmc or the bare loop failed in every round: no ratio.")
        say()
        return
    pooled = percentile(mine, 0.5) / percentile(base, 0.5)
    rows.append(
        [
            "all rounds pooled",
            _ms(mine, 0.5),
            _ms(base, 0.5),
            _ms(single, 0.5) if single else "-",
            f"**{pooled:.2f}x**",
        ]
    )
    say.table(headers, rows)
    reference = next(r for r in bmc if not r.error)
    content = _same_content(next(r for r in bare if not r.error), reference)
    say(
        f"Round by round the ratio's median is **{statistics.median(ratios):.2f}x**, from "
        f"{min(ratios):.2f}x to {max(ratios):.2f}x over {len(ratios)} rounds; p95 of the pooled "
        f"turns: bmc {_ms(mine, 0.95)} ms, bare {_ms(base, 0.95)} ms. Content of the bare "
        f"loop's requests against bmc's: {content}. Cache efficiency: bmc "
        f"{reference.cache().efficiency:.2%}, bare loop "
        f"{next(r for r in bare if not r.error).cache().efficiency:.2%}."
    )
    say()
    verdict = "met" if statistics.median(ratios) <= TARGET_RATIO else "missed"
    say(
        f"Target: bmc's per-turn median at most {TARGET_RATIO}x the bare loop's: **{verdict}** "
        f"(median of the round ratios {statistics.median(ratios):.2f}x; pooled "
        f"{pooled:.2f}x, {percentile(mine, 0.5):.2f} ms against {percentile(base, 0.5):.2f} ms)."
    )
    say()
    per_turn = section_timers(say, bmc)
    extra = percentile(mine, 0.5) - percentile(base, 0.5)
    own = sum(per_turn[label] for label in _top_labels())
    fsync, paths = per_turn[FSYNC_IN_JOURNAL], per_turn[PATH_LABEL]
    threads = ""
    if single:
        hop = percentile(mine, 0.5) - percentile(single, 0.5)
        threads = (
            f" The engine on one thread takes {percentile(single, 0.5):.2f} ms a turn, so the "
            + (
                f"worker thread and the events it hands to the terminal come to about "
                f"{hop:.2f} ms of bmc's turn."
                if hop >= 0.1
                else "worker thread and the events it hands to the terminal cost nothing this "
                f"bench can tell apart from the noise ({hop:+.2f} ms)."
            )
        )
    say(
        f"bmc's median turn is {extra:.2f} ms longer than the bare loop's, and its own timed "
        f"work comes to {own:.2f} ms per turn on average. Of that, the journal's one fsync per "
        f"request is {fsync:.2f} ms, and the path checks of the `read` {paths:.2f} ms; the "
        f"{TARGET_RATIO}x target leaves {(TARGET_RATIO - 1) * percentile(base, 0.5):.2f} ms "
        f"per turn for all of bmc's work.{threads} Section 7 (when the bench runs with "
        "`--profile-dump`) shows the rest, function by function against the bare loop."
    )
    say()


def _top_labels() -> list[str]:
    return [label for label, *_ in INSTRUMENTED if not label.startswith((" ", "os."))]


def section_timers(say: Report, bmc_runs: list[Run]) -> dict[str, float]:
    """Where bmc's client time goes, from the timers in its runs; returns ms per turn by
    label (means over the steady turns of every round)."""
    done = [r for r in bmc_runs if not r.error and r.child.get("timings")]
    labels = [label for label, *_ in INSTRUMENTED] + [FSYNC_IN_WRITE, FSYNC_IN_JOURNAL]
    if not done:
        return dict.fromkeys(labels, 0.0)
    per_turn = {label: statistics.mean(r.timing(label)[0] for r in done) for label in labels}
    calls = {label: statistics.mean(r.timing(label)[1] for r in done) for label in labels}
    gap = statistics.mean(g for r in done for g in r.gaps_ms)
    own = sum(per_turn[label] for label in _top_labels())
    say(
        "Where bmc's client time goes, from timers around its own work in these runs (about a "
        "microsecond a call; means over the steady turns of every round). Indented rows are "
        "inside the row above; *everything else* is the SDK reading the stream and building "
        "and sending the next request, and the loop itself, which the bare loop pays too."
    )
    say()
    timed = set(done[0].child.get("timed") or []) | {FSYNC_IN_WRITE, FSYNC_IN_JOURNAL}
    rows = [["all client time per turn (mean)", f"{gap:.2f}", ""]]
    for label in labels:
        shown = label.replace("  ", "&nbsp;&nbsp;")
        if label in timed:
            rows.append([shown, f"{per_turn[label]:.3f}", f"{calls[label]:.1f}"])
        else:
            rows.append([shown, "not in this bmc", ""])
    rows.append(["everything else (SDK, loop)", f"{gap - own:.2f}", ""])
    say.table(["where", "ms per turn", "calls per turn"], rows)
    return per_turn


def section_overhead(say: Report) -> dict[int, Run]:
    say("## 4. Runner overhead by session length (bmc alone, write sessions)")
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


def section_loops(say: Report, runs: dict[str, list[Run]], rounds: int) -> None:
    """The write session under every loop, as ratios to the bare loop, and how much of bmc's
    ratio is the document write's own fsyncs."""
    say("## 3. The write session (a note written every turn), other loops")
    say()
    say(
        f"{rounds} interleaved rounds (the order reversed every other round); per-turn figures "
        "pool the steady turns of every round. All loops get bmc's system prompt, tool "
        "definitions and first message (taken from bmc's first request) and run the same tool "
        "calls; *content* says whether a loop's requests carried the same system, tools and "
        "messages as bmc's, cache_control and equivalent spellings aside. The tool runner's "
        "and pydantic-ai's automatic caching use the API's top-level `cache_control`, which "
        "the scripted model does not simulate: the bench applies the API's rule (a breakpoint "
        "on the last block) before the scripted model's accounting. The other loops write the "
        "note with a plain `write_bytes` (no fsync); bmc's write is atomic and durable."
    )
    say()
    reference = next((r for r in runs["bmc"] if not r.error), None)
    base = _pooled(runs["bare"])
    base_run = next((r for r in runs["bare"] if not r.error), None)
    rows = []
    for kind in ["bare", *[k for k in runs if k != "bare"]]:
        done = [r for r in runs[kind] if not r.error]
        if not done or not base or base_run is None or reference is None:
            error = runs[kind][0].error if runs[kind] else "not run (bmc or the bare loop failed)"
            rows.append([LABELS[kind], error, *[""] * 7])
            continue
        gaps = _pooled(done)
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
    mine = _pooled(runs["bmc"])
    ratios = _round_ratios(runs["bmc"], runs["bare"])
    if not (mine and base and ratios):
        return
    per_turn = section_timers(say, runs["bmc"])
    bmc_ms, bare_ms = percentile(mine, 0.5), percentile(base, 0.5)
    ratio = bmc_ms / bare_ms
    write_fsync = per_turn[FSYNC_IN_WRITE]
    without = (bmc_ms - write_fsync) / bare_ms
    say(
        f"bmc against the bare loop on this session: **{ratio:.2f}x** pooled ({bmc_ms:.2f} ms "
        f"against {bare_ms:.2f} ms); round by round {statistics.median(ratios):.2f}x median, "
        f"{min(ratios):.2f}x to {max(ratios):.2f}x. The note's atomic write fsyncs twice (the "
        f"file, then its folder): {write_fsync:.2f} ms per turn on average "
        f"({per_turn[FSYNC_IN_WRITE] / max(per_turn[ATOMIC_LABEL], 1e-9):.0%} of the write). "
        f"Those fsyncs stay (a document is on disk when the tool says it is written); "
        f"without them bmc's turn would be about {without:.2f}x the bare loop's, so about "
        f"{ratio - without:.2f} of the {ratio:.2f}x is the document write's own fsyncs. The "
        f"journal's commit adds {per_turn[FSYNC_IN_JOURNAL]:.2f} ms of fsync per turn."
    )
    say()


def section_bounds(say: Report, standard_200: Run) -> None:
    say("## 5. Context bounds")
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
        ("200 turns, standard sizes (section 4)", standard_200),
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
        f"{_k(last.read)} of the {_k(last.repeated)} tokens it repeats. "
        "`src/bmc/engine/conversation.py` keeps a cache breakpoint where the previous "
        "clearing stopped (so a clearing reads the unchanged prefix instead of writing it "
        "anew) and clears the long inputs of the model's old `write`/`edit` calls along with "
        "old tool results (the files hold them). "
        f"What still grows is the model's own prose: {_k(own)} of the last request's "
        f"{_k(flatten_total(run.bodies[-1]))} tokens are assistant blocks."
    )
    say()


def flatten_total(body: Mapping[str, Any]) -> int:
    return sum(t for _, t in flatten(body))


def section_startup(say: Report, runs: int) -> None:
    say("## 6. Start-up (subprocess wall time)")
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
            f"Cause: imports. `bmc status` {sdk} the SDK; importing `bmc.documents.status` "
            f"alone takes {imports.get('bmc.documents.status', float('nan')):.3f} s, most of "
            "it `bmc.documents.validate`, which imports the document schemas "
            "(`bmc.documents.schemas.*`, pydantic models built at import) and rapidfuzz, even "
            "when every document's result is already in the validation cache (`.bmc/`). "
            "Proposed fix (documents/validate.py, documents/status.py): look the "
            "documents up in the cache first and import the schemas and grounding only for a "
            "document whose content hash is not there."
        )
        say()


# ---------------------------------------------------------------------------------------
# The profile: where each loop's turn goes, function by function (--profile-dump).
# ---------------------------------------------------------------------------------------

# Time spent waiting, not computing: kept apart rather than charged to whoever waited.
WAITS = {
    "<method 'acquire' of '_thread.lock' objects>": "waiting (threads: the event queue)",
    "<method 'recv' of '_socket.socket' objects>": "waiting for the answer (socket reads)",
    "<method 'recv_into' of '_socket.socket' objects>": "waiting for the answer (socket reads)",
    "<built-in method posix.fsync>": "fsync (waiting for the disk)",
    "<method 'sendall' of '_socket.socket' objects>": "sending the request (socket writes)",
    "<method 'send' of '_socket.socket' objects>": "sending the request (socket writes)",
}
SITE = re.compile(r"site-packages/([A-Za-z0-9_]+)")


def _area(func: tuple[str, int, str]) -> str | None:
    """Who owns a profiled function: a bmc module, a third-party package, the bench, or a
    wait; None for the standard library and builtins, which are charged to their callers."""
    filename, _line, name = func
    if name in WAITS and filename == "~":
        return WAITS[name]
    if filename.endswith("bench_session.py"):
        return "the bench (its loop, timers)"
    match = re.search(r"/bmc/((?:[a-z_]+/)*[a-z_]+)\.py$", filename)
    if match and "site-packages" not in filename:
        return "bmc." + match.group(1).replace("/", ".")
    site = SITE.search(filename)
    return site.group(1) if site else None


# bmc's loop module: its calls into the SDK are the ones the bare loop makes too.
LOOP_MODULE = LOOP


def profile_areas(path: str) -> dict[str, float]:
    """Seconds of own time (tottime) by area. Standard-library and builtin time goes to the
    nearest owning callers, split as their calls' cumulative times are; a library's time
    goes to the library, except what a bmc module other than the loop asked of it (the
    SDK's `resolve_path` from bmc.confine, say), which is shown as that module's."""
    import pstats

    stats = pstats.Stats(path).stats  # type: ignore[attr-defined]
    shares: dict[Any, dict[str, float]] = {}

    def callers_of(func: Any) -> dict[Any, Any]:
        return stats.get(func, (0, 0, 0.0, 0.0, {}))[4]

    def merged(parts: list[tuple[dict[str, float], float]]) -> dict[str, float]:
        total = sum(weight for _, weight in parts)
        result: dict[str, float] = {}
        for share, weight in parts:
            for name, part in share.items():
                result[name] = result.get(name, 0.0) + part * weight / total
        return result

    def share_of(func: Any, seen: frozenset[Any]) -> dict[str, float]:
        if func in shares:
            return shares[func]
        area = _area(func)
        callers = {c: e for c, e in callers_of(func).items() if e[3] > 0 and c not in seen}
        if area is not None and (area.startswith("bmc.") or area in WAITS.values()):
            result = {area: 1.0}
        elif not callers:
            result = {area or "standard library, owner not traced (recursion, generators)": 1.0}
        elif area is None:  # the standard library: its callers' time
            result = merged([(share_of(c, seen | {func}), e[3]) for c, e in callers.items()])
        else:  # a library: its own, or the bmc module that asked for it
            parts = []
            for caller, edge in callers.items():
                asked = _area(caller)
                if asked is not None and asked.startswith("bmc.") and asked != LOOP_MODULE:
                    parts.append(({f"{area}, for {asked}": 1.0}, edge[3]))
                elif asked is None or asked == area:
                    inherited = share_of(caller, seen | {func})
                    mine = {n if ", for bmc." in n else area: v for n, v in inherited.items()}
                    parts.append((mine, edge[3]))
                else:
                    parts.append(({area: 1.0}, edge[3]))
            result = merged(parts)
        shares[func] = result
        return result

    areas: dict[str, float] = {}
    for func, (_cc, _nc, own, _cum, _callers) in stats.items():
        for name, part in share_of(func, frozenset()).items():
            areas[name] = areas.get(name, 0.0) + own * part
    return areas


def section_profile(say: Report, dumps: dict[str, tuple[str, int]]) -> None:
    """bmc's read session and the bare loop's, both under cProfile from the second request
    on, compared area by area (ms per turn)."""
    say("## 7. Profile: bmc's turn against the bare loop's, area by area (read session)")
    say()
    areas = {kind: profile_areas(path) for kind, (path, _turns) in dumps.items()}
    turns = {kind: count for kind, (_path, count) in dumps.items()}
    names = sorted(
        set(areas["bmc"]) | set(areas["bare"]),
        key=lambda n: -(areas["bmc"].get(n, 0.0) / turns["bmc"]),
    )
    waits = set(WAITS.values())

    def ms(kind: str, name: str) -> float:
        return areas[kind].get(name, 0.0) * 1000 / turns[kind]

    def total(kind: str) -> float:
        return sum(ms(kind, n) for n in names if n not in waits)

    say(
        "One more run of each loop on the read session under cProfile, from the second "
        "request to the end. cProfile slows Python code several times over and C code hardly "
        "at all, so read the rows against each other, not as wall time. Each row is the own "
        "time of the functions an area owns, plus the standard-library and builtin calls it "
        "made (json, copy, os.path, ...), charged to the nearest owning caller. Waits are "
        "listed apart at the end."
    )
    say()
    rows = [
        [
            "computing, all areas",
            f"{total('bmc'):.2f}",
            f"{total('bare'):.2f}",
            f"{total('bmc') - total('bare'):+.2f}",
        ]
    ]
    for name in [n for n in names if n not in waits] + [n for n in names if n in waits]:
        mine, theirs = ms("bmc", name), ms("bare", name)
        if max(mine, theirs) < 0.02:
            continue
        rows.append([name, f"{mine:.2f}", f"{theirs:.2f}", f"{mine - theirs:+.2f}"])
    say.table(["area", "bmc ms/turn", "bare loop ms/turn", "difference"], rows)
    only = [n for n in names if n not in waits and ms("bare", n) == 0.0]
    ranked = sorted(only, key=lambda n: -ms("bmc", n))
    say(
        f"What only bmc does comes to {sum(ms('bmc', n) for n in only):.2f} ms per turn "
        "here (profiled), led by "
        + ", ".join(f"{n} ({ms('bmc', n):.2f})" for n in ranked[:4])
        + f"; its fsync waits add {ms('bmc', WAITS['<built-in method posix.fsync>']):.2f} ms. "
        "The rows both loops share (the SDK, httpx, h11, pydantic) come from one run each and "
        "move by a third from run to run on this machine: their differences are noise."
    )
    say()
    _top_functions(say, dumps["bmc"])


def _top_functions(say: Report, dump: tuple[str, int]) -> None:
    """bmc's own functions by cumulative time per turn (profiled)."""
    import pstats

    path, turns = dump
    stats = pstats.Stats(path).stats  # type: ignore[attr-defined]
    rows = []
    for (filename, line, name), (_cc, calls, own, cum, _callers) in stats.items():
        area = _area((filename, line, name))
        if area is None or not area.startswith("bmc."):
            continue
        rows.append((cum, own, calls, f"{area}.{name} (line {line})"))
    rows.sort(reverse=True)
    say(
        "bmc's own functions by cumulative time (profiled; the loop's `run` and `_query` "
        "include waiting for each answer):"
    )
    say()
    say.table(
        ["function", "cumulative ms/turn", "own ms/turn", "calls/turn"],
        [
            [label, f"{cum * 1000 / turns:.3f}", f"{own * 1000 / turns:.3f}", f"{n / turns:.1f}"]
            for cum, own, n, label in rows[:15]
        ],
    )


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
        "--read-rounds",
        type=int,
        default=9,
        help="rounds of bmc against the bare loop on the read session (default 9)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="interleaved rounds of every loop on the write session (default 3)",
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
        help="also run bmc and the bare loop on the read session under cProfile, keep the raw "
        "stats in FILE and FILE.bare (python -m pstats FILE) and compare them in the report",
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
    say("# Session benchmark: prompt cache, per-turn time, context bounds, start-up")
    say()
    say(
        f"Generated by `python bench/bench_session.py` on {dt.date.today().isoformat()}: the "
        "scripted model (`bmc.scripted`) on loopback, each client in its own process."
    )
    say()
    say(machine())
    say()
    reads, writes = read_only_session(100), reading_session(100)
    _phase(began, f"the read session, bmc and the bare loop, {args.read_rounds} rounds")
    read_runs = compare_loops(reads, args.read_rounds, READ_LOOPS)
    _phase(began, f"the write session, every loop, {args.rounds} rounds")
    write_runs = compare_loops(writes, args.rounds, WRITE_LOOPS)
    firsts = [
        next((r for r in runs["bmc"] if not r.error), None) for runs in (read_runs, write_runs)
    ]
    if firsts[0] is None or firsts[1] is None:
        failed = read_runs["bmc"] if firsts[0] is None else write_runs["bmc"]
        say(f"bmc's 100-turn session failed: {failed[0].error}")
        write_results(args.out, say.lines)
        return 1
    section_cache(say, [("read session", firsts[0]), ("write session", firsts[1])])
    section_read(say, read_runs, args.read_rounds)
    section_loops(say, write_runs, args.rounds)
    _phase(began, "runner overhead: 10, 50, 200 turns")
    by_length = section_overhead(say)
    _phase(began, "context bounds")
    section_bounds(say, by_length[200])
    _phase(began, "start-up")
    section_startup(say, args.startup_runs)
    if args.profile_dump:
        _phase(began, "bmc and the bare loop under cProfile")
        profile_both(say, reads, _spec_from(firsts[0].bodies[0]), args.profile_dump)
    say(
        f"Bench wall time: {time.perf_counter() - began:.0f} s; load average at the end: "
        + ", ".join(f"{x:.2f}" for x in os.getloadavg())
        + "."
    )
    say()
    write_results(args.out, say.lines)
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


def profile_both(say: Report, session: Session, spec: dict[str, Any], dump: str) -> None:
    dumps: dict[str, tuple[str, int]] = {}
    for kind, path in (("bmc", dump), ("bare", dump + ".bare")):
        run = run_client(kind, session, spec, profile_dump=path)
        print(f"cProfile stats of {kind} in {path}: {run.error or 'ok'}", file=sys.stderr)
        if run.error:
            return
        dumps[kind] = (path, len(run.bodies) - 1)  # profiled from the second request on
    section_profile(say, dumps)


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
