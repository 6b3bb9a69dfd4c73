"""The native v1 wire models: what /openapi.json documents for each route.

The speech bodies document the job contract's fields (``shared.jobs``) as v1 takes them; the
routes still validate through the dispatcher, so a refusal carries the contract's codes.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.audio.formats import FORMAT_SPECS
from shared.jobs import SpeechSettings, SynthesisResult


class SpeechBody(SpeechSettings):
    """What to say and how: a synthesize job without its ``delivery`` (the route's) and its
    key (the Authorization header's)."""

    text: str | None = Field(
        None, description="Plain text to speak, at most TTS_MAX_TEXT_CHARS; or give ssml."
    )
    ssml: str | None = Field(
        None, description="An SSML <speak> document, at most 2 x TTS_MAX_TEXT_CHARS; or text."
    )
    cache: bool = Field(True, description="false: always synthesize, never store a copy")


class SynthesizeBody(SpeechBody):
    stream: bool = Field(
        False, description="true: chunked audio as it is made (every format but flac)"
    )


class SynthesisUrlReply(SynthesisResult):
    """The result; ``audio_base64`` only when storage failed and the audio came back inline
    (``warning`` says so)."""

    audio_base64: str | None = None


class SsmlBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    ssml: str = Field(description="An SSML <speak> document, at most 2 x TTS_MAX_TEXT_CHARS.")


class SsmlCheck(BaseModel):
    valid: bool = True
    spoken_chars: int = Field(description="Characters of speech, after normalization.")
    pieces: int = Field(description="Stretches of speech and pauses, in order.")
    pauses_s: float = Field(description="Seconds of silence the breaks and paragraphs add.")


class UsageTotals(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    requests: int
    failed: int
    input_chars: int
    audio_seconds: float
    audio_bytes: int

    @field_validator("audio_seconds")
    @classmethod
    def _millisecond_precision(cls, value: float) -> float:
        return round(value, 3)  # sums of floats: no 0.30000000000000004 in a report


class UsageDay(UsageTotals):
    day: date


class UsageReport(BaseModel):
    tenant_id: str
    start_date: date
    end_date: date
    days: list[UsageDay] = Field(description="Days with jobs, oldest first (UTC).")
    totals: UsageTotals


class V1ErrorDetail(BaseModel):
    code: str
    message: str


class V1Error(BaseModel):
    error: V1ErrorDetail


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting ``model`` as the JSON body of a route that reads its body
    itself. Definitions are inlined: the document would resolve "#/$defs/..." at its root."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inlined(node: Any) -> Any:
        if isinstance(node, list):
            return [inlined(item) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref", "")
        if ref.startswith("#/$defs/"):
            rest = {name: value for name, value in node.items() if name != "$ref"}
            return {**inlined(definitions[ref.removeprefix("#/$defs/")]), **rest}
        return {name: inlined(value) for name, value in node.items()}

    content = {"application/json": {"schema": inlined(schema)}}
    return {"requestBody": {"required": True, "content": content}}


def audio_responses() -> dict[int | str, dict[str, object]]:
    """The 200 reply of a route that answers audio, in every format's content type."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    content = {spec.content_type: binary for spec in FORMAT_SPECS.values()}
    return {200: {"description": "The audio, in the asked format.", "content": content}}


def error_responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    """Refusals in the v1 shape, for the OpenAPI document. "4XX" stands for every other client
    error (405, ...) and replaces FastAPI's own 422 entry: v1 answers a bad parameter 400."""
    refusals: dict[int | str, dict[str, object]] = {
        status: {"model": V1Error} for status in statuses
    }
    refusals["4XX"] = {"model": V1Error, "description": "Any other refusal"}
    return refusals
