"""The `request_agreement` tool: the model asks, the runner shows, only a person says yes.

The model never writes a gate: this handler is the only path from a conversation to an
`.agreed.md` file, and it needs an explicit `yes` typed by the consultant (or the next stdin
line when piped). Anything else the consultant types goes back to the model as feedback.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import Any, Protocol

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel

from . import gate
from .errors import BmcError
from .outcome import ToolOutcome
from .skills import Skill
from .workspace import Project

DEFINITION: dict[str, Any] = {
    "name": "request_agreement",
    "description": (
        "Ask the consultant to confirm that the client agrees a document (for this skill, the "
        "document its gate copies). The runner checks the document and what it depends on, "
        "shows the consultant exactly what will be agreed and waits for their answer. The "
        "result is either 'agreed' or the consultant's feedback to work on. Only call it when "
        "the consultant has said the client is ready to agree."
    ),
    "input_schema": {
        "type": "object",
        "properties": {
            "document": {
                "type": "string",
                "description": "Project-relative path, e.g. segments/segments.md",
            },
            "scope_notes": {
                "type": "string",
                "description": "Scope notes for the decisions log (optional).",
            },
        },
        "required": ["document"],
    },
}

PROMPT = "Does the client agree? Type yes (optionally `yes, <client contact>`), or their feedback: "


class Asker(Protocol):
    def answer(self, prompt: str) -> str | None: ...


class PausedForAgreement(Exception):
    """Input ended at the agreement prompt: the session waits, nothing is agreed."""


def make_handler(
    project: Project,
    skill: Skill,
    consultant: Asker,
    console: Console,
    check: gate.Checker,
    summarise: gate.Summariser,
    agreed_by: Callable[[], str] = gate.consultant_name,
) -> Callable[[dict[str, Any]], ToolOutcome]:
    def handle(tool_input: dict[str, Any]) -> ToolOutcome:
        # normpath alone keeps a leading `../` (which names no stage and is refused); a
        # character strip like lstrip("./") would have turned `../x` into `x`.
        document = posixpath.normpath(str(tool_input.get("document", "")).strip() or ".")
        stage = gate.stage_for_document(document)
        if stage is None or stage.gate != skill.gate:
            expected = skill.gate.replace(".agreed.md", ".md") if skill.gate else "nothing"
            return ToolOutcome(f"this skill agrees {expected}, not {document!r}.", is_error=True)
        try:
            proposal = gate.propose(project, stage, check, summarise)
        except BmcError as err:
            return ToolOutcome(str(err), is_error=True)
        if proposal.problems:
            listing = "\n".join(f"- {p}" for p in proposal.problems)
            return ToolOutcome(
                f"{document} is not ready to agree; fix these first:\n{listing}", is_error=True
            )
        nxt = f" Tell the consultant the next step is `bmc run {skill.next}`." if skill.next else ""
        if gate.gate_state(project, stage) == "agreed":
            # Typically a session paused here while the consultant ran `bmc agree` outside.
            return ToolOutcome(
                f"agreed: {stage.gate} already holds exactly this document "
                f"(agreed outside this chat).{nxt}"
            )
        scope = str(tool_input.get("scope_notes") or "")
        show_proposal(console, proposal, scope)
        answer = consultant.answer(PROMPT)
        if answer is None:
            raise PausedForAgreement
        parsed = gate.parse_answer(answer)
        if not parsed.agreed:
            return ToolOutcome(f"The consultant did not agree yet. Their feedback: {answer}")
        who = gate.signatories(agreed_by(), parsed.contact)
        try:
            gate.agree(project, proposal, scope=scope, agreed_by=who)
        except BmcError as err:
            return ToolOutcome(str(err), is_error=True)
        console.print(f"[green]Agreed:[/green] {stage.gate} written and recorded in decisions.md.")
        return ToolOutcome(f"agreed: {stage.gate} written and recorded in decisions.md.{nxt}")

    return handle


def show_proposal(console: Console, proposal: gate.Proposal, scope: str) -> None:
    # Item names and scope come from the document and the model: escaped, so text like
    # `[/bold]` cannot crash the panel and `[white on white]` cannot hide words from the
    # person who is about to agree them.
    lines = [f"[bold]{escape(proposal.stage.document)}[/bold]  ({proposal.digest})", ""]
    lines += [f"• {escape(item)}" for item in proposal.details] or ["(no items found)"]
    if scope:
        lines += ["", f"Scope: {escape(scope)}"]
    console.print(Panel("\n".join(lines), title=f"Agree: {proposal.stage.what}", expand=False))
