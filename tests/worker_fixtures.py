"""Fixtures for a whole worker on the embedded defaults: real Piper, SQLite, local storage."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared.config import Settings
from shared.engines.base import Engine
from shared.tenants.base import UNLIMITED
from shared.worker import WorkerContext, build_worker


def usage_rows(worker: WorkerContext) -> list[sqlite3.Row]:
    """The embedded store's usage rows, in the order written, once the writer has caught up."""
    assert worker.usage.flush(timeout_s=10)
    db = sqlite3.connect(worker.settings.sqlite_path)
    db.row_factory = sqlite3.Row
    try:
        return db.execute("SELECT * FROM usage_logs ORDER BY id").fetchall()
    finally:
        db.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        public_base_url="http://127.0.0.1:9",
        auth_cache_ttl_s=0,
        engine="piper",
    )


@pytest.fixture
def make_worker(settings: Settings) -> Iterator[Callable[[Engine], WorkerContext]]:
    """Workers around a given engine, on this test's settings, closed after the test."""
    made: list[WorkerContext] = []

    def make(engine: Engine) -> WorkerContext:
        made.append(build_worker(settings, engine=engine))
        return made[-1]

    yield make
    for ctx in made:
        ctx.close()


@pytest.fixture
def worker(make_worker: Callable[[Engine], WorkerContext], piper_engine: Engine) -> WorkerContext:
    return make_worker(piper_engine)


@pytest.fixture
def api_key(worker: WorkerContext) -> str:
    return worker.tenants.create_tenant("acme", UNLIMITED).api_key
