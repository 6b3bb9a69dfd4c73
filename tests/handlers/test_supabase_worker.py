"""A worker configured for Supabase: jobs authenticated and billed against the real stack, and
usage rows that survive the database going away."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from serverless_tts.runpod_shapes import run_job
from shared.config import Settings
from shared.engines.base import Engine
from shared.errors import ErrorCode, TTSError
from shared.tenants.base import UNLIMITED
from shared.worker import WorkerContext, build_worker
from tests.supabase_fixtures import on_supabase
from tests.supabase_stack import SupabaseStack


@pytest.fixture
def supabase_worker(
    settings: Settings,
    supabase_stack: SupabaseStack,
    piper_engine: Engine,
) -> Callable[[], WorkerContext]:
    made: list[WorkerContext] = []
    configured = on_supabase(settings, supabase_stack, auth_cache_ttl_s=30)

    def make() -> WorkerContext:
        made.append(build_worker(configured, engine=piper_engine))
        return made[-1]

    yield make  # type: ignore[misc]
    for ctx in made:
        ctx.close()


def usage_count(stack: SupabaseStack, tenant_id: str) -> int:
    return int(
        stack.psql(f"select count(*) from public.usage_logs where tenant_id = '{tenant_id}'")
    )


def test_jobs_are_authorized_and_logged_in_supabase(
    supabase_worker: Callable[[], WorkerContext], supabase_stack: SupabaseStack
) -> None:
    worker = supabase_worker()
    issued = worker.tenants.create_tenant("worker-acme", UNLIMITED)
    for n in range(3):
        run_job({"api_key": issued.api_key, "text": f"Job {n}.", "request_id": f"j{n}"}, worker)
    with pytest.raises(TTSError) as refused:
        run_job({"api_key": "stts_00000000_" + "x" * 43, "text": "Hi."}, worker)
    assert refused.value.code == ErrorCode.UNAUTHORIZED
    assert worker.usage.flush(timeout_s=10)
    assert usage_count(supabase_stack, issued.tenant.id) == 3


def test_database_down_cached_keys_work_and_usage_arrives_after_it_returns(
    supabase_worker: Callable[[], WorkerContext], supabase_stack: SupabaseStack
) -> None:
    worker = supabase_worker()
    issued = worker.tenants.create_tenant("worker-outage", UNLIMITED)
    run_job({"api_key": issued.api_key, "text": "Warm the cache.", "request_id": "w0"}, worker)
    assert worker.usage.flush(timeout_s=10)
    stranger = worker.tenants.create_tenant("worker-stranger", UNLIMITED).api_key
    supabase_stack.stop_postgres()
    try:
        for n in range(1, 4):
            job = {"api_key": issued.api_key, "text": "Still here.", "request_id": f"w{n}"}
            [result] = run_job(job, worker)
            assert result["bytes"] > 0
        with pytest.raises(TTSError) as refused:
            run_job({"api_key": stranger, "text": "Who am I?"}, worker)
        assert refused.value.code == ErrorCode.AUTH_UNAVAILABLE
        assert not worker.usage.flush(timeout_s=0.5)  # rows wait while the database is down
    finally:
        supabase_stack.start_postgres()
    assert worker.usage.flush(timeout_s=30)
    assert worker.usage.dropped == 0
    assert usage_count(supabase_stack, issued.tenant.id) == 4  # w0..w3, none twice
