"""Cloned voices over the native v1 API: real uvicorn on loopback, the real XTTS code on a tiny
random-weight checkpoint (Piper where the engine cannot clone), real SQLite tenants, reference
audio from the service's own encoders; audio checked with ffprobe; the official OpenAI SDK."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import httpx
import openai
import pytest

from serverless_tts.web.v1_voices import MAX_VOICE_BODY_BYTES
from shared.engines.base import Engine
from shared.jobs import MAX_REFERENCE_BASE64_CHARS, MAX_REFERENCE_BYTES
from shared.tenants.base import UNLIMITED
from shared.tenants.voices import MAX_VOICE_DESCRIPTION_CHARS, MAX_VOICE_NAME_CHARS
from tests.audio_probe import audio_stream, ffprobe_json, probe_duration_s
from tests.entrypoints.test_web_limits import Counted
from tests.entrypoints.web_helpers import Served, Start
from tests.shared.test_net_fetch import body, site
from tests.shared.test_voice_reference import encoded, voiced

REFERENCE = encoded(voiced(4.0), "wav")  # 4 s of voiced sound: long enough, not silent, unclipped
VOICE_ID = re.compile(r"v_[0-9a-f]{16}")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def v1_error(response: httpx.Response, status: int, code: str) -> str:
    """The refusal's message, once its status and v1 shape are checked."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message"} and error["code"] == code, error
    return str(error["message"])


def upload(http: httpx.Client, key: str, audio: bytes = REFERENCE, **fields: str) -> httpx.Response:
    """``POST /v1/voices`` as multipart/form-data, the reference as the file part ``file``."""
    form = {"name": "Front desk", "language": "en", **fields}
    files = {"file": ("reference.wav", audio, "audio/wav")}
    return http.post("/v1/voices", data=form, files=files, headers=bearer(key))


def created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    voice: dict[str, Any] = response.json()
    assert VOICE_ID.fullmatch(voice["id"])
    assert (voice["kind"], voice["engine"], voice["ready"]) == ("cloned", "xtts", True)
    return voice


def other_key(served: Served) -> str:
    return served.ctx.tenants.create_tenant("other", UNLIMITED).api_key


@pytest.fixture
def xtts(start: Start, xtts_engine: Engine) -> Served:
    return start(xtts_engine)


def assert_speech(response: httpx.Response, voice_id: str, suffix: str) -> None:
    """Real audio of ``suffix``'s format, spoken by ``voice_id``."""
    assert response.status_code == 200, response.text
    assert response.headers["x-voice"] == voice_id
    probe = ffprobe_json(response.content, suffix)
    assert audio_stream(probe)["channels"] == 1
    assert probe_duration_s(probe) > 0.5


# --- a voice's life --------------------------------------------------------------------------


def test_an_uploaded_voice_is_listed_shown_edited_previewed_spoken_then_deleted(
    xtts: Served,
) -> None:
    http, key = xtts.http, xtts.new_key()
    voice = created(upload(http, key, description="Warm and calm"))
    assert (voice["name"], voice["language"], voice["description"]) == (
        "Front desk",
        "en",
        "Warm and calm",
    )

    listed = http.get("/v1/voices", headers=bearer(key)).json()
    builtins = [entry for entry in listed["voices"] if entry["kind"] == "builtin"]
    assert builtins and all(entry["id"].startswith("builtin:") for entry in builtins)
    assert listed["default_voice"] in [entry["id"] for entry in builtins]
    assert listed["voices"][-1] == voice  # cloned voices come after the built-in ones
    assert http.get(f"/v1/voices/{voice['id']}", headers=bearer(key)).json() == voice

    edit = {"name": "Reception", "description": None}
    edited = http.patch(f"/v1/voices/{voice['id']}", json=edit, headers=bearer(key))
    assert edited.status_code == 200, edited.text
    assert (edited.json()["name"], edited.json()["description"]) == ("Reception", None)
    assert edited.json()["version"] == voice["version"]  # the same latents: the same audio
    assert http.get(f"/v1/voices/{voice['id']}", headers=bearer(key)).json() == edited.json()

    preview = http.post(
        f"/v1/voices/{voice['id']}/preview", json={"format": "mp3"}, headers=bearer(key)
    )
    assert preview.headers["content-type"] == "audio/mpeg"
    assert_speech(preview, voice["id"], "mp3")
    assert preview.headers["x-voice-version"] == voice["version"]
    streamed = http.post(
        f"/v1/voices/{voice['id']}/preview",
        json={"text": "Hi.", "format": "mp3", "stream": True},
        headers=bearer(key),
    )
    assert streamed.headers["transfer-encoding"] == "chunked"
    assert_speech(streamed, voice["id"], "mp3")
    job = {"text": "Hello there.", "voice": voice["id"]}
    assert_speech(http.post("/v1/synthesize", json=job, headers=bearer(key)), voice["id"], "wav")

    deleted = http.delete(f"/v1/voices/{voice['id']}", headers=bearer(key))
    assert (deleted.status_code, deleted.json()) == (200, {"id": voice["id"], "deleted": True})
    gone = [
        http.get(f"/v1/voices/{voice['id']}", headers=bearer(key)),
        http.post(f"/v1/voices/{voice['id']}/preview", headers=bearer(key)),
        http.post("/v1/synthesize", json=job, headers=bearer(key)),
        http.delete(f"/v1/voices/{voice['id']}", headers=bearer(key)),
    ]
    for response in gone:
        v1_error(response, 404, "voice_not_found")
    after = http.get("/v1/voices", headers=bearer(key)).json()["voices"]
    assert voice["id"] not in [entry["id"] for entry in after]


def test_a_voice_sent_as_base64_json_speaks_through_the_openai_sdk(xtts: Served) -> None:
    key = xtts.new_key()
    job = {"name": "Sales", "audio_base64": base64.b64encode(REFERENCE).decode("ascii")}
    voice = created(xtts.http.post("/v1/voices", json=job, headers=bearer(key)))
    assert (voice["language"], voice["description"]) == (None, None)

    base = str(xtts.http.base_url).rstrip("/")
    with openai.OpenAI(api_key=key, base_url=f"{base}/v1", max_retries=0) as client:
        reply = client.audio.speech.create(
            model="tts-1", voice=voice["id"], input="Hi.", response_format="wav"
        )
    assert reply.response.headers["x-voice"] == voice["id"]
    probe = ffprobe_json(reply.content, "wav")
    assert audio_stream(probe)["codec_name"] == "pcm_s16le"
    assert probe_duration_s(probe) > 0.5


def test_a_reference_url_is_fetched_only_where_plain_http_is_allowed(
    start: Start, xtts_engine: Engine
) -> None:
    with site({"/reference.wav": body(REFERENCE)}) as host:
        job = {"name": "Support", "audio_url": host.url("/reference.wav")}
        allowed = start(xtts_engine, voice_fetch_allow_http=True)
        voice = created(
            allowed.http.post("/v1/voices", json=job, headers=bearer(allowed.new_key()))
        )
        assert voice["name"] == "Support"
        assert host.paths == ["/reference.wav"]

        strict = start(xtts_engine)  # on the same tenant database: another tenant's key
        refused = strict.http.post("/v1/voices", json=job, headers=bearer(other_key(strict)))
        v1_error(refused, 422, "reference_url_refused")
        assert host.paths == ["/reference.wav"]  # refused before any request was sent


def test_another_tenants_voice_is_not_found_and_not_listed(xtts: Served) -> None:
    http, owner = xtts.http, xtts.new_key()
    voice = created(upload(http, owner))
    stranger = bearer(other_key(xtts))
    path = f"/v1/voices/{voice['id']}"
    refused = [
        http.get(path, headers=stranger),
        http.patch(path, json={"name": "Mine now"}, headers=stranger),
        http.delete(path, headers=stranger),
        http.post(f"{path}/preview", json={"text": "Hi."}, headers=stranger),
        http.post("/v1/synthesize", json={"text": "Hi.", "voice": voice["id"]}, headers=stranger),
    ]
    for response in refused:
        v1_error(response, 404, "voice_not_found")
    theirs = http.get("/v1/voices", headers=stranger).json()["voices"]
    assert {entry["kind"] for entry in theirs} == {"builtin"}
    # Nothing the stranger sent changed or removed it.
    assert http.get(path, headers=bearer(owner)).json() == voice


@pytest.mark.parametrize(
    ("audio", "code"),
    [
        (encoded(voiced(1.5), "wav"), "reference_too_short"),
        (b"<html>not a recording</html>" * 100, "reference_unreadable"),
    ],
)
def test_a_reference_that_cannot_be_cloned_is_422_with_its_code(
    xtts: Served, audio: bytes, code: str
) -> None:
    key = xtts.new_key()
    v1_error(upload(xtts.http, key, audio), 422, code)
    assert xtts.http.get("/v1/voices", headers=bearer(key)).json()["voices"][-1]["kind"] == (
        "builtin"
    )


def test_piper_cannot_clone_a_voice(served: Served, key: str) -> None:
    message = v1_error(upload(served.http, key), 422, "unsupported_by_engine")
    assert "XTTS" in message


# --- body bounds -----------------------------------------------------------------------------


def test_a_body_over_the_upload_bound_is_413_unread(served: Served, key: str) -> None:
    body = Counted(50_000_000)
    headers = {
        **bearer(key),
        "Content-Type": "multipart/form-data; boundary=x",
        "Content-Length": str(body.total),
    }
    response = served.http.post("/v1/voices", content=body, headers=headers)
    message = v1_error(response, 413, "request_too_large")
    assert f"more than {MAX_VOICE_BODY_BYTES} bytes" in message
    assert "10 MB" in message
    assert body.sent < body.total  # refused at the headers: the client could not send it all


def test_a_3_mb_upload_passes_the_bound_that_every_other_route_keeps(xtts: Served) -> None:
    key = xtts.new_key()
    long_wav = encoded(voiced(64.0), "wav")  # 3.07 MB: over TTS_MAX_BODY_BYTES (2 MB)
    assert xtts.ctx.settings.max_body_bytes < len(long_wav) < MAX_VOICE_BODY_BYTES
    # Through the bound, then refused for what it holds: more than 30 s of speech.
    v1_error(upload(xtts.http, key, long_wav), 422, "reference_too_long")
    files = {"file": ("reference.wav", long_wav, "audio/wav")}
    for path in ("/v1/voices/v_0123456789abcdef/preview", "/v1/synthesize"):
        response = xtts.http.post(path, files=files, headers=bearer(key))
        v1_error(response, 413, "request_too_large")


def test_the_largest_reference_as_base64_json_fits_the_bound_and_one_byte_more_does_not(
    xtts: Served,
) -> None:
    key = xtts.new_key()
    largest = encoded(voiced(MAX_REFERENCE_BYTES / 2 / 24_000), "wav")[:MAX_REFERENCE_BYTES]
    job = {
        "name": "\U0001f600" * MAX_VOICE_NAME_CHARS,
        "description": "\U0001f600" * MAX_VOICE_DESCRIPTION_CHARS,
        "language": "en",
        "audio_base64": base64.b64encode(largest).decode("ascii"),
    }
    assert len(job["audio_base64"]) == MAX_REFERENCE_BASE64_CHARS
    raw = json.dumps(job).encode()  # every emoji escaped: 12 bytes each
    headers = {**bearer(key), "Content-Type": "application/json"}
    # Read, decoded and refused for its length: the bound let it through.
    fits = xtts.http.post("/v1/voices", content=raw, headers=headers)
    v1_error(fits, 422, "reference_too_long")
    padded = raw + b" " * (MAX_VOICE_BODY_BYTES + 1 - len(raw))
    v1_error(
        xtts.http.post("/v1/voices", content=padded, headers=headers), 413, "request_too_large"
    )


# --- what is refused before any job runs ---------------------------------------------------------

WAV_PART = ("reference.wav", REFERENCE, "audio/wav")
# Each voice route with a body it would take from a tenant.
VOICE_ROUTES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v1/voices", {"data": {"name": "x"}, "files": {"file": WAV_PART}}),
    ("GET", "/v1/voices", {}),
    ("GET", "/v1/voices/v_0123456789abcdef", {}),
    ("PATCH", "/v1/voices/v_0123456789abcdef", {"json": {"name": "x"}}),
    ("DELETE", "/v1/voices/v_0123456789abcdef", {}),
    ("POST", "/v1/voices/v_0123456789abcdef/preview", {"json": {"text": "Hi."}}),
]


@pytest.mark.parametrize(("method", "path", "request_args"), VOICE_ROUTES)
def test_every_voice_route_refuses_a_missing_or_wrong_key_with_401(
    served: Served, method: str, path: str, request_args: dict[str, Any]
) -> None:
    for headers in ({}, bearer("stts_wrong")):
        response = served.http.request(method, path, headers=headers, **request_args)
        v1_error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"


def multipart(*parts: tuple[str, str | tuple[str, bytes, str]]) -> dict[str, Any]:
    """httpx's arguments for a multipart body of exactly these parts: (name, text or file)."""
    files = [(name, value if isinstance(value, tuple) else (None, value)) for name, value in parts]
    return {"files": files}


@pytest.mark.parametrize(
    ("path", "request_args", "named"),
    [
        (
            "/v1/voices",
            {"content": b"name=x", "headers": {"Content-Type": "text/plain"}},
            "multipart/form-data",
        ),
        (
            "/v1/voices",
            {"json": {"name": "x", "audio_url": "https://a.example/r.wav", "colour": 1}},
            "colour",
        ),
        ("/v1/voices", {"json": {"name": "x", "audio": "AAAA"}}, "audio"),
        (
            "/v1/voices",
            {"json": {"name": "x", "audio_base64": "AAAA", "api_key": "k"}},
            "Authorization header",
        ),
        (
            "/v1/voices",
            {"json": {"name": "x", "audio_base64": "AAAA", "audio_url": "https://a.example/r.wav"}},
            "exactly one",
        ),
        (
            "/v1/voices",
            multipart(("name", "x"), ("file", WAV_PART), ("audio_url", "https://a.example")),
            "audio_url",
        ),
        ("/v1/voices", multipart(("name", "x")), "file: missing"),
        (
            "/v1/voices",
            multipart(("name", "x"), ("file", "RIFF")),
            "file: must be the reference audio as a file part",
        ),
        (
            "/v1/voices",
            multipart(("name", ("name.txt", b"x", "text/plain"))),
            "name: must be a text field",
        ),
        (
            "/v1/voices",
            multipart(("name", "x"), ("name", "y"), ("file", WAV_PART)),
            "name: give it once",
        ),
        (
            "/v1/voices",
            multipart(("name", "x"), ("file", WAV_PART), ("file", WAV_PART)),
            "Too many files",
        ),
        ("/v1/voices", multipart(("name", "x" * 2_001), ("file", WAV_PART)), "maximum size"),
        ("/v1/voices/v_0123456789abcdef", {"json": {"ready": True}}, "ready"),
        (
            "/v1/voices/v_0123456789abcdef/preview",
            {"json": {"voice_id": "v_1"}},
            "the voice is the path's",
        ),
        ("/v1/voices/v_0123456789abcdef/preview", {"json": {"stream": "yes"}}, "stream"),
        (
            "/v1/voices/v_0123456789abcdef/preview",
            {"json": {"text": "Hi.", "ssml": "<speak/>"}},
            "ssml",
        ),
    ],
)
def test_malformed_voice_bodies_are_400_naming_the_field(
    served: Served, key: str, path: str, request_args: dict[str, Any], named: str
) -> None:
    method = "PATCH" if path.endswith("cdef") else "POST"
    args = {**request_args, "headers": {**bearer(key), **request_args.get("headers", {})}}
    response = served.http.request(method, path, **args)
    assert named in v1_error(response, 400, "invalid_input")
    assert key not in response.text


# --- the OpenAPI document ----------------------------------------------------------------------


def test_the_openapi_document_describes_the_voice_routes(served: Served) -> None:
    document = served.http.get("/openapi.json").json()
    assert "#/$defs/" not in json.dumps(document)
    voices, one = document["paths"]["/v1/voices"], document["paths"]["/v1/voices/{voice_id}"]
    preview = document["paths"]["/v1/voices/{voice_id}/preview"]["post"]

    bodies = voices["post"]["requestBody"]["content"]
    assert set(bodies) == {"application/json", "multipart/form-data"}
    assert set(bodies["application/json"]["schema"]["properties"]) == {
        "name",
        "language",
        "description",
        "audio_base64",
        "audio_url",
    }
    upload_form = bodies["multipart/form-data"]["schema"]["properties"]
    assert set(upload_form) == {"name", "language", "description", "file"}
    assert upload_form["file"]["format"] == "binary"

    def reply(operation: dict[str, Any], status: str = "200") -> str:
        schema = operation["responses"][status]["content"]["application/json"]["schema"]
        return str(schema["$ref"]).rpartition("/")[2]

    assert reply(voices["post"], "201") == "VoiceEntry"
    assert reply(voices["get"]) == "VoicesResult"
    assert (reply(one["get"]), reply(one["patch"]), reply(one["delete"])) == (
        "VoiceEntry",
        "VoiceEntry",
        "VoiceDeleted",
    )
    edit = one["patch"]["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert set(edit) == {"name", "language", "description"}
    assert "audio/wav" in preview["responses"]["200"]["content"]
    speech = preview["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert {"text", "language", "speed", "format", "sample_rate", "stream"} <= set(speech)
    for method, path, _ in VOICE_ROUTES:
        templated = re.sub(r"v_[0-9a-f]{16}", "{voice_id}", path)
        operation = document["paths"][templated][method.lower()]
        assert operation["security"], (method, path)
        assert operation["responses"]["401"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/V1Error"
        }
