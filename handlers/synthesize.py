"""Synthesize: text or SSML in, audio out as a signed URL, base64, or a stream of chunks.

Everything that can fail for a user (auth, language, voice, format, text) is checked in
``prepare`` before any audio is made, so a stream never opens only to fail on a bad field.
Identical requests are answered from the tenant's audio cache without touching the engine, and
identical requests in flight at once on one worker are synthesized once.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np

from shared.audio.encode import encode, open_stream_encoder, pcm_duration_s, silence
from shared.audio.formats import FORMAT_SPECS, FormatSpec, resolve_sample_rate
from shared.cache import audio_cache
from shared.cache.audio_cache import CacheEntry, CacheSlot
from shared.cache.keys import audio_cache_key
from shared.engines.base import Pcm
from shared.errors import (
    ResultTooLarge,
    StorageUnavailable,
    TextTooLong,
    UnsupportedFormat,
    UnsupportedLanguage,
    VoiceNotFound,
)
from shared.jobs import StageTimings, StreamChunk, SynthesisResult, SynthesizeJob
from shared.storage.base import object_key
from shared.tenants.base import Tenant
from shared.text.plan import PlanItem, Silence, SpeechSegment, plan_ssml, plan_text, spoken_chars
from shared.worker import WorkerContext

_log = logging.getLogger(__name__)

# RunPod keeps each streamed item under 1 MB; base64 adds a third, plus a little JSON.
MAX_STREAM_AUDIO_BYTES = 512 * 1024


@dataclass(frozen=True, slots=True)
class PreparedSynthesis:
    job: SynthesizeJob
    tenant: Tenant
    request_id: str
    voice: str
    spec: FormatSpec
    out_rate: int
    plan: list[PlanItem]
    chars: int
    cache_slot: CacheSlot
    auth_ms: float
    started: float


def prepare(
    job: SynthesizeJob,
    ctx: WorkerContext,
    *,
    tenant: Tenant,
    request_id: str,
    started: float | None = None,
) -> PreparedSynthesis:
    """Check the job against the engine and configuration; ``tenant`` is already authenticated."""
    started = time.perf_counter() if started is None else started
    engine = ctx.engine
    if job.language not in engine.languages:
        supported = ", ".join(sorted(engine.languages))
        raise UnsupportedLanguage(f"{engine.name} speaks {supported}; not {job.language!r}")
    voice = job.voice or engine.default_voice
    if voice not in {known.id for known in engine.voices()}:
        raise VoiceNotFound(f"no voice {voice!r} on engine {engine.name}")
    spec = FORMAT_SPECS[job.format]
    out_rate = resolve_sample_rate(job.format, job.sample_rate, engine.sample_rate)
    if job.delivery == "stream" and not spec.streamable:
        raise UnsupportedFormat(f"{job.format} cannot be streamed; use url or base64 delivery")
    limit = engine.segment_limit(job.language)
    if job.ssml is not None:
        plan = plan_ssml(job.ssml, limit=limit, speed=job.speed)
    else:
        plan = plan_text(job.text or "", limit=limit, speed=job.speed)
    chars = spoken_chars(plan)
    if chars > ctx.settings.max_text_chars:
        raise TextTooLong(
            f"{chars} characters to speak; the limit is {ctx.settings.max_text_chars}"
        )
    cache_key = audio_cache_key(
        engine=engine.name,
        model_version=engine.model_version,
        voice=voice,
        voice_version=None,
        language=job.language,
        speed=job.speed,
        format=job.format,
        sample_rate=out_rate,
        text=_canonical_plan(plan),
    )
    return PreparedSynthesis(
        job=job,
        tenant=tenant,
        request_id=request_id,
        voice=voice,
        spec=spec,
        out_rate=out_rate,
        plan=plan,
        chars=chars,
        cache_slot=CacheSlot.of(tenant.id, engine.name, cache_key, spec.extension),
        auth_ms=0.0,
        started=started,
    )


@dataclass(frozen=True, slots=True)
class EncodedAudio:
    data: bytes
    duration_s: float
    synth_ms: float
    encode_ms: float


@dataclass(frozen=True, slots=True)
class _Delivered:
    """How the audio reaches the caller: a signed URL, or inline base64."""

    size: int
    url: str | None = None
    expires_at: datetime | None = None
    audio_base64: str | None = None
    warning: str | None = None


@dataclass(frozen=True, slots=True)
class _Made:
    """What one synthesis produced and, when it could be stored, where."""

    audio: EncodedAudio
    stored_key: str | None
    store_error: StorageUnavailable | None


def make_audio(prepared: PreparedSynthesis, ctx: WorkerContext) -> EncodedAudio:
    """The whole file in the job's format (what the CLI writes and url/base64 deliver)."""
    engine = ctx.engine
    mark = time.perf_counter()
    pcm = np.concatenate(list(_render(prepared, ctx, stream_first=False)))
    synth_ms = _ms_since(mark)
    mark = time.perf_counter()
    data = encode(
        pcm, in_rate=engine.sample_rate, fmt=prepared.job.format, out_rate=prepared.out_rate
    )
    return EncodedAudio(
        data=data,
        duration_s=round(pcm_duration_s(len(pcm), engine.sample_rate), 3),
        synth_ms=synth_ms,
        encode_ms=_ms_since(mark),
    )


def synthesize(prepared: PreparedSynthesis, ctx: WorkerContext) -> SynthesisResult:
    """Answer from the cache when it can; otherwise make the file (once for identical requests
    in flight) and hand it back inline or as a signed URL."""
    job = prepared.job
    if job.cache:
        entry = audio_cache.lookup(ctx.storage, prepared.cache_slot)
        if entry is not None:
            cached = cached_result(prepared, ctx, entry)
            if cached is not None:
                return cached
        made, ran = ctx.inflight.run(
            prepared.cache_slot.audio_key, lambda: _make_and_store(prepared, ctx)
        )
        return _deliver(prepared, ctx, made, cached=not ran)
    return _deliver(prepared, ctx, _make_and_store(prepared, ctx), cached=False)


def cached_result(
    prepared: PreparedSynthesis, ctx: WorkerContext, entry: CacheEntry
) -> SynthesisResult | None:
    """The job's result from a cache entry, never touching the engine (None: entry unusable)."""
    mark = time.perf_counter()
    # The slot is built from the authenticated tenant's id: a tenant only ever reads its own.
    audio_key = prepared.cache_slot.audio_key
    if prepared.job.delivery == "base64":
        _check_inline_size(entry.bytes, ctx)
        data = _read_or_none(ctx, audio_key)
        if data is None:
            return None
        delivered = _inline(data)
    else:
        delivered = _signed(ctx, audio_key, entry.bytes)
    timings = StageTimings(auth_ms=prepared.auth_ms, deliver_ms=_ms_since(mark))
    return _result(prepared, ctx, entry.duration_s, delivered, timings, cached=True)


def _make_and_store(prepared: PreparedSynthesis, ctx: WorkerContext) -> _Made:
    job = prepared.job
    audio = make_audio(prepared, ctx)
    if not job.cache and job.delivery == "base64":
        return _Made(audio=audio, stored_key=None, store_error=None)
    try:
        if job.cache:
            entry = CacheEntry(duration_s=audio.duration_s, bytes=len(audio.data))
            slot = prepared.cache_slot
            audio_cache.fill(ctx.storage, slot, entry, audio.data, prepared.spec.content_type)
            return _Made(audio=audio, stored_key=slot.audio_key, store_error=None)
        key = object_key(
            prepared.tenant.id, ctx.engine.name, uuid.uuid4().hex, prepared.spec.extension
        )
        ctx.storage.put(key, audio.data, prepared.spec.content_type)
        return _Made(audio=audio, stored_key=key, store_error=None)
    except StorageUnavailable as err:
        _log.warning("storing audio failed for request %s: %s", prepared.request_id, err)
        return _Made(audio=audio, stored_key=None, store_error=err)


def _deliver(
    prepared: PreparedSynthesis, ctx: WorkerContext, made: _Made, *, cached: bool
) -> SynthesisResult:
    mark = time.perf_counter()
    data = made.audio.data
    if prepared.job.delivery == "url" and made.stored_key is not None:
        delivered = _signed(ctx, made.stored_key, len(data))
    elif prepared.job.delivery == "url":
        # Storage failed: small audio still reaches the caller inline; large cannot.
        if len(data) > ctx.settings.max_base64_bytes:
            raise StorageUnavailable(
                f"audio storage is unavailable and {len(data)} bytes are too many to "
                "return inline; retry later"
            ) from made.store_error
        warning = "storage unavailable: audio returned inline as base64 instead of a URL"
        delivered = replace(_inline(data), warning=warning)
    else:
        _check_inline_size(len(data), ctx)
        delivered = _inline(data)
    timings = StageTimings(
        auth_ms=prepared.auth_ms,
        synth_ms=0.0 if cached else made.audio.synth_ms,
        encode_ms=0.0 if cached else made.audio.encode_ms,
        deliver_ms=_ms_since(mark),
    )
    return _result(prepared, ctx, made.audio.duration_s, delivered, timings, cached=cached)


def _signed(ctx: WorkerContext, key: str, size: int) -> _Delivered:
    signed = ctx.storage.sign(key, ctx.settings.url_ttl_s)
    return _Delivered(size=size, url=signed.url, expires_at=signed.expires_at)


def _inline(data: bytes) -> _Delivered:
    return _Delivered(size=len(data), audio_base64=base64.b64encode(data).decode("ascii"))


def _result(
    prepared: PreparedSynthesis,
    ctx: WorkerContext,
    duration_s: float,
    delivered: _Delivered,
    timings: StageTimings,
    *,
    cached: bool,
) -> SynthesisResult:
    job = prepared.job
    timings.total_ms = _ms_since(prepared.started)
    return SynthesisResult(
        request_id=prepared.request_id,
        engine=ctx.engine.name,
        voice=prepared.voice,
        language=job.language,
        format=job.format,
        content_type=prepared.spec.content_type,
        sample_rate=prepared.out_rate,
        duration_s=duration_s,
        bytes=delivered.size,
        delivery="base64" if delivered.audio_base64 is not None else "url",
        url=delivered.url,
        expires_at=delivered.expires_at,
        audio_base64=delivered.audio_base64,
        cached=cached,
        warning=delivered.warning,
        timings=timings,
    )


def stream(prepared: PreparedSynthesis, ctx: WorkerContext) -> Iterator[StreamChunk]:
    """Yield encoded chunks in order, the first as soon as the engine has the first audio.

    A cached file is streamed as it is stored; streams read the cache but do not fill it.
    """
    if prepared.job.cache:
        entry = audio_cache.lookup(ctx.storage, prepared.cache_slot)
        data = None if entry is None else _read_or_none(ctx, prepared.cache_slot.audio_key)
        if entry is not None and data is not None:
            timings = StageTimings(auth_ms=prepared.auth_ms)
            yield from _final_chunks(prepared, 0, data, 0, entry.duration_s, timings, cached=True)
            return
    yield from _stream_synthesized(prepared, ctx)


def _stream_synthesized(prepared: PreparedSynthesis, ctx: WorkerContext) -> Iterator[StreamChunk]:
    job, engine = prepared.job, ctx.engine
    encoder = open_stream_encoder(
        job.format, in_rate=engine.sample_rate, out_rate=prepared.out_rate
    )
    seq = samples = sent = 0
    synth_ms = encode_ms = 0.0
    mark = time.perf_counter()
    for pcm in _render(prepared, ctx, stream_first=True):
        synth_ms += _ms_since(mark)
        encode_mark = time.perf_counter()
        data = encoder.feed(pcm)
        encode_ms += _ms_since(encode_mark)
        samples += len(pcm)
        for part in _pieces(data):
            yield _chunk(prepared, seq, part)
            seq, sent = seq + 1, sent + len(part)
        mark = time.perf_counter()
    encode_mark = time.perf_counter()
    tail = encoder.close()
    encode_ms += _ms_since(encode_mark)
    timings = StageTimings(auth_ms=prepared.auth_ms, synth_ms=synth_ms, encode_ms=encode_ms)
    duration_s = round(pcm_duration_s(samples, engine.sample_rate), 3)
    yield from _final_chunks(prepared, seq, tail, sent, duration_s, timings, cached=False)


def _final_chunks(
    prepared: PreparedSynthesis,
    seq: int,
    tail: bytes,
    sent: int,
    duration_s: float,
    timings: StageTimings,
    *,
    cached: bool,
) -> Iterator[StreamChunk]:
    parts = _pieces(tail) or [b""]
    for index, part in enumerate(parts):
        sent += len(part)
        chunk = _chunk(prepared, seq + index, part)
        if index == len(parts) - 1:
            chunk.final = True
            chunk.cached = cached
            chunk.duration_s = duration_s
            chunk.bytes = sent
            timings.total_ms = _ms_since(prepared.started)
            chunk.timings = timings
        yield chunk


def _render(
    prepared: PreparedSynthesis, ctx: WorkerContext, *, stream_first: bool
) -> Iterator[Pcm]:
    """Audio for each plan item in order. When streaming, the first segment comes from the
    engine's own streaming path (lowest time to first audio); later segments are made whole,
    because XTTS's streaming re-decodes everything so far at each chunk (3-7x the total work)."""
    engine, job = ctx.engine, prepared.job
    first_speech = True
    for item in prepared.plan:
        if isinstance(item, Silence):
            yield silence(item.seconds, engine.sample_rate)
            continue
        assert isinstance(item, SpeechSegment)
        if stream_first and first_speech:
            yield from engine.stream(
                item.text, voice=prepared.voice, language=job.language, speed=item.speed
            )
        else:
            yield engine.synthesize(
                item.text, voice=prepared.voice, language=job.language, speed=item.speed
            )
        first_speech = False


def _canonical_plan(plan: list[PlanItem]) -> str:
    """One string for what will be spoken, however it was asked (text or SSML)."""
    items = [
        ["pause", round(item.seconds, 3)]
        if isinstance(item, Silence)
        else [item.text, round(item.speed, 3)]
        for item in plan
    ]
    return json.dumps(items, ensure_ascii=False, separators=(",", ":"))


def _check_inline_size(size: int, ctx: WorkerContext) -> None:
    if size > ctx.settings.max_base64_bytes:
        raise ResultTooLarge(
            f"{size} bytes of audio exceed the inline limit of "
            f"{ctx.settings.max_base64_bytes}; use url delivery"
        )


def _read_or_none(ctx: WorkerContext, key: str) -> bytes | None:
    try:
        return ctx.storage.get(key)
    except StorageUnavailable as err:
        _log.warning("reading cached audio failed: %s", err)
        return None


def _pieces(data: bytes) -> list[bytes]:
    return [
        data[i : i + MAX_STREAM_AUDIO_BYTES] for i in range(0, len(data), MAX_STREAM_AUDIO_BYTES)
    ]


def _chunk(prepared: PreparedSynthesis, seq: int, data: bytes) -> StreamChunk:
    return StreamChunk(
        request_id=prepared.request_id,
        seq=seq,
        format=prepared.job.format,
        content_type=prepared.spec.content_type,
        sample_rate=prepared.out_rate,
        audio_base64=base64.b64encode(data).decode("ascii"),
    )


def _ms_since(mark: float) -> float:
    return (time.perf_counter() - mark) * 1000.0
