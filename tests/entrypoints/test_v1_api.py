"""The native v1 API over real HTTP (uvicorn on loopback), real Piper (and the real XTTS code
on a random-weight checkpoint), real SQLite tenants; audio checked with ffprobe."""

from __future__ import annotations

import base64
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from serverless_tts.web.app import create_app
from shared.config import Settings
from shared.engines.base import Engine
from shared.jobs import SynthesizeJob
from shared.storage.s3 import S3AudioStore
from shared.tenants.base import UNLIMITED, TenantLimits
from shared.worker import build_worker
from tests.audio_probe import audio_stream, ffprobe_json, probe_duration_s
from tests.engine_wrappers import RecordingEngine
from tests.entrypoints.web_helpers import Served, Start, serve
from tests.servers import free_port
from tests.worker_fixtures import usage_rows


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def v1_error(response: httpx.Response, status: int, code: str) -> str:
    """The refusal's message, once its status and v1 shape are checked."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    return str(body["error"]["message"])


# --- /v1/synthesize: the whole file ------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "rate", "content_type", "codec", "extension", "probed_rate"),
    [
        ("wav", None, "audio/wav", "pcm_s16le", "wav", 22050),  # the engine's rate by default
        ("mp3", 24000, "audio/mpeg", "mp3", "mp3", 24000),
        ("ogg_opus", 48000, "audio/ogg", "opus", "ogg", 48000),
        ("flac", 16000, "audio/flac", "flac", "flac", 16000),
    ],
)
def test_synthesize_answers_the_file_as_the_body_with_headers_that_describe_it(
    served: Served,
    key: str,
    fmt: str,
    rate: int | None,
    content_type: str,
    codec: str,
    extension: str,
    probed_rate: int,
) -> None:
    job: dict[str, Any] = {"text": "The whole file, at once.", "format": fmt, "request_id": "r-1"}
    if rate is not None:
        job["sample_rate"] = rate
    response = served.http.post("/v1/synthesize", json=job, headers=bearer(key))
    assert response.status_code == 200, response.text
    probe = ffprobe_json(response.content, extension)
    stream = audio_stream(probe)
    assert stream["codec_name"] == codec
    assert int(stream["sample_rate"]) == probed_rate and stream["channels"] == 1
    headers = response.headers
    assert headers["content-type"] == content_type
    assert headers["content-length"] == str(len(response.content))
    assert headers["content-disposition"] == f'inline; filename="speech.{extension}"'
    assert headers["x-request-id"] == "r-1"
    assert headers["x-voice"] == f"builtin:{served.ctx.engines.default.engine.default_voice}"
    assert headers["x-voice-version"] and headers["x-engine"] == "piper"
    assert float(headers["x-audio-duration-s"]) == pytest.approx(probe_duration_s(probe), abs=0.1)
    assert headers["x-cached"] == "false"
    again = served.http.post("/v1/synthesize", json=job, headers=bearer(key))
    assert again.headers["x-cached"] == "true" and again.content == response.content


# --- /v1/synthesize: streamed --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "extension", "codec"), [("wav", "wav", "pcm_s16le"), ("mp3", "mp3", "mp3")]
)
def test_a_stream_is_chunked_and_its_bytes_join_into_a_valid_file(
    served: Served, key: str, fmt: str, extension: str, codec: str
) -> None:
    job = {"text": "Chunk by chunk. Sentence by sentence.", "format": fmt, "stream": True}
    with served.http.stream("POST", "/v1/synthesize", json=job, headers=bearer(key)) as response:
        assert response.status_code == 200
        assert response.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in response.headers
        assert response.headers["content-type"] == ("audio/wav" if fmt == "wav" else "audio/mpeg")
        assert response.headers["x-voice"] and response.headers["x-request-id"]
        data = response.read()
    stream = audio_stream(ffprobe_json(data, extension))
    assert stream["codec_name"] == codec and stream["channels"] == 1
    assert int(stream["sample_rate"]) == 22050


class HoldSecondStep:
    """Holds the engine at its second step (the first piece of audio is made, the next not
    yet) until the test releases it; the test's job is the only one the engine sees."""

    def __init__(self) -> None:
        self.steps = 0
        self.release = threading.Event()

    def __call__(self, text: str) -> None:
        self.steps += 1
        if self.steps == 2:
            assert self.release.wait(timeout=60), "the test never released the engine"


def stream_while_held(
    served: Served, key: str, hold: HoldSecondStep, job: dict[str, Any]
) -> tuple[bytes, bytes]:
    """The first bytes, read while the engine is held (a server that waited for the whole text
    would send none until the hold times out, failing the job), then the rest once released."""
    body = {**job, "stream": True}
    try:
        with served.http.stream("POST", "/v1/synthesize", json=body, headers=bearer(key)) as reply:
            assert reply.status_code == 200, reply.read()
            assert reply.headers["transfer-encoding"] == "chunked"
            chunks = reply.iter_raw()
            first = next(chunks)
            hold.release.set()
            rest = b"".join(chunks)
    finally:
        hold.release.set()  # never leave the engine thread waiting on a failed test
    return first, rest


def test_the_first_streamed_bytes_arrive_before_the_engine_has_made_the_whole_text(
    start: Start, piper_engine: Engine
) -> None:
    hold = HoldSecondStep()
    served = start(RecordingEngine(piper_engine, hold=hold))
    text = "Sunflowers turn toward the morning light. Then evening comes and they rest."
    first, rest = stream_while_held(served, served.new_key(), hold, {"text": text, "cache": False})
    assert first and rest
    assert hold.steps >= 3  # the engine made audio after the release: not all in one step
    stream = audio_stream(probe := ffprobe_json(first + rest, "wav"))
    assert stream["codec_name"] == "pcm_s16le" and int(stream["sample_rate"]) == 22050
    assert probe_duration_s(probe) > 2.0  # both sentences


def test_xtts_streams_over_http_as_it_generates(start: Start, xtts_engine: Engine) -> None:
    hold = HoldSecondStep()
    served = start(RecordingEngine(xtts_engine, hold=hold))
    job = {"text": "Real XTTS streaming.", "cache": False}
    first, rest = stream_while_held(served, served.new_key(), hold, job)
    assert first and rest
    assert hold.steps >= 3  # more chunks came from the model after the first was sent
    stream = audio_stream(ffprobe_json(first + rest, "wav"))
    assert stream["codec_name"] == "pcm_s16le" and int(stream["sample_rate"]) == 24000


def test_flac_cannot_stream(served: Served, key: str) -> None:
    job = {"text": "No.", "format": "flac", "stream": True}
    response = served.http.post("/v1/synthesize", json=job, headers=bearer(key))
    assert "flac cannot be streamed" in v1_error(response, 422, "unsupported_format")


# --- /v1/synthesize-url, /v1/voices, /v1/health ---------------------------------------------------


def test_synthesize_url_answers_the_result_with_a_url_to_the_audio(
    served: Served, key: str
) -> None:
    job = {"text": "Fetch me later.", "format": "mp3", "request_id": "u-1"}
    response = served.http.post("/v1/synthesize-url", json=job, headers=bearer(key))
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["delivery"] == "url" and result["request_id"] == "u-1"
    assert result["content_type"] == "audio/mpeg" and result["cached"] is False
    assert datetime.fromisoformat(result["expires_at"]) > datetime.now(UTC)
    assert result["voice"] and result["voice_version"] and result["timings"]["total_ms"] > 0
    assert "audio_base64" not in result and "audio" not in result
    audio = httpx.get(result["url"], timeout=30)
    assert audio.status_code == 200 and len(audio.content) == result["bytes"]
    probe = ffprobe_json(audio.content, "mp3")
    assert audio_stream(probe)["codec_name"] == "mp3"
    assert probe_duration_s(probe) == pytest.approx(result["duration_s"], abs=0.1)


def test_synthesize_url_with_storage_down_answers_the_audio_inline(
    settings: Settings, piper_engine: Engine, dead_s3_store: S3AudioStore
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    worker = settings.model_copy(update={"public_base_url": base})
    ctx = build_worker(worker, engine=piper_engine, storage=dead_s3_store)
    try:
        with serve(create_app(ctx), port), httpx.Client(base_url=base, timeout=120) as http:
            key = ctx.tenants.create_tenant("acme", UNLIMITED).api_key
            job = {"text": "Nowhere to store me.", "cache": False}
            reply = http.post("/v1/synthesize-url", json=job, headers=bearer(key))
    finally:
        ctx.close()
    assert reply.status_code == 200, reply.text
    result = reply.json()
    assert "url" not in result and result["warning"].startswith("storage unavailable")
    audio = base64.b64decode(result["audio_base64"])
    assert len(audio) == result["bytes"]
    assert audio_stream(ffprobe_json(audio, "wav"))["codec_name"] == "pcm_s16le"


def test_voices_lists_what_the_tenant_can_ask_for(served: Served, key: str) -> None:
    reply = served.http.get("/v1/voices", headers=bearer(key))
    assert reply.status_code == 200
    voices = reply.json()
    assert voices["engine"] == "piper"
    assert voices["default_voice"] in [voice["id"] for voice in voices["voices"]]


def test_health_needs_no_key(served: Served) -> None:
    health = served.http.get("/v1/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok" and body["engine"] == "piper"
    assert body["sample_rate"] == 22050 and body["model_version"] and body["uptime_s"] >= 0


# --- /v1/tenant/usage ---------------------------------------------------------------------------


def test_usage_shows_the_tenants_jobs_and_only_to_that_tenant(served: Served, key: str) -> None:
    for path, job in (
        ("/v1/synthesize-url", {"text": "First job."}),
        ("/v1/synthesize", {"text": "Second job, streamed.", "stream": True}),
    ):
        assert served.http.post(path, json=job, headers=bearer(key)).status_code == 200
    assert served.ctx.usage.flush(timeout_s=10)
    today = datetime.now(UTC).date()

    usage = served.http.get("/v1/tenant/usage", headers=bearer(key))
    assert usage.status_code == 200
    report = usage.json()
    tenant = served.ctx.tenants.authenticate(key)
    assert report["tenant_id"] == tenant.id
    assert report["start_date"] == (today - timedelta(days=29)).isoformat()
    assert report["end_date"] == today.isoformat()
    [day] = report["days"]
    assert day["day"] == today.isoformat()
    assert (day["requests"], day["failed"]) == (2, 0)
    assert day["input_chars"] == len("First job.") + len("Second job, streamed.")
    assert day["audio_seconds"] > 0 and day["audio_bytes"] > 0
    assert report["totals"] == {name: value for name, value in day.items() if name != "day"}

    other = served.ctx.tenants.create_tenant("other", UNLIMITED).api_key
    theirs = served.http.get("/v1/tenant/usage", headers=bearer(other)).json()
    assert theirs["tenant_id"] != tenant.id and theirs["days"] == []
    assert theirs["totals"]["requests"] == 0

    yesterday = (today - timedelta(days=1)).isoformat()
    before = served.http.get(
        "/v1/tenant/usage",
        params={"start_date": (today - timedelta(days=9)).isoformat(), "end_date": yesterday},
        headers=bearer(key),
    ).json()
    assert before["days"] == [] and before["end_date"] == yesterday


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"start_date": "2026-11-21", "end_date": "2026-11-20"}, "before start_date"),
        ({"start_date": "2025-01-01", "end_date": "2026-01-02"}, "more than 366 days"),
        ({"start_date": "21/11/2026"}, "start_date"),
        ({"end_date": "2026-02-30"}, "end_date"),
    ],
)
def test_usage_ranges_that_cannot_be_answered_are_400(
    served: Served, key: str, params: dict[str, str], named: str
) -> None:
    response = served.http.get("/v1/tenant/usage", params=params, headers=bearer(key))
    assert named in v1_error(response, 400, "invalid_input")


def test_a_usage_range_of_366_days_is_answered(served: Served, key: str) -> None:
    params = {"start_date": "2024-01-01", "end_date": "2024-12-31"}  # a leap year
    response = served.http.get("/v1/tenant/usage", params=params, headers=bearer(key))
    assert response.status_code == 200 and response.json()["days"] == []


# --- /v1/ssml/validate --------------------------------------------------------------------------


def test_valid_ssml_is_described_and_nothing_is_charged(served: Served, key: str) -> None:
    ssml = (
        '<speak><p>Hello <break time="500ms"/> world.</p>'
        '<p><prosody rate="fast">Second paragraph.</prosody></p></speak>'
    )
    response = served.http.post("/v1/ssml/validate", json={"ssml": ssml}, headers=bearer(key))
    assert response.status_code == 200, response.text
    # Hello | 0.5 s | world. | 0.4 s between paragraphs | Second paragraph.
    assert response.json() == {
        "valid": True,
        "spoken_chars": len("Hello") + len("world.") + len("Second paragraph."),
        "pieces": 5,
        "pauses_s": 0.9,
    }
    assert usage_rows(served.ctx) == []


@pytest.mark.parametrize(
    ("ssml", "named"),
    [
        ("<speak>unclosed", "not well-formed XML"),
        ("<voice>Hi</voice>", "root element must be <speak>"),
        ('<!DOCTYPE speak [<!ENTITY x "y">]><speak>&x;</speak>', "must not contain a DTD"),
        ('<speak><break time="soon"/>Hi</speak>', "is not a duration"),
        ('<speak><break time="1s"/></speak>', "no text to speak"),
    ],
)
def test_invalid_ssml_is_422_with_the_parsers_message(
    served: Served, key: str, ssml: str, named: str
) -> None:
    response = served.http.post("/v1/ssml/validate", json={"ssml": ssml}, headers=bearer(key))
    assert named in v1_error(response, 422, "invalid_ssml")


def test_ssml_beyond_the_contracts_bound_is_refused_before_parsing(start: Start) -> None:
    served = start(max_text_chars=100)
    key = served.new_key()
    over = "<speak>" + "<" * 194  # 201 characters: not parsed, or it would be invalid_ssml
    response = served.http.post("/v1/ssml/validate", json={"ssml": over}, headers=bearer(key))
    assert "the limit is 200" in v1_error(response, 400, "text_too_long")
    spoken = "<speak>" + "a" * 101 + "</speak>"
    response = served.http.post("/v1/ssml/validate", json={"ssml": spoken}, headers=bearer(key))
    assert "101 characters to speak" in v1_error(response, 400, "text_too_long")


@pytest.mark.parametrize("body", [{}, {"ssml": 7}, {"ssml": "<speak>Hi</speak>", "more": 1}])
def test_a_malformed_ssml_body_is_400(served: Served, key: str, body: dict[str, Any]) -> None:
    response = served.http.post("/v1/ssml/validate", json=body, headers=bearer(key))
    v1_error(response, 400, "invalid_input")


# --- refusals, each with its v1 status and code -------------------------------------------------

KEYED_ROUTES = [
    ("POST", "/v1/synthesize", {"text": "Hi."}),
    ("POST", "/v1/synthesize-url", {"text": "Hi."}),
    ("GET", "/v1/voices", None),
    ("GET", "/v1/tenant/usage", None),
    ("POST", "/v1/ssml/validate", {"ssml": "<speak>Hi</speak>"}),
]


@pytest.mark.parametrize(("method", "path", "body"), KEYED_ROUTES)
@pytest.mark.parametrize(
    "authorization", [None, "Bearer stts_wrong", "Bearer", "Basic dXNlcjpwYXNz", "KEY"]
)
def test_every_keyed_route_refuses_a_missing_or_bad_key_with_401(
    served: Served,
    key: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    authorization: str | None,
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization.replace("KEY", key)}
    response = served.http.request(method, path, json=body, headers=headers)
    v1_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ('{"text": "Hi."', "not valid JSON"),
        (b'{"text": "\xff"}', "not UTF-8"),
        ('["Hi."]', "JSON object"),
        ('{"text": "Hi.", "speed": "fast"}', "speed"),
        ('{"text": "Hi.", "cache": "no"}', "cache"),
        ('{"text": "Hi.", "stream": "yes"}', "stream"),
        ('{"text": "Hi.", "delivery": "url"}', "the route chooses the delivery"),
        ('{"text": "Hi.", "action": "voices"}', "action"),
        ('{"text": "Hi.", "api_key": "KEY"}', "the key goes in the Authorization header"),
        ('{"text": "Hi.", "ssml": "<speak>Hi</speak>"}', "exactly one of text or ssml"),
        ('{"text": "Hi.", "colour": "blue"}', "colour"),
    ],
)
def test_malformed_synthesize_bodies_are_400_naming_the_field_never_the_value(
    served: Served, key: str, body: str | bytes, named: str
) -> None:
    raw = body.replace("KEY", key) if isinstance(body, str) else body
    response = served.http.post("/v1/synthesize", content=raw, headers=bearer(key))
    assert named in v1_error(response, 400, "invalid_input")
    assert key not in response.text


def test_stream_belongs_to_synthesize_only(served: Served, key: str) -> None:
    job = {"text": "Hi.", "stream": True}
    response = served.http.post("/v1/synthesize-url", json=job, headers=bearer(key))
    assert "only /v1/synthesize streams" in v1_error(response, 400, "invalid_input")


@pytest.mark.parametrize(
    ("job", "status", "code"),
    [
        ({"text": "Hi.", "voice": "nobody"}, 404, "voice_not_found"),
        ({"ssml": "<speak>Hi"}, 422, "invalid_ssml"),
        ({"text": "Hi.", "format": "wma"}, 422, "unsupported_format"),
        ({"text": "Hi.", "format": "mp3", "sample_rate": 8001}, 422, "unsupported_format"),
        ({"text": "Hi.", "language": "xx"}, 422, "unsupported_language"),
        ({"text": "a" * 10_001}, 400, "text_too_long"),
    ],
)
def test_jobs_that_cannot_be_spoken_as_asked_get_their_codes(
    served: Served, key: str, job: dict[str, Any], status: int, code: str
) -> None:
    for path in ("/v1/synthesize", "/v1/synthesize-url"):
        v1_error(served.http.post(path, json=job, headers=bearer(key)), status, code)


def test_over_the_rate_window_is_429_with_retry_after(served: Served) -> None:
    limits = TenantLimits(monthly_char_quota=None, requests_per_minute=1, requests_per_hour=None)
    key = served.ctx.tenants.create_tenant("hasty", limits).api_key
    job = {"text": "Once."}
    assert served.http.post("/v1/synthesize", json=job, headers=bearer(key)).status_code == 200
    again = served.http.post("/v1/synthesize", json=job, headers=bearer(key))
    assert "per-minute limit of 1" in v1_error(again, 429, "rate_limited")
    assert 1 <= int(again.headers["retry-after"]) <= 60


def test_over_the_monthly_quota_is_403(served: Served) -> None:
    limits = TenantLimits(monthly_char_quota=10, requests_per_minute=None, requests_per_hour=None)
    key = served.ctx.tenants.create_tenant("frugal", limits).api_key
    assert served.http.post(
        "/v1/synthesize", json={"text": "Short."}, headers=bearer(key)
    ).is_success
    over = served.http.post("/v1/synthesize", json={"text": "Too much."}, headers=bearer(key))
    v1_error(over, 403, "quota_exceeded")
    assert "retry-after" not in over.headers


def test_a_body_over_the_bound_is_413(start: Start) -> None:
    served = start(max_body_bytes=1_000)
    key = served.new_key()
    job = json.dumps({"text": "a" * 1_000})
    for path in ("/v1/synthesize", "/v1/synthesize-url", "/v1/ssml/validate"):
        response = served.http.post(path, content=job, headers=bearer(key))
        v1_error(response, 413, "request_too_large")


def test_the_key_never_appears_in_a_reply(served: Served, key: str) -> None:
    ssml = {"ssml": "<speak>Hi</speak>"}
    replies = [
        served.http.post("/v1/synthesize", json={"text": "Hi.", "api_key": key}),
        served.http.post("/v1/synthesize", json={"text": "Hi."}, headers=bearer(key)),
        served.http.post("/v1/synthesize-url", json={"text": "Hi."}, headers=bearer(key)),
        served.http.post("/v1/synthesize", json={"text": key}, headers=bearer(key + "x")),
        served.http.post(
            "/v1/synthesize-url", json={"text": key, "speed": key}, headers=bearer(key)
        ),
        served.http.get("/v1/voices", headers=bearer(key)),
        served.http.get("/v1/tenant/usage", params={"start_date": key}, headers=bearer(key)),
        served.http.get("/v1/tenant/usage", headers=bearer(key)),
        served.http.post("/v1/ssml/validate", json=ssml, headers=bearer(key)),
        served.http.post("/v1/ssml/validate", json={"ssml": key}, headers=bearer(key)),
    ]
    statuses = [reply.status_code for reply in replies]
    assert statuses == [400, 200, 200, 401, 400, 200, 400, 200, 200, 422]
    for reply in replies:
        assert key not in reply.text
        assert all(key not in value for value in reply.headers.values())


# --- the OpenAPI document ---------------------------------------------------------------------


def test_the_openapi_document_describes_the_v1_bodies_and_replies(served: Served) -> None:
    document = served.http.get("/openapi.json").json()
    assert "#/$defs/" not in json.dumps(document)  # every reference resolves in the document
    paths = document["paths"]

    def body_fields(path: str) -> set[str]:
        schema = paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        return set(schema["properties"])

    speech = set(SynthesizeJob.model_fields) - {"action", "delivery"}
    assert body_fields("/v1/synthesize-url") == speech
    assert body_fields("/v1/synthesize") == speech | {"stream"}
    assert body_fields("/v1/ssml/validate") == {"ssml"}
    synthesize = paths["/v1/synthesize"]["post"]["responses"]
    assert {"audio/wav", "audio/mpeg", "audio/ogg", "audio/flac"} <= set(
        synthesize["200"]["content"]
    )
    assert synthesize["401"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/V1Error"
    }

    def reply_schema(path: str, method: str) -> str:
        reply = paths[path][method]["responses"]["200"]["content"]["application/json"]
        return str(reply["schema"]["$ref"]).rpartition("/")[2]

    assert reply_schema("/v1/synthesize-url", "post") == "SynthesisUrlReply"
    assert reply_schema("/v1/tenant/usage", "get") == "UsageReport"
    assert reply_schema("/v1/ssml/validate", "post") == "SsmlCheck"
    assert reply_schema("/v1/voices", "get") == "VoicesResult"
    assert reply_schema("/v1/health", "get") == "HealthResult"
    usage = paths["/v1/tenant/usage"]["get"]
    assert {parameter["name"] for parameter in usage["parameters"]} == {"start_date", "end_date"}
    assert "422" not in usage["responses"]  # v1 answers a bad date 400, not FastAPI's 422

    [scheme] = document["components"]["securitySchemes"].values()
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    for method, path, _ in KEYED_ROUTES:
        assert paths[path][method.lower()]["security"], path
    assert "security" not in paths["/v1/health"]["get"]
