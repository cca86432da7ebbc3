"""Results: each run's verdicts and costs, summed up per case and per expectation, set side
by side with a baseline results file, and written as JSON.

The figures follow skill-creator's benchmark: a pass rate per run (passed over graded
expectations; one not applicable or not graded counts neither way) and, per case, its mean,
sample standard deviation, minimum and maximum over the repeats, and the same for turns,
tokens, cost and seconds. A case regresses when its mean pass rate falls below the
baseline's by more than the baseline's standard deviation over its repeats; an expectation
regresses the same way (its pass rate against the baseline's, less the spread of its 0/1
outcomes there). With one repeat the spread is 0, so any drop is a regression.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from bmc.errors import BmcError, UserError
from bmc.evals.cases import read_json
from bmc.evals.checks import Verdict
from bmc.evals.run import RunRecord
from bmc.workspace.paths import atomic_write

FORMAT = "bmc-eval/1"
EPSILON = 1e-9
SCRIPTED_NOTE = (
    "Token counts and costs of runs against the scripted model are simulated (about four "
    "characters a token), not what a real model would use or cost."
)


class Regression(BmcError):
    """A pass rate fell below the baseline's by more than the spread of its repeats."""

    exit_code = 5


def stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "mean": statistics.fmean(values),
        "stddev": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def run_result(
    record: RunRecord, verdicts: list[Verdict], grading: dict[str, Any] | None, folder: str
) -> dict[str, Any]:
    graded = [v for v in verdicts if v.passed is not None]
    passed = sum(1 for v in graded if v.passed)
    tokens = dict(record.tokens)
    tokens["total"] = sum(record.tokens.values())
    return {
        "repeat": record.repeat,
        "scripted": record.scripted,
        "exit_code": record.exit_code,
        "stopped": record.reason,
        "turns": record.turns,
        "tokens": tokens,
        "cost": record.cost,
        "seconds": round(record.seconds, 3),
        "grading": grading,
        "notes": record.notes,
        "workspace": folder,
        "expectations": [
            {"text": v.text, "kind": v.kind, "passed": v.passed, "evidence": v.evidence}
            for v in verdicts
        ],
        "summary": {
            "passed": passed,
            "failed": len(graded) - passed,
            "total": len(graded),
            "pass_rate": passed / len(graded) if graded else None,
        },
    }


def case_result(
    key: str, case: Any, runs: list[dict[str, Any]], skipped: str | None = None
) -> dict[str, Any]:
    rates = [r["summary"]["pass_rate"] for r in runs if r["summary"]["pass_rate"] is not None]
    texts: list[tuple[str, str]] = []
    for run in runs:
        for item in run["expectations"]:
            if (item["text"], item["kind"]) not in texts:
                texts.append((item["text"], item["kind"]))
    expectations = []
    for text, kind in texts:
        outcomes = [
            1.0 if item["passed"] else 0.0
            for run in runs
            for item in run["expectations"]
            if item["text"] == text and item["passed"] is not None
        ]
        spread = stats(outcomes)
        expectations.append(
            {
                "text": text,
                "kind": kind,
                "graded": len(outcomes),
                "pass_rate": spread["mean"] if spread else None,
                "stddev": spread["stddev"] if spread else None,
            }
        )
    return {
        "key": key,
        "id": case.id,
        "name": case.name,
        "prompt": case.prompt,
        "expected_output": case.expected_output,
        "skipped": skipped,
        "scripted": any(r["scripted"] for r in runs),
        "runs": runs,
        "run_summary": {
            "pass_rate": stats(rates),
            "turns": stats([r["turns"] for r in runs]),
            "tokens": stats([r["tokens"]["total"] for r in runs]),
            "cost": stats([r["cost"] for r in runs]),
            "seconds": stats([r["seconds"] for r in runs]),
        },
        "expectations": expectations,
        "baseline": None,
        "regression": False,
        "regressed_expectations": [],
    }


def summary(cases: list[dict[str, Any]]) -> dict[str, Any]:
    ran = [c for c in cases if not c["skipped"]]
    means = [c["run_summary"]["pass_rate"]["mean"] for c in ran if c["run_summary"]["pass_rate"]]
    runs = [run for c in ran for run in c["runs"]]
    return {
        "cases": len(cases),
        "ran": len(ran),
        "skipped": len(cases) - len(ran),
        "pass_rate": stats(means),
        "turns": sum(r["turns"] for r in runs),
        "tokens": sum(r["tokens"]["total"] for r in runs),
        "cost": sum(r["cost"] for r in runs),
        "grading_cost": sum((r["grading"] or {}).get("cost", 0.0) for r in runs),
        "seconds": round(sum(r["seconds"] for r in runs), 3),
    }


def load_baseline(path: Path, skill: str) -> dict[str, Any]:
    data = read_json(path, f"the baseline {path}")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(f"{path} is not a results file of `bmc eval` (format {FORMAT}).")
    if data.get("skill_name") != skill:
        raise UserError(f"the baseline {path} measured {data.get('skill_name')}, not {skill}.")
    return data


def compare(results: dict[str, Any], baseline: dict[str, Any], source: str) -> list[str]:
    """Set each case beside its baseline; returns one line per regression."""
    before = {c["key"]: c for c in baseline.get("cases", []) if isinstance(c, dict)}
    results["baseline"] = {
        "file": source,
        "model": baseline.get("model"),
        "started_at": baseline.get("started_at"),
        "scripted": baseline.get("scripted"),
        "run_summary": baseline.get("run_summary"),
    }
    found = []
    for case in results["cases"]:
        old = before.get(case["key"])
        if old is None or case["skipped"] or old.get("skipped"):
            continue
        old_rates = {e["text"]: e for e in old.get("expectations", [])}
        case["baseline"] = {
            "pass_rate": old["run_summary"]["pass_rate"],
            "turns": old["run_summary"]["turns"],
            "tokens": old["run_summary"]["tokens"],
            "cost": old["run_summary"]["cost"],
            "scripted": old.get("scripted"),
            "expectations": {text: e.get("pass_rate") for text, e in old_rates.items()},
        }
        now, then = case["run_summary"]["pass_rate"], old["run_summary"]["pass_rate"]
        if now and then and now["mean"] < then["mean"] - then["stddev"] - EPSILON:
            case["regression"] = True
            found.append(
                f"{case['key']} ({case['name'] or case['id']}): pass rate "
                f"{now['mean']:.0%}, baseline {then['mean']:.0%} ± {then['stddev']:.0%}"
            )
        for item in case["expectations"]:
            was = old_rates.get(item["text"])
            if item["pass_rate"] is None or not was or was.get("pass_rate") is None:
                continue
            if item["pass_rate"] < was["pass_rate"] - (was.get("stddev") or 0.0) - EPSILON:
                case["regressed_expectations"].append(item["text"])
                found.append(
                    f'{case["key"]}: "{item["text"]}" passes {item["pass_rate"]:.0%}, '
                    f"baseline {was['pass_rate']:.0%}"
                )
        case["regression"] = case["regression"] or bool(case["regressed_expectations"])
    results["regressions"] = found
    return found


def write_json(path: Path, results: dict[str, Any]) -> None:
    atomic_write(path, json.dumps(results, indent=2, ensure_ascii=False) + "\n")
