"""OpenAI's speech API (shared/FIELD_NOTES.md section 9).

``POST {base}/audio/speech`` with ``Authorization: Bearer KEY`` and JSON ``model``, ``voice``,
``input`` (at most 4096 characters), ``response_format`` and ``speed``. ``pcm`` is raw 24 kHz
mono s16le, sent as a chunked body while it is made: the one request serves whole and streamed
segments. OpenAI has no mu-law or 8 kHz output (``response_format`` is mp3, opus, aac, flac,
wav or pcm), so for telephony its PCM is encoded by the product like any engine's.
Errors are ``{"error": {"message", "type", "param", "code"}}``; a 429 whose code is
``insufficient_quota`` is a spent balance, which no retry fixes.
"""

from __future__ import annotations

from shared.engines.vendors.config import VendorConfig
from shared.engines.vendors.engine import SpeechAsk, VendorEngine
from shared.engines.vendors.errors import VendorErrorKind
from shared.engines.vendors.http import Clock, ErrorDetail, VendorRequest, utc_now

DEFAULT_MODEL = "gpt-4o-mini-tts"
PCM_RATE = 24000
MAX_INPUT_CHARS = 4096

# The request takes no language: the model reads it from the text. These are the languages
# OpenAI documents for speech (those where Whisper does well), in ISO 639-1 codes; its voices
# are tuned for English.
LANGUAGES = frozenset(
    {
        "af", "ar", "hy", "az", "be", "bs", "bg", "ca", "zh", "hr", "cs", "da", "nl", "en", "et",
        "fi", "fr", "gl", "de", "el", "he", "hi", "hu", "is", "id", "it", "ja", "kn", "kk", "ko",
        "lv", "lt", "mk", "ms", "mr", "mi", "ne", "no", "fa", "pl", "pt", "ro", "ru", "sr", "sk",
        "sl", "es", "sw", "sv", "tl", "ta", "th", "tr", "uk", "ur", "vi", "cy",
    }
)  # fmt: skip


class OpenAISpeechEngine(VendorEngine):
    name = "openai"
    label = "OpenAI speech"
    speed_range = (0.25, 4.0)

    def __init__(self, config: VendorConfig, *, clock: Clock = utc_now) -> None:
        self._model_id = config.model or DEFAULT_MODEL
        self.sample_rate = PCM_RATE
        self.languages = LANGUAGES
        self.model_version = f"openai:{self._model_id}"
        super().__init__(config, clock=clock)

    def _auth_headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def _char_limit(self) -> int:
        return MAX_INPUT_CHARS

    def _request(self, ask: SpeechAsk) -> VendorRequest:
        # No language field, and only PCM is asked for (native_formats is empty); whole and
        # streamed segments are the same request, whose body streams as it is made.
        body: dict[str, object] = {
            "model": self._model_id,
            "voice": ask.vendor_voice,
            "input": ask.text,
            "response_format": "pcm",
        }
        if ask.speed != 1.0:
            body["speed"] = ask.speed
        return VendorRequest(path="/audio/speech", params={}, body=body)

    def _describe_error(self, status: int, body: object) -> ErrorDetail:
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return ErrorDetail()
        code = error.get("code") if isinstance(error.get("code"), str) else None
        code = code or (error.get("type") if isinstance(error.get("type"), str) else None)
        message = error.get("message") if isinstance(error.get("message"), str) else None
        if status == 429 and code == "insufficient_quota":
            return ErrorDetail(code, message, VendorErrorKind.REFUSED, retryable=False)
        return ErrorDetail(code, message)
