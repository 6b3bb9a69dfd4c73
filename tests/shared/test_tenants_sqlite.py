"""The embedded tenant store: hashed keys, constant-time checks, disabled tenants, the TTL cache."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.errors import InvalidInput, NotFound, QuotaExceeded, RateLimited, Unauthorized
from shared.tenants.base import UNLIMITED, TenantLimits, UsageRecord
from shared.tenants.cache import TtlCache
from shared.tenants.dev import ensure_dev_tenant
from shared.tenants.keys import hash_api_key, parse_api_key
from shared.tenants.sqlite_store import SqliteTenantStore


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


def test_per_minute_limit_refuses_with_retry_after_until_the_window_ends(
    timed_store: SqliteTenantStore, clock: Clock
) -> None:
    key = timed_store.create_tenant("acme", TenantLimits(requests_per_minute=3)).api_key
    for _ in range(3):
        timed_store.authorize(key, 10)
    with pytest.raises(RateLimited) as refused:
        timed_store.authorize(key, 10)
    assert refused.value.retry_after_s == 30  # 12:00:30 -> the window ends at 12:01:00
    clock.now += timedelta(seconds=30)
    timed_store.authorize(key, 10)


def test_per_hour_limit_holds_across_minutes(timed_store: SqliteTenantStore, clock: Clock) -> None:
    limits = TenantLimits(requests_per_minute=None, requests_per_hour=2)
    key = timed_store.create_tenant("acme", limits).api_key
    timed_store.authorize(key, 1)
    clock.now += timedelta(minutes=5)
    timed_store.authorize(key, 1)
    with pytest.raises(RateLimited, match="per-hour"):
        timed_store.authorize(key, 1)


def test_request_that_would_exceed_the_quota_is_refused_and_charges_nothing(
    timed_store: SqliteTenantStore, clock: Clock
) -> None:
    key = timed_store.create_tenant("acme", TenantLimits(monthly_char_quota=100)).api_key
    timed_store.authorize(key, 60)
    with pytest.raises(QuotaExceeded):
        timed_store.authorize(key, 41)
    timed_store.authorize(key, 40)  # the refused 41 were not charged: 60 + 40 fits exactly
    with pytest.raises(QuotaExceeded):
        timed_store.authorize(key, 1)
    clock.now = datetime(2026, 12, 1, tzinfo=UTC)  # a new month starts from zero
    timed_store.authorize(key, 100)


def test_refused_requests_do_not_use_up_the_rate_window(
    timed_store: SqliteTenantStore,
) -> None:
    limits = TenantLimits(monthly_char_quota=10, requests_per_minute=2)
    key = timed_store.create_tenant("acme", limits).api_key
    for _ in range(5):
        with pytest.raises(QuotaExceeded):
            timed_store.authorize(key, 11)
    timed_store.authorize(key, 1)
    timed_store.authorize(key, 1)


def test_threads_racing_never_get_more_than_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "tenants.sqlite3"
    key = SqliteTenantStore(path).create_tenant("acme", TenantLimits(requests_per_minute=10))
    stores = [SqliteTenantStore(path, cache_ttl_s=0) for _ in range(2)]  # two "workers"

    def attempt(n: int) -> bool:
        try:
            stores[n % 2].authorize(key.api_key, 1)
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
    with pytest.raises(Unauthorized):
        store.authorize(issued.api_key, 1)


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


def test_usage_rows_are_idempotent_on_request_id_and_summed_by_day(
    store: SqliteTenantStore,
) -> None:
    tenant = store.create_tenant("acme").tenant
    store.write_usage([usage(tenant.id, "a", input_chars=10, audio_seconds=1.5, audio_bytes=100)])
    store.write_usage([usage(tenant.id, "a", input_chars=10), usage(tenant.id, "b", input_chars=5)])
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
    key = timed_store.create_tenant("acme", TenantLimits(monthly_char_quota=100)).api_key
    with pytest.raises(InvalidInput):
        timed_store.authorize(key, -1000)
    with pytest.raises(QuotaExceeded):
        timed_store.authorize(key, 101)


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
