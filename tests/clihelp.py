"""Run the `bmc` command line in-process, and fingerprint folders, for CLI tests.

`run_bmc` calls `bmc.cli.main` exactly as the console script does, inside Click's test
isolation: stdin is the given text (not a terminal, so each non-blank line is the
consultant's next message or answer), stdout and stderr are captured, and the exit code is
whatever `main` passed to `sys.exit`. An exception escaping `main` is what a user would see
as a traceback, so it is rendered into `stderr` (exit 1, as Python does) and kept in
`Result.exception`, rather than raised: tests then assert on what the user would notice.

The environment is scrubbed of the variables that would point a test at a real endpoint or
another workspace (`ANTHROPIC_*`, `BMC_*`), so a forgotten `env=` fails on a missing key
instead of calling the real API. `scripted_env(model)` gives the two variables that point
the SDK at a scripted model.
"""

from __future__ import annotations

import hashlib
import os
import sys
import traceback
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner

# Removed for every run unless the caller's `env` sets them again.
_SCRUBBED = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "BMC_WORKSPACE",
    "BMC_MODEL",
    "BMC_CRASH_AT",
    "FORCE_COLOR",
    "TTY_COMPATIBLE",
)
# Rich wraps tables to the terminal width (80 when not a terminal); a wide one keeps each
# row and message on one line, so substring assertions do not depend on wrapping. A named
# consultant keeps the agreement code from asking git for user.name.
_DEFAULTS = {"COLUMNS": "200", "BMC_CONSULTANT": "Test Consultant"}


@dataclass(frozen=True)
class Result:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None = None  # set when something escaped `main` (a bug)

    @property
    def output(self) -> str:
        """stdout and stderr together, for assertions that do not care which."""
        return self.stdout + self.stderr


def run_bmc(
    args: list[str],
    *,
    input: str | None = None,
    env: Mapping[str, str | None] | None = None,
    cwd: Path | str | None = None,
) -> Result:
    """Run `bmc ARGS` in this process and return its exit code and output."""
    from bmc.cli import main

    merged: dict[str, str | None] = {name: None for name in _SCRUBBED}
    merged.update(_DEFAULTS)
    merged.update(env or {})
    runner = CliRunner()
    escaped: BaseException | None = None
    with _chdir(cwd), runner.isolation(input=input, env=merged) as (out, err, _mixed):
        try:
            main(list(args))
            code = 0  # main always exits; returning is itself worth a look, but not an error
        except SystemExit as stop:
            code = _exit_code(stop.code)
        except Exception as error:  # what the user would see as a traceback
            escaped = error
            sys.stderr.write(traceback.format_exc())
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        stdout = out.getvalue().decode("utf-8", errors="replace")
        stderr = err.getvalue().decode("utf-8", errors="replace")
    return Result(code, stdout, stderr, escaped)


def _exit_code(code: Any) -> int:
    # sys.exit(None) is 0; sys.exit("text") prints the text and exits 1, as Python does.
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write(f"{code}\n")
    return 1


@contextmanager
def _chdir(cwd: Path | str | None) -> Iterator[None]:
    if cwd is None:
        yield
        return
    before = os.getcwd()
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(before)


@dataclass
class Done:
    """A command run in its own process: exit code, stdout, stderr."""

    rc: int
    out: str
    err: str

    @property
    def text(self) -> str:
        # Rich wraps long lines; compare with whitespace collapsed.
        return " ".join((self.out + "\n" + self.err).split())


def project_args(project: Any) -> list[str]:
    """The options that point a command at `project` from anywhere."""
    return [
        "--workspace",
        str(project.workspace),
        "--org",
        project.org,
        "--project",
        project.slug,
    ]


def scripted_env(model: Any) -> dict[str, str]:
    """The variables that send the real SDK to a scripted model (any key is accepted)."""
    return {"ANTHROPIC_BASE_URL": model.base_url, "ANTHROPIC_API_KEY": "sk-test-scripted"}


def snapshot(root: Path, exclude: Iterable[str] = ()) -> dict[str, str]:
    """Every entry under `root` (files, folders, symlinks, hidden ones and `.bmc/` included)
    as relative posix path -> sha256 of its bytes (`dir` for a folder, `-> target` for a
    link). `exclude` names paths to leave out; one ending in `/` leaves out a whole folder.

    Folders count too: a command that only creates an empty `.bmc/` has still touched the
    workspace. Symlinks are not followed, so a link out of the tree cannot hide a change.
    """
    root = Path(root)
    skip = tuple(exclude)
    entries: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in [*dirs, *files]:
            path = Path(folder) / name
            rel = path.relative_to(root).as_posix()
            if _excluded(rel, skip):
                continue
            if path.is_symlink():
                entries[rel] = f"-> {os.readlink(path)}"
            elif path.is_dir():
                entries[rel + "/"] = "dir"
            else:
                entries[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return dict(sorted(entries.items()))


def _excluded(rel: str, skip: tuple[str, ...]) -> bool:
    return any(rel == s.rstrip("/") or (s.endswith("/") and rel.startswith(s)) for s in skip)


def tree_hash(root: Path, exclude: Iterable[str] = ()) -> str:
    """One sha256 over `snapshot(root, exclude)`: equal hashes mean nothing changed."""
    digest = hashlib.sha256()
    for rel, value in snapshot(root, exclude).items():
        # NUL-framed so a name and a neighbouring value cannot run together.
        digest.update(f"{rel}\0{value}\0".encode())
    return digest.hexdigest()
