"""The embedded tenant store: hashed keys, constant-time checks, disabled tenants, the TTL cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import Unauthorized
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
