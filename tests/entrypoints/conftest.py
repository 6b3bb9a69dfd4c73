"""Fixtures for the web app's tests: a served worker on this test's settings (some changed),
real Piper unless a test brings its own engine, and a tenant key for it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from shared.config import Settings
from shared.engines.base import Engine
from tests.entrypoints.web_helpers import Served, Start, start_app


@pytest.fixture
def start(settings: Settings, piper_engine: Engine) -> Iterator[Start]:
    """Serve a worker with some settings changed (and a given engine), until the test ends."""
    with ExitStack() as stack:

        def started(engine: Engine = piper_engine, **changes: Any) -> Served:
            return start_app(stack, settings.model_copy(update=changes), engine)

        yield started


@pytest.fixture
def served(start: Start) -> Served:
    return start()


@pytest.fixture
def key(served: Served) -> str:
    return served.new_key()
