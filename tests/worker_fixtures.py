"""Fixtures for a whole worker on the embedded defaults: real Piper, SQLite, local storage."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.config import Settings
from shared.engines.base import Engine
from shared.worker import WorkerContext, build_worker


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        public_base_url="http://127.0.0.1:9",
        auth_cache_ttl_s=0,
        engine="piper",
    )


@pytest.fixture
def worker(settings: Settings, piper_engine: Engine) -> Iterator[WorkerContext]:
    ctx = build_worker(settings, engine=piper_engine)
    yield ctx
    ctx.close()


@pytest.fixture
def api_key(worker: WorkerContext) -> str:
    return worker.tenants.create_tenant("acme").api_key
