"""The conversations this server is running, and their events on their way to the pages.

One `Live` per project: the engine's `Conversation` (driven through its API only), every
event it sent as a JSON-ready dict with a sequence number, and the open pages listening.
A pump thread reads the engine's events and hands each to the server's event loop; a page
that connects (or reconnects after a restart of its tab) gets every event of the run so far,
then each new one as it comes (`subscribe`). Two tabs on one project share one `Live`, so
either may answer an agreement, and the engine lets only the first answer count.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from bmc.engine import agreement, events
from bmc.workspace.paths import Project

Key = tuple[str, str]
_END: dict[str, Any] = {}  # put in a page's queue to end its stream (compared by identity)


def key_of(project: Project) -> Key:
    return (project.org, project.slug)


class Live:
    """One running conversation and its event log."""

    def __init__(
        self,
        project: Project,
        conversation: Any,
        loop: asyncio.AbstractEventLoop,
        render: Any,
        opening: str | None = None,
    ) -> None:
        self.project = project
        self.conversation = conversation
        self.log: list[dict[str, Any]] = []
        self.state = "working"  # working | message | agreement | stopped
        self.turns, self.cost = 0, 0.0
        self._loop = loop
        self._render = render  # markdown -> safe HTML, for finished replies and documents
        self._listeners: set[asyncio.Queue[dict[str, Any]]] = set()
        self._guard = threading.Lock()
        self._reply: list[str] = []
        self._ids = itertools.count(1)
        # Event ids are `<run>-<n>`: a tab reconnecting with the Last-Event-ID of another
        # run (before a restart of the server, or of an earlier session) gets this run's
        # events from the start, not only those numbered above its old count.
        self.run = secrets.token_hex(4)
        if opening:
            # The consultant's own words are no event of the engine's, but a reload or a
            # second tab must see what the assistant is answering.
            with self._guard:
                self._append({"type": "ConsultantSaid", "text": opening})
        self._pump = threading.Thread(target=self._run, daemon=True, name="bmc-web-pump")
        self._pump.start()

    # --- what pages ask for ---------------------------------------------------------------

    def after(self, last_event_id: str | None) -> int:
        """The number of the last event a reconnecting page saw of this run (0: none)."""
        run, _, number = (last_event_id or "").strip().rpartition("-")
        if run != self.run:
            return 0
        try:
            return max(0, int(number))
        except ValueError:
            return 0

    async def subscribe(self, after: int = 0) -> AsyncIterator[dict[str, Any]]:
        """Every event with an id above `after`, then each new one, until the run stops."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        with self._guard:
            backlog = [e for e in self.log if e["id"] > after]
            self._listeners.add(queue)
        try:
            for event in backlog:
                yield event
            last = backlog[-1]["id"] if backlog else after
            if backlog and backlog[-1]["type"] == "Stopped":
                return
            while True:
                event = await queue.get()
                if event is _END:
                    return
                if event["id"] <= last:
                    continue
                yield event
                if event["type"] == "Stopped":
                    return
        finally:
            with self._guard:
                self._listeners.discard(queue)

    def end_streams(self) -> None:
        """End every page's stream of this run now; their pages reconnect by themselves."""
        with self._guard:
            listeners = list(self._listeners)
        for queue in listeners:
            self._loop.call_soon_threadsafe(queue.put_nowait, _END)

    @property
    def pending(self) -> dict[str, Any] | None:
        """The agreement waiting for an answer, as the page shows it."""
        with self._guard:
            if self.state != "agreement":
                return None
            return next((e for e in reversed(self.log) if e["type"] == "AgreementRequested"), None)

    @property
    def running(self) -> bool:
        return self.state != "stopped"

    def send(self, text: str) -> None:
        """The consultant's message. The engine takes one per hand-back (a second click on
        Send is refused there, in one sentence)."""
        with self._guard:
            self.conversation.send(text)
            self.state = "working"
            # Logged under the guard the pump needs to publish: before any reply to it.
            self._append({"type": "ConsultantSaid", "text": text})

    def answer(self, reply: agreement.Answer) -> None:
        """A person's answer; the engine takes one per agreement shown."""
        with self._guard:
            self.conversation.answer(reply)
            self.state = "working"

    def stop(self) -> None:
        self.conversation.stop()

    def join(self, timeout: float) -> None:
        """Wait until the conversation has ended and its last event is published."""
        self._pump.join(timeout)

    # --- the pump ---------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            for event in self.conversation.events():
                self._publish(event)
        finally:
            # `wait` re-raises what ended the run; the page has it in the Stopped event.
            with contextlib.suppress(BaseException):
                self.conversation.wait(timeout=5)

    def _publish(self, event: events.Event) -> None:
        data = {"type": type(event).__name__, **dataclasses.asdict(event)}
        with self._guard:  # the state changes with the log, as `send` and `answer` read it
            self._note(event, data)
            self._append(data)

    def _append(self, data: dict[str, Any]) -> None:
        """Number the event, keep it, and hand it to every open page. Hold `_guard`."""
        data["id"] = next(self._ids)
        data["run"] = self.run
        self.log.append(data)
        for queue in self._listeners:
            self._loop.call_soon_threadsafe(queue.put_nowait, data)

    def _note(self, event: events.Event, data: dict[str, Any]) -> None:
        """Keep the state a page needs, and add the HTML only the server may make."""
        if isinstance(event, events.ReplyStarted | events.ReplyDropped):
            self._reply = []
        elif isinstance(event, events.TextDelta):
            self._reply.append(event.text)
        elif isinstance(event, events.ReplyFinished):
            # The page streams a reply as plain text, then swaps in this: the markdown
            # rendered here with raw HTML off, so nothing the model wrote runs as code.
            data["html"] = self._render("".join(self._reply)) if self._reply else ""
            self._reply = []
        elif isinstance(event, events.AgreementRequested):
            data["html"] = self._render(event.markdown)
            self.state = "agreement"
        elif isinstance(event, events.WaitingForMessage):
            self.state = "message"
        elif isinstance(event, events.AgreementRecorded):
            self.state = "working"
        elif isinstance(event, events.Usage):
            self.turns, self.cost = event.turns, event.cost
        elif isinstance(event, events.Stopped):
            self.state = "stopped"
        if self.state in ("message", "agreement") and isinstance(
            event, events.TextDelta | events.ReplyStarted
        ):
            self.state = "working"


class Hub:
    """The live conversations of this server, one per project at most."""

    def __init__(self, render: Callable[[str], str]) -> None:
        self._live: dict[Key, Live] = {}
        self._guard = threading.Lock()
        self._render = render

    def get(self, project: Project) -> Live | None:
        with self._guard:
            return self._live.get(key_of(project))

    def running(self, project: Project) -> Live | None:
        live = self.get(project)
        return live if live is not None and live.running else None

    def begin(
        self, project: Project, open_conversation: Callable[[], Any], opening: str | None = None
    ) -> Live:
        """Run what `open_conversation` starts (or resumes), unless one already runs here."""
        with self._guard:
            current = self._live.get(key_of(project))
            if current is not None and current.running:
                return current
            loop = asyncio.get_running_loop()
            live = Live(project, open_conversation(), loop, self._render, opening)
            self._live[key_of(project)] = live
            return live

    def end_streams(self) -> None:
        """End every open page's event stream: the server is stopping, and an open stream
        would otherwise hold its graceful shutdown (and so the sessions' saving) until the
        tab is closed. Call it from the server's exit signal, before the lifespan ends."""
        with self._guard:
            lives = list(self._live.values())
        for live in lives:
            live.end_streams()

    def stop_all(self, wait: float = 10.0) -> None:
        """Stop every running conversation and wait (up to `wait` seconds in all) for each to
        save itself: the server's process may end as soon as this returns."""
        with self._guard:
            lives = list(self._live.values())
        for live in lives:
            if live.running:
                live.stop()
        deadline = time.monotonic() + wait
        for live in lives:
            live.join(max(0.0, deadline - time.monotonic()))
