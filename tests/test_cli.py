"""The `bmc` command line as a consultant uses it (SPEC sections 2, 8 and 10).

Commands run in-process through `clihelp.run_bmc` (the real `bmc.cli.main`, stdin piped,
so each non-blank line is the consultant's next message); conversations go through the
real anthropic SDK to a scripted model on loopback. The import checks run in a fresh
interpreter, since this one has long since imported the SDK.

Runtime: about 3 s of CPU. Wall time is mostly importing the anthropic SDK (once here, once
in the agree probe's fresh interpreter): 7 s on a quiet machine, up to 25 s when the two
cores are shared with other test runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import frontmatter
import pytest

from bmc.workspace.packaged import data_dir
from clihelp import run_bmc, scripted_env, snapshot

ORG, SLUG = "tidewater", "growth-2027"
PROJECT_REL = f"clients/{ORG}/projects/{SLUG}"
COST_LINE = re.compile(r"(\d+) model turns · .* cache write \(\d+% cached\) · \$\d+\.\d{4}")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A private copy of the fixture workspace (Tidewater, brief agreed, no segments yet)."""
    target = tmp_path / "ws"
    shutil.copytree(data_dir("fixtures") / "workspace", target)
    return target


def where(workspace: Path) -> list[str]:
    return ["--workspace", str(workspace), "--org", ORG, "--project", SLUG]


def text_reply(text: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}]}


# --- bmc init -----------------------------------------------------------------------------


def test_init_creates_the_project_folders_org_md_and_a_gitignore_for_runner_state(
    tmp_path: Path,
) -> None:
    result = run_bmc(
        ["init", "acme", "launch", "--name", "Acme Widgets Ltd", "--workspace", str(tmp_path)]
    )

    assert result.exit_code == 0, result.output
    org = tmp_path / "clients" / "acme"
    project = org / "projects" / "launch"
    assert (org / "inbox").is_dir() and (org / "resources").is_dir() and project.is_dir()
    assert frontmatter.load(org / "org.md")["name"] == "Acme Widgets Ltd"
    ignored = [line.strip() for line in (project / ".gitignore").read_text().splitlines()]
    # .bmc/ holds research text sent to the model: it must be ignored as a folder.
    assert {".bmc/", ".bmc", "/.bmc/", "/.bmc"} & set(ignored), ignored
    assert str(project) in result.stdout


def test_init_again_keeps_every_existing_file(tmp_path: Path) -> None:
    args = ["init", "acme", "launch", "--workspace", str(tmp_path)]
    assert run_bmc([*args, "--name", "Acme Widgets Ltd"]).exit_code == 0
    org = tmp_path / "clients" / "acme"
    (org / "org.md").write_text('---\nname: "Acme (edited by hand)"\n---\n')
    (org / "resources" / "survey.md").write_text("# Survey\n")
    (org / "projects" / "launch" / ".gitignore").write_text(".bmc/\nnotes/\n")
    before = snapshot(tmp_path)

    again = run_bmc([*args, "--name", "Another Name"])

    assert again.exit_code == 0, again.output
    assert snapshot(tmp_path) == before


def test_init_inside_a_project_puts_the_new_project_beside_it(workspace: Path) -> None:
    # Without --workspace, the workspace is the one holding the folder you are in; it must
    # not grow a second clients/ tree inside the project.
    result = run_bmc(["init", ORG, "retail-2028"], cwd=workspace / PROJECT_REL)

    assert result.exit_code == 0, result.output
    assert (workspace / "clients" / ORG / "projects" / "retail-2028").is_dir()
    assert not (workspace / PROJECT_REL / "clients").exists()


# --- --org / --project default to the folder you are in -----------------------------------


def brief_state(status_output: str) -> str:
    """The state column of the brief row of `bmc status`."""
    row = next(line for line in status_output.splitlines() if " brief.md " in line)
    return next(s for s in ("agreed", "missing", "stale", "valid", "drafting") if s in row)


@pytest.mark.parametrize("inside", ["", "segments/drafts"], ids=["project", "deeper"])
def test_org_and_project_default_to_the_project_folder_you_are_in(
    workspace: Path, inside: str
) -> None:
    cwd = workspace / PROJECT_REL / inside
    cwd.mkdir(parents=True, exist_ok=True)

    result = run_bmc(["status"], cwd=cwd)

    assert result.exit_code == 0, result.output
    assert brief_state(result.stdout) == "agreed"


def test_the_folder_you_are_in_still_counts_with_bmc_workspace_set(workspace: Path) -> None:
    result = run_bmc(["status"], cwd=workspace / PROJECT_REL, env={"BMC_WORKSPACE": str(workspace)})

    assert result.exit_code == 0, result.output
    assert brief_state(result.stdout) == "agreed"


def test_an_explicit_project_wins_over_the_folder_you_are_in(workspace: Path) -> None:
    assert run_bmc(["init", ORG, "retail-2028", "--workspace", str(workspace)]).exit_code == 0

    result = run_bmc(["status", "--project", "retail-2028"], cwd=workspace / PROJECT_REL)

    assert result.exit_code == 0, result.output
    assert brief_state(result.stdout) == "missing"  # the new project has no brief


def test_outside_a_project_without_org_and_project_asks_which(workspace: Path) -> None:
    result = run_bmc(["status"], cwd=workspace)

    assert result.exit_code == 1
    assert "which project?" in result.stderr


# --- bmc skills ---------------------------------------------------------------------------


def test_skills_lists_bmc_segments_with_its_stage_and_needs() -> None:
    result = run_bmc(["skills"])

    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "bmc-segments" in line)
    assert row.split()[0] == "2"
    assert "brief.agreed.md" in row
    assert result.stderr == ""


def test_skills_reports_a_broken_skill_without_hiding_the_others(tmp_path: Path) -> None:
    extra = tmp_path / "firm-skills"
    (extra / "firm-pricing").mkdir(parents=True)
    (extra / "firm-pricing" / "SKILL.md").write_text(
        "---\nname: firm-pricing\ndescription: Reviews pricing. Use it after the canvas.\n"
        'metadata:\n  stage: "4"\n---\n\nBody.\n'
    )
    (extra / "firm-broken").mkdir()
    (extra / "firm-broken" / "SKILL.md").write_text(
        "---\nname: firm-broken\ndescription: Broken.\nmetadata:\n  stage: 4\n---\nBody.\n"
    )

    result = run_bmc(["skills", "--skills-dir", str(extra)])

    assert result.exit_code == 0, result.output
    assert "bmc-segments" in result.stdout and "firm-pricing" in result.stdout
    assert "firm-broken" not in result.stdout
    problem = next(line for line in result.stderr.splitlines() if "firm-broken" in line)
    assert "metadata key 'stage' is a number" in problem


# --- bmc run ------------------------------------------------------------------------------

OPENING_READS = [
    {"type": "text", "text": "I'll read the agreed brief, the research index and the template."},
    {"type": "tool_use", "id": "toolu_brief", "name": "read",
     "input": {"file_path": "brief.agreed.md"}},
    {"type": "tool_use", "id": "toolu_index", "name": "read",
     "input": {"file_path": "resources/index.md"}},
    {"type": "tool_use", "id": "toolu_template", "name": "read",
     "input": {"file_path": "skill/references/draft-template.md"}},
]  # fmt: skip


def conversation_scenario() -> dict[str, Any]:
    return {
        "steps": [
            {
                "expect": {"last_user_text_contains": "Start the bmc-segments skill"},
                "reply": {"content": OPENING_READS},
            },
            {
                "expect": {
                    "tool_results": {
                        "toolu_brief": {"is_error": False, "contains": "Fiona Galbraith"},
                        "toolu_index": {"is_error": False, "contains": "Research index"},
                        "toolu_template": {"is_error": False, "contains": "## Who they are"},
                    }
                },
                "reply": text_reply("The brief covers four routes. Which segment comes first?"),
            },
            {
                "expect": {"last_user_text_contains": "Start with the island commuters."},
                "reply": text_reply("Understood: island commuters first."),
            },
        ]
    }


def test_run_segments_end_to_end_until_the_consultant_stops(workspace: Path, scripted) -> None:
    model = scripted(conversation_scenario())
    user_files = snapshot(workspace, exclude=[f"{PROJECT_REL}/.bmc/"])

    # Blank lines are not messages; the end of input ends the session cleanly.
    result = run_bmc(
        ["run", "bmc-segments", *where(workspace)],
        input="\n   \nStart with the island commuters.\n",
        env=scripted_env(model),
    )

    assert result.exit_code == 0, result.output
    model.assert_finished()
    out = result.stdout
    first = out.index("Which segment comes first?")
    assert first < out.index("Start with the island commuters.")
    assert out.index("Start with the island commuters.") < out.index("island commuters first")
    cost = COST_LINE.search(out)
    assert cost and cost.group(1) == "3", out
    session_id = re.search(r"bmc resume (\S+)`", out).group(1)  # type: ignore[union-attr]
    assert snapshot(workspace, exclude=[f"{PROJECT_REL}/.bmc/"]) == user_files  # reads only

    listed = run_bmc(["sessions", *where(workspace)])
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.stdout.splitlines() if session_id in line)
    assert "bmc-segments" in row and "waiting for consultant" in row
    assert re.search(r"│ 3\s+│", row), row  # three model turns


def test_the_message_option_arrives_in_the_first_request(workspace: Path, scripted) -> None:
    model = scripted({"steps": [{"reply": text_reply("Noted.")}]})

    result = run_bmc(
        ["run", "bmc-segments", "-m", "Fiona wants freight treated separately.",
         *where(workspace)],
        input="",
        env=scripted_env(model),
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    first = model.requests[0]["messages"][0]
    assert first["role"] == "user"
    texts = [b["text"] for b in first["content"] if b["type"] == "text"]
    assert any("Fiona wants freight treated separately." in t for t in texts), texts


def test_a_missing_api_key_is_one_sentence_and_sends_nothing(workspace: Path, scripted) -> None:
    model = scripted({"steps": [{"reply": text_reply("never sent")}]})
    env = {**scripted_env(model), "ANTHROPIC_API_KEY": None}

    result = run_bmc(["run", "bmc-segments", *where(workspace)], input="hello\n", env=env)

    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "ANTHROPIC_API_KEY is not set" in result.stderr
    assert model.requests == []


# --- commands that need no model ----------------------------------------------------------


def test_help_lists_the_commands() -> None:
    result = run_bmc(["--help"])

    assert result.exit_code == 0, result.output
    for command in ("init", "run", "resume", "status", "validate", "agree", "skills", "demo"):
        assert re.search(rf"^\s+{command}\s", result.stdout, re.MULTILINE), command


# Runs `bmc.cli.main` on each argument list in a fresh interpreter and records, after each,
# whether the SDK has been imported (it stays imported, so the first True names the culprit).
PROBE = """
import json, sys
import bmc.cli
seen = [["import bmc.cli", "anthropic" in sys.modules, 0]]
for args in json.loads(sys.argv[1]):
    try:
        bmc.cli.main(args)
        code = "returned"
    except SystemExit as stop:
        code = stop.code
    seen.append([" ".join(args), "anthropic" in sys.modules, code])
with open(sys.argv[2], "w") as out:
    json.dump(seen, out)
"""


def probe_imports(commands: list[list[str]], cwd: Path, tmp_path: Path) -> list[list[Any]]:
    report = tmp_path / "probe.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "BMC_"))}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(commands), str(report)],
        cwd=cwd, env={**env, "COLUMNS": "200"}, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(report.read_text())


def test_help_and_model_free_commands_never_import_the_sdk(workspace: Path, tmp_path: Path) -> None:
    commands = [["--help"], ["status"], ["validate"], ["skills"], ["sessions"]]
    # A mistyped skill is refused before the SDK is loaded, so the mistake shows at once.
    mistyped = ["run", "bmc-segmnets"]

    seen = probe_imports([*commands, mistyped], workspace / PROJECT_REL, tmp_path)

    assert seen == [
        ["import bmc.cli", False, 0],
        *([" ".join(args), False, 0] for args in commands),
        ["run bmc-segmnets", False, 1],
    ]


def test_agree_never_imports_the_sdk(workspace: Path, tmp_path: Path) -> None:
    # stdin is empty, so the prompt gets no yes and nothing is agreed (exit 0).
    seen = probe_imports([["agree", "brief"]], workspace / PROJECT_REL, tmp_path)

    assert seen[-1] == ["agree brief", False, 0]


# --- bmc validate -------------------------------------------------------------------------


def test_validate_passes_the_fixture_where_documents_are_only_missing(workspace: Path) -> None:
    result = run_bmc(["validate", *where(workspace)])

    assert result.exit_code == 0, result.output
    assert "segments/segments.md" in result.stdout and "missing" in result.stdout


def write_invalid_draft(workspace: Path) -> str:
    drafts = workspace / PROJECT_REL / "segments" / "drafts"
    drafts.mkdir(parents=True)
    (drafts / "island-commuters.md").write_text("# Island commuters\n\nThey commute.\n")
    return "segments/drafts/island-commuters.md"


def test_validate_fails_an_invalid_draft_and_names_it(workspace: Path) -> None:
    draft = write_invalid_draft(workspace)

    result = run_bmc(["validate", *where(workspace)])

    assert result.exit_code == 1
    row = next(line for line in result.stdout.splitlines() if draft in line)
    assert "invalid" in row


def test_validate_json_is_parseable_with_each_document_status(workspace: Path) -> None:
    draft = write_invalid_draft(workspace)

    result = run_bmc(["validate", "--json", *where(workspace)])

    assert result.exit_code == 1
    reports = {r["path"]: r for r in json.loads(result.stdout)}
    assert reports["segments/segments.md"]["status"] == "missing"
    assert reports[draft]["status"] == "invalid"
    assert any(p.startswith("Evidence") for p in reports[draft]["problems"])


# --- bmc status ---------------------------------------------------------------------------


def test_status_shows_the_brief_agreed_segments_missing_and_the_next_step(
    workspace: Path,
) -> None:
    result = run_bmc(["status", *where(workspace)])

    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines()
            if line.count("│") >= 4}  # fmt: skip
    assert "agreed" in rows["brief"]
    assert "missing" in rows["segments"]
    next_line = next(line for line in result.stdout.splitlines() if line.startswith("Next:"))
    assert "bmc run bmc-segments" in next_line
