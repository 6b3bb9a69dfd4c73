"""ElevenLabs text-to-speech (shared/FIELD_NOTES.md section 11).

``POST /v1/text-to-speech/{voice_id}`` (whole) and ``.../stream`` (bytes as they are made),
header ``xi-api-key``, query ``output_format`` (``pcm_24000``: raw s16le; ``ulaw_8000``: G.711 for
telephony), JSON ``text``, ``model_id``, ``language_code``, ``voice_settings``. Errors are
``{"detail": {"status", "message"}}``; of its two 429s, ``too_many_concurrent_requests`` is the
plan's concurrency (another attempt now meets the same limit: fail over) and ``system_busy`` is
ElevenLabs' own load (a retry may help).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import quote

from shared.audio.formats import AudioFormat
from shared.engines.vendors.config import VendorConfig
from shared.engines.vendors.engine import SpeechAsk, VendorEngine
from shared.engines.vendors.errors import VendorErrorKind
from shared.engines.vendors.http import Clock, ErrorDetail, VendorRequest, utc_now
from shared.errors import EngineUnavailable

DEFAULT_MODEL = "eleven_flash_v2_5"
PCM_RATES = frozenset({16000, 22050, 24000, 44100})
_ENCODED = {AudioFormat.MULAW: "ulaw_8000"}

# Languages as ElevenLabs' models page lists them, in the product's two-letter codes (its "fil"
# has none, so it is left out).
_MULTILINGUAL_V2 = frozenset(
    {
        "en", "ja", "zh", "de", "hi", "fr", "ko", "pt", "it", "es", "id", "nl", "tr", "pl", "sv",
        "bg", "ro", "ar", "cs", "el", "fi", "hr", "ms", "sk", "da", "ta", "uk", "ru",
    }
)  # fmt: skip
_V2_5 = _MULTILINGUAL_V2 | {"hu", "no", "vi"}


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """``chars``: most characters per request; ``language_code``: the model takes the field
    (others answer 400 when it is sent, and read the language from the text)."""

    chars: int
    languages: frozenset[str]
    language_code: bool


MODELS: Mapping[str, ModelSpec] = MappingProxyType(
    {
        "eleven_flash_v2_5": ModelSpec(40_000, _V2_5, language_code=True),
        "eleven_turbo_v2_5": ModelSpec(40_000, _V2_5, language_code=True),
        "eleven_multilingual_v2": ModelSpec(10_000, _MULTILINGUAL_V2, language_code=False),
        "eleven_flash_v2": ModelSpec(30_000, frozenset({"en"}), language_code=False),
        "eleven_turbo_v2": ModelSpec(30_000, frozenset({"en"}), language_code=False),
        # 70+ languages are claimed; only those of multilingual v2 are offered here, and its
        # launch limit (raised since) is kept: every plan takes it.
        "eleven_v3": ModelSpec(3_000, _MULTILINGUAL_V2, language_code=False),
    }
)
# A model not listed above: English, and the free plan's old per-request limit.
UNKNOWN_MODEL = ModelSpec(2_500, frozenset({"en"}), language_code=False)


class ElevenLabsEngine(VendorEngine):
    name = "elevenlabs"
    label = "ElevenLabs"
    native_formats = frozenset(_ENCODED)
    speed_range = (0.7, 1.2)  # voice_settings.speed

    def __init__(self, config: VendorConfig, *, clock: Clock = utc_now) -> None:
        self._model_id = config.model or DEFAULT_MODEL
        self._model = MODELS.get(self._model_id, UNKNOWN_MODEL)
        self.sample_rate = config.pcm_rate or 24000
        if self.sample_rate not in PCM_RATES:
            rates = ", ".join(str(rate) for rate in sorted(PCM_RATES))
            raise EngineUnavailable(f"ElevenLabs sends PCM at {rates} Hz, not {self.sample_rate}")
        self.languages = self._model.languages
        self.model_version = f"elevenlabs:{self._model_id}"
        super().__init__(config, clock=clock)

    def _auth_headers(self, key: str) -> dict[str, str]:
        return {"xi-api-key": key}

    def _char_limit(self) -> int:
        return self._model.chars

    def _request(self, ask: SpeechAsk) -> VendorRequest:
        path = f"/v1/text-to-speech/{quote(ask.vendor_voice, safe='')}"
        body: dict[str, object] = {"text": ask.text, "model_id": self._model_id}
        if self._model.language_code:
            body["language_code"] = ask.language
        if ask.speed != 1.0:
            # Only the speed: the voice's other settings stay as its owner saved them.
            body["voice_settings"] = {"speed": ask.speed}
        pcm = ask.output == "pcm"
        output_format = f"pcm_{self.sample_rate}" if pcm else _ENCODED[AudioFormat(ask.output)]
        return VendorRequest(
            path=f"{path}/stream" if ask.streaming else path,
            params={"output_format": output_format},
            body=body,
        )

    def _describe_error(self, status: int, body: object) -> ErrorDetail:
        detail = body.get("detail") if isinstance(body, dict) else None
        if isinstance(detail, str):
            return ErrorDetail(message=detail)
        if isinstance(detail, list):  # a 422's field errors
            return ErrorDetail(message="; ".join(str(item) for item in detail))
        if not isinstance(detail, dict):
            return ErrorDetail()
        code = detail.get("status")
        message = detail.get("message")
        code = code if isinstance(code, str) else None
        message = message if isinstance(message, str) else None
        if status == 429 and code == "too_many_concurrent_requests":
            return ErrorDetail(code, message, VendorErrorKind.RATE_LIMITED, retryable=False)
        if status == 429 and code == "system_busy":
            return ErrorDetail(code, message, VendorErrorKind.OVERLOADED, retryable=True)
        return ErrorDetail(code, message)
