"""Greetings: a business's fixed phrases, synthesized ahead of time into the audio cache so a
call can play them the instant it comes in.

``warm`` runs each phrase through the same path as any synthesize job (so later synthesize jobs
with the same settings hit these entries too, and a phrase a fallback engine spoke is cached
under that engine's key); ``get`` only looks in the cache, in the tenant's engine order: the
first engine that has the phrase cached answers, and the result's ``fallback_reason`` says why
an engine before it did not. A cache hit calls no engine, so breakers do not matter here: the
primary's own copy answers even while its breaker is open, and a fallback's copy answers only
when the primary (and each engine before it) has none.
"""

from __future__ import annotations

from collections.abc import Callable

from handlers import deliver
from handlers.cache_hit import answer_from_cache
from handlers.prepare import PreparedSpeech, SpeechRequest, prepare, with_failover
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
    return with_failover(prepared, ctx, lambda one: _cached(one, ctx), moves_on=NotCached)


class NotCached(NotFound):
    """This engine has no cached copy of the greeting: the next engine's cache may."""

    reason = "not_cached"


def _cached(prepared: PreparedSpeech, ctx: WorkerContext) -> SynthesisResult:
    result = answer_from_cache(prepared, ctx)
    if result is None:
        raise NotCached("no warmed greeting with this text and these settings; warm it first")
    return result


def _require_tenant(tenant: Tenant | None) -> None:
    if tenant is None:
        raise InvalidInput("greetings belong to a tenant: name one")
