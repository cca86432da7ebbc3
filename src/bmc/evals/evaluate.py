"""`bmc eval SKILL`: every case, `repeat` times, against a real model or the scripted one.

With a key (and without `--scripted`) each case runs against the model named, through the
client `bmc run` would use. Without one, or with `--scripted`, each case that names a
recorded `scenario` replays it on the scripted model (loopback, no network); a case without
one is skipped, saying so. The results are written to `out/results.json` and
`out/report.html`; every run's workspace stays in `out/runs/<case>/<repeat>/` to look at.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bmc.documents.skills import Skill, load_skill
from bmc.engine.api import RunOptions, make_client, model_name
from bmc.engine.usage import price_for
from bmc.errors import UserError
from bmc.evals import grader
from bmc.evals.cases import LoadedCase, load_cases, read_json
from bmc.evals.checks import grade_run
from bmc.evals.report import write_report
from bmc.evals.results import (
    FORMAT,
    SCRIPTED_NOTE,
    Regression,
    case_result,
    compare,
    load_baseline,
    run_result,
    summary,
    write_json,
)
from bmc.evals.run import RunRecord, converse, prepare

SCRIPTED_KEY = "scripted-no-key-needed"


@dataclass
class EvalOptions:
    model: str | None = None
    repeat: int = 1
    baseline: Path | None = None
    out: Path | None = None
    grade_with_model: bool = False
    scripted: bool = False
    skills_dir: Path | None = None
    provider: str = "anthropic"
    cases: list[str] = field(default_factory=list)  # ids to run; empty: all
    client: Any = None  # a test or a caller may pass its own (a real run builds one)


@dataclass
class Outcome:
    results: dict[str, Any]
    records: list[RunRecord]
    out: Path
    regressions: list[str]


def run_eval(skill_name: str, options: EvalOptions, say: Callable[[str], None]) -> Outcome:
    """Run the cases, write results.json and report.html; raise `Regression` (exit 5) after
    writing them when a pass rate fell below the baseline's."""
    skill = load_skill(skill_name, options.skills_dir)
    cases = _selected(load_cases(skill.name, options.skills_dir), options.cases)
    baseline = load_baseline(options.baseline, skill.name) if options.baseline else None
    scripted = options.scripted or (
        options.client is None
        and options.provider == "anthropic"
        and not os.environ.get("ANTHROPIC_API_KEY")
    )
    client = None if scripted else options.client or make_client(options.provider)
    model = model_name(RunOptions(model=options.model))
    out = options.out or Path("bmc-eval") / f"{skill.name}-{_stamp()}"
    _fresh(out)
    if scripted:
        say("No API key (or --scripted): cases replay their recorded scenarios on the scripted")
        say("model; its token counts and costs are simulated, not real.")
    started = _now()
    records: list[RunRecord] = []
    case_results = []
    for loaded in cases:
        if scripted and not loaded.case.scenario:
            why = "needs a real model: the case has no recorded scenario to replay offline"
            say(f"{loaded.key} {loaded.title}: skipped ({why})")
            case_results.append(case_result(loaded.key, loaded.case, [], skipped=why))
            continue
        runs = []
        for repeat in range(1, options.repeat + 1):
            record, verdicts, grading = _one_run(
                loaded, repeat, skill, out, model, client, scripted, options
            )
            records.append(record)
            folder = str(record.project.workspace.relative_to(out))
            runs.append(run_result(record, verdicts, grading, folder))
            rate = runs[-1]["summary"]["pass_rate"]
            shown = "n/a" if rate is None else f"{rate:.0%}"
            say(f"{loaded.key} {loaded.title} #{repeat}: {shown} passed, {record.turns} turns")
        case_results.append(case_result(loaded.key, loaded.case, runs))
    price, known = price_for(model)
    results: dict[str, Any] = {
        "format": FORMAT,
        "skill_name": skill.name,
        "skill_digest": skill.digest(),
        "model": model,
        "price_per_million": None if scripted else vars(price) | {"known": known},
        "grader_model": (model if options.grade_with_model else None),
        "scripted": scripted,
        "token_note": SCRIPTED_NOTE if scripted else "",
        "repeat": options.repeat,
        "started_at": started,
        "finished_at": _now(),
        "cases": case_results,
        "run_summary": summary(case_results),
        "baseline": None,
        "regressions": [],
    }
    regressions = compare(results, baseline, str(options.baseline)) if baseline else []
    write_json(out / "results.json", results)
    write_report(out / "report.html", results)
    say(f"Results: {out / 'results.json'}  Report: {out / 'report.html'}")
    outcome = Outcome(results, records, out, regressions)
    if regressions:
        for line in regressions:
            say(f"regression: {line}")
        report = out / "report.html"
        raise Regression(
            f"{len(regressions)} regression(s) against {options.baseline}: see {report}."
        )
    return outcome


def _one_run(
    loaded: LoadedCase,
    repeat: int,
    skill: Skill,
    out: Path,
    model: str,
    client: Any,
    scripted: bool,
    options: EvalOptions,
) -> tuple[RunRecord, list[Any], dict[str, Any] | None]:
    case = loaded.case
    folder = out / "runs" / _safe(loaded.key) / str(repeat)
    record = RunRecord(loaded, repeat, prepare(loaded, folder / "workspace"), scripted)
    consultant = case.consultant
    # One read of the recording serves both uses: offline it plays the model, and its lines
    # are the consultant's when the case gives none of its own.
    recorded = _scenario(loaded, case.scenario) if scripted or consultant is None else None
    if consultant is None:
        consultant = list((recorded or {}).get("consultant", []))
    with _model(recorded if scripted else None, client) as (server, run_client):
        converse(
            record,
            skill,
            client=run_client,
            model=model,
            skills_dir=options.skills_dir,
            consultant=consultant,
        )
    if server is not None:
        record.notes += server.divergences
        record.requests = list(server.requests)
    verdicts = grade_run(record, skill)
    grading = None
    if not options.grade_with_model:
        verdicts += grader.ungraded(record, "not graded (run with --grade-with-model)")
    elif scripted and case.expectations and not case.grader_scenario:
        verdicts += grader.ungraded(record, "not graded: no grader_scenario to replay offline")
    elif case.expectations:
        replies = _scenario(loaded, case.grader_scenario) if scripted else None
        with _model(replies, client) as (_, grader_client):
            graded, usage = grader.grade(record, grader_client, model)
        verdicts += graded
        grading = {"tokens": usage.__dict__, "cost": usage.cost(model), "scripted": scripted}
    return record, verdicts, grading


def _scenario(loaded: LoadedCase, spelled: str | None) -> dict[str, Any] | None:
    return read_json(loaded.path(spelled)) if spelled else None


@contextmanager
def _model(scenario: dict[str, Any] | None, client: Any) -> Iterator[tuple[Any, Any]]:
    """The scripted model playing `scenario` and a client pointed at it; with no scenario,
    no server and the real `client`."""
    if scenario is None:
        yield None, client
        return
    import anthropic

    from bmc.scripted import ScriptedModel

    with ScriptedModel(scenario) as server:
        yield (
            server,
            anthropic.Anthropic(base_url=server.base_url, api_key=SCRIPTED_KEY, max_retries=2),
        )


def _selected(cases: list[LoadedCase], wanted: list[str]) -> list[LoadedCase]:
    if not wanted:
        return cases
    chosen = [c for c in cases if str(c.case.id) in wanted or c.key in wanted]
    unknown = sorted(set(wanted) - {str(c.case.id) for c in chosen} - {c.key for c in chosen})
    if unknown:
        raise UserError(f"no case with id {', '.join(unknown)} for this skill.")
    return chosen


def _fresh(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not empty: give --out a new or empty folder.")
    out.mkdir(parents=True, exist_ok=True)


def _safe(key: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in key)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _stamp() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S")
