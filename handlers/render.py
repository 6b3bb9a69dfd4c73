"""Render: a prepared plan into PCM, on the engine's own thread.

The policy reads the engine's ``StreamingTraits`` instead of knowing any engine's internals:
- a whole file: every segment through ``synthesize`` (the engine's cheapest path);
- a stream: the first segment through ``stream`` when the engine streams incrementally (lowest
  time to first audio), later ones too when streaming is cheap; when it is not (XTTS today costs
  ~2.7x), later segments come whole, made while the caller is still hearing the first.
Silences never touch the model. The steps run on the engine runner, which bounds how far a render
may run ahead of its reader.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from handlers.prepare import PreparedSpeech
from shared.audio.encode import silence
from shared.engines.base import Pcm
from shared.engines.runner import RenderStream, Step
from shared.text.plan import Silence, SpeechSegment


def render_whole(prepared: PreparedSpeech) -> Pcm:
    """All of the plan's audio, concatenated."""
    stream = prepared.runner.submit(
        plan_steps(prepared, streaming=False), label=prepared.request_id
    )
    try:
        pieces = list(stream)
    finally:
        stream.close()
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def render_stream(prepared: PreparedSpeech) -> RenderStream:
    """The plan's audio in order, as soon as the engine has each piece; close to cancel."""
    return prepared.runner.submit(plan_steps(prepared, streaming=True), label=prepared.request_id)


def plan_steps(prepared: PreparedSpeech, *, streaming: bool) -> Iterator[Step]:
    """The engine steps for the plan (run on the engine thread only)."""
    engine, voice, language = prepared.engine, prepared.voice, prepared.request.language
    traits = engine.streaming
    first_speech = True
    for index, item in enumerate(prepared.plan):
        last = index == len(prepared.plan) - 1
        if isinstance(item, Silence):
            yield Step(silence(item.seconds, engine.sample_rate), last=last)
            continue
        assert isinstance(item, SpeechSegment)
        use_stream = streaming and traits.incremental and (first_speech or traits.cheap)
        first_speech = False
        if not use_stream:
            pcm = engine.synthesize(item.text, voice=voice, language=language, speed=item.speed)
            yield Step(pcm, last=last)
            continue
        for pcm in engine.stream(item.text, voice=voice, language=language, speed=item.speed):
            yield Step(pcm, boundary=False)
        # The segment is over: the engine may serve another render now.
        yield Step(None, last=last)
