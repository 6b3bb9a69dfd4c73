"""Cloned voices over native v1, ``Authorization: Bearer KEY`` on every route:

- ``POST /v1/voices``: clone a voice from 3-30 s of reference speech, uploaded as
  ``multipart/form-data`` (fields ``name``, ``language``, ``description``, file part ``file``)
  or named in JSON (``audio_base64`` or ``audio_url``); 201 with the voice;
- ``GET /v1/voices``: the engine's built-in voices (``builtin:<name>``), then the tenant's own;
- ``GET``, ``PATCH``, ``DELETE /v1/voices/{voice_id}``: show, rename or describe, delete;
- ``POST /v1/voices/{voice_id}/preview``: a short sample, answered like ``/v1/synthesize``.

A key only ever reaches its own tenant's voices: another tenant's voice is ``voice_not_found``,
as one that never existed is. ``POST /v1/voices`` has a body bound of its own (``BODY_BOUNDS``,
which the app hands its ``BodyLimit``), large enough for a whole reference; every other route
keeps ``TTS_MAX_BODY_BYTES``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile

from handlers.dispatch import authenticate
from serverless_tts.web.bearer import bearer_credentials
from serverless_tts.web.body_limit import Bound, Route
from serverless_tts.web.json_body import json_object, read_json_object
from serverless_tts.web.v1_body import speech_job, take_stream
from serverless_tts.web.v1_models import audio_responses, error_responses, request_body
from serverless_tts.web.v1_routes import KEY, KEYED, SPEECH, audio_reply, run_job
from shared.errors import InvalidInput
from shared.jobs import (
    MAX_PREVIEW_CHARS,
    MAX_REFERENCE_BASE64_CHARS,
    MAX_REFERENCE_URL_CHARS,
    Language,
    SpeechStyle,
    VoiceDeleted,
    VoiceEntry,
    VoicesResult,
)
from shared.tenants.voices import MAX_VOICE_DESCRIPTION_CHARS, MAX_VOICE_NAME_CHARS

router = APIRouter(prefix="/v1/voices", tags=["v1"])
Reply = TypeVar("Reply", VoiceEntry, VoicesResult, VoiceDeleted)

# Room for a new voice's body: the reference in its widest form (base64 in JSON; an upload
# carries the raw 10 MB) plus the small fields and their framing. Those take at most ~8 KB:
# 600 characters of name and description at 12 bytes each JSON-escaped ("\ud83d\ude00"), the
# keys, multipart's part headers and boundaries. 64 KiB leaves room without inviting padding.
_FIELDS_MARGIN_BYTES = 64 * 1024
MAX_VOICE_BODY_BYTES = MAX_REFERENCE_BASE64_CHARS + _FIELDS_MARGIN_BYTES
BODY_BOUNDS: dict[Route, Bound] = {
    ("POST", router.prefix): Bound(
        MAX_VOICE_BODY_BYTES,
        "a reference may have at most 10 MB of audio: send 3-30 s of speech (mp3, ogg or flac "
        "is smaller than wav)",
    )
}

# A multipart text field is held in memory whole: at most the longest field, 4 bytes a
# character in UTF-8. (The file part spools to disk; the body bound above bounds it.)
_MAX_FORM_FIELD_BYTES = 4 * MAX_VOICE_DESCRIPTION_CHARS
_MAX_FORM_FIELDS = 8  # the three text fields, and room to name a few unknown ones
_MULTIPART, _JSON = "multipart/form-data", "application/json"
_FILE_PART = "the reference audio as a file part (curl: -F file=@reference.wav)"
_KEY_ADVICE = "the key goes in the Authorization header (Authorization: Bearer KEY)"
# Refusals of a voice operation besides a bad key: malformed, over a rate window, no such voice.
_ONE_VOICE = (*KEYED, 400, 404, 429)


class _VoiceFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1, max_length=MAX_VOICE_NAME_CHARS, description="What the tenant calls it."
    )
    language: Language | None = Field(
        None, description="The language it speaks, e.g. en; previews speak it by default."
    )
    description: str | None = Field(None, max_length=MAX_VOICE_DESCRIPTION_CHARS)


class VoiceCreateBody(_VoiceFields):
    """A new voice as JSON: its reference audio inline or at a URL, exactly one of them."""

    audio_base64: str | None = Field(
        None,
        description="The reference file as base64: 3-30 s of one speaker, wav, mp3, ogg "
        "(opus or vorbis) or flac, at most 10 MB.",
    )
    audio_url: str | None = Field(
        None,
        max_length=MAX_REFERENCE_URL_CHARS,
        description="An https URL on a public host to fetch the reference file from, once.",
    )


class VoiceUploadForm(_VoiceFields):
    """A new voice as multipart/form-data: the reference file as the part ``file``."""

    file: bytes = Field(
        description="The reference file: 3-30 s of one speaker, wav, mp3, ogg (opus or "
        "vorbis) or flac, at most 10 MB."
    )


class VoiceEditBody(BaseModel):
    """Fields to change; a field left out is kept, null clears description or language."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=MAX_VOICE_NAME_CHARS)
    language: Language | None = None
    description: str | None = Field(None, max_length=MAX_VOICE_DESCRIPTION_CHARS)


class VoicePreviewBody(SpeechStyle):
    """How the sample should sound; every field optional (an empty body is fine)."""

    language: Language | None = Field(  # type: ignore[assignment]
        None, description="Default: the voice's own language, else en."
    )
    text: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_PREVIEW_CHARS,
        description="What to say; default: a sentence in the preview's language.",
    )
    stream: bool = Field(False, description="true: chunked audio as it is made")


def _create_body_doc() -> dict[str, Any]:
    """``POST /v1/voices``'s two bodies, by content type."""
    document = request_body(VoiceCreateBody)
    form = request_body(VoiceUploadForm)["requestBody"]["content"][_JSON]
    document["requestBody"]["content"][_MULTIPART] = form
    return document


@router.post(
    "",
    status_code=201,
    dependencies=KEY,
    responses=error_responses(*KEYED, 400, 403, 413, 422, 429),
    openapi_extra=_create_body_doc(),
)
async def create_voice(request: Request) -> VoiceEntry:
    """Clone a voice from reference audio: upload the file (multipart/form-data, part
    ``file``) or send JSON with ``audio_base64`` or ``audio_url``. The reference is checked
    (length, level, clipping) before anything is charged; the voice's id is ``v_`` + 16 hex."""
    # The key first: no one without one gets a 13 MB body read and parsed.
    await run_in_threadpool(authenticate, bearer_credentials(request), request.app.state.worker)
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type == _MULTIPART:
        job = await _uploaded(request)
    elif media_type == _JSON:
        body = await read_json_object(request)
        _only(body, VoiceCreateBody.model_fields, "a JSON body")
        job = {**body, "action": "voices.create"}
    else:
        raise InvalidInput(
            f"Content-Type must be {_MULTIPART} (the reference as the file part file) or "
            f"{_JSON} (with audio_base64 or audio_url)"
        )
    return await _result(request, job, VoiceEntry)


async def _uploaded(request: Request) -> dict[str, Any]:
    """The create job a multipart body asks for, the file's bytes as its ``audio``."""
    # A malformed body, or more files or fields than these, is refused as a 400 by Starlette.
    async with request.form(
        max_files=1, max_fields=_MAX_FORM_FIELDS, max_part_size=_MAX_FORM_FIELD_BYTES
    ) as form:
        parts = form.multi_items()
        names = [name for name, _ in parts]
        _only(names, VoiceUploadForm.model_fields, "a multipart body")
        job: dict[str, Any] = {"action": "voices.create"}
        for name, value in parts:
            if names.count(name) > 1:
                raise InvalidInput(f"{name}: give it once", field=name)
            if (name == "file") != isinstance(value, UploadFile):
                shape = _FILE_PART if name == "file" else "a text field, not a file"
                raise InvalidInput(f"{name}: must be {shape}", field=name)
            if isinstance(value, UploadFile):
                job["audio"] = await value.read()
            else:
                job[name] = value
        if "audio" not in job:
            raise InvalidInput(f"file: missing; it must be {_FILE_PART}", field="file")
    return job


@router.get("", dependencies=KEY, responses=error_responses(*KEYED, 429))
async def list_voices(request: Request) -> VoicesResult:
    """The voices the calling tenant may ask for on this worker's engine: its built-in ones
    (``builtin:<name>``, every tenant's), then the tenant's cloned voices, oldest first."""
    return await _result(request, {"action": "voices.list"}, VoicesResult)


@router.get("/{voice_id}", dependencies=KEY, responses=error_responses(*_ONE_VOICE))
async def get_voice(request: Request, voice_id: str) -> VoiceEntry:
    """One voice: a built-in one, or one of the tenant's cloned voices."""
    return await _result(request, {"action": "voices.get", "voice_id": voice_id}, VoiceEntry)


@router.patch(
    "/{voice_id}",
    dependencies=KEY,
    responses=error_responses(*_ONE_VOICE, 413),
    openapi_extra=request_body(VoiceEditBody),
)
async def update_voice(request: Request, voice_id: str) -> VoiceEntry:
    """Rename or describe a cloned voice, or change its language; its audio stays the same
    (its ``version`` is kept)."""
    body = await read_json_object(request)
    _only(body, VoiceEditBody.model_fields, "an edit")
    job = {**body, "action": "voices.update", "voice_id": voice_id}
    return await _result(request, job, VoiceEntry)


@router.delete("/{voice_id}", dependencies=KEY, responses=error_responses(*_ONE_VOICE))
async def delete_voice(request: Request, voice_id: str) -> VoiceDeleted:
    """Delete a cloned voice, its reference and its latents; audio made with it is never
    served again."""
    job = {"action": "voices.delete", "voice_id": voice_id}
    return await _result(request, job, VoiceDeleted)


@router.post(
    "/{voice_id}/preview",
    response_class=Response,
    dependencies=KEY,
    responses={**audio_responses(), **error_responses(*SPEECH)},
    openapi_extra=request_body(VoicePreviewBody),
)
async def preview_voice(request: Request, voice_id: str) -> Response:
    """A short sample in the voice, as ``/v1/synthesize`` answers: the file as the body, or
    chunked with ``"stream": true``; charged as the characters it speaks."""
    raw = await request.body()
    body = json_object(raw, what="the body", expected="a JSON object") if raw.strip() else {}
    stream, rest = take_stream(body)
    if "voice_id" in rest:
        raise InvalidInput("voice_id: not a body field here; the voice is the path's")
    job = speech_job(rest, "stream" if stream else "base64")
    return audio_reply(
        await run_job(request, {**job, "action": "voices.preview", "voice_id": voice_id})
    )


async def _result(request: Request, job: dict[str, Any], kind: type[Reply]) -> Reply:
    """What ``job`` answers, which for its action is always a ``kind``."""
    output = await run_job(request, job)
    assert isinstance(output, kind)
    return output


def _only(given: Iterable[str], allowed: Collection[str], body: str) -> None:
    """Refuse a field ``body`` does not take, by name (never its value)."""
    for name in given:
        if name not in allowed:
            instead = (
                _KEY_ADVICE if name == "api_key" else f"{body} here takes " + ", ".join(allowed)
            )
            raise InvalidInput(f"{name}: not a field here; {instead}", field=name)
