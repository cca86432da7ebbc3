"""The one agreement flow: propose, present, answer, record (SPEC sections 6 and 12).

Every surface goes through it: the `request_agreement` tool in a chat, `bmc agree` outside
one, and the web page. A surface only presents a `Proposal` and returns the person's
`Answer`; what an answer means, and what it writes, is decided here and in `gate`.

Threat: a gate written without a person's yes. The model can only call the tool, whose
handler ends in `negotiate`; a yes comes from the surface's `ask`, never from the model's
input. Threat: a yes to bytes nobody saw. An answer carries the digest of what the person
was shown, and `answer` compares it with the file as it is now: if they differ nothing is
agreed and the surface is handed the new version to show (`Changed`). Threat: a yes with
conditions ("yes, but drop segment 3") recorded as agreement: `parse_answer` reads it as
feedback. Threat: two surfaces answering one agreement: the first answer wins, the second
finds the gate already holding those bytes (`AlreadyAgreed`).
"""

from __future__ import annotations

import os
import posixpath
import subprocess
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from bmc.documents import gate
from bmc.engine.events import AgreementRequested
from bmc.engine.lock import ProjectLock
from bmc.errors import BmcError, PrerequisiteError, UserError
from bmc.workspace.paths import Project

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

YES = frozenset({"y", "yes"})

# Words that make "yes, ..." a condition rather than a name: "yes, but drop segment 3" is
# the client's feedback, and agreeing to it would record a yes nobody gave.
CONDITIONS = frozenset(
    {
        "but", "if", "only", "once", "provided", "providing", "unless", "except", "when",
        "after", "pending", "subject", "assuming", "although", "though", "as", "so", "and",
        "with", "without",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Answer:
    """A person's answer to a proposal: yes (with the client's contact, if given) or the
    client's feedback. `digest` is what they were shown."""

    agreed: bool
    digest: str
    contact: str = ""
    feedback: str = ""


def parse_answer(text: str, digest: str) -> Answer:
    """A typed answer: an explicit yes, optionally naming the client's contact (`yes, Fiona
    Galbraith, Commercial Director`); anything else, a conditional yes included, is feedback."""
    head, _, rest = text.partition(",")
    if head.strip().lower().rstrip(".!") not in YES:
        return Answer(False, digest, feedback=text.strip())
    rest = rest.strip()
    first = rest.split(maxsplit=1)[0].lower().strip(".,;:!") if rest else ""
    if first in CONDITIONS:
        return Answer(False, digest, feedback=text.strip())
    return Answer(True, digest, contact=rest)


def consultant_name(explicit: str | None = None) -> str:
    """Who signs for the firm: `--as`, else $BMC_CONSULTANT, else git's user.name."""
    if explicit:
        return explicit
    if os.environ.get("BMC_CONSULTANT"):
        return os.environ["BMC_CONSULTANT"]
    try:
        found = subprocess.run(
            ["git", "config", "user.name"], capture_output=True, text=True, timeout=2, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        found = ""
    return found or os.environ.get("USER") or "the consultant"


def signatories(consultant: str, contact: str) -> str:
    """The decisions entry's "Agreed by" value."""
    return f"{consultant} (consultant)" + (f"; {contact} (client)" if contact else "")


# --- what an answer leads to ----------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    """The gate and its decisions entry are written; `stale` are the later gates it made stale."""

    stage: gate.Stage
    entry: str
    stale: list[gate.Stage] = field(default_factory=list)


@dataclass(frozen=True)
class Declined:
    feedback: str


@dataclass(frozen=True)
class Changed:
    """The document changed after it was shown: nothing was agreed; show `proposal`."""

    proposal: gate.Proposal


@dataclass(frozen=True)
class AlreadyAgreed:
    """Another surface (or `bmc agree`) agreed exactly these bytes first."""

    stage: gate.Stage


Result = Recorded | Declined | Changed | AlreadyAgreed


def stage_for(document: str, gates: tuple[str, ...] | str | None) -> gate.Stage:
    """The stage a `request_agreement` names, if its gate is one this skill may write
    (`Skill.agreeable`: its own gate, or the gates it `agrees` again, such as bmc-iterate's)."""
    allowed = (gates,) if isinstance(gates, str) else tuple(gates or ())
    # normpath alone keeps a leading `../` (which names no stage and is refused); a
    # character strip like lstrip("./") would have turned `../x` into `x`.
    normal = posixpath.normpath(document.strip() or ".")
    stage = gate.stage_for_document(normal)
    if stage is None or stage.gate not in allowed:
        documents = [g.replace(".agreed.md", ".md") for g in allowed]
        expected = " or ".join(documents) if documents else "nothing"
        raise UserError(f"this skill agrees {expected}, not {normal!r}.")
    return stage


def presented(
    proposal: gate.Proposal, scope: str, changed_from: str | None = None
) -> AgreementRequested:
    """What a surface shows of a proposal: the event every surface renders."""
    return AgreementRequested(
        stage=proposal.stage.key,
        what=proposal.stage.what,
        document=proposal.stage.document,
        digest=proposal.digest,
        items=list(proposal.details),
        scope=scope,
        markdown=proposal.data.decode("utf-8", errors="replace"),
        changed_from=changed_from,
    )


def answer(
    project: Project, shown: gate.Proposal, reply: Answer, *, consultant: str, scope: str
) -> Result:
    """Act on a person's answer to `shown`. Call it under the project's lock."""
    if not reply.agreed:
        return Declined(reply.feedback)
    stage = shown.stage
    current = gate.propose(project, stage)
    if current.gate_digest == reply.digest != shown.gate_digest:
        return AlreadyAgreed(stage)  # another surface answered first, with a yes
    if current.digest != reply.digest or current.problems:
        return Changed(current)
    try:
        entry = gate.agree(
            project, current, scope=scope, agreed_by=signatories(consultant, reply.contact)
        )
    except UserError:  # changed between our read and the gate's: show what is there now
        return Changed(gate.propose(project, stage))
    stale = [s for s in gate.downstream_of(stage) if (project.project_dir / s.gate).exists()]
    return Recorded(stage, entry, stale)


# What a surface does to present a proposal and get the person's answer: None means no
# answer came (end of input, a stop), and the agreement stays pending. `changed_from` is
# the digest of the version shown before, when the document changed under the person.
Ask = Callable[[gate.Proposal, str, str | None], Answer | None]


class Unanswered(Exception):
    """No answer came (end of input, a stop): nothing is agreed, the request stays pending."""


def negotiate(
    project: Project,
    proposal: gate.Proposal,
    *,
    scope: str,
    consultant: str,
    ask: Ask,
    recording: Callable[[], AbstractContextManager[Any]],
) -> Result:
    """Present, answer, and present again for as long as the document changes under the
    person; ends with the answer's result. The person is asked with no lock held; the
    answer is acted on inside `recording` (the project's lock, the journal committed).
    Raises `Unanswered` when no answer comes."""
    shown, changed_from = proposal, None
    while True:
        reply = ask(shown, scope, changed_from)
        if reply is None:
            raise Unanswered
        with recording():
            result = answer(project, shown, reply, consultant=consultant, scope=scope)
        if not isinstance(result, Changed) or result.proposal.problems:
            return result
        changed_from, shown = shown.digest, result.proposal


def agree_outside(
    project: Project,
    stage: gate.Stage,
    *,
    scope: str,
    consultant: str,
    ask: Ask,
    notify: Callable[[str], None],
) -> Result:
    """`bmc agree`: the same flow with no conversation. The lock is held to repair and read,
    let go while the person decides, and taken again to record."""
    label = f"bmc agree {stage.key}"
    with ProjectLock(project).hold(label):
        note = gate.repair_decisions(project)
        if note:
            notify(f"Repaired: {note}.")
        proposal = check_ready(project, stage)
    return negotiate(
        project,
        proposal,
        scope=scope,
        consultant=consultant,
        ask=ask,
        recording=lambda: ProjectLock(project).hold(label),
    )


def describe(result: Result, next_skill: str | None) -> tuple[str, bool]:
    """What the model is told of a result, and whether it is an error."""
    nxt = f" Tell the consultant the next step is `bmc run {next_skill}`." if next_skill else ""
    if isinstance(result, Recorded):
        stale = ""
        if result.stale:
            gates = ", ".join(s.gate for s in result.stale)
            stale = f" Built on it, and out of date until agreed again: {gates}."
        return (
            f"agreed: {result.stage.gate} written and recorded in decisions.md.{stale}{nxt}",
            False,
        )
    if isinstance(result, AlreadyAgreed):
        return (
            f"agreed: {result.stage.gate} already holds exactly this document "
            f"(agreed outside this chat).{nxt}",
            False,
        )
    if isinstance(result, Declined):
        return f"The consultant did not agree yet. Their feedback: {result.feedback}", False
    listing = "\n".join(f"- {p}" for p in result.proposal.problems)
    return (
        f"{result.proposal.stage.document} changed after it was shown and is not ready to "
        f"agree; nothing was agreed. Fix these first:\n{listing}",
        True,
    )


def check_ready(project: Project, stage: gate.Stage) -> gate.Proposal:
    """The proposal, or `NotReady` saying what to fix first; a stage whose upstream is not
    agreed as it stands now (changed since, or built on a stage agreed again) cannot be
    agreed: the chain is agreed in order, the segments before the canvas."""
    check_chain(project, stage)
    proposal = gate.propose(project, stage)
    if proposal.problems:
        raise NotReady(stage.document, proposal.problems)
    return proposal


def check_chain(project: Project, stage: gate.Stage) -> None:
    """Refuse (exit 2) while a stage `stage` builds on is not agreed as it stands.

    Threat: a canvas agreed on segments the client is still changing: the segments document
    differs from its gate, so the canvas would be signed off against segments nobody agreed."""
    for upstream in reversed(gate.upstream_of(stage)):  # the earliest first: agree in order
        if gate.gate_state(project, upstream) != "stale":
            continue
        if gate.reagreed_upstream(project, upstream):
            why = "was agreed before a stage it builds on was agreed again"
        else:
            why = f"changed since it was agreed ({upstream.document})"
        raise PrerequisiteError(
            f"the {upstream.key} stage {why}: agree the {upstream.key} again before the "
            f"{stage.key} (request_agreement on {upstream.document}, or "
            f"`bmc agree {upstream.key}`)."
        )


class NotReady(BmcError):
    """The document (or what it depends on) has problems: nothing can be agreed yet."""

    def __init__(self, document: str, problems: list[str]) -> None:
        self.document, self.problems = document, problems
        super().__init__(f"{document} is not ready to agree: {'; '.join(problems[:5])}")

    def listing(self) -> str:
        """Every problem, a line each (for the model, which fixes them all at once)."""
        lines = "\n".join(f"- {p}" for p in self.problems)
        return f"{self.document} is not ready to agree; fix these first:\n{lines}"
