"""Stream: encoded audio chunks in order, the first as soon as the engine has the first audio.

The engine renders on its own thread; this side encodes and hands chunks on, so however slowly
the caller reads, the engine serves other jobs meanwhile. Closing the stream (or dropping it)
cancels its render. A cached file is replayed as it is stored; streams read the cache but do
not fill it. Chunks carry raw bytes: splitting and base64 are the transport's business.

A stream speaks with the first engine of its order whose breaker admits it (the stream's outcome
counts on that breaker); it cannot switch engines once open, since its start already named the
engine and voice, so a failure part way fails the stream as it would with one engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from handlers.cache_hit import cached_stream_audio
from handlers.prepare import PreparedSpeech, prepare_fallback
from handlers.render import render_stream
from handlers.results import ms_since
from shared.audio.encode import StreamEncoder, open_stream_encoder, pcm_duration_s
from shared.engines.failover import CircuitOpen, EngineGuard, engine_failure
from shared.engines.runner import RenderStream
from shared.jobs import AudioChunk, SpokenAs, StageTimings, StreamSummary
from shared.worker import WorkerContext


class AudioStream:
    """A job's audio as it is made: ``info`` up front, then ``AudioChunk``s; the last one has
    the summary. Iterate it once, from one thread; ``close`` may come from any thread (a client
    gone, a platform cancelling) and cancels the render at once: the reader then stops without
    a summary and the job is logged as cancelled."""

    def __init__(
        self,
        info: SpokenAs,
        chunks: Iterator[AudioChunk],
        cancel: Callable[[], None] = lambda: None,
    ) -> None:
        self.info = info
        self._chunks = chunks
        self._cancel = cancel

    def __iter__(self) -> Iterator[AudioChunk]:
        return self._chunks

    def close(self) -> None:
        self._cancel()

    def wrapped(self, chunks: Iterator[AudioChunk], cancel: Callable[[], None]) -> AudioStream:
        """The same stream read through ``chunks``, closed through ``cancel``."""
        return AudioStream(self.info, chunks, cancel)


def open_stream(prepared: PreparedSpeech, ctx: WorkerContext) -> AudioStream:
    """The stream, already under way: the encoder is open and the render queued, so the engine
    starts at once and anything that can fail here fails before the first chunk."""
    replay = _replay(prepared, ctx)
    if replay is not None:
        return replay
    admitted = _admitted(prepared, ctx)
    if admitted is not prepared:
        replay = _replay(admitted, ctx)
        if replay is not None:
            return replay
    request, engine = admitted.request, admitted.engine
    encoder = open_stream_encoder(
        request.format, in_rate=engine.sample_rate, out_rate=admitted.out_rate
    )
    render = render_stream(admitted)
    guard = ctx.engines.guard(engine.name)
    chunks = _synthesized(admitted, encoder, render, guard)
    return AudioStream(admitted.spoken_as(), chunks, render.close)


def _replay(prepared: PreparedSpeech, ctx: WorkerContext) -> AudioStream | None:
    cached = cached_stream_audio(prepared, ctx)
    if cached is None:
        return None
    entry, data = cached
    timings = StageTimings(auth_ms=prepared.auth_ms)
    last = _summary(prepared, len(data), entry.duration_s, timings, cached=True)
    return AudioStream(prepared.spoken_as(), iter([AudioChunk(data, last)]))


def _admitted(prepared: PreparedSpeech, ctx: WorkerContext) -> PreparedSpeech:
    """The job on the first engine of its order whose breaker lets a call through; the last
    engine's ``CircuitOpen`` when none does."""
    while True:
        guard = ctx.engines.guard(prepared.engine.name)
        if guard.admits():
            return prepared
        skipped = CircuitOpen(f"the {guard.name} engine is failing: skipped while it recovers")
        fallback = prepare_fallback(prepared, ctx, skipped)
        if fallback is None:
            raise skipped
        ctx.metrics.fallback(prepared.engine.name, fallback.engine.name, CircuitOpen.reason)
        prepared = fallback


def _synthesized(
    prepared: PreparedSpeech, encoder: StreamEncoder, render: RenderStream, guard: EngineGuard
) -> Iterator[AudioChunk]:
    samples = sent = 0
    synth_ms = encode_ms = 0.0
    try:
        mark = time.perf_counter()
        for pcm in render:
            synth_ms += ms_since(mark)
            encode_mark = time.perf_counter()
            data = encoder.feed(pcm)
            encode_ms += ms_since(encode_mark)
            samples += len(pcm)
            if data:
                sent += len(data)
                yield AudioChunk(data)
            mark = time.perf_counter()
    except Exception as exc:
        if engine_failure(exc):
            guard.record(exc)
        raise
    finally:
        render.close()
    guard.record(None)
    encode_mark = time.perf_counter()
    tail = encoder.close()
    encode_ms += ms_since(encode_mark)
    timings = StageTimings(auth_ms=prepared.auth_ms, synth_ms=synth_ms, encode_ms=encode_ms)
    duration_s = round(pcm_duration_s(samples, prepared.engine.sample_rate), 3)
    yield AudioChunk(tail, _summary(prepared, sent + len(tail), duration_s, timings, cached=False))


def _summary(
    prepared: PreparedSpeech,
    size: int,
    duration_s: float,
    timings: StageTimings,
    *,
    cached: bool,
) -> StreamSummary:
    timings.total_ms = ms_since(prepared.started)
    return StreamSummary(
        **prepared.spoken_as().model_dump(),
        duration_s=duration_s,
        bytes=size,
        cached=cached,
        timings=timings,
    )
