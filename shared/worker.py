"""The composition root: builds, once per process, everything a warm worker keeps between jobs.

Entry points (RunPod at import, Modal in ``@modal.enter``, the web app in its lifespan, the CLI)
call ``build_worker``; handlers receive the result and never build anything themselves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from shared.config import Settings
from shared.engines.base import Engine
from shared.engines.registry import load_engine
from shared.jobs import JobLimits
from shared.storage.base import AudioStore
from shared.storage.local import LocalAudioStore, load_or_create_secret
from shared.tenants.base import TenantStore
from shared.tenants.sqlite_store import SqliteTenantStore


@dataclass
class WorkerContext:
    settings: Settings
    engine: Engine
    tenants: TenantStore
    storage: AudioStore
    started_at: float = field(default_factory=time.monotonic)

    @property
    def limits(self) -> JobLimits:
        return JobLimits(max_text_chars=self.settings.max_text_chars)

    def close(self) -> None:
        self.tenants.close()


def build_tenant_store(settings: Settings) -> TenantStore:
    return SqliteTenantStore(settings.sqlite_path, cache_ttl_s=settings.auth_cache_ttl_s)


def build_storage(settings: Settings) -> LocalAudioStore:
    secret = (
        settings.url_signing_secret.get_secret_value().encode()
        if settings.url_signing_secret is not None
        else load_or_create_secret(settings.data_dir / "url_signing.key")
    )
    return LocalAudioStore(settings.audio_dir, base_url=settings.public_base_url, secret=secret)


def build_engine(settings: Settings) -> Engine:
    return load_engine(
        settings.engine,
        xtts_model_dir=settings.xtts_model_dir,
        xtts_device=settings.xtts_device,
        xtts_max_audio_tokens=settings.xtts_max_audio_tokens,
        xtts_stream_chunk_tokens=settings.xtts_stream_chunk_tokens,
        xtts_warmup=settings.xtts_warmup,
        piper_model_path=settings.piper_model_path,
    )


def build_worker(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    tenants: TenantStore | None = None,
    storage: AudioStore | None = None,
) -> WorkerContext:
    """Load the engine (the slow part of a cold start) and open the stores."""
    settings = settings or Settings()
    return WorkerContext(
        settings=settings,
        engine=engine or build_engine(settings),
        tenants=tenants or build_tenant_store(settings),
        storage=storage or build_storage(settings),
    )
