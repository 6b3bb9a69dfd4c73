"""The background usage writer: off the hot path, retried until the database is back, drained on
close, and idempotent when a batch is retried."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from shared.tenants.base import UsageRecord
from shared.tenants.sqlite_store import SqliteTenantStore
from shared.tenants.usage import UsageWriter


def row(request_id: str, tenant_id: str = "t1") -> UsageRecord:
    return UsageRecord(
        tenant_id=tenant_id,
        request_id=request_id,
        action="synthesize",
        created_at=datetime.now(UTC),
    )


class FlakyDatabase:
    """Fails while ``down`` is set, like a database that went away; stores rows once up."""

    def __init__(self) -> None:
        self.down = threading.Event()
        self.rows: dict[tuple[str, str], UsageRecord] = {}
        self.attempts = 0

    def write(self, rows: Sequence[UsageRecord]) -> None:
        self.attempts += 1
        if self.down.is_set():
            raise ConnectionError("database is down")
        for item in rows:
            self.rows.setdefault((item.tenant_id, item.request_id), item)


def test_rows_are_written_in_the_background_and_flush_waits_for_them() -> None:
    database = FlakyDatabase()
    writer = UsageWriter(database.write)
    for n in range(50):
        writer.record(row(f"r{n}"))
    assert writer.flush(timeout_s=10)
    assert len(database.rows) == 50 and writer.written == 50 and writer.pending == 0
    writer.close()


def test_rows_made_while_the_database_is_down_arrive_when_it_is_back() -> None:
    database = FlakyDatabase()
    database.down.set()
    writer = UsageWriter(database.write, retry_initial_s=0.01, retry_max_s=0.05)
    for n in range(10):
        writer.record(row(f"r{n}"))
    assert not writer.flush(timeout_s=0.3)  # still down: nothing written, nothing dropped
    assert writer.pending == 10 and writer.dropped == 0 and database.attempts >= 2
    database.down.clear()
    assert writer.flush(timeout_s=10)
    assert len(database.rows) == 10 and writer.dropped == 0
    writer.close()


def test_close_drains_every_queued_row(tmp_path: Path) -> None:
    store = SqliteTenantStore(tmp_path / "t.sqlite3")
    tenant = store.create_tenant("acme").tenant
    writer = UsageWriter(store.write_usage, max_batch=7)
    for n in range(100):
        writer.record(row(f"r{n}", tenant.id))
    writer.close()
    [today] = store.usage_by_day(tenant.id)
    assert today.requests == 100 and writer.dropped == 0


def test_a_retried_request_id_stays_one_row(tmp_path: Path) -> None:
    store = SqliteTenantStore(tmp_path / "t.sqlite3")
    tenant = store.create_tenant("acme").tenant
    writer = UsageWriter(store.write_usage)
    writer.record(row("same", tenant.id))
    writer.record(row("same", tenant.id))
    writer.close()
    assert store.usage_by_day(tenant.id)[0].requests == 1


def test_a_full_queue_drops_and_counts_instead_of_blocking_the_job() -> None:
    database = FlakyDatabase()
    database.down.set()
    writer = UsageWriter(database.write, max_pending=5, retry_initial_s=0.01, retry_max_s=0.02)
    for n in range(20):
        writer.record(row(f"r{n}"))
    assert writer.dropped == 15  # rows being retried count against the bound too
    database.down.clear()
    writer.close()
    assert len(database.rows) + writer.dropped == 20


def test_a_row_the_database_refuses_is_dropped_without_holding_up_the_others(
    tmp_path: Path,
) -> None:
    store = SqliteTenantStore(tmp_path / "t.sqlite3")
    tenant = store.create_tenant("acme").tenant
    writer = UsageWriter(store.write_usage)
    writer.record(row("good-1", tenant.id))
    writer.record(row("orphan", "no-such-tenant"))  # violates the foreign key, forever
    writer.record(row("good-2", tenant.id))
    writer.close(timeout_s=10)
    assert (writer.written, writer.dropped) == (2, 1)
    assert store.usage_by_day(tenant.id)[0].requests == 2
