"""XTTS streams sharing one batched GPT (max_batch > 1) through the real engine runner.

Sampling is greedy (top_k=1), so a request's tokens do not depend on its batch, and each
stream's audio must equal the same text streamed alone by the one-request engine (coqui's own
generator). The tiny checkpoint never stops, so every segment is XTTS_TEST_MAX_AUDIO_TOKENS
tokens. A stream joins the batch at its first step and its first chunk takes FIRST_CHUNK_LATENTS
steps; a render's queue bound of one chunk then parks it mid-segment (its row in the batch) while
the next one steps, so the streams overlap by construction, not by timing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from shared.engines.base import Pcm
from shared.engines.render_stream import RenderStream, Step
from shared.engines.runner import EngineRunner
from shared.engines.xtts import SAMPLING, XttsEngine
from shared.engines.xtts_streams import BatchedStreams, chunk_sizes
from shared.engines.xtts_vocoder import lookahead_latents
from shared.errors import EngineUnavailable
from tests.xtts_checkpoint import (
    SPEAKERS,
    XTTS_TEST_MAX_AUDIO_TOKENS,
    XTTS_TEST_STREAM_CHUNK_TOKENS,
)


@dataclass(frozen=True, slots=True)
class Call:
    text: str
    voice: str
    speed: float


# The tiny checkpoint's greedy tokens barely depend on the text, so the calls differ in voice
# or speed too: every pair's audio differs (checked), and a swap between streams cannot pass.
CALLS = (
    Call("The first caller asks about the weather.", SPEAKERS[0], 1.0),
    Call("A second caller wants to book a table for two.", SPEAKERS[1], 1.0),
    Call("Someone else needs the opening hours.", SPEAKERS[0], 1.25),
    Call("The fourth one says goodbye.", SPEAKERS[1], 1.25),
)
GREEDY = replace(SAMPLING, top_k=1)
# Batched against lone forwards differ by float rounding (latents ~1e-6).
PCM_ATOL = 1e-4
# One token in the first chunk: with the decoder's lookahead (5) it takes 6 steps, so four
# streams started one after another all join before the first one's 24 tokens are done.
FIRST_CHUNK_TOKENS = 1


def _load(directory: Path, max_batch: int, decode_batch: int = 4) -> XttsEngine:
    return XttsEngine.load(
        directory,
        device="cpu",
        max_audio_tokens=XTTS_TEST_MAX_AUDIO_TOKENS,
        stream_chunk_tokens=XTTS_TEST_STREAM_CHUNK_TOKENS,
        stream_first_chunk_tokens=FIRST_CHUNK_TOKENS,
        max_batch=max_batch,
        decode_batch=decode_batch,
        sampling=GREEDY,
        warmup=False,
    )


@pytest.fixture(scope="module")
def solo(tiny_xtts_dir: Path) -> dict[Call, Pcm]:
    """Each call streamed alone by the one-request engine: the reference audio."""
    engine = _load(tiny_xtts_dir, max_batch=1)
    assert not engine.streaming.interleavable
    reference = {call: np.concatenate(list(_stream(engine, call))) for call in CALLS}
    for index, one in enumerate(CALLS):
        for other in CALLS[index + 1 :]:
            a, b = reference[one], reference[other]
            assert a.shape != b.shape or np.abs(a - b).max() > 100 * PCM_ATOL
    return reference


@pytest.fixture(scope="module")
def batched(tiny_xtts_dir: Path) -> XttsEngine:
    engine = _load(tiny_xtts_dir, max_batch=4)
    assert engine.streaming.interleavable
    return engine


@pytest.fixture(scope="module")
def pair(tiny_xtts_dir: Path) -> XttsEngine:
    """Room for two streams only: a third one must wait for a row."""
    return _load(tiny_xtts_dir, max_batch=2)


class BatchSizes:
    """Records how many requests each batched GPT step advanced (the batch's own ``active``),
    and how many streams' chunks each decoder call decoded together."""

    def __init__(self, source: BatchedStreams) -> None:
        self.seen: list[int] = []
        self.decoded: list[int] = []
        batch, vocoder = source.batch, source.vocoder
        step, push = batch.step, vocoder.push

        def counted() -> dict:  # type: ignore[type-arg]
            self.seen.append(batch.active)
            return step()

        def decoded(pushes: list) -> list:  # type: ignore[type-arg]
            self.decoded.append(len(pushes))
            return push(pushes)

        batch.step = counted  # type: ignore[method-assign]
        vocoder.push = decoded  # type: ignore[method-assign]


@contextlib.contextmanager
def recorded(engine: XttsEngine) -> Iterator[BatchSizes]:
    source = engine._batched
    assert source is not None
    recorder = BatchSizes(source)
    try:
        yield recorder
    finally:
        del source.batch.step, source.vocoder.push  # back to the classes' own methods
    assert source.batch.active == 0, "a stream kept its row after it ended"


@pytest.fixture
def sizes(batched: XttsEngine) -> Iterator[BatchSizes]:
    with recorded(batched) as recorder:
        yield recorder


def _stream(engine: XttsEngine, call: Call) -> Iterator[Pcm]:
    return engine.stream(call.text, voice=engine.voice(call.voice), language="en", speed=call.speed)


def _steps(engine: XttsEngine, call: Call) -> Iterator[Step]:
    """A one-segment render, as handlers/render.py plan_steps streams a segment."""
    for pcm in _stream(engine, call):
        yield Step(pcm, boundary=False)
    yield Step(None, last=True)


def _submit(
    runner: EngineRunner, engine: XttsEngine, calls: tuple[Call, ...]
) -> list[RenderStream]:
    return [runner.submit(_steps(engine, call), label=call.text) for call in calls]


def _rest(stream: RenderStream, head: list[Pcm]) -> Pcm:
    return np.concatenate([*head, *stream])


def _started_in_turn(engine: XttsEngine, calls: tuple[Call, ...]) -> list[Pcm]:
    """Each call's audio, every render started (its first chunk read) before any is finished."""
    runner = EngineRunner(engine, queue_chunks=1)
    try:
        streams = _submit(runner, engine, calls)
        # Each render stops after its first chunk (queue bound 1), still in the batch.
        heads = [[next(stream)] for stream in streams]
        return [_rest(stream, head) for stream, head in zip(streams, heads, strict=True)]
    finally:
        runner.close()


def _pushes_alone(engine: XttsEngine) -> int:
    """Decoder calls a lone stream of the test segment makes: one per chunk."""
    sizes = chunk_sizes(engine.stream_first_chunk_tokens, engine.stream_chunk_tokens)
    due, count = next(sizes) + lookahead_latents(engine._model.hifigan_decoder), 1
    while due < XTTS_TEST_MAX_AUDIO_TOKENS:
        due, count = due + next(sizes), count + 1
    return count


def _assert_same(audio: Pcm, expected: Pcm) -> None:
    assert audio.shape == expected.shape
    assert np.abs(audio - expected).max() < PCM_ATOL


def test_concurrent_streams_share_steps_and_each_gets_its_own_audio(
    batched: XttsEngine, solo: dict[Call, Pcm], sizes: BatchSizes
) -> None:
    audio = _started_in_turn(batched, CALLS)
    for call, one in zip(CALLS, audio, strict=True):
        _assert_same(one, solo[call])
    assert max(sizes.seen) == 4
    # Shared steps: far fewer forwards than one per token per stream.
    assert len(sizes.seen) < 4 * XTTS_TEST_MAX_AUDIO_TOKENS
    # Streams that joined steps apart line up their chunks and decode them together (first
    # chunks alone: each caller's first audio waits for no one else's decode).
    assert sizes.decoded[: len(CALLS)] == [1] * len(CALLS)
    assert max(sizes.decoded) >= 3
    assert len(sizes.decoded) < sum(_pushes_alone(batched) for _ in CALLS)


def test_decoder_calls_take_at_most_decode_batch_streams(
    tiny_xtts_dir: Path, solo: dict[Call, Pcm]
) -> None:
    narrow = _load(tiny_xtts_dir, max_batch=4, decode_batch=2)
    with recorded(narrow) as sizes:
        audio = _started_in_turn(narrow, CALLS)
    for call, one in zip(CALLS, audio, strict=True):
        _assert_same(one, solo[call])
    assert max(sizes.seen) == 4
    assert max(sizes.decoded) == 2


def test_a_stream_beyond_a_full_batch_joins_when_a_row_frees(
    pair: XttsEngine, solo: dict[Call, Pcm]
) -> None:
    """Three streams, two rows: the third steps the other two until one ends, then joins."""
    calls = CALLS[:3]
    with recorded(pair) as sizes:
        audio = _started_in_turn(pair, calls)
    for call, one in zip(calls, audio, strict=True):
        _assert_same(one, solo[call])
    assert max(sizes.seen) == pair.max_batch == 2


def test_a_stream_closed_midway_leaves_the_others_intact(
    batched: XttsEngine, solo: dict[Call, Pcm], sizes: BatchSizes
) -> None:
    calls = CALLS[:3]
    runner = EngineRunner(batched, queue_chunks=1)
    try:
        first, dropped, last = _submit(runner, batched, calls)
        heads = [[next(first)], [next(last)]]
        next(dropped)
        dropped.close()
        audio = [_rest(first, heads[0]), _rest(last, heads[1])]
    finally:
        runner.close()
    _assert_same(audio[0], solo[calls[0]])
    _assert_same(audio[1], solo[calls[2]])
    assert max(sizes.seen) == 3


def test_a_stream_that_joins_mid_batch_is_intact(
    batched: XttsEngine, solo: dict[Call, Pcm], sizes: BatchSizes
) -> None:
    runner = EngineRunner(batched, queue_chunks=1)
    try:
        early = _submit(runner, batched, CALLS[:2])
        heads = [[next(stream)] for stream in early]  # both are part-way through their segment
        assert max(sizes.seen) == 2
        (late,) = _submit(runner, batched, CALLS[2:3])
        audio = [_rest(stream, head) for stream, head in zip(early, heads, strict=True)]
        audio.append(np.concatenate(list(late)))
    finally:
        runner.close()
    for call, one in zip(CALLS[:3], audio, strict=True):
        _assert_same(one, solo[call])
    assert max(sizes.seen) == 3


def test_direct_streams_interleave_step_by_step_on_one_thread(
    batched: XttsEngine, solo: dict[Call, Pcm], sizes: BatchSizes
) -> None:
    """Without a runner: the model lock is held per step, not per segment, so two streams
    advanced in turn from one thread neither block each other nor mix their audio."""
    calls = CALLS[:2]
    streams = [_stream(batched, call) for call in calls]
    chunks: list[list[Pcm]] = [[], []]
    live = [0, 1]
    while live:
        for index in list(live):
            pcm = next(streams[index], None)
            if pcm is None:
                live.remove(index)
            else:
                chunks[index].append(pcm)
    for call, parts in zip(calls, chunks, strict=True):
        _assert_same(np.concatenate(parts), solo[call])
    assert max(sizes.seen) == 2


def test_a_failed_shared_decode_fails_every_stream_in_it(batched: XttsEngine) -> None:
    """A decoder call that fails took the chunks of every stream in it: each of them must fail
    with that error, none may play on with a gap."""
    source = batched._batched
    assert source is not None
    push = source.vocoder.push
    shared: list[int] = []

    def breaks_when_shared(pushes: list) -> list:  # type: ignore[type-arg]
        if len(pushes) > 1:
            shared.append(len(pushes))
            raise RuntimeError("the decoder broke")
        return push(pushes)

    source.vocoder.push = breaks_when_shared  # type: ignore[method-assign]
    try:
        streams = [_stream(batched, call) for call in CALLS[:2]]
        errors: dict[int, Exception] = {}
        live = [0, 1]
        while live:
            for index in list(live):
                try:
                    if next(streams[index], None) is None:
                        live.remove(index)
                except EngineUnavailable as exc:
                    errors[index] = exc
                    live.remove(index)
    finally:
        del source.vocoder.push
    assert shared == [2]
    assert sorted(errors) == [0, 1]
    assert all("the decoder broke" in str(error) for error in errors.values())
    assert source.batch.active == 0


def test_a_stream_that_fails_before_it_joins_leaves_no_row_behind(
    batched: XttsEngine, solo: dict[Call, Pcm]
) -> None:
    """A stream whose decoder cannot open (a speaker embedding it cannot use) fails alone:
    it never holds a row, and the stream already running plays to its end unharmed."""
    source = batched._batched
    assert source is not None
    running = _stream(batched, CALLS[0])
    head = [next(running)]

    def refuses(*args: object, **kwargs: object) -> object:
        raise RuntimeError("no decoder row for this speaker")

    source.vocoder.open = refuses  # type: ignore[method-assign]
    try:
        with pytest.raises(EngineUnavailable, match="no decoder row"):
            next(_stream(batched, CALLS[1]))
    finally:
        del source.vocoder.open
    assert source.batch.active == 1
    _assert_same(np.concatenate([*head, *running]), solo[CALLS[0]])
    assert source.batch.active == 0
