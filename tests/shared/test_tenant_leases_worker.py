"""A warm job through the real worker (``build_worker``, Supabase store, real Piper) makes no
database round trip while its tenant's lease lasts, counted at a proxy in front of PostgREST."""

from __future__ import annotations

import http.server
import threading
import uuid
from collections.abc import Iterator

import httpx
import pytest

from serverless_tts.runpod_shapes import run_job
from shared.config import Settings
from shared.engines.base import Engine
from shared.tenants.base import TenantLimits
from shared.worker import WorkerContext, build_worker
from tests.supabase_fixtures import on_supabase
from tests.supabase_stack import SupabaseStack

USAGE_WRITE = ("POST", "/usage_logs")
# Set again for the body as forwarded (httpx has already decoded it).
_HOP_HEADERS = frozenset({"content-length", "content-encoding", "transfer-encoding", "connection"})


class CountingProxy:
    """A plain HTTP proxy on loopback in front of PostgREST that records every request it
    forwards, so the count is what reaches PostgREST from the worker's own client."""

    def __init__(self, upstream: str) -> None:
        self.seen: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        forward = httpx.Client(base_url=upstream, timeout=10)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy._lock:
                    proxy.seen.append((self.command, self.path.split("?")[0]))
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                reply = forward.request(self.command, self.path, headers=headers, content=body)
                self.send_response(reply.status_code)
                for name, value in reply.headers.items():
                    if name.lower() not in _HOP_HEADERS:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.content)))
                self.end_headers()
                self.wfile.write(reply.content)

            do_GET = do_POST = do_PATCH = do_DELETE = _forward

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._forward_client = forward
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def take(self) -> list[tuple[str, str]]:
        with self._lock:
            seen, self.seen = self.seen, []
        return seen

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._forward_client.close()


@pytest.fixture
def proxy(supabase_stack: SupabaseStack) -> Iterator[CountingProxy]:
    counting = CountingProxy(supabase_stack.url)
    yield counting
    counting.close()


def worker_behind(
    proxy: CountingProxy,
    settings: Settings,
    stack: SupabaseStack,
    engine: Engine,
    lease_requests: int,
) -> WorkerContext:
    configured = on_supabase(
        settings,
        stack,
        supabase_url=proxy.url,
        auth_cache_ttl_s=60,
        lease_requests=lease_requests,
        lease_chars=1_000,
        lease_ttl_s=60,
    )
    return build_worker(configured, engine=engine)


LEASE = ("POST", "/rpc/lease_allowance")
AUTHORIZE = ("POST", "/rpc/authorize_tenant")


@pytest.mark.parametrize(
    ("lease_requests", "charge", "on_the_jobs_path"),
    [
        (5, LEASE, []),  # leased: the warm job is admitted from memory
        (0, AUTHORIZE, [AUTHORIZE]),  # leases off: today's one round trip per job
    ],
)
def test_a_warm_job_makes_no_database_round_trip_while_its_lease_lasts(
    proxy: CountingProxy,
    settings: Settings,
    supabase_stack: SupabaseStack,
    piper_engine: Engine,
    lease_requests: int,
    charge: tuple[str, str],
    on_the_jobs_path: list[tuple[str, str]],
) -> None:
    worker = worker_behind(proxy, settings, supabase_stack, piper_engine, lease_requests)
    try:
        issued = worker.tenants.create_tenant(
            f"warm-{uuid.uuid4().hex[:12]}", TenantLimits(monthly_char_quota=None)
        )
        job = {"api_key": issued.api_key, "text": "Warm and cached.", "request_id": "first"}
        [first] = run_job(job, worker)
        assert worker.usage.flush(timeout_s=10)
        assert proxy.take().count(charge) == 1  # the cold job charged the tenant once

        [warm] = run_job({**job, "request_id": "warm"}, worker)
        assert worker.usage.flush(timeout_s=10)
        seen = proxy.take()
    finally:
        worker.close()

    assert warm["cached"] and warm["bytes"] == first["bytes"]
    # The only request after the job is its usage row, written by the UsageWriter's thread
    # (the job only queues it); everything else would have been on the job's path.
    assert [request for request in seen if request != USAGE_WRITE] == on_the_jobs_path
    assert seen.count(USAGE_WRITE) == 1
    # One row per job, as without leases.
    rows = supabase_stack.psql(
        f"select request_id from usage_logs where tenant_id = '{issued.tenant.id}'"
        " order by created_at"
    )
    assert rows.splitlines() == ["first", "warm"]
