"""OpenAI-compatible speech: ``POST /v1/audio/speech``, for the official SDKs pointed at this
app (``base_url=".../v1"``) and anything else written against OpenAI's API.

Unlike OpenAI-compatible XTTS servers, the Bearer key is checked: it is the tenant's API key,
charged and rate limited like every other job. The body becomes a synthesize job for the one
dispatcher; the reply is the audio (streamed as it is made where the format allows) or, with
``stream_format: "sse"``, Server-Sent Events. Refusals come in OpenAI's error shape with its
``param``, at the statuses the SDK maps to its exceptions (``serverless_tts.web.errors``).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from handlers.dispatch import dispatch
from handlers.stream import AudioStream
from serverless_tts.web import openai_sse
from serverless_tts.web.audio_response import AudioStreamResponse
from serverless_tts.web.bearer import bearer_credentials
from serverless_tts.web.errors import error_reply
from serverless_tts.web.openai_job import param_for, speech_job
from serverless_tts.web.openai_request import OPENAPI_BODY, SpeechBody, read_speech_body
from serverless_tts.web.v1_audio import stream_headers
from shared.errors import InternalError, TTSError
from shared.jobs import SynthesisResult
from shared.worker import WorkerContext

router = APIRouter()
_SSE = {"Cache-Control": "no-cache"}  # events are for this request only, never a cache

_AUDIO_TYPES = ("audio/mpeg", "audio/ogg", "audio/aac", "audio/flac", "audio/wav", "audio/pcm")
_RESPONSES = {
    200: {
        "description": "The audio (Content-Type per response_format), or Server-Sent Events.",
        "content": {media: {} for media in (*_AUDIO_TYPES, openai_sse.MEDIA_TYPE)},
    }
}


@router.post(
    "/v1/audio/speech",
    operation_id="openai_create_speech",
    openapi_extra=OPENAPI_BODY,
    responses=_RESPONSES,
    response_class=Response,
)
async def create_speech(request: Request) -> Response:
    body = await read_speech_body(request)
    ctx: WorkerContext = request.app.state.worker
    job = speech_job(body, engines=ctx.engines.names, voice_map=ctx.settings.openai_voices)
    try:
        output = await run_in_threadpool(dispatch, job, bearer_credentials(request), ctx)
    except TTSError as err:  # the job's own code, with the OpenAI field it is about
        return error_reply(err, path=request.url.path, param=param_for(err))
    if isinstance(output, AudioStream):
        return _streamed(output, body)
    if not isinstance(output, SynthesisResult) or output.audio is None:
        raise InternalError("a base64 speech job came back without its audio")
    headers = stream_headers(output)
    if body.stream_format == "sse":
        events = openai_sse.whole_file(output.audio, len(body.input))
        return Response(events, media_type=openai_sse.MEDIA_TYPE, headers=_SSE | headers)
    return Response(output.audio, media_type=output.content_type, headers=headers)


def _streamed(stream: AudioStream, body: SpeechBody) -> AudioStreamResponse:
    headers = stream_headers(stream.info)
    if body.stream_format == "sse":
        return AudioStreamResponse(
            stream,
            media_type=openai_sse.MEDIA_TYPE,
            headers=_SSE | headers,
            frame=openai_sse.SseFrames(len(body.input)),
            error_frame=openai_sse.error_event,
        )
    return AudioStreamResponse(stream, media_type=stream.info.content_type, headers=headers)
