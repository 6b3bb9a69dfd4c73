"""The embedded tenant store: one SQLite file, shared by the local web app, the CLI and a local
RunPod run, with the same behaviour as the Supabase store (limits, quotas, usage logs).

WAL mode lets those processes read and write it at once; ``BEGIN IMMEDIATE`` makes each
authorization one atomic step across processes, as the Postgres RPC is across workers.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import astuple
from datetime import UTC, date, datetime
from pathlib import Path

from shared.errors import InternalError, NotFound, Unauthorized
from shared.tenants.base import DailyUsage, IssuedKey, Tenant, TenantLimits, UsageRecord
from shared.tenants.cache import TtlCache
from shared.tenants.decisions import check_chars, quota_exceeded, rate_limited
from shared.tenants.keys import digests_match, new_api_key, parse_api_key
from shared.tenants.windows import (
    HOUR_S,
    MINUTE_S,
    days_ago,
    month_key,
    retry_after_s,
    window_start,
)

_SCHEMA = """
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
# Columns added after the first release of this file: old databases get them on open.
_ADDED_COLUMNS = {
    "monthly_char_quota": "INTEGER",
    "requests_per_minute": "INTEGER",
    "requests_per_hour": "INTEGER",
    "max_voices": "INTEGER NOT NULL DEFAULT 10",
}
_COLUMNS = (
    "id, name, active, key_prefix, created_at,"
    " monthly_char_quota, requests_per_minute, requests_per_hour, max_voices"
)
_REJECTED = "invalid or disabled API key"
_USAGE_COLUMNS = (
    "tenant_id, request_id, action, input_chars, audio_bytes, audio_seconds, latency_ms,"
    " engine, voice, format, delivery, cached, streaming, error_code, created_at"
)

Clock = Callable[[], datetime]


class SqliteTenantStore:
    def __init__(
        self,
        path: Path,
        *,
        cache_ttl_s: float = 30.0,
        clock: Clock = lambda: datetime.now(UTC),
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._clock = clock
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # Every job commits its rate-window counts: in WAL mode NORMAL syncs at checkpoints,
            # not at each commit (safe against a crash of the process; a power cut may lose the
            # last counts, which the embedded dev store can afford).
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            existing = {row[1] for row in self._db.execute("PRAGMA table_info(tenants)")}
            for column, declaration in _ADDED_COLUMNS.items():
                if column not in existing:
                    self._db.execute(f"ALTER TABLE tenants ADD COLUMN {column} {declaration}")
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
        with self._transaction(immediate=False) as db:
            tenant = _lookup(db, parsed.prefix, parsed.digest)
        self._cache.put(parsed.digest, tenant)
        return tenant

    def authorize(self, api_key: str, chars: int) -> Tenant:
        check_chars(chars)
        parsed = parse_api_key(api_key)
        if parsed is None:
            raise Unauthorized(_REJECTED)
        now = self._clock()
        with self._transaction(immediate=True) as db:
            tenant = _lookup(db, parsed.prefix, parsed.digest)
            _charge(db, tenant, chars, now)
        return tenant

    def create_tenant(self, name: str, limits: TenantLimits | None = None) -> IssuedKey:
        limits = limits or TenantLimits()
        api_key, parsed = new_api_key()
        now = self._now()
        tenant_id = uuid.uuid4().hex
        try:
            with self._transaction(immediate=True) as db:
                db.execute(
                    "INSERT INTO tenants (id, name, key_prefix, key_hash, active,"
                    " monthly_char_quota, requests_per_minute, requests_per_hour, max_voices,"
                    " created_at, updated_at) VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?)",
                    (tenant_id, name, parsed.prefix, parsed.digest, *astuple(limits), now, now),
                )
        except sqlite3.IntegrityError as exc:
            raise InternalError(f"a tenant named {name!r} already exists") from exc
        return IssuedKey(tenant=self.get_tenant(tenant_id), api_key=api_key)

    def set_active(self, tenant_id: str, active: bool) -> Tenant:
        self._update(tenant_id, "active = ?", (int(active),))
        return self.get_tenant(tenant_id)

    def rotate_key(self, tenant_id: str) -> IssuedKey:
        api_key, parsed = new_api_key()
        self._update(tenant_id, "key_prefix = ?, key_hash = ?", (parsed.prefix, parsed.digest))
        return IssuedKey(tenant=self.get_tenant(tenant_id), api_key=api_key)

    def set_limits(self, tenant_id: str, limits: TenantLimits) -> Tenant:
        self._update(
            tenant_id,
            "monthly_char_quota = ?, requests_per_minute = ?, requests_per_hour = ?,"
            " max_voices = ?",
            astuple(limits),
        )
        return self.get_tenant(tenant_id)

    def list_tenants(self) -> Sequence[Tenant]:
        with self._transaction(immediate=False) as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM tenants ORDER BY created_at").fetchall()
        return [_tenant(row) for row in rows]

    def find_by_name(self, name: str) -> Tenant | None:
        with self._transaction(immediate=False) as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM tenants WHERE name = ?", (name,)).fetchone()
        return None if row is None else _tenant(row)

    def write_usage(self, rows: Sequence[UsageRecord]) -> None:
        values = [_usage_values(row) for row in rows]
        placeholders = ", ".join("?" * len(_USAGE_COLUMNS.split(",")))
        with self._transaction(immediate=True) as db:
            db.executemany(
                f"INSERT INTO usage_logs ({_USAGE_COLUMNS}) VALUES ({placeholders})"
                " ON CONFLICT (tenant_id, request_id) DO NOTHING",
                values,
            )

    def usage_by_day(self, tenant_id: str, days: int = 30) -> Sequence[DailyUsage]:
        since = days_ago(self._clock(), days).isoformat()
        with self._transaction(immediate=False) as db:
            rows = db.execute(
                "SELECT substr(created_at, 1, 10) AS day, count(*),"
                " sum(error_code IS NOT NULL), sum(input_chars), sum(audio_seconds),"
                " sum(audio_bytes) FROM usage_logs WHERE tenant_id = ? AND created_at >= ?"
                " GROUP BY day ORDER BY day",
                (tenant_id, since),
            ).fetchall()
        return [
            DailyUsage(
                day=date.fromisoformat(row[0]),
                requests=int(row[1]),
                failed=int(row[2]),
                input_chars=int(row[3]),
                audio_seconds=float(row[4]),
                audio_bytes=int(row[5]),
            )
            for row in rows
        ]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self, *, immediate: bool) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.IntegrityError:
                raise
            except sqlite3.Error as exc:
                raise InternalError("the tenant database failed") from exc

    def _update(self, tenant_id: str, assignments: str, params: tuple[object, ...]) -> None:
        with self._transaction(immediate=True) as db:
            changed = db.execute(
                f"UPDATE tenants SET {assignments}, updated_at = ? WHERE id = ?",
                (*params, self._now(), tenant_id),
            ).rowcount
        if changed == 0:
            raise NotFound(f"no tenant with id {tenant_id}")
        self._cache.clear()

    def get_tenant(self, tenant_id: str) -> Tenant:
        with self._transaction(immediate=False) as db:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM tenants WHERE id = ?", (tenant_id,)
            ).fetchone()
        if row is None:
            raise NotFound(f"no tenant with id {tenant_id}")
        return _tenant(row)

    def _now(self) -> str:
        return self._clock().isoformat()


def _lookup(db: sqlite3.Connection, prefix: str, digest: str) -> Tenant:
    row = db.execute(
        f"SELECT {_COLUMNS}, key_hash FROM tenants WHERE key_prefix = ?", (prefix,)
    ).fetchone()
    if row is None or not digests_match(str(row[-1]), digest):
        raise Unauthorized(_REJECTED)
    tenant = _tenant(row)
    if not tenant.active:
        raise Unauthorized(_REJECTED)
    return tenant


def _charge(db: sqlite3.Connection, tenant: Tenant, chars: int, now: datetime) -> None:
    """Refuse (charging nothing) or count the request in every window and the month."""
    limits = tenant.limits
    windows = [
        (MINUTE_S, limits.requests_per_minute, "per-minute"),
        (HOUR_S, limits.requests_per_hour, "per-hour"),
    ]
    for length_s, limit, label in windows:
        if limit is None:
            continue
        row = db.execute(
            "SELECT requests FROM rate_windows WHERE tenant_id = ? AND window_s = ?"
            " AND window_start = ?",
            (tenant.id, length_s, window_start(now, length_s)),
        ).fetchone()
        if (row[0] if row else 0) >= limit:
            raise rate_limited(label, limit, retry_after_s(now, length_s))
    month = month_key(now)
    if limits.monthly_char_quota is not None:
        row = db.execute(
            "SELECT chars FROM monthly_chars WHERE tenant_id = ? AND month = ?", (tenant.id, month)
        ).fetchone()
        used = row[0] if row else 0
        if used + chars > limits.monthly_char_quota:
            raise quota_exceeded(chars, used, limits.monthly_char_quota)
    for length_s, _, _ in windows:
        db.execute(
            "INSERT INTO rate_windows (tenant_id, window_s, window_start, requests)"
            " VALUES (?, ?, ?, 1) ON CONFLICT DO UPDATE SET requests = requests + 1",
            (tenant.id, length_s, window_start(now, length_s)),
        )
    db.execute(
        "DELETE FROM rate_windows WHERE tenant_id = ? AND window_start < ?",
        (tenant.id, window_start(now, HOUR_S)),
    )
    db.execute(
        "INSERT INTO monthly_chars (tenant_id, month, chars) VALUES (?, ?, ?)"
        " ON CONFLICT DO UPDATE SET chars = chars + excluded.chars",
        (tenant.id, month, chars),
    )


def _tenant(row: tuple[object, ...]) -> Tenant:
    return Tenant(
        id=str(row[0]),
        name=str(row[1]),
        active=bool(row[2]),
        key_prefix=str(row[3]),
        created_at=datetime.fromisoformat(str(row[4])),
        limits=TenantLimits(
            monthly_char_quota=_optional_int(row[5]),
            requests_per_minute=_optional_int(row[6]),
            requests_per_hour=_optional_int(row[7]),
            max_voices=int(str(row[8])),
        ),
    )


def _optional_int(value: object) -> int | None:
    return None if value is None else int(str(value))


def _usage_values(row: UsageRecord) -> tuple[object, ...]:
    return (
        row.tenant_id,
        row.request_id,
        row.action,
        row.input_chars,
        row.audio_bytes,
        row.audio_seconds,
        row.latency_ms,
        row.engine,
        row.voice,
        row.format,
        row.delivery,
        int(row.cached),
        int(row.streaming),
        row.error_code,
        row.created_at.astimezone(UTC).isoformat(),
    )
