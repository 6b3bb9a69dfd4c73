"""The job contract: the pydantic models every entry point (RunPod, Modal, HTTP, CLI, edge)
validates against, and the one function that turns raw input into a job or a coded error.

Validation messages name fields and rules, never input values: a job carries an API key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from shared.audio.formats import SUPPORTED_SAMPLE_RATES, AudioFormat
from shared.errors import (
    InvalidInput,
    ReferenceTooLarge,
    TextTooLong,
    TTSError,
    Unauthorized,
    UnsupportedFormat,
)
from shared.tenants.voices import MAX_VOICE_DESCRIPTION_CHARS, MAX_VOICE_NAME_CHARS

Delivery = Literal["url", "base64", "stream"]
RequestId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")]
MAX_API_KEY_CHARS = 256
# The speeds every engine speaks (other surfaces, e.g. OpenAI's 0.25-4.0, refuse the rest).
MIN_SPEED, MAX_SPEED = 0.5, 2.0
# One rule for every field, as JSON writes values: a number field takes a JSON number (an
# integer is fine where a decimal is expected), a boolean takes true/false, a string takes a
# string; nothing is coerced from another type ("1.5", "false" and true are refused alike).
# Enum fields take their string names.
_STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)


@dataclass(frozen=True, slots=True)
class ApiKeyCredentials:
    """A tenant API key as a transport carried it (RunPod's input field, a Bearer header);
    None when it carried nothing usable, which the dispatcher refuses as ``unauthorized``."""

    api_key: SecretStr | None

    @classmethod
    def of(cls, value: object) -> ApiKeyCredentials:
        usable = isinstance(value, str) and 0 < len(value) <= MAX_API_KEY_CHARS
        return cls(SecretStr(value) if usable else None)  # type: ignore[arg-type]

    def key(self) -> str:
        if self.api_key is None:
            raise Unauthorized("a valid api_key is required")
        return self.api_key.get_secret_value()


@dataclass(frozen=True, slots=True)
class OperatorCredentials:
    """The operator on the worker's own machine (the CLI beside the tenant store): no key.

    With ``tenant_id`` the job runs as that tenant (charged, with a usage row); without, it is
    tenant-free: nothing is charged or stored, and its event says so.
    """

    tenant_id: str | None = None


Credentials = ApiKeyCredentials | OperatorCredentials


class JobLimits(BaseModel):
    """Bounds that come from configuration, handed to validation as context."""

    max_text_chars: int = 10_000


class _Job(BaseModel):
    model_config = _STRICT

    request_id: RequestId | None = None


# A built-in voice's name (bare, or as listed: "builtin:<name>") or a cloned voice's id.
VoiceId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[\w .':\-]+$")]
Language = Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]{2})?$")]


class SpeechStyle(_Job):
    """How to speak, but not with which voice (a preview names its voice as ``voice_id``)."""

    language: Language = "en"
    speed: float = Field(1.0, ge=MIN_SPEED, le=MAX_SPEED, allow_inf_nan=False)
    format: AudioFormat = Field(AudioFormat.WAV, strict=False)
    sample_rate: int | None = None

    @field_validator("sample_rate")
    @classmethod
    def _supported_rate(cls, value: int | None) -> int | None:
        if value is not None and value not in SUPPORTED_SAMPLE_RATES:
            raise PydanticCustomError(
                "unsupported_sample_rate",
                "sample_rate must be one of {rates}",
                {"rates": ", ".join(str(r) for r in sorted(SUPPORTED_SAMPLE_RATES))},
            )
        return value


class SpeechSettings(SpeechStyle):
    """How to speak: shared by synthesize and greeting jobs, so both hit the same cache keys."""

    voice: VoiceId | None = None


class SynthesizeJob(SpeechSettings):
    """Speak ``text`` (plain) or ``ssml`` (a safe SSML subset): exactly one of them."""

    action: Literal["synthesize"] = "synthesize"
    text: str | None = None
    ssml: str | None = None
    delivery: Delivery = "url"
    cache: bool = Field(True, description="false: always synthesize, never store a copy")

    @field_validator("text", "ssml")
    @classmethod
    def _within_length_bound(cls, value: str | None, info: ValidationInfo) -> str | None:
        # SSML markup is not spoken, so it may take up to twice the spoken bound.
        factor = 2 if info.field_name == "ssml" else 1
        return _bounded(value, info, factor)

    @model_validator(mode="after")
    def _exactly_one_input(self) -> SynthesizeJob:
        if (self.text is None) == (self.ssml is None):
            raise PydanticCustomError("invalid_input", "give exactly one of text or ssml")
        return self


MAX_GREETINGS = 100


class GreetingsWarmJob(SpeechSettings):
    """Store a tenant's phrases in the audio cache ahead of time, so calls play them at once."""

    action: Literal["greetings.warm"]
    phrases: list[str] = Field(min_length=1, max_length=MAX_GREETINGS)

    @field_validator("phrases")
    @classmethod
    def _each_within_bound(cls, phrases: list[str], info: ValidationInfo) -> list[str]:
        for phrase in phrases:
            _bounded(phrase, info, 1)
        return phrases


class GreetingsGetJob(SpeechSettings):
    """A signed URL for a warmed phrase, at once, or ``not_found``."""

    action: Literal["greetings.get"]
    text: str = Field(min_length=1)

    @field_validator("text")
    @classmethod
    def _within_bound(cls, value: str, info: ValidationInfo) -> str:
        return _bounded(value, info, 1) or value


def _bounded(value: str | None, info: ValidationInfo, factor: int) -> str | None:
    bound = _limits_from(info).max_text_chars * factor
    if value is not None and len(value) > bound:
        raise PydanticCustomError(
            "text_too_long",
            "{field} has {length} characters; the limit is {bound}",
            {"field": info.field_name, "length": len(value), "bound": bound},
        )
    return value


class VoicesJob(_Job):
    """List the voices the tenant can ask for on the worker's engine ("voices" is the older
    name of "voices.list")."""

    action: Literal["voices", "voices.list"]


# The most bytes of reference audio a voice is cloned from, checked before any decoding.
MAX_REFERENCE_BYTES = 10_000_000
# A reference's bytes as base64: 4 characters per 3 bytes, so the byte limit's worth and no more.
MAX_REFERENCE_BASE64_CHARS = 4 * -(-MAX_REFERENCE_BYTES // 3)
MAX_REFERENCE_URL_CHARS = 2048
MAX_PREVIEW_CHARS = 500


class VoicesCreateJob(_Job):
    """Clone a voice from 3-30 s of reference speech: ``audio_base64`` or ``audio_url``, or
    ``audio`` (raw bytes) from a transport that carries files (an HTTP upload): exactly one."""

    action: Literal["voices.create"]
    name: str = Field(min_length=1, max_length=MAX_VOICE_NAME_CHARS)
    language: Language | None = None
    description: str | None = Field(None, max_length=MAX_VOICE_DESCRIPTION_CHARS)
    audio_base64: str | None = None
    audio_url: str | None = Field(None, min_length=1, max_length=MAX_REFERENCE_URL_CHARS)
    # Python only: JSON has no bytes, so a RunPod job can never set it.
    audio: bytes | None = Field(None, exclude=True, repr=False)

    @field_validator("audio_base64")
    @classmethod
    def _within_reference_bound(cls, value: str | None) -> str | None:
        if value is not None and len(value) > MAX_REFERENCE_BASE64_CHARS:
            raise PydanticCustomError(
                "reference_too_large",
                "audio_base64 holds more than the 10 MB a reference may have",
            )
        return value

    @model_validator(mode="after")
    def _exactly_one_source(self) -> VoicesCreateJob:
        given = [self.audio_base64, self.audio_url, self.audio]
        if sum(source is not None for source in given) != 1:
            raise PydanticCustomError(
                "invalid_input", "give exactly one of audio_base64 or audio_url"
            )
        return self


class _OneVoiceJob(_Job):
    voice_id: VoiceId


class VoicesGetJob(_OneVoiceJob):
    action: Literal["voices.get"]


class VoicesDeleteJob(_OneVoiceJob):
    """Delete a cloned voice and its stored objects; audio cached for it is never served again."""

    action: Literal["voices.delete"]


class VoicesUpdateJob(_OneVoiceJob):
    """Rename or describe a cloned voice, or change its language; a field left out is kept,
    ``null`` clears ``description`` or ``language``."""

    action: Literal["voices.update"]
    name: str | None = Field(None, min_length=1, max_length=MAX_VOICE_NAME_CHARS)
    language: Language | None = None
    description: str | None = Field(None, max_length=MAX_VOICE_DESCRIPTION_CHARS)

    @model_validator(mode="after")
    def _name_is_kept_or_set(self) -> VoicesUpdateJob:
        if "name" in self.model_fields_set and self.name is None:
            raise PydanticCustomError("invalid_input", "name cannot be cleared, only changed")
        return self


class VoicesPreviewJob(SpeechStyle):
    """A short sample in a voice, delivered like a synthesize result: ``text`` (by default a
    sentence in the voice's language) spoken with ``voice_id``."""

    action: Literal["voices.preview"]
    voice_id: VoiceId
    text: str | None = Field(None, min_length=1, max_length=MAX_PREVIEW_CHARS)
    delivery: Delivery = "url"


class HealthJob(_Job):
    """Report the worker's engine and model, for a platform's health probe."""

    action: Literal["health"]


VoiceJob = VoicesCreateJob | VoicesGetJob | VoicesUpdateJob | VoicesDeleteJob | VoicesPreviewJob
Job = SynthesizeJob | VoicesJob | HealthJob | GreetingsWarmJob | GreetingsGetJob | VoiceJob
_JOBS_BY_ACTION: dict[str, type[_Job]] = {
    "synthesize": SynthesizeJob,
    "voices": VoicesJob,
    "voices.list": VoicesJob,
    "voices.create": VoicesCreateJob,
    "voices.get": VoicesGetJob,
    "voices.update": VoicesUpdateJob,
    "voices.delete": VoicesDeleteJob,
    "voices.preview": VoicesPreviewJob,
    "health": HealthJob,
    "greetings.warm": GreetingsWarmJob,
    "greetings.get": GreetingsGetJob,
}


def _limits_from(info: ValidationInfo) -> JobLimits:
    context = info.context or {}
    limits = context.get("limits")
    return limits if isinstance(limits, JobLimits) else JobLimits()


ACTIONS: tuple[str, ...] = tuple(_JOBS_BY_ACTION)


def asked_action(raw: object) -> str:
    """The action a raw job asks for, for its log event even when it fails to parse."""
    action = raw.get("action", "synthesize") if isinstance(raw, Mapping) else None
    return action if isinstance(action, str) and action in _JOBS_BY_ACTION else "unknown"


def parse_job(raw: object, limits: JobLimits) -> Job:
    """Validate raw input (a JSON object, credentials already taken out by the transport) into
    a job, or raise the matching coded error."""
    if not isinstance(raw, Mapping):
        raise InvalidInput("the job input must be a JSON object")
    action = raw.get("action", "synthesize")
    model = _JOBS_BY_ACTION.get(action) if isinstance(action, str) else None
    if model is None:
        raise InvalidInput(f"action must be one of: {', '.join(_JOBS_BY_ACTION)}")
    try:
        return model.model_validate(dict(raw), context={"limits": limits})  # type: ignore[return-value]
    except ValidationError as exc:
        raise _coded_error(exc) from None


def _coded_error(exc: ValidationError) -> TTSError:
    """The most specific code among the failures; the message lists them all, without values."""
    problems = exc.errors(include_input=False, include_url=False)
    parts = []
    for problem in problems:
        field = ".".join(str(part) for part in problem["loc"]) or "input"
        parts.append(f"{field}: {problem['msg']}")
    message = "; ".join(parts)
    kinds = {problem["type"] for problem in problems}
    fields = {str(problem["loc"][0]) for problem in problems if problem["loc"]}
    field = next(iter(fields)) if len(fields) == 1 else None
    if "text_too_long" in kinds:
        return TextTooLong(message, field=field)
    if "reference_too_large" in kinds:
        return ReferenceTooLarge(message, field=field)
    # A format field on a job that takes none is an unknown field, not an unsupported format.
    format_fields = fields & {"format", "sample_rate"} and fields <= {"format", "sample_rate"}
    if format_fields and "extra_forbidden" not in kinds:
        return UnsupportedFormat(message, field=field)
    return InvalidInput(message, field=field)


class StageTimings(BaseModel):
    """Milliseconds per stage, so a slow job shows where its time went."""

    model_config = ConfigDict(validate_assignment=True)

    auth_ms: float = 0.0
    synth_ms: float = 0.0
    encode_ms: float = 0.0
    deliver_ms: float = 0.0
    total_ms: float = 0.0

    @field_validator("*")
    @classmethod
    def _microsecond_precision(cls, value: float) -> float:
        return round(value, 3)


class SpokenAs(BaseModel):
    """What made the audio: named in every result, stream summary and usage row."""

    request_id: str
    engine: str
    voice: str
    voice_version: str
    language: str
    format: AudioFormat
    content_type: str
    sample_rate: int
    # Why ``engine`` spoke instead of the primary of the tenant's order (None: it did).
    fallback_reason: str | None = None


class SynthesisResult(SpokenAs):
    """A whole file: a signed URL to it, or its bytes inline (``audio``, for a transport to
    shape: RunPod base64-encodes it, HTTP sends it as the body)."""

    duration_s: float
    bytes: int
    delivery: Literal["url", "base64"]
    url: str | None = None
    expires_at: datetime | None = None
    audio: bytes | None = Field(None, exclude=True, repr=False)
    cached: bool = False
    warning: str | None = None
    timings: StageTimings


class StreamSummary(SpokenAs):
    """A finished stream's totals, carried by its last chunk."""

    duration_s: float
    bytes: int
    cached: bool
    timings: StageTimings


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Raw encoded audio of a stream, in order; the last one carries the ``summary``."""

    data: bytes
    summary: StreamSummary | None = None

    @property
    def final(self) -> bool:
        return self.summary is not None


class GreetingEntry(BaseModel):
    text: str
    cached: bool
    url: str | None = None
    expires_at: datetime | None = None
    bytes: int
    duration_s: float


class GreetingsWarmResult(BaseModel):
    engine: str
    voice: str
    voice_version: str
    greetings: list[GreetingEntry]


class VoiceEntry(BaseModel):
    """A voice a tenant may speak with: an engine's built-in (``builtin:<name>``, the same for
    every tenant) or one of the tenant's cloned voices (``v_`` + 16 hex). ``version`` keys the
    audio cache; a cloned voice that is not ``ready`` is still being created, or its creation
    failed part way (delete it and create it again)."""

    id: str
    name: str
    kind: Literal["builtin", "cloned"]
    engine: str
    version: str
    language: str | None = None
    description: str | None = None
    ready: bool = True
    created_at: datetime | None = None
    updated_at: datetime | None = None


class VoicesResult(BaseModel):
    engine: str
    default_voice: str
    voices: list[VoiceEntry]


class VoiceDeleted(BaseModel):
    id: str
    deleted: Literal[True] = True


class HealthResult(BaseModel):
    status: Literal["ok"] = "ok"
    engine: str
    engines: list[str]
    model_version: str
    sample_rate: int
    languages: list[str]
    uptime_s: float
