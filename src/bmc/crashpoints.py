"""Deliberate crash points for the kill -9 tests (SPEC section 7: sessions survive anything).

`BMC_CRASH_AT=<point>:<n>` makes the process SIGKILL itself the n-th time it passes
`<point>`, exactly as a power cut or `kill -9` would stop it there. Unset (always, outside
tests) this costs one dictionary lookup. Points: `journal-append` (half a record written:
every `workspace.append_record`, so the `decisions.md` entry counts as well as journal
records; give the `:<n>` explicitly for this one), `atomic-write` (temp file written, not yet
renamed: every document, gate and runner-state file, the lock's holder note included),
`stream-text` (after a text delta of a streamed reply), `gate-written` (gate on disk,
version and decisions entry not yet), `version-meta-written` (a version's sidecar on disk, its
document not yet), `version-written` (the version whole, the decisions entry not yet),
`tool-result` (a tool ran, its result not journaled), `draft-moved` (a draft renamed or
removed, the tool's result not yet journaled). tests/test_kill.py lists where each falls in a
short session; tests/test_versions_kill.py where they fall in `bmc agree`.
"""

from __future__ import annotations

import os
import signal

_counts: dict[str, int] = {}


def crash_point(name: str) -> None:
    target = os.environ.get("BMC_CRASH_AT")
    if not target:
        return
    point, _, nth = target.partition(":")
    if point != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
