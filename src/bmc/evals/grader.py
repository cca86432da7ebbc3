"""The model-graded rubric: a grader model reads what a run produced and says, for each of
the case's expectations, whether it holds and why (`--grade-with-model`).

The grader is a separate request, through the same SDK client, with a tool it must call
(`record_grades`), so its verdicts come back as structured data, never parsed out of prose.
The expectations reach the grader only: the model under test never sees them. Offline, the
scripted model plays the grader from the case's `grader_scenario`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bmc.engine.usage import TurnUsage
from bmc.evals.checks import WRITES, Verdict, resolve
from bmc.evals.run import RunRecord

TOOL_NAME = "record_grades"
DOCUMENT_CHARS = 40_000  # of each document the run wrote
TRANSCRIPT_CHARS = 30_000
MAX_TOKENS = 4096

TOOL: dict[str, Any] = {
    "name": TOOL_NAME,
    "description": "Record one verdict per expectation, in the order they were given.",
    "input_schema": {
        "type": "object",
        "properties": {
            "expectations": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "text": {"type": "string", "description": "The expectation, as given."},
                        "passed": {"type": "boolean"},
                        "evidence": {
                            "type": "string",
                            "description": "What in the documents or transcript decides it; "
                            "quote it.",
                        },
                    },
                    "required": ["text", "passed", "evidence"],
                },
            }
        },
        "required": ["expectations"],
    },
}

SYSTEM = """You grade one run of a consultant's assistant against a list of expectations.
You are given what the consultant asked, what a good result looks like, the documents the
assistant wrote (as they are at the end of the run) and its replies. For each expectation,
decide whether the evidence shows it holds. Be strict: an expectation with no evidence for
it fails. Quote the passage that decides each verdict. Call record_grades once, with one
verdict per expectation, in the order given."""


def grade(record: RunRecord, client: Any, model: str) -> tuple[list[Verdict], TurnUsage]:
    """One verdict per expectation of the case, and what the grading request used."""
    case = record.case.case
    response = client.messages.create(
        model=model,
        max_tokens=MAX_TOKENS,
        system=SYSTEM,
        tools=[TOOL],
        tool_choice={"type": "tool", "name": TOOL_NAME},
        messages=[{"role": "user", "content": material(record)}],
    )
    usage = TurnUsage.from_api(getattr(response, "usage", None))
    given: list[Any] = []
    for block in response.content:
        if getattr(block, "type", "") == "tool_use" and block.name == TOOL_NAME:
            found = block.input.get("expectations") if isinstance(block.input, dict) else None
            given = found if isinstance(found, list) else []
    verdicts = []
    for index, text in enumerate(case.expectations):
        item = given[index] if index < len(given) and isinstance(given[index], dict) else None
        if item is None or not isinstance(item.get("passed"), bool):
            verdicts.append(Verdict(text, "rubric", None, "the grader gave no verdict"))
            continue
        verdicts.append(Verdict(text, "rubric", item["passed"], str(item.get("evidence", ""))))
    return verdicts, usage


def ungraded(record: RunRecord, why: str) -> list[Verdict]:
    return [Verdict(text, "rubric", None, why) for text in record.case.case.expectations]


def material(record: RunRecord) -> str:
    """What the grader reads, in tagged parts."""
    case = record.case.case
    parts = [
        f"<consultant_request>\n{case.prompt}\n</consultant_request>",
        f"<expected_output>\n{case.expected_output}\n</expected_output>",
    ]
    for path, text in _documents(record):
        parts.append(f'<document path="{path}">\n{text}\n</document>')
    parts.append(f"<transcript>\n{_transcript(record)}\n</transcript>")
    listed = "\n".join(f"{i}. {text}" for i, text in enumerate(case.expectations, start=1))
    parts.append(f"<expectations>\n{listed}\n</expectations>")
    return "\n\n".join(parts)


def _documents(record: RunRecord) -> list[tuple[str, str]]:
    seen: dict[str, Path] = {}
    for call in record.tool_calls():
        if call["name"] in WRITES:
            spelled = str(call["input"].get("file_path", ""))
            path = resolve(record.project, spelled)
            if path.is_file() and spelled not in seen:
                seen[spelled] = path
    found = []
    for spelled, path in seen.items():
        text = path.read_text("utf-8", errors="replace")
        if len(text) > DOCUMENT_CHARS:
            text = text[:DOCUMENT_CHARS] + "\n[... cut for length]"
        found.append((spelled, text))
    return found


def _transcript(record: RunRecord) -> str:
    text = "\n".join(record.transcript)
    return text if len(text) <= TRANSCRIPT_CHARS else text[-TRANSCRIPT_CHARS:]
