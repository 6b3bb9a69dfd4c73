"""Allowance leases on both stores (SQLite, and Supabase on the real Postgres + PostgREST stack):
warm jobs spend a lease without touching the database, what is not spent comes back, and the
limits and refusals are those of a direct ``authorize``."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from postgrest import APIError

from shared.errors import InvalidInput, QuotaExceeded, RateLimited, Unauthorized
from shared.tenants.base import LeaseTerms, LeasingStore, SpentLease, TenantLimits, TenantStore
from shared.tenants.leases import LeasingTenantStore
from shared.tenants.sqlite_store import SqliteTenantStore
from shared.tenants.supabase_store import SupabaseTenantStore, connect_supabase
from tests.supabase_stack import SupabaseStack

PER_MINUTE_ONLY = TenantLimits(monthly_char_quota=None, requests_per_minute=None)


@dataclass
class Backend:
    """A store as a worker builds it, ``another()`` for a second worker on the same database,
    and the database's own counts for a tenant: its request-log entries (the sliding windows)
    and its characters this month (the quota)."""

    store: LeasingStore
    another: Callable[[], LeasingStore]
    logged: Callable[[str], int]
    charged: Callable[[str], int]


@pytest.fixture(params=["sqlite", "supabase"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made: list[LeasingStore] = []
    if request.param == "sqlite":
        path = tmp_path / "tenants.sqlite3"

        def make() -> LeasingStore:
            made.append(SqliteTenantStore(path, cache_ttl_s=0))
            return made[-1]

        def query(sql: str, tenant_id: str) -> int:
            db = sqlite3.connect(path)
            try:
                return int(db.execute(sql, (tenant_id,)).fetchone()[0] or 0)
            finally:
                db.close()

        logged = lambda tenant_id: query(  # noqa: E731
            "SELECT count(*) FROM request_log WHERE tenant_id = ?", tenant_id
        )
        charged = lambda tenant_id: query(  # noqa: E731
            "SELECT sum(chars) FROM monthly_chars WHERE tenant_id = ?", tenant_id
        )
    else:
        stack: SupabaseStack = request.getfixturevalue("supabase_stack")

        def make() -> LeasingStore:
            client = connect_supabase(stack.url, stack.service_role_key, plain_postgrest=True)
            made.append(SupabaseTenantStore(client, cache_ttl_s=0))
            return made[-1]

        def psql_count(sql: str) -> int:
            return int(stack.psql(sql) or 0)

        logged = lambda tenant_id: psql_count(  # noqa: E731
            f"select count(*) from request_log where tenant_id = '{tenant_id}'"
        )
        charged = lambda tenant_id: psql_count(  # noqa: E731
            f"select sum(input_chars) from monthly_usage where tenant_id = '{tenant_id}'"
        )
    yield Backend(store=make(), another=make, logged=logged, charged=charged)
    for store in made:
        store.close()


def leasing(
    store: LeasingStore, *, requests: int = 5, chars: int = 100, ttl_s: float = 30
) -> LeasingTenantStore:
    """A worker's view: never closed here, so the test reads the database with the lease held;
    ``close`` returns it."""
    return LeasingTenantStore(store, requests=requests, chars=chars, ttl_s=ttl_s)


def new_tenant(store: LeasingStore, limits: TenantLimits = PER_MINUTE_ONLY) -> str:
    return store.create_tenant(f"lease-{uuid.uuid4().hex[:12]}", limits).tenant.id


def wait_for(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(0.05)


def test_warm_jobs_spend_the_lease_and_renewing_settles_it_exactly(backend: Backend) -> None:
    tenant_id = new_tenant(backend.store)
    leases = leasing(backend.store, requests=5, chars=100)

    assert leases.authorize(tenant_id, 10).id == tenant_id
    # One lease reserved: 5 requests in the windows and 100 characters in the month.
    assert (backend.logged(tenant_id), backend.charged(tenant_id)) == (5, 100)
    for _ in range(4):
        leases.authorize(tenant_id, 10)
    assert (backend.logged(tenant_id), backend.charged(tenant_id)) == (5, 100)  # all local

    leases.authorize(tenant_id, 10)  # renews: the spent lease (5 jobs, 50 chars) is settled
    assert (backend.logged(tenant_id), backend.charged(tenant_id)) == (5 + 5, 50 + 100)

    leases.close()
    assert (backend.logged(tenant_id), backend.charged(tenant_id)) == (6, 60)


def test_an_expired_lease_is_returned_and_the_counts_are_exact(backend: Backend) -> None:
    tenant_id = new_tenant(backend.store)
    leases = leasing(backend.store, requests=5, chars=100, ttl_s=0.3)
    leases.authorize(tenant_id, 7)
    leases.authorize(tenant_id, 8)

    # No job comes: the returner gives back the 3 requests and 85 characters unspent.
    wait_for(lambda: backend.logged(tenant_id) == 2)
    assert backend.charged(tenant_id) == 15
    leases.authorize(tenant_id, 1)  # after expiry: a new lease
    assert (backend.logged(tenant_id), backend.charged(tenant_id)) == (2 + 5, 15 + 100)
    wait_for(lambda: backend.logged(tenant_id) == 3)
    assert backend.charged(tenant_id) == 16


def test_a_rate_limit_refusal_is_the_direct_one(backend: Backend) -> None:
    ttl_s = 30
    limits = TenantLimits(monthly_char_quota=None, requests_per_minute=3, requests_per_hour=None)
    tenant_id = new_tenant(backend.store, limits)
    leases = leasing(backend.store, requests=2, chars=100, ttl_s=ttl_s)
    for _ in range(3):
        leases.authorize(tenant_id, 1)
    with pytest.raises(RateLimited, match="per-minute limit of 3 requests reached") as refused:
        leases.authorize(tenant_id, 1)
    with pytest.raises(RateLimited) as direct:
        backend.store.authorize(tenant_id, 1)
    # Leased requests are stamped at their lease's end (at most the TTL after their use), so
    # the wait is never shorter than exact, and at most the TTL longer.
    assert 55 <= refused.value.retry_after_s <= 60 + ttl_s
    assert str(refused.value).split(";")[0] == str(direct.value).split(";")[0]
    leases.close()
    assert backend.logged(tenant_id) == 3


def test_a_quota_refusal_says_exactly_what_was_used(backend: Backend) -> None:
    limits = TenantLimits(monthly_char_quota=100, requests_per_minute=None, requests_per_hour=None)
    tenant_id = new_tenant(backend.store, limits)
    leases = leasing(backend.store, requests=5, chars=50)
    for _ in range(3):
        leases.authorize(tenant_id, 30)  # each renewal gives back the last lease's 20 first
    with pytest.raises(QuotaExceeded, match=r"30 characters .*\(90 of 100 used\)"):
        leases.authorize(tenant_id, 30)
    leases.authorize(tenant_id, 10)  # exactly the rest of the quota
    with pytest.raises(QuotaExceeded, match=r"\(100 of 100 used\)"):
        leases.authorize(tenant_id, 1)
    leases.close()
    assert (backend.logged(tenant_id), backend.charged(tenant_id)) == (4, 100)


def test_a_job_bigger_than_a_lease_is_authorized_directly(backend: Backend) -> None:
    tenant_id = new_tenant(backend.store)
    leases = leasing(backend.store, requests=5, chars=50)
    leases.authorize(tenant_id, 80)
    assert (backend.logged(tenant_id), backend.charged(tenant_id)) == (1, 80)  # no lease
    leases.close()


def test_threads_of_one_worker_get_exactly_the_limit(backend: Backend) -> None:
    """One worker settles its own leftovers when it renews, so it is never short-changed."""
    limit = 30
    limits = TenantLimits(monthly_char_quota=None, requests_per_minute=limit)
    tenant_id = new_tenant(backend.store, limits)
    leases = leasing(backend.store, requests=4, chars=100)

    def one(_: int) -> bool:
        try:
            leases.authorize(tenant_id, 3)
        except RateLimited:
            return False
        return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        admitted = sum(pool.map(one, range(80)))
    leases.close()
    assert admitted == limit
    assert (backend.logged(tenant_id), backend.charged(tenant_id)) == (limit, 3 * limit)


def test_disabling_here_refuses_at_once_and_elsewhere_within_the_lease(backend: Backend) -> None:
    tenant_id = new_tenant(backend.store)
    here = leasing(backend.store, requests=3, chars=100)
    elsewhere = leasing(backend.another(), requests=3, chars=100, ttl_s=0.5)
    here.authorize(tenant_id, 1)
    elsewhere.authorize(tenant_id, 1)

    here.set_active(tenant_id, False)
    with pytest.raises(Unauthorized):
        here.authorize(tenant_id, 1)
    # The other worker's lease still admits: at most its requests left, for at most its TTL.
    elsewhere.authorize(tenant_id, 1)
    time.sleep(0.5)
    with pytest.raises(Unauthorized):
        elsewhere.authorize(tenant_id, 1)
    here.close()
    elsewhere.close()
    assert backend.logged(tenant_id) == 3


def test_returning_a_lease_twice_refunds_once(backend: Backend) -> None:
    tenant_id = new_tenant(backend.store)
    lease = backend.store.lease_allowance(tenant_id, LeaseTerms(4, 40, 5, 30))
    assert (lease.requests, lease.chars) == (4, 40)
    backend.store.return_allowance(SpentLease(lease, 1, 5))
    backend.store.return_allowance(SpentLease(lease, 0, 0))
    assert (backend.logged(tenant_id), backend.charged(tenant_id)) == (1, 5)


def test_a_lease_holds_no_more_than_the_windows_have_room_for(backend: Backend) -> None:
    limits = TenantLimits(monthly_char_quota=25, requests_per_minute=5, requests_per_hour=3)
    tenant_id = new_tenant(backend.store, limits)
    lease = backend.store.lease_allowance(tenant_id, LeaseTerms(4, 40, 5, 30))
    assert (lease.requests, lease.chars) == (3, 25)
    with pytest.raises(RateLimited, match="per-hour limit of 3"):
        backend.store.lease_allowance(tenant_id, LeaseTerms(4, 40, 5, 30))
    backend.store.return_allowance(SpentLease(lease, 0, 0))
    assert (backend.logged(tenant_id), backend.charged(tenant_id)) == (0, 0)


@pytest.mark.parametrize(
    ("requests", "chars", "need_chars", "ttl_s"),
    [(0, 10, 1, 5.0), (1, 5, 6, 5.0), (1, 10, -1, 5.0), (1, 10, 1, 0.0), (1, 10, 1, 3601.0)],
)
def test_a_lease_of_no_size_or_time_is_invalid(
    backend: Backend, requests: int, chars: int, need_chars: int, ttl_s: float
) -> None:
    tenant_id = new_tenant(backend.store)
    with pytest.raises(InvalidInput):
        backend.store.lease_allowance(tenant_id, LeaseTerms(requests, chars, need_chars, ttl_s))
    assert backend.logged(tenant_id) == 0


def test_the_leasing_store_answers_every_method_of_the_protocol() -> None:
    """A method added to ``TenantStore`` later must be passed on here too, or leases would
    hide it from the worker."""
    wanted = {name for name in vars(TenantStore) if not name.startswith("_")}
    assert wanted <= set(vars(LeasingTenantStore))


def test_anon_key_cannot_call_the_lease_rpcs(supabase_stack: SupabaseStack) -> None:
    anon = connect_supabase(supabase_stack.url, supabase_stack.anon_key, plain_postgrest=True)
    service = connect_supabase(
        supabase_stack.url, supabase_stack.service_role_key, plain_postgrest=True
    )
    store = SupabaseTenantStore(service)
    tenant_id = new_tenant(store)
    lease = store.lease_allowance(tenant_id, LeaseTerms(2, 10, 1, 30))
    calls = {
        "lease_allowance": {
            "p_tenant_id": tenant_id,
            "p_requests": 1,
            "p_chars": 1,
            "p_need_chars": 1,
            "p_ttl_s": 5,
        },
        "return_allowance": {"p_lease_id": lease.id, "p_used_requests": 0, "p_used_chars": 0},
    }
    try:
        for function, params in calls.items():
            with pytest.raises(APIError) as denied:
                anon.rpc(function, params).execute()
            assert denied.value.code == "42501", function
        assert (
            supabase_stack.psql(
                f"select requests || ',' || chars from allowance_leases where id = '{lease.id}'"
            )
            == "2,10"
        )
    finally:
        store.close()
        anon.postgrest.aclose()


def test_database_down_a_known_tenant_keeps_working_and_its_lease_comes_back_later(
    supabase_stack: SupabaseStack,
) -> None:
    client = connect_supabase(
        supabase_stack.url, supabase_stack.service_role_key, plain_postgrest=True
    )
    store = SupabaseTenantStore(client, cache_ttl_s=60)
    leases = leasing(store, requests=5, chars=100, ttl_s=0.3)
    issued = store.create_tenant(f"lease-{uuid.uuid4().hex[:12]}", PER_MINUTE_ONLY)
    tenant_id = issued.tenant.id
    leases.authenticate(issued.api_key)
    leases.authorize(tenant_id, 4)

    supabase_stack.stop_postgres()
    try:
        time.sleep(0.6)  # the lease expires; giving it back fails and is retried
        # No lease to be had: the store's outage policy admits the tenant it authenticated.
        assert leases.authorize(tenant_id, 4).id == tenant_id
    finally:
        supabase_stack.start_postgres()

    count = f"select count(*) from request_log where tenant_id = '{tenant_id}'"
    wait_for(lambda: supabase_stack.psql(count) == "1")  # the 4 unspent came back
    chars = f"select input_chars from monthly_usage where tenant_id = '{tenant_id}'"
    assert supabase_stack.psql(chars) == "4"
    leases.close()
