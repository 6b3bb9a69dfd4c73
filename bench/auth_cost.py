"""Auth cost per job with the Supabase tenant store, on loopback: cache hit vs miss vs the RPC,
and ``authorize`` spending a lease (``TTS_LEASE_REQUESTS``) against it.

Starts the same local Postgres + PostgREST stack as the tests (tests/supabase_stack.py; needs
``scripts/install_test_deps.sh``), so the figures are one process talking HTTP to PostgREST on
127.0.0.1: no network latency, which a hosted Supabase adds to the miss and the RPC (typically
1-50 ms per round trip, depending on region). A leased ``authorize`` pays one round trip (the
``lease_allowance`` RPC) per ``--lease-requests`` calls, so its mean, not its median, is the cost
per job. Run: ``python -m bench.auth_cost [--calls N] [--lease-requests R]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from shared.tenants.base import UNLIMITED
from shared.tenants.leases import LeasingTenantStore
from shared.tenants.supabase_store import SupabaseTenantStore, connect_supabase
from tests.supabase_stack import SupabaseStack


def measure(call: Callable[[], object], calls: int) -> list[float]:
    """Milliseconds per call, after a few warm-up calls (connection pool, plan cache)."""
    for _ in range(min(20, calls)):
        call()
    times = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        call()
        times.append((time.perf_counter_ns() - start) / 1e6)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--lease-requests", type=int, default=20)
    args = parser.parse_args()

    with SupabaseStack() as stack:

        def store(cache_ttl_s: float) -> SupabaseTenantStore:
            client = connect_supabase(stack.url, stack.service_role_key, plain_postgrest=True)
            return SupabaseTenantStore(client, cache_ttl_s=cache_ttl_s)

        warm, cold = store(cache_ttl_s=3600), store(cache_ttl_s=0)
        leased = LeasingTenantStore(
            store(cache_ttl_s=3600), requests=args.lease_requests, chars=50_000, ttl_s=60
        )
        # Unlimited, so every authorize is allowed and does the full check-and-record.
        issued = warm.create_tenant("bench", UNLIMITED)
        api_key, tenant_id = issued.api_key, issued.tenant.id
        cases = {
            "authenticate, cache hit": lambda: warm.authenticate(api_key),
            "authenticate, cache miss": lambda: cold.authenticate(api_key),
            "authorize RPC": lambda: warm.authorize(tenant_id, 50),
            f"authorize, leased ({args.lease_requests}/lease)": lambda: leased.authorize(
                tenant_id, 50
            ),
        }
        results = {name: measure(call, args.calls) for name, call in cases.items()}
        leased.close()

    baseline = statistics.median(results["authenticate, cache hit"])
    print(f"{args.calls} calls per case, one process, PostgREST + Postgres on loopback")
    for name, times in results.items():
        p50, p95 = statistics.median(times), statistics.quantiles(times, n=100)[94]
        mean = statistics.fmean(times)
        print(
            f"{name:30s} p50 {p50:8.3f} ms   p95 {p95:8.3f} ms   mean {mean:8.3f} ms"
            f"   = {p50 / baseline:8.1f}x cache hit"
        )
    rpc = statistics.fmean(results["authorize RPC"])
    lease = statistics.fmean(results[f"authorize, leased ({args.lease_requests}/lease)"])
    print(f"per-job authorize, mean: leased / RPC = {lease / rpc:.3f} ({rpc / lease:.0f}x less)")


if __name__ == "__main__":
    main()
