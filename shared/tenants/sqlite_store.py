"""The embedded tenant store: one SQLite file, shared by the local web app, the CLI and a local
RunPod run, with the same behaviour as the Supabase store (limits, quotas, usage logs, voices).

WAL mode lets those processes read and write it at once; ``BEGIN IMMEDIATE`` makes each
authorization, and each voice creation within ``max_voices``, one atomic step across
processes, as the Postgres RPCs are across workers.

Leases (``lease_allowance``) are reserved the same way the Postgres RPC reserves them: their
requests logged at the lease's end and their characters counted at once. What a lease holds is
kept in this object's memory, not in the file: a lease belongs to the process that took it, and
one the process dies holding counts as spent, as in Postgres. A lease's log entries are the
tenant's entries stamped at its end; entries of one tenant at one instant are alike, so settling
removes or re-stamps that many of them.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import astuple, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from shared.errors import AuthUnavailable, InternalError, NotFound, TTSError, Unauthorized
from shared.tenants import voices
from shared.tenants.base import (
    AllowanceLease,
    DailyUsage,
    IssuedKey,
    LeaseTerms,
    SpentLease,
    Tenant,
    TenantLimits,
    UsageRecord,
)
from shared.tenants.cache import TtlCache
from shared.tenants.decisions import (
    check_chars,
    check_engine_order,
    check_lease,
    check_name,
    name_taken,
    quota_exceeded,
    rate_limited,
)
from shared.tenants.keys import digests_match, new_api_key, parse_api_key
from shared.tenants.voices import VoiceChanges, VoiceFields, VoiceRecord
from shared.tenants.windows import (
    HOUR_S,
    KEPT_S,
    MINUTE_S,
    US_PER_S,
    days_ago,
    epoch_us,
    month_key,
    retry_after_s,
)

# Bump when a definition below changes. Files of an older version (``PRAGMA user_version``; 0 for
# files made before it was set) have every table rebuilt on open, keeping the columns both
# definitions share: SQLite cannot ALTER a constraint. A new column needs a default, or a source
# in _DERIVED_COLUMNS.
SCHEMA_VERSION = 3  # 2: voices; 3: engine orders, fallback reasons
_TABLES = {
    "tenants": """
        CREATE TABLE {name} (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            key_prefix TEXT NOT NULL UNIQUE,
            key_hash TEXT NOT NULL,
            active INTEGER NOT NULL DEFAULT 1,
            monthly_char_quota INTEGER,
            requests_per_minute INTEGER,
            requests_per_hour INTEGER,
            max_voices INTEGER DEFAULT 10,
            engine_order TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
    # Cloned voices; the primary key also serves counting and listing one tenant's voices.
    "voices": """
        CREATE TABLE {name} (
            tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
            voice_id TEXT NOT NULL,
            name TEXT NOT NULL,
            engine TEXT NOT NULL,
            language TEXT,
            description TEXT,
            version TEXT NOT NULL,
            reference_object_key TEXT,
            latents_object_key TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (tenant_id, voice_id)
        )""",
    # One row per allowed request in the last hour: the sliding windows' log.
    "request_log": """
        CREATE TABLE {name} (
            tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
            at_us INTEGER NOT NULL
        )""",
    "monthly_chars": """
        CREATE TABLE {name} (
            tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
            month TEXT NOT NULL,
            chars INTEGER NOT NULL,
            PRIMARY KEY (tenant_id, month)
        )""",
    "usage_logs": """
        CREATE TABLE {name} (
            id INTEGER PRIMARY KEY,
            tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
            job_id TEXT NOT NULL,
            request_id TEXT NOT NULL,
            action TEXT NOT NULL,
            input_chars INTEGER NOT NULL,
            audio_bytes INTEGER NOT NULL,
            audio_seconds REAL NOT NULL,
            latency_ms REAL NOT NULL,
            engine TEXT,
            fallback_reason TEXT,
            voice TEXT,
            voice_version TEXT,
            format TEXT,
            delivery TEXT,
            cached INTEGER NOT NULL,
            streaming INTEGER NOT NULL,
            error_code TEXT,
            created_at TEXT NOT NULL,
            UNIQUE (tenant_id, job_id)
        )""",
}
_INDEXES = (
    "CREATE INDEX usage_logs_tenant_created ON usage_logs (tenant_id, created_at)",
    "CREATE INDEX usage_logs_tenant_request ON usage_logs (tenant_id, request_id)",
    "CREATE INDEX request_log_tenant_at ON request_log (tenant_id, at_us)",
)
# Rows written before job ids existed were one per request id: it is their job id.
_DERIVED_COLUMNS = {"usage_logs": {"job_id": "request_id"}}
# Tables of older versions that nothing reads any more (fixed rate windows).
_DROPPED_TABLES = ("rate_windows",)

_COLUMNS = (
    "id, name, active, key_prefix, created_at,"
    " monthly_char_quota, requests_per_minute, requests_per_hour, max_voices, engine_order"
)
_VOICE_COLUMNS = ", ".join(voices.VOICE_COLUMNS)
_REJECTED = "invalid or disabled API key"
_USAGE_COLUMNS = (
    "tenant_id, job_id, request_id, action, input_chars, audio_bytes, audio_seconds, latency_ms,"
    " engine, voice, voice_version, format, delivery, cached, streaming, error_code, created_at,"
    " fallback_reason"
)

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class _Reserved:
    """What an open lease added to the file: ``requests`` log entries at ``at_us``, ``chars``
    in ``month``'s counter."""

    tenant_id: str
    month: str
    at_us: int
    requests: int
    chars: int


class SqliteTenantStore:
    def __init__(
        self,
        path: Path,
        *,
        cache_ttl_s: float = 30.0,
        clock: Clock = lambda: datetime.now(UTC),
        on_auth_lookup: Callable[[bool], None] | None = None,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Reentrant: a lease's bookkeeping is held across the transaction it commits with.
        self._lock = threading.RLock()
        self._clock = clock
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise InternalError(f"cannot open the tenant database at {path}") from exc
        try:
            self._db.execute("PRAGMA busy_timeout=5000")
            _use_wal(self._db)
            # Every job commits its request-log entry: in WAL mode NORMAL syncs at checkpoints,
            # not at each commit (safe against a crash of the process; a power cut may lose the
            # last entries, which the embedded dev store can afford).
            self._db.execute("PRAGMA synchronous=NORMAL")
            _migrate(self._db)
            self._db.execute("PRAGMA foreign_keys=ON")
        except BaseException as exc:
            self._db.close()  # a file this store cannot use is not held open
            if isinstance(exc, sqlite3.Error):
                raise InternalError(f"cannot open the tenant database at {path}") from exc
            raise
        # Keyed by the key's digest, never the key; holds only successful lookups, so a
        # disabled key stops working within one TTL.
        # on_auth_lookup hears each key lookup's hit or miss (the worker's metrics).
        self._cache: TtlCache[Tenant] = TtlCache(cache_ttl_s, on_lookup=on_auth_lookup)
        # This process's open leases, by id (guarded by _lock, as every transaction is).
        self._leases: dict[str, _Reserved] = {}

    def authenticate(self, api_key: str) -> Tenant:
        parsed = parse_api_key(api_key)
        if parsed is None:
            raise Unauthorized(_REJECTED)
        cached = self._cache.get(parsed.digest)
        if cached is not None:
            return cached
        with self._transaction(immediate=False) as db:
            row = db.execute(
                f"SELECT {_COLUMNS}, key_hash FROM tenants WHERE key_prefix = ?", (parsed.prefix,)
            ).fetchone()
        if row is None or not digests_match(str(row[-1]), parsed.digest):
            raise Unauthorized(_REJECTED)
        tenant = _active(_tenant(row))
        self._cache.put(parsed.digest, tenant)
        return tenant

    def authorize(self, tenant_id: str, chars: int) -> Tenant:
        check_chars(chars)
        now = self._clock()
        with self._transaction(immediate=True) as db:
            found = _tenant_by_id(db, tenant_id)
            if found is None:
                raise Unauthorized(_REJECTED)
            tenant = _active(found)
            _charge(db, tenant, chars, now)
        return tenant

    def lease_allowance(
        self, tenant_id: str, terms: LeaseTerms, settle: SpentLease | None = None
    ) -> AllowanceLease:
        check_lease(terms)
        now = self._clock()
        refusal: TTSError | None = None
        with self._lock:  # held across the transaction: no other thread settles in between
            with self._transaction(immediate=True) as db:
                if settle is not None:
                    self._settle(db, settle, now_us=epoch_us(now))
                # A refusal must not roll the settle back: it is raised once the step commits.
                try:
                    found = _tenant_by_id(db, tenant_id)
                    if found is None:
                        raise Unauthorized(_REJECTED)
                    tenant = _active(found)
                    reserved = _reserve(db, tenant, terms, now)
                except TTSError as exc:
                    refusal = exc
            # Committed: only now does this process hold (or no longer hold) the leases.
            if settle is not None:
                self._leases.pop(settle.lease.id, None)
            if refusal is not None:
                raise refusal
            lease_id = uuid.uuid4().hex
            self._leases[lease_id] = reserved
        return AllowanceLease(
            id=lease_id, tenant=tenant, requests=reserved.requests, chars=reserved.chars
        )

    def return_allowance(self, spent: SpentLease) -> None:
        now_us = epoch_us(self._clock())
        with self._lock:
            with self._transaction(immediate=True) as db:
                self._settle(db, spent, now_us=now_us)
            self._leases.pop(spent.lease.id, None)

    def _settle(self, db: sqlite3.Connection, spent: SpentLease, *, now_us: int) -> None:
        """Take back what the lease did not spend; re-stamp what it spent at ``now_us`` (never
        earlier than it was spent). Nothing for a lease settled already."""
        reserved = self._leases.get(spent.lease.id)
        if reserved is None:
            return
        unspent = reserved.requests - min(max(spent.requests, 0), reserved.requests)
        unspent_chars = reserved.chars - min(max(spent.chars, 0), reserved.chars)
        entries = "SELECT rowid FROM request_log WHERE tenant_id = ? AND at_us = ? LIMIT ?"
        key = (reserved.tenant_id, reserved.at_us)
        db.execute(f"DELETE FROM request_log WHERE rowid IN ({entries})", (*key, unspent))
        db.execute(
            f"UPDATE request_log SET at_us = min(at_us, ?) WHERE rowid IN ({entries})",
            (now_us, *key, reserved.requests - unspent),
        )
        db.execute(
            "UPDATE monthly_chars SET chars = chars - ? WHERE tenant_id = ? AND month = ?",
            (unspent_chars, reserved.tenant_id, reserved.month),
        )

    def create_tenant(self, name: str, limits: TenantLimits | None = None) -> IssuedKey:
        check_name(name)
        limits = limits or TenantLimits()
        api_key, parsed = new_api_key()
        now = self._now()
        tenant_id = uuid.uuid4().hex
        with self._transaction(immediate=True) as db:
            # Checked inside the write transaction, so no other process can take the name
            # between this check and the insert.
            if db.execute("SELECT 1 FROM tenants WHERE name = ?", (name,)).fetchone():
                raise name_taken(name)
            db.execute(
                "INSERT INTO tenants (id, name, key_prefix, key_hash, active,"
                " monthly_char_quota, requests_per_minute, requests_per_hour, max_voices,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?)",
                (tenant_id, name, parsed.prefix, parsed.digest, *astuple(limits), now, now),
            )
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

    def set_engine_order(self, tenant_id: str, order: Sequence[str] | None) -> Tenant:
        checked = check_engine_order(order)
        stored = None if checked is None else json.dumps(list(checked))
        self._update(tenant_id, "engine_order = ?", (stored,))
        return self.get_tenant(tenant_id)

    def list_tenants(self) -> Sequence[Tenant]:
        with self._transaction(immediate=False) as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM tenants ORDER BY created_at").fetchall()
        return [_tenant(row) for row in rows]

    def find_by_name(self, name: str) -> Tenant | None:
        with self._transaction(immediate=False) as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM tenants WHERE name = ?", (name,)).fetchone()
        return None if row is None else _tenant(row)

    def get_tenant(self, tenant_id: str) -> Tenant:
        with self._transaction(immediate=False) as db:
            tenant = _tenant_by_id(db, tenant_id)
        if tenant is None:
            raise NotFound(f"no tenant with id {tenant_id}")
        return tenant

    def write_usage(self, rows: Sequence[UsageRecord]) -> None:
        if not rows:
            return
        placeholders = ", ".join("?" * len(_USAGE_COLUMNS.split(",")))
        with self._transaction(immediate=True) as db:
            db.executemany(
                f"INSERT INTO usage_logs ({_USAGE_COLUMNS}) VALUES ({placeholders})"
                " ON CONFLICT (tenant_id, job_id) DO NOTHING",
                [_usage_values(row) for row in rows],
            )

    def usage_by_day(self, tenant_id: str, days: int = 30) -> Sequence[DailyUsage]:
        return self._daily(tenant_id, since=days_ago(self._clock(), days).isoformat())

    def usage_between(self, tenant_id: str, start: date, end: date) -> Sequence[DailyUsage]:
        # created_at is ISO text in UTC: "2026-11-21T..." sorts between "2026-11-21" and
        # "2026-11-22", so the range is an index scan on (tenant_id, created_at).
        after_end = (end + timedelta(days=1)).isoformat() if end < date.max else None
        return self._daily(tenant_id, since=start.isoformat(), before=after_end)

    def _daily(self, tenant_id: str, *, since: str, before: str | None = None) -> list[DailyUsage]:
        """Daily totals of the rows created at ``since`` or later (and before ``before``)."""
        where, params = "tenant_id = ? AND created_at >= ?", [tenant_id, since]
        if before is not None:
            where, params = f"{where} AND created_at < ?", [*params, before]
        with self._transaction(immediate=False) as db:
            if db.execute("SELECT 1 FROM tenants WHERE id = ?", (tenant_id,)).fetchone() is None:
                raise NotFound(f"no tenant with id {tenant_id}")
            rows = db.execute(
                "SELECT substr(created_at, 1, 10) AS day, count(*),"
                " sum(error_code IS NOT NULL), sum(input_chars), sum(audio_seconds),"
                f" sum(audio_bytes) FROM usage_logs WHERE {where} GROUP BY day ORDER BY day",
                params,
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

    def create_voice(self, tenant_id: str, voice: VoiceFields) -> VoiceRecord:
        columns = voices.new_voice_columns(voice)
        now = self._now()
        # Count and insert under one write lock: no other process can add a voice in between.
        with self._transaction(immediate=True) as db:
            tenant = _tenant_by_id(db, tenant_id)
            if tenant is None:
                raise NotFound(f"no tenant with id {tenant_id}")
            max_voices = _active(tenant).limits.max_voices
            if max_voices is not None:
                (count,) = db.execute(
                    "SELECT count(*) FROM voices WHERE tenant_id = ?", (tenant_id,)
                ).fetchone()
                if count >= max_voices:
                    raise voices.voice_limit_reached(int(count), max_voices)
            values = {"tenant_id": tenant_id, **columns, "created_at": now, "updated_at": now}
            # Column names come from new_voice_columns' fixed set, never from the caller.
            created = db.execute(
                f"INSERT INTO voices ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})"
                f" RETURNING {_VOICE_COLUMNS}",
                tuple(values.values()),
            ).fetchone()
        return _voice(created)

    def list_voices(self, tenant_id: str) -> Sequence[VoiceRecord]:
        with self._transaction(immediate=False) as db:
            if db.execute("SELECT 1 FROM tenants WHERE id = ?", (tenant_id,)).fetchone() is None:
                raise NotFound(f"no tenant with id {tenant_id}")
            rows = db.execute(
                f"SELECT {_VOICE_COLUMNS} FROM voices WHERE tenant_id = ?"
                " ORDER BY created_at, rowid",
                (tenant_id,),
            ).fetchall()
        return [_voice(row) for row in rows]

    def get_voice(self, tenant_id: str, voice_id: str) -> VoiceRecord:
        return self._on_voice(
            tenant_id, voice_id, f"SELECT {_VOICE_COLUMNS} FROM voices", write=False
        )

    def update_voice(self, tenant_id: str, voice_id: str, changes: VoiceChanges) -> VoiceRecord:
        columns = voices.changed_columns(changes)
        if not columns:
            return self.get_voice(tenant_id, voice_id)
        # Column names come from changed_columns' fixed set, never from the caller.
        assignments = ", ".join(f"{column} = ?" for column in columns)
        return self._on_voice(
            tenant_id,
            voice_id,
            f"UPDATE voices SET {assignments}, updated_at = ?",
            (*columns.values(), self._now()),
            write=True,
        )

    def delete_voice(self, tenant_id: str, voice_id: str) -> VoiceRecord:
        return self._on_voice(tenant_id, voice_id, "DELETE FROM voices", write=True)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self, *, immediate: bool) -> Iterator[sqlite3.Connection]:
        """One transaction; SQLite's errors become ours here: a busy or unreadable file passes
        (``AuthUnavailable``, so the usage writer retries), anything else is refused for good."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    # Also after a failed COMMIT (disk full, a lock timeout): a transaction left
                    # open would make every later BEGIN fail on this connection.
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                raise AuthUnavailable(f"the tenant database is unavailable ({exc})") from exc
            except sqlite3.Error as exc:
                raise InternalError(f"the tenant database refused the change ({exc})") from exc

    def _on_voice(
        self,
        tenant_id: str,
        voice_id: str,
        statement: str,
        params: tuple[object, ...] = (),
        *,
        write: bool,
    ) -> VoiceRecord:
        """``statement`` (a SELECT, UPDATE or DELETE on voices) narrowed in the statement itself
        to this tenant's voice: the voice it reads or leaves (a write returns its row), else
        ``VoiceNotFound``; at once, without a query, for ids no voice could have."""
        if not voices.is_voice_id(voice_id):
            raise voices.voice_not_found()
        returning = f" RETURNING {_VOICE_COLUMNS}" if write else ""
        with self._transaction(immediate=write) as db:
            row = db.execute(
                f"{statement} WHERE tenant_id = ? AND voice_id = ?{returning}",
                (*params, tenant_id, voice_id),
            ).fetchone()
        if row is None:
            raise voices.voice_not_found()
        return _voice(row)

    def _update(self, tenant_id: str, assignments: str, params: tuple[object, ...]) -> None:
        with self._transaction(immediate=True) as db:
            changed = db.execute(
                f"UPDATE tenants SET {assignments}, updated_at = ? WHERE id = ?",
                (*params, self._now(), tenant_id),
            ).rowcount
        if changed == 0:
            raise NotFound(f"no tenant with id {tenant_id}")
        self._cache.clear()

    def _now(self) -> str:
        return self._clock().isoformat()


# Switching a file to WAL needs it to itself for a moment; SQLite answers a second process
# switching at the same instant with "database is locked" at once, without its busy handler.
_WAL_ATTEMPTS = 50
_WAL_PAUSE_S = 0.1


def _use_wal(db: sqlite3.Connection) -> None:
    """Put the file in WAL mode (it stays so), waiting out another process doing the same."""
    for attempt in range(_WAL_ATTEMPTS):
        try:
            if str(db.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                return
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == _WAL_ATTEMPTS - 1:
                raise
            time.sleep(_WAL_PAUSE_S)


def _migrate(db: sqlite3.Connection) -> None:
    """Bring the file to SCHEMA_VERSION in one transaction (a new file is version 0 too).

    Foreign keys are off meanwhile: with them on, dropping the old ``tenants`` would cascade
    into the usage rows being kept. ``foreign_key_check`` proves the copy left nothing dangling.
    """
    if _schema_version(db) == SCHEMA_VERSION:
        return  # the usual open: no write lock taken
    db.execute("PRAGMA foreign_keys=OFF")
    db.execute("BEGIN IMMEDIATE")
    try:
        # Read inside the write lock: another process may have migrated while this one waited.
        version = _schema_version(db)
        if version > SCHEMA_VERSION:
            raise InternalError(
                f"the tenant database has schema version {version}, newer than this code's"
                f" {SCHEMA_VERSION}: upgrade serverless-tts"
            )
        if version < SCHEMA_VERSION:
            for table, definition in _TABLES.items():
                _rebuild(db, table, definition)
            for table in _DROPPED_TABLES:
                db.execute(f"DROP TABLE IF EXISTS {table}")
            for index in _INDEXES:
                db.execute(index)
            if db.execute("PRAGMA foreign_key_check").fetchone() is not None:
                raise InternalError("the tenant database has rows that point at no tenant")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _schema_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _rebuild(db: sqlite3.Connection, table: str, definition: str) -> None:
    """Create ``table`` as defined, keeping the rows (and shared columns) of an existing one."""
    old = _column_names(db, table)
    if not old:
        db.execute(definition.format(name=table))
        return
    staging = f"{table}_new"
    db.execute(definition.format(name=staging))
    sources = {name: name for name in _column_names(db, staging) if name in old}
    for column, source in _DERIVED_COLUMNS.get(table, {}).items():
        if column not in old and source in old:
            sources[column] = source
    db.execute(
        f"INSERT INTO {staging} ({', '.join(sources)}) SELECT {', '.join(sources.values())}"
        f" FROM {table}"
    )
    db.execute(f"DROP TABLE {table}")
    db.execute(f"ALTER TABLE {staging} RENAME TO {table}")


def _column_names(db: sqlite3.Connection, table: str) -> list[str]:
    return [str(row[1]) for row in db.execute(f"PRAGMA table_info({table})")]


def _active(tenant: Tenant) -> Tenant:
    if not tenant.active:
        raise Unauthorized(_REJECTED)
    return tenant


def _charge(db: sqlite3.Connection, tenant: Tenant, chars: int, now: datetime) -> None:
    """Refuse (charging nothing) or log the request and count its characters in the month."""
    now_us, month = epoch_us(now), month_key(now)
    _check_limits(db, tenant, chars, now_us, month)
    # Logged even when both windows are unlimited, so a limit set later starts from the truth.
    db.execute("INSERT INTO request_log (tenant_id, at_us) VALUES (?, ?)", (tenant.id, now_us))
    _count(db, tenant.id, now_us, month, chars)


def _reserve(db: sqlite3.Connection, tenant: Tenant, terms: LeaseTerms, now: datetime) -> _Reserved:
    """Refuse as ``_charge`` does unless one request of ``need_chars`` fits; else reserve as
    many requests (up to ``requests``) as both windows have room for and as many characters (up
    to ``chars``) as the quota has, the requests logged at the lease's end."""
    now_us, month = epoch_us(now), month_key(now)
    used = _check_limits(db, tenant, terms.need_chars, now_us, month)
    limits = tenant.limits
    room = [
        _window_free(db, tenant.id, limit, length_s, now_us)
        for length_s, limit in (
            (MINUTE_S, limits.requests_per_minute),
            (HOUR_S, limits.requests_per_hour),
        )
    ]
    granted = min([terms.requests, *(free for free in room if free is not None)])
    chars = terms.chars
    if limits.monthly_char_quota is not None:
        chars = min(chars, limits.monthly_char_quota - used)
    at_us = now_us + round(terms.ttl_s * US_PER_S)
    db.executemany(
        "INSERT INTO request_log (tenant_id, at_us) VALUES (?, ?)", [(tenant.id, at_us)] * granted
    )
    _count(db, tenant.id, now_us, month, chars)
    return _Reserved(tenant.id, month, at_us, granted, chars)


def _check_limits(
    db: sqlite3.Connection, tenant: Tenant, chars: int, now_us: int, month: str
) -> int:
    """Raise the refusal one more request of ``chars`` gets, if any; else the characters used
    in the month (0 when the quota is unlimited)."""
    limits = tenant.limits
    windows = (
        (MINUTE_S, limits.requests_per_minute, "per-minute"),
        (HOUR_S, limits.requests_per_hour, "per-hour"),
    )
    for length_s, limit, label in windows:
        retry = _window_retry_after_s(db, tenant.id, limit, length_s, now_us)
        if retry is not None:
            raise rate_limited(label, limit, retry)
    if limits.monthly_char_quota is None:
        return 0  # not read: nothing depends on it
    row = db.execute(
        "SELECT chars FROM monthly_chars WHERE tenant_id = ? AND month = ?", (tenant.id, month)
    ).fetchone()
    used = int(row[0]) if row else 0
    if used + chars > limits.monthly_char_quota:
        raise quota_exceeded(chars, used, limits.monthly_char_quota)
    return used


def _count(db: sqlite3.Connection, tenant_id: str, now_us: int, month: str, chars: int) -> None:
    """Forget log entries no window reads any more; add ``chars`` to the month's counter."""
    db.execute(
        "DELETE FROM request_log WHERE tenant_id = ? AND at_us <= ?",
        (tenant_id, now_us - KEPT_S * US_PER_S),
    )
    db.execute(
        "INSERT INTO monthly_chars (tenant_id, month, chars) VALUES (?, ?, ?)"
        " ON CONFLICT DO UPDATE SET chars = chars + excluded.chars",
        (tenant_id, month, chars),
    )


def _window_free(
    db: sqlite3.Connection, tenant_id: str, limit: int | None, length_s: int, now_us: int
) -> int | None:
    """How many more requests fit in the window (None: unlimited); counts at most ``limit``
    index entries. Entries stamped after now (open leases) count too."""
    if limit is None:
        return None
    (inside,) = db.execute(
        "SELECT count(*) FROM (SELECT 1 FROM request_log WHERE tenant_id = ? AND at_us > ?"
        " LIMIT ?)",
        (tenant_id, now_us - length_s * US_PER_S, max(limit, 0)),
    ).fetchone()
    return max(limit - int(inside), 0)


def _window_retry_after_s(
    db: sqlite3.Connection, tenant_id: str, limit: int | None, length_s: int, now_us: int
) -> int | None:
    """None when one more request fits in the window; else the seconds until one does."""
    if limit is None:
        return None
    if limit <= 0:
        return length_s  # nothing fits until the limit is raised
    # The limit-th newest entry inside the window: a scan of at most ``limit`` index entries.
    row = db.execute(
        "SELECT at_us FROM request_log WHERE tenant_id = ? AND at_us > ?"
        " ORDER BY at_us DESC LIMIT 1 OFFSET ?",
        (tenant_id, now_us - length_s * US_PER_S, limit - 1),
    ).fetchone()
    return None if row is None else retry_after_s(int(row[0]), length_s, now_us)


def _tenant_by_id(db: sqlite3.Connection, tenant_id: str) -> Tenant | None:
    row = db.execute(f"SELECT {_COLUMNS} FROM tenants WHERE id = ?", (tenant_id,)).fetchone()
    return None if row is None else _tenant(row)


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
            max_voices=_optional_int(row[8]),
        ),
        engine_order=None if row[9] is None else tuple(json.loads(str(row[9]))),
    )


def _voice(row: tuple[object, ...]) -> VoiceRecord:
    return voices.voice_record(dict(zip(voices.VOICE_COLUMNS, row, strict=True)))


def _optional_int(value: object) -> int | None:
    return None if value is None else int(str(value))


def _usage_values(row: UsageRecord) -> tuple[object, ...]:
    return (
        row.tenant_id,
        row.job_id,
        row.request_id,
        row.action,
        row.input_chars,
        row.audio_bytes,
        row.audio_seconds,
        row.latency_ms,
        row.engine,
        row.voice,
        row.voice_version,
        row.format,
        row.delivery,
        int(row.cached),
        int(row.streaming),
        row.error_code,
        row.created_at.astimezone(UTC).isoformat(),
        row.fallback_reason,
    )
