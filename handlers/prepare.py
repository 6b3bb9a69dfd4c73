"""Prepare: everything that can fail for a user is checked here, before any audio is made.

A job's speech request (from a synthesize job or a greeting phrase) is checked against the chosen
engine and the configuration: language, voice (resolved for the tenant, with its version and the
engine's conditioning), format and rate, text length. The result says exactly what will be spoken
and where its audio lives in the tenant's cache, so a stream never opens only to fail on a field.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from shared.audio.formats import FORMAT_SPECS, AudioFormat, FormatSpec, resolve_sample_rate
from shared.cache.audio_cache import CacheSlot
from shared.cache.keys import audio_cache_key
from shared.engines.base import Engine, Voice
from shared.engines.runner import EngineRunner
from shared.errors import InvalidInput, TextTooLong, UnsupportedFormat
from shared.jobs import (
    Delivery,
    GreetingsGetJob,
    GreetingsWarmJob,
    SpeechSettings,
    SpokenAs,
    SynthesizeJob,
)
from shared.tenants.base import Tenant
from shared.text.plan import PlanItem, Silence, plan_ssml, plan_text, spoken_chars
from shared.worker import WorkerContext


@dataclass(frozen=True, slots=True)
class SpeechRequest:
    """What to speak and how, whichever job asked for it."""

    text: str | None
    ssml: str | None
    voice: str | None
    language: str
    speed: float
    format: AudioFormat
    sample_rate: int | None
    delivery: Delivery
    cache: bool

    @classmethod
    def of(cls, job: SynthesizeJob) -> SpeechRequest:
        return cls._spoken_as(
            job, text=job.text, ssml=job.ssml, delivery=job.delivery, cache=job.cache
        )

    @classmethod
    def phrase(cls, job: GreetingsWarmJob | GreetingsGetJob, text: str) -> SpeechRequest:
        """A greeting phrase: always cached, delivered as a URL (it was validated with its job,
        so it is not validated again here)."""
        return cls._spoken_as(job, text=text, ssml=None, delivery="url", cache=True)

    @classmethod
    def _spoken_as(
        cls,
        job: SpeechSettings,
        *,
        text: str | None,
        ssml: str | None,
        delivery: Delivery,
        cache: bool,
    ) -> SpeechRequest:
        return cls(
            text=text,
            ssml=ssml,
            voice=job.voice,
            language=job.language,
            speed=job.speed,
            format=job.format,
            sample_rate=job.sample_rate,
            delivery=delivery,
            cache=cache,
        )


@dataclass(frozen=True, slots=True)
class PreparedSpeech:
    """A request checked against an engine; ``tenant`` None is the operator's tenant-free run.
    ``cache_slot`` is where the tenant's cached copy lives, None when the job does not use the
    cache (``cache: false``, or no tenant to hold it)."""

    request: SpeechRequest
    tenant: Tenant | None
    request_id: str
    runner: EngineRunner
    voice: Voice
    spec: FormatSpec
    out_rate: int
    plan: list[PlanItem]
    chars: int
    cache_slot: CacheSlot | None
    started: float
    auth_ms: float = 0.0

    @property
    def engine(self) -> Engine:
        return self.runner.engine

    def spoken_as(self) -> SpokenAs:
        return SpokenAs(
            request_id=self.request_id,
            engine=self.engine.name,
            voice=self.voice.id,
            voice_version=self.voice.version,
            language=self.request.language,
            format=self.request.format,
            content_type=self.spec.content_type,
            sample_rate=self.out_rate,
        )


def prepare(
    request: SpeechRequest,
    ctx: WorkerContext,
    *,
    tenant: Tenant | None,
    request_id: str,
    started: float | None = None,
) -> PreparedSpeech:
    """Check ``request`` for ``tenant`` (already authenticated) on the worker's engine."""
    started = time.perf_counter() if started is None else started
    runner = ctx.engines.default  # per-tenant engine orders will choose here
    engine = runner.engine
    limit = engine.segment_limit(request.language)  # the one language check
    voice = ctx.voices.resolve(tenant, engine, request.voice)
    spec = FORMAT_SPECS[request.format]
    out_rate = resolve_sample_rate(request.format, request.sample_rate, engine.sample_rate)
    if request.delivery == "stream" and not spec.streamable:
        raise UnsupportedFormat(f"{request.format} cannot be streamed; use url or base64 delivery")
    if tenant is None and request.delivery == "url":
        raise InvalidInput("a run without a tenant has nowhere to store audio: use base64")
    if request.ssml is not None:
        plan = plan_ssml(request.ssml, limit=limit, speed=request.speed)
    else:
        plan = plan_text(request.text or "", limit=limit, speed=request.speed)
    chars = spoken_chars(plan)
    if chars > ctx.settings.max_text_chars:
        raise TextTooLong(
            f"{chars} characters to speak; the limit is {ctx.settings.max_text_chars}"
        )
    slot = None
    if tenant is not None and request.cache:
        cache_key = audio_cache_key(
            engine=engine.name,
            model_version=engine.model_version,
            voice=voice.id,
            voice_version=voice.version,
            language=request.language,
            speed=request.speed,
            format=request.format,
            sample_rate=out_rate,
            text=_canonical_plan(plan),
        )
        slot = CacheSlot.of(tenant.id, engine.name, cache_key, spec.extension)
    return PreparedSpeech(
        request=request,
        tenant=tenant,
        request_id=request_id,
        runner=runner,
        voice=voice,
        spec=spec,
        out_rate=out_rate,
        plan=plan,
        chars=chars,
        cache_slot=slot,
        started=started,
    )


def _canonical_plan(plan: list[PlanItem]) -> str:
    """One string for what will be spoken, however it was asked (text or SSML)."""
    items = [
        ["pause", round(item.seconds, 3)]
        if isinstance(item, Silence)
        else [item.text, round(item.speed, 3)]
        for item in plan
    ]
    return json.dumps(items, ensure_ascii=False, separators=(",", ":"))
