"""What the three vendor engines share: voices from configuration, checks before any request,
raw PCM16 asked of the vendor and handed on as float32 as it arrives.

Each vendor module says how to ask (path, query, JSON body, auth header), how to read its error
bodies, and which languages, speeds and segment lengths it takes. One call is one attempt:
retries and failover belong to the layer above, which reads the ``VendorError``.

Telephony: ``native_formats`` lists what the vendor encodes itself (mu-law 8 kHz where it offers
it), and ``stream_encoded``/``synthesize_encoded`` ask for exactly those bytes, so the audio layer
can later pass them through without decoding and re-encoding. The job pipeline does not use this
yet: it renders PCM and encodes it itself, as for every engine.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from shared.audio.formats import AudioFormat
from shared.engines.base import Pcm, StreamingTraits, Voice
from shared.engines.vendors.config import VendorConfig
from shared.engines.vendors.errors import VendorError, VendorErrorKind
from shared.engines.vendors.http import (
    Clock,
    ErrorDetail,
    VendorHttp,
    VendorRequest,
    utc_now,
)
from shared.engines.vendors.pcm import S16Decoder
from shared.errors import (
    EngineUnavailable,
    InvalidInput,
    TextTooLong,
    UnsupportedByEngine,
    UnsupportedFormat,
    UnsupportedLanguage,
    VoiceNotFound,
)

# What a request asks the vendor to send: raw PCM16 at the engine's rate, or an encoded format.
Output = Literal["pcm"] | AudioFormat


@dataclass(frozen=True, slots=True)
class SpeechAsk:
    """One checked request, for a vendor module to put in its own shape: ``language`` is the
    base code ("zh" for "zh-cn"); ``streaming``: the vendor's streaming endpoint, where it has
    one of its own."""

    text: str
    vendor_voice: str
    language: str
    speed: float
    output: Output
    streaming: bool


class VendorEngine:
    """Base of the vendor engines; a subclass sets the class attributes and the hooks below."""

    name: ClassVar[str]
    label: ClassVar[str]  # the vendor's name in messages
    native_formats: ClassVar[frozenset[AudioFormat]] = frozenset()
    # The vendor holds all state: every request stands alone, so streams interleave freely and
    # streaming costs what a whole segment does.
    streaming = StreamingTraits(incremental=True, cost_ratio=1.0, interleavable=True)
    # The speeds the vendor takes (both ends included).
    speed_range: ClassVar[tuple[float, float]] = (1.0, 1.0)

    sample_rate: int
    languages: frozenset[str]
    model_version: str

    def __init__(self, config: VendorConfig, *, clock: Clock = utc_now) -> None:
        if config.api_key is None or not config.api_key.get_secret_value().strip():
            raise EngineUnavailable(
                f"the {self.name} engine needs an API key: set {config.key_env}"
            )
        key = config.api_key.get_secret_value()
        self._vendor_voices = _voice_table(config)
        self.default_voice = config.default_voice
        # Read by the engine set: a vendor's requests run on their own threads, this many at once.
        self.max_concurrent = config.max_concurrent
        self._http = VendorHttp(
            self.name,
            base_url=config.base_url,
            auth_headers=self._auth_headers(key),
            connect_timeout_s=config.connect_timeout_s,
            read_timeout_s=config.read_timeout_s,
            describe_error=self._describe_error,
            secrets=(key,),
            clock=clock,
        )

    # --- hooks ---------------------------------------------------------------------------------

    def _auth_headers(self, key: str) -> dict[str, str]:
        raise NotImplementedError

    def _request(self, ask: SpeechAsk) -> VendorRequest:
        raise NotImplementedError

    def _describe_error(self, status: int, body: object) -> ErrorDetail:
        raise NotImplementedError

    def _char_limit(self) -> int:
        raise NotImplementedError

    def _voice_language(self, vendor_voice: str) -> str | None:
        """The one language a voice speaks, for vendors whose voices have one (Deepgram)."""
        return None

    # --- the engine protocol -------------------------------------------------------------------

    def voices(self) -> Sequence[Voice]:
        ids = [self.default_voice, *sorted(set(self._vendor_voices) - {self.default_voice})]
        return [self._voice(voice_id) for voice_id in ids]

    def voice(self, voice_id: str) -> Voice:
        if voice_id not in self._vendor_voices:
            available = ", ".join(voice.id for voice in self.voices())
            raise VoiceNotFound(
                f"{self.label} has no voice {voice_id!r} here; available: {available}"
            )
        return self._voice(voice_id)

    def segment_limit(self, language: str) -> int:
        self._check_language(language)
        return self._char_limit()

    def check(self, *, voice: Voice, language: str, speed: float) -> None:
        """Refuse what this vendor cannot speak (the language, a voice that speaks another
        one, a speed outside its range) with no request made: the handlers ask while they
        prepare a job, so the caller hears why before anything is charged."""
        self._vendor_voice(voice, self._check_language(language), language)
        self._check_speed(speed)

    def synthesize(self, text: str, *, voice: Voice, language: str, speed: float) -> Pcm:
        request = self._checked(text, voice, language, speed, output="pcm", streaming=False)
        chunks = list(self._pcm(request, text))
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)

    def stream(self, text: str, *, voice: Voice, language: str, speed: float) -> Iterator[Pcm]:
        # Checked at the call, not at the first next(): bad input fails before any request.
        request = self._checked(text, voice, language, speed, output="pcm", streaming=True)
        return self._pcm(request, text)

    # --- telephony: the vendor's own encoding ----------------------------------------------------

    def stream_encoded(
        self, text: str, *, voice: Voice, language: str, speed: float, fmt: AudioFormat
    ) -> Iterator[bytes]:
        """``fmt`` (one of ``native_formats``) as the vendor encodes it, bytes as they arrive."""
        if fmt not in self.native_formats:
            offered = ", ".join(sorted(self.native_formats)) or "none"
            raise UnsupportedFormat(
                f"{self.label} does not encode {fmt} itself (it offers: {offered}); "
                "encode its PCM instead"
            )
        request = self._checked(text, voice, language, speed, output=fmt, streaming=True)
        return self._http.post_audio(request, text=text)

    def synthesize_encoded(
        self, text: str, *, voice: Voice, language: str, speed: float, fmt: AudioFormat
    ) -> bytes:
        """All of ``stream_encoded``'s bytes (mu-law: raw 8 kHz G.711, no header)."""
        return b"".join(
            self.stream_encoded(text, voice=voice, language=language, speed=speed, fmt=fmt)
        )

    def close(self) -> None:
        """Let go of the connection pool."""
        self._http.close()

    # --- helpers -------------------------------------------------------------------------------

    def _voice(self, voice_id: str) -> Voice:
        vendor_voice = self._vendor_voices[voice_id]
        return Voice(
            id=voice_id,
            name=voice_id,
            engine=self.name,
            # The vendor voice and rate are part of it: remapping an id changes its audio.
            version=f"{self.model_version}/{vendor_voice}@{self.sample_rate}",
            language=self._voice_language(vendor_voice),
            conditioning=vendor_voice,
        )

    def _checked(
        self,
        text: str,
        voice: Voice,
        language: str,
        speed: float,
        *,
        output: Output,
        streaming: bool,
    ) -> VendorRequest:
        code = self._check_language(language)
        vendor_voice = self._vendor_voice(voice, code, language)
        if not text.strip():
            raise InvalidInput("text is empty")
        if len(text) > self._char_limit():
            raise TextTooLong(
                f"{len(text)} characters in one segment; {self.label} takes {self._char_limit()}"
            )
        self._check_speed(speed)
        return self._request(
            SpeechAsk(
                text, vendor_voice, language=code, speed=speed, output=output, streaming=streaming
            )
        )

    def _vendor_voice(self, voice: Voice, code: str, language: str) -> str:
        """The vendor's id for ``voice``, refused when it speaks one language, not ``code``."""
        # By name: the id a tenant sees is "builtin:<name>" (shared.voices.resolver).
        if voice.engine != self.name or voice.name not in self._vendor_voices:
            raise VoiceNotFound(f"{self.label} has no voice {voice.name!r} here")
        vendor_voice = self._vendor_voices[voice.name]
        spoken = self._voice_language(vendor_voice)
        if spoken is not None and spoken != code:
            raise UnsupportedLanguage(
                f"{self.label} voice {voice.name!r} speaks {spoken}, not {language!r}: set "
                f"language to {spoken!r} or choose a voice that speaks {language!r}"
            )
        return vendor_voice

    def _check_speed(self, speed: float) -> None:
        low, high = self.speed_range
        if not math.isfinite(speed) or not low <= speed <= high:
            allowed = "only 1.0" if low == high else f"{low:g} to {high:g}"
            raise UnsupportedByEngine(
                f"{self.label} takes speeds {allowed}, not {speed:g}: set speed (and any "
                "SSML prosody rate, which multiplies it) within that"
            )

    def _pcm(self, request: VendorRequest, text: str) -> Iterator[Pcm]:
        decoder = S16Decoder()
        for piece in self._http.post_audio(request, text=text):
            pcm = decoder.feed(piece)
            if pcm.size:
                yield pcm
        if decoder.pending:
            raise VendorError(
                self.name, VendorErrorKind.BAD_AUDIO, "sent an odd number of bytes: not PCM16"
            )

    def _check_language(self, language: str) -> str:
        """The base code a vendor takes ("zh-cn" -> "zh"), or ``UnsupportedLanguage``."""
        code = language.lower().split("-")[0]
        if code not in self.languages:
            supported = ", ".join(sorted(self.languages))
            raise UnsupportedLanguage(
                f"{self.label} ({self.model_version}) does not speak {language!r} here; "
                f"supported: {supported}"
            )
        return code


def _voice_table(config: VendorConfig) -> Mapping[str, str]:
    """Tenant voice id -> vendor voice id; the default voice is always among them."""
    table = dict(config.voices)
    table.setdefault(config.default_voice, config.default_voice)
    empty = [voice_id for voice_id, vendor in table.items() if not voice_id or not vendor]
    if empty:
        raise EngineUnavailable(f"voice ids and vendor voice ids must not be empty: {empty}")
    return table
