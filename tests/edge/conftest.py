"""Fixtures for the edge's tests: this product's own HTTP app served on loopback with real
Piper (the web app's fixtures: ``start`` to change settings or the engine, ``served``, and a
tenant ``key`` for it), which the edge's worker clients and call flow talk to, and a ``stack``
for servers a test starts itself."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from tests.entrypoints.conftest import key, served, start

__all__ = ["key", "served", "stack", "start"]


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack
