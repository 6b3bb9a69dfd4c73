"""Stream: encoded audio chunks in order, the first as soon as the engine has the first audio.

The engine renders on its runner; this side encodes and hands chunks on, so however slowly the
caller reads, the engine serves other jobs meanwhile. Closing the stream (or dropping it)
cancels its render. A cached file is replayed as it is stored; streams read the cache but do
not fill it. Chunks carry raw bytes: splitting and base64 are the transport's business.

Failover, as for a whole file, up to the engine's first audio: the stream opens once its engine
has answered, so an engine that fails before that (its breaker open, a connection refused, a
5xx, a 429, a timeout), after the retries its guard allows, hands the stream to the next engine
of the order, and the stream's start names the engine that answered and why. Once audio is in
hand the stream is that engine's: a failure part way ends it with the error, since the caller
may already have heard the first engine's voice.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator

from handlers.cache_hit import cached_stream_audio
from handlers.prepare import PreparedSpeech, with_failover
from handlers.render import render_stream
from handlers.results import ms_since
from shared.audio.encode import StreamEncoder, open_stream_encoder, pcm_duration_s
from shared.engines.base import Pcm
from shared.engines.engine_set import Render
from shared.engines.failover import EngineGuard, engine_failure
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
    """The stream, its first audio in hand (or a cached file): anything that can fail before
    the first chunk has failed here, on every engine of the order, or has been failed over."""
    return with_failover(prepared, ctx, lambda one: _open_on(one, ctx))


def _open_on(prepared: PreparedSpeech, ctx: WorkerContext) -> AudioStream:
    replay = _replay(prepared, ctx)
    if replay is not None:
        return replay
    engine = prepared.engine
    guard = ctx.engines.guard(engine.name)
    mark = time.perf_counter()
    # Under the guard, as a whole file's render is: its breaker, its retries, its probe.
    render, first = guard.run(lambda: _first_audio(prepared))
    first_ms = ms_since(mark)
    try:
        encoder = open_stream_encoder(
            prepared.request.format, in_rate=engine.sample_rate, out_rate=prepared.out_rate
        )
    except BaseException:
        render.close()
        raise
    chunks = _synthesized(prepared, encoder, render, first, first_ms, guard)
    return AudioStream(prepared.spoken_as(), chunks, render.close)


def _first_audio(prepared: PreparedSpeech) -> tuple[Render, Pcm | None]:
    """The render, started, and its first audio (None: it made none)."""
    render = render_stream(prepared)
    try:
        return render, next(render, None)
    except BaseException:
        render.close()
        raise


def _replay(prepared: PreparedSpeech, ctx: WorkerContext) -> AudioStream | None:
    cached = cached_stream_audio(prepared, ctx)
    if cached is None:
        return None
    entry, data = cached
    timings = StageTimings(auth_ms=prepared.auth_ms)
    last = _summary(prepared, len(data), entry.duration_s, timings, cached=True)
    return AudioStream(prepared.spoken_as(), iter([AudioChunk(data, last)]))


def _synthesized(
    prepared: PreparedSpeech,
    encoder: StreamEncoder,
    render: Render,
    first: Pcm | None,
    first_ms: float,
    guard: EngineGuard,
) -> Iterator[AudioChunk]:
    """The encoded chunks; the first audio's success is already on the guard, so only a
    failure part way is counted there."""
    samples = sent = 0
    synth_ms, encode_ms = first_ms, 0.0
    try:
        mark = time.perf_counter()
        for pcm in itertools.chain([] if first is None else [first], render):
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
