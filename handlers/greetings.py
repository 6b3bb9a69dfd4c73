"""Greetings: a business's fixed phrases, synthesized ahead of time into the audio cache so a
call can play them the instant it comes in.

``warm`` runs each phrase through the same synthesize path as any job (so later synthesize jobs
with the same settings hit these entries too); ``get`` only looks in the cache.
"""

from __future__ import annotations

from handlers import synthesize as synth
from shared.cache import audio_cache
from shared.errors import NotFound
from shared.jobs import (
    GreetingEntry,
    GreetingsGetJob,
    GreetingsWarmJob,
    SynthesisResult,
    SynthesizeJob,
)
from shared.tenants.base import Tenant
from shared.worker import WorkerContext


def prepare_phrases(
    job: GreetingsWarmJob, ctx: WorkerContext, *, tenant: Tenant, request_id: str
) -> list[synth.PreparedSynthesis]:
    """Every phrase checked up front, so a bad one fails the job before any audio is made."""
    return [
        synth.prepare(
            _as_synthesis(job, phrase), ctx, tenant=tenant, request_id=f"{request_id}.{n}"
        )
        for n, phrase in enumerate(job.phrases)
    ]


def warm(
    job: GreetingsWarmJob, prepared: list[synth.PreparedSynthesis], ctx: WorkerContext
) -> list[GreetingEntry]:
    entries = []
    for phrase, one in zip(job.phrases, prepared, strict=True):
        result = synth.synthesize(one, ctx)
        entries.append(
            GreetingEntry(
                text=phrase,
                cached=result.cached,
                url=result.url,
                expires_at=result.expires_at,
                bytes=result.bytes,
                duration_s=result.duration_s,
            )
        )
    return entries


def get(
    job: GreetingsGetJob, ctx: WorkerContext, *, tenant: Tenant, request_id: str
) -> SynthesisResult:
    prepared = synth.prepare(
        _as_synthesis(job, job.text), ctx, tenant=tenant, request_id=request_id
    )
    entry = audio_cache.lookup(ctx.storage, prepared.cache_slot)
    result = None if entry is None else synth.cached_result(prepared, ctx, entry)
    if result is None:
        raise NotFound("no warmed greeting with this text and these settings; warm it first")
    return result


def _as_synthesis(job: GreetingsWarmJob | GreetingsGetJob, text: str) -> SynthesizeJob:
    return SynthesizeJob(
        api_key=job.api_key,
        request_id=job.request_id,
        text=text,
        voice=job.voice,
        language=job.language,
        speed=job.speed,
        format=job.format,
        sample_rate=job.sample_rate,
        delivery="url",
    )
