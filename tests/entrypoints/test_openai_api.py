"""OpenAI-compatible speech (``POST /v1/audio/speech``) with the official ``openai`` SDK as the
client, against the app under real uvicorn on loopback, real Piper and the tiny real XTTS."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import openai
import pytest

from shared.engines.base import Engine
from shared.errors import EngineUnavailable
from shared.tenants.base import UNLIMITED, TenantLimits
from tests.audio_probe import audio_stream, ffprobe_json, probe_duration_s
from tests.engine_wrappers import RecordingEngine
from tests.entrypoints.web_helpers import Served, Start
from tests.worker_fixtures import usage_rows

TEXT = "Hello from the OpenAI route."
ASK: dict[str, Any] = {"model": "tts-1", "voice": "alloy", "input": TEXT}


def sdk(served: Served, key: str, *, max_retries: int = 0) -> openai.OpenAI:
    base = str(served.http.base_url).rstrip("/")
    return openai.OpenAI(api_key=key, base_url=f"{base}/v1", max_retries=max_retries)


@pytest.fixture
def client(served: Served, key: str) -> Iterator[openai.OpenAI]:
    with sdk(served, key) as made:
        yield made


def tenant_key(served: Served, **limits: int) -> str:
    """A tenant limited only as ``limits`` say."""
    chosen: TenantLimits = replace(UNLIMITED, **limits)
    return served.ctx.tenants.create_tenant("limited", chosen).api_key


# --- formats: each one the file OpenAI names, as ffprobe reads it --------------------------------

# response_format -> (codec, Content-Type, file suffix for ffprobe, container)
FILES = {
    "mp3": ("mp3", "audio/mpeg", "mp3", "mp3"),
    "opus": ("opus", "audio/ogg", "ogg", "ogg"),
    "aac": ("aac", "audio/aac", "aac", "aac"),
    "flac": ("flac", "audio/flac", "flac", "flac"),
    "wav": ("pcm_s16le", "audio/wav", "wav", "wav"),
}


def opus_input_rate(data: bytes) -> int:
    """RFC 7845 section 5.1: "OpusHead", version(1), channels(1), pre-skip(2), input rate(4)."""
    at = data.find(b"OpusHead")
    assert at >= 0, "no OpusHead packet"
    return int.from_bytes(data[at + 12 : at + 16], "little")


@pytest.mark.parametrize("response_format", FILES)
def test_each_response_format_is_the_file_openai_names(
    client: openai.OpenAI, piper_engine: Engine, response_format: str
) -> None:
    codec, content_type, suffix, container = FILES[response_format]
    reply = client.audio.speech.create(**ASK, response_format=response_format)  # type: ignore[arg-type]
    assert reply.response.headers["content-type"] == content_type
    probe = ffprobe_json(reply.content, suffix)
    stream = audio_stream(probe)
    # libopus runs at 24 kHz and not at Piper's 22,050 Hz; the others keep the engine's rate.
    rate = 24_000 if response_format == "opus" else piper_engine.sample_rate
    assert int(reply.response.headers["x-sample-rate"]) == rate
    # ffprobe reports Opus at its decoder's 48 kHz; the encoded rate is in the OpusHead packet.
    probed = opus_input_rate(reply.content) if response_format == "opus" else stream["sample_rate"]
    assert (stream["codec_name"], int(probed), stream["channels"]) == (codec, rate, 1)
    assert probe["format"]["format_name"] == container
    assert probe_duration_s(probe) > 1.0


@pytest.mark.parametrize("engine_fixture", ["piper_engine", "xtts_engine"])
def test_pcm_is_headerless_24khz_mono_s16le_as_long_as_the_speech(
    start: Start, request: pytest.FixtureRequest, engine_fixture: str
) -> None:
    served = start(request.getfixturevalue(engine_fixture))
    with sdk(served, served.new_key()) as client:
        reply = client.audio.speech.create(**ASK, response_format="pcm")
    pcm = reply.content
    assert reply.response.headers["content-type"] == "audio/pcm"
    assert reply.response.headers["x-sample-rate"] == "24000"
    assert not pcm.startswith(b"RIFF") and len(pcm) % 2 == 0
    pcm_s = len(pcm) / 2 / 24_000
    [row] = usage_rows(served.ctx)
    assert row["format"] == "pcm16"
    # What the engine made, counted at its own rate (Piper's is 22,050 Hz): read at any other
    # rate than 24 kHz, the bytes would last a different time.
    assert abs(pcm_s - row["audio_seconds"]) < 0.01


def test_the_openai_and_engine_model_names_all_speak(served: Served, client: openai.OpenAI) -> None:
    models = ["tts-1", "tts-1-hd", "gpt-4o-mini-tts", *served.ctx.engines.names]
    for model in models:
        reply = client.audio.speech.create(
            model=model,
            voice="nova",
            input=TEXT,
            response_format="wav",
            instructions="Speak cheerfully.",  # accepted, not spoken
        )
        assert audio_stream(ffprobe_json(reply.content, "wav"))["codec_name"] == "pcm_s16le"
    assert len(usage_rows(served.ctx)) == len(models)


# --- streaming ----------------------------------------------------------------------------------


def test_streamed_audio_arrives_before_the_later_sentences_are_spoken(
    start: Start, piper_engine: Engine
) -> None:
    first_bytes = threading.Event()
    second = "The second sentence waits its turn."

    def hold(text: str) -> None:
        if text == second:  # the engine may not speak it until the client has audio
            assert first_bytes.wait(timeout=60), "no audio reached the client first"

    recording = RecordingEngine(piper_engine, hold=hold)
    served = start(recording)
    text = f"The first sentence is spoken now. {second} The third sentence ends it."
    with (
        sdk(served, served.new_key()) as client,
        client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input=text, response_format="mp3", stream_format="audio"
        ) as response,
    ):
        chunks = response.iter_bytes()
        first = next(chunks)
        spoken_by_then = [said for kind, said in recording.events if kind == "end"]
        first_bytes.set()
        body = first + b"".join(chunks)
    assert first and second not in spoken_by_then
    assert response.headers["content-type"] == "audio/mpeg"
    assert ("end", second) in recording.events  # then it was spoken, into the same reply
    probe = ffprobe_json(body, "mp3")
    assert audio_stream(probe)["codec_name"] == "mp3" and probe_duration_s(probe) > 3.0


def sse_events(response: Any) -> list[dict[str, Any]]:
    return [
        json.loads(line.removeprefix("data: "))
        for line in response.iter_lines()
        if line.startswith("data: ")
    ]


@pytest.mark.parametrize(("response_format", "codec"), [("mp3", "mp3"), ("flac", "flac")])
def test_sse_sends_base64_audio_deltas_then_done_with_character_usage(
    client: openai.OpenAI, response_format: str, codec: str
) -> None:
    """mp3 streams as it is made; flac cannot stream, so its whole file is one delta."""
    text = "Server sent events carry this. In several pieces."
    with client.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts",
        voice="alloy",
        input=text,
        response_format=response_format,  # type: ignore[arg-type]
        stream_format="sse",
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    *deltas, done = events
    assert deltas and all(event["type"] == "speech.audio.delta" for event in deltas)
    if response_format == "flac":
        assert len(deltas) == 1
    assert done == {
        "type": "speech.audio.done",
        "usage": {"input_tokens": len(text), "output_tokens": 0, "total_tokens": len(text)},
    }
    audio = b"".join(base64.b64decode(event["audio"]) for event in deltas)
    assert audio_stream(ffprobe_json(audio, response_format))["codec_name"] == codec


def test_a_failure_mid_sse_stream_ends_it_with_an_error_event(
    start: Start, piper_engine: Engine
) -> None:
    def hold(text: str) -> None:
        if text.startswith("Second"):
            raise EngineUnavailable("the engine fell over mid-stream")

    served = start(RecordingEngine(piper_engine, hold=hold))
    with (
        sdk(served, served.new_key()) as client,
        client.audio.speech.with_streaming_response.create(
            model="tts-1",
            voice="alloy",
            input="First is spoken. Second fails.",
            response_format="pcm",
            stream_format="sse",
        ) as response,
    ):
        *deltas, last = sse_events(response)
    assert deltas and all(event["type"] == "speech.audio.delta" for event in deltas)
    assert last == {
        "type": "error",
        "error": {
            "message": "the engine fell over mid-stream",
            "type": "server_error",
            "param": None,
            "code": "engine_unavailable",
        },
    }


# --- refusals: the SDK's own exceptions ---------------------------------------------------------


def test_a_wrong_or_missing_key_is_an_authentication_error(served: Served, key: str) -> None:
    wrong = key[:-4] + "zzzz"
    with sdk(served, wrong) as client, pytest.raises(openai.AuthenticationError) as caught:
        client.audio.speech.create(**ASK)
    assert caught.value.status_code == 401 and caught.value.code == "unauthorized"
    assert caught.value.response.headers["www-authenticate"] == "Bearer"
    assert wrong.encode() not in caught.value.response.content
    keyless = served.http.post("/v1/audio/speech", json=ASK)
    assert keyless.status_code == 401
    assert keyless.json()["error"]["type"] == "authentication_error"


def test_a_tenant_over_its_minute_limit_gets_a_rate_limit_error_with_retry_after(
    served: Served,
) -> None:
    with sdk(served, tenant_key(served, requests_per_minute=1)) as client:
        client.audio.speech.create(**ASK, response_format="wav")
        with pytest.raises(openai.RateLimitError) as caught:
            client.audio.speech.create(**ASK, response_format="wav")
    assert caught.value.code == "rate_limited" and caught.value.type == "rate_limit_error"
    assert 0 < int(caught.value.response.headers["retry-after"]) <= 60


def test_an_exhausted_monthly_quota_is_insufficient_quota_and_the_sdk_does_not_retry(
    served: Served,
) -> None:
    # max_retries=2: without x-should-retry: false the SDK would send this request 3 times.
    with (
        sdk(served, tenant_key(served, monthly_char_quota=5), max_retries=2) as client,
        pytest.raises(openai.RateLimitError) as caught,
    ):
        client.audio.speech.create(**ASK)
    assert caught.value.status_code == 429 and caught.value.code == "insufficient_quota"
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert [row["error_code"] for row in usage_rows(served.ctx)] == ["quota_exceeded"]


def test_an_input_over_the_text_limit_is_a_bad_request_naming_input(start: Start) -> None:
    served = start(max_text_chars=40)
    with sdk(served, served.new_key()) as client:
        client.audio.speech.create(**{**ASK, "input": "a" * 40}, response_format="wav")
        with pytest.raises(openai.BadRequestError) as caught:
            client.audio.speech.create(**{**ASK, "input": "a" * 41})
    assert (caught.value.param, caught.value.code) == ("input", "text_too_long")
    assert "limit is 40" in caught.value.message


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"model": "whisper-1"}, "model"),
        ({"voice": "nobody"}, "voice"),
        ({"voice": {"id": "nobody"}}, "voice"),
        ({"voice": "not/a voice id"}, "voice"),
        ({"voice": {"id": "x", "name": "y"}}, "voice"),
        ({"response_format": "ogg"}, "response_format"),
        ({"speed": 4.5}, "speed"),
        ({"speed": 3.0}, "speed"),
        ({"input": ""}, "input"),
        ({"input": "... ?!"}, "input"),
        ({"instructions": "x" * 4097}, "instructions"),
        ({"stream_format": "chunks"}, "stream_format"),
    ],
)
def test_a_field_the_worker_refuses_is_a_bad_request_naming_it(
    served: Served, client: openai.OpenAI, change: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.speech.create(**{**ASK, **change})
    assert caught.value.param == param
    assert caught.value.type == "invalid_request_error"
    assert served.ctx.engines.default.active == 0


@pytest.mark.parametrize("speed", [0.25, 3.0])
def test_a_speed_openai_allows_and_the_engine_cannot_speak_says_so(
    client: openai.OpenAI, speed: float
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.speech.create(**ASK, speed=speed)
    assert caught.value.param == "speed"
    assert caught.value.body == {
        "message": f"speed {speed} is outside what this engine can speak: 0.5-2.0",
        "type": "invalid_request_error",
        "param": "speed",
        "code": "invalid_input",
    }


def test_a_speed_the_engine_speaks_is_used(client: openai.OpenAI) -> None:
    normal = client.audio.speech.create(**ASK, response_format="wav").content
    fast = client.audio.speech.create(**ASK, response_format="wav", speed=2.0).content
    ratio = probe_duration_s(ffprobe_json(fast, "wav")) / probe_duration_s(
        ffprobe_json(normal, "wav")
    )
    # Twice as fast is about half as long; Piper draws its phoneme durations with noise, so a
    # run lands anywhere near 0.5 (0.71 was seen once), never near the 1.0 of speed ignored.
    assert 0.35 < ratio < 0.8


# --- voices -------------------------------------------------------------------------------------


def test_openai_voice_names_map_through_the_setting(start: Start, xtts_engine: Engine) -> None:
    other = next(v.id for v in xtts_engine.voices() if v.id != xtts_engine.default_voice)
    served = start(xtts_engine, openai_voices={"alloy": other})
    spoken = []
    with sdk(served, served.new_key()) as client:
        for voice in ["alloy", "echo", other, {"id": other}]:
            reply = client.audio.speech.create(
                model="tts-1",
                voice=voice,  # type: ignore[arg-type]
                input="Hi.",
                response_format="pcm",
            )
            spoken.append(reply.response.headers["x-voice"])
    # mapped; unmapped OpenAI name: the engine's default; the engine's own id, plain or {"id"};
    # each named as voices.list names it
    expected = [f"builtin:{name}" for name in (other, xtts_engine.default_voice, other, other)]
    assert spoken == expected
    assert [row["voice"] for row in usage_rows(served.ctx)] == expected


# --- the wire: bodies, documents, secrets -------------------------------------------------------


def test_a_body_that_is_not_a_json_object_is_400_in_openai_shape(served: Served, key: str) -> None:
    auth = {"authorization": f"Bearer {key}"}
    for raw, starts in [
        ('{"model": "tts-1", "input": "KEY', "the body is not valid JSON: "),
        ('["KEY"]', "the body must be a JSON object"),
        (b'{"input": "\xff"}', "the body is not valid JSON: "),
    ]:
        content = raw.replace("KEY", key) if isinstance(raw, str) else raw
        response = served.http.post("/v1/audio/speech", content=content, headers=auth)
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["message"].startswith(starts) and error["param"] is None
        assert error["type"] == "invalid_request_error"
        assert key.encode() not in response.content


def test_json_sent_the_curl_d_way_is_spoken(served: Served, key: str) -> None:
    headers = {
        "authorization": f"Bearer {key}",
        "content-type": "application/x-www-form-urlencoded",
    }
    response = served.http.post("/v1/audio/speech", content=json.dumps(ASK), headers=headers)
    assert response.status_code == 200 and response.headers["content-type"] == "audio/mpeg"
    assert audio_stream(ffprobe_json(response.content, "mp3"))["codec_name"] == "mp3"


def test_a_body_over_the_bound_is_413_in_openai_shape(start: Start) -> None:
    served = start(max_body_bytes=1000)
    with (
        sdk(served, served.new_key()) as client,
        pytest.raises(openai.APIStatusError) as caught,
    ):
        client.audio.speech.create(**{**ASK, "input": "word " * 400})
    assert caught.value.status_code == 413 and caught.value.code == "request_too_large"


def test_the_key_never_appears_in_a_reply(served: Served, key: str) -> None:
    auth = {"authorization": f"Bearer {key}"}
    bodies: list[dict[str, Any] | str] = [
        ASK,
        {**ASK, "stream_format": "sse"},
        {**ASK, "response_format": "flac"},
        {**ASK, "model": key},
        {**ASK, "speed": key},
        {**ASK, "speed": 3.0},
        {**ASK, "response_format": key},
        {**ASK, "voice": {"id": key, "also": key}},
        {**ASK, "voice": key},  # a well-formed voice id that no engine has
        {**ASK, "instructions": key * 100},
        {**ASK, "input": key, "extra": key},
        f'{{"model": "tts-1", "input": "{key}',
    ]
    statuses = []
    for body in bodies:
        sent = {"content": body} if isinstance(body, str) else {"json": body}
        response = served.http.post("/v1/audio/speech", headers=auth, **sent)  # type: ignore[arg-type]
        statuses.append(response.status_code)
        assert key.encode() not in response.content
        assert key not in str(response.headers)
    assert statuses == [200, 200, 200, 400, 400, 400, 400, 400, 400, 400, 200, 400]
    wrong = served.http.post(
        "/v1/audio/speech", json=ASK, headers={"authorization": f"Bearer {key}x"}
    )
    assert wrong.status_code == 401 and key.encode() not in wrong.content


def test_openapi_documents_the_speech_body_and_its_replies(served: Served) -> None:
    document = served.http.get("/openapi.json").json()
    operation = document["paths"]["/v1/audio/speech"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["required"]) == {"model", "input", "voice"}
    assert set(schema["properties"]) >= {"response_format", "speed", "instructions"}
    formats = schema["properties"]["response_format"]["enum"]
    assert formats == ["mp3", "opus", "aac", "flac", "wav", "pcm"]
    assert "$defs" not in json.dumps(schema) and "$ref" not in json.dumps(schema)
    assert {"audio/mpeg", "text/event-stream"} <= set(operation["responses"]["200"]["content"])


def test_a_tenant_with_no_limits_is_charged_what_it_spoke(served: Served) -> None:
    """The OpenAI route is an ordinary job: one usage row per request, on the tenant's key."""
    issued = served.ctx.tenants.create_tenant("openai-user", UNLIMITED)
    with sdk(served, issued.api_key) as client:
        client.audio.speech.create(**ASK, response_format="wav")
    [row] = usage_rows(served.ctx)
    assert row["tenant_id"] == issued.tenant.id and row["input_chars"] == len(TEXT)
    assert (row["engine"], row["format"], row["error_code"]) == ("piper", "wav", None)
