"""Where the model's file tools may look and write: one project, three mounts (SPEC section 4).

Trust model
-----------
Every path the model sends is hostile until proven otherwise. The person who owns the
workspace is trusted: a symlink they made is followed as long as its target stays inside the
permitted roots. The model itself cannot make symlinks, FIFOs or hard links (its tools only
write regular files, by atomic rename), so the tree changes under us only by a person's hand;
a person racing a symlink swap between the check and the write is outside this model.

The model sees one virtual tree, rooted at the project directory:

    <anything>      the project directory            read, write
    resources/...   clients/<org>/resources/         read (write only if the skill builds it)
    inbox/...       clients/<org>/inbox/             read
    skill/...       the running skill's folder       read

A path is checked twice: once as spelled (after lexical normalisation), and once as the
canonical path the operation will really touch, after the SDK's `resolve_path` has followed
every symlink (so a symlink cannot launder a forbidden target into an allowed name).
Never writable, whatever the spelling: gate files (`*.agreed.md`, anywhere), `decisions.md` at
the project root, anything under `versions/` at the project root (the agreed versions: read,
never written, created, renamed or removed by the model), anything under `.bmc/`; `.bmc/` is
not even readable or listed.

Renaming and removing (`resolve_draft`) is narrower still, a whitelist rather than a list of
exceptions: only a `*.md` file directly in the project's `segments/drafts/`, spelled exactly
as it lies on disk (no symlink anywhere on the way, no case variant), may be moved or
removed. Gates, `versions/`, `resources/`, `inbox/`, `skill/`, `decisions.md`, `.bmc/` and
every other document fall outside it without needing a rule of their own.

Names that travel: the project is checked out on Windows and macOS too, so a write may not
create a file or folder whose name one of them cannot hold (`a\\b.md`, `nul.md`, `x:y`,
`notes.`); the person's own files keep whatever names they have.

The roots are resolved once per `Confinement` (a person does not move the project during a
session); every path is still canonicalised by `resolve_path` on every call, and must lie
inside both the roots `resolve_path` resolves then and the ones resolved here. Each mount has
its own SDK context with the same four permitted roots, the mount first (see `__init__`).
"""

from __future__ import annotations

import errno
import os
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from anthropic.lib.tools.agent_toolset import AgentToolContext, resolve_path

from bmc.workspace.paths import (
    RESERVED_SLUG_SUFFIX,
    STATE_DIR,
    Project,
    is_windows_device,
    slugify,
)

MOUNTS = ("resources", "inbox", "skill")
PROJECT = "project"
GATE_SUFFIX = ".agreed.md"
DECISIONS = "decisions.md"
VERSIONS = "versions"
MAX_DEPTH = 64
# The one folder whose files the model may rename or remove: the segment drafts, one per
# segment, named after it (a renamed or dropped segment takes its draft with it).
DRAFTS_FOLDER = ("segments", "drafts")
DRAFT_SUFFIX = ".md"
OUTSIDE = "leads outside the project folder and its resources/, inbox/ and skill/ folders"
WINDOWS_FORBIDDEN = '<>"|?*'
DEVICE = "is a device name on Windows (CON, PRN, AUX, NUL, COM0-9, LPT0-9, any extension)"
VERSIONS_REFUSAL = (
    "versions/ keeps what the client agreed: it can be read, but never written; "
    "edit the stage's document and ask for agreement instead"
)
PORTABLE_HINT = (
    "use letters, digits, '-', '_' and '.' in names and '/' between folders "
    "(e.g. segments/drafts/retail-banks.md)"
)


class Refused(Exception):
    """A path or an operation the model may not have; `str()` is the reason, for the model."""


@dataclass(frozen=True)
class Target:
    """A checked path: how the model spells it, and what the operation will really touch."""

    display: str  # normalised model spelling: `segments/drafts/a.md`, `resources/x.md`, "" = root
    path: Path  # canonical (every symlink followed); the only path an operation may use
    mount: str  # the root `path` lies in: "project", "resources", "inbox" or "skill"
    rel: str  # `path` named from the project: `segments/x.md`, `resources/x.md`


@dataclass(frozen=True)
class Entry:
    """One file or folder met by `Confinement.walk`."""

    rel: str  # relative to the folder walked, `/`-separated
    path: Path  # canonical
    is_dir: bool


def fold(name: str) -> str:
    """A file name as the most forgiving file system would compare it.

    Case-insensitive disks (macOS, Windows) ignore case; Windows drops trailing dots and
    spaces; NFKC folds fullwidth and compatibility letters (`ｄecisions.md`); invisible format
    characters (zero-width space) are dropped.
    """
    if name.isascii():
        # The same answer, cheaper: NFKC leaves ASCII as it is, no ASCII character is a
        # format character, and ASCII case-folds as it lowercases.
        return name.lower().rstrip(". ")
    name = unicodedata.normalize("NFKC", name)
    name = "".join(ch for ch in name if unicodedata.category(ch) != "Cf")
    return name.casefold().rstrip(". ")


def _spellings(name: str) -> set[str]:
    # Threat: NTFS alternate data streams, `brief.agreed.md::$DATA` writes brief.agreed.md.
    return {fold(name), fold(name.split(":", 1)[0])}


def is_gate(name: str) -> bool:
    return any(s.endswith(GATE_SUFFIX) for s in _spellings(name))


def is_state(name: str) -> bool:
    return STATE_DIR in _spellings(name)


def is_decisions(name: str) -> bool:
    return DECISIONS in _spellings(name)


def is_versions(name: str) -> bool:
    """The project's `versions/` folder, however spelled (`VERSIONS`, `versions.`)."""
    return VERSIONS in _spellings(name)


def _dot_lookalike(part: str) -> bool:
    """True for a segment that is not `.`/`..` but a file system or a later tool could read
    as one: `...`, `.. `, fullwidth `．．`."""
    folded = "".join(
        ch for ch in unicodedata.normalize("NFKC", part) if unicodedata.category(ch) != "Cf"
    ).strip()
    return set(folded) <= {"."} and part not in (".", "..")


def portability_problem(name: str) -> str | None:
    """What keeps the file name `name` (one path component) from being created on Windows,
    macOS and Linux alike, and so from a git checkout on any of them; None when nothing does."""
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        return "contains a control character"
    if "\\" in name:
        return "contains a backslash, which Windows reads as a folder separator"
    if ":" in name:
        return "contains ':', which Windows reserves for drives and streams"
    forbidden = "".join(ch for ch in WINDOWS_FORBIDDEN if ch in name)
    if forbidden:
        return f"contains {' '.join(forbidden)}, which Windows does not allow in names"
    if name.startswith("~"):
        return "starts with '~', which a shell reads as a home folder"
    if name.endswith((".", " ")):
        return "ends with a dot or a space, which Windows drops"
    if is_windows_device(name):
        return DEVICE
    return None


def _not_portable(name: str, problem: str) -> Refused:
    """The refusal of a new name, with what to write instead."""
    if problem == DEVICE:
        # The fix slugify applies to titles, so a retry lands where validation expects it.
        stem, dot, ext = name.partition(".")
        hint = f"add to it, e.g. {stem.rstrip(' ')}{RESERVED_SLUG_SUFFIX}{dot}{ext}"
    else:
        hint = PORTABLE_HINT
    return Refused(f"the name {_quoted(name)} {problem}: {hint}")


def _quoted(name: str) -> str:
    """`name` in quotes, control characters escaped so the one-line reason stays one line."""
    shown = "".join(f"\\x{ord(ch):02x}" if unicodedata.category(ch) == "Cc" else ch for ch in name)
    return f"'{shown}'"


def _shown_path(display: str) -> str:
    return display or "the project folder"


def _folded_parts(path: Path) -> tuple[str, ...]:
    return tuple(part.casefold() for part in path.parts)


def fs_reason(error: OSError) -> str:
    """A host-independent phrase for a file system error, never naming a host path."""
    if isinstance(error, FileNotFoundError):
        return "no such file or folder"
    if isinstance(error, NotADirectoryError):
        return "a part of the path is a file, not a folder"
    if isinstance(error, IsADirectoryError):
        return "is a folder"
    if isinstance(error, PermissionError):
        return "permission denied"
    if error.errno == errno.ELOOP:
        return "too many levels of symbolic links"
    if error.errno == errno.ENAMETOOLONG:
        return "name too long"
    return (error.strerror or "i/o error").lower()


class Confinement:
    """Maps model paths to canonical paths inside the permitted roots, or refuses them."""

    def __init__(self, project: Project, skill_dir: Path, *, resources_writable: bool) -> None:
        self.project = project
        # Absolute once and for all: a relative root would be read against the project folder.
        self.roots: dict[str, Path] = {
            PROJECT: Path(os.path.abspath(project.project_dir)),
            "resources": Path(os.path.abspath(project.resources_dir)),
            "inbox": Path(os.path.abspath(project.inbox_dir)),
            "skill": Path(os.path.abspath(skill_dir)),
        }
        # Canonical once per session, not per call: resolving the four roots on every call was
        # most of a read's cost, and they are the person's folders, which stay put meanwhile.
        self.real: dict[str, Path] = {mount: root.resolve() for mount, root in self.roots.items()}
        # Deepest first, so a mount nested in another root (a skills folder kept inside the
        # project) is the one a path is found in; on a tie the project wins, as it always did.
        self._by_depth = sorted(
            ((mount, root.parts) for mount, root in self.real.items()), key=lambda m: -len(m[1])
        )
        self._absolute = sorted(
            {
                (mount, PurePosixPath(base))
                for mount in self.roots
                for base in (self.roots[mount], self.real[mount])
            },
            key=lambda c: -len(c[1].parts),
        )
        read_only = ["inbox", "skill"] if resources_writable else ["inbox", "skill", "resources"]
        self._read_only = [(mount, _folded_parts(self.real[mount])) for mount in read_only]
        # The SDK primitive does the symlink-aware canonicalisation and containment. One
        # context per mount, all with the same four permitted roots: the mount a path is
        # spelled under is the context's `workdir`, which `resolve_path` resolves and checks
        # first, so a path that stays in its mount costs two walks, not three (the SDK
        # resolves the other roots only for a path that leaves its mount, by a symlink).
        self.contexts: dict[str, AgentToolContext] = {
            mount: AgentToolContext(
                workdir=self.real[mount],
                allowed_roots=[self.real[m] for m in (PROJECT, *MOUNTS) if m != mount],
            )
            for mount in self.real
        }
        self.ctx = self.contexts[PROJECT]
        self.resources_writable = resources_writable

    # -- resolving one path -------------------------------------------------------------

    def resolve(self, spelled: str, *, for_write: bool) -> Target:
        """The canonical target of `spelled`, or `Refused` saying why not."""
        parts = self._lexical(spelled)
        display = "/".join(parts)
        self._check_spelling(parts, for_write=for_write)
        mount = parts[0] if parts and parts[0] in MOUNTS else PROJECT
        rest = parts[1:] if mount != PROJECT else parts
        canonical = self._canonical(mount, self.real[mount].joinpath(*rest))
        where, rel_parts = self._locate(canonical)
        self._check_canonical(canonical, where, rel_parts, for_write=for_write)
        if for_write:
            self._check_new_names(where, rel_parts)
        rel = "/".join(rel_parts if where == PROJECT else (where, *rel_parts))
        return Target(display, canonical, where, rel)

    def _lexical(self, spelled: str) -> tuple[str, ...]:
        """The virtual-tree components of `spelled`, with `.`, `..` and `//` collapsed."""
        # Threat: NUL truncates the path in C, so `ok.md\0../../x` could name two files.
        if "\x00" in spelled:
            raise Refused("the path contains a NUL byte")
        # Threat: lone surrogates from JSON cannot name a file; refuse before os.* sees them.
        try:
            spelled.encode("utf-8")
        except UnicodeEncodeError:
            raise Refused("the path is not valid Unicode text") from None
        if spelled.startswith("/"):
            spelled = self._from_absolute(spelled)
        parts: list[str] = []
        for part in spelled.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                # Threat: `..` chains, `resources/../..`; the virtual root is a hard floor.
                if not parts:
                    raise Refused(f"the path {OUTSIDE} (too many '..')")
                parts.pop()
                continue
            # Threat: `...`, `.. `, `．．` that another layer might treat as `..`.
            if _dot_lookalike(part):
                raise Refused(f"the path segment {part!r} looks like '..' and is not allowed")
            parts.append(part)
        return tuple(parts)

    def _from_absolute(self, spelled: str) -> str:
        """An absolute path inside a permitted root, respelled in the virtual tree."""
        absolute = PurePosixPath(os.path.normpath("/" + spelled.lstrip("/")))
        # Longest root first: a mount nested in another root must win.
        for mount, base in self._absolute:
            # Threat: sibling-prefix names (`growth-2027-evil`): compared by component.
            if absolute.is_relative_to(base):
                rel = absolute.relative_to(base).as_posix()
                rel = "" if rel == "." else rel
                return rel if mount == PROJECT else f"{mount}/{rel}"
        raise Refused(
            f"absolute path {OUTSIDE}: use a path relative to the project folder, "
            "such as segments/drafts/x.md or resources/index.md"
        )

    def _check_spelling(self, parts: tuple[str, ...], *, for_write: bool) -> None:
        # Threat: `.BMC/`, `.bmc./`: runner state holds research text and session journals.
        if any(is_state(p) for p in parts):
            raise Refused(".bmc/ is the runner's private state: it is not readable or writable")
        if not for_write:
            return
        # Threat: folders nested so deep that creating them exhausts Python's recursion.
        if len(parts) > MAX_DEPTH:
            raise Refused(f"the path is nested too deeply to write (at most {MAX_DEPTH} levels)")
        if parts and parts[0] in ("inbox", "skill"):
            raise Refused(f"{parts[0]}/ is read-only: write in the project folder instead")
        if parts and parts[0] == "resources" and not self.resources_writable:
            raise Refused("resources/ is read-only for this skill: write in the project folder")
        # Threat: `SEGMENTS.AGREED.MD`, `brief.agreed.md.`; a folder named like a gate blocks it.
        if any(is_gate(p) for p in parts):
            raise Refused(
                "gate files (*.agreed.md) are written only when the client agrees "
                "(request_agreement); write the document itself instead"
            )
        # Threat: `DECISIONS.md`, `./decisions.md`: the append-only log of agreements.
        if parts and parts[0] not in MOUNTS and is_decisions(parts[0]):
            raise Refused("decisions.md is the runner's log of agreements and is not writable")
        # Threat: `Versions/segments/v1.md`, `versions./x`: rewriting what a client agreed.
        if parts and parts[0] not in MOUNTS and is_versions(parts[0]):
            raise Refused(VERSIONS_REFUSAL)

    def _canonical(self, mount: str, mapped: Path) -> Path:
        """Follow every symlink (the leaf too, even dangling) and check containment: the SDK's
        `resolve_path`. Threat: links to /etc, to a sibling project, dangling links out, loops."""
        try:
            return resolve_path(self.contexts[mount], str(mapped))
        except ValueError as e:
            cause = e.__cause__
            reason = fs_reason(cause) if isinstance(cause, OSError) else OUTSIDE
            raise Refused(f"the path {reason}") from None

    def _locate(self, canonical: Path) -> tuple[str, tuple[str, ...]]:
        """Which root holds `canonical` (the deepest), and the components below it."""
        parts = canonical.parts
        for mount, root in self._by_depth:
            # Threat: sibling-prefix names (`growth-2027-evil`): compared by component.
            if parts[: len(root)] == root:
                return mount, parts[len(root) :]
        # resolve_path let it through: a bug, or a root moved since the session started.
        raise Refused(f"the path {OUTSIDE}")

    def _check_canonical(
        self, canonical: Path, where: str, rel: tuple[str, ...], *, for_write: bool
    ) -> None:
        # Threat: a symlink with an innocent name pointing into .bmc/, at a gate, at decisions.md.
        if any(is_state(p) for p in rel):
            raise Refused("the path leads into .bmc/, the runner's private state")
        if not for_write:
            return
        self._check_read_only(canonical)
        if any(is_gate(p) for p in rel):
            raise Refused("the path leads to a gate file (*.agreed.md), which is not writable")
        if where == PROJECT and rel and is_decisions(rel[0]):
            raise Refused("the path leads to decisions.md, which is not writable")
        if where == PROJECT and rel and is_versions(rel[0]):
            raise Refused(
                "the path leads into versions/, which keeps what the client agreed and is "
                "not writable"
            )

    def _check_read_only(self, canonical: Path) -> None:
        """Threat: a symlink in the project leading into inbox/, skill/ or a read-only
        resources/. Compared case-folded: on a case-insensitive disk `INBOX/x` is `inbox/x`, and
        a refusal must never hinge on how a name is cased."""
        folded = _folded_parts(canonical)
        for mount, root in self._read_only:
            if folded[: len(root)] == root:
                raise Refused(f"the path leads into {mount}/, which is read-only")

    def _check_new_names(self, where: str, rel: tuple[str, ...]) -> None:
        """Threat: a name harmless here that breaks on the consultant's Windows laptop or in
        their git checkout: `segments\\..\\..\\other\\x.md` is a traversal on Windows,
        `nul.md` a device, `~` a home folder to a shell. Only the names this write would create
        are checked: the person's own files and folders keep the names they have."""
        for name in self._new_parts(where, rel):
            problem = portability_problem(name)
            if problem is not None:
                raise _not_portable(name, problem)

    def _new_parts(self, where: str, rel: tuple[str, ...]) -> tuple[str, ...]:
        """The trailing components of `rel` that do not exist yet: what a write would create.
        `rel` is canonical, so every component that exists is a real file or folder."""
        root = self.real[where]
        for depth in range(len(rel), 0, -1):
            if os.path.lexists(root.joinpath(*rel[:depth])):
                return rel[depth:]
        return rel

    # -- the drafts the model may rename or remove ---------------------------------------

    def resolve_draft(self, spelled: str) -> Target:
        """A segment draft's path, for a rename or a removal, or `Refused`.

        Everything a write is checked for first (NUL, `..`, absolute paths, symlinks out,
        gates, `decisions.md`, `.bmc/`, read-only mounts, names Windows cannot hold), then
        the whitelist: `segments/drafts/<name>.md` in the project folder and nothing else.
        """
        target = self.resolve(spelled, for_write=True)
        parts = tuple(target.rel.split("/"))
        # Threat: a draft reached through a symlink (the folder or the file itself), or a
        # case variant on a case-insensitive disk: the spelling must be the canonical path,
        # so what is moved is the very file named, not the target of a link.
        inside = target.mount == PROJECT and parts[:-1] == DRAFTS_FOLDER and len(parts) == 3
        if not inside or target.display != target.rel:
            where = "/".join(DRAFTS_FOLDER)
            raise Refused(
                f"only the segment drafts in {where}/ can be renamed or removed, and "
                f"{_shown_path(target.display)} is not one of them"
            )
        if not parts[-1].endswith(DRAFT_SUFFIX):
            raise Refused(f"{target.display} is not a draft: drafts are {DRAFT_SUFFIX} files")
        return target

    def draft_name_problem(self, target: Target) -> str | None:
        """Why a draft may not take the name of `target` (a rename's destination), or None:
        it must be the slug of a segment's title, and no file of that name, in any case,
        may be there already."""
        stem = target.path.name.removesuffix(DRAFT_SUFFIX)
        if not stem or slugify(stem) != stem:
            suggestion = slugify(stem) or "island-commuters"
            return (
                f"the new name {_quoted(target.path.name)} is not a slug: name the draft after "
                f"the segment's title in lowercase letters, digits and single hyphens, e.g. "
                f"{suggestion}{DRAFT_SUFFIX}"
            )
        # Threat: `Retail.md` beside `retail.md` is one file on macOS and Windows, and a git
        # checkout there would lose one of them.
        folded = fold(target.path.name)
        try:
            clash = next(
                (e.name for e in os.scandir(target.path.parent) if fold(e.name) == folded), None
            )
        except OSError:
            clash = None
        if clash is not None:
            return (
                f"{'/'.join(DRAFTS_FOLDER)}/{clash} already exists: a rename never replaces a "
                "file; choose another name, or remove that draft first if the two segments "
                "were merged"
            )
        return None

    # -- walking a folder ---------------------------------------------------------------

    def walk(self, start: Target) -> Iterator[Entry]:
        """Every file and folder under `start` (the virtual root when `start.display` is ""),
        depth first, in name order.

        Never yields `.bmc/`, a symlink that leads out of the permitted roots or into `.bmc/`,
        or a dangling one; follows a symlinked folder that stays inside, once.
        """
        seen = {start.path}
        if start.display:
            yield from self._walk(start.path, "", seen, top=False)
            return
        # The virtual root: the project folder, where the mounts shadow same-named folders,
        # then resources/.
        yield from self._walk(start.path, "", seen, top=True)
        resources = self.resolve("resources", for_write=False)
        if resources.path.is_dir():
            # Its own `seen`: a project symlink to resources/ must not hide the mount itself.
            yield Entry("resources", resources.path, True)
            yield from self._walk(resources.path, "resources/", {resources.path}, top=False)

    def _walk(self, folder: Path, prefix: str, seen: set[Path], *, top: bool) -> Iterator[Entry]:
        # An explicit stack, not recursion: the model can nest folders deeper than Python's
        # recursion limit.
        stack = [iter(self._listing(folder, prefix, top=top))]
        while stack:
            entry = next(stack[-1], None)
            if entry is None:
                stack.pop()
                continue
            yield entry
            # Threat: a symlink loop, or a link to an ancestor; each folder is walked once.
            if entry.is_dir and entry.path not in seen:
                seen.add(entry.path)
                stack.append(iter(self._listing(entry.path, f"{entry.rel}/", top=False)))

    def _listing(self, folder: Path, prefix: str, *, top: bool) -> list[Entry]:
        try:
            with os.scandir(folder) as found:
                entries = sorted(found, key=lambda e: e.name)
        except OSError:
            return []
        listed = []
        for entry in entries:
            if is_state(entry.name) or (top and entry.name in MOUNTS):
                continue
            path = self._follow(entry)
            if path is not None:
                listed.append(Entry(prefix + entry.name, path, path.is_dir()))
        return listed

    def _follow(self, entry: os.DirEntry[str]) -> Path | None:
        """The canonical path of a walked entry, or None when it must be skipped."""
        if not entry.is_symlink():
            return Path(entry.path)
        try:
            canonical = resolve_path(self.ctx, entry.path)  # Threat: links leading out.
            _where, rel = self._locate(canonical)
        except (ValueError, Refused):
            return None
        if any(is_state(p) for p in rel) or not canonical.exists():
            return None
        return canonical
