"""The engagement's files on disk: where things are, and how they are written.

Layout (SPEC section 2): `<workspace>/clients/<org>/{org.md,inbox/,resources/,projects/<slug>/}`.
Everything that changes a file goes through `atomic_write` or `append_record`, so a crash
leaves either the old bytes or the new ones, never a mix.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from bmc.crashpoints import crash_point
from bmc.errors import UserError

SLUG_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
STATE_DIR = ".bmc"
GITIGNORE = "# Runner state holds research text sent to the model: keep it out of git.\n.bmc/\n"

# Names Windows keeps for devices, in any case and even with an extension (`nul.md`): a file
# so named cannot be created there, so a git checkout of the project would fail.
WINDOWS_DEVICES = frozenset(
    {"con", "prn", "aux", "nul", "conin$", "conout$"}
    | {f"{port}{n}" for port in ("com", "lpt") for n in "0123456789¹²³"}
)
RESERVED_SLUG_SUFFIX = "-1"


# Letters NFKD does not decompose, spelled out as they usually are in ASCII.
# fmt: off
_FOLD = str.maketrans({
    "ß": "ss", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O", "ł": "l",
    "Ł": "L", "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "Th", "ı": "i",
})
# fmt: on


def fold_ascii(text: str) -> str:
    """`text` in plain ASCII: accents dropped (NFKD), the letters NFKD leaves alone (ß, æ,
    ø, ł, ...) spelled out ("Straße" is "Strasse"), and any other non-ASCII character (a
    curly apostrophe, an en dash) a space, so it still separates words."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_FOLD))
    kept = (c for c in decomposed if not unicodedata.combining(c))
    return "".join(c if c.isascii() else " " for c in kept)


def is_windows_device(name: str) -> bool:
    """True when Windows reads the file name `name` as a device: `CON`, `nul.md`, `Aux .txt`."""
    return name.split(".", 1)[0].rstrip(" ").casefold() in WINDOWS_DEVICES


def slugify(text: str) -> str:
    """A file name stem (SPEC section 5): lowercase ASCII, every run of other characters one
    hyphen, none at either end. "St Aidan's Trust" and "St Aidan’s Trust" -> st-aidan-s-trust.

    A slug Windows reserves for a device (con, prn, aux, nul, com0-com9, lpt0-lpt9) gets "-1"
    appended, so the file can exist on every consultant's laptop: "Con" -> con-1, "COM1" ->
    com1-1. Longer slugs are left alone ("Con Edison" -> con-edison). Like any slug this is not
    one-to-one: a title "Con 1" gives con-1 too.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", fold_ascii(text).lower()).strip("-")
    return slug + RESERVED_SLUG_SUFFIX if slug in WINDOWS_DEVICES else slug


def check_slug(kind: str, value: str) -> str:
    """Return `value` if it is a valid org or project slug, else refuse in one sentence."""
    if not SLUG_RE.fullmatch(value or ""):
        raise UserError(
            f"{kind} {value!r} is not a valid slug: use 1-63 lowercase letters, digits and "
            "hyphens, starting with a letter or digit."
        )
    return value


@dataclass(frozen=True)
class Project:
    """One engagement project of one client organisation."""

    workspace: Path
    org: str
    slug: str

    @property
    def org_dir(self) -> Path:
        return self.workspace / "clients" / self.org

    @property
    def resources_dir(self) -> Path:
        return self.org_dir / "resources"

    @property
    def inbox_dir(self) -> Path:
        return self.org_dir / "inbox"

    @property
    def project_dir(self) -> Path:
        return self.org_dir / "projects" / self.slug

    @property
    def state_dir(self) -> Path:
        return self.project_dir / STATE_DIR

    def org_name(self) -> str:
        """The organisation's display name from `org.md`, else its slug."""
        import frontmatter

        try:
            post = frontmatter.load(self.org_dir / "org.md")
        except (OSError, ValueError):
            return self.org
        name = post.metadata.get("name")
        return str(name) if name else self.org


def locate(workspace: Path, org: str, slug: str) -> Project:
    """The existing project `org`/`slug` under `workspace`, or a one-sentence refusal."""
    check_slug("organisation", org)
    check_slug("project", slug)
    if not workspace.is_dir():
        raise UserError(f"workspace {workspace} does not exist.")
    project = Project(workspace.resolve(), org, slug)
    if not project.org_dir.is_dir():
        where = project.workspace
        hint = f"create it with `bmc init {org} {slug}`"
        raise UserError(f"no organisation {org!r} in {where}: {hint}.")
    if not project.project_dir.is_dir():
        raise UserError(f"no project {slug!r} for {org!r}: create it with `bmc init {org} {slug}`.")
    return project


def infer_from_cwd(cwd: Path) -> tuple[Path, str, str] | None:
    """(workspace, org, slug) when `cwd` is inside `.../clients/<org>/projects/<slug>`."""
    parts = cwd.resolve().parts
    for i in range(len(parts) - 4, -1, -1):
        if parts[i] == "clients" and parts[i + 2] == "projects":
            return Path(*parts[:i]), parts[i + 1], parts[i + 3]
    return None


def init_project(workspace: Path, org: str, slug: str, name: str | None) -> Project:
    """Create the folders, `org.md` and `.gitignore` of a project; existing files are kept."""
    check_slug("organisation", org)
    check_slug("project", slug)
    project = Project(workspace.resolve(), org, slug)
    _check_new_folder_travels("organisation", project.org_dir)
    _check_new_folder_travels("project", project.project_dir)
    for folder in (project.inbox_dir, project.resources_dir, project.project_dir):
        folder.mkdir(parents=True, exist_ok=True)
    org_md = project.org_dir / "org.md"
    if not org_md.exists():
        display = name or org
        # A JSON string is a valid YAML double-quoted scalar: quotes and backslashes survive.
        atomic_write(
            org_md, f"---\nname: {json.dumps(display, ensure_ascii=False)}\n---\n\n# {display}\n"
        )
    gitignore = project.project_dir / ".gitignore"
    if not gitignore.exists():
        atomic_write(gitignore, GITIGNORE)
    return project


def _check_new_folder_travels(kind: str, folder: Path) -> None:
    """A new org or project folder named like a Windows device (`clients/con/`) could not be
    checked out there; one that exists already keeps working."""
    if is_windows_device(folder.name) and not folder.exists():
        raise UserError(
            f"{kind} {folder.name!r} is a device name on Windows, where its folder could not "
            f"be created: use another, such as {folder.name}{RESERVED_SLUG_SUFFIX}."
        )


def atomic_write(path: Path, data: str | bytes) -> None:
    """Replace `path` with `data` all at once: temp file in the same folder, fsync, rename.

    Text is written as UTF-8 with no newline translation, so the bytes on disk are exactly
    the bytes validated.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates owner-only files; a workspace is shared through git, so use the
        # permissions an ordinary new file would get.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        crash_point("atomic-write")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def append_record(path: Path, record: str) -> None:
    """Append one whole record to an append-only file in a single write, then fsync."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    data = record.encode("utf-8")
    try:
        if os.environ.get("BMC_CRASH_AT", "").startswith("journal-append:"):
            # Tests only: die with half the record on disk, as a crash mid-append would.
            os.write(fd, data[: len(data) // 2])
            os.fsync(fd)
            crash_point("journal-append")
            os.write(fd, data[len(data) // 2 :])
        else:
            os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(folder: Path) -> None:
    # The rename is only durable once the directory entry is on disk too.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
