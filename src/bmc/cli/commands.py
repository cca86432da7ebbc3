"""`bmc`: the command line (SPEC section 8).

Every command turns a `BmcError` into one sentence on stderr and its exit code. Commands
that need no model never import the SDK (`runner` is imported inside the commands that
talk to one), so `bmc --help`, `status` or `skills` answer at once.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from bmc.errors import BmcError, UserError
from bmc.workspace.paths import Project, infer_from_cwd, init_project, locate


def _workspace(workspace: str | None) -> Path:
    """--workspace, else $BMC_WORKSPACE, else the workspace holding the project folder you
    are in, else the current folder."""
    chosen = workspace or os.environ.get("BMC_WORKSPACE")
    if chosen:
        return Path(chosen).expanduser()
    inferred = infer_from_cwd(Path.cwd())
    return inferred[0] if inferred else Path.cwd()


def _project(workspace: str | None, org: str | None, project: str | None) -> Project:
    """The project a command is pointed at by `project_options`, or one sentence asking."""
    base = _workspace(workspace)
    inferred = infer_from_cwd(Path.cwd())
    # The folder you are in names the project only when it lies in the workspace in use
    # (so $BMC_WORKSPACE does not switch inference off), and only for its own
    # organisation: `--org other` inside tidewater's project must not borrow its slug.
    if inferred and base.resolve() == inferred[0] and org in (None, inferred[1]):
        org = inferred[1]
        project = project or inferred[2]
    if not org or not project:
        raise UserError(
            "which project? Pass --org and --project, or run the command inside "
            "clients/<org>/projects/<project>."
        )
    return locate(base, org, project)


_WORKSPACE = click.option(
    "--workspace",
    type=click.Path(file_okay=False),
    help="Workspace folder (default: $BMC_WORKSPACE or the current folder).",
)
_SKILLS_DIR = click.option(
    "--skills-dir",
    type=click.Path(file_okay=False, exists=True),
    help="A folder of extra or overriding skills.",
)
_PROVIDER = click.option(
    "--provider",
    type=click.Choice(["anthropic", "bedrock", "vertex"]),
    default="anthropic",
    show_default=True,
    help="Reach Claude directly, or through AWS Bedrock or Google Vertex AI.",
)
_PORT = click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)


def project_options(fn: Any) -> Any:
    fn = click.option(
        "--project", "project", help="Project slug (default: the project folder you are in)."
    )(fn)
    fn = click.option("--org", help="Organisation slug (default: from the folder you are in).")(fn)
    return _WORKSPACE(fn)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bmc")
def cli() -> None:
    """Run Business Model Canvas engagements with a Claude model: the model drafts from the
    client's research, only a person agrees."""


@cli.command()
@click.argument("org")
@click.argument("project")
@click.option("--name", help='The organisation\'s display name, e.g. "Tidewater Ferries Ltd".')
@_WORKSPACE
def init(org: str, project: str, name: str | None, workspace: str | None) -> None:
    """Create clients/ORG/projects/PROJECT with org.md and a .gitignore for runner state."""
    # Run inside an existing project, the new one goes beside it, not nested inside it.
    created = init_project(_workspace(workspace), org, project, name)
    click.echo(f"Project ready: {created.project_dir}")
    click.echo(
        f"Put the client's research in {created.resources_dir} "
        f"(or raw files in {created.inbox_dir})."
    )


@cli.command()
@_SKILLS_DIR
def skills(skills_dir: str | None) -> None:
    """List the skills this installation can run, in chain order."""
    from bmc.documents.skills import WARNING, cautions, scan_skills

    scan = scan_skills(Path(skills_dir) if skills_dir else None)
    for skill in scan.skills:
        needs = f"  (needs: {' '.join(skill.requires)})" if skill.requires else ""
        click.echo(
            f"{skill.stage or '-':>2}  {skill.name:<16} {skill.description.split('. ')[0]}{needs}"
        )
        for caution in cautions(skill):
            loud = caution.startswith(WARNING)
            click.echo(f"    {caution if loud else 'note: ' + caution}.", err=loud)
    for problem in scan.problems:
        click.echo(f"not loaded: {problem}", err=True)


def _run_options(
    model: str | None,
    skills_dir: str | None,
    max_turns: int | None,
    max_cost: float | None,
    max_turns_per_message: int,
    provider: str,
    agreed_as: str | None,
) -> Any:
    """The options of a model run, with its client (one sentence if the key is missing)."""
    from bmc.engine.api import RunOptions, make_client
    from bmc.engine.loop import Limits

    limits = Limits(max_turns=max_turns, max_cost=max_cost, turns_per_message=max_turns_per_message)
    return RunOptions(
        model=model,
        skills_dir=Path(skills_dir) if skills_dir else None,
        limits=limits,
        provider=provider,
        client=make_client(provider),
        agreed_as=agreed_as,
    )


def model_options(fn: Any) -> Any:
    fn = click.option(
        "--as",
        "agreed_as",
        help="Who signs agreements in this session (default: $BMC_CONSULTANT or git's user.name).",
    )(fn)
    fn = _PROVIDER(fn)
    fn = click.option(
        "--max-cost", type=float, help="Stop (resumable) once the run has cost this many dollars."
    )(fn)
    fn = click.option(
        "--max-turns-per-message",
        type=click.IntRange(min=1),
        default=60,
        show_default=True,
        help="Stop (resumable) when the model works this many turns without handing back.",
    )(fn)
    fn = click.option(
        "--max-turns", type=int, help="Stop (resumable) after this many model turns."
    )(fn)
    fn = _SKILLS_DIR(fn)
    fn = click.option(
        "--model", help="Claude model id (default: $BMC_MODEL or claude-sonnet-5-5)."
    )(fn)
    return fn


@cli.command()
@click.argument("skill")
@click.option("--message", "-m", help="Your opening words to the assistant.")
@click.option("--web", is_flag=True, help="Offer the model the endpoint's server-side web search.")
@click.option(
    "--record",
    type=click.Path(dir_okay=False, writable=True),
    help="Also save the session as a scenario the scripted model can replay (a regression test).",
)
@project_options
@model_options
def run(
    skill: str,
    message: str | None,
    web: bool,
    record: str | None,
    workspace: str | None,
    org: str | None,
    project: str | None,
    **model_options: Any,
) -> None:
    """Start a conversation running SKILL on the project."""
    where = _project(workspace, org, project)
    skills_dir = model_options["skills_dir"]
    _preflight_run(where, skill, Path(skills_dir) if skills_dir else None)
    if web and record:
        raise UserError(
            "--record cannot be used with --web: web search results come from the endpoint "
            "and could not be replayed offline."
        )
    options = _run_options(**model_options)
    options.web = web

    def start(terminal: Any, display: Any, consultant: Any) -> None:
        session = terminal.start(where, skill, options, display, consultant, opening=message)
        if record and session is not None:
            from bmc.engine.scenario import write_scenario

            write_scenario(session, Path(record))
            display.notice(f"Scenario saved to {record}.")

    _converse(start)


@cli.command()
@click.argument("session_id", required=False)
@project_options
@model_options
def resume(
    session_id: str | None,
    workspace: str | None,
    org: str | None,
    project: str | None,
    **model_options: Any,
) -> None:
    """Continue the latest session (or SESSION_ID) where it stopped."""
    where = _project(workspace, org, project)
    _preflight_resume(where, session_id)
    options = _run_options(**model_options)
    _converse(
        lambda terminal, display, consultant: terminal.resume(
            where, session_id, options, display, consultant
        )
    )


# The checks below are read-only and run again inside the runner; doing them first, before
# the project's lock is taken, means a run refused for an unknown or broken skill, a missing
# prerequisite, a missing key or an unusable session writes nothing at all, not even the
# lock file and its holder note in .bmc/. The skill and session checks come before the SDK
# is imported (`runner` imports it), so those mistakes are reported at once.


def _preflight_run(project: Project, skill_name: str, skills_dir: Path | None) -> None:
    from bmc.documents.skills import check_requires, load_skill

    check_requires(load_skill(skill_name, skills_dir), project)


def _preflight_resume(project: Project, session_id: str | None) -> None:
    from bmc.engine.journal import read_journal
    from bmc.engine.session import session_path

    read_journal(session_path(project, session_id))  # raises on a damaged journal


def _converse(action: Any) -> None:
    """Run a conversation in this terminal; the engine takes the project's lock itself."""
    from bmc.terminal import chat as ui

    display = ui.TerminalDisplay()
    action(ui, display, ui.Consultant(display.console))


def _repair_when_free(project: Project) -> None:
    """Finish an agreement a crash interrupted before a model-free command reads the gates
    (SPEC section 6: "repaired on the next command"), unless a session holds the project:
    its agreement may be under way, and the session repairs it itself."""
    from bmc.documents.gate import needs_repair

    if not needs_repair(project):
        return
    from bmc.documents.gate import repair_decisions
    from bmc.engine.lock import ProjectLock

    try:
        with ProjectLock(project).hold("repair"):
            note = repair_decisions(project)
    except UserError:
        return
    if note:
        click.echo(f"Repaired: {note}.", err=True)


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    """A table on stdout for the model-free commands, which must not load the SDK (SPEC
    section 8: they answer at once)."""
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for header in headers:
        # Folded, never cut with an ellipsis: a document's path is how the person (or a
        # model reading the output) finds the file a problem belongs to.
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    Console(highlight=False).print(table)


@cli.command()
@project_options
def sessions(workspace: str | None, org: str | None, project: str | None) -> None:
    """List the project's sessions with their status, turns and cost."""
    from bmc.engine.session import list_sessions

    where = _project(workspace, org, project)
    rows = [
        [s.id, s.skill, s.status, s.turns, f"${s.cost:.4f}", s.updated]
        for s in list_sessions(where)
    ]
    if not rows:
        click.echo("No sessions yet: start one with `bmc run <skill>`.")
        return
    print_table(["session", "skill", "status", "turns", "cost", "updated"], rows)


@cli.command()
@click.argument("files", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON for scripts.")
@project_options
def validate(
    files: tuple[str, ...],
    as_json: bool,
    workspace: str | None,
    org: str | None,
    project: str | None,
) -> None:
    """Check the project's documents (or FILES) with no model: exit 0 when all that exist
    are valid."""
    import json

    from bmc.documents.validate import validate_project

    where = _project(workspace, org, project)
    reports = validate_project(where, list(files) or None)
    if as_json:
        click.echo(json.dumps([r.__dict__ for r in reports], indent=2, ensure_ascii=False))
    else:
        rows = [
            [r.path, r.status, "\n".join([*r.problems, *(f"warning: {w}" for w in r.warnings)])]
            for r in reports
        ]
        print_table(["document", "status", "problems"], rows)
    if any(r.status == "invalid" for r in reports):
        sys.exit(1)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the stages as JSON for scripts.")
@project_options
def status(as_json: bool, workspace: str | None, org: str | None, project: str | None) -> None:
    """Show each stage (missing, drafting, valid, agreed, stale) and the next step."""
    import json

    from bmc.documents.status import project_status

    where = _project(workspace, org, project)
    _repair_when_free(where)
    report = project_status(where)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
        return
    rows = [[s.key, s.document, s.state, s.detail] for s in report.stages]
    print_table(["stage", "document", "state", "detail"], rows)
    click.echo(f"Next: {report.next_step}")


@cli.command()
@click.argument("stage")
@click.option("--as", "agreed_as", help="Who agrees (default: $BMC_CONSULTANT or git's user.name).")
@click.option("--scope", default="", help="Scope notes for the decisions log.")
@project_options
def agree(
    stage: str,
    agreed_as: str | None,
    scope: str,
    workspace: str | None,
    org: str | None,
    project: str | None,
) -> None:
    """Agree STAGE (brief, segments, canvas) outside a chat: shows it, asks for an explicit yes."""
    from bmc.documents import gate
    from bmc.engine import agreement
    from bmc.terminal.chat import Consultant, TerminalDisplay, ask_agreement

    where = _project(workspace, org, project)
    chosen = gate.stage_named(stage)
    display = TerminalDisplay()
    consultant = Consultant(display.console)

    def ask(
        proposal: gate.Proposal, scope: str, changed_from: str | None
    ) -> agreement.Answer | None:
        return ask_agreement(
            display, consultant, agreement.presented(proposal, scope, changed_from), AGREE_PROMPT
        )

    try:
        result = agreement.agree_outside(
            where,
            chosen,
            scope=scope,
            consultant=agreement.consultant_name(agreed_as),
            ask=ask,
            notify=display.notice,
        )
    except agreement.Unanswered:
        click.echo("Nothing was agreed.")
        return
    if isinstance(result, agreement.Recorded):
        click.echo(f"Agreed: {chosen.gate} written and recorded in decisions.md.")
        for downstream in result.stale:
            click.echo(f"{downstream.gate} is now stale: agree the {downstream.key} stage again.")
    elif isinstance(result, agreement.AlreadyAgreed):
        click.echo(f"Already agreed: {chosen.gate} was written by another answer first.")
    elif isinstance(result, agreement.Changed):
        raise UserError(agreement.NotReady(chosen.document, result.proposal.problems).args[0])
    else:
        click.echo("Nothing was agreed.")


AGREE_PROMPT = (
    "Does the client agree? Type yes (optionally `yes, <client contact>`), "
    "or anything else to stop: "
)


@cli.command()
@click.argument("stage", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the versions as JSON for scripts.")
@project_options
def history(
    stage: str | None, as_json: bool, workspace: str | None, org: str | None, project: str | None
) -> None:
    """List the agreed versions of STAGE (default: every stage): number, date, who agreed,
    digest and the decisions.md entry each belongs to."""
    from bmc.cli.history import show_history

    where = _project(workspace, org, project)
    _repair_when_free(where)
    show_history(where, stage, as_json=as_json)


@cli.command()
@click.argument("stage")
@click.argument("a", required=False)
@click.argument("b", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the changes as JSON for scripts.")
@project_options
def diff(
    stage: str,
    a: str | None,
    b: str | None,
    as_json: bool,
    workspace: str | None,
    org: str | None,
    project: str | None,
) -> None:
    """What changed in STAGE between version A and B (numbers, or `working` for the document
    as it is now), in segments, value propositions, canvas items and evidence. With no A
    and B: the latest agreed version against the working document; with A alone: version A
    against the working document."""
    from bmc.cli.history import show_diff

    where = _project(workspace, org, project)
    _repair_when_free(where)
    show_diff(where, stage, a, b, as_json=as_json)


@cli.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@project_options
def import_(
    files: tuple[Path, ...], workspace: str | None, org: str | None, project: str | None
) -> None:
    """Turn the client's PDF, DOCX, PPTX, XLSX or HTML files into research sub-reports."""
    where = _project(workspace, org, project)
    try:
        import markitdown  # noqa: F401  (the optional extra; fail here with a clear sentence)

        from bmc.documents.importer import import_files
    except ImportError:
        raise UserError(
            "bmc import needs the optional converters: pip install 'bmc[import]'."
        ) from None
    for result in import_files(where, list(files)):
        click.echo(result.summary())


@cli.command()
@project_options
def render(workspace: str | None, org: str | None, project: str | None) -> None:
    """Write canvas/canvas.html and segments/segments.html for the client."""
    from bmc.documents.render import render_project

    where = _project(workspace, org, project)
    _repair_when_free(where)
    for path in render_project(where):
        click.echo(f"Wrote {path}")


@cli.group()
def export() -> None:
    """The deliverables the client keeps: an editable deck, a one-page PDF of the canvas."""


_OUT = click.option("--out", type=click.Path(path_type=Path), help="Write here instead.")


@export.command("pptx")
@click.option(
    "--template", type=click.Path(path_type=Path), help="The firm's own .pptx to build on."
)
@_OUT
@project_options
def export_pptx(template: Path | None, out: Path | None, **where: str | None) -> None:
    """Write canvas/canvas.pptx: the canvas slide and a slide per segment, editable."""
    from bmc.documents.deck import export_pptx as write_deck

    project = _project(**where)
    _repair_when_free(project)
    _say_written(*write_deck(project, out, template))


@export.command("pdf")
@_OUT
@project_options
def export_pdf(out: Path | None, **where: str | None) -> None:
    """Write canvas/canvas.pdf: the canvas on one A3 page, printed by your Chromium or Chrome."""
    from bmc.documents.canvas_pdf import export_pdf as write_pdf

    project = _project(**where)
    _repair_when_free(project)
    _say_written(*write_pdf(project, out))


def _say_written(path: Path, status: Any) -> None:
    shown = "the agreed canvas" if status.agreed else "the draft canvas, not agreed yet"
    click.echo(f"Wrote {path}: {shown}.")


@cli.command()
@_WORKSPACE
@_PORT
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Listen here; anything but this computer's loopback is shown a warning.",
)
@click.option("--no-browser", is_flag=True, help="Print the link; do not open a browser.")
@click.option("--new-token", is_flag=True, help="Make a new secret link (old ones stop working).")
def serve(workspace: str | None, port: int, host: str, no_browser: bool, new_token: bool) -> None:
    """Open the workspace in your browser: chat, documents, the canvas, and agreements."""
    from bmc.web.app import ServeOptions
    from bmc.web.server import serve as run_server

    options = ServeOptions(workspace=_workspace(workspace).resolve())
    run_server(
        options,
        host=host,
        port=port,
        open_browser=not no_browser,
        new_token=new_token,
        say=lambda line: click.echo(line),
    )


@cli.command()
@click.option(
    "--workspace",
    type=click.Path(file_okay=False),
    help="Keep the demo's workspace here (a new or empty folder).",
)
@click.option("--yes", is_flag=True, help="Answer yes at every agreement prompt (unattended run).")
@click.option("--serve", "in_browser", is_flag=True, help="Play it in the web workspace instead.")
@_PORT
@click.option("--no-browser", is_flag=True, help="With --serve: print the link only.")
def demo(workspace: str | None, yes: bool, in_browser: bool, port: int, no_browser: bool) -> None:
    """Play a scripted engagement on a sample client, offline, with no API key."""
    from bmc.cli.demo import run_demo, serve_demo

    target = Path(workspace) if workspace else None
    if in_browser:
        if yes:
            raise UserError("--yes answers in the terminal; with --serve you agree on the page.")
        serve_demo(target, port=port, open_browser=not no_browser)
        return
    run_demo(target, assume_yes=yes)


@cli.command("eval")
@click.argument("skill")
@click.option(
    "--model", help="Claude model id to measure (default: $BMC_MODEL or claude-sonnet-5-5)."
)
@click.option(
    "--repeat", type=click.IntRange(min=1), default=1, show_default=True, help="Runs per case."
)
@click.option(
    "--baseline",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A results.json of an earlier run to compare with.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="A new or empty folder for results.json, report.html and the runs' workspaces.",
)
@click.option(
    "--grade-with-model",
    is_flag=True,
    help="Also grade each expectation with a model-graded rubric.",
)
@click.option(
    "--scripted",
    is_flag=True,
    help="Replay each case's recorded scenario offline, even with a key.",
)
@click.option("--case", "cases", multiple=True, help="Run only this case id (repeatable).")
@click.option(
    "--skills-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="A firm's skills folder; its cases are read from ../evals/SKILL/evals.json.",
)
@_PROVIDER
def eval_(skill: str, cases: tuple[str, ...], **options: Any) -> None:
    """Measure SKILL against a model: run each eval case in a scratch workspace, grade it,
    write results.json and report.html. Without an API key (or with --scripted) cases replay
    their recorded scenarios on the scripted model. Exit 5: a pass rate fell below the
    --baseline's by more than the spread of its repeats (docs/eval.md)."""
    from bmc.evals.evaluate import EvalOptions, run_eval

    run_eval(skill, EvalOptions(cases=list(cases), **options), click.echo)


def main(argv: list[str] | None = None) -> None:
    """Entry point: one sentence and an exit code for every failure, never a traceback."""
    try:
        cli.main(args=argv, prog_name="bmc", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as err:
        # Click's own usage errors exit 2 by default; here 2 means a missing gate, so a
        # mistyped command is a user error (1) like any other.
        err.show()
        sys.exit(1)
    except BmcError as err:
        click.echo(f"bmc: {err}", err=True)
        sys.exit(err.exit_code)
    except OSError as err:
        click.echo(f"bmc: {err.strerror or err}: {err.filename or ''}".rstrip(": "), err=True)
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
