"""How a whole file reaches the caller, and the result that says so: shared by the cache-hit
path and the synthesis path so both answer in one shape."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from handlers.prepare import PreparedSpeech
from shared.jobs import StageTimings, SynthesisResult
from shared.worker import WorkerContext


@dataclass(frozen=True, slots=True)
class Delivered:
    """A signed URL, or the bytes inline (a transport shapes them: base64, an HTTP body)."""

    size: int
    url: str | None = None
    expires_at: datetime | None = None
    audio: bytes | None = None
    warning: str | None = None


def signed(ctx: WorkerContext, key: str, size: int) -> Delivered:
    url = ctx.storage.sign(key, ctx.settings.url_ttl_s)
    return Delivered(size=size, url=url.url, expires_at=url.expires_at)


def inline(data: bytes, warning: str | None = None) -> Delivered:
    return Delivered(size=len(data), audio=data, warning=warning)


def result(
    prepared: PreparedSpeech,
    duration_s: float,
    delivered: Delivered,
    timings: StageTimings,
    *,
    cached: bool,
) -> SynthesisResult:
    timings.total_ms = ms_since(prepared.started)
    return SynthesisResult(
        **prepared.spoken_as().model_dump(),
        duration_s=duration_s,
        bytes=delivered.size,
        delivery="base64" if delivered.audio is not None else "url",
        url=delivered.url,
        expires_at=delivered.expires_at,
        audio=delivered.audio,
        cached=cached,
        warning=delivered.warning,
        timings=timings,
    )


def ms_since(mark: float) -> float:
    return (time.perf_counter() - mark) * 1000.0
