"""The background usage writer: off the hot path, retried until the database is back, drained on
close, idempotent when a batch is retried, and never held up by a row the database refuses."""

from __future__ import annotations

import sqlite3
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.tenants.base import UsageRecord
from shared.tenants.sqlite_store import SqliteTenantStore
from shared.tenants.supabase_store import SupabaseTenantStore
from shared.tenants.usage import UsageWriter
from tests.supabase_stack import SupabaseStack


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
        self.rows: dict[tuple[str, str], UsageRecord] = {}  # by (tenant, job id)
        self.attempts = 0

    def write(self, rows: Sequence[UsageRecord]) -> None:
        self.attempts += 1
        if self.down.is_set():
            raise ConnectionError("database is down")
        for item in rows:
            self.rows.setdefault((item.tenant_id, item.job_id), item)


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


def test_a_retried_row_stays_one_row_and_a_reused_request_id_does_not(tmp_path: Path) -> None:
    store = SqliteTenantStore(tmp_path / "t.sqlite3")
    tenant = store.create_tenant("acme").tenant
    writer = UsageWriter(store.write_usage)
    same = row("same", tenant.id)
    writer.record(same)
    writer.record(same)  # the same job's row again: one row
    writer.record(row("same", tenant.id))  # another job with the client's same request id
    writer.close()
    assert store.usage_by_day(tenant.id)[0].requests == 2


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


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads as often as the interpreter can, so races show up in a short test."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def record_all_at_once(writer: UsageWriter, threads: int, per_thread: int) -> None:
    """``threads`` jobs' threads, released together, each recording ``per_thread`` rows."""
    start = threading.Barrier(threads)

    def job() -> None:
        start.wait()
        for n in range(per_thread):
            writer.record(row(f"r{n}"))

    workers = [threading.Thread(target=job) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def test_concurrent_records_on_a_full_queue_count_every_row_exactly(
    fast_switching: None,
) -> None:
    threads, per_thread, bound = 32, 1, 2
    writers: list[UsageWriter] = []
    try:
        for _ in range(60):  # the race is narrow: many short rounds of all threads at once
            database = FlakyDatabase()
            database.down.set()
            writer = UsageWriter(
                database.write, max_pending=bound, retry_initial_s=0.001, retry_max_s=0.002
            )
            writers.append(writer)
            record_all_at_once(writer, threads, per_thread)
            assert (writer.pending, writer.dropped) == (bound, threads * per_thread - bound)
            database.down.clear()
            assert writer.flush(timeout_s=10)
            assert (writer.written, len(database.rows)) == (bound, bound)
            assert writer.written + writer.dropped == threads * per_thread
    finally:
        # Each close waits out its thread's 0.1 s poll: close them side by side.
        with ThreadPoolExecutor(max_workers=len(writers) or 1) as pool:
            list(pool.map(UsageWriter.close, writers))


def test_rows_for_a_deleted_tenant_are_dropped_and_the_others_arrive(
    supabase_stack: SupabaseStack, supabase_tenant_store: SupabaseTenantStore
) -> None:
    store = supabase_tenant_store
    gone = store.create_tenant(f"gone-{uuid.uuid4().hex[:12]}").tenant
    kept = store.create_tenant(f"kept-{uuid.uuid4().hex[:12]}").tenant
    writer = UsageWriter(store.write_usage, retry_initial_s=0.01, retry_max_s=0.05)
    writer.record(row("before", gone.id))
    assert writer.flush(timeout_s=10)
    supabase_stack.psql(f"delete from tenants where id = '{gone.id}'")

    for n in range(3):
        writer.record(row(f"orphan-{n}", gone.id))  # a foreign key violation, forever
        writer.record(row(f"kept-{n}", kept.id))
    assert writer.flush(timeout_s=10)  # idle again: nothing is retried forever

    assert (writer.written, writer.dropped) == (1 + 3, 3)
    [today] = store.usage_by_day(kept.id)
    assert today.requests == 3
    writer.close()


def test_a_locked_sqlite_file_is_retried_until_it_is_free(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite3"
    store = SqliteTenantStore(path)
    tenant = store.create_tenant("acme").tenant
    store._db.execute("PRAGMA busy_timeout=20")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    writer = UsageWriter(store.write_usage, retry_initial_s=0.01, retry_max_s=0.05)
    writer.record(row("r1", tenant.id))
    assert not writer.flush(timeout_s=0.3)
    assert writer.dropped == 0
    other.execute("ROLLBACK")
    other.close()
    assert writer.flush(timeout_s=10)
    assert (writer.written, writer.dropped) == (1, 0)
    writer.close()


def test_a_row_recorded_after_close_is_counted_as_dropped_not_lost() -> None:
    database = FlakyDatabase()
    writer = UsageWriter(database.write)
    writer.record(row("before"))
    writer.close()
    writer.record(row("after"))
    assert len(database.rows) == 1
    assert (writer.written, writer.dropped, writer.pending) == (1, 1, 0)


def test_record_may_run_inside_record_on_one_thread() -> None:
    """A stream collected unread logs its usage from a finalizer, which the garbage collector
    may run on a thread that is itself inside ``record`` (holding its lock): no deadlock."""
    database = FlakyDatabase()
    writer = UsageWriter(database.write)
    done = threading.Event()

    def nested() -> None:
        with writer._counts:  # where record() is when a collection runs a finalizer
            writer.record(row("from-a-finalizer"))
        done.set()

    threading.Thread(target=nested, daemon=True).start()
    assert done.wait(timeout=10), "record() deadlocked inside record()"
    assert writer.flush(timeout_s=10) and writer.written == 1
    writer.close()
