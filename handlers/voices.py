"""List the voices a tenant can ask for on this worker's engine."""

from __future__ import annotations

from shared.jobs import VoiceEntry, VoicesResult
from shared.tenants.base import Tenant
from shared.worker import WorkerContext


def list_voices(ctx: WorkerContext, tenant: Tenant | None) -> VoicesResult:
    engine = ctx.engines.default.engine
    return VoicesResult(
        engine=engine.name,
        default_voice=engine.default_voice,
        voices=[
            VoiceEntry(
                id=voice.id,
                name=voice.name,
                engine=voice.engine,
                version=voice.version,
                language=voice.language,
            )
            for voice in ctx.voices.available(tenant, engine)
        ],
    )
