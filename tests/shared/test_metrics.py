"""A worker's metrics: its own registry (never the global one), moved by real jobs through the
real dispatcher and Piper; gauges that follow an open stream; auth-cache lookups counted."""

from __future__ import annotations

import base64
from collections.abc import Callable

import prometheus_client
from prometheus_client import CollectorRegistry

from handlers.dispatch import dispatch
from handlers.stream import AudioStream
from serverless_tts.runpod_shapes import run_job
from shared.config import Settings
from shared.engines.base import Engine
from shared.jobs import ApiKeyCredentials
from shared.metrics import WorkerMetrics
from shared.storage.s3 import S3AudioStore
from shared.tenants.base import UNLIMITED
from shared.tenants.cache import TtlCache
from shared.worker import WorkerContext, build_worker

OK_JOB = {"action": "synthesize", "engine": "piper", "outcome": "ok"}


def value(ctx: WorkerContext, name: str, labels: dict[str, str] | None = None) -> float:
    found = ctx.metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if found is None else found


def test_two_workers_in_one_process_count_apart_and_never_on_the_global_registry(
    make_worker: Callable[[Engine], WorkerContext], piper_engine: Engine
) -> None:
    first, second = make_worker(piper_engine), make_worker(piper_engine)
    key = first.tenants.create_tenant("acme", UNLIMITED).api_key
    job = {"api_key": key, "text": "Counted where it ran.", "delivery": "base64"}
    run_job(job, first)
    assert [value(ctx, "tts_jobs_total", OK_JOB) for ctx in (first, second)] == [1, 0]
    run_job(job, second)
    run_job(job, second)
    assert [value(ctx, "tts_jobs_total", OK_JOB) for ctx in (first, second)] == [1, 2]
    assert first.metrics.registry is not second.metrics.registry
    global_names = {family.name for family in prometheus_client.REGISTRY.collect()}
    assert not any(name.startswith("tts_") for name in global_names)


def test_a_registry_handed_to_the_worker_is_the_one_it_counts_on(
    settings: Settings, piper_engine: Engine
) -> None:
    registry = CollectorRegistry()
    ctx = build_worker(settings, engine=piper_engine, metrics=WorkerMetrics(registry))
    try:
        key = ctx.tenants.create_tenant("acme", UNLIMITED).api_key
        [result] = run_job({"api_key": key, "text": "Counted.", "delivery": "base64"}, ctx)
    finally:
        ctx.close()
    assert registry.get_sample_value("tts_jobs_total", OK_JOB) == 1
    labels = {"engine": "piper", "format": "wav", "cached": "false"}
    assert registry.get_sample_value("tts_audio_bytes_total", labels) == len(
        base64.b64decode(result["audio_base64"])
    )


def test_an_open_stream_is_an_active_job_and_stream_until_it_is_closed(
    worker: WorkerContext, api_key: str
) -> None:
    raw = {"text": "One. Two. Three. Four.", "delivery": "stream", "format": "pcm16"}
    stream = dispatch(raw, ApiKeyCredentials.of(api_key), worker)
    assert isinstance(stream, AudioStream)
    assert value(worker, "tts_active_jobs") == 1
    assert value(worker, "tts_active_streams") == 1
    next(iter(stream))
    first_audio = {"engine": "piper", "format": "pcm16", "cached": "false"}
    assert value(worker, "tts_time_to_first_audio_seconds_count", first_audio) == 1
    stream.close()
    assert value(worker, "tts_active_jobs") == 0
    assert value(worker, "tts_active_streams") == 0
    cancelled = {**OK_JOB, "outcome": "cancelled"}
    assert value(worker, "tts_jobs_total", cancelled) == 1
    assert value(worker, "tts_jobs_total", OK_JOB) == 0


def test_auth_cache_lookups_are_counted_as_hits_and_misses() -> None:
    metrics = WorkerMetrics()
    cache: TtlCache[str] = TtlCache(ttl_s=60, on_lookup=metrics.auth_cache_lookup)
    assert cache.get("digest") is None
    cache.put("digest", "tenant")
    assert cache.get("digest") == "tenant"
    assert cache.get("digest") == "tenant"
    sample = metrics.registry.get_sample_value
    assert sample("tts_auth_cache_lookups_total", {"result": "miss"}) == 1
    assert sample("tts_auth_cache_lookups_total", {"result": "hit"}) == 2


def test_the_snapshot_has_totals_gauges_and_histogram_counts_but_no_buckets(
    worker: WorkerContext, api_key: str
) -> None:
    run_job({"api_key": api_key, "text": "Snap.", "delivery": "base64"}, worker)
    figures = worker.metrics.snapshot()
    assert figures['tts_jobs_total{action="synthesize",engine="piper",outcome="ok"}'] == 1
    assert figures["tts_active_jobs"] == 0
    count = 'tts_job_duration_seconds_count{action="synthesize",engine="piper",delivery="base64"}'
    assert figures[count] == 1
    assert not any("_bucket" in name or "_created" in name for name in figures)


def test_a_worker_counts_its_tenant_stores_auth_cache(
    settings: Settings, piper_engine: Engine
) -> None:
    """Built by build_worker, the store reports each key lookup: the first job misses (a
    database round trip), the next ones hit while the key is cached."""
    ctx = build_worker(settings.model_copy(update={"auth_cache_ttl_s": 60}), engine=piper_engine)
    try:
        key = ctx.tenants.create_tenant("cached", UNLIMITED).api_key
        for _ in range(3):
            run_job({"api_key": key, "action": "voices.list"}, ctx)
        assert value(ctx, "tts_auth_cache_lookups_total", {"result": "miss"}) == 1
        assert value(ctx, "tts_auth_cache_lookups_total", {"result": "hit"}) == 2
    finally:
        ctx.close()


def test_storing_audio_is_timed_by_outcome(
    settings: Settings, piper_engine: Engine, dead_s3_store: S3AudioStore
) -> None:
    """A url job's upload is observed as ok; with storage down, as failed (the job still
    answers, inline with a warning)."""
    for storage, outcome in ((None, "ok"), (dead_s3_store, "failed")):
        ctx = build_worker(settings, engine=piper_engine, storage=storage)
        try:
            key = ctx.tenants.create_tenant(f"uploads-{outcome}", UNLIMITED).api_key
            [result] = run_job({"api_key": key, "text": "Store me.", "delivery": "url"}, ctx)
            assert ("warning" in result) == (outcome == "failed")
            labels = {"outcome": outcome}
            assert value(ctx, "tts_storage_upload_seconds_count", labels) == 1
            assert value(ctx, "tts_storage_upload_seconds_sum", labels) > 0
        finally:
            ctx.close()
