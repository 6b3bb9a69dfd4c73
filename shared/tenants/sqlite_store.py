"""The embedded tenant store: one SQLite file, shared by the local web app, the CLI and a local
RunPod run. WAL mode lets those processes read and write it at the same time.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from shared.errors import InternalError, NotFound, Unauthorized
from shared.tenants.base import IssuedKey, Tenant
from shared.tenants.cache import TtlCache
from shared.tenants.keys import digests_match, new_api_key, parse_api_key

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    key_prefix TEXT NOT NULL UNIQUE,
    key_hash TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"""
_COLUMNS = "id, name, active, key_prefix, created_at"
_REJECTED = "invalid or disabled API key"


class SqliteTenantStore:
    def __init__(self, path: Path, *, cache_ttl_s: float = 30.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise InternalError(f"cannot open the tenant database at {path}") from exc
        # Keyed by the key's digest, never the key; holds only successful lookups, so a
        # disabled key stops working within one TTL.
        self._cache: TtlCache[Tenant] = TtlCache(cache_ttl_s)

    def authenticate(self, api_key: str) -> Tenant:
        parsed = parse_api_key(api_key)
        if parsed is None:
            raise Unauthorized(_REJECTED)
        cached = self._cache.get(parsed.digest)
        if cached is not None:
            return cached
        row = self._query_one(
            f"SELECT {_COLUMNS}, key_hash FROM tenants WHERE key_prefix = ?", (parsed.prefix,)
        )
        if row is None or not digests_match(row[5], parsed.digest):
            raise Unauthorized(_REJECTED)
        tenant = _tenant(row)
        if not tenant.active:
            raise Unauthorized(_REJECTED)
        self._cache.put(parsed.digest, tenant)
        return tenant

    def create_tenant(self, name: str) -> IssuedKey:
        api_key = new_api_key()
        parsed = parse_api_key(api_key)
        assert parsed is not None  # new_api_key always makes a parseable key
        now = _now()
        tenant_id = uuid.uuid4().hex
        try:
            self._execute(
                "INSERT INTO tenants (id, name, key_prefix, key_hash, active, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, 1, ?, ?)",
                (tenant_id, name, parsed.prefix, parsed.digest, now, now),
            )
        except sqlite3.IntegrityError as exc:
            raise InternalError(f"a tenant named {name!r} already exists") from exc
        return IssuedKey(tenant=self._get(tenant_id), api_key=api_key)

    def set_active(self, tenant_id: str, active: bool) -> Tenant:
        self._execute(
            "UPDATE tenants SET active = ?, updated_at = ? WHERE id = ?",
            (int(active), _now(), tenant_id),
        )
        self._cache.clear()
        return self._get(tenant_id)

    def list_tenants(self) -> Sequence[Tenant]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM tenants ORDER BY created_at"
            ).fetchall()
        return [_tenant(row) for row in rows]

    def find_by_name(self, name: str) -> Tenant | None:
        row = self._query_one(f"SELECT {_COLUMNS} FROM tenants WHERE name = ?", (name,))
        return None if row is None else _tenant(row)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _get(self, tenant_id: str) -> Tenant:
        row = self._query_one(f"SELECT {_COLUMNS} FROM tenants WHERE id = ?", (tenant_id,))
        if row is None:
            raise NotFound(f"no tenant with id {tenant_id}")
        return _tenant(row)

    def _query_one(self, sql: str, params: tuple[object, ...]) -> tuple[object, ...] | None:
        with self._lock:
            return self._db.execute(sql, params).fetchone()

    def _execute(self, sql: str, params: tuple[object, ...]) -> None:
        with self._lock:
            self._db.execute(sql, params)


def _tenant(row: tuple[object, ...]) -> Tenant:
    return Tenant(
        id=str(row[0]),
        name=str(row[1]),
        active=bool(row[2]),
        key_prefix=str(row[3]),
        created_at=datetime.fromisoformat(str(row[4])),
    )


def _now() -> str:
    return datetime.now(UTC).isoformat()
