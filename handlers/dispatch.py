"""The one way every entry point runs a job: authenticate the credentials its transport carried,
validate the job, check everything up front, charge only a job fit to run, run it, and log one
event (and, for a tenant, one usage row) per job, counting it in the worker's metrics. Every job
is counted in the worker's lifecycle, so a shutdown can refuse new ones and drain the rest.

``dispatch`` returns a typed value: a result model, or an ``AudioStream`` whose chunks carry raw
bytes. It raises ``TTSError`` for anything wrong before the first chunk; an error while a stream
is under way is raised from its iterator. Entry points only translate these to their transport's
shapes (base64 items for RunPod, bodies for HTTP, files for the CLI).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import NoReturn

from handlers import deliver, greetings, voices
from handlers.health import health
from handlers.prepare import PreparedSpeech, SpeechRequest, prepare
from handlers.results import ms_since
from handlers.stream import AudioStream, open_stream
from shared.engines import device_faults
from shared.engines.render_stream import RenderCancelled
from shared.errors import DeviceError, InternalError, TTSError
from shared.jobs import (
    ApiKeyCredentials,
    AudioChunk,
    Credentials,
    GreetingEntry,
    GreetingsGetJob,
    GreetingsWarmJob,
    GreetingsWarmResult,
    HealthJob,
    HealthResult,
    Job,
    SpokenAs,
    SynthesisResult,
    SynthesizeJob,
    VoiceDeleted,
    VoiceEntry,
    VoicesCreateJob,
    VoicesDeleteJob,
    VoicesGetJob,
    VoicesJob,
    VoicesPreviewJob,
    VoicesResult,
    VoicesUpdateJob,
    asked_action,
    parse_job,
)
from shared.telemetry import JobEvent, log_job_event, usage_record
from shared.tenants.base import Tenant
from shared.voices.preview import preview_text
from shared.worker import WorkerContext

JobOutput = (
    SynthesisResult
    | VoicesResult
    | VoiceEntry
    | VoiceDeleted
    | HealthResult
    | GreetingsWarmResult
    | AudioStream
)
Progress = Callable[[GreetingEntry], None]
_log = logging.getLogger(__name__)
# A stream closed by its reader before the end: not an error of the job, but not a success.
CANCELLED = "cancelled"


def authenticate(credentials: Credentials, ctx: WorkerContext) -> Tenant | None:
    """The tenant the credentials name (None: the operator's tenant-free run); ``Unauthorized``
    otherwise. Transports that queue jobs call it at submit, so no keyless job is ever queued."""
    if isinstance(credentials, ApiKeyCredentials):
        return ctx.tenants.authenticate(credentials.key())
    if credentials.tenant_id is None:
        return None
    return ctx.tenants.get_tenant(credentials.tenant_id)


def dispatch(
    raw: object,
    credentials: Credentials,
    ctx: WorkerContext,
    *,
    job_id: str | None = None,
    progress: Progress | None = None,
) -> JobOutput:
    """Run one job; ``job_id`` is the platform's id, used as the request id when the job has
    none of its own; ``progress`` hears of each greeting as it is ready (a CLI's bar)."""
    started = time.perf_counter()
    event = JobEvent(
        action=asked_action(raw),
        job_id=uuid.uuid4().hex,
        operator=not isinstance(credentials, ApiKeyCredentials),
        success=False,
    )
    event.request_id = job_id or event.job_id
    ctx.metrics.job_started()
    try:
        ctx.lifecycle.admit()
        auth_started = time.perf_counter()
        tenant = authenticate(credentials, ctx)
        auth_ms = ms_since(auth_started)
        event.tenant_id = tenant.id if tenant is not None else None
        job = parse_job(raw, ctx.limits)
        event.request_id = job.request_id or event.request_id
        output = _run(job, tenant, ctx, event, started, auth_ms, progress)
    except Exception as exc:
        failed = _classified(ctx, exc)
        _finish(ctx, event, started, failed)
        _raise_as(failed, exc, "the worker failed to start this job")
    except BaseException:  # KeyboardInterrupt mid-job: a charged job still leaves its row
        _finish(ctx, event, started, CANCELLED)
        raise
    if isinstance(output, AudioStream):
        logged = _LoggedChunks(output, ctx, event, started)
        return output.wrapped(logged, logged.close)
    _finish(ctx, event, started, None)
    return output


def _run(
    job: Job,
    tenant: Tenant | None,
    ctx: WorkerContext,
    event: JobEvent,
    started: float,
    auth_ms: float,
    progress: Progress | None,
) -> JobOutput:
    if isinstance(job, HealthJob):
        return health(ctx)
    if isinstance(job, VoicesJob):
        _charge(ctx, tenant, 0)
        return voices.list_voices(ctx, tenant)
    if isinstance(job, VoicesCreateJob):
        # Charged inside, once the reference has been checked.
        return voices.create_voice(job, ctx, voices.needs_tenant(tenant), event)
    if isinstance(job, VoicesGetJob | VoicesUpdateJob | VoicesDeleteJob):
        owner = voices.needs_tenant(tenant)
        _charge(ctx, owner, 0)
        return _VOICE_OPERATIONS[type(job)](job, ctx, owner, event)  # type: ignore[operator]
    assert event.request_id is not None
    if isinstance(job, VoicesPreviewJob):
        request = _preview(job, ctx, tenant)
        return _speak(request, job.delivery, ctx, tenant, event, started, auth_ms)
    if isinstance(job, GreetingsGetJob):
        return greetings.get(job, ctx, tenant=tenant, request_id=event.request_id)
    if isinstance(job, GreetingsWarmJob):
        phrases = greetings.prepare_phrases(job, ctx, tenant=tenant, request_id=event.request_id)
        _charge(ctx, tenant, sum(one.chars for one in phrases))
        _describe(event, phrases)
        entries = greetings.warm(job, phrases, ctx, progress)
        event.audio_bytes = sum(entry.bytes for entry in entries)
        event.audio_s = round(sum(entry.duration_s for entry in entries), 3)
        event.cached = all(entry.cached for entry in entries)
        first = phrases[0]
        return GreetingsWarmResult(
            engine=first.engine.name,
            voice=first.voice.id,
            voice_version=first.voice.version,
            greetings=entries,
        )
    assert isinstance(job, SynthesizeJob)
    return _speak(SpeechRequest.of(job), job.delivery, ctx, tenant, event, started, auth_ms)


_VOICE_OPERATIONS = {
    VoicesGetJob: voices.get_voice,
    VoicesUpdateJob: voices.update_voice,
    VoicesDeleteJob: voices.delete_voice,
}


def _speak(
    request: SpeechRequest,
    delivery: str,
    ctx: WorkerContext,
    tenant: Tenant | None,
    event: JobEvent,
    started: float,
    auth_ms: float,
) -> SynthesisResult | AudioStream:
    assert event.request_id is not None
    prepared = prepare(request, ctx, tenant=tenant, request_id=event.request_id, started=started)
    # Limits and quota are charged only for a job that is otherwise fit to run.
    charge_started = time.perf_counter()
    _charge(ctx, tenant, prepared.chars)
    prepared = replace(prepared, auth_ms=auth_ms + ms_since(charge_started))
    _describe(event, [prepared])
    if delivery == "stream":
        stream = open_stream(prepared, ctx)
        _answered(event, stream.info)
        return stream
    result = deliver.synthesize(prepared, ctx)
    _answered(event, result)
    event.audio_s = result.duration_s
    event.audio_bytes = result.bytes
    event.cached = result.cached
    return result


def _preview(job: VoicesPreviewJob, ctx: WorkerContext, tenant: Tenant | None) -> SpeechRequest:
    """A preview is a synthesize job in the voice, in its own language unless the job names
    one, saying the job's text or the language's preview sentence; cached like any other."""
    owner = voices.needs_tenant(tenant)
    language = job.language
    if "language" not in job.model_fields_set:
        engine = ctx.engines.default.engine
        language = voices.voice_language(ctx, engine, owner, job.voice_id) or job.language
    return SpeechRequest(
        text=job.text or preview_text(language),
        ssml=None,
        voice=job.voice_id,
        language=language,
        speed=job.speed,
        format=job.format,
        sample_rate=job.sample_rate,
        delivery=job.delivery,
        cache=True,
    )


def _charge(ctx: WorkerContext, tenant: Tenant | None, chars: int) -> None:
    if tenant is not None:
        ctx.tenants.authorize(tenant.id, chars)


def _describe(event: JobEvent, prepared: list[PreparedSpeech]) -> None:
    """What the job will speak, for its log event and usage row (set once it is charged)."""
    first = prepared[0]
    event.engine = first.engine.name
    event.voice = first.voice.id
    event.voice_version = first.voice.version
    event.language = first.request.language
    event.format = first.request.format.value
    event.delivery = first.request.delivery
    event.streaming = first.request.delivery == "stream"
    event.chars = sum(one.chars for one in prepared)


def _answered(event: JobEvent, spoken: SpokenAs) -> None:
    """The engine and voice that spoke, and why, when it was not the order's primary."""
    event.engine = spoken.engine
    event.voice = spoken.voice
    event.voice_version = spoken.voice_version
    event.fallback_reason = spoken.fallback_reason


class _LoggedChunks:
    """A stream's chunks, logged exactly once when the stream ends, fails or is closed (from
    any thread), or is dropped unread: a charged job always leaves its usage row. Its time to
    first audio is measured here, where its bytes leave the pipeline for the transport."""

    def __init__(
        self, stream: AudioStream, ctx: WorkerContext, event: JobEvent, started: float
    ) -> None:
        self._chunks = iter(stream)
        self._stream, self._ctx, self._event, self._started = stream, ctx, event, started
        self._open = True
        self._heard = False
        self._ending = threading.Lock()
        ctx.metrics.stream_opened()

    def __iter__(self) -> _LoggedChunks:
        return self

    def __next__(self) -> AudioChunk:
        if not self._open:
            raise StopIteration
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self._end(None)
            raise
        except RenderCancelled:
            self._end(CANCELLED)
            raise StopIteration from None
        except Exception as exc:
            failed = _classified(self._ctx, exc)
            self._end(failed)
            _raise_as(failed, exc, "the worker failed while running this job")
        except BaseException:  # KeyboardInterrupt, SystemExit: still one event and one row
            self._end(CANCELLED)
            raise
        summary = chunk.summary
        if chunk.data and not self._heard:
            self._heard = True
            seconds = time.perf_counter() - self._started
            cached = summary is not None and summary.cached
            self._ctx.metrics.first_audio(self._event, seconds, cached=cached)
        if summary is not None:
            self._event.audio_s = summary.duration_s
            self._event.audio_bytes = summary.bytes
            self._event.cached = summary.cached
        return chunk

    def close(self) -> None:
        if self._open:
            self._stream.close()
            self._end(CANCELLED)

    def __del__(self) -> None:
        self.close()

    def _end(self, error: BaseException | str | None) -> None:
        with self._ending:
            if not self._open:
                return
            self._open = False
        self._ctx.metrics.stream_closed()
        _finish(self._ctx, self._event, self._started, error)


def _classified(ctx: WorkerContext, error: Exception) -> Exception:
    """An engine failure that surfaced outside its runner (a cloned voice's latents, an
    engine wrapper) told as the device fault it is; a device error marks the worker untrusted."""
    classified = device_faults.translate(error)
    if isinstance(classified, DeviceError):
        ctx.lifecycle.fail(classified.message)
    assert isinstance(classified, Exception)
    return classified


def _raise_as(failed: Exception, raised: Exception, internal: str) -> NoReturn:
    """Raise what a job's failure means to its caller: its ``TTSError`` (the one raised, or
    the device fault it was classified as), else ``InternalError`` with ``internal``."""
    if failed is raised and isinstance(raised, TTSError):
        raise raised
    if isinstance(failed, TTSError):
        raise failed from raised
    raise InternalError(internal) from raised


def _finish(
    ctx: WorkerContext, event: JobEvent, started: float, error: BaseException | str | None
) -> None:
    """Log the job's event, count it in the worker's metrics and, for a tenant, queue its
    usage row; then the job leaves the lifecycle's count (after its row is queued, so a
    drained worker has every row to flush)."""
    try:
        _log_and_count(ctx, event, started, error)
    finally:
        ctx.lifecycle.release()


def _log_and_count(
    ctx: WorkerContext, event: JobEvent, started: float, error: BaseException | str | None
) -> None:
    event.latency_ms = round(ms_since(started), 3)
    event.success = error is None
    if isinstance(error, str):
        event.error_code = error
    elif isinstance(error, TTSError):
        event.error_code = error.code.value
    elif error is not None:
        event.error_code = "internal"
        _log.error("job %s failed unexpectedly", event.job_id, exc_info=error)
    log_job_event(event)
    ctx.metrics.job_finished(event)
    if event.tenant_id is not None:
        ctx.usage.record(usage_record(event))
