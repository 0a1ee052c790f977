"""Twin testing: every book test body runs against the native core (``core``) and the pure-Python
reference model (``ref``, ``tests/reference.py``). Run one side with ``-k ref`` or ``-k core``."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase

import obengine
from helpers import BASE_ASKS, BASE_BIDS, PAIR, f431
from reference import RefBook, RefBookSet

# Hypothesis keeps its example database in the repository's (git-ignored) .hypothesis/, whatever
# the working directory; no deadlines: nothing in this suite is timed.
ROOT = Path(__file__).resolve().parent.parent
settings.register_profile(
    "obengine",
    deadline=None,
    database=DirectoryBasedExampleDatabase(ROOT / ".hypothesis" / "examples"),
)
settings.load_profile("obengine")

IMPLEMENTATIONS: dict[str, tuple[Any, Any]] = {
    "ref": (RefBook, RefBookSet),
    "core": (obengine.Book, obengine.BookSet),
}


# OBENGINE_TWINS=core runs the twin tests against the core alone: CI's run under the sanitizers
# checks the native core's memory, and the reference model is pure Python (it ran in the main run).
TWINS = [name for name in os.environ.get("OBENGINE_TWINS", "ref,core").split(",") if name]


@pytest.fixture(params=TWINS)
def impl(request: pytest.FixtureRequest) -> str:
    """The implementation under test: ``"ref"`` or ``"core"``."""
    return str(request.param)


@pytest.fixture
def book_class(impl: str) -> Any:
    return IMPLEMENTATIONS[impl][0]


@pytest.fixture
def bookset_class(impl: str) -> Any:
    return IMPLEMENTATIONS[impl][1]


@pytest.fixture
def make_book(book_class: Any) -> Callable[..., Any]:
    """``make_book(pair="BTCTRY", price_scale=0, amount_scale=8)``."""

    def make(pair: str = PAIR, price_scale: int = 0, amount_scale: int = 8) -> Any:
        return book_class(pair, price_scale, amount_scale)

    return make


@pytest.fixture
def book(make_book: Callable[..., Any]) -> Any:
    """BTCTRY (0, 8), synced at CS 100 with the base book: two levels a side."""
    b = make_book()
    assert b.apply(f431(100, BASE_ASKS, BASE_BIDS)) == obengine.Status.APPLIED
    return b
