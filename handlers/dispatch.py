"""The one way every entry point runs a job: validate, check everything up front, then produce
JSON-ready items (one result, or the chunks of a stream), logging one event per job.

``start_job`` raises ``TTSError`` for anything wrong before the first item; an error while a
stream is under way is raised from the iterator. Entry points only translate these to their
platform's shapes.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from handlers import greetings
from handlers import synthesize as synth
from handlers.health import health
from handlers.voices import list_voices
from shared.errors import InternalError, TTSError
from shared.jobs import (
    GreetingsGetJob,
    GreetingsWarmJob,
    GreetingsWarmResult,
    HealthJob,
    Job,
    SynthesizeJob,
    VoicesJob,
    dump,
    parse_job,
)
from shared.telemetry import JobEvent, log_job_event, usage_record
from shared.worker import WorkerContext

JobItem = dict[str, Any]
_log = logging.getLogger(__name__)


def start_job(raw: object, ctx: WorkerContext, *, job_id: str | None = None) -> Iterator[JobItem]:
    """Validate and prepare ``raw`` now; return the iterator that produces its output."""
    started = time.perf_counter()
    event = JobEvent(action="synthesize", success=False)
    try:
        job = parse_job(raw, ctx.limits)
        event.action = job.action
        event.request_id = job.request_id or job_id or uuid.uuid4().hex
        items = _start(job, ctx, event, started)
    except TTSError as err:
        _finish(ctx, event, started, err)
        raise
    except Exception as exc:
        _finish(ctx, event, started, exc)
        raise InternalError("the worker failed to start this job") from exc
    return _logged(items, ctx, event, started)


def run_job(raw: object, ctx: WorkerContext, *, job_id: str | None = None) -> list[JobItem]:
    """All of a job's items at once (for callers that wait for the whole result)."""
    return list(start_job(raw, ctx, job_id=job_id))


def _start(job: Job, ctx: WorkerContext, event: JobEvent, started: float) -> Iterator[JobItem]:
    # Every job kind is authenticated, here and only here.
    api_key = job.api_key.get_secret_value()
    auth_started = time.perf_counter()
    tenant = ctx.tenants.authenticate(api_key)
    auth_ms = (time.perf_counter() - auth_started) * 1000.0
    event.tenant_id = tenant.id
    if isinstance(job, HealthJob):
        return iter([dump(health(ctx))])
    if isinstance(job, VoicesJob):
        return iter([dump(list_voices(ctx))])
    assert event.request_id is not None
    if isinstance(job, GreetingsGetJob):
        result = greetings.get(job, ctx, tenant=tenant, request_id=event.request_id)
        return iter([dump(result)])
    if isinstance(job, GreetingsWarmJob):
        phrases = greetings.prepare_phrases(job, ctx, tenant=tenant, request_id=event.request_id)
        ctx.tenants.authorize(api_key, sum(one.chars for one in phrases))
        _describe_speech(event, phrases, ctx)
        return _warmed(job, phrases, ctx, event)
    assert isinstance(job, SynthesizeJob)
    prepared = synth.prepare(job, ctx, tenant=tenant, request_id=event.request_id, started=started)
    # Limits and quota are charged only for a job that is otherwise fit to run.
    authorize_started = time.perf_counter()
    ctx.tenants.authorize(api_key, prepared.chars)
    auth_ms += (time.perf_counter() - authorize_started) * 1000.0
    prepared = replace(prepared, auth_ms=auth_ms)
    _describe_speech(event, [prepared], ctx)
    if job.delivery == "stream":
        return _streamed(prepared, ctx, event)
    return _whole(prepared, ctx, event)


def _describe_speech(
    event: JobEvent, prepared: list[synth.PreparedSynthesis], ctx: WorkerContext
) -> None:
    """What the job will speak, for its log event and usage row."""
    first = prepared[0]
    event.engine = ctx.engine.name
    event.voice = first.voice
    event.language = first.job.language
    event.format = first.job.format.value
    event.delivery = first.job.delivery
    event.streaming = first.job.delivery == "stream"
    event.chars = sum(one.chars for one in prepared)


def _warmed(
    job: GreetingsWarmJob,
    phrases: list[synth.PreparedSynthesis],
    ctx: WorkerContext,
    event: JobEvent,
) -> Iterator[JobItem]:
    entries = greetings.warm(job, phrases, ctx)
    event.audio_bytes = sum(entry.bytes for entry in entries)
    event.audio_s = round(sum(entry.duration_s for entry in entries), 3)
    event.cached = all(entry.cached for entry in entries)
    yield dump(
        GreetingsWarmResult(engine=ctx.engine.name, voice=phrases[0].voice, greetings=entries)
    )


def _whole(
    prepared: synth.PreparedSynthesis, ctx: WorkerContext, event: JobEvent
) -> Iterator[JobItem]:
    result = synth.synthesize(prepared, ctx)
    event.audio_s = result.duration_s
    event.audio_bytes = result.bytes
    event.cached = result.cached
    yield dump(result)


def _streamed(
    prepared: synth.PreparedSynthesis, ctx: WorkerContext, event: JobEvent
) -> Iterator[JobItem]:
    for chunk in synth.stream(prepared, ctx):
        if chunk.final:
            event.audio_s = chunk.duration_s or 0.0
            event.audio_bytes = chunk.bytes or 0
            event.cached = bool(chunk.cached)
        yield dump(chunk)


def _logged(
    items: Iterator[JobItem], ctx: WorkerContext, event: JobEvent, started: float
) -> Iterator[JobItem]:
    try:
        yield from items
    except TTSError as err:
        _finish(ctx, event, started, err)
        raise
    except GeneratorExit:
        _finish(ctx, event, started, InternalError("the client stopped reading the stream"))
        raise
    except Exception as exc:
        _finish(ctx, event, started, exc)
        raise InternalError("the worker failed while running this job") from exc
    _finish(ctx, event, started, None)


def _finish(
    ctx: WorkerContext, event: JobEvent, started: float, error: BaseException | None
) -> None:
    """Log the job's event and, for an authenticated tenant, queue its usage row."""
    event.latency_ms = round((time.perf_counter() - started) * 1000.0, 3)
    event.success = error is None
    if isinstance(error, TTSError):
        event.error_code = error.code.value
    elif error is not None:
        event.error_code = "internal"
        _log.error("job %s failed unexpectedly", event.request_id, exc_info=error)
    log_job_event(event)
    if event.tenant_id is not None and event.request_id is not None:
        ctx.usage.record(usage_record(event))
