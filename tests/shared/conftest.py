"""Fixtures shared by the core's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.tenants.base import TenantStore
from shared.tenants.sqlite_store import SqliteTenantStore


@pytest.fixture(params=["sqlite", "supabase"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TenantStore]:
    """Each tenant store in turn: the embedded SQLite one, and Supabase on real Postgres."""
    if request.param == "supabase":
        yield request.getfixturevalue("supabase_tenant_store")
        return
    store = SqliteTenantStore(tmp_path / "tenants.sqlite3")
    yield store
    store.close()
