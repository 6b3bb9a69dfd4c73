"""The embedded tenant store: hashed keys, constant-time checks, disabled tenants, the TTL cache."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.errors import (
    AuthUnavailable,
    InternalError,
    InvalidInput,
    NotFound,
    QuotaExceeded,
    RateLimited,
    Unauthorized,
)
from shared.tenants.base import UNLIMITED, TenantLimits, UsageRecord
from shared.tenants.cache import TtlCache
from shared.tenants.dev import ensure_dev_tenant
from shared.tenants.keys import hash_api_key, new_api_key, parse_api_key
from shared.tenants.sqlite_store import SCHEMA_VERSION, SqliteTenantStore


@pytest.fixture
def store(tmp_path: Path) -> SqliteTenantStore:
    return SqliteTenantStore(tmp_path / "tenants.sqlite3", cache_ttl_s=0)


def test_valid_key_authenticates_its_tenant(store: SqliteTenantStore) -> None:
    issued = store.create_tenant("acme")
    assert store.authenticate(issued.api_key) == issued.tenant
    assert issued.api_key.startswith(f"stts_{issued.tenant.key_prefix}_")


@pytest.mark.parametrize("key", ["", "nope", "stts_0000000_short", "x" * 500])
def test_malformed_keys_are_unauthorized(store: SqliteTenantStore, key: str) -> None:
    store.create_tenant("acme")
    with pytest.raises(Unauthorized):
        store.authenticate(key)


def test_wrong_secret_with_a_real_prefix_is_unauthorized(store: SqliteTenantStore) -> None:
    issued = store.create_tenant("acme")
    forged = issued.api_key[:-4] + ("AAAA" if not issued.api_key.endswith("AAAA") else "BBBB")
    with pytest.raises(Unauthorized):
        store.authenticate(forged)


def test_disabled_tenant_is_unauthorized_and_enable_restores_it(store: SqliteTenantStore) -> None:
    issued = store.create_tenant("acme")
    store.set_active(issued.tenant.id, False)
    with pytest.raises(Unauthorized):
        store.authenticate(issued.api_key)
    store.set_active(issued.tenant.id, True)
    assert store.authenticate(issued.api_key).active


def test_only_a_hash_of_the_key_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "tenants.sqlite3"
    store = SqliteTenantStore(path)
    issued = store.create_tenant("acme")
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    secret = issued.api_key.rsplit("_", 1)[1]
    assert secret.encode() not in raw
    assert hash_api_key(issued.api_key).encode() in raw


def test_key_survives_reopening_the_database(tmp_path: Path) -> None:
    path = tmp_path / "tenants.sqlite3"
    first = SqliteTenantStore(path)
    issued = first.create_tenant("acme")
    first.close()
    assert SqliteTenantStore(path).authenticate(issued.api_key).name == "acme"


def test_cached_lookup_skips_the_database(tmp_path: Path) -> None:
    store = SqliteTenantStore(tmp_path / "t.sqlite3", cache_ttl_s=60)
    issued = store.create_tenant("acme")
    store.authenticate(issued.api_key)
    store._db.execute("DELETE FROM tenants")  # the row is gone; only the cache can answer
    assert store.authenticate(issued.api_key).id == issued.tenant.id


def test_ttl_cache_expires_and_stays_bounded() -> None:
    now = [0.0]
    cache: TtlCache[int] = TtlCache(ttl_s=10, max_entries=2, clock=lambda: now[0])
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("c", 3)
    assert cache.get("a") is None and cache.get("c") == 3
    now[0] = 10.0
    assert cache.get("b") is None and cache.get("c") is None


def test_dev_tenant_key_is_issued_only_on_first_run(store: SqliteTenantStore) -> None:
    first = ensure_dev_tenant(store)
    assert first is not None and parse_api_key(first.api_key) is not None
    assert ensure_dev_tenant(store) is None
    assert [t.name for t in store.list_tenants()] == ["dev"]


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 21, 12, 0, 30, tzinfo=UTC))


@pytest.fixture
def timed_store(tmp_path: Path, clock: Clock) -> SqliteTenantStore:
    return SqliteTenantStore(tmp_path / "tenants.sqlite3", cache_ttl_s=0, clock=clock)


def test_per_minute_limit_refuses_with_retry_after_until_the_oldest_request_leaves(
    timed_store: SqliteTenantStore, clock: Clock
) -> None:
    tenant_id = timed_store.create_tenant("acme", TenantLimits(requests_per_minute=3)).tenant.id
    for _ in range(3):
        timed_store.authorize(tenant_id, 10)
    with pytest.raises(RateLimited) as refused:
        timed_store.authorize(tenant_id, 10)
    assert refused.value.retry_after_s == 60  # all three at 12:00:30: they leave at 12:01:30
    clock.now += timedelta(seconds=59.5)
    with pytest.raises(RateLimited) as refused:
        timed_store.authorize(tenant_id, 10)
    assert refused.value.retry_after_s == 1  # half a second, rounded up
    clock.now += timedelta(seconds=0.5)
    timed_store.authorize(tenant_id, 10)


def test_per_hour_limit_holds_across_minutes(timed_store: SqliteTenantStore, clock: Clock) -> None:
    limits = TenantLimits(requests_per_minute=None, requests_per_hour=2)
    tenant_id = timed_store.create_tenant("acme", limits).tenant.id
    timed_store.authorize(tenant_id, 1)
    clock.now += timedelta(minutes=5)
    timed_store.authorize(tenant_id, 1)
    with pytest.raises(RateLimited, match="per-hour"):
        timed_store.authorize(tenant_id, 1)


def test_request_that_would_exceed_the_quota_is_refused_and_charges_nothing(
    timed_store: SqliteTenantStore, clock: Clock
) -> None:
    tenant_id = timed_store.create_tenant("acme", TenantLimits(monthly_char_quota=100)).tenant.id
    timed_store.authorize(tenant_id, 60)
    with pytest.raises(QuotaExceeded):
        timed_store.authorize(tenant_id, 41)
    timed_store.authorize(tenant_id, 40)  # the refused 41 were not charged: 60 + 40 fits exactly
    with pytest.raises(QuotaExceeded):
        timed_store.authorize(tenant_id, 1)
    clock.now = datetime(2026, 12, 1, tzinfo=UTC)  # a new month starts from zero
    timed_store.authorize(tenant_id, 100)


def test_refused_requests_do_not_use_up_the_rate_window(
    timed_store: SqliteTenantStore,
) -> None:
    limits = TenantLimits(monthly_char_quota=10, requests_per_minute=2)
    tenant_id = timed_store.create_tenant("acme", limits).tenant.id
    for _ in range(5):
        with pytest.raises(QuotaExceeded):
            timed_store.authorize(tenant_id, 11)
    timed_store.authorize(tenant_id, 1)
    timed_store.authorize(tenant_id, 1)


def test_threads_racing_never_get_more_than_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "tenants.sqlite3"
    key = SqliteTenantStore(path).create_tenant("acme", TenantLimits(requests_per_minute=10))
    stores = [SqliteTenantStore(path, cache_ttl_s=0) for _ in range(2)]  # two "workers"

    def attempt(n: int) -> bool:
        try:
            stores[n % 2].authorize(key.tenant.id, 1)
        except RateLimited:
            return False
        return True

    with ThreadPoolExecutor(max_workers=6) as pool:
        allowed = list(pool.map(attempt, range(30)))
    assert sum(allowed) == 10


def test_rotated_key_replaces_the_old_one(store: SqliteTenantStore) -> None:
    issued = store.create_tenant("acme")
    rotated = store.rotate_key(issued.tenant.id)
    assert store.authenticate(rotated.api_key).id == issued.tenant.id
    with pytest.raises(Unauthorized):
        store.authenticate(issued.api_key)


def test_limits_can_be_changed_and_unknown_tenants_are_not_found(
    store: SqliteTenantStore,
) -> None:
    issued = store.create_tenant("acme")
    assert store.set_limits(issued.tenant.id, UNLIMITED).limits == UNLIMITED
    assert store.get_tenant(issued.tenant.id).limits == UNLIMITED
    with pytest.raises(NotFound):
        store.set_active("no-such-tenant", False)
    with pytest.raises(NotFound):
        store.get_tenant("no-such-tenant")


def usage(tenant_id: str, request_id: str, **fields: object) -> UsageRecord:
    base: dict[str, object] = {"action": "synthesize", "created_at": datetime.now(UTC)}
    return UsageRecord(tenant_id=tenant_id, request_id=request_id, **{**base, **fields})  # type: ignore[arg-type]


def test_usage_rows_are_idempotent_on_job_id_and_summed_by_day(
    store: SqliteTenantStore,
) -> None:
    tenant = store.create_tenant("acme").tenant
    first = usage(tenant.id, "a", input_chars=10, audio_seconds=1.5, audio_bytes=100)
    store.write_usage([first])
    store.write_usage([first, usage(tenant.id, "b", input_chars=5)])  # a retried batch
    store.write_usage([usage(tenant.id, "c", error_code="voice_not_found")])
    [today] = store.usage_by_day(tenant.id)
    assert (today.requests, today.failed, today.input_chars) == (3, 1, 15)
    assert today.audio_seconds == pytest.approx(1.5) and today.audio_bytes == 100


def test_database_from_before_limits_gains_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE tenants (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, key_prefix TEXT"
        " NOT NULL UNIQUE, key_hash TEXT NOT NULL, active INTEGER NOT NULL DEFAULT 1,"
        " created_at TEXT NOT NULL, updated_at TEXT NOT NULL)"
    )
    old.commit()
    old.close()
    issued = SqliteTenantStore(path).create_tenant("acme")
    assert issued.tenant.limits == TenantLimits()


def test_negative_character_counts_are_refused(timed_store: SqliteTenantStore) -> None:
    tenant_id = timed_store.create_tenant("acme", TenantLimits(monthly_char_quota=100)).tenant.id
    with pytest.raises(InvalidInput):
        timed_store.authorize(tenant_id, -1000)
    with pytest.raises(QuotaExceeded):
        timed_store.authorize(tenant_id, 101)


def test_disabling_or_rotating_clears_this_processs_key_cache(tmp_path: Path) -> None:
    store = SqliteTenantStore(tmp_path / "t.sqlite3", cache_ttl_s=3600)
    issued = store.create_tenant("acme")
    store.authenticate(issued.api_key)  # now cached for an hour
    store.set_active(issued.tenant.id, False)
    with pytest.raises(Unauthorized):
        store.authenticate(issued.api_key)
    store.set_active(issued.tenant.id, True)
    store.authenticate(issued.api_key)
    store.rotate_key(issued.tenant.id)
    with pytest.raises(Unauthorized):
        store.authenticate(issued.api_key)


def test_usage_by_day_covers_only_the_requested_days(
    timed_store: SqliteTenantStore, clock: Clock
) -> None:
    tenant = timed_store.create_tenant("acme").tenant
    now = clock.now
    timed_store.write_usage(
        [
            usage(tenant.id, "today", created_at=now, input_chars=1),
            usage(tenant.id, "yesterday", created_at=now - timedelta(days=1), input_chars=2),
            usage(tenant.id, "old", created_at=now - timedelta(days=40), input_chars=4),
        ]
    )
    days = timed_store.usage_by_day(tenant.id, days=7)
    assert [(d.day.isoformat(), d.input_chars) for d in days] == [
        ("2026-11-20", 2),
        ("2026-11-21", 1),
    ]


def test_jobs_across_a_minute_boundary_get_no_more_than_the_per_minute_limit(
    timed_store: SqliteTenantStore, clock: Clock
) -> None:
    """8 jobs a second apart, 2 before 12:01:00 and 6 after: fixed windows let 2 + 5 pass."""
    tenant_id = timed_store.create_tenant("acme", TenantLimits(requests_per_minute=5)).tenant.id
    clock.now = datetime(2026, 11, 21, 12, 0, 58, tzinfo=UTC)
    outcomes: list[str | int] = []
    for _ in range(8):
        try:
            timed_store.authorize(tenant_id, 1)
            outcomes.append("allowed")
        except RateLimited as exc:
            outcomes.append(exc.retry_after_s)
        clock.now += timedelta(seconds=1)
    # 12:01:03, :04, :05 wait for the job of 12:00:58 to leave the window at 12:01:58.
    assert outcomes == ["allowed"] * 5 + [55, 54, 53]
    clock.now = datetime(2026, 11, 21, 12, 1, 58, tzinfo=UTC)
    timed_store.authorize(tenant_id, 1)
    with pytest.raises(RateLimited) as refused:
        timed_store.authorize(tenant_id, 1)
    assert refused.value.retry_after_s == 1  # 12:00:59 leaves the window a second from now


def test_per_hour_retry_after_waits_for_the_oldest_request_in_the_hour(
    timed_store: SqliteTenantStore, clock: Clock
) -> None:
    limits = TenantLimits(requests_per_minute=None, requests_per_hour=2)
    tenant_id = timed_store.create_tenant("acme", limits).tenant.id
    timed_store.authorize(tenant_id, 1)
    clock.now += timedelta(minutes=20)
    timed_store.authorize(tenant_id, 1)
    clock.now += timedelta(minutes=10, seconds=0.25)
    with pytest.raises(RateLimited, match="per-hour") as refused:
        timed_store.authorize(tenant_id, 1)
    assert refused.value.retry_after_s == 30 * 60  # 29 min 59.75 s, rounded up
    clock.now += timedelta(minutes=30)
    timed_store.authorize(tenant_id, 1)


def request_log_size(store: SqliteTenantStore) -> int:
    return int(store._db.execute("SELECT count(*) FROM request_log").fetchone()[0])


def test_requests_are_logged_for_an_hour_even_when_unlimited(
    timed_store: SqliteTenantStore, clock: Clock
) -> None:
    tenant_id = timed_store.create_tenant("acme", UNLIMITED).tenant.id
    for _ in range(3):
        timed_store.authorize(tenant_id, 1)
    assert request_log_size(timed_store) == 3
    clock.now += timedelta(hours=1)
    timed_store.authorize(tenant_id, 1)
    assert request_log_size(timed_store) == 1  # the three from an hour ago are gone


def test_authorize_refuses_unknown_and_disabled_tenant_ids(store: SqliteTenantStore) -> None:
    issued = store.create_tenant("acme")
    with pytest.raises(Unauthorized, match="invalid or disabled API key"):
        store.authorize("no-such-tenant", 1)
    store.set_active(issued.tenant.id, False)
    with pytest.raises(Unauthorized, match="invalid or disabled API key"):
        store.authorize(issued.tenant.id, 1)
    assert request_log_size(store) == 0


def test_a_locked_database_is_unavailable_not_refused(tmp_path: Path) -> None:
    path = tmp_path / "tenants.sqlite3"
    store = SqliteTenantStore(path)
    tenant = store.create_tenant("acme").tenant
    store._db.execute("PRAGMA busy_timeout=50")  # fail fast instead of waiting 5 s
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with pytest.raises(AuthUnavailable, match="locked"):
            store.write_usage([usage(tenant.id, "r1")])
        with pytest.raises(AuthUnavailable):
            store.authorize(tenant.id, 1)
    finally:
        other.execute("ROLLBACK")
        other.close()
    store.write_usage([usage(tenant.id, "r1")])
    assert store.usage_by_day(tenant.id)[0].requests == 1


# A file made before schema versions: the DDL of the store as it was, copied verbatim.
_UNVERSIONED_SCHEMA = """
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    key_prefix TEXT NOT NULL UNIQUE,
    key_hash TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    monthly_char_quota INTEGER,
    requests_per_minute INTEGER,
    requests_per_hour INTEGER,
    max_voices INTEGER NOT NULL DEFAULT 10,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rate_windows (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    window_s INTEGER NOT NULL,
    window_start INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, window_s, window_start)
);
CREATE TABLE IF NOT EXISTS monthly_chars (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    month TEXT NOT NULL,
    chars INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, month)
);
CREATE TABLE IF NOT EXISTS usage_logs (
    id INTEGER PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    request_id TEXT NOT NULL,
    action TEXT NOT NULL,
    input_chars INTEGER NOT NULL,
    audio_bytes INTEGER NOT NULL,
    audio_seconds REAL NOT NULL,
    latency_ms REAL NOT NULL,
    engine TEXT,
    voice TEXT,
    format TEXT,
    delivery TEXT,
    cached INTEGER NOT NULL,
    streaming INTEGER NOT NULL,
    error_code TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (tenant_id, request_id)
);
CREATE INDEX IF NOT EXISTS usage_logs_tenant_created ON usage_logs (tenant_id, created_at);
"""


def make_unversioned_file(path: Path, clock: Clock) -> str:
    """A developer's file from before schema versions: one tenant, its usage and counters.
    Returns the tenant's key."""
    api_key, parsed = new_api_key()
    created = clock.now.isoformat()
    old = sqlite3.connect(path)
    old.executescript(_UNVERSIONED_SCHEMA)
    old.execute(
        "INSERT INTO tenants VALUES ('t-acme', 'acme', ?, ?, 1, 1000, 5, 100, 10, ?, ?)",
        (parsed.prefix, parsed.digest, created, created),
    )
    old.executemany(
        "INSERT INTO usage_logs (tenant_id, request_id, action, input_chars, audio_bytes,"
        " audio_seconds, latency_ms, cached, streaming, created_at)"
        " VALUES ('t-acme', ?, 'synthesize', ?, 0, 0, 0, 0, 0, ?)",
        [("r1", 10, created), ("r2", 5, created)],
    )
    old.execute("INSERT INTO rate_windows VALUES ('t-acme', 60, 0, 2)")
    old.execute("INSERT INTO monthly_chars VALUES ('t-acme', '2026-11', 15)")
    old.commit()
    old.close()
    return api_key


def test_a_file_from_before_schema_versions_keeps_its_tenants_keys_and_usage(
    tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "tenants.sqlite3"
    api_key = make_unversioned_file(path, clock)

    store = SqliteTenantStore(path, cache_ttl_s=0, clock=clock)
    tenant = store.authenticate(api_key)
    assert (tenant.id, tenant.name) == ("t-acme", "acme")
    assert tenant.limits == TenantLimits(1000, 5, 100, 10)
    [today] = store.usage_by_day(tenant.id)
    assert (today.requests, today.input_chars) == (2, 15)
    with pytest.raises(QuotaExceeded, match=r"\(15 of 1000 used\)"):  # the month's counter kept
        store.authorize(tenant.id, 986)

    # The new schema is in place: unlimited voices, one usage row per job.
    unlimited_voices = TenantLimits(1000, 5, 100, None)
    assert store.set_limits(tenant.id, unlimited_voices).limits == unlimited_voices
    store.write_usage([usage(tenant.id, "r1", created_at=clock.now)])  # a new job reusing "r1"
    assert store.usage_by_day(tenant.id)[0].requests == 3
    store.close()

    again = SqliteTenantStore(path, cache_ttl_s=0, clock=clock)  # reopening changes nothing
    assert again.authenticate(api_key).limits == unlimited_voices
    assert again.usage_by_day(tenant.id)[0].requests == 3
    tables = {row[0] for row in again._db.execute("SELECT name FROM sqlite_master")}
    assert "rate_windows" not in tables and "request_log" in tables
    assert again._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    again.close()


def test_a_file_from_a_newer_version_is_not_opened(tmp_path: Path) -> None:
    path = tmp_path / "tenants.sqlite3"
    newer = sqlite3.connect(path)
    newer.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    newer.close()
    with pytest.raises(InternalError, match="newer"):
        SqliteTenantStore(path)


def test_processes_opening_an_old_file_at_once_migrate_it_once(
    tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "tenants.sqlite3"
    api_key = make_unversioned_file(path, clock)
    with ThreadPoolExecutor(max_workers=4) as pool:
        stores = list(pool.map(lambda _: SqliteTenantStore(path, clock=clock), range(4)))
    for store in stores:
        assert store.authenticate(api_key).id == "t-acme"
        assert store.usage_by_day("t-acme")[0].requests == 2
        store.close()


def test_a_failed_commit_rolls_back_so_the_store_keeps_working(store: SqliteTenantStore) -> None:
    """A COMMIT that fails (here: a foreign key checked only at commit) must not leave the
    connection inside a transaction, where every later BEGIN would fail."""
    store._db.execute("PRAGMA defer_foreign_keys=ON")
    orphan = UsageRecord(
        tenant_id="no-such-tenant",
        request_id="r1",
        action="synthesize",
        created_at=datetime.now(UTC),
    )
    with pytest.raises(InternalError):
        store.write_usage([orphan])
    assert not store._db.in_transaction
    issued = store.create_tenant("still-works")
    assert store.authenticate(issued.api_key).name == "still-works"
