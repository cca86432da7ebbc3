"""Projects and helpers shared by the validation tests (test_validate.py for the segments
stage, test_canvas_validate.py for the canvas): building a project from the fixtures,
writing files into it, a broken document and what its refusal must say, and counting the
checks `validate_project` runs."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from bmc.documents import validate
from bmc.documents.validate import validate_project
from bmc.workspace.packaged import data_dir
from bmc.workspace.paths import Project, atomic_write, init_project, locate

FIXTURES = data_dir("fixtures")
FIXTURE_RESOURCES = FIXTURES / "workspace" / "clients" / "tidewater" / "resources"


def research_project(root: Path) -> Project:
    """A new project whose resources are the demo fixture's real research reports."""
    project = init_project(root, "acme", "growth-2027", "Acme Ltd")
    for report in FIXTURE_RESOURCES.glob("*.md"):
        shutil.copy(report, project.resources_dir / report.name)
    return project


@cache
def demo_segment_files() -> dict[str, str]:
    """The segments files as the demo scenario leaves them: its writes and edits replayed."""
    scenario = json.loads((FIXTURES / "scenarios" / "demo-segments.json").read_text("utf-8"))
    files: dict[str, str] = {}
    for step in scenario["steps"]:
        for block in (step.get("reply") or {}).get("content", []):
            if block.get("type") != "tool_use":
                continue
            given = block["input"]
            if block["name"] == "write":
                files[given["file_path"]] = given["content"]
            elif block["name"] == "edit":
                old, new = given["old_string"], given["new_string"]
                assert old in files[given["file_path"]]
                count = -1 if given.get("replace_all") else 1
                files[given["file_path"]] = files[given["file_path"]].replace(old, new, count)
    return files


def segments_ready(root: Path, *, leave_out: str | None = None) -> Project:
    """The fixture workspace (brief agreed) with the demo's segment drafts and segments
    document written, ready to agree; `leave_out` names one of them not to write."""
    shutil.copytree(FIXTURES / "workspace", root / "ws")
    project = locate(root / "ws", "tidewater", "growth-2027")
    for path, text in demo_segment_files().items():
        if path != leave_out:
            atomic_write(project.project_dir / path, text)
    return project


def write(project: Project, path: str, content: str | bytes) -> None:
    """Put `content` at `path` in the project, as a person saving the file would."""
    target = project.project_dir / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)


def sections(lines: list[str]) -> set[str]:
    """The section each problem or warning starts with."""
    return {line.split(":", 1)[0] for line in lines}


@dataclass(frozen=True)
class Defect:
    """A broken document, the sections its problems must name (exactly), and text one of
    the problems must contain; `path` is where it is written when not the test's default."""

    content: str | bytes
    sections: frozenset[str]
    says: str = ""
    path: str | None = None


def defect(content: str | bytes, *names: str, says: str = "", path: str | None = None) -> Defect:
    return Defect(content, frozenset(names), says, path)


def problems_on_disk(project: Project, path: str, content: bytes) -> list[str]:
    """The problems of a file saved at `path`, which validation must call invalid. Bytes
    reach validation only from disk, so that is the only way to check them."""
    write(project, path, content)
    [report] = validate_project(project, [path])
    assert report.status == "invalid"
    return report.problems


def count_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on, the paths `validate_project` checks rather than answers from its cache."""
    checked: list[str] = []
    real = validate.run_check

    def counting(governed, reader, path, data):  # type: ignore[no-untyped-def]
        checked.append(path)
        return real(governed, reader, path, data)

    monkeypatch.setattr(validate, "run_check", counting)
    return checked
