"""Fixtures of the failover tests (tests/handlers/failover_rig.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.config import Settings
from shared.engines.base import Engine
from tests.handlers.failover_rig import KEY, Rig, open_rig
from tests.vendor_servers import OPENAI, VendorServer, vendor_server


@pytest.fixture(scope="module")
def openai_server() -> Iterator[VendorServer]:
    """OpenAI speech's local server, one per test module."""
    with vendor_server(OPENAI, KEY) as server:
        yield server


@pytest.fixture
def rig(settings: Settings, piper_engine: Engine, openai_server: VendorServer) -> Iterator[Rig]:
    with open_rig(settings, piper_engine, openai_server) as made:
        yield made
