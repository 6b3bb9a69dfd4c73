"""The cache-hit path: a job answered from the tenant's audio cache, never touching the engine.

A hit is one small sidecar read plus a presign (url) or one object read (base64, streams). Any
trouble reading an entry makes it a miss, so the job falls through to synthesis.
"""

from __future__ import annotations

import logging
import time
from typing import TypeVar

from handlers.prepare import PreparedSpeech
from handlers.results import inline, ms_since, result, signed
from shared.cache import audio_cache
from shared.cache.audio_cache import CacheEntry
from shared.errors import ResultTooLarge, StorageUnavailable
from shared.jobs import StageTimings, SynthesisResult
from shared.worker import WorkerContext

_log = logging.getLogger(__name__)
T = TypeVar("T")


def answer_from_cache(prepared: PreparedSpeech, ctx: WorkerContext) -> SynthesisResult | None:
    """The job's result from its cache entry; None on a miss."""
    entry = _entry(prepared, ctx)
    found = None if entry is None else result_from_entry(prepared, ctx, entry)
    return _counted(prepared, ctx, found)


def result_from_entry(
    prepared: PreparedSpeech, ctx: WorkerContext, entry: CacheEntry
) -> SynthesisResult | None:
    """A result for ``entry`` (None: its audio is unreadable)."""
    assert prepared.cache_slot is not None
    mark = time.perf_counter()
    # The slot is built from the authenticated tenant's id: a tenant only ever reads its own.
    audio_key = prepared.cache_slot.audio_key
    if prepared.request.delivery == "base64":
        check_inline_size(entry.bytes, ctx)
        data = read_or_none(ctx, audio_key)
        if data is None:
            return None
        delivered = inline(data)
    else:
        delivered = signed(ctx, audio_key, entry.bytes)
    timings = StageTimings(auth_ms=prepared.auth_ms, deliver_ms=ms_since(mark))
    return result(prepared, entry.duration_s, delivered, timings, cached=True)


def cached_stream_audio(
    prepared: PreparedSpeech, ctx: WorkerContext
) -> tuple[CacheEntry, bytes] | None:
    """A cached file to replay as a stream, or None on a miss."""
    entry = _entry(prepared, ctx)
    found = None
    if entry is not None:
        assert prepared.cache_slot is not None
        data = read_or_none(ctx, prepared.cache_slot.audio_key)
        found = None if data is None else (entry, data)
    return _counted(prepared, ctx, found)


def check_inline_size(size: int, ctx: WorkerContext) -> None:
    if size > ctx.settings.max_base64_bytes:
        raise ResultTooLarge(
            f"{size} bytes of audio exceed the inline limit of "
            f"{ctx.settings.max_base64_bytes}; use url delivery"
        )


def read_or_none(ctx: WorkerContext, key: str) -> bytes | None:
    try:
        return ctx.storage.get(key)
    except StorageUnavailable as err:
        _log.warning("reading cached audio failed: %s", err)
        return None


def _counted(prepared: PreparedSpeech, ctx: WorkerContext, found: T | None) -> T | None:
    """``found``, counted as a hit or a miss (unreadable audio is a miss: the job synthesizes);
    a job that does not use the cache is not counted."""
    if prepared.cache_slot is not None:
        ctx.metrics.cache_lookup(prepared.engine.name, hit=found is not None)
    return found


def _entry(prepared: PreparedSpeech, ctx: WorkerContext) -> CacheEntry | None:
    if prepared.cache_slot is None:
        return None
    return audio_cache.lookup(ctx.storage, prepared.cache_slot)
