"""The composition root: builds, once per process, everything a warm worker keeps between jobs.

Entry points (RunPod at import, Modal in ``@modal.enter``, the web app in its lifespan, the CLI)
call ``build_worker``; handlers receive the result and never build anything themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.cache.single_flight import SingleFlight
from shared.config import Settings
from shared.engines.base import Engine
from shared.engines.engine_set import EngineSet
from shared.engines.failover import FailoverPolicy
from shared.engines.registry import load_engine
from shared.engines.vendors import vendor_configs
from shared.errors import InvalidInput
from shared.jobs import JobLimits
from shared.lifecycle import Lifecycle
from shared.metrics import WorkerMetrics
from shared.storage.base import AudioStore
from shared.storage.local import LocalAudioStore, load_or_create_secret
from shared.tenants.base import TenantStore
from shared.tenants.sqlite_store import SqliteTenantStore
from shared.tenants.usage import UsageWriter
from shared.voices.resolver import VoiceResolver


@dataclass
class WorkerContext:
    settings: Settings
    engines: EngineSet
    tenants: TenantStore
    storage: AudioStore
    usage: UsageWriter
    voices: VoiceResolver
    # This worker's own registry: /metrics (and RunPod's metrics events) show its jobs only.
    metrics: WorkerMetrics
    # Identical cache misses in flight at once on this worker share one synthesis.
    inflight: SingleFlight[Any] = field(default_factory=SingleFlight)
    # Jobs admitted and running; after SIGTERM, new ones are refused while these drain.
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    started_at: float = field(default_factory=time.monotonic)

    @property
    def limits(self) -> JobLimits:
        return JobLimits(max_text_chars=self.settings.max_text_chars)

    def close(self) -> None:
        """Stop the engines' threads, write every pending usage row, then let go of the stores
        (graceful shutdown)."""
        self.engines.close()
        self.usage.close()
        self.tenants.close()

    def shutdown(self) -> bool:
        """Drain (refuse new jobs, let admitted ones end within ``TTS_SHUTDOWN_GRACE_S``), then
        close; False if jobs were still running when the grace ran out (they are cut short)."""
        drained = self.lifecycle.drain(self.settings.shutdown_grace_s)
        self.close()
        return drained


def build_tenant_store(
    settings: Settings, on_auth_lookup: Callable[[bool], None] | None = None
) -> TenantStore:
    """The configured store; wrapped in leases (``TTS_LEASE_REQUESTS`` > 0) so warm jobs are
    admitted without a database round trip."""
    from shared.tenants.base import LeasingStore

    if settings.tenant_store == "supabase":
        from shared.tenants.supabase_store import SupabaseTenantStore, connect_supabase

        if settings.supabase_url is None or settings.supabase_service_role_key is None:
            raise InvalidInput(
                "tenant_store=supabase needs SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY"
            )
        client = connect_supabase(
            settings.supabase_url,
            settings.supabase_service_role_key.get_secret_value(),
            timeout_s=settings.supabase_timeout_s,
            plain_postgrest=settings.supabase_plain_postgrest,
        )
        store: LeasingStore = SupabaseTenantStore(
            client, cache_ttl_s=settings.auth_cache_ttl_s, on_auth_lookup=on_auth_lookup
        )
    else:
        store = SqliteTenantStore(
            settings.sqlite_path,
            cache_ttl_s=settings.auth_cache_ttl_s,
            on_auth_lookup=on_auth_lookup,
        )
    if settings.lease_requests == 0:
        return store
    from shared.tenants.leases import LeasingTenantStore

    return LeasingTenantStore(
        store,
        requests=settings.lease_requests,
        chars=settings.lease_chars,
        ttl_s=settings.lease_ttl_s,
    )


def build_storage(settings: Settings) -> AudioStore:
    if settings.storage == "s3":
        from shared.storage.s3 import S3AudioStore, connect_s3

        if settings.s3_bucket is None:
            raise InvalidInput("storage=s3 needs TTS_S3_BUCKET")
        secret_key = settings.s3_secret_access_key
        client = connect_s3(
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=secret_key.get_secret_value() if secret_key else None,
            path_style=settings.s3_path_style,
        )
        return S3AudioStore(
            client,
            bucket=settings.s3_bucket,
            key_prefix=settings.s3_key_prefix,
            cache_control=settings.s3_cache_control,
        )
    secret = (
        settings.url_signing_secret.get_secret_value().encode()
        if settings.url_signing_secret is not None
        else load_or_create_secret(settings.data_dir / "url_signing.key")
    )
    return LocalAudioStore(settings.audio_dir, base_url=settings.public_base_url, secret=secret)


def build_engine(settings: Settings, kind: str | None = None) -> Engine:
    """The engine ``kind`` names (default: ``TTS_ENGINE``) from the settings."""
    return load_engine(
        kind or settings.engine,
        xtts_model_dir=settings.xtts_model_dir,
        xtts_device=settings.xtts_device,
        xtts_max_audio_tokens=settings.xtts_max_audio_tokens,
        xtts_stream_chunk_tokens=settings.xtts_stream_chunk_tokens,
        xtts_stream_first_chunk_tokens=settings.xtts_stream_first_chunk_tokens,
        xtts_max_batch=settings.xtts_max_batch,
        xtts_decode_batch=settings.xtts_decode_batch,
        xtts_warmup=settings.xtts_warmup,
        piper_model_path=settings.piper_model_path,
        vendors=vendor_configs(settings),
    )


def build_engines(settings: Settings, metrics: WorkerMetrics) -> EngineSet:
    """Every engine of ``TTS_ENGINES`` (or ``TTS_ENGINE``), with the failover policy."""
    return engine_set(
        [build_engine(settings, kind) for kind in settings.engine_names], settings, metrics
    )


def engine_set(engines: Sequence[Engine], settings: Settings, metrics: WorkerMetrics) -> EngineSet:
    policy = FailoverPolicy(
        breaker_failures=settings.breaker_failures,
        breaker_open_s=settings.breaker_open_s,
        retry_attempts=settings.retry_attempts,
        retry_backoff_s=settings.retry_backoff_s,
        retry_max_wait_s=settings.retry_max_wait_s,
    )
    group = EngineSet(engines, policy=policy, on_state=metrics.breaker_state)
    for name in group.names:
        group.runner(name).limit(
            step_timeout_s=settings.engine_timeout_s, hung_s=settings.engine_hung_s
        )
    return group


def build_worker(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    engines: Sequence[Engine] | None = None,
    tenants: TenantStore | None = None,
    storage: AudioStore | None = None,
    metrics: WorkerMetrics | None = None,
) -> WorkerContext:
    """Load the engines (the slow part of a cold start) and open the stores; what this call
    opened is closed again if a later step fails (a store passed in stays the caller's).
    ``engine`` or ``engines`` (the default first) replace the configured ones.
    ``metrics`` may share a registry with the process's other parts; by default it is new."""
    settings = settings or Settings()
    metrics = metrics or WorkerMetrics()
    opened_tenants = tenants is None
    tenants = tenants or build_tenant_store(settings, metrics.auth_cache_lookup)
    try:
        given = list(engines or ()) or ([engine] if engine is not None else [])
        engine_group = (
            engine_set(given, settings, metrics) if given else build_engines(settings, metrics)
        )
        try:
            storage = storage or build_storage(settings)
            return WorkerContext(
                settings=settings,
                engines=engine_group,
                tenants=tenants,
                storage=storage,
                usage=UsageWriter(tenants.write_usage),
                voices=VoiceResolver(tenants, storage, cache_entries=settings.voice_cache_entries),
                metrics=metrics,
            )
        except BaseException:
            engine_group.close()
            raise
    except BaseException:
        if opened_tenants:
            tenants.close()
        raise
