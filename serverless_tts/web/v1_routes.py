"""The native v1 API: ``Authorization: Bearer KEY`` on every route but ``/v1/health``.

- ``POST /v1/synthesize``: the audio as the body, or chunked as it is made (``"stream": true``);
- ``POST /v1/synthesize-url``: a signed URL to the audio, with the job's result;
- ``GET /v1/health``;
- ``GET /v1/tenant/usage``: the calling tenant's own daily usage;
- ``POST /v1/ssml/validate``: what a job would make of an SSML document, free of charge.

The voice routes (``/v1/voices...``) are ``v1_voices``'s, on the same helpers. Routes parse,
hand the job to the dispatcher and shape its result; refusals are ``TTSError``s, which the app
renders as ``{"error": {"code", "message"}}`` with the v1 statuses.
"""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPBearer

from handlers.dispatch import JobOutput, authenticate, dispatch
from handlers.health import health
from handlers.stream import AudioStream
from serverless_tts.web.audio_response import AudioStreamResponse
from serverless_tts.web.bearer import bearer_credentials
from serverless_tts.web.json_body import read_json_object, validated
from serverless_tts.web.v1_audio import file_headers, stream_headers
from serverless_tts.web.v1_body import speech_job, take_stream
from serverless_tts.web.v1_models import (
    SpeechBody,
    SsmlBody,
    SsmlCheck,
    SynthesisUrlReply,
    SynthesizeBody,
    UsageReport,
    audio_responses,
    error_responses,
    request_body,
)
from serverless_tts.web.v1_ssml import check_ssml
from serverless_tts.web.v1_usage import usage_range, usage_report
from shared.jobs import HealthResult, SynthesisResult
from shared.worker import WorkerContext

router = APIRouter(prefix="/v1", tags=["v1"])
# Documents the key for the OpenAPI document (and Swagger's Authorize button) only: it refuses
# nothing itself, so every missing or bad key is refused alike, by the dispatcher.
KEY = [Security(HTTPBearer(auto_error=False, description="A tenant API key."))]

# Refusals every keyed route can give: a bad key, an unreachable tenant database, a failure.
KEYED = (401, 500, 503)
# And those of a synthesize job: malformed, out of quota, unknown voice, cannot be spoken as
# asked, over a rate window, a body over TTS_MAX_BODY_BYTES.
SPEECH = (*KEYED, 400, 403, 404, 413, 422, 429)


def _worker(request: Request) -> WorkerContext:
    worker: WorkerContext = request.app.state.worker
    return worker


async def run_job(request: Request, job: dict[str, Any]) -> JobOutput:
    """``job`` through the dispatcher, off the event loop, with the request's Bearer key."""
    return await run_in_threadpool(dispatch, job, bearer_credentials(request), _worker(request))


def audio_reply(output: JobOutput) -> Response:
    """A speech job's audio as the body: chunked for a stream, else the whole file, each with
    the headers that describe it."""
    if isinstance(output, AudioStream):
        info = output.info
        return AudioStreamResponse(
            output, media_type=info.content_type, headers=stream_headers(info)
        )
    assert isinstance(output, SynthesisResult) and output.audio is not None  # base64 delivery
    return Response(output.audio, media_type=output.content_type, headers=file_headers(output))


@router.post(
    "/synthesize",
    response_class=Response,
    dependencies=KEY,
    responses={**audio_responses(), **error_responses(*SPEECH)},
    openapi_extra=request_body(SynthesizeBody),
)
async def synthesize(request: Request) -> Response:
    """Speak the text: the whole file as the body, or with ``"stream": true`` chunked audio as
    the engine makes it (the first bytes come after the first sentence, not the last)."""
    stream, body = take_stream(await read_json_object(request))
    return audio_reply(await run_job(request, speech_job(body, "stream" if stream else "base64")))


@router.post(
    "/synthesize-url",
    response_model=SynthesisUrlReply,
    response_model_exclude_none=True,
    dependencies=KEY,
    responses=error_responses(*SPEECH),
    openapi_extra=request_body(SpeechBody),
)
async def synthesize_url(request: Request) -> SynthesisUrlReply:
    """Speak the text into storage: a signed URL (valid until ``expires_at``) and the result."""
    output = await run_job(request, speech_job(await read_json_object(request), "url"))
    assert isinstance(output, SynthesisResult)
    # Storage failed and the audio came back inline (the result's warning says so).
    inline = None if output.audio is None else base64.b64encode(output.audio).decode("ascii")
    return SynthesisUrlReply(**output.model_dump(), audio_base64=inline)


@router.get("/health")
async def health_route(request: Request) -> HealthResult:
    """No key needed: the engine, its model and how long the worker has been up."""
    return health(_worker(request))


@router.get("/tenant/usage", dependencies=KEY, responses=error_responses(*KEYED, 400))
async def tenant_usage(
    request: Request,
    start_date: Annotated[date | None, Query(description="First UTC day (YYYY-MM-DD).")] = None,
    end_date: Annotated[date | None, Query(description="Last UTC day; default today.")] = None,
) -> UsageReport:
    """The calling tenant's jobs per UTC day, both dates included (by default the last 30
    days), at most 366 days at once. A key only ever sees its own tenant's usage."""
    ctx = _worker(request)
    tenant = await run_in_threadpool(authenticate, bearer_credentials(request), ctx)
    assert tenant is not None  # Bearer credentials name a tenant or are refused
    start, end = usage_range(start_date, end_date, today=datetime.now(UTC).date())
    days = await run_in_threadpool(ctx.tenants.usage_between, tenant.id, start, end)
    return usage_report(tenant.id, start, end, days)


@router.post(
    "/ssml/validate",
    dependencies=KEY,
    responses=error_responses(*KEYED, 400, 413, 422),
    openapi_extra=request_body(SsmlBody),
)
async def validate_ssml(request: Request) -> SsmlCheck:
    """Parse an SSML document as a synthesize job would: 422 ``invalid_ssml`` with the
    parser's message, or what it holds. Nothing is synthesized or charged."""
    raw = await read_json_object(request)
    ctx = _worker(request)
    await run_in_threadpool(authenticate, bearer_credentials(request), ctx)
    body = validated(SsmlBody, raw)
    return await run_in_threadpool(check_ssml, body.ssml, ctx.limits)
