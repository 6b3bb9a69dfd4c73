"""The Supabase tenant store against a real Postgres + PostgREST stack, migrations as written.

Every test makes its own tenants (unique names), so tests share one stack and never see each
other's rows.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import shutil
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from postgrest import APIError
from supabase import Client

from shared.errors import (
    AuthUnavailable,
    Conflict,
    InternalError,
    InvalidInput,
    NotFound,
    QuotaExceeded,
    RateLimited,
    Unauthorized,
)
from shared.tenants.base import UNLIMITED, DailyUsage, TenantLimits, UsageRecord
from shared.tenants.keys import hash_api_key
from shared.tenants.supabase_store import SupabaseTenantStore, connect_supabase
from tests.supabase_stack import MIGRATIONS_DIR, SupabaseStack

TABLES = ("tenants", "usage_logs", "voices", "request_log", "monthly_usage")
USAGE_FIELDS = (
    "input_chars", "audio_bytes", "audio_seconds", "latency_ms", "engine", "voice", "format",
    "delivery", "cached", "streaming", "error_code", "voice_version",
)  # fmt: skip


class CountingTransport(httpx.BaseTransport):
    """Records each request's path, so a test can show the cache answered instead."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


class MakeStore(Protocol):
    def __call__(
        self, *, cache_ttl_s: float = 30, transport: httpx.BaseTransport | None = None
    ) -> SupabaseTenantStore: ...


class MakeClient(Protocol):
    def __call__(self, role: str, *, transport: httpx.BaseTransport | None = None) -> Client: ...


@pytest.fixture
def make_client(supabase_stack: SupabaseStack) -> Iterator[MakeClient]:
    """supabase-py clients on the stack with a key for ``role``; closed after the test."""
    made: list[Client] = []

    def make(role: str, *, transport: httpx.BaseTransport | None = None) -> Client:
        key = supabase_stack.mint_key(role)
        made.append(
            connect_supabase(supabase_stack.url, key, plain_postgrest=True, transport=transport)
        )
        return made[-1]

    yield make
    for client in made:
        client.postgrest.aclose()


@pytest.fixture
def make_store(make_client: MakeClient) -> MakeStore:
    """Service-role stores, each with its own HTTP client, like separate workers."""

    def make(
        *, cache_ttl_s: float = 30, transport: httpx.BaseTransport | None = None
    ) -> SupabaseTenantStore:
        client = make_client("service_role", transport=transport)
        return SupabaseTenantStore(client, cache_ttl_s=cache_ttl_s)

    return make


@pytest.fixture
def store(make_store: MakeStore) -> SupabaseTenantStore:
    return make_store()


def unique_name(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:12]}"


def wait_clear_of_window_end(window_s: int, margin_s: float = 5.0) -> None:
    """Start a step that reads the current UTC minute or hour only when it cannot straddle
    that window's end."""
    into = time.time() % window_s
    if into > window_s - margin_s:
        time.sleep(window_s - into + 0.05)


def counter(stack: SupabaseStack, sql: str) -> int:
    return int(stack.psql(sql) or 0)


def seed_requests(stack: SupabaseStack, tenant_id: str, epoch_s: list[float]) -> None:
    """Log allowed requests at chosen times, as if they had been made then."""
    values = ", ".join(f"('{tenant_id}', to_timestamp({at}))" for at in epoch_s)
    stack.psql(f"insert into request_log (tenant_id, at) values {values}")


def logged_requests(stack: SupabaseStack, tenant_id: str) -> int:
    return counter(stack, f"select count(*) from request_log where tenant_id = '{tenant_id}'")


# --- keys ---------------------------------------------------------------------------------------


def test_valid_key_authenticates_its_tenant_with_its_limits(store: SupabaseTenantStore) -> None:
    limits = TenantLimits(
        monthly_char_quota=5_000, requests_per_minute=7, requests_per_hour=None, max_voices=3
    )
    issued = store.create_tenant(unique_name("acme"), limits)
    tenant = store.authenticate(issued.api_key)
    assert tenant == issued.tenant
    assert tenant.limits == limits
    assert tenant.active
    assert issued.api_key.startswith(f"stts_{tenant.key_prefix}_")


def test_only_the_key_hash_and_prefix_are_stored(
    supabase_stack: SupabaseStack, store: SupabaseTenantStore
) -> None:
    issued = store.create_tenant(unique_name("acme"))
    row = supabase_stack.psql(f"select t::text from tenants t where id = '{issued.tenant.id}'")
    secret = issued.api_key.rsplit("_", 1)[1]
    assert secret not in row
    assert hash_api_key(issued.api_key) in row
    assert issued.tenant.key_prefix in row


@pytest.mark.parametrize("key", ["", "nope", "stts_0000000_short", "x" * 500])
def test_malformed_keys_are_unauthorized(store: SupabaseTenantStore, key: str) -> None:
    with pytest.raises(Unauthorized):
        store.authenticate(key)


@pytest.mark.parametrize("tenant_id", ["", "not-a-uuid", str(uuid.uuid4())])
def test_authorizing_an_unknown_tenant_id_is_unauthorized(
    store: SupabaseTenantStore, tenant_id: str
) -> None:
    with pytest.raises(Unauthorized, match="invalid or disabled API key"):
        store.authorize(tenant_id, 1)


def test_wrong_secret_with_a_real_prefix_is_unauthorized(store: SupabaseTenantStore) -> None:
    issued = store.create_tenant(unique_name("acme"))
    forged = issued.api_key[:-4] + ("AAAA" if not issued.api_key.endswith("AAAA") else "BBBB")
    with pytest.raises(Unauthorized):
        store.authenticate(forged)


def test_a_cached_key_is_not_looked_up_again(make_store: MakeStore) -> None:
    transport = CountingTransport()
    store = make_store(transport=transport)
    issued = store.create_tenant(unique_name("acme"))
    transport.paths.clear()
    for _ in range(3):
        assert store.authenticate(issued.api_key).id == issued.tenant.id
    assert transport.paths == ["/tenants"]


def test_a_wrong_key_is_not_looked_up_again_within_the_ttl(make_store: MakeStore) -> None:
    transport = CountingTransport()
    store = make_store(transport=transport)
    issued = store.create_tenant(unique_name("acme"))
    forged = issued.api_key[:-4] + ("AAAA" if not issued.api_key.endswith("AAAA") else "BBBB")
    transport.paths.clear()
    for _ in range(3):
        with pytest.raises(Unauthorized):
            store.authenticate(forged)
    assert transport.paths == ["/tenants"]


def test_disabled_tenant_is_unauthorized_and_enabling_restores_it(
    store: SupabaseTenantStore,
) -> None:
    issued = store.create_tenant(unique_name("acme"))
    store.authenticate(issued.api_key)  # cached: disabling must still take effect here at once
    assert not store.set_active(issued.tenant.id, False).active
    with pytest.raises(Unauthorized):
        store.authenticate(issued.api_key)
    with pytest.raises(Unauthorized):
        store.authorize(issued.tenant.id, 1)
    store.set_active(issued.tenant.id, True)
    assert store.authenticate(issued.api_key).active
    assert store.authorize(issued.tenant.id, 1).id == issued.tenant.id


def test_rotated_key_fails_here_at_once_and_in_other_workers_within_the_ttl(
    make_store: MakeStore,
) -> None:
    ttl_s = 0.5
    here = make_store(cache_ttl_s=ttl_s)
    elsewhere = make_store(cache_ttl_s=ttl_s)  # another worker's process
    issued = here.create_tenant(unique_name("acme"))
    old_key = issued.api_key
    here.authenticate(old_key)
    elsewhere.authenticate(old_key)

    rotated = here.rotate_key(issued.tenant.id)

    assert rotated.api_key != old_key
    assert rotated.tenant.key_prefix != issued.tenant.key_prefix
    with pytest.raises(Unauthorized):
        here.authenticate(old_key)
    time.sleep(ttl_s)  # one TTL: the other worker's cached entry has expired
    with pytest.raises(Unauthorized):
        elsewhere.authenticate(old_key)
    assert elsewhere.authenticate(rotated.api_key).id == issued.tenant.id
    assert here.authorize(issued.tenant.id, 1).id == issued.tenant.id


def test_unknown_tenant_ids_are_not_found(store: SupabaseTenantStore) -> None:
    with pytest.raises(NotFound):
        store.rotate_key(str(uuid.uuid4()))
    with pytest.raises(NotFound):
        store.set_active("not-a-uuid", False)
    with pytest.raises(NotFound):
        store.get_tenant(str(uuid.uuid4()))


def test_duplicate_tenant_name_is_refused(store: SupabaseTenantStore) -> None:
    name = unique_name("acme")
    store.create_tenant(name)
    with pytest.raises(Conflict, match="already exists"):
        store.create_tenant(name)


def test_list_find_and_set_limits(store: SupabaseTenantStore) -> None:
    issued = store.create_tenant(unique_name("acme"))
    assert store.find_by_name(issued.tenant.name) == issued.tenant
    assert store.get_tenant(issued.tenant.id) == issued.tenant
    assert store.find_by_name(unique_name("nobody")) is None
    assert issued.tenant.id in {tenant.id for tenant in store.list_tenants()}
    updated = store.set_limits(issued.tenant.id, UNLIMITED)
    assert updated.limits == UNLIMITED
    assert store.authenticate(issued.api_key).limits == UNLIMITED


# --- limits -------------------------------------------------------------------------------------


def _fire(
    url: str, service_key: str, tenant_id: str, requests: int, ready: Any, go: Any, results: Any
) -> None:
    """One worker process: its own store, firing ``requests`` authorizations at once."""
    client = connect_supabase(url, service_key, plain_postgrest=True)
    store = SupabaseTenantStore(client, cache_ttl_s=0)

    def one(_: int) -> str | int:
        try:
            store.authorize(tenant_id, 10)
        except RateLimited as exc:
            return exc.retry_after_s
        except Exception as exc:  # reported to the parent, which fails the test with it
            return f"unexpected: {exc!r}"
        return "allowed"

    ready.put("ready")
    go.wait(timeout=60)
    with ThreadPoolExecutor(max_workers=requests) as pool:
        results.put(list(pool.map(one, range(requests))))


def test_two_worker_processes_never_let_more_than_the_per_minute_limit_through(
    supabase_stack: SupabaseStack, store: SupabaseTenantStore
) -> None:
    limit = 10
    issued = store.create_tenant(
        unique_name("racer"),
        TenantLimits(monthly_char_quota=None, requests_per_minute=limit, requests_per_hour=None),
    )
    context = multiprocessing.get_context("spawn")
    ready, results, go = context.Queue(), context.Queue(), context.Event()
    args = (supabase_stack.url, supabase_stack.service_role_key, issued.tenant.id, 3 * limit // 2)
    workers = [context.Process(target=_fire, args=(*args, ready, go, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        for _ in workers:
            ready.get(timeout=60)
        go.set()
        outcomes = [outcome for _ in workers for outcome in results.get(timeout=60)]
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()

    assert len(outcomes) == 3 * limit
    assert outcomes.count("allowed") == limit
    refused = [outcome for outcome in outcomes if outcome != "allowed"]
    # The burst took well under 5 s: its first request leaves the window about 60 s from now.
    assert all(isinstance(retry, int) and 55 <= retry <= 60 for retry in refused), refused
    assert logged_requests(supabase_stack, issued.tenant.id) == limit


def test_per_hour_limit_refuses_with_retry_after_and_charges_nothing_refused(
    supabase_stack: SupabaseStack, store: SupabaseTenantStore
) -> None:
    issued = store.create_tenant(
        unique_name("hourly"),
        TenantLimits(monthly_char_quota=None, requests_per_minute=None, requests_per_hour=3),
    )
    tenant_id = issued.tenant.id
    for _ in range(3):
        store.authorize(tenant_id, 5)
    for _ in range(2):
        with pytest.raises(RateLimited, match="per-hour") as refused:
            store.authorize(tenant_id, 5)
        # The first request, a moment ago, leaves the sliding hour in about an hour.
        assert 3600 - 5 <= refused.value.retry_after_s <= 3600

    assert logged_requests(supabase_stack, tenant_id) == 3
    chars_sql = f"select input_chars from monthly_usage where tenant_id = '{tenant_id}'"
    assert counter(supabase_stack, chars_sql) == 15


def test_request_that_would_exceed_the_monthly_quota_is_refused_and_not_charged(
    supabase_stack: SupabaseStack, store: SupabaseTenantStore
) -> None:
    issued = store.create_tenant(
        unique_name("quota"),
        TenantLimits(monthly_char_quota=100, requests_per_minute=None, requests_per_hour=None),
    )
    month_sql = (
        "select input_chars || ',' || requests from monthly_usage"
        f" where tenant_id = '{issued.tenant.id}'"
    )
    store.authorize(issued.tenant.id, 60)
    with pytest.raises(QuotaExceeded, match=r"\(60 of 100 used\)"):
        store.authorize(issued.tenant.id, 41)
    assert supabase_stack.psql(month_sql) == "60,1"
    store.authorize(issued.tenant.id, 40)  # exactly the rest of the quota is allowed
    assert supabase_stack.psql(month_sql) == "100,2"
    with pytest.raises(QuotaExceeded):
        store.authorize(issued.tenant.id, 1)
    assert supabase_stack.psql(month_sql) == "100,2"


def test_negative_character_count_is_invalid(store: SupabaseTenantStore) -> None:
    issued = store.create_tenant(unique_name("acme"))
    with pytest.raises(InvalidInput):
        store.authorize(issued.tenant.id, -1)


def _outcome(store: SupabaseTenantStore, tenant_id: str) -> str | int:
    try:
        store.authorize(tenant_id, 1)
    except RateLimited as exc:
        return exc.retry_after_s
    return "allowed"


def test_jobs_across_a_minute_boundary_get_no_more_than_the_per_minute_limit(
    supabase_stack: SupabaseStack, store: SupabaseTenantStore
) -> None:
    """2 jobs just before a UTC minute boundary and 6 after it: fixed windows let 2 + 5 pass."""
    issued = store.create_tenant(
        unique_name("boundary"),
        TenantLimits(monthly_char_quota=None, requests_per_minute=5, requests_per_hour=None),
    )
    if time.time() % 60 > 50:  # keep the jobs before the boundary well inside the last 60 s
        time.sleep(60 - time.time() % 60 + 0.05)
    boundary = time.time() // 60 * 60
    seed_requests(supabase_stack, issued.tenant.id, [boundary - 2, boundary - 1])

    started = time.time()
    outcomes = [_outcome(store, issued.tenant.id) for _ in range(6)]

    assert outcomes[:3] == ["allowed"] * 3  # 2 + 3: exactly 5 of the 8 got through
    # The 5th newest job, from 2 s before the boundary, leaves the window 58 s after it.
    leaves_in = boundary - 2 + 60 - started
    assert all(math.ceil(leaves_in) - 1 <= retry <= math.ceil(leaves_in) for retry in outcomes[3:])
    assert logged_requests(supabase_stack, issued.tenant.id) == 5


def test_retry_after_is_when_enough_old_requests_have_left_each_window(
    supabase_stack: SupabaseStack, store: SupabaseTenantStore
) -> None:
    per_minute = store.create_tenant(
        unique_name("minute"),
        TenantLimits(monthly_char_quota=None, requests_per_minute=2, requests_per_hour=None),
    ).tenant.id
    per_hour = store.create_tenant(
        unique_name("hour"),
        TenantLimits(monthly_char_quota=None, requests_per_minute=None, requests_per_hour=3),
    ).tenant.id
    now = time.time()
    seed_requests(supabase_stack, per_minute, [now - 50, now - 10])
    seed_requests(supabase_stack, per_hour, [now - 3000, now - 2000, now - 1000])

    # The request 50 s old leaves the minute in 10 s, the one 3000 s old leaves the hour in
    # 600 s, less whatever time passes between seeding and the database's own clock reading.
    with pytest.raises(RateLimited, match="per-minute limit of 2") as refused:
        store.authorize(per_minute, 1)
    elapsed = math.ceil(time.time() - now)
    assert 10 - elapsed <= refused.value.retry_after_s <= 10
    with pytest.raises(RateLimited, match="per-hour limit of 3") as refused:
        store.authorize(per_hour, 1)
    elapsed = math.ceil(time.time() - now)
    assert 600 - elapsed <= refused.value.retry_after_s <= 600
    assert logged_requests(supabase_stack, per_minute) == 2  # refusals log nothing


def test_requests_older_than_an_hour_neither_count_nor_stay(
    supabase_stack: SupabaseStack, store: SupabaseTenantStore
) -> None:
    tenant_id = store.create_tenant(
        unique_name("old"),
        TenantLimits(monthly_char_quota=None, requests_per_minute=None, requests_per_hour=1),
    ).tenant.id
    now = time.time()
    seed_requests(supabase_stack, tenant_id, [now - 7200, now - 3601])
    store.authorize(tenant_id, 1)
    assert logged_requests(supabase_stack, tenant_id) == 1


# --- row-level security -------------------------------------------------------------------------


def test_every_public_table_has_row_level_security(supabase_stack: SupabaseStack) -> None:
    rows = supabase_stack.psql(
        "select relname || ':' || relrowsecurity from pg_class c"
        " join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = 'public' and c.relkind = 'r' order by relname"
    )
    flags = dict(line.split(":") for line in rows.splitlines())
    assert set(TABLES) <= set(flags)
    assert all(flag == "true" for flag in flags.values()), flags


def test_anon_key_reads_no_tenant_voice_or_usage_row(
    make_client: MakeClient, store: SupabaseTenantStore
) -> None:
    issued = store.create_tenant(unique_name("acme"))
    store.authorize(issued.tenant.id, 3)
    store.write_usage([_usage(issued.tenant.id, "r1")])
    service = make_client("service_role")
    service.table("voices").insert(
        {"tenant_id": issued.tenant.id, "voice_id": "v1", "name": "Ada"}
    ).execute()
    anon = make_client("anon")

    for table in TABLES:
        owner_column = "id" if table == "tenants" else "tenant_id"
        mine = service.table(table).select("*").eq(owner_column, issued.tenant.id)
        assert mine.execute().data, f"{table}: the service role should see the row"
        assert anon.table(table).select("*").execute().data == [], table
    with pytest.raises(APIError) as denied:
        anon.table("tenants").insert(
            {"name": unique_name("evil"), "key_prefix": "abcdefgh", "key_hash": "0" * 64}
        ).execute()
    assert denied.value.code == "42501"


def test_anon_key_cannot_call_the_rpcs(make_client: MakeClient, store: SupabaseTenantStore) -> None:
    issued = store.create_tenant(unique_name("acme"))
    anon = make_client("anon")
    calls = {
        "authorize_tenant": {"p_tenant_id": issued.tenant.id, "p_chars": 1},
        "usage_by_day": {"p_tenant_id": issued.tenant.id, "p_days": 30},
        "sliding_window_retry_after_s": {
            "p_tenant_id": issued.tenant.id,
            "p_limit": 1,
            "p_window": "1 minute",
            "p_now": datetime.now(UTC).isoformat(),
        },
    }
    for function, params in calls.items():
        with pytest.raises(APIError) as denied:
            anon.rpc(function, params).execute()
        assert denied.value.code == "42501", function


# --- database down ------------------------------------------------------------------------------


def test_database_down_cached_keys_work_unknown_keys_fail_closed_then_writes_resume(
    supabase_stack: SupabaseStack, make_store: MakeStore, caplog: pytest.LogCaptureFixture
) -> None:
    store = make_store(cache_ttl_s=60)
    known = store.create_tenant(unique_name("known"))
    stranger = store.create_tenant(unique_name("stranger"))  # a real key this worker never saw
    store.authenticate(known.api_key)
    # Authenticated here, then disabled by another worker: authorize learns it from the database
    # and must not admit it during the outage either.
    disabled = store.create_tenant(unique_name("disabled"))
    store.authenticate(disabled.api_key)
    supabase_stack.psql(f"update tenants set active = false where id = '{disabled.tenant.id}'")
    with pytest.raises(Unauthorized):
        store.authorize(disabled.tenant.id, 1)

    supabase_stack.stop_postgres()
    try:
        with pytest.raises(AuthUnavailable):
            store.authorize(disabled.tenant.id, 1)
        assert store.authenticate(known.api_key).id == known.tenant.id
        with caplog.at_level(logging.WARNING):
            assert store.authorize(known.tenant.id, 10).id == known.tenant.id
        assert "unreachable" in caplog.text
        with pytest.raises(AuthUnavailable):
            store.authenticate(stranger.api_key)
        with pytest.raises(AuthUnavailable):
            store.authorize(stranger.tenant.id, 10)
        with pytest.raises(AuthUnavailable):
            store.write_usage([_usage(known.tenant.id, "during-outage")])
    finally:
        supabase_stack.start_postgres()

    assert known.api_key not in caplog.text
    assert known.api_key.rsplit("_", 1)[1] not in caplog.text
    store.write_usage([_usage(known.tenant.id, "during-outage")])
    assert [day.requests for day in store.usage_by_day(known.tenant.id)] == [1]
    assert store.authenticate(stranger.api_key).id == stranger.tenant.id


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (503, "PGRST001", AuthUnavailable),  # PostgREST lost its database connection
        (502, None, AuthUnavailable),  # a proxy's error page, no PostgREST body
        (500, "08006", AuthUnavailable),  # connection failure
        (500, "40001", AuthUnavailable),  # serialization failure
        (500, "40P01", AuthUnavailable),  # deadlock
        (503, "53300", AuthUnavailable),  # too many connections
        (500, "57014", AuthUnavailable),  # statement timeout
        (503, "57P01", AuthUnavailable),  # admin shutdown
        (409, "23503", InternalError),  # foreign key violation: the tenant is gone
        (400, "23514", InternalError),  # check violation
        (400, "22P02", InternalError),  # invalid text representation
    ],
)
def test_only_passing_database_failures_are_unavailable(
    status: int, code: str | None, expected: type[Exception]
) -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        if code is None:
            return httpx.Response(status, text="<html>Bad Gateway</html>")
        body = {"code": code, "message": "refused", "details": None, "hint": None}
        return httpx.Response(status, json=body)

    client = connect_supabase(
        "http://127.0.0.1:9", "service-key", transport=httpx.MockTransport(reply)
    )
    store = SupabaseTenantStore(client)
    with pytest.raises(expected):
        store.write_usage([_usage(str(uuid.uuid4()), "r1")])
    store.close()


# --- usage --------------------------------------------------------------------------------------


def _usage(tenant_id: str, request_id: str, **fields: Any) -> UsageRecord:
    fields.setdefault("created_at", datetime.now(UTC))
    return UsageRecord(tenant_id=tenant_id, request_id=request_id, action="synthesize", **fields)


def test_written_usage_rows_arrive_with_their_fields(
    make_client: MakeClient, store: SupabaseTenantStore
) -> None:
    tenant_id = store.create_tenant(unique_name("acme")).tenant.id
    written = [
        _usage(
            tenant_id,
            f"req-{index}",
            input_chars=10 + index,
            audio_bytes=1000 * index,
            audio_seconds=0.5 * index,
            latency_ms=12.5,
            engine="piper",
            voice="joe",
            format="mp3",
            delivery="url",
            cached=index % 2 == 0,
            streaming=index == 3,
            error_code="text_too_long" if index == 4 else None,
            voice_version="v2" if index == 1 else None,
        )
        for index in range(5)
    ]
    store.write_usage(written)

    service = make_client("service_role")
    rows = (
        (service.table("usage_logs").select("*").eq("tenant_id", tenant_id).order("request_id"))
        .execute()
        .data
    )
    assert len(rows) == len(written)
    for row, record in zip(rows, written, strict=True):
        assert row["request_id"] == record.request_id
        assert row["job_id"] == record.job_id
        assert row["action"] == record.action
        assert datetime.fromisoformat(row["created_at"]) == record.created_at
        for name in USAGE_FIELDS:
            assert row[name] == getattr(record, name), name


def test_the_same_row_written_twice_keeps_one_row(
    supabase_stack: SupabaseStack, store: SupabaseTenantStore
) -> None:
    tenant_id = store.create_tenant(unique_name("acme")).tenant.id
    first = _usage(tenant_id, "req-1", input_chars=5)
    store.write_usage([first, first])  # a duplicate inside one batch
    store.write_usage([first, _usage(tenant_id, "req-2", input_chars=7)])  # a retried batch
    rows = supabase_stack.psql(
        f"select request_id || ',' || input_chars from usage_logs where tenant_id = '{tenant_id}'"
        " order by request_id"
    )
    assert rows.splitlines() == ["req-1,5", "req-2,7"]


def test_two_jobs_with_the_same_request_id_keep_two_rows(
    supabase_stack: SupabaseStack, store: SupabaseTenantStore
) -> None:
    tenant_id = store.create_tenant(unique_name("acme")).tenant.id
    jobs = [_usage(tenant_id, "reused", input_chars=n, job_id=f"job-{n}") for n in (3, 4)]
    store.write_usage(jobs)
    rows = supabase_stack.psql(
        "select job_id || ',' || request_id || ',' || input_chars from usage_logs"
        f" where tenant_id = '{tenant_id}' order by job_id"
    )
    assert rows.splitlines() == ["job-3,reused,3", "job-4,reused,4"]


def test_usage_by_day_totals_each_utc_day_within_the_range(store: SupabaseTenantStore) -> None:
    tenant_id = store.create_tenant(unique_name("acme")).tenant.id
    now = datetime.now(UTC)
    yesterday, long_ago = now - timedelta(days=1), now - timedelta(days=40)
    store.write_usage(
        [
            _usage(tenant_id, "a", created_at=now, input_chars=10, audio_bytes=100),
            _usage(tenant_id, "b", created_at=now, input_chars=5, error_code="quota_exceeded"),
            _usage(tenant_id, "c", created_at=yesterday, input_chars=7, audio_seconds=0.25),
            _usage(tenant_id, "d", created_at=long_ago, input_chars=1000, audio_seconds=9.0),
        ]
    )

    assert store.usage_by_day(tenant_id, days=30) == [
        DailyUsage(yesterday.date(), 1, failed=0, input_chars=7, audio_seconds=0.25, audio_bytes=0),
        DailyUsage(now.date(), 2, failed=1, input_chars=15, audio_seconds=0.0, audio_bytes=100),
    ]
    assert [day.day for day in store.usage_by_day(tenant_id, days=1)] == [now.date()]


# --- connect_supabase ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "plain", "expected_path"),
    [
        ("https://abcd.supabase.co", False, "/rest/v1/tenants"),
        ("http://127.0.0.1:3000", True, "/tenants"),
        ("http://127.0.0.1:3000/api", True, "/api/tenants"),
    ],
)
def test_rest_prefix_is_dropped_only_for_plain_postgrest(
    url: str, plain: bool, expected_path: str
) -> None:
    seen: list[httpx.Request] = []

    def reply(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[])

    client = connect_supabase(
        url, "service-key", plain_postgrest=plain, transport=httpx.MockTransport(reply)
    )
    client.table("tenants").select("id").eq("name", "x").execute()
    client.postgrest.aclose()
    assert seen[0].url.path == expected_path
    assert seen[0].url.params["name"] == "eq.x"
    assert seen[0].headers["apikey"] == "service-key"


# --- migrations ---------------------------------------------------------------------------------

_FIRST_NEW_MIGRATION = "20261122000100_sliding_rate_windows.sql"


def test_an_existing_database_upgrades_keeping_usage_rows_and_its_open_rate_windows(
    tmp_path: Path,
) -> None:
    """A project migrated before sliding windows and job ids: `supabase db push` of the new
    files backfills job ids and carries the open fixed windows into the request log."""
    older = tmp_path / "migrations"
    older.mkdir()
    newer = []
    for migration in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if migration.name < _FIRST_NEW_MIGRATION:
            shutil.copy(migration, older)
        else:
            newer.append(migration)
    with SupabaseStack(migrations_dir=older) as stack:
        tenant_id = stack.psql(
            "with t as (insert into tenants (name, key_prefix, key_hash, requests_per_minute)"
            " values ('old', 'abcdefgh', repeat('0', 64), 5) returning id) select id from t"
        )
        stack.psql(
            "insert into usage_logs (tenant_id, request_id, action, input_chars) values"
            f" ('{tenant_id}', 'r1', 'synthesize', 3), ('{tenant_id}', 'r2', 'synthesize', 4)"
        )
        wait_clear_of_window_end(60)
        wait_clear_of_window_end(3600)
        stack.psql(
            "insert into rate_windows values"
            f" ('{tenant_id}', 'minute', date_trunc('minute', now(), 'UTC'), 2),"
            f" ('{tenant_id}', 'hour', date_trunc('hour', now(), 'UTC'), 7),"
            f" ('{tenant_id}', 'minute', date_trunc('minute', now(), 'UTC') - interval '5 min', 5)"
        )
        for migration in newer:
            stack.apply_migration(migration)

        jobs = stack.psql(
            f"select job_id from usage_logs where tenant_id = '{tenant_id}' order by job_id"
        )
        assert jobs.splitlines() == ["r1", "r2"]
        # The open minute's 2 requests and the rest of the open hour's 5; the closed minute's none.
        carried = stack.psql(
            "select count(*) filter (where at = date_trunc('minute', now(), 'UTC'))"
            f" || ',' || count(*) from request_log where tenant_id = '{tenant_id}'"
        )
        assert carried == "2,7"
        gone = stack.psql(
            "select coalesce(to_regclass('public.rate_windows')::text, 'gone') || ','"
            " || coalesce(to_regprocedure('public.authorize_request(text, integer)')::text, 'gone')"
        )
        assert gone == "gone,gone"
        decisions = [
            stack.psql(f"select public.authorize_tenant('{tenant_id}', 1) ->> 'decision'")
            for _ in range(4)
        ]
        assert decisions == ["allowed"] * 3 + ["rate_limited_minute"]  # 2 carried + 3 = 5
        stack.psql(f"update tenants set max_voices = null where id = '{tenant_id}'")
