"""The house shows its architecture: each layer imports only the layers below it, and the
engine never touches a terminal (docs/architecture.md).

Read from the source with `ast`, imports inside functions included, so a delayed import
cannot hide an upward dependency."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "bmc"

# Top to bottom; a layer may import itself and anything below it.
# The surfaces come first: the command line starts the terminal chat and the web server.
# `evals` drives the engine like a surface (bmc eval), and is driven by the command line.
LAYERS = ["cli", "evals", "web", "terminal", "engine", "documents", "workspace"]
# Used by every layer: the exit-code exceptions and the kill-test hooks.
SHARED = {"errors", "crashpoints"}
# Apart: the loopback model imports nothing of ours; surfaces (the demo, the evals'
# offline replays) may use it.
APART = {"scripted"}
USES_SCRIPTED = {"cli", "evals"}


def modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "_data" not in p.parts)


def layer_of(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def imported(path: Path) -> set[str]:
    """Every module name the file imports, absolute (`bmc.engine.loop`, `rich.console`)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import; use bmc.<layer>.<module>"
            names.add(node.module or "")
    return names


def bmc_layer(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if parts[0] == "bmc" and len(parts) > 1 else None


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_a_module_imports_only_its_own_layer_and_those_below(path: Path) -> None:
    own = layer_of(path)
    if own in SHARED | APART | {"__init__"}:
        below = set() if own in APART else SHARED
    else:
        assert own in LAYERS, f"{path} is in no layer: put it in one of {LAYERS}"
        below = (
            set(LAYERS[LAYERS.index(own) :]) | SHARED | (APART if own in USES_SCRIPTED else set())
        )
    upward = sorted(
        name for name in imported(path) if (layer := bmc_layer(name)) and layer not in below
    )
    assert upward == [], f"{path.relative_to(SRC)} reaches up to {upward}"


def test_the_engine_and_the_rules_below_it_never_touch_a_terminal() -> None:
    surface_only = ("rich", "click")
    for path in modules():
        if layer_of(path) not in {"engine", "documents", "workspace"}:
            continue
        found = [n for n in imported(path) if n.split(".")[0] in surface_only]
        assert found == [], f"{path.relative_to(SRC)} imports {found}"


def test_every_layer_is_a_folder_with_a_docstring_saying_what_it_holds() -> None:
    for layer in LAYERS:
        init = SRC / layer / "__init__.py"
        assert init.is_file(), f"{layer}/ is not a package"
        assert ast.get_docstring(ast.parse(init.read_text("utf-8"))), f"{layer}/ says nothing"
