"""Vendor engines (ElevenLabs, OpenAI speech, Deepgram Aura) against local servers that speak
each vendor's documented request and response shapes (tests/vendor_servers.py).

The audio the servers send is real speech: Piper's, resampled to the vendor's 24 kHz PCM16 (or
encoded as 8 kHz mu-law), so what comes out of an engine can be compared sample for sample with
what its vendor sent.
"""

from __future__ import annotations

import base64
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from serverless_tts.runpod_shapes import run_job
from shared.audio.encode import encode, float_to_int16
from shared.audio.formats import AudioFormat
from shared.config import Settings
from shared.engines.base import Engine, Pcm, Voice
from shared.engines.engine_set import EngineSet
from shared.engines.registry import load_engine
from shared.engines.runner import EngineRunner
from shared.engines.vendors import (
    VENDOR_KINDS,
    DeepgramAuraEngine,
    ElevenLabsEngine,
    OpenAISpeechEngine,
    VendorEngine,
    VendorError,
    vendor_configs,
)
from shared.engines.vendors.concurrent import ConcurrentRunner
from shared.engines.vendors.errors import VendorErrorKind as Kind
from shared.engines.vendors.errors import redact, retry_after_s
from shared.engines.vendors.http import Clock, utc_now
from shared.errors import (
    EngineUnavailable,
    ErrorCode,
    TextTooLong,
    TTSError,
    UnsupportedByEngine,
    UnsupportedFormat,
    UnsupportedLanguage,
    VoiceNotFound,
)
from shared.tenants.base import UNLIMITED
from shared.worker import WorkerContext
from tests.audio_probe import audio_stream, ffmpeg_decode, ffprobe_json
from tests.servers import free_port
from tests.vendor_servers import SHAPES, Reply, VendorServer, vendor_server
from tests.worker_fixtures import usage_rows

KEY = "sk-test-0123456789abcdefSECRET"
TEXT = "The quick brown fox jumps over the lazy dog."
ENGINES: dict[str, type[VendorEngine]] = {
    "elevenlabs": ElevenLabsEngine,
    "openai": OpenAISpeechEngine,
    "deepgram": DeepgramAuraEngine,
}
# Each vendor's key variable (one of its names) and base URL field.
KEY_VARS = {
    "elevenlabs": "TTS_ELEVENLABS_API_KEY",
    "openai": "OPENAI_API_KEY",
    "deepgram": "DEEPGRAM_API_KEY",
}
BASE_URL_FIELDS = {
    "elevenlabs": "elevenlabs_base_url",
    "openai": "openai_speech_base_url",
    "deepgram": "deepgram_base_url",
}
ALL_KEY_VARS = (
    "TTS_ELEVENLABS_API_KEY",
    "ELEVENLABS_API_KEY",
    "OPENAI_API_KEY",
    "TTS_OPENAI_API_KEY",
    "DEEPGRAM_API_KEY",
    "TTS_DEEPGRAM_API_KEY",
)


@dataclass(frozen=True)
class Speech:
    pcm16: bytes  # 24 kHz s16le, what the vendors send for PCM
    mulaw: bytes  # 8 kHz G.711, what they send for telephony

    @property
    def samples(self) -> np.ndarray:
        return np.frombuffer(self.pcm16, dtype="<i2")


@pytest.fixture(scope="module")
def speech(piper_engine: Engine) -> Speech:
    voice = piper_engine.voice(piper_engine.default_voice)
    pcm = piper_engine.synthesize(TEXT, voice=voice, language="en", speed=1.0)
    rate = piper_engine.sample_rate
    return Speech(
        pcm16=encode(pcm, in_rate=rate, fmt=AudioFormat.PCM16, out_rate=24000),
        mulaw=encode(pcm, in_rate=rate, fmt=AudioFormat.MULAW, out_rate=8000),
    )


def split(data: bytes, *cuts: int) -> list[bytes]:
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def assert_same_audio(pcm: Pcm, sent: bytes) -> None:
    """The engine's float32 is the vendor's int16, back through the product's own encoder."""
    assert pcm.dtype == np.float32
    np.testing.assert_array_equal(float_to_int16(pcm), np.frombuffer(sent, dtype="<i2"))


def vendor_settings(vendor: str, base_url: str, **fields: Any) -> Settings:
    return Settings(**{KEY_VARS[vendor]: KEY, BASE_URL_FIELDS[vendor]: base_url, **fields})


EngineFactory = Callable[..., VendorEngine]


@pytest.fixture(params=VENDOR_KINDS)
def vendor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, VendorServer]]:
    """One server per vendor for the module (stopping one waits out its poll interval)."""
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(vendor_server(shape, KEY)) for name, shape in SHAPES.items()
        }


@pytest.fixture
def server(vendor: str, servers: dict[str, VendorServer]) -> Iterator[VendorServer]:
    running = servers[vendor]
    running.reset()
    yield running
    problems = list(running.problems)
    running.reset()
    assert not problems, problems


@pytest.fixture
def make_engine(vendor: str, server: VendorServer) -> Iterator[EngineFactory]:
    """Engines of this test's vendor, aimed at its server; ``fields`` are more settings."""
    made: list[VendorEngine] = []

    def make(*, clock: Clock = utc_now, base_url: str | None = None, **fields: Any) -> VendorEngine:
        settings = vendor_settings(vendor, base_url or server.base_url, **fields)
        made.append(ENGINES[vendor](vendor_configs(settings)[vendor], clock=clock))
        return made[-1]

    yield make
    for engine in made:
        engine.close()


@pytest.fixture
def engine(make_engine: EngineFactory) -> VendorEngine:
    return make_engine()


@pytest.fixture
def vendor_worker(
    make_engine: EngineFactory, make_worker: Callable[[Engine], WorkerContext]
) -> Callable[..., WorkerContext]:
    """A worker on an engine of this test's vendor, ``fields`` more settings of the engine."""

    def made(**fields: Any) -> WorkerContext:
        return make_worker(make_engine(**fields))

    return made


def default_voice(engine: VendorEngine) -> Voice:
    return engine.voice(engine.default_voice)


def speak(engine: VendorEngine, text: str = TEXT, **overrides: Any) -> Pcm:
    options: dict[str, Any] = {"voice": default_voice(engine), "language": "en", "speed": 1.0}
    return engine.synthesize(text, **{**options, **overrides})


def assert_pcm_request(vendor: str, server: VendorServer, *, streaming: bool) -> None:
    """The request is the documented one for raw 24 kHz PCM16 with the defaults."""
    body = server.requests[-1].json()
    if vendor == "elevenlabs":
        voice_path = "/v1/text-to-speech/JBFqnCBsd6RMkjVDRZzb"
        assert server.route() == (f"{voice_path}/stream" if streaming else voice_path)
        assert server.query() == {"output_format": ["pcm_24000"]}
        assert body == {"text": TEXT, "model_id": "eleven_flash_v2_5", "language_code": "en"}
    elif vendor == "openai":
        assert body == {
            "model": "gpt-4o-mini-tts",
            "voice": "alloy",
            "input": TEXT,
            "response_format": "pcm",
        }
    else:
        assert server.query() == {
            "model": ["aura-2-thalia-en"],
            "encoding": ["linear16"],
            "sample_rate": ["24000"],
            "container": ["none"],
        }
        assert body == {"text": TEXT}


# --- success -----------------------------------------------------------------------------------


def test_stream_yields_audio_before_the_vendor_has_sent_it_all(
    vendor: str, server: VendorServer, engine: VendorEngine, speech: Speech
) -> None:
    # The server sends 1001 bytes, then waits for ``held`` before the rest: the engine can only
    # have those 500 samples (the odd byte waiting for its other half) until the test sets it.
    held = threading.Event()
    server.answer(Reply(pieces=split(speech.pcm16, 1001, 9001), hold=held))
    chunks = engine.stream(TEXT, voice=default_voice(engine), language="en", speed=1.0)
    early: list[Pcm] = []
    while sum(chunk.size for chunk in early) < 500:
        early.append(next(chunks))
    assert sum(chunk.size for chunk in early) == 500
    held.set()
    rest = list(chunks)
    assert_same_audio(np.concatenate([*early, *rest]), speech.pcm16)
    assert_pcm_request(vendor, server, streaming=True)


def test_synthesize_joins_a_body_split_at_odd_bytes(
    vendor: str, server: VendorServer, engine: VendorEngine, speech: Speech
) -> None:
    server.answer(Reply(pieces=split(speech.pcm16, 333, 777, 5001)))
    assert_same_audio(speak(engine), speech.pcm16)
    assert_pcm_request(vendor, server, streaming=False)


def test_engines_follow_the_engine_protocol(engine: VendorEngine, vendor: str) -> None:
    assert isinstance(engine, Engine)
    assert engine.name == vendor
    assert engine.sample_rate == 24000
    assert engine.streaming.incremental and engine.streaming.interleavable
    assert engine.streaming.cheap


@pytest.mark.parametrize("vendor", ["elevenlabs", "deepgram"])
def test_telephony_asks_the_vendor_for_mulaw_directly(
    vendor: str, server: VendorServer, engine: VendorEngine, speech: Speech
) -> None:
    assert AudioFormat.MULAW in engine.native_formats
    server.answer(Reply(pieces=split(speech.mulaw, 161, 2001), content_type="audio/basic"))
    audio = engine.synthesize_encoded(
        TEXT, voice=default_voice(engine), language="en", speed=1.0, fmt=AudioFormat.MULAW
    )
    assert audio == speech.mulaw
    decoded = ffmpeg_decode(audio, "ulaw", input_args=("-f", "mulaw", "-ar", "8000"))
    assert decoded.size == len(speech.mulaw)
    if vendor == "elevenlabs":
        assert server.route().endswith("/stream")
        assert server.query() == {"output_format": ["ulaw_8000"]}
    else:
        assert server.query()["encoding"] == ["mulaw"]
        assert server.query()["sample_rate"] == ["8000"]
        assert server.query()["container"] == ["none"]


@pytest.mark.parametrize("vendor", ["openai"])
def test_openai_has_no_mulaw_of_its_own(server: VendorServer, engine: VendorEngine) -> None:
    assert engine.native_formats == frozenset()
    with pytest.raises(UnsupportedFormat, match="does not encode mulaw"):
        engine.synthesize_encoded(
            TEXT, voice=default_voice(engine), language="en", speed=1.0, fmt=AudioFormat.MULAW
        )
    assert server.requests == []


# --- failures ----------------------------------------------------------------------------------

# vendor, status, the vendor's error code, headers -> kind, retryable, retry_after_s
ERROR_CASES = [
    ("elevenlabs", 401, "invalid_api_key", {}, Kind.AUTH, False, None),
    ("openai", 401, "invalid_api_key", {}, Kind.AUTH, False, None),
    ("deepgram", 401, "INVALID_AUTH", {}, Kind.AUTH, False, None),
    ("deepgram", 403, "FORBIDDEN", {"Retry-After": "5"}, Kind.AUTH, False, 5.0),
    ("elevenlabs", 429, "too_many_concurrent_requests", {"Retry-After": "2"},
     Kind.RATE_LIMITED, False, 2.0),
    ("elevenlabs", 429, "system_busy", {"Retry-After": "3"}, Kind.OVERLOADED, True, 3.0),
    ("openai", 429, "rate_limit_exceeded", {"Retry-After": "7", "retry-after-ms": "6500"},
     Kind.RATE_LIMITED, True, 6.5),
    ("openai", 429, "insufficient_quota", {}, Kind.REFUSED, False, None),
    ("openai", 429, "rate_limit_exceeded", {"x-should-retry": "false"},
     Kind.RATE_LIMITED, False, None),
    ("deepgram", 429, "TOO_MANY_REQUESTS", {"Retry-After": "7"}, Kind.RATE_LIMITED, True, 7.0),
    ("elevenlabs", 500, "internal_error", {}, Kind.SERVER, True, None),
    ("openai", 500, "server_error", {}, Kind.SERVER, True, None),
    ("deepgram", 502, "BAD_GATEWAY", {}, Kind.SERVER, True, None),
    ("elevenlabs", 503, "service_unavailable", {"Retry-After": "30"}, Kind.OVERLOADED, True, 30.0),
    ("openai", 503, "overloaded", {}, Kind.OVERLOADED, True, None),
    ("deepgram", 503, "SERVICE_UNAVAILABLE", {}, Kind.OVERLOADED, True, None),
    ("elevenlabs", 422, "invalid_voice_settings", {}, Kind.REFUSED, False, None),
    ("openai", 400, "invalid_value", {"Retry-After": "1"}, Kind.REFUSED, False, 1.0),
    ("deepgram", 400, "INVALID_QUERY_PARAMETER", {}, Kind.REFUSED, False, None),
    ("deepgram", 402, "ASR_PAYMENT_REQUIRED", {}, Kind.REFUSED, False, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("vendor", "status", "code", "headers", "kind", "retryable", "retry_after"),
    ERROR_CASES,
    ids=[f"{case[0]}-{case[1]}-{case[2]}" for case in ERROR_CASES],
)
def test_an_error_answer_is_typed_for_failover(
    server: VendorServer,
    engine: VendorEngine,
    vendor: str,
    status: int,
    code: str,
    headers: dict[str, str],
    kind: Kind,
    retryable: bool,
    retry_after: float | None,
) -> None:
    server.answer(server.error_reply(status, code, "the vendor says no", headers))
    with pytest.raises(VendorError) as caught:
        speak(engine)
    err = caught.value
    assert (err.vendor, err.status, err.kind) == (vendor, status, kind)
    assert err.retryable is retryable
    assert err.retry_after_s == retry_after
    assert err.code is ErrorCode.ENGINE_UNAVAILABLE
    assert code in err.message and "the vendor says no" in err.message


@pytest.mark.parametrize("vendor", ["deepgram"])
def test_retry_after_as_an_http_date_counts_from_the_clock(
    server: VendorServer, make_engine: EngineFactory
) -> None:
    engine = make_engine(clock=lambda: datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC))
    date = "Tue, 01 Jan 2030 12:01:30 GMT"
    server.answer(server.error_reply(429, "TOO_MANY_REQUESTS", "slow down", {"Retry-After": date}))
    with pytest.raises(VendorError) as caught:
        speak(engine)
    assert caught.value.retry_after_s == 90.0
    assert caught.value.retryable


def test_retry_after_reads_every_form_the_vendors_send() -> None:
    now = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_s({"retry-after": "120"}, now) == 120.0
    assert retry_after_s({"retry-after": " 1.5 "}, now) == 1.5
    assert retry_after_s({"retry-after": "Tue, 01 Jan 2030 12:00:10 GMT"}, now) == 10.0
    assert retry_after_s({"retry-after": "Tue, 01 Jan 2030 11:00:00 GMT"}, now) == 0.0
    assert retry_after_s({"retry-after": "-4"}, now) == 0.0
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "9"}, now) == 0.25
    assert retry_after_s({"retry-after": "soon"}, now) is None
    assert retry_after_s({"retry-after": "nan"}, now) is None
    assert retry_after_s({}, now) is None


def test_a_vendor_that_stalls_before_answering_times_out(
    server: VendorServer, make_engine: EngineFactory
) -> None:
    engine = make_engine(vendor_read_timeout_s=0.3)
    server.answer(Reply(stall_after=0))
    with pytest.raises(VendorError) as caught:
        speak(engine)
    err = caught.value
    assert (err.kind, err.retryable, err.status) == (Kind.TIMEOUT, True, None)


def test_a_stream_that_stalls_part_way_times_out_after_its_first_audio(
    server: VendorServer, make_engine: EngineFactory, speech: Speech
) -> None:
    engine = make_engine(vendor_read_timeout_s=0.3)
    server.answer(Reply(pieces=split(speech.pcm16, 4000), stall_after=1))
    chunks = engine.stream(TEXT, voice=default_voice(engine), language="en", speed=1.0)
    got = 0
    with pytest.raises(VendorError) as caught:
        for chunk in chunks:
            got += chunk.size
    assert got == 2000
    assert (caught.value.kind, caught.value.retryable) == (Kind.TIMEOUT, True)


def test_a_vendor_that_cannot_be_reached_is_retryable(make_engine: EngineFactory) -> None:
    base = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    engine = make_engine(base_url=base, vendor_connect_timeout_s=2)
    with pytest.raises(VendorError) as caught:
        speak(engine)
    assert (caught.value.kind, caught.value.retryable) == (Kind.UNREACHABLE, True)


MALFORMED = {
    "odd_byte_count": lambda audio: Reply(pieces=[audio[:1001]]),
    "json_with_200": lambda audio: Reply(
        pieces=[b'{"detail": {"status": "ok", "message": "no audio"}}'],
        content_type="application/json",
    ),
    "html_page": lambda audio: Reply(
        pieces=[b"<!DOCTYPE html><html><body>Gateway says hi</body></html>"],
        content_type="text/html; charset=utf-8",
    ),
    "empty_body": lambda audio: Reply(pieces=[]),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_audio_is_refused_not_played(
    server: VendorServer, engine: VendorEngine, speech: Speech, case: str
) -> None:
    server.answer(MALFORMED[case](speech.pcm16))
    with pytest.raises(VendorError) as caught:
        speak(engine)
    assert (caught.value.kind, caught.value.retryable) == (Kind.BAD_AUDIO, False)


def test_messages_never_carry_the_key_or_the_text(
    server: VendorServer, engine: VendorEngine
) -> None:
    quoted = f"invalid request {TEXT!r} with key {KEY}"
    partly = f"could not read '{TEXT[4:30]}...'"
    for message in (quoted, partly):
        server.answer(server.error_reply(400, "bad_request", message))
        with pytest.raises(VendorError) as caught:
            speak(engine)
        said = f"{caught.value} {caught.value.args} {caught.value!r}"
        assert KEY not in said
        assert TEXT[4:30] not in said and TEXT not in said
        assert "bad_request" in said


def test_redact_keeps_a_vendors_message_that_quotes_nothing() -> None:
    assert redact("voice_id  not\nfound", [KEY, TEXT]) == "voice_id not found"
    assert "[redacted]" in redact(f"key {KEY[:4]}... is {KEY}", [KEY])


# --- checks before any request -----------------------------------------------------------------


def test_bad_input_fails_at_the_call_with_no_request(
    vendor: str, server: VendorServer, engine: VendorEngine, piper_engine: Engine
) -> None:
    voice = default_voice(engine)
    options = {"voice": voice, "language": "en", "speed": 1.0}
    other = piper_engine.voice(piper_engine.default_voice)
    with pytest.raises(VoiceNotFound):
        engine.stream(TEXT, **{**options, "voice": other})
    with pytest.raises(VoiceNotFound, match="available"):
        engine.voice("nobody")
    with pytest.raises(UnsupportedLanguage):
        engine.stream(TEXT, **{**options, "language": "xx"})
    with pytest.raises(TextTooLong):
        engine.stream("a" * (engine.segment_limit("en") + 1), **options)
    assert server.requests == []


# vendor, extra settings, voice asked for, language -> where the vendor voice must appear
VOICE_CASES = [
    ("elevenlabs", {"elevenlabs_voices": {"anna": "AnnaVendorId0123"}}, "anna", "de"),
    ("openai", {"openai_speech_voices": {"narrator": "nova"}}, "narrator", "fr"),
    ("deepgram", {"deepgram_voices": {"celeste": "aura-2-celeste-es"}}, "celeste", "es"),
]


@pytest.mark.parametrize(("vendor", "fields", "voice_id", "language"), VOICE_CASES)
def test_voices_come_from_configuration(
    vendor: str,
    server: VendorServer,
    make_engine: EngineFactory,
    speech: Speech,
    fields: dict[str, Any],
    voice_id: str,
    language: str,
) -> None:
    engine = make_engine(**fields)
    [mapped] = fields.values()
    vendor_voice = mapped[voice_id]
    assert [voice.id for voice in engine.voices()] == [engine.default_voice, voice_id]
    voice = engine.voice(voice_id)
    assert voice.version == f"{engine.model_version}/{vendor_voice}@24000"
    assert voice.version != default_voice(engine).version
    server.answer(Reply(pieces=[speech.pcm16]))
    assert_same_audio(speak(engine, voice=voice, language=language), speech.pcm16)
    body = server.requests[-1].json()
    if vendor == "elevenlabs":
        assert server.route() == f"/v1/text-to-speech/{vendor_voice}"
        assert body["language_code"] == "de"
    elif vendor == "openai":
        assert body["voice"] == vendor_voice
    else:
        assert server.query()["model"] == [vendor_voice]
        assert voice.language == "es"
        assert engine.languages == frozenset({"en", "es"})
        with pytest.raises(UnsupportedLanguage, match="speaks es"):
            speak(engine, voice=voice, language="en")


@pytest.mark.parametrize(
    ("vendor", "speed", "sent"),
    [("elevenlabs", 1.1, {"voice_settings": {"speed": 1.1}}), ("openai", 1.5, {"speed": 1.5})],
)
def test_speed_is_asked_of_the_vendor(
    server: VendorServer, engine: VendorEngine, speech: Speech, speed: float, sent: dict
) -> None:
    server.answer(Reply(pieces=[speech.pcm16]))
    speak(engine, speed=speed)
    assert sent.items() <= server.requests[-1].json().items()


@pytest.mark.parametrize(("vendor", "speed"), [("elevenlabs", 1.5), ("deepgram", 1.2)])
def test_a_speed_the_vendor_cannot_take_is_refused_before_any_request(
    server: VendorServer, engine: VendorEngine, speed: float
) -> None:
    with pytest.raises(UnsupportedByEngine):
        speak(engine, speed=speed)
    assert server.requests == []


@pytest.mark.parametrize(
    ("vendor", "model", "version", "limits"),
    [
        ("elevenlabs", "eleven_flash_v2_5", "elevenlabs:eleven_flash_v2_5",
         {"en": 40_000, "hu": 40_000, "zh-cn": 40_000, "xx": None}),
        ("elevenlabs", "eleven_multilingual_v2", "elevenlabs:eleven_multilingual_v2",
         {"en": 10_000, "de": 10_000, "hu": None}),
        ("elevenlabs", "eleven_future_v9", "elevenlabs:eleven_future_v9",
         {"en": 2_500, "de": None}),
        ("openai", "tts-1", "openai:tts-1", {"en": 4096, "cy": 4096, "zh-cn": 4096, "xx": None}),
        ("deepgram", None, "deepgram:aura-2", {"en": 2000, "es": None}),
    ],
)  # fmt: skip
def test_model_versions_languages_and_segment_limits(
    vendor: str,
    make_engine: EngineFactory,
    model: str | None,
    version: str,
    limits: dict[str, int | None],
) -> None:
    fields = {}
    if model is not None:
        fields = {"elevenlabs_model" if vendor == "elevenlabs" else "openai_speech_model": model}
    engine = make_engine(**fields)
    assert engine.model_version == version
    for language, limit in limits.items():
        if limit is None:
            with pytest.raises(UnsupportedLanguage):
                engine.segment_limit(language)
        else:
            assert engine.segment_limit(language) == limit


@pytest.mark.parametrize("vendor", ["elevenlabs"])
def test_language_code_goes_only_to_models_that_take_it(
    server: VendorServer, make_engine: EngineFactory, speech: Speech
) -> None:
    engine = make_engine(elevenlabs_model="eleven_multilingual_v2")
    server.answer(Reply(pieces=[speech.pcm16]))
    speak(engine, language="de")
    assert "language_code" not in server.requests[-1].json()


@pytest.mark.parametrize("vendor", ["elevenlabs"])
def test_elevenlabs_asks_for_the_configured_pcm_rate(
    server: VendorServer, make_engine: EngineFactory
) -> None:
    engine = make_engine(elevenlabs_pcm_rate=16000)
    assert engine.sample_rate == 16000
    server.answer(Reply(pieces=[b"\x01\x00" * 1600]))
    assert speak(engine).size == 1600
    assert server.query() == {"output_format": ["pcm_16000"]}


# --- configuration and the registry ------------------------------------------------------------


def _clear_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ALL_KEY_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("vendor", "variable"),
    [
        ("elevenlabs", "TTS_ELEVENLABS_API_KEY"),
        ("elevenlabs", "ELEVENLABS_API_KEY"),
        ("openai", "OPENAI_API_KEY"),
        ("openai", "TTS_OPENAI_API_KEY"),
        ("deepgram", "DEEPGRAM_API_KEY"),
        ("deepgram", "TTS_DEEPGRAM_API_KEY"),
    ],
)
def test_the_registry_loads_a_vendor_engine_by_name(
    monkeypatch: pytest.MonkeyPatch, vendor: str, variable: str
) -> None:
    _clear_keys(monkeypatch)
    monkeypatch.setenv(variable, KEY)
    config = vendor_configs(Settings())[vendor]
    assert KEY not in repr(config)
    engine = load_engine(vendor, vendors=vendor_configs(Settings()))
    try:
        assert isinstance(engine, ENGINES[vendor])
        assert engine.name == vendor
    finally:
        assert isinstance(engine, VendorEngine)
        engine.close()


@pytest.mark.parametrize("vendor", VENDOR_KINDS)
def test_a_missing_key_names_its_variables(monkeypatch: pytest.MonkeyPatch, vendor: str) -> None:
    _clear_keys(monkeypatch)
    with pytest.raises(EngineUnavailable) as caught:
        load_engine(vendor, vendors=vendor_configs(Settings()))
    names = [name for name in ALL_KEY_VARS if vendor.upper() in name]
    assert all(name in caught.value.message for name in names)
    with pytest.raises(EngineUnavailable, match="vendor_configs"):
        load_engine(vendor)


# --- a whole worker ----------------------------------------------------------------------------


def test_a_worker_with_a_vendor_engine_answers_a_synthesize_job(
    vendor: str,
    server: VendorServer,
    engine: VendorEngine,
    speech: Speech,
    make_worker: Callable[[Engine], WorkerContext],
) -> None:
    server.default = Reply(pieces=split(speech.pcm16, 4097))
    ctx = make_worker(engine)
    key = ctx.tenants.create_tenant("acme", UNLIMITED).api_key
    [item] = run_job({"api_key": key, "text": TEXT, "format": "wav", "delivery": "base64"}, ctx)
    assert item["engine"] == vendor
    assert item["voice_version"].startswith(engine.model_version + "/")
    audio = base64.b64decode(item["audio_base64"])
    assert audio_stream(ffprobe_json(audio, "wav"))["sample_rate"] == "24000"
    np.testing.assert_array_equal(ffmpeg_decode(audio, "wav"), speech.samples)
    [health] = run_job({"action": "health", "api_key": key}, ctx)
    assert (health["engine"], health["model_version"]) == (vendor, engine.model_version)
    streamed = run_job({"api_key": key, "text": TEXT, "format": "pcm16", "delivery": "stream"}, ctx)
    assert streamed[-1]["final"] and streamed[-1]["engine"] == vendor
    pcm16 = b"".join(base64.b64decode(item["audio_base64"]) for item in streamed)
    assert pcm16 == speech.pcm16
    assert len(server.requests) == 2


# --- vendor requests off the engine thread -----------------------------------------------------


def test_vendor_engines_run_beside_the_engine_thread_with_their_configured_limit(
    engine: VendorEngine, make_engine: EngineFactory, piper_engine: Engine
) -> None:
    limited = make_engine(vendor_max_concurrent=3)
    engines = EngineSet([piper_engine, limited])
    try:
        assert isinstance(engines.runner("piper"), EngineRunner)
        assert isinstance(engines.runner(limited.name), ConcurrentRunner)
        assert limited.max_concurrent == 3
        assert engine.max_concurrent == Settings().vendor_max_concurrent
    finally:
        engines.close()


@dataclass
class TwoStreams:
    """Two stream jobs, each read to its end on a thread of its own (its audio in its list);
    the first one's request is answered only once ``held`` is set."""

    held: threading.Event
    threads: list[threading.Thread]
    audio: list[list[bytes]]

    def finish(self) -> list[list[bytes]]:
        self.held.set()
        for thread in self.threads:
            thread.join(timeout=60)
        return self.audio


def start_two_streams(server: VendorServer, speech: Speech, ctx: WorkerContext) -> TwoStreams:
    """The first stream started and its request at ``server``, then the second started."""
    streams = TwoStreams(threading.Event(), [], [])
    server.answer(Reply(pieces=split(speech.pcm16, 4000), wait=streams.held))
    server.default = Reply(pieces=split(speech.pcm16, 4000))
    key = ctx.tenants.create_tenant("acme", UNLIMITED).api_key
    job = {"api_key": key, "text": TEXT, "delivery": "stream", "format": "pcm16"}
    for count in (1, 2):
        audio: list[bytes] = []

        def read(audio: list[bytes] = audio) -> None:
            items = run_job(job, ctx)
            audio.append(b"".join(base64.b64decode(item["audio_base64"]) for item in items))

        streams.audio.append(audio)
        streams.threads.append(threading.Thread(target=read, daemon=True))
        streams.threads[-1].start()
        if count == 1:
            assert server.wait_for_requests(1)
    return streams


def test_two_vendor_streams_overlap_while_the_first_is_held(
    server: VendorServer, speech: Speech, vendor_worker: Callable[..., WorkerContext]
) -> None:
    # Reads wait longer than the test does: a held request cannot time out and free the way.
    ctx = vendor_worker(vendor_read_timeout_s=60)
    streams = start_two_streams(server, speech, ctx)
    try:
        # The first request still waits for its answer, and the second reaches the vendor.
        assert server.wait_for_requests(2, timeout_s=30) and not streams.held.is_set()
    finally:
        audio = streams.finish()
    assert audio == [[speech.pcm16], [speech.pcm16]]


def test_past_its_limit_a_vendor_request_waits_for_its_turn(
    vendor: str, server: VendorServer, speech: Speech, vendor_worker: Callable[..., WorkerContext]
) -> None:
    ctx = vendor_worker(vendor_max_concurrent=1, vendor_read_timeout_s=60)
    streams = start_two_streams(server, speech, ctx)
    try:
        runner = ctx.engines.runner(vendor)
        for _ in range(600):  # the second render submitted (a bound, not a clock)
            if runner.active == 2:
                break
            time.sleep(0.01)
        assert runner.active == 2
        assert not server.wait_for_requests(2, timeout_s=0.5)  # it waits its turn here
    finally:
        audio = streams.finish()
    assert audio == [[speech.pcm16], [speech.pcm16]]
    assert len(server.requests) == 2


# --- prepare: what the engine cannot speak is refused before the job is charged ----------------


def refused(ctx: WorkerContext, key: str, **fields: Any) -> TTSError:
    job = {"api_key": key, "text": TEXT, "delivery": "base64", **fields}
    with pytest.raises(TTSError) as caught:
        run_job(job, ctx)
    return caught.value


FAST_SSML = '<speak><prosody rate="x-fast">Hi.</prosody></speak>'


@pytest.mark.parametrize(
    ("vendor", "fields", "allowed"),
    [
        ("elevenlabs", {"speed": 1.5}, "0.7 to 1.2"),
        ("elevenlabs", {"text": None, "ssml": FAST_SSML}, "0.7 to 1.2"),  # SSML's rate counts
        ("deepgram", {"speed": 1.1}, "only 1.0"),
    ],
)
def test_a_speed_the_engine_cannot_take_is_refused_before_the_job_is_charged(
    server: VendorServer,
    engine: VendorEngine,
    make_worker: Callable[[Engine], WorkerContext],
    fields: dict[str, Any],
    allowed: str,
) -> None:
    ctx = make_worker(engine)
    key = ctx.tenants.create_tenant("acme", UNLIMITED).api_key
    error = refused(ctx, key, **fields)
    assert error.code is ErrorCode.UNSUPPORTED_BY_ENGINE
    assert allowed in error.message and "set speed" in error.message
    assert server.requests == []
    [row] = usage_rows(ctx)
    assert (row["error_code"], row["input_chars"]) == ("unsupported_by_engine", 0)


@pytest.mark.parametrize("vendor", ["deepgram"])
def test_a_voice_that_speaks_another_language_is_refused_before_the_job_is_charged(
    server: VendorServer, vendor_worker: Callable[..., WorkerContext]
) -> None:
    ctx = vendor_worker(deepgram_voices={"celeste": "aura-2-celeste-es"})
    key = ctx.tenants.create_tenant("acme", UNLIMITED).api_key
    error = refused(ctx, key, voice="builtin:celeste", language="en")
    assert error.code is ErrorCode.UNSUPPORTED_LANGUAGE
    assert "speaks es" in error.message and "set language to 'es'" in error.message
    assert server.requests == []
    [row] = usage_rows(ctx)
    assert (row["error_code"], row["input_chars"]) == ("unsupported_language", 0)
