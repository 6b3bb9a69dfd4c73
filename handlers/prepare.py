"""Prepare: everything that can fail for a user is checked here, before any audio is made.

A job's speech request (from a synthesize job or a greeting phrase) is checked against the primary
engine of its order (the tenant's, else the worker's) and the configuration: language, voice
(resolved for the tenant, with its version and the engine's conditioning), format and rate, text
length. The result says exactly what will be spoken and where its audio lives in the tenant's
cache, so a stream never opens only to fail on a field. The caller's own mistakes are judged on
the primary only: they never fail over.

An engine that can say up front what it will refuse (a vendor: its speeds, voices that speak one
language) is asked here too (``CheckingEngine``), so such a job is refused before it is charged.
Other engines take every speed of the job contract, and their voices speak every language the
engine does (XTTS speaks a cloned voice in any of its languages, whatever the reference's was).

When an engine fails before the job's audio starts, ``prepare_fallback`` prepares the same request
on the next engine of the order that speaks its language, keyed in the cache under that engine's
own name, model and voice, so its audio never answers a later job of the primary;
``with_failover`` runs a stage on each engine in turn until one answers.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar, runtime_checkable

from shared.audio.formats import FORMAT_SPECS, AudioFormat, FormatSpec, resolve_sample_rate
from shared.cache.audio_cache import CacheSlot
from shared.cache.keys import audio_cache_key
from shared.engines.base import Engine, Voice
from shared.engines.engine_set import Runner
from shared.engines.failover import failure_cause
from shared.errors import (
    EngineUnavailable,
    InvalidInput,
    TextTooLong,
    TTSError,
    UnsupportedByEngine,
    UnsupportedFormat,
    VoiceNotFound,
)
from shared.jobs import (
    Delivery,
    GreetingsGetJob,
    GreetingsWarmJob,
    SpeechSettings,
    SpokenAs,
    SynthesizeJob,
)
from shared.tenants.base import Tenant
from shared.text.plan import PlanItem, Silence, SpeechSegment, plan_ssml, plan_text, spoken_chars
from shared.worker import WorkerContext

MAX_REASON_CHARS = 200
T = TypeVar("T")
_log = logging.getLogger(__name__)


@runtime_checkable
class CheckingEngine(Protocol):
    """An engine that refuses, with no call made, what it cannot speak (vendor engines)."""

    def check(self, *, voice: Voice, language: str, speed: float) -> None: ...


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
    runner: Runner
    voice: Voice
    spec: FormatSpec
    out_rate: int
    plan: list[PlanItem]
    chars: int
    cache_slot: CacheSlot | None
    started: float
    auth_ms: float = 0.0
    # The engines to try next, in order, should this one fail before its audio starts.
    fallbacks: tuple[str, ...] = ()
    # Why this engine speaks rather than the primary of the order (None: it is the primary).
    fallback_reason: str | None = None

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
            fallback_reason=self.fallback_reason,
        )


def prepare(
    request: SpeechRequest,
    ctx: WorkerContext,
    *,
    tenant: Tenant | None,
    request_id: str,
    started: float | None = None,
) -> PreparedSpeech:
    """Check ``request`` for ``tenant`` (already authenticated) on the primary of its order."""
    started = time.perf_counter() if started is None else started
    order = ctx.engines.order(tenant.engine_order if tenant is not None else None)
    runner = ctx.engines.runner(order[0])
    runner.engine.segment_limit(request.language)  # the language, checked before the voice
    voice = ctx.voices.resolve(tenant, runner.engine, request.voice)
    speech = _Speech(request, tenant, request_id, started)
    return _checked(speech, ctx, runner, voice, fallbacks=tuple(order[1:]), reason=None)


def prepare_fallback(
    prepared: PreparedSpeech, ctx: WorkerContext, failure: BaseException
) -> PreparedSpeech | None:
    """The job on the next engine left in its order that speaks its language (in the job's
    voice if that engine has it, else in its default voice, and the reason says so); None when
    no engine is left. ``failure`` is why ``prepared``'s engine could not speak it."""
    request = prepared.request
    reason = _joined(prepared.fallback_reason, f"{prepared.engine.name}: {failure_cause(failure)}")
    speech = _Speech(request, prepared.tenant, prepared.request_id, prepared.started)
    for index, name in enumerate(prepared.fallbacks):
        runner = ctx.engines.runner(name)
        rest = prepared.fallbacks[index + 1 :]
        try:
            voice, note = _fallback_voice(ctx, prepared.tenant, runner.engine, request.voice)
            fallback = _checked(
                speech, ctx, runner, voice, fallbacks=rest, reason=_joined(reason, note)
            )
        except TTSError:  # this engine cannot speak the request at all: the next one may
            continue
        return replace(fallback, auth_ms=prepared.auth_ms)
    return None


def with_failover(
    prepared: PreparedSpeech,
    ctx: WorkerContext,
    attempt: Callable[[PreparedSpeech], T],
    *,
    moves_on: type[Exception] = EngineUnavailable,
) -> T:
    """``attempt`` on the job's engine, then on each engine left in its order in turn while
    one raises ``moves_on`` (an engine failing before the job's audio starts); each fallback
    is logged and counted. The last engine's error when none answers."""
    while True:
        try:
            return attempt(prepared)
        except moves_on as failure:
            fallback = prepare_fallback(prepared, ctx, failure)
            if fallback is None:
                raise
            _log.warning(
                "request %s: %s could not answer, %s answers instead (%s)",
                prepared.request_id,
                prepared.engine.name,
                fallback.engine.name,
                failure,
            )
            ctx.metrics.fallback(prepared.engine.name, fallback.engine.name, failure_cause(failure))
            prepared = fallback


@dataclass(frozen=True, slots=True)
class _Speech:
    request: SpeechRequest
    tenant: Tenant | None
    request_id: str
    started: float


def _checked(
    speech: _Speech,
    ctx: WorkerContext,
    runner: Runner,
    voice: Voice,
    *,
    fallbacks: tuple[str, ...],
    reason: str | None,
) -> PreparedSpeech:
    request, tenant, engine = speech.request, speech.tenant, runner.engine
    limit = engine.segment_limit(request.language)  # the one language check
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
    if isinstance(engine, CheckingEngine):
        for speed in sorted({item.speed for item in plan if isinstance(item, SpeechSegment)}):
            engine.check(voice=voice, language=request.language, speed=speed)
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
        request_id=speech.request_id,
        runner=runner,
        voice=voice,
        spec=spec,
        out_rate=out_rate,
        plan=plan,
        chars=chars,
        cache_slot=slot,
        started=speech.started,
        fallbacks=fallbacks,
        fallback_reason=reason,
    )


def _fallback_voice(
    ctx: WorkerContext, tenant: Tenant | None, engine: Engine, voice_id: str | None
) -> tuple[Voice, str | None]:
    """A voice id names one engine's voice: another engine speaks it if it has it, else with
    its own default voice (and a note saying so)."""
    try:
        return ctx.voices.resolve(tenant, engine, voice_id), None
    except (VoiceNotFound, UnsupportedByEngine):
        default = ctx.voices.resolve(tenant, engine, None)
        return default, f"{engine.name} has no voice {voice_id}: spoke {default.id}"


def _joined(reason: str | None, more: str | None) -> str | None:
    """Reasons chained in the order they happened, bounded (a usage row keeps 200 chars)."""
    parts = [part for part in (reason, more) if part]
    return "; ".join(parts)[:MAX_REASON_CHARS] if parts else None


def _canonical_plan(plan: list[PlanItem]) -> str:
    """One string for what will be spoken, however it was asked (text or SSML)."""
    items = [
        ["pause", round(item.seconds, 3)]
        if isinstance(item, Silence)
        else [item.text, round(item.speed, 3)]
        for item in plan
    ]
    return json.dumps(items, ensure_ascii=False, separators=(",", ":"))
