"""Greetings: a business's fixed phrases, synthesized ahead of time into the audio cache so a
call can play them the instant it comes in.

``warm`` runs each phrase through the same path as any synthesize job (so later synthesize jobs
with the same settings hit these entries too); ``get`` only looks in the cache.
"""

from __future__ import annotations

from collections.abc import Callable

from handlers import deliver
from handlers.cache_hit import answer_from_cache
from handlers.prepare import PreparedSpeech, SpeechRequest, prepare
from shared.errors import InvalidInput, NotFound
from shared.jobs import GreetingEntry, GreetingsGetJob, GreetingsWarmJob, SynthesisResult
from shared.tenants.base import Tenant
from shared.worker import WorkerContext


def prepare_phrases(
    job: GreetingsWarmJob, ctx: WorkerContext, *, tenant: Tenant | None, request_id: str
) -> list[PreparedSpeech]:
    """Every phrase checked up front, so a bad one fails the job before any audio is made."""
    _require_tenant(tenant)
    return [
        prepare(
            SpeechRequest.phrase(job, phrase), ctx, tenant=tenant, request_id=f"{request_id}.{n}"
        )
        for n, phrase in enumerate(job.phrases)
    ]


def warm(
    job: GreetingsWarmJob,
    prepared: list[PreparedSpeech],
    ctx: WorkerContext,
    progress: Callable[[GreetingEntry], None] | None = None,
) -> list[GreetingEntry]:
    entries = []
    for phrase, one in zip(job.phrases, prepared, strict=True):
        result = deliver.synthesize(one, ctx)
        entry = GreetingEntry(
            text=phrase,
            cached=result.cached,
            url=result.url,
            expires_at=result.expires_at,
            bytes=result.bytes,
            duration_s=result.duration_s,
        )
        entries.append(entry)
        if progress is not None:
            progress(entry)
    return entries


def get(
    job: GreetingsGetJob, ctx: WorkerContext, *, tenant: Tenant | None, request_id: str
) -> SynthesisResult:
    _require_tenant(tenant)
    prepared = prepare(
        SpeechRequest.phrase(job, job.text), ctx, tenant=tenant, request_id=request_id
    )
    result = answer_from_cache(prepared, ctx)
    if result is None:
        raise NotFound("no warmed greeting with this text and these settings; warm it first")
    return result


def _require_tenant(tenant: Tenant | None) -> None:
    if tenant is None:
        raise InvalidInput("greetings belong to a tenant: name one")
