"""XttsEngine.stream: each latent decoded once, first audio early, every segment streamed.

The test checkpoint never stops, so every segment is exactly XTTS_TEST_MAX_AUDIO_TOKENS (24)
GPT tokens; the engine streams in chunks of XTTS_TEST_STREAM_CHUNK_TOKENS (8), the first of
DEFAULT_FIRST_CHUNK_TOKENS (4) once the decoder's lookahead has arrived too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch

from handlers.prepare import SpeechRequest, prepare
from handlers.render import plan_steps
from shared.engines.base import Engine
from shared.engines.render_stream import Step
from shared.engines.xtts import DEFAULT_FIRST_CHUNK_TOKENS, XttsEngine
from shared.engines.xtts_latents import gpt_latents, text_tokens
from shared.engines.xtts_streams import chunk_sizes
from shared.engines.xtts_vocoder import lookahead_latents
from shared.jobs import SynthesizeJob, parse_job
from shared.text.plan import Silence, SpeechSegment
from shared.worker import WorkerContext
from tests.xtts_checkpoint import XTTS_TEST_MAX_AUDIO_TOKENS, XTTS_TEST_STREAM_CHUNK_TOKENS

SAMPLES_PER_TOKEN = 1024 * 24000 / 22050
TOLERANCE = 1e-5  # as tests/shared/test_xtts_vocoder.py: float rounding only


def _xtts(engine: Engine) -> XttsEngine:
    assert isinstance(engine, XttsEngine)
    return engine


def _expected_chunks(engine: XttsEngine, tokens: int) -> int:
    """Pushes the stream loop makes for a segment of ``tokens``: the first after its size plus
    the lookahead, then one per (doubling) chunk, the last at the end of the segment."""
    sizes = chunk_sizes(engine.stream_first_chunk_tokens, engine.stream_chunk_tokens)
    due, count = next(sizes) + lookahead_latents(engine._model.hifigan_decoder), 1
    while due < tokens:
        due, count = due + next(sizes), count + 1
    return count


def test_chunks_grow_from_the_first_chunk_to_the_chunk_size() -> None:
    sizes = chunk_sizes(4, 20)
    assert [next(sizes) for _ in range(6)] == [4, 8, 16, 20, 20, 20]
    assert next(chunk_sizes(30, 20)) == 20


def test_stream_is_the_whole_decode_of_its_own_latents(xtts_engine: Engine) -> None:
    """Same seed, same sampling: the latents GPT makes for the stream, decoded in one piece by
    coqui's HiFi-GAN, give the samples the stream yielded, chunk boundaries included."""
    engine = _xtts(xtts_engine)
    voice = engine.voice(engine.default_voice)
    text = "Streaming equals the whole decode."
    torch.manual_seed(11)
    chunks = list(engine.stream(text, voice=voice, language="en", speed=1.0))
    torch.manual_seed(11)
    model, conditioning = engine._model, voice.conditioning
    with torch.inference_mode():
        tokens = text_tokens(model, text, "en")
        source = gpt_latents(model, tokens, conditioning.gpt_cond_latent, engine._sampling)  # type: ignore[attr-defined]
        latents = torch.cat(list(source))[None]
        whole = model.hifigan_decoder(latents, g=conditioning.speaker_embedding).reshape(-1)  # type: ignore[attr-defined]
    whole = np.clip(whole.numpy(), -1, 1)
    assert latents.shape[1] == XTTS_TEST_MAX_AUDIO_TOKENS
    assert len(chunks) == _expected_chunks(engine, XTTS_TEST_MAX_AUDIO_TOKENS) >= 3
    streamed = np.concatenate(chunks)
    assert streamed.shape == whole.shape
    assert np.abs(streamed - whole).max() < TOLERANCE


def test_first_chunk_holds_the_first_chunk_tokens_of_audio(xtts_engine: Engine) -> None:
    engine = _xtts(xtts_engine)
    assert engine.stream_first_chunk_tokens == DEFAULT_FIRST_CHUNK_TOKENS
    assert engine.stream_chunk_tokens == XTTS_TEST_STREAM_CHUNK_TOKENS
    voice = engine.voice(engine.default_voice)
    stream = engine.stream("First audio early.", voice=voice, language="en", speed=1.0)
    try:
        first = next(stream)
    finally:
        stream.close()  # type: ignore[attr-defined]
    assert first.size >= DEFAULT_FIRST_CHUNK_TOKENS * SAMPLES_PER_TOKEN
    # ...and no more than the lookahead behind what GPT had made when it was cut.
    made = DEFAULT_FIRST_CHUNK_TOKENS + lookahead_latents(engine._model.hifigan_decoder)
    assert first.size <= made * SAMPLES_PER_TOKEN


def test_streaming_is_cheap_so_every_segment_streams(xtts_engine: Engine) -> None:
    assert xtts_engine.streaming.cheap
    assert xtts_engine.streaming.incremental


def test_every_segment_of_a_text_streams_in_chunks_as_it_is_made(
    make_worker: Callable[[Engine], WorkerContext], xtts_engine: Engine
) -> None:
    """Through the render policy, on the engine's own thread: each segment's audio arrives as
    several chunks (the stream loop's count), not as one whole segment."""
    ctx = make_worker(xtts_engine)
    text = "The first sentence is here. A second one follows it. And then a third one."
    job = parse_job({"text": text, "delivery": "stream"}, ctx.limits)
    assert isinstance(job, SynthesizeJob)
    prepared = prepare(SpeechRequest.of(job), ctx, tenant=None, request_id="segments")
    segments = [item for item in prepared.plan if isinstance(item, SpeechSegment)]
    assert len(segments) == 3
    assert not any(isinstance(item, Silence) for item in prepared.plan)  # audio steps: speech
    steps: list[Step] = []

    def recorded() -> Iterator[Step]:
        for step in plan_steps(prepared, streaming=True):
            steps.append(step)  # on the engine thread, in the order the engine made them
            yield step

    stream = prepared.runner.submit(recorded(), label="segments")
    try:
        audio = list(stream)
    finally:
        stream.close()
    per_segment: list[int] = [0]
    for step in steps:
        if step.pcm is not None:
            assert not step.boundary, "a segment came whole, not streamed"
            per_segment[-1] += 1
        elif step.boundary:
            per_segment.append(0)
    per_segment = [count for count in per_segment if count]
    expected = _expected_chunks(_xtts(xtts_engine), XTTS_TEST_MAX_AUDIO_TOKENS)
    assert per_segment == [expected] * len(segments)
    assert len(audio) == expected * len(segments)
    assert sum(chunk.size for chunk in audio) == pytest.approx(
        len(segments) * XTTS_TEST_MAX_AUDIO_TOKENS * SAMPLES_PER_TOKEN, rel=0.02
    )
