"""The model's file tools, confined to one project (SPEC section 4).

`read`, `write`, `edit`, `glob` and `grep` take the names and argument schemas of Anthropic's
`agent_toolset_20260401` file tools. That toolset has no tool to move or delete a file, so
`rename` (`file_path`, `new_path`) and `remove` (`file_path`) are ours, in the same style;
they are offered only to a skill that lists them in its `allowed-tools`, and reach only the
segment drafts (`Confinement.resolve_draft`). Path policy (what may be touched at all) lives in
`bmc.workspace.confine`; this module adds what each tool does, the caps that keep a hostile
or careless call cheap, the hand-edit protection (no write over bytes the model has not
seen), governed document validation, and livelock detection.

Nothing the model sends makes `Toolbox.run` raise: every refusal is a `ToolOutcome` with
`is_error=True` and a reason the model can act on.
"""

from __future__ import annotations

import codecs
import copy
import hashlib
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISDIR, S_ISREG
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bmc.crashpoints import crash_point
from bmc.workspace.confine import Confinement, Refused, Target, fs_reason
from bmc.workspace.outcome import ToolOutcome
from bmc.workspace.paths import Project, atomic_write, fsync_dir

Validator = Callable[[str, str], tuple[list[str], list[str]]]

CHUNK_BYTES = 1024 * 1024
GLOB_MAX_RESULTS = 200
WALK_MAX_ENTRIES = 50_000
GREP_MAX_LINES = 200
GREP_MAX_BYTES = 64 * 1024
GREP_SHOWN_CHARS = 400  # a longer matching line is shown around its match
GREP_SEARCHED_BYTES = 64 * 1024  # only this much of a line is searched (backtracking cost)
GREP_SECONDS = 10.0
LIVELOCK_REFUSALS = 3  # refusals of one path in a row for the very same problems
# Refusals of one path with no successful write to it in between, whatever the problems: a
# model alternating between two broken drafts never repeats itself three times running.
LIVELOCK_STREAK = 8
IMPORT_HINT = "convert it with `bmc import` and read the markdown it produces"
# Offered only to the skills whose `allowed-tools` name them (the others never need to).
OPTIONAL_TOOLS = ("rename", "remove")


# -- input schemas: one pydantic model per tool is the source of truth ---------------------


class _Input(BaseModel):
    # Strict: a "true" string or 1.5 is an error the model should see, not a silent coercion.
    model_config = ConfigDict(extra="forbid", strict=True)


_PATH_HELP = (
    "relative to the project folder (e.g. segments/drafts/retail.md); resources/, inbox/ and "
    "skill/ reach the client's research, the raw inbox and this skill's own files"
)


class ReadInput(_Input):
    file_path: str = Field(description=f"File to read, {_PATH_HELP}.")
    view_range: list[int] | None = Field(
        default=None,
        min_length=2,
        max_length=2,
        description="Optional [start_line, end_line], 1-based and inclusive; an end_line of 0 "
        "or -1 reads to the end of the file.",
    )


class WriteInput(_Input):
    file_path: str = Field(
        description="File to create or replace, relative to the project folder "
        "(e.g. segments/drafts/retail.md)."
    )
    content: str = Field(description="The complete new contents of the file.")


class EditInput(_Input):
    file_path: str = Field(
        description="File to edit, relative to the project folder (e.g. brief.md)."
    )
    old_string: str = Field(description="Exact text to replace, whitespace included.")
    new_string: str = Field(description="Text to put in its place.")
    replace_all: bool | None = Field(
        default=None,
        description="Replace every occurrence instead of requiring exactly one.",
    )


class GlobInput(_Input):
    pattern: str = Field(description="Glob pattern, e.g. **/*.md or segments/drafts/*.md.")
    path: str | None = Field(
        default=None,
        description="Folder to search under (e.g. resources or skill); the pattern is relative "
        "to it. Default: the project folder and resources/.",
    )


class GrepInput(_Input):
    pattern: str = Field(description="Python regular expression to search for.")
    path: str | None = Field(
        default=None,
        description="File or folder to search. Default: the project folder and resources/.",
    )


class RenameInput(_Input):
    file_path: str = Field(
        description="The segment draft to rename, e.g. segments/drafts/retail-banks.md."
    )
    new_path: str = Field(
        description="Its new path in the same folder, named as the slug of the segment's new "
        "title, e.g. segments/drafts/high-street-banks.md."
    )


class RemoveInput(_Input):
    file_path: str = Field(
        description="The segment draft to remove, e.g. segments/drafts/retail-banks.md."
    )


def _input_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema without pydantic's titles and `anyOf [X, null]` wrappers."""

    def clean(node: Any) -> Any:
        if isinstance(node, list):
            return [clean(item) for item in node]
        if not isinstance(node, dict):
            return node
        node = {k: clean(v) for k, v in node.items() if k != "title"}
        options = node.get("anyOf")
        if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
            (kept,) = [o for o in options if o != {"type": "null"}]
            rest = {k: v for k, v in node.items() if k != "anyOf" and k != "default"}
            node = {**kept, **rest}
        return node

    return clean(model.model_json_schema())


def _descriptions(cap: int, resources_writable: bool) -> dict[str, str]:
    never = (
        "gate files (*.agreed.md, written only when the client agrees), decisions.md, "
        "versions/ (the agreed copies kept), .bmc/"
    )
    writable = "the project folder and resources/" if resources_writable else "the project folder"
    read_only = "inbox/ and skill/" if resources_writable else "resources/, inbox/ and skill/"
    guard = (
        f"Writable: {writable}; {read_only} are read-only; never writable: {never}. "
        "To change a file that exists you must have read it first, and if it changed since "
        "(a person edited it) read it again. Governed documents are validated before they "
        "are written: if anything is wrong nothing is written and every problem is listed; "
        "fix them all in one go."
    )
    return {
        "read": "Read a UTF-8 text file and return its text exactly as stored, without line "
        "numbers. Paths are relative to the project folder; resources/ is the client's "
        "research, inbox/ the raw material the consultant dropped in, skill/ this skill's "
        f"own files (all readable). A file over {cap} bytes cannot be read whole: read a "
        "page with view_range [start, end] (1-based, inclusive; end 0 or -1 = to the end), "
        "or find the lines you need with grep. Binary files and other encodings are refused.",
        "write": "Create or replace a whole file with content (UTF-8), creating folders as "
        "needed. Name new files and folders with letters, digits, '-', '_' and '.' (they must "
        'open on Windows too: no \\ : < > " | ? *, no leading ~, no trailing dot or space, '
        f"no device name such as con, nul or com1). {guard}",
        "edit": "Replace old_string with new_string in an existing file (exact match, "
        "whitespace included). old_string must occur exactly once unless replace_all is "
        f"true: add surrounding text to make it unique. {guard}",
        "glob": "List files and folders (folders end with /) whose path matches a glob "
        "pattern: * and ? match within one name, ** matches any number of folders, {a,b} "
        "either. Without path it covers the project folder and resources/; with path (a "
        "folder such as resources, inbox or skill) the pattern is relative to that folder. "
        f"Results are sorted, at most {GLOB_MAX_RESULTS}.",
        "grep": "Search file contents with a Python regular expression and return matching "
        "lines as path:line: text. path may be a file or a folder; without it the project "
        "folder and resources/ are searched. Binary files are skipped, long lines are "
        f"shortened, at most {GREP_MAX_LINES} lines are returned.",
        "rename": "Rename a segment draft in segments/drafts/ when its segment is renamed: "
        "the file keeps its content and takes new_path, which must be in the same folder and "
        "named as the slug of the segment's new title (lowercase letters, digits, single "
        "hyphens, .md). Never replaces a file. Only segment drafts can be renamed, and only "
        "after you have read them (and again if a person changed them since). Then edit the "
        "draft's title to the new name, and update segments/segments.md.",
        "remove": "Remove a segment draft from segments/drafts/ when its segment is dropped "
        "or merged into another. Only segment drafts can be removed, and only after you have "
        "read them (and again if a person changed them since). Then take the segment out of "
        "segments/segments.md.",
    }


# -- the toolbox ----------------------------------------------------------------------------


@dataclass
class _Refusals:
    """The refusals of one path since its last successful write."""

    problems: frozenset[str]  # the latest refusal's
    same: int  # how many refusals in a row had exactly these problems
    streak: int  # how many refusals in all


class Toolbox:
    """The file tools for one skill run on one project."""

    def __init__(
        self,
        project: Project,
        skill_dir: Path,
        *,
        resources_writable: bool = False,
        validator: Validator | None = None,
        read_cap_bytes: int = 256 * 1024,
        optional_tools: tuple[str, ...] = (),
    ) -> None:
        self.project = project
        self.validator = validator
        self.read_cap_bytes = read_cap_bytes
        self.grep_seconds = GREP_SECONDS
        self.confinement = Confinement(project, skill_dir, resources_writable=resources_writable)
        # Model path -> sha256 of the whole file as the model last read or wrote it.
        self.read_hashes: dict[str, str] = {}
        # What the running call changed in `read_hashes` (None: forgotten), for the journal:
        # handed over once per call, so no call pays for every file read before it.
        self._read_changes: dict[str, str | None] = {}
        # Set when one path keeps being refused without a success; the loop stops on it.
        self.livelock: str | None = None
        self._refusals: dict[str, _Refusals] = {}
        self._tools: dict[str, tuple[type[_Input], Callable[[Any], str]]] = {
            "read": (ReadInput, self._read),
            "write": (WriteInput, self._write),
            "edit": (EditInput, self._edit),
            "glob": (GlobInput, self._glob),
            "grep": (GrepInput, self._grep),
        }
        optional = {"rename": (RenameInput, self._rename), "remove": (RemoveInput, self._remove)}
        for name in OPTIONAL_TOOLS:
            if name in optional_tools:
                self._tools[name] = optional[name]
        descriptions = _descriptions(read_cap_bytes, resources_writable)
        self._definitions = [
            {"name": name, "description": descriptions[name], "input_schema": _input_schema(model)}
            for name, (model, _) in self._tools.items()
        ]

    def definitions(self) -> list[dict[str, Any]]:
        """The API tool params; the same bytes on every call (the prompt cache keys on them)."""
        return copy.deepcopy(self._definitions)

    def take_read_changes(self) -> dict[str, str | None]:
        """What the calls since the last take changed in `read_hashes`: model path -> its
        new hash, or None for a path forgotten (a draft renamed or removed)."""
        changes, self._read_changes = self._read_changes, {}
        return changes

    def resolve(self, path: str, for_write: bool = False) -> Target:
        """The canonical target the tools would operate on for `path`, or `Refused`."""
        return self.confinement.resolve(path, for_write=for_write)

    def current_hash(self, path: str) -> str | None:
        """sha256 of the file at model path `path` now, or None if it is gone or unreachable
        (drift since the model read it is reported on resume)."""
        try:
            target = self.resolve(path)
        except Refused:
            return None
        return _sha256_file(target.path) if _is_regular(target.path) else None

    def run(self, name: str, tool_input: Any) -> ToolOutcome:
        """Run one tool call; every failure is an `is_error` outcome, never an exception."""
        tool = self._tools.get(name) if isinstance(name, str) else None
        if tool is None:
            known = ", ".join(self._tools)
            return ToolOutcome(f"unknown tool {name!r}: the file tools are {known}", True)
        model, handler = tool
        try:
            args = model.model_validate(tool_input)
        except ValidationError as e:
            return ToolOutcome(
                f"{name}: invalid input ({_field_errors(e)}): fix it and retry", True
            )
        try:
            return ToolOutcome(handler(args))
        except Refused as e:
            return ToolOutcome(f"{name}: {e}", True)
        except OSError as e:  # a file system failure no handler anticipated
            return ToolOutcome(f"{name}: {fs_reason(e)}", True)

    # -- read -------------------------------------------------------------------------------

    def _read(self, args: ReadInput) -> str:
        target = self.resolve(args.file_path, for_write=False)
        size = _regular_size(target)
        if args.view_range is None:
            return self._read_whole(target, size)
        start, end = args.view_range
        if 0 < end < start:
            raise Refused(f"view_range end ({end}) is before its start ({start})")
        try:
            page, digest, lines = _read_page(target.path, start, end, self.read_cap_bytes)
        except _PageTooLarge:
            raise Refused(
                f"view_range {args.view_range} of {_shown(target)} is over the "
                f"{self.read_cap_bytes}-byte limit: ask for fewer lines"
            ) from None
        except (UnicodeDecodeError, _NotText):
            raise _not_text(target) from None
        first = max(start, 1)
        if first > lines and not (lines == 0 and first == 1):
            raise Refused(f"view_range starts at line {first} but {_shown(target)} has {lines}")
        self._saw(target, digest)
        return page

    def _read_whole(self, target: Target, size: int) -> str:
        if size > self.read_cap_bytes:
            raise Refused(
                f"{_shown(target)} is {size} bytes, over the {self.read_cap_bytes}-byte limit "
                "for a whole read: page through it with view_range, e.g. [1, 500], or find "
                "the lines you need with grep"
            )
        with target.path.open("rb") as handle:
            data = handle.read(self.read_cap_bytes + 1)  # the file may grow after stat()
        if len(data) > self.read_cap_bytes:
            raise Refused(f"{_shown(target)} grew past the limit: page with view_range")
        text = _decode(target, data)
        self._saw(target, hashlib.sha256(data).hexdigest())
        return text

    # -- write and edit ---------------------------------------------------------------------

    def _write(self, args: WriteInput) -> str:
        target = self.resolve(args.file_path, for_write=True)
        data = _encode(args.content)
        if _holds(target, data):
            # Writing the bytes already there can lose nothing, so it needs no read: this is
            # the model's own write run again after a crash cut it off before its result.
            self._saw(target, hashlib.sha256(data).hexdigest())
        else:
            self._current(target, must_exist=False)
        warnings = self._commit(target, args.content, data)
        return f"wrote {len(data)} bytes to {_shown(target)}{warnings}"

    def _edit(self, args: EditInput) -> str:
        target = self.resolve(args.file_path, for_write=True)
        if not args.old_string:
            raise Refused("old_string is empty: give the exact text to replace")
        text = _decode(target, self._current(target, must_exist=True) or b"")
        count = text.count(args.old_string)
        if count == 0:
            hint = (
                " (it already holds new_string: the edit may have been made before the session "
                "stopped; read it to check)"
                if args.new_string and args.new_string in text
                else ""
            )
            raise Refused(f"old_string not found in {_shown(target)}{hint}")
        if count > 1 and not args.replace_all:
            raise Refused(
                f"old_string appears {count} times in {_shown(target)} (must be unique): add "
                "surrounding text, or pass replace_all"
            )
        if args.replace_all:
            updated = text.replace(args.old_string, args.new_string)
        else:
            updated = text.replace(args.old_string, args.new_string, 1)
        warnings = self._commit(target, updated, _encode(updated))
        done = count if args.replace_all else 1
        return f"edited {_shown(target)} ({done} replacement(s)){warnings}"

    def _current(self, target: Target, *, must_exist: bool) -> bytes | None:
        """The file's bytes now (None for a new file), checked to be the bytes the model last
        saw. Threat: overwriting a consultant's hand edit the model never saw."""
        try:
            size = _regular_size(target)
        except Refused:
            if must_exist or target.path.exists():
                raise
            return None  # a new file needs no read
        if not must_exist:  # a whole rewrite needs only the hash, however big the file
            self._check_unchanged(target)
            return None
        if size > self.read_cap_bytes:  # Threat: loading a huge file into memory to edit it
            raise Refused(
                f"{_shown(target)} is {size} bytes, over the {self.read_cap_bytes}-byte limit "
                "for an edit: rewrite it whole with write"
            )
        data = target.path.read_bytes()
        self._check_seen(target, hashlib.sha256(data).hexdigest())
        return data

    def _check_unchanged(self, target: Target) -> str:
        """The hash of `target` (a regular file, checked already), refused unless it is the
        hash of the bytes the model last saw."""
        digest = _sha256_file(target.path)
        self._check_seen(target, digest)
        return digest

    def _check_seen(self, target: Target, digest: str) -> None:
        seen = self.read_hashes.get(target.display)
        if seen is None:
            raise Refused(f"{_shown(target)} exists and you have not read it: read it first")
        if digest != seen:
            raise Refused(f"{_shown(target)} changed since you read it: read it again")

    def _commit(self, target: Target, text: str, data: bytes) -> str:
        """Validate, then write atomically and remember the bytes as seen; returns the
        warnings to append to the result ("" when there are none)."""
        problems, warnings = self._validate(target.rel, text)
        if problems:
            self._count_refusal(target.rel, problems)
            listed = "\n".join(f"- {p}" for p in problems)
            raise Refused(
                f"{_shown(target)} was not written: fix every problem below, then write it "
                f"again\n{listed}"
            )
        atomic_write(target.path, data)
        self._refusals.pop(target.rel, None)
        self._saw(target, hashlib.sha256(data).hexdigest())
        if not warnings:
            return ""
        listed = "\n".join(f"- {w}" for w in warnings)
        return f"\nwritten, with warnings worth fixing:\n{listed}"

    def _validate(self, rel: str, text: str) -> tuple[list[str], list[str]]:
        if self.validator is None:
            return [], []
        try:
            problems, warnings = self.validator(rel, text)
        except Exception as e:  # a validator bug must not crash the run; nothing is written
            return [f"the validator failed on this content ({type(e).__name__}: {e})"], []
        return list(problems), list(warnings)

    def _count_refusal(self, rel: str, problems: list[str]) -> None:
        """Threat: a model retrying invalid drafts of one path forever (SPEC section 5), the
        same one or two it alternates between. A model fixing its draft step by step gets
        other problems each time and a success before long, which starts the count again."""
        key = frozenset(problems)
        previous = self._refusals.get(rel) or _Refusals(frozenset(), 0, 0)
        same = previous.same + 1 if previous.problems == key else 1
        refusals = _Refusals(key, same, previous.streak + 1)
        self._refusals[rel] = refusals
        if self.livelock is None:
            self.livelock = _livelock(rel, problems, refusals)

    # -- rename and remove: segment drafts only ----------------------------------------------

    def _rename(self, args: RenameInput) -> str:
        source = self.confinement.resolve_draft(args.file_path)
        target = self.confinement.resolve_draft(args.new_path)
        if source.rel.casefold() == target.rel.casefold():
            raise Refused("file_path and new_path name the same draft: give the new name")
        seen = self.read_hashes.get(source.display)
        if seen is not None and _was_moved(source, target, seen):
            # The model's own rename run again on resume: a crash came after the rename and
            # before its result was journaled, so the rename is done and only its result is owed.
            self._forget(source)
            self._saw(target, seen)
            return f"renamed {source.display} to {target.display} (done before the session stopped)"
        _regular_size(source)
        # Threat: moving a consultant's hand edit away unseen (it would leave their file
        # under a name they did not choose): the same rule as for a write.
        digest = self._check_unchanged(source)
        problem = self.confinement.draft_name_problem(target)
        if problem:
            raise Refused(problem)
        # os.rename replaces an existing file; the check above is what forbids that. Only the
        # model writes under the project's lock, so nothing of ours can slip in between.
        os.rename(source.path, target.path)
        fsync_dir(target.path.parent)
        crash_point("draft-moved")
        self._forget(source)
        self._saw(target, digest)  # a rename moves the bytes as they are
        return (
            f"renamed {source.display} to {target.display}. If the segment's name changed, "
            f"edit the draft's title so that its slug is {target.path.stem}, then update "
            "segments/segments.md to match."
        )

    def _remove(self, args: RemoveInput) -> str:
        target = self.confinement.resolve_draft(args.file_path)
        if not os.path.lexists(target.path) and target.display in self.read_hashes:
            # Run again on resume after a crash that came before its result was journaled.
            self._forget(target)
            return f"removed {target.display} (done before the session stopped)"
        _regular_size(target)
        self._check_unchanged(target)
        os.unlink(target.path)
        fsync_dir(target.path.parent)
        crash_point("draft-moved")
        self._forget(target)
        return (
            f"removed {target.display}. Take its segment out of segments/segments.md, and out "
            "of every canvas item that serves it."
        )

    def _saw(self, target: Target, digest: str) -> None:
        self.read_hashes[target.display] = digest
        self._read_changes[target.display] = digest

    def _forget(self, target: Target) -> None:
        if self.read_hashes.pop(target.display, None) is not None:
            self._read_changes[target.display] = None
        self._refusals.pop(target.rel, None)

    # -- glob -------------------------------------------------------------------------------

    def _glob(self, args: GlobInput) -> str:
        pattern, path = _scoped(args.pattern, args.path)
        matcher = _compile_glob(pattern)
        base = self._search_base(path)
        if base.display and not base.path.exists():
            return "no matches"
        if base.display and not base.path.is_dir():
            raise Refused(f"{_shown(base)} is not a folder: give a folder as path, or read it")
        prefix = f"{base.display}/" if base.display else ""
        matches: list[str] = []
        walked = 0
        for entry in self.confinement.walk(base):
            walked += 1
            if walked > WALK_MAX_ENTRIES:
                break
            if matcher.fullmatch(entry.rel):
                matches.append(prefix + entry.rel + ("/" if entry.is_dir else ""))
        if not matches:
            return "no matches"
        matches.sort()
        shown = matches[:GLOB_MAX_RESULTS]
        if len(matches) > GLOB_MAX_RESULTS:
            shown.append(
                f"[showing {GLOB_MAX_RESULTS} of {len(matches)} matches: narrow the pattern "
                "or the path]"
            )
        if walked > WALK_MAX_ENTRIES:
            shown.append(f"[stopped after {WALK_MAX_ENTRIES} entries: narrow the path]")
        return "\n".join(shown)

    def _search_base(self, path: str | None) -> Target:
        return self.resolve(path or "", for_write=False)

    # -- grep -------------------------------------------------------------------------------

    def _grep(self, args: GrepInput) -> str:
        try:
            regex = re.compile(args.pattern)
        except (re.error, ValueError, TypeError) as e:
            raise Refused(f"invalid regular expression: {e}") from None
        base = self._search_base(args.path)
        hits = _Hits()
        try:
            with _cpu_limit(self.grep_seconds):
                self._grep_files(regex, base, hits, time.monotonic() + self.grep_seconds)
        except _TooSlow:
            raise Refused(
                f"the search took longer than {self.grep_seconds:g} s: simplify the pattern "
                "(nested repeats like (a+)+ backtrack) or narrow the path"
            ) from None
        return hits.report()

    def _grep_files(self, regex: re.Pattern[str], base: Target, hits: _Hits, end: float) -> None:
        if base.display and not base.path.is_dir():
            _regular_size(base)  # Threat: a FIFO blocks open() forever; refuse it first.
            _grep_file(regex, base.path, base.display, hits, end)
            return
        prefix = f"{base.display}/" if base.display else ""
        for walked, entry in enumerate(self.confinement.walk(base), 1):
            if walked > WALK_MAX_ENTRIES:
                hits.notes.append(f"[stopped after {WALK_MAX_ENTRIES} entries: narrow the path]")
                return
            if entry.is_dir or not _is_regular(entry.path):
                continue
            if not _grep_file(regex, entry.path, prefix + entry.rel, hits, end):
                return


# -- helpers --------------------------------------------------------------------------------


def _livelock(rel: str, problems: list[str], refusals: _Refusals) -> str | None:
    """Why the run must stop for a person after this refusal, or None when it need not."""
    go_on = "look at the draft (fix it by hand if need be), then `bmc resume` to go on."
    if refusals.same >= LIVELOCK_REFUSALS:
        return (
            f"the model's writes to {rel} were refused {refusals.same} times running for the "
            f"same {len(problems)} problem(s) (first: {problems[0]}); {go_on}"
        )
    if refusals.streak >= LIVELOCK_STREAK:
        return (
            f"the model's writes to {rel} were refused {refusals.streak} times in a row "
            f"without one succeeding (the last for: {problems[0]}); {go_on}"
        )
    return None


class _NotText(Exception):
    pass


class _PageTooLarge(Exception):
    pass


class _TooSlow(Exception):
    pass


def _shown(target: Target) -> str:
    return target.display or "the project folder"


def _field_errors(error: ValidationError) -> str:
    """Every field error at once, so the model fixes them in one retry."""
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "input"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def _encode(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from JSON escapes
        raise Refused("content is not valid Unicode text (lone surrogate)") from None


def _not_text(target: Target) -> Refused:
    return Refused(
        f"{_shown(target)} is not UTF-8 text (binary or another encoding): {IMPORT_HINT}"
    )


def _decode(target: Target, data: bytes) -> str:
    if b"\x00" in data:
        raise _not_text(target)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _not_text(target) from None


def _regular_size(target: Target) -> int:
    """The size of a regular file, checked with stat() before anything opens it.

    Threat: open() on a FIFO blocks forever; a folder or a device is not a document.
    """
    try:
        st = target.path.stat()
    except FileNotFoundError:
        raise Refused(f"{_shown(target)}: no such file (glob lists what exists)") from None
    except OSError as e:
        raise Refused(f"{_shown(target)}: {fs_reason(e)}") from None
    if S_ISDIR(st.st_mode):
        raise Refused(f"{_shown(target)} is a folder: list it with glob")
    if not S_ISREG(st.st_mode):
        raise Refused(f"{_shown(target)} is not a regular file")
    return st.st_size


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _was_moved(source: Target, target: Target, seen: str) -> bool:
    """Whether a rename of `source` (whose bytes hashed `seen`) to `target` already happened."""
    return (
        not os.path.lexists(source.path)
        and _is_regular(target.path)
        and _sha256_file(target.path) == seen
    )


def _holds(target: Target, data: bytes) -> bool:
    try:
        return (
            _is_regular(target.path)
            and target.path.stat().st_size == len(data)
            and (target.path.read_bytes() == data)
        )
    except OSError:
        return False


def _is_regular(path: Path) -> bool:
    try:
        return S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def _read_page(path: Path, start: int, end: int, limit: int) -> tuple[str, str, int]:
    """Lines [start, end] of a file, its whole-file sha256 and its line count, in one pass.

    Streams in chunks so a 50 MB file costs one sequential read and little memory; the whole
    file is still checked for being UTF-8 text and hashed (the hash guards later writes).
    """
    first, last = max(start, 1), (end if end > 0 else None)
    line = 1  # the number of the line that starts at the current position
    page = bytearray()
    digest = hashlib.sha256()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    newlines, tail = 0, b""
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
            if b"\x00" in chunk:
                raise _NotText
            utf8.decode(chunk)
            newlines += chunk.count(b"\n")
            tail = chunk[-1:]
            if last is None or line <= last:
                line = _collect(chunk, line, first, last, page)
                if len(page) > limit + 1:
                    raise _PageTooLarge
        utf8.decode(b"", final=True)
    lines = newlines + (1 if tail not in (b"", b"\n") else 0)
    if last is not None and line > last:
        del page[-1:]  # like the SDK: a page that stops at `end` drops that line's newline
    if len(page) > limit:
        raise _PageTooLarge
    return page.decode("utf-8"), digest.hexdigest(), lines


def _collect(chunk: bytes, line: int, first: int, last: int | None, page: bytearray) -> int:
    """Append the part of `chunk` inside lines [first, last] to `page`; return the new line."""
    pos = 0
    if line < first:
        if line + chunk.count(b"\n") < first:
            return line + chunk.count(b"\n")  # the whole chunk is before the page
        while line < first:
            pos = chunk.index(b"\n", pos) + 1
            line += 1
    if last is None:
        page += chunk[pos:]
        return line + chunk.count(b"\n", pos)
    stop = pos
    while line <= last:
        newline = chunk.find(b"\n", stop)
        if newline < 0:
            page += chunk[pos:]
            return line
        stop = newline + 1
        line += 1
    page += chunk[pos:stop]
    return line


def _compile_glob(pattern: str) -> re.Pattern[str]:
    """A doublestar glob as a regex on `/`-separated paths: `*`, `?`, `[...]`, `**`, `{a,b}`."""
    if "\x00" in pattern:
        raise Refused("the pattern contains a NUL byte")
    if pattern.startswith("/"):
        raise Refused("absolute patterns are not allowed: give a relative pattern (and a path)")
    parts = [p for p in pattern.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise Refused("'..' is not allowed in a pattern: give the folder as path instead")
    if not parts:
        raise Refused("the pattern is empty: try **/* or *.md")
    regex = ""
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            regex += ".*" if last else "(?:[^/]+/)*"
        else:
            regex += _glob_segment(part) + ("" if last else "/")
    try:
        return re.compile(regex, re.DOTALL)
    except re.error as e:
        raise Refused(f"invalid glob pattern: {e}") from None


def _scoped(pattern: str, path: str | None) -> tuple[str, str | None]:
    """`inbox/**` with no path means "under inbox/": the default scope (the project and
    resources/) does not include the inbox or skill mounts, and a model reasonably spells
    them as part of the pattern."""
    if path is None:
        for mount in ("inbox/", "skill/"):
            if pattern.startswith(mount):
                return pattern[len(mount) :] or "**", mount.rstrip("/")
    return pattern, path


def _glob_segment(part: str) -> str:
    out, i, braces = [], 0, 0
    while i < len(part):
        ch = part[i]
        i += 1
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            close = part.find("]", i + 1 if part[i : i + 1] in ("!", "^") else i)
            if close < 0 or close == i:
                out.append(re.escape(ch))
                continue
            body = part[i:close]
            negate = body[:1] in ("!", "^")
            body = "".join(c if c == "-" else re.escape(c) for c in body[negate:])
            out.append(f"[^/{body}]" if negate else f"[{body}]")
            i = close + 1
        elif ch == "{":
            braces += 1
            out.append("(?:")
        elif ch == "," and braces:
            out.append("|")
        elif ch == "}" and braces:
            braces -= 1
            out.append(")")
        else:
            out.append(re.escape(ch))
    if braces:
        raise Refused("unbalanced { in the pattern")
    return "".join(out)


@dataclass
class _Hits:
    """Grep's output, capped in lines and bytes."""

    lines: list[str] = field(default_factory=list)
    size: int = 0
    binary: int = 0
    cut: bool = False
    notes: list[str] = field(default_factory=list)

    def add(self, display: str, number: int, text: str, match: re.Match[str]) -> bool:
        if len(text) > GREP_SHOWN_CHARS:
            begin = max(0, match.start() - GREP_SHOWN_CHARS // 4)
            text = ("…" if begin else "") + text[begin : begin + GREP_SHOWN_CHARS] + "…"
        line = f"{display}:{number}: {text}"
        if len(self.lines) >= GREP_MAX_LINES or self.size + len(line) + 1 > GREP_MAX_BYTES:
            self.cut = True
            return False
        self.lines.append(line)
        self.size += len(line) + 1
        return True

    def report(self) -> str:
        out = list(self.lines) or ["no matches"]
        if self.cut:
            out.append(
                f"[stopped after {len(self.lines)} matching lines: narrow the pattern or the path]"
            )
        if self.binary:
            out.append(f"[skipped {self.binary} binary file(s): {IMPORT_HINT}]")
        return "\n".join(out + self.notes)


def _grep_file(regex: re.Pattern[str], path: Path, display: str, hits: _Hits, end: float) -> bool:
    """Search one file line by line; False once the output is full."""
    try:
        with path.open("rb") as handle:
            if b"\x00" in handle.read(8192):
                hits.binary += 1
                return True
            handle.seek(0)
            for number, raw in enumerate(_bounded_lines(handle), 1):
                if time.monotonic() > end:
                    raise _TooSlow
                text = raw.decode("utf-8", "replace").rstrip("\r\n")
                match = regex.search(text)
                if match and not hits.add(display, number, text, match):
                    return False
    except OSError:
        return True  # unreadable: skip it, as grep does
    return True


def _bounded_lines(handle: Any) -> Iterator[bytes]:
    """Each line's first GREP_SEARCHED_BYTES; a one-line 50 MB file never sits in memory."""
    while raw := handle.readline(GREP_SEARCHED_BYTES):
        if not raw.endswith(b"\n") and len(raw) == GREP_SEARCHED_BYTES:
            while rest := handle.readline(CHUNK_BYTES):  # skip the rest of the long line
                if rest.endswith(b"\n"):
                    break
        yield raw


@contextmanager
def _cpu_limit(seconds: float) -> Iterator[None]:
    """Interrupt a runaway regex: Python's `re` backtracks, and one line can take forever.

    Uses the process CPU timer when this thread may take the signal and nobody else uses it
    (the wall-clock check between lines is the fallback).
    """

    def expire(_signum: int, _frame: object) -> None:
        raise _TooSlow

    armed = False
    with suppress(ValueError, OSError, AttributeError):  # off the main thread, or no timer
        if signal.getsignal(signal.SIGVTALRM) is signal.SIG_DFL and not any(
            signal.getitimer(signal.ITIMER_VIRTUAL)
        ):
            signal.signal(signal.SIGVTALRM, expire)
            armed = True
    try:
        if armed:
            signal.setitimer(signal.ITIMER_VIRTUAL, seconds)
        yield
    finally:
        if armed:
            signal.setitimer(signal.ITIMER_VIRTUAL, 0)
            # A tick already pending would kill the process under SIG_DFL; SIG_IGN drops it.
            signal.signal(signal.SIGVTALRM, signal.SIG_IGN)
            signal.signal(signal.SIGVTALRM, signal.SIG_DFL)
