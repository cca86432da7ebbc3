"""bmc's own, deterministic grading of a run: no model involved, the same answer every time.

Every run is held to the product's rules (the documents it produced valid and grounded,
agreement asked on the right document, no write the runner forbids, refusals, turns and
cost within the case's budgets); then to the case's own `checks`. Each gives a `Verdict`:
passed, failed, or not applicable (`None`: e.g. a cost budget against the scripted model,
whose token counts are simulated).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from bmc.documents.schemas import heading_key, outline
from bmc.documents.skills import Skill
from bmc.documents.validate import validate_project
from bmc.engine.events import ToolLine
from bmc.evals.cases import Check
from bmc.evals.run import RunRecord
from bmc.workspace.confine import Refused
from bmc.workspace.paths import Project
from bmc.workspace.tools import Toolbox

WRITES = ("write", "edit")
PATH_KEYS = ("file_path", "path", "document")


@dataclass(frozen=True)
class Verdict:
    text: str
    kind: str  # "check" (bmc's own or the case's) | "rubric" (model-graded)
    passed: bool | None  # None: not applicable or not graded
    evidence: str


def grade_run(record: RunRecord, skill: Skill) -> list[Verdict]:
    case = record.case.case
    verdicts = [
        _ended(record),
        _documents(record, skill),
        *_agreement(record, skill),
        _no_forbidden_write(record, skill),
        _refusals(record),
        _turns(record),
        _cost(record),
    ]
    return verdicts + [check_one(record, check) for check in case.checks]


def _check(text: str, passed: bool | None, evidence: str) -> Verdict:
    return Verdict(text, "check", passed, evidence)


def _ended(record: RunRecord) -> Verdict:
    text = "The run ended by itself (no error, no budget or livelock stop)"
    evidence = record.reason or "ended cleanly"
    if record.notes:
        evidence += " — " + "; ".join(record.notes)
    return _check(text, record.exit_code == 0 and not record.notes, evidence)


def _documents(record: RunRecord, skill: Skill) -> Verdict:
    text = "The documents the skill produces exist, valid and grounded in the research"
    project = record.project
    missing = [p for p in skill.produces if not _produced(project, p)]
    invalid = [
        f"{report.path}: {report.problems[0] if report.problems else 'invalid'}"
        for report in validate_project(project)
        if report.status == "invalid"
    ]
    problems = [f"{p} is missing" for p in missing] + invalid
    produced = ", ".join(skill.produces)
    return _check(text, not problems, "; ".join(problems) or f"{produced}: all valid")


def _produced(project: Project, spelled: str) -> bool:
    path = resolve(project, spelled.rstrip("/"))
    if spelled.endswith("/"):
        return path.is_dir() and any(path.glob("*.md"))
    return path.is_file()


def _agreement(record: RunRecord, skill: Skill) -> list[Verdict]:
    case = record.case.case
    default = (skill.gate or "").replace(".agreed.md", ".md")
    expected = case.agreement if case.agreement is not None else default
    if not expected:
        return []
    asked = [
        str(call["input"].get("document", ""))
        for call in record.tool_calls()
        if call["name"] == "request_agreement"
    ]
    wrong = sorted({d for d in asked if d != expected})
    passed = expected in asked and not wrong
    evidence = f"asked on: {', '.join(asked)}" if asked else "the model never asked for agreement"
    verdicts = [_check(f"Agreement was asked on {expected}, and on nothing else", passed, evidence)]
    if case.agreed and skill.gate:
        gates = [r.gate for r in record.recorded]
        verdicts.append(
            _check(
                f"The consultant's yes was recorded: {skill.gate} written",
                skill.gate in gates,
                f"recorded: {', '.join(gates)}" if gates else "nothing was agreed",
            )
        )
    return verdicts


def _no_forbidden_write(record: RunRecord, skill: Skill) -> Verdict:
    """Every write the model attempted aimed at a path it may write: the runner's rules
    (`Toolbox.resolve`) asked again about each, after the run."""
    toolbox = Toolbox(
        record.project,
        skill.folder,
        resources_writable=any(p.startswith("resources/") for p in skill.produces),
    )
    forbidden = []
    for call in record.tool_calls():
        if call["name"] not in WRITES:
            continue
        path = str(call["input"].get("file_path", ""))
        try:
            toolbox.resolve(path, for_write=True)
        except Refused as why:
            forbidden.append(f"{path!r} ({why})")
    text = "No forbidden write was attempted (gates, decisions.md, .bmc/, read-only mounts)"
    return _check(text, not forbidden, "; ".join(forbidden) or "none attempted")


def _refusals(record: RunRecord) -> Verdict:
    limit = record.case.case.budgets.max_refusals
    refused = [f"{t.name} {t.summary}" for t in record.tools if t.name in WRITES and t.is_error]
    evidence = f"{len(refused)} refused" + (f": {', '.join(refused)}" if refused else "")
    return _check(f"At most {limit} writes refused by the runner", len(refused) <= limit, evidence)


def _turns(record: RunRecord) -> Verdict:
    limit = record.case.case.budgets.max_turns
    return _check(f"At most {limit} model turns", record.turns <= limit, f"{record.turns} turns")


def _cost(record: RunRecord) -> Verdict:
    limit = record.case.case.budgets.max_cost
    text = f"Cost at most ${limit:.2f}"
    if record.scripted:
        return _check(text, None, "not measured: the scripted model's tokens are simulated")
    return _check(text, record.cost <= limit, f"${record.cost:.4f}")


# --- the case's own checks ---------------------------------------------------------------


def check_one(record: RunRecord, check: Check) -> Verdict:
    if check.no_refusal_mentions is not None:
        needle = check.no_refusal_mentions.casefold()
        hits = [f"{t.name} {t.summary}" for t in record.tools if t.is_error and needle in _said(t)]
        return _check(check.text, not hits, "; ".join(hits) or "no refusal says it")
    if check.no_tool_call_on is not None:
        pattern = re.compile(check.no_tool_call_on)
        hits = [
            f"{call['name']} {value}"
            for call in record.tool_calls()
            for key in PATH_KEYS
            if isinstance(value := call["input"].get(key), str) and pattern.search(value)
        ]
        return _check(check.text, not hits, "; ".join(hits) or "no such call")
    if check.tool_used is not None:
        count = sum(1 for call in record.tool_calls() if call["name"] == check.tool_used)
        return _check(check.text, count > 0, f"{check.tool_used} called {count} times")
    if check.prompt_excludes is not None:
        found = check.prompt_excludes in record.system
        return _check(check.text, not found, "named in the prompt" if found else "not named")
    return _check_files(record, check)


def _said(tool: ToolLine) -> str:
    return f"{tool.summary}\n{tool.text}".casefold()


def _check_files(record: RunRecord, check: Check) -> Verdict:
    assert check.file is not None
    paths = _paths(record.project, check.file)
    if not paths:
        return _check(check.text, False, f"{check.file}: no such file")
    pattern = re.compile(check.matches or check.absent or "", re.MULTILINE)
    hits, count = [], 0
    for path in paths:
        text = _section(path.read_text("utf-8", errors="replace"), check.section)
        if text is None:
            continue
        found = list(pattern.finditer(text))
        count += len(found)
        if found:
            hits.append(f"{_shown(record.project, path)}: {found[0].group(0)[:120]!r}")
    if check.absent is not None:
        return _check(check.text, not hits, "; ".join(hits) or "not found")
    if check.at_most_matches is not None:
        passed = count <= check.at_most_matches
        return _check(check.text, passed, f"found {count} times: " + "; ".join(hits))
    if check.at_most_files is not None:
        passed = len(hits) <= check.at_most_files
        return _check(check.text, passed, f"{len(hits)} files match: " + "; ".join(hits))
    if "*" in check.file:
        return _check(check.text, bool(hits), "; ".join(hits) or "in none of them")
    return _check(check.text, bool(hits), "; ".join(hits) or "not found")


def _section(text: str, section: str | None) -> str | None:
    """The text under `## <section>` up to the next `##` heading (None: no such section),
    cut as the validator cuts documents (a `##` inside a code fence is no heading)."""
    if section is None:
        return text
    wanted = heading_key(section)
    found = next((s for s in outline(text).sections if heading_key(s.heading) == wanted), None)
    return None if found is None else "\n".join(line.text for line in found.body)


def resolve(project: Project, spelled: str) -> Path:
    """A path as the model spells it, on disk (`resources/` and `inbox/` mapped)."""
    for prefix, root in (("resources/", project.resources_dir), ("inbox/", project.inbox_dir)):
        if spelled.startswith(prefix):
            return root / spelled.removeprefix(prefix)
    return project.project_dir / spelled


def _paths(project: Project, spelled: str) -> list[Path]:
    if "*" not in spelled:
        path = resolve(project, spelled)
        return [path] if path.is_file() else []
    head, _, _ = spelled.partition("*")
    base_spelled = head.rsplit("/", 1)[0] + "/" if "/" in head else ""
    base = resolve(project, base_spelled) if base_spelled else project.project_dir
    return sorted(p for p in base.glob(spelled.removeprefix(base_spelled)) if p.is_file())


def _shown(project: Project, path: Path) -> str:
    for prefix, root in (("", project.project_dir), ("resources/", project.resources_dir)):
        if path.is_relative_to(root):
            return prefix + path.relative_to(root).as_posix()
    return path.name
