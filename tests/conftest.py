"""Shared fixtures. Tests that read ../shared/data skip cleanly when it is absent."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "fixtures"
SHARED_DATA = Path(os.environ.get("BOTGUARD_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


class Calls:
    """How many times a function patched by ``count_calls`` was called; ``undo()`` restores it."""

    def __init__(self, undo: Callable[[], None]) -> None:
        self.n = 0
        self.undo = undo


@pytest.fixture
def count_calls(monkeypatch: pytest.MonkeyPatch) -> Callable[[Any, str], Calls]:
    """``count_calls(obj, name)``: ``obj.name`` counts its calls until the test ends."""

    def patch(obj: Any, name: str) -> Calls:
        real = getattr(obj, name)
        calls = Calls(lambda: monkeypatch.setattr(obj, name, real))

        def counted(*args: Any, **kwargs: Any) -> Any:
            calls.n += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(obj, name, counted)
        return calls

    return patch
