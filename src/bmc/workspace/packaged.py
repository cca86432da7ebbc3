"""Where the packaged skills, prompts and fixtures live.

In a source checkout they sit at the repository's top level (the design card asks for
that layout); in an installed wheel they are copied to `bmc/_data/`. Looking in both
places keeps editable and plain installs behaving the same.
"""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent  # src/bmc (this file is in workspace/)


def data_dir(name: str) -> Path:
    """The folder of packaged data `name` (`skills`, `prompts` or `fixtures`)."""
    installed = _PACKAGE / "_data" / name
    if installed.is_dir():
        return installed
    return _PACKAGE.parent.parent / name
