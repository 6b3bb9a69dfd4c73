"""Deepgram Aura (shared/FIELD_NOTES.md section 11).

``POST /v1/speak?model=aura-2-thalia-en&encoding=linear16&sample_rate=24000&container=none``,
header ``Authorization: Token KEY``, JSON ``{"text"}`` (at most 2000 characters); the audio comes
as a chunked body while it is made, so one request serves whole and streamed segments.
``encoding`` and ``container`` are always sent: Deepgram's docs disagree on their defaults.
Telephony asks ``encoding=mulaw&sample_rate=8000&container=none``: raw G.711, no header.

The model is the voice: ``aura-2-thalia-en`` is Aura 2's Thalia, who speaks English (the last
part). Each voice speaks one language, so the engine speaks the languages of its configured
voices, and refuses a voice asked for in another. The request takes no speed: only 1.0.
Errors are ``{"err_code", "err_msg", "request_id"}``.
"""

from __future__ import annotations

from shared.audio.formats import MULAW_RATE, AudioFormat
from shared.engines.vendors.config import VendorConfig
from shared.engines.vendors.engine import SpeechAsk, VendorEngine
from shared.engines.vendors.http import Clock, ErrorDetail, VendorRequest, utc_now

PCM_RATE = 24000
MAX_TEXT_CHARS = 2000
_ENCODED = {AudioFormat.MULAW: ("mulaw", MULAW_RATE)}


class DeepgramAuraEngine(VendorEngine):
    name = "deepgram"
    label = "Deepgram Aura"
    native_formats = frozenset(_ENCODED)

    def __init__(self, config: VendorConfig, *, clock: Clock = utc_now) -> None:
        self.sample_rate = PCM_RATE
        super().__init__(config, clock=clock)
        models = set(self._vendor_voices.values())
        self.languages = frozenset(voice_language(model) for model in models)
        # The family ("aura-2") names the model; each voice's version names its own model.
        self.model_version = "deepgram:" + "+".join(sorted({family(model) for model in models}))

    def _auth_headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Token {key}"}

    def _char_limit(self) -> int:
        return MAX_TEXT_CHARS

    def _voice_language(self, vendor_voice: str) -> str | None:
        return voice_language(vendor_voice)

    def _request(self, ask: SpeechAsk) -> VendorRequest:
        if ask.output == "pcm":
            encoding, rate = "linear16", self.sample_rate
        else:
            encoding, rate = _ENCODED[AudioFormat(ask.output)]
        params = {
            "model": ask.vendor_voice,
            "encoding": encoding,
            "sample_rate": str(rate),
            "container": "none",
        }
        return VendorRequest(path="/v1/speak", params=params, body={"text": ask.text})

    def _describe_error(self, status: int, body: object) -> ErrorDetail:
        if not isinstance(body, dict):
            return ErrorDetail()
        code, message = body.get("err_code"), body.get("err_msg")
        return ErrorDetail(
            code if isinstance(code, str) else None,
            message if isinstance(message, str) else None,
        )


def voice_language(model: str) -> str:
    """``aura-2-celeste-es`` -> ``es``; a name with no language part is taken as English (every
    Aura 1 voice is)."""
    last = model.rsplit("-", 1)[-1].lower()
    return last if len(last) == 2 and last.isalpha() else "en"


def family(model: str) -> str:
    """``aura-2-thalia-en`` -> ``aura-2``, ``aura-asteria-en`` -> ``aura``."""
    parts = model.split("-")
    return "-".join(parts[:2]) if len(parts) > 1 and parts[1].isdigit() else parts[0]
