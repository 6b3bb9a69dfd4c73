"""A tenant's engine order and the usage rows' fallback reason, in both stores; and the SQLite
step from schema 2 (before failover) to 3, which keeps every row."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.errors import InvalidInput, NotFound
from shared.tenants.base import TenantStore, UsageRecord
from shared.tenants.sqlite_store import SCHEMA_VERSION, SqliteTenantStore


def row(tenant_id: str, job_id: str, **fields: object) -> UsageRecord:
    return UsageRecord(
        tenant_id=tenant_id,
        request_id=job_id,
        job_id=job_id,
        action="synthesize",
        created_at=datetime.now(UTC),
        **fields,  # type: ignore[arg-type]
    )


def test_an_engine_order_is_kept_and_cleared(any_store: TenantStore) -> None:
    issued = any_store.create_tenant(f"order-{datetime.now(UTC).timestamp()}")
    assert issued.tenant.engine_order is None
    changed = any_store.set_engine_order(issued.tenant.id, ["elevenlabs", "xtts"])
    assert changed.engine_order == ("elevenlabs", "xtts")
    assert any_store.authenticate(issued.api_key).engine_order == ("elevenlabs", "xtts")
    assert any_store.authorize(issued.tenant.id, 1).engine_order == ("elevenlabs", "xtts")
    assert any_store.set_engine_order(issued.tenant.id, []).engine_order is None
    assert any_store.get_tenant(issued.tenant.id).engine_order is None


@pytest.mark.parametrize(
    "order",
    [["xtts", "xtts"], ["XTTS"], ["a b"], [""], [f"e{n}" for n in range(9)]],
)
def test_a_bad_engine_order_is_refused_before_any_write(
    any_store: TenantStore, order: list[str]
) -> None:
    issued = any_store.create_tenant(f"bad-{datetime.now(UTC).timestamp()}")
    with pytest.raises(InvalidInput):
        any_store.set_engine_order(issued.tenant.id, order)
    assert any_store.get_tenant(issued.tenant.id).engine_order is None


def test_an_unknown_tenants_order_is_not_found(any_store: TenantStore) -> None:
    with pytest.raises(NotFound):
        any_store.set_engine_order("00000000-0000-4000-8000-000000000000", ["xtts"])


def stored_reasons(
    store: TenantStore, tenant_id: str, request: pytest.FixtureRequest
) -> list[tuple[str, str | None]]:
    """(job id, fallback reason) of the tenant's rows, read from the database itself."""
    if isinstance(store, SqliteTenantStore):
        query = "SELECT job_id, fallback_reason FROM usage_logs WHERE tenant_id = ? ORDER BY job_id"
        return [(str(job), reason) for job, reason in store._db.execute(query, (tenant_id,))]
    stack = request.getfixturevalue("supabase_stack")
    out = stack.psql(
        "select job_id, coalesce(fallback_reason, '<null>') from public.usage_logs"
        f" where tenant_id = '{tenant_id}' order by job_id"
    )
    pairs = [line.split("|", 1) for line in out.splitlines()]
    return [(job, None if reason == "<null>" else reason) for job, reason in pairs]


def test_usage_rows_keep_their_fallback_reason(
    any_store: TenantStore, request: pytest.FixtureRequest
) -> None:
    tenant = any_store.create_tenant(f"usage-{datetime.now(UTC).timestamp()}").tenant
    reason = "xtts: circuit_open"
    any_store.write_usage(
        [row(tenant.id, "j1", engine="elevenlabs", fallback_reason=reason), row(tenant.id, "j2")]
    )
    assert stored_reasons(any_store, tenant.id, request) == [("j1", reason), ("j2", None)]


def test_a_schema_2_file_gains_the_new_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "tenants.sqlite3"
    store = SqliteTenantStore(path, cache_ttl_s=0)
    issued = store.create_tenant("acme")
    store.write_usage([row(issued.tenant.id, "j1", engine="piper")])
    store.close()
    old = sqlite3.connect(path)  # back to how schema 2 left it
    old.execute("ALTER TABLE tenants DROP COLUMN engine_order")
    old.execute("ALTER TABLE usage_logs DROP COLUMN fallback_reason")
    old.execute("PRAGMA user_version = 2")
    old.commit()
    old.close()

    store = SqliteTenantStore(path, cache_ttl_s=0)
    tenant = store.authenticate(issued.api_key)
    assert (tenant.name, tenant.engine_order) == ("acme", None)
    assert store.set_engine_order(tenant.id, ["piper"]).engine_order == ("piper",)
    store.write_usage([row(tenant.id, "j2", engine="piper", fallback_reason="xtts: timeout")])
    assert store.usage_by_day(tenant.id)[0].requests == 2
    reasons = store._db.execute(
        "SELECT job_id, fallback_reason FROM usage_logs ORDER BY id"
    ).fetchall()
    assert reasons == [("j1", None), ("j2", "xtts: timeout")]
    assert store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    store.close()
