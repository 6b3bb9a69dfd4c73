"""The body of OpenAI's ``POST /v1/audio/speech`` as the official SDK sends it, read and checked.

Only its shape is checked here (types, OpenAI's own ranges); what this worker can speak is the
job contract's business (``openai_job``). The body is parsed as JSON whatever the content type
(``curl -d`` sends a form type), after the app's ``TTS_MAX_BODY_BYTES`` bound, and no refusal
quotes a value: the SDK puts whatever it was given into the body, an API key included.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Request
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
)

from serverless_tts.web.errors import ParamError
from shared.errors import InvalidInput, TTSError

MAX_VOICE_CHARS = 128
MAX_INSTRUCTIONS_CHARS = 4096
OpenAIFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]


def _voice_id(value: object) -> object:
    """Newer SDKs name a custom voice as ``{"id": "..."}``: the same thing as the plain string."""
    if isinstance(value, dict) and set(value) == {"id"}:
        return value["id"]
    return value


_VOICE_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "minLength": 1, "maxLength": MAX_VOICE_CHARS},
        {
            "type": "object",
            "properties": {"id": {"type": "string", "minLength": 1, "maxLength": MAX_VOICE_CHARS}},
            "required": ["id"],
            "additionalProperties": False,
        },
    ],
    "description": "An OpenAI voice name (mapped by TTS_OPENAI_VOICES; unmapped ones speak "
    "with the engine's default voice), or one of this worker's voice ids, or {\"id\": ...}.",
}
VoiceName = Annotated[
    str,
    BeforeValidator(_voice_id),
    StringConstraints(min_length=1, max_length=MAX_VOICE_CHARS),
    # The {"id": ...} form is documented inline: a nested model's $ref would point nowhere in
    # the OpenAPI document, where this schema is pasted as the request body.
    WithJsonSchema(_VOICE_SCHEMA),
]


class SpeechBody(BaseModel):
    """OpenAI's speech request. Fields OpenAI may add later are ignored, as its SDK may send
    them; types are strict, as in the job contract (the string "1.5" is no speed)."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    model: str = Field(
        min_length=1,
        max_length=128,
        description="tts-1, tts-1-hd or gpt-4o-mini-tts (each speaks with this worker's "
        "engine), or the engine's own name.",
    )
    input: str = Field(min_length=1, description="The text, at most TTS_MAX_TEXT_CHARS.")
    voice: VoiceName
    response_format: OpenAIFormat = Field(
        "mp3", description="opus is Opus in Ogg; pcm is raw 24 kHz mono s16le, no header."
    )
    speed: float = Field(
        1.0,
        ge=0.25,
        le=4.0,
        allow_inf_nan=False,
        description="OpenAI's range; a speed the engine cannot speak is refused, naming the "
        "range it can.",
    )
    instructions: str | None = Field(
        None,
        max_length=MAX_INSTRUCTIONS_CHARS,
        description="Accepted and not spoken: XTTS and Piper take no style prompt.",
    )
    stream_format: Literal["audio", "sse"] = Field(
        "audio",
        description="audio: the file's bytes as they are made; sse: speech.audio.delta events "
        "(base64 audio), then speech.audio.done with usage (characters).",
    )


# The route reads the body itself, so its schema is declared for the OpenAPI document.
OPENAPI_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": SpeechBody.model_json_schema()}},
    }
}


async def read_speech_body(request: Request) -> SpeechBody:
    """The request's body; ``ParamError`` naming the first field at fault, or ``InvalidInput``
    for a body that is not a JSON object."""
    raw = await request.body()
    try:
        return SpeechBody.model_validate_json(raw)
    except ValidationError as exc:
        raise _refusal(exc) from None  # from None: the error's own text quotes the input


def _refusal(exc: ValidationError) -> TTSError:
    problems = exc.errors(include_input=False, include_url=False, include_context=False)
    if problems[0]["type"] == "json_invalid":
        return InvalidInput(f"the body is not valid JSON: {problems[0]['msg']}")
    if not problems[0]["loc"]:
        return InvalidInput(f"the body must be a JSON object: {problems[0]['msg']}")
    message = "; ".join(
        f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
        for problem in problems
    )
    return ParamError(message, str(problems[0]["loc"][0]))
