"""Synthesize: text or SSML in, audio out as a signed URL, base64, or a stream of chunks.

Everything that can fail for a user (auth, language, voice, format, text) is checked in
``prepare`` before any audio is made, so a stream never opens only to fail on a bad field.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from shared.audio.encode import encode, open_stream_encoder, silence
from shared.audio.formats import FORMAT_SPECS, FormatSpec, resolve_sample_rate
from shared.engines.base import Pcm
from shared.errors import (
    ResultTooLarge,
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
    return PreparedSynthesis(
        job=job,
        tenant=tenant,
        request_id=request_id,
        voice=voice,
        spec=spec,
        out_rate=out_rate,
        plan=plan,
        chars=chars,
        auth_ms=0.0,
        started=started,
    )


@dataclass(frozen=True, slots=True)
class EncodedAudio:
    data: bytes
    duration_s: float
    synth_ms: float
    encode_ms: float


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
        duration_s=round(len(pcm) / engine.sample_rate, 3),
        synth_ms=synth_ms,
        encode_ms=_ms_since(mark),
    )


def synthesize(prepared: PreparedSynthesis, ctx: WorkerContext) -> SynthesisResult:
    """Make the whole file, then hand it back inline or as a signed URL."""
    job, engine = prepared.job, ctx.engine
    audio = make_audio(prepared, ctx)
    data = audio.data
    mark = time.perf_counter()
    url = expires_at = audio_base64 = None
    if job.delivery == "base64":
        if len(data) > ctx.settings.max_base64_bytes:
            raise ResultTooLarge(
                f"{len(data)} bytes of audio exceed the inline limit of "
                f"{ctx.settings.max_base64_bytes}; use url delivery"
            )
        audio_base64 = base64.b64encode(data).decode("ascii")
    else:
        key = object_key(prepared.tenant.id, engine.name, uuid.uuid4().hex, prepared.spec.extension)
        ctx.storage.put(key, data, prepared.spec.content_type)
        signed = ctx.storage.sign(key, ctx.settings.url_ttl_s)
        url, expires_at = signed.url, signed.expires_at
    deliver_ms = _ms_since(mark)

    return SynthesisResult(
        request_id=prepared.request_id,
        engine=engine.name,
        voice=prepared.voice,
        language=job.language,
        format=job.format,
        content_type=prepared.spec.content_type,
        sample_rate=prepared.out_rate,
        duration_s=audio.duration_s,
        bytes=len(data),
        delivery="base64" if job.delivery == "base64" else "url",
        url=url,
        expires_at=expires_at,
        audio_base64=audio_base64,
        timings=StageTimings(
            auth_ms=round(prepared.auth_ms, 3),
            synth_ms=round(audio.synth_ms, 3),
            encode_ms=round(audio.encode_ms, 3),
            deliver_ms=round(deliver_ms, 3),
            total_ms=round(_ms_since(prepared.started), 3),
        ),
    )


def stream(prepared: PreparedSynthesis, ctx: WorkerContext) -> Iterator[StreamChunk]:
    """Yield encoded chunks in order, the first as soon as the engine has the first audio."""
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
    parts = _pieces(tail) or [b""]
    for index, part in enumerate(parts):
        final = index == len(parts) - 1
        sent += len(part)
        chunk = _chunk(prepared, seq, part)
        if final:
            chunk.final = True
            chunk.duration_s = round(samples / engine.sample_rate, 3)
            chunk.bytes = sent
            chunk.timings = StageTimings(
                auth_ms=round(prepared.auth_ms, 3),
                synth_ms=round(synth_ms, 3),
                encode_ms=round(encode_ms, 3),
                total_ms=round(_ms_since(prepared.started), 3),
            )
        yield chunk
        seq += 1


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
