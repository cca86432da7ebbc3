"""Fixtures shared by several test files."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bmc.scripted import ScriptedModel


@pytest.fixture
def scripted() -> Iterator[Callable[..., ScriptedModel]]:
    """Start a scripted model for a scenario: `model = scripted({"steps": [...]})`.

    Every model started through it is stopped when the test ends, even if the test fails.
    """
    started: list[ScriptedModel] = []

    def start(scenario: Any, **options: Any) -> ScriptedModel:
        model = ScriptedModel(scenario, **options).start()
        started.append(model)
        return model

    yield start
    for model in started:
        model.stop()
