"""Deliver a whole file: from the cache when it can, else synthesize, store and hand it back.

Identical misses in flight at once on one worker are synthesized once (single flight). Storing
can fail without failing the job: a small result then comes back inline with a warning.

An engine that fails (its breaker open, or failing still after its retries) hands the job to the
next engine of its order, prepared anew: that engine's own cache entry is looked up and filled,
never the primary's. The job fails only when no engine is left.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

from handlers.cache_hit import answer_from_cache, check_inline_size
from handlers.prepare import PreparedSpeech, with_failover
from handlers.render import render_whole
from handlers.results import inline, ms_since, result, signed
from shared.audio.encode import encode, pcm_duration_s
from shared.cache import audio_cache
from shared.cache.audio_cache import CacheEntry
from shared.errors import StorageUnavailable
from shared.jobs import StageTimings, SynthesisResult
from shared.storage.base import object_key
from shared.worker import WorkerContext

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EncodedAudio:
    data: bytes
    duration_s: float
    synth_ms: float
    encode_ms: float


@dataclass(frozen=True, slots=True)
class _Made:
    """What one synthesis produced and, when it could be stored, where."""

    audio: EncodedAudio
    stored_key: str | None
    store_error: StorageUnavailable | None


def synthesize(prepared: PreparedSpeech, ctx: WorkerContext) -> SynthesisResult:
    """The job's whole file, as a signed URL or inline bytes, from the first engine of its
    order that speaks it."""
    return with_failover(prepared, ctx, lambda one: _synthesize_on(one, ctx))


def _synthesize_on(prepared: PreparedSpeech, ctx: WorkerContext) -> SynthesisResult:
    slot = prepared.cache_slot
    if slot is None:
        return _deliver(prepared, ctx, _make_and_store(prepared, ctx), cached=False)
    hit = answer_from_cache(prepared, ctx)
    if hit is not None:
        return hit
    made, ran = ctx.inflight.run(slot.audio_key, lambda: _make_and_store(prepared, ctx))
    return _deliver(prepared, ctx, made, cached=not ran)


def make_audio(prepared: PreparedSpeech, ctx: WorkerContext) -> EncodedAudio:
    """The whole file in the job's format, made under the engine's breaker and retries."""
    engine = prepared.engine
    mark = time.perf_counter()
    pcm = ctx.engines.guard(engine.name).run(lambda: render_whole(prepared))
    synth_ms = ms_since(mark)
    mark = time.perf_counter()
    data = encode(
        pcm, in_rate=engine.sample_rate, fmt=prepared.request.format, out_rate=prepared.out_rate
    )
    return EncodedAudio(
        data=data,
        duration_s=round(pcm_duration_s(len(pcm), engine.sample_rate), 3),
        synth_ms=synth_ms,
        encode_ms=ms_since(mark),
    )


def _make_and_store(prepared: PreparedSpeech, ctx: WorkerContext) -> _Made:
    audio = make_audio(prepared, ctx)
    tenant, slot = prepared.tenant, prepared.cache_slot
    if slot is None and prepared.request.delivery == "base64":
        return _Made(audio=audio, stored_key=None, store_error=None)
    assert tenant is not None  # prepare refuses url delivery without a tenant
    started = time.perf_counter()
    try:
        if slot is not None:
            entry = CacheEntry(duration_s=audio.duration_s, bytes=len(audio.data))
            audio_cache.fill(ctx.storage, slot, entry, audio.data, prepared.spec.content_type)
            stored = slot.audio_key
        else:
            stored = object_key(
                tenant.id, prepared.engine.name, uuid.uuid4().hex, prepared.spec.extension
            )
            ctx.storage.put(stored, audio.data, prepared.spec.content_type)
    except StorageUnavailable as err:
        ctx.metrics.storage_upload(time.perf_counter() - started, ok=False)
        _log.warning("storing audio failed for request %s: %s", prepared.request_id, err)
        return _Made(audio=audio, stored_key=None, store_error=err)
    ctx.metrics.storage_upload(time.perf_counter() - started, ok=True)
    return _Made(audio=audio, stored_key=stored, store_error=None)


def _deliver(
    prepared: PreparedSpeech, ctx: WorkerContext, made: _Made, *, cached: bool
) -> SynthesisResult:
    mark = time.perf_counter()
    data = made.audio.data
    if prepared.request.delivery == "url" and made.stored_key is not None:
        delivered = signed(ctx, made.stored_key, len(data))
    elif prepared.request.delivery == "url":
        # Storage failed: small audio still reaches the caller inline; large cannot.
        if len(data) > ctx.settings.max_base64_bytes:
            raise StorageUnavailable(
                f"audio storage is unavailable and {len(data)} bytes are too many to "
                "return inline; retry later"
            ) from made.store_error
        warning = "storage unavailable: audio returned inline as base64 instead of a URL"
        delivered = inline(data, warning)
    else:
        check_inline_size(len(data), ctx)
        delivered = inline(data)
    timings = StageTimings(
        auth_ms=prepared.auth_ms,
        synth_ms=0.0 if cached else made.audio.synth_ms,
        encode_ms=0.0 if cached else made.audio.encode_ms,
        deliver_ms=ms_since(mark),
    )
    return result(prepared, made.audio.duration_s, delivered, timings, cached=cached)
