"""The static HTML report of an eval: one page, no script, no network resources.

Everything in it that a model, a case or a document wrote (replies quoted as evidence,
prompts, expectations) is escaped by the template engine (autoescape on, nothing marked
safe), so a reply that contains markup shows as text.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from bmc.workspace.paths import atomic_write


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = _pct
    env.filters["money"] = lambda v: "–" if v is None else f"${v:,.4f}"
    env.filters["num"] = lambda v: "–" if v is None else f"{v:,.0f}"
    return env


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def render_report(results: dict[str, Any]) -> str:
    return _environment().get_template("report.html.j2").render(r=results)


def write_report(path: Path, results: dict[str, Any]) -> None:
    atomic_write(path, render_report(results))
