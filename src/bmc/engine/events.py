"""What the engine tells a surface, as typed events (SPEC section 12).

A surface (the terminal, the web page, a test) learns everything about a running
conversation from these and from nothing else: it renders them, and answers through the
engine's API (`engine.Conversation.send`, `answer`, `stop`). Plain frozen dataclasses, no
behaviour, so any surface can serialise them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ReplyStarted:
    """The model was asked; its reply will stream as `TextDelta`s."""


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ReplyDropped:
    """The reply broke off mid-stream and is being asked again; forget what streamed."""

    reason: str


@dataclass(frozen=True)
class ReplyFinished:
    pass


@dataclass(frozen=True)
class ToolLine:
    """One tool call and its outcome (`text` is what the model was told)."""

    name: str
    summary: str
    text: str
    is_error: bool


@dataclass(frozen=True)
class Notice:
    text: str


@dataclass(frozen=True)
class WaitingForMessage:
    """The model handed back: the consultant's turn (`Conversation.send` or `stop`)."""

    session_id: str


@dataclass(frozen=True)
class AgreementRequested:
    """A document to present for agreement; answer with `Conversation.answer`.

    `digest` covers exactly `markdown`'s bytes; the answer must carry it. `changed_from` is
    the digest shown before, when the document changed under the person and this is the
    new version (nothing was agreed)."""

    stage: str
    what: str
    document: str
    digest: str
    items: list[str]
    scope: str
    markdown: str
    changed_from: str | None = None


@dataclass(frozen=True)
class AgreementRecorded:
    gate: str
    stale: list[str] = field(default_factory=list)  # later gates this agreement made stale


@dataclass(frozen=True)
class Usage:
    """Token use and cost so far, after every model turn; `summary` (one line) is filled
    in the last one of a run, before `Stopped`."""

    turns: int
    cost: float
    summary: str


@dataclass(frozen=True)
class Stopped:
    """The conversation ended; the last event. `exit_code` as SPEC section 8 defines it."""

    exit_code: int
    reason: str
    session_id: str | None


Event = (
    ReplyStarted
    | TextDelta
    | ReplyDropped
    | ReplyFinished
    | ToolLine
    | Notice
    | WaitingForMessage
    | AgreementRequested
    | AgreementRecorded
    | Usage
    | Stopped
)
