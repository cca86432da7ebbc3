"""How long `bmc validate` takes on a big project, cold and from the cache.

Builds a project in a temporary folder: 50 valid segment drafts, each citing three quotes
from 5 MB of generated research (five 1 MB reports, the quotes embedded at random places),
plus a matching segments document. Each quoted finding holds a percentage and an amount, and
each draft restates those of its first quote typed another way ("12.5 per cent", "£3.4
million" for "12.5%", "£3.4m"), so the figure check runs on every draft and on the segments
document's search of all the research. Then times:

- cold: the first `validate_project`, nothing cached (no validation.json, a fresh process);
- warm: the same again in the same process (validation.json and in-process caches);
- warm, new process: what `bmc status` pays: validation.json only;
- one draft edited: the drafts depending on it are checked again;
- one write: `make_validator` checking one draft, as the write tool does.

Run: python bench/bench_validate.py [--drafts 50] [--megabytes 5] [--out bench/validate-results.md]
Target: cold under one second. The results are written to `--out` as well as printed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import statistics
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bmc.documents.validate import make_validator, validate_project
from bmc.workspace.paths import Project, init_project

REPORTS = 5
QUOTES_PER_DRAFT = 3


def words(rng: random.Random, count: int) -> list[str]:
    return ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9))) for _ in range(count)]


def build(root: Path, n_drafts: int, megabytes: float, seed: int = 1) -> Project:
    """A project with `n_drafts` valid, distinct drafts grounded in `megabytes` of research."""
    rng = random.Random(seed)
    project = init_project(root, "bench", "big-project", "Bench Ltd")
    vocabulary = words(rng, 6000)
    quotes: list[tuple[str, str, str]] = []  # (report name, quote, its figures retyped)
    per_report = int(megabytes * 1_000_000 / REPORTS)
    needed = n_drafts * QUOTES_PER_DRAFT
    for r in range(REPORTS):
        name = f"report-{r + 1}.md"
        lines = [f"# Report {r + 1}", ""]
        size = 0
        while size < per_report:
            line = " ".join(rng.choices(vocabulary, k=14)).capitalize() + "."
            lines.append(line)
            size += len(line) + 1
        for _ in range(needed // REPORTS + 1):
            k = len(quotes)
            share, amount = f"{k % 90 + 5}.{k % 10}", f"{k % 40 + 1}.{k % 7 + 1}"
            quote = (
                f"Finding {k}: "
                + " ".join(rng.choices(vocabulary, k=10))
                + f" rose {share}% to £{amount}m."
            )
            lines.insert(rng.randrange(2, len(lines)), quote)
            quotes.append((name, quote, f"rose {share} per cent to £{amount} million"))
        (project.resources_dir / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    rng.shuffle(quotes)
    drafts = project.project_dir / "segments" / "drafts"
    drafts.mkdir(parents=True)
    entries = []
    for i in range(n_drafts):
        title = f"Segment {i + 1} " + " ".join(rng.choices(vocabulary, k=2)).title()
        cited = quotes[i * QUOTES_PER_DRAFT : (i + 1) * QUOTES_PER_DRAFT]
        text = draft(rng, vocabulary, title, i, cited)
        slug = "".join(c if c.isalnum() else "-" for c in title.lower())
        (drafts / f"{slug}.md").write_text(text, encoding="utf-8")
        entries.append((title, [f"Proposition {i}-{k}" for k in (1, 2)]))
    (project.project_dir / "segments" / "segments.md").write_text(document(entries))
    return project


def draft(rng: random.Random, vocabulary: list[str], title: str, i: int, cited: list) -> str:
    def sentence(k: int) -> str:
        return " ".join(rng.choices(vocabulary, k=k)).capitalize() + "."

    evidence = "\n".join(f'- From `resources/{name}`: "{quote}"' for name, quote, _ in cited)
    figures = cited[0][2]
    return (
        f"# {title}\n\n## Who they are\n\n{sentence(25)} Their spending {figures}. "
        f"{sentence(20)}\n\n"
        f"## Value propositions\n\n1. **Proposition {i}-1** — {sentence(12)}\n"
        f"2. **Proposition {i}-2** — {sentence(12)}\n\n"
        f"## Channels\n\n{sentence(12)}\n\n## Relationship type\n\nPersonal — {sentence(8)}\n\n"
        f"## Revenue potential\n\n{sentence(10)}\n\n## Evidence\n\n{evidence}\n\n"
        f"## Confidence\n\nMedium — {sentence(10)}\n"
    )


def document(entries: list[tuple[str, list[str]]]) -> str:
    blocks = []
    for number, (title, names) in enumerate(entries, start=1):
        vps = "\n".join(f"{k}. **{name}** — why." for k, name in enumerate(names, start=1))
        blocks.append(
            f"### {number}. {title}\n\n**Who they are**: them.\n**Value propositions**:\n{vps}\n"
            "**Channels**: somehow.\n**Relationship**: Personal.\n**Revenue**: fees.\n"
        )
    return (
        "# Customer Segments — Bench Ltd\n\n## Overview\n\nA benchmark.\n\n## Segments\n\n"
        + "\n".join(blocks)
        + "\n## Segment Interactions\n\nNone.\n\n## Excluded Segments\n\nNone.\n\n"
        "## Open Questions\n\nNone.\n"
    )


def timed(action: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


WARM_IN_NEW_PROCESS = """
import json, sys, time
from pathlib import Path
from bmc.documents.validate import validate_project
from bmc.workspace.paths import Project
start = time.perf_counter()
reports = validate_project(Project(Path(sys.argv[1]), "bench", "big-project"))
print(json.dumps([time.perf_counter() - start, sum(r.status == "valid" for r in reports)]))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--drafts", type=int, default=50)
    parser.add_argument("--megabytes", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("validate-results.md"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = build(Path(tmp), args.drafts, args.megabytes)
        size = sum(p.stat().st_size for p in project.resources_dir.iterdir()) / 1e6
        rows = []
        seconds, reports = timed(lambda: validate_project(project))
        assert all(r.status == "valid" for r in reports), [r for r in reports if r.problems]
        rows.append(("cold (nothing cached)", seconds, len(reports)))
        seconds, reports = timed(lambda: validate_project(project))
        rows.append(("warm, same process", seconds, len(reports)))
        out = subprocess.run(
            [sys.executable, "-c", WARM_IN_NEW_PROCESS, str(project.workspace)],
            capture_output=True,
            text=True,
            check=True,
        )
        seconds, valid = json.loads(out.stdout)
        rows.append(("warm, new process (bmc status)", seconds, valid))
        first = sorted((project.project_dir / "segments" / "drafts").glob("*.md"))[0]
        first.write_text(first.read_text() + "\nExtra sentence.\n")
        seconds, reports = timed(lambda: validate_project(project))
        rows.append(("one draft edited", seconds, len(reports)))
        validator = make_validator(project)
        text = first.read_text()
        path = f"segments/drafts/{first.name}"
        writes = [timed(lambda: validator(path, text))[0] for _ in range(20)]
        rows.append(("one write (make_validator), median", statistics.median(writes), 1))
    report = [
        "# Validation benchmark: a big project, cold and cached",
        "",
        f"Generated by `python bench/bench_validate.py` on {datetime.date.today()}: "
        f"{args.drafts} drafts, {size:.1f} MB of resources in {REPORTS} reports, every draft "
        "restating figures of its quotes typed another way (the figure check runs).",
        "",
        f"- {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"Python {platform.python_version()}; load average at the end: "
        + ", ".join(f"{load:.2f}" for load in os.getloadavg()),
        "",
        "| run | seconds | documents |",
        "|---|---|---|",
        *(f"| {name} | {seconds:.3f} | {count} |" for name, seconds, count in rows),
        "",
        f"Target: cold under one second: **{'met' if rows[0][1] < 1.0 else 'not met'}**.",
        "",
    ]
    args.out.write_text("\n".join(report), encoding="utf-8")
    print("\n".join(report))


if __name__ == "__main__":
    main()
