"""The Supabase tenant store: tenants, usage and limits in Postgres, reached over PostgREST.

Every worker shares one database, so the rate windows and the monthly quota hold across workers:
``authorize`` is a single RPC (``authorize_tenant``, see ``supabase/migrations/``) that locks
the tenant's row, checks and records in one transaction. ``create_voice`` is one RPC too
(``create_voice``): it locks the same row, counts the tenant's voices and inserts, so
``max_voices`` holds across workers. ``lease_allowance`` and ``return_allowance`` (RPCs of the same
names) reserve and give back a worker's allowance under the same row lock and checks.
``authenticate`` answers from an in-process cache first
(hits and misses alike), so a warm job pays no round trip.

Failure policy: if the database cannot be reached, a tenant this process has recently
authenticated keeps working (limits unchecked, a warning logged) and any other fails closed with
``AuthUnavailable``. Only such passing trouble is ``AuthUnavailable``; everything else the
database refuses is ``InternalError``, so the usage writer retries only what can succeed later.
Keys are never logged; key caches are keyed by the key's digest.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, date, datetime
from typing import Any, NoReturn
from urllib.parse import urlsplit

import httpx
from postgrest import APIError
from postgrest.types import ReturnMethod
from supabase import Client, ClientOptions, create_client

from shared.errors import (
    AuthUnavailable,
    InternalError,
    NotFound,
    TTSError,
    Unauthorized,
)
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
from shared.tenants.keys import ParsedKey, digests_match, new_api_key, parse_api_key
from shared.tenants.voices import VoiceChanges, VoiceFields, VoiceRecord

_log = logging.getLogger(__name__)

_TENANT_COLUMNS = (
    "id, name, active, key_prefix, created_at, monthly_char_quota, requests_per_minute,"
    " requests_per_hour, max_voices, engine_order"
)
_VOICE_COLUMNS = ", ".join(voices.VOICE_COLUMNS)
_REJECTED = "invalid or disabled API key"
# Failures that pass. PostgREST's "cannot reach the database" codes (connection, pool timeout,
# schema cache not loaded); what a proxy in front of it says when PostgREST itself is down; and
# Postgres SQLSTATEs a retry can get past: serialization failure, deadlock, statement timeout,
# shutdown or crash of the server. Whole classes: 08 (connection) and 53 (out of resources).
_UNAVAILABLE_CODES = frozenset(
    {"PGRST000", "PGRST001", "PGRST002", "PGRST003", "502", "503", "504", "520"}
    | {"40001", "40P01", "57014", "57P01", "57P02", "57P03"}
)
_UNAVAILABLE_CLASSES = ("08", "53")
_UNIQUE_VIOLATION = "23505"
# A new key's 8-hex-char prefix can collide with a stored one (32 bits); draw again.
_KEY_ATTEMPTS = 3

# Writes a new key's prefix and digest; returns the tenant rows it wrote.
_KeyWriter = Callable[[ParsedKey], list[dict[str, Any]]]


def connect_supabase(
    url: str,
    service_role_key: str,
    *,
    timeout_s: float = 5.0,
    plain_postgrest: bool = False,
    transport: httpx.BaseTransport | None = None,
) -> Client:
    """A supabase-py client for the worker: bounded timeouts and no hidden retries.

    ``plain_postgrest`` is for a bare PostgREST server (the test stack, or PostgREST without
    Supabase's gateway): supabase-py 2.x always calls ``<url>/rest/v1/...`` and PostgREST serves
    at its root, so a transport drops that prefix. ``transport`` lets tests observe requests.
    """
    inner = transport or httpx.HTTPTransport()
    if plain_postgrest:
        inner = _StripRestPrefix(inner, base_path=urlsplit(url).path.rstrip("/"))
    options = ClientOptions(
        httpx_client=httpx.Client(transport=inner, timeout=timeout_s),
        # postgrest-py retries GETs on 503 with 1 + 2 + 4 s of sleeps: a job would wait 7 s to
        # learn the database is down. Failing fast is the store's policy; the usage writer retries.
        postgrest_client_retry=False,
        auto_refresh_token=False,
        persist_session=False,
    )
    return create_client(url, service_role_key, options)


class _StripRestPrefix(httpx.BaseTransport):
    def __init__(self, inner: httpx.BaseTransport, *, base_path: str) -> None:
        self._inner = inner
        self._prefix = f"{base_path}/rest/v1".encode()
        self._base = base_path.encode()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        raw_path = request.url.raw_path
        if raw_path.startswith(self._prefix):
            request.url = request.url.copy_with(raw_path=self._base + raw_path[len(self._prefix) :])
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


class SupabaseTenantStore:
    """``TenantStore`` on Supabase; ``client`` should carry the service-role key."""

    def __init__(
        self,
        client: Client,
        *,
        cache_ttl_s: float = 30.0,
        cache_max_entries: int = 10_000,
        on_auth_lookup: Callable[[bool], None] | None = None,
    ) -> None:
        self._client = client
        # Both keyed by the key's digest. Separate, so a flood of wrong keys evicts only other
        # wrong keys, never a paying tenant's entry.
        # Only this cache reports to on_auth_lookup (the worker's metrics): a valid key is one
        # hit or one miss; keys known to be bad are answered by _rejected, uncounted.
        self._tenants: TtlCache[Tenant] = TtlCache(
            cache_ttl_s, cache_max_entries, on_lookup=on_auth_lookup
        )
        self._rejected: TtlCache[bool] = TtlCache(cache_ttl_s, cache_max_entries)
        # Tenants authenticated within the TTL, by id: who ``authorize`` admits while the
        # database is unreachable.
        self._authenticated: TtlCache[Tenant] = TtlCache(cache_ttl_s, cache_max_entries)

    def authenticate(self, api_key: str) -> Tenant:
        parsed = self._parse(api_key)
        cached = self._tenants.get(parsed.digest)
        if cached is not None:
            return cached
        rows = self._run(
            self._client.table("tenants")
            .select(f"{_TENANT_COLUMNS}, key_hash")
            .eq("key_prefix", parsed.prefix)
            .limit(1)
        )
        if not rows or not digests_match(str(rows[0]["key_hash"]), parsed.digest):
            self._reject(parsed)
        tenant = _tenant(rows[0])
        if not tenant.active:
            self._reject(parsed)
        self._tenants.put(parsed.digest, tenant)
        self._authenticated.put(tenant.id, tenant)
        return tenant

    def authorize(self, tenant_id: str, chars: int) -> Tenant:
        check_chars(chars)
        try:
            tenant_uuid = str(uuid.UUID(tenant_id))
        except ValueError as exc:
            raise Unauthorized(_REJECTED) from exc
        try:
            result = self._run(
                self._client.rpc("authorize_tenant", {"p_tenant_id": tenant_uuid, "p_chars": chars})
            )
        except AuthUnavailable:
            cached = self._authenticated.get(tenant_uuid)
            if cached is None:
                raise
            _log.warning(
                "tenant database unreachable: admitting cached tenant %s without checking "
                "its rate limits or quota",
                cached.id,
            )
            return cached
        return self._decide(tenant_uuid, chars, _mapping(result))

    def lease_allowance(
        self, tenant_id: str, terms: LeaseTerms, settle: SpentLease | None = None
    ) -> AllowanceLease:
        check_lease(terms)
        try:
            tenant_uuid = str(uuid.UUID(tenant_id))
        except ValueError as exc:
            raise Unauthorized(_REJECTED) from exc
        params: dict[str, Any] = {
            "p_tenant_id": tenant_uuid,
            "p_requests": terms.requests,
            "p_chars": terms.chars,
            "p_need_chars": terms.need_chars,
            "p_ttl_s": terms.ttl_s,
        }
        if settle is not None:
            params |= {
                "p_settle_lease_id": settle.lease.id,
                "p_used_requests": settle.requests,
                "p_used_chars": settle.chars,
            }
        result = _mapping(self._run(self._client.rpc("lease_allowance", params)))
        if result.get("decision") != "leased":
            self._refuse(tenant_uuid, terms.need_chars, result)
        lease_row = _mapping(result.get("lease"))
        return AllowanceLease(
            id=str(lease_row["id"]),
            tenant=_tenant(_mapping(result.get("tenant"))),
            requests=int(lease_row["requests"]),
            chars=int(lease_row["chars"]),
        )

    def return_allowance(self, spent: SpentLease) -> None:
        params = {
            "p_lease_id": spent.lease.id,
            "p_used_requests": spent.requests,
            "p_used_chars": spent.chars,
        }
        decision = _mapping(self._run(self._client.rpc("return_allowance", params))).get("decision")
        if decision not in ("returned", "unknown_lease"):
            raise InternalError(f"return_allowance returned an unknown decision {decision!r}")

    def create_tenant(self, name: str, limits: TenantLimits | None = None) -> IssuedKey:
        check_name(name)
        limits = limits or TenantLimits()

        def insert(parsed: ParsedKey) -> list[dict[str, Any]]:
            row = {"name": name, "key_prefix": parsed.prefix, "key_hash": parsed.digest}
            return self._run(self._client.table("tenants").insert({**row, **asdict(limits)}))

        try:
            return self._with_new_key(insert)
        except _UniqueViolation as exc:
            if exc.constraint != "tenants_name_key":
                raise
            raise name_taken(name) from exc

    def set_active(self, tenant_id: str, active: bool) -> Tenant:
        return self._update(tenant_id, {"active": active})

    def rotate_key(self, tenant_id: str) -> IssuedKey:
        tenant_uuid = _tenant_uuid(tenant_id)

        def update(parsed: ParsedKey) -> list[dict[str, Any]]:
            columns = {"key_prefix": parsed.prefix, "key_hash": parsed.digest}
            return self._run(self._client.table("tenants").update(columns).eq("id", tenant_uuid))

        issued = self._with_new_key(update)
        self._forget_keys()
        return issued

    def set_limits(self, tenant_id: str, limits: TenantLimits) -> Tenant:
        return self._update(tenant_id, asdict(limits))

    def set_engine_order(self, tenant_id: str, order: Sequence[str] | None) -> Tenant:
        checked = check_engine_order(order)
        return self._update(tenant_id, {"engine_order": None if checked is None else list(checked)})

    def list_tenants(self) -> Sequence[Tenant]:
        rows = self._run(self._client.table("tenants").select(_TENANT_COLUMNS).order("created_at"))
        return [_tenant(row) for row in rows]

    def get_tenant(self, tenant_id: str) -> Tenant:
        rows = self._run(
            self._client.table("tenants")
            .select(_TENANT_COLUMNS)
            .eq("id", _tenant_uuid(tenant_id))
            .limit(1)
        )
        if not rows:
            raise NotFound(f"no tenant with id {tenant_id}")
        return _tenant(rows[0])

    def find_by_name(self, name: str) -> Tenant | None:
        rows = self._run(
            self._client.table("tenants").select(_TENANT_COLUMNS).eq("name", name).limit(1)
        )
        return _tenant(rows[0]) if rows else None

    def write_usage(self, rows: Sequence[UsageRecord]) -> None:
        if not rows:
            return
        self._run(
            self._client.table("usage_logs").upsert(
                [_usage_row(row) for row in rows],
                on_conflict="tenant_id,job_id",
                ignore_duplicates=True,
                returning=ReturnMethod.minimal,
            )
        )

    def usage_by_day(self, tenant_id: str, days: int = 30) -> Sequence[DailyUsage]:
        tenant = self.get_tenant(tenant_id)  # NotFound, where the RPC would answer no days
        params = {"p_tenant_id": tenant.id, "p_days": days}
        return _daily(self._run(self._client.rpc("usage_by_day", params)))

    def usage_between(self, tenant_id: str, start: date, end: date) -> Sequence[DailyUsage]:
        tenant = self.get_tenant(tenant_id)
        # ``usage_by_day`` counts its days back from the database's today: ask for one more
        # than this clock says reach back to ``start`` (the clocks may disagree near
        # midnight), and let PostgREST filter the function's rows to the exact range.
        days_back = (datetime.now(UTC).date() - start).days + 2
        params = {"p_tenant_id": tenant.id, "p_days": max(days_back, 1)}
        query = (
            self._client.rpc("usage_by_day", params)
            .gte("day", start.isoformat())
            .lte("day", end.isoformat())
        )
        return _daily(self._run(query))

    def create_voice(self, tenant_id: str, voice: VoiceFields) -> VoiceRecord:
        columns = voices.new_voice_columns(voice)
        params = {f"p_{column}": value for column, value in columns.items()}
        result = _mapping(
            self._run(
                self._client.rpc("create_voice", {"p_tenant_id": _tenant_uuid(tenant_id), **params})
            )
        )
        decision = result.get("decision")
        if decision == "created":
            return voices.voice_record(_mapping(result.get("voice")))
        if decision == "unknown_tenant":
            raise NotFound(f"no tenant with id {tenant_id}")
        if decision == "inactive":
            raise Unauthorized(_REJECTED)
        if decision == "limit_reached":
            raise voices.voice_limit_reached(int(result["voices"]), int(result["max_voices"]))
        raise InternalError(f"create_voice returned an unknown decision {decision!r}")

    def list_voices(self, tenant_id: str) -> Sequence[VoiceRecord]:
        # One round trip: the tenant's row with its voices embedded (through voices' foreign
        # key), so an unknown tenant is told apart from one with no voices.
        rows = self._run(
            self._client.table("tenants")
            .select(f"id, voices({_VOICE_COLUMNS})")
            .eq("id", _tenant_uuid(tenant_id))
            .order("created_at", foreign_table="voices")
            .order("voice_id", foreign_table="voices")
            .limit(1)
        )
        if not rows:
            raise NotFound(f"no tenant with id {tenant_id}")
        return [voices.voice_record(row) for row in rows[0]["voices"]]

    def get_voice(self, tenant_id: str, voice_id: str) -> VoiceRecord:
        return self._on_voice(
            tenant_id, voice_id, lambda table: table.select(_VOICE_COLUMNS).limit(1)
        )

    def update_voice(self, tenant_id: str, voice_id: str, changes: VoiceChanges) -> VoiceRecord:
        columns = voices.changed_columns(changes)
        if not columns:
            return self.get_voice(tenant_id, voice_id)
        # updated_at is set by the table's trigger, on the database's clock like created_at.
        return self._on_voice(tenant_id, voice_id, lambda table: table.update(columns))

    def delete_voice(self, tenant_id: str, voice_id: str) -> VoiceRecord:
        return self._on_voice(tenant_id, voice_id, lambda table: table.delete())

    def close(self) -> None:
        self._forget_keys()
        self._client.postgrest.aclose()

    def _parse(self, api_key: str) -> ParsedKey:
        parsed = parse_api_key(api_key)
        if parsed is None or self._rejected.get(parsed.digest):
            raise Unauthorized(_REJECTED)
        return parsed

    def _reject(self, parsed: ParsedKey) -> NoReturn:
        self._rejected.put(parsed.digest, True)
        raise Unauthorized(_REJECTED)

    def _decide(self, tenant_id: str, chars: int, result: Mapping[str, Any]) -> Tenant:
        if result.get("decision") == "allowed":
            return _tenant(_mapping(result.get("tenant")))
        self._refuse(tenant_id, chars, result)

    def _refuse(self, tenant_id: str, chars: int, result: Mapping[str, Any]) -> NoReturn:
        """The error for a decision of ``authorize_tenant`` or ``lease_allowance`` that is not
        an admission; each limit's wording and retry-after as both RPCs report them."""
        decision = result.get("decision")
        if decision in ("unknown_tenant", "inactive"):
            # Not admitted by the outage policy either, should the database go away next.
            self._authenticated.discard(tenant_id)
            raise Unauthorized(_REJECTED)
        limits = _tenant(_mapping(result.get("tenant"))).limits
        if decision == "rate_limited_minute":
            retry = int(result["retry_after_s"])
            raise rate_limited("per-minute", limits.requests_per_minute, retry)
        if decision == "rate_limited_hour":
            raise rate_limited("per-hour", limits.requests_per_hour, int(result["retry_after_s"]))
        if decision == "quota_exceeded":
            raise quota_exceeded(chars, int(result["used"]), limits.monthly_char_quota)
        raise InternalError(f"the tenant database returned an unknown decision {decision!r}")

    def _update(self, tenant_id: str, columns: Mapping[str, Any]) -> Tenant:
        rows = self._run(
            self._client.table("tenants").update(dict(columns)).eq("id", _tenant_uuid(tenant_id))
        )
        if not rows:
            raise NotFound(f"no tenant with id {tenant_id}")
        # A changed tenant must not be served from this process's cache, nor a re-enabled key
        # refused by it. Other workers catch up within one TTL.
        self._forget_keys()
        return _tenant(rows[0])

    def _with_new_key(self, write: _KeyWriter) -> IssuedKey:
        for attempt in range(_KEY_ATTEMPTS):
            api_key, parsed = new_api_key()
            try:
                rows = write(parsed)
            except _UniqueViolation as exc:
                if exc.constraint == "tenants_key_prefix_key" and attempt + 1 < _KEY_ATTEMPTS:
                    continue
                raise
            if not rows:
                raise NotFound("no such tenant")
            return IssuedKey(tenant=_tenant(rows[0]), api_key=api_key)
        raise AssertionError("unreachable: the loop returns or raises")

    def _forget_keys(self) -> None:
        self._tenants.clear()
        self._rejected.clear()
        self._authenticated.clear()

    def _on_voice(
        self, tenant_id: str, voice_id: str, request: Callable[[Any], Any]
    ) -> VoiceRecord:
        """``request`` (a select, update or delete on the voices table), narrowed in the query
        itself to this tenant's voice: the voice it returns, else ``VoiceNotFound``; at once,
        without a query, for ids no voice could have."""
        try:
            tenant_uuid = str(uuid.UUID(tenant_id))
        except ValueError as exc:
            raise voices.voice_not_found() from exc
        if not voices.is_voice_id(voice_id):
            raise voices.voice_not_found()
        query = request(self._client.table("voices"))
        rows = self._run(query.eq("tenant_id", tenant_uuid).eq("voice_id", voice_id))
        if not rows:
            raise voices.voice_not_found()
        return voices.voice_record(rows[0])

    def _run(self, query: Any) -> Any:
        """Execute one PostgREST request; its errors become ours, once, here."""
        try:
            return query.execute().data
        except APIError as exc:
            raise _translate(exc) from exc
        except httpx.HTTPError as exc:
            raise AuthUnavailable(f"tenant database unreachable ({type(exc).__name__})") from exc


class _UniqueViolation(InternalError):
    def __init__(self, constraint: str) -> None:
        super().__init__(f"unique constraint {constraint} violated")
        self.constraint = constraint


def _translate(exc: APIError) -> TTSError:
    code = exc.code or ""
    if code in _UNAVAILABLE_CODES or (len(code) == 5 and code.startswith(_UNAVAILABLE_CLASSES)):
        return AuthUnavailable(f"tenant database unreachable ({code})")
    if code == _UNIQUE_VIOLATION:
        # PostgREST's message: duplicate key value violates unique constraint "tenants_name_key"
        return _UniqueViolation((exc.message or "").rpartition(" ")[2].strip('"'))
    return InternalError(f"tenant database error {code}: {exc.message}")


def _tenant_uuid(tenant_id: str) -> str:
    """The id in canonical form; anything that is not a UUID names no tenant."""
    try:
        return str(uuid.UUID(tenant_id))
    except ValueError as exc:
        raise NotFound(f"no tenant with id {tenant_id}") from exc


def _mapping(value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InternalError(f"unexpected reply from the tenant database: {type(value).__name__}")
    return value


def _tenant(row: Mapping[str, Any]) -> Tenant:
    return Tenant(
        id=str(row["id"]),
        name=str(row["name"]),
        active=bool(row["active"]),
        key_prefix=str(row["key_prefix"]),
        created_at=datetime.fromisoformat(str(row["created_at"])),
        limits=TenantLimits(
            monthly_char_quota=row["monthly_char_quota"],
            requests_per_minute=row["requests_per_minute"],
            requests_per_hour=row["requests_per_hour"],
            max_voices=row["max_voices"],
        ),
        engine_order=None if row.get("engine_order") is None else tuple(row["engine_order"]),
    )


def _daily(rows: Sequence[Mapping[str, Any]]) -> list[DailyUsage]:
    return [
        DailyUsage(
            day=date.fromisoformat(row["day"]),
            requests=int(row["requests"]),
            failed=int(row["failed"]),
            input_chars=int(row["input_chars"]),
            audio_seconds=float(row["audio_seconds"]),
            audio_bytes=int(row["audio_bytes"]),
        )
        for row in rows
    ]


def _usage_row(row: UsageRecord) -> dict[str, Any]:
    return {
        "tenant_id": row.tenant_id,
        "job_id": row.job_id,
        "request_id": row.request_id,
        "action": row.action,
        # A naive time is taken as UTC, not as the database session's time zone.
        "created_at": (
            row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
        ).isoformat(),
        "input_chars": row.input_chars,
        "audio_bytes": row.audio_bytes,
        "audio_seconds": row.audio_seconds,
        "latency_ms": row.latency_ms,
        "engine": row.engine,
        "fallback_reason": row.fallback_reason,
        "voice": row.voice,
        "voice_version": row.voice_version,
        "format": row.format,
        "delivery": row.delivery,
        "cached": row.cached,
        "streaming": row.streaming,
        "error_code": row.error_code,
    }
