"""Render: a prepared plan into PCM, on the engine's own thread.

The policy reads the engine's ``StreamingTraits`` instead of knowing any engine's internals:
- a whole file: every segment through ``synthesize`` (the engine's cheapest path);
- a stream: the first segment through ``stream`` when the engine streams incrementally (lowest
  time to first audio), later ones too when streaming is cheap (XTTS streams all: its stream
  costs <= 0.85x a whole segment); an engine whose streaming is not cheap gets later segments
  whole, made while the caller is still hearing the first.
Silences never touch the model; in a stream, silences before the first speech go out with its
first audio, so a stream's first chunk is the engine's own answer (until it comes, a failing
engine can still be failed over: handlers/stream.py). The steps run on the engine's runner,
which bounds how far a render may run ahead of its reader.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from handlers.prepare import PreparedSpeech
from shared.audio.encode import silence
from shared.engines.base import Pcm
from shared.engines.engine_set import Render
from shared.engines.render_stream import Step
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


def render_stream(prepared: PreparedSpeech) -> Render:
    """The plan's audio in order, as soon as the engine has each piece; close to cancel."""
    return prepared.runner.submit(plan_steps(prepared, streaming=True), label=prepared.request_id)


def plan_steps(prepared: PreparedSpeech, *, streaming: bool) -> Iterator[Step]:
    """The engine steps for the plan (run on the engine thread only)."""
    engine, voice, language = prepared.engine, prepared.voice, prepared.request.language
    traits = engine.streaming
    first_speech = True
    leading: list[Pcm] = []  # a stream's silences before its first speech, held for it
    for index, item in enumerate(prepared.plan):
        last = index == len(prepared.plan) - 1
        if isinstance(item, Silence):
            pause = silence(item.seconds, engine.sample_rate)
            if streaming and first_speech and not last:
                leading.append(pause)
                continue
            yield Step(_joined([*leading, pause]), last=last)
            leading = []
            continue
        assert isinstance(item, SpeechSegment)
        use_stream = streaming and traits.incremental and (first_speech or traits.cheap)
        first_speech = False
        if not use_stream:
            pcm = engine.synthesize(item.text, voice=voice, language=language, speed=item.speed)
            yield Step(_joined([*leading, pcm]), last=last)
            leading = []
            continue
        for pcm in engine.stream(item.text, voice=voice, language=language, speed=item.speed):
            yield Step(_joined([*leading, pcm]), boundary=False)
            leading = []
        # The segment is over: the engine may serve another render now.
        yield Step(_joined(leading) if leading else None, last=last)
        leading = []


def _joined(pieces: list[Pcm]) -> Pcm:
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
