"""The local web app over real HTTP (uvicorn on loopback): RunPod-shaped routes and signed audio."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from serverless_tts.web.app import create_app
from shared.config import Settings
from shared.engines.base import Engine
from shared.tenants.base import UNLIMITED
from shared.worker import WorkerContext, build_worker
from tests.audio_probe import audio_stream, ffprobe_json
from tests.entrypoints.web_helpers import serve
from tests.servers import free_port


@pytest.fixture
def served(settings: Settings, piper_engine: Engine) -> Iterator[tuple[str, WorkerContext]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ctx = build_worker(settings.model_copy(update={"public_base_url": base}), engine=piper_engine)
    try:
        with serve(create_app(ctx), port):
            yield base, ctx
    finally:
        ctx.close()


@pytest.fixture
def http(served: tuple[str, WorkerContext]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served[0], timeout=120) as client:
        yield client


@pytest.fixture
def key(served: tuple[str, WorkerContext]) -> str:
    return served[1].tenants.create_tenant("acme", UNLIMITED).api_key


def runsync(http: httpx.Client, job: dict[str, Any]) -> dict[str, Any]:
    response = http.post("/runsync", json={"input": job})
    assert response.status_code == 200
    return response.json()


def test_runsync_url_then_fetching_the_url_gives_the_audio(http: httpx.Client, key: str) -> None:
    reply = runsync(http, {"api_key": key, "text": "Fetch me over HTTP.", "format": "mp3"})
    assert reply["status"] == "COMPLETED"
    [result] = reply["output"]
    audio = httpx.get(result["url"], timeout=30)
    assert audio.status_code == 200
    assert audio.headers["content-type"] == "audio/mpeg"
    assert len(audio.content) == result["bytes"]
    assert audio_stream(ffprobe_json(audio.content, "mp3"))["codec_name"] == "mp3"


def signed(url: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    return parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}


def test_tampered_or_expired_urls_get_403(
    http: httpx.Client, key: str, served: tuple[str, WorkerContext]
) -> None:
    [result] = runsync(http, {"api_key": key, "text": "Secret audio."})["output"]
    path, query = signed(result["url"])
    assert http.get(f"{path}?{urlencode(query)}").status_code == 200
    bad_sig = {**query, "sig": "0" * 64}
    assert http.get(f"{path}?{urlencode(bad_sig)}").status_code == 403
    later = {**query, "expires": str(int(query["expires"]) + 60)}
    assert http.get(f"{path}?{urlencode(later)}").status_code == 403
    assert http.get(path).status_code == 403
    # A URL that really expired: signed with a past deadline by the store itself.
    store = served[1].storage
    key_path = path.removeprefix("/audio/")
    expired = store._signature(key_path, int(time.time()) - 1)  # type: ignore[attr-defined]
    past = {"expires": str(int(time.time()) - 1), "sig": expired}
    assert http.get(f"{path}?{urlencode(past)}").status_code == 403


def test_runsync_failure_has_runpods_shape(http: httpx.Client) -> None:
    reply = runsync(http, {"api_key": "stts_wrong", "text": "Hi."})
    assert reply["status"] == "FAILED"
    assert reply["error"].startswith("unauthorized: ")
    assert http.post("/runsync", json={"no_input": 1}).status_code == 422


def test_run_then_status_and_stream_polling(http: httpx.Client, key: str) -> None:
    job = {"api_key": key, "text": "Queued first. Queued second.", "delivery": "stream"}
    queued = http.post("/run", json={"input": job}).json()
    assert queued["status"] in {"IN_QUEUE", "IN_PROGRESS"}
    chunks: list[dict[str, Any]] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        polled = http.post(f"/stream/{queued['id']}").json()
        chunks += [item["output"] for item in polled["stream"]]
        if polled["status"] in {"COMPLETED", "FAILED"}:
            break
        time.sleep(0.05)
    assert polled["status"] == "COMPLETED"
    assert [chunk["seq"] for chunk in chunks] == list(range(len(chunks)))
    status = http.get(f"/status/{queued['id']}").json()
    assert status["status"] == "COMPLETED" and status["output"] == chunks
    assert http.get("/status/nope").status_code == 404


def test_health_needs_no_key_and_reveals_no_secret(http: httpx.Client) -> None:
    health = http.get("/health").json()
    assert health["status"] == "ok" and health["engine"] == "piper"


# --- the job envelope: parsed whatever the content type, and never echoed -----------------------


def test_json_sent_as_a_form_like_curl_d_does_runs(http: httpx.Client, key: str) -> None:
    body = json.dumps({"input": {"api_key": key, "text": "Sent the curl way."}})
    form = {"content-type": "application/x-www-form-urlencoded"}
    response = http.post("/runsync", content=body, headers=form)
    assert response.status_code == 200 and response.json()["status"] == "COMPLETED"
    assert key.encode() not in response.content


@pytest.mark.parametrize("route", ["/runsync", "/run"])
@pytest.mark.parametrize(
    ("body", "named"),
    [
        ('{"input": "KEY"}', "input"),
        ('{"input": {"api_key": "KEY", "text": ', "not valid JSON"),
        ('["KEY"]', "JSON object"),
        ('{"nothing": "KEY"}', "input"),
        ('{"input": {"api_key": "KEY"}, "webhook": "ftp://KEY.example/"}', "webhook"),
        ('{"input": {"api_key": "KEY"}, "webhook": 7}', "webhook"),
        (
            '{"input": {"api_key": "KEY"}, "webhook": "https://x.example/KEY' + "a" * 2048 + '"}',
            "webhook",
        ),
        (b'{"input": {"api_key": "KEY", "text": "\xff\xfe"}}', "not valid JSON"),
    ],
)
def test_malformed_envelopes_are_422_naming_the_field_never_the_value(
    http: httpx.Client, key: str, route: str, body: str | bytes, named: str
) -> None:
    raw = body.replace("KEY", key) if isinstance(body, str) else body.replace(b"KEY", key.encode())
    for content_type in ("application/json", "application/x-www-form-urlencoded"):
        response = http.post(route, content=raw, headers={"content-type": content_type})
        assert response.status_code == 422
        error = response.json()["error"]
        assert error.startswith("invalid_input: ") and named in error
        assert key.encode() not in response.content


def test_no_route_echoes_input_in_a_validation_error(
    served: tuple[str, WorkerContext], key: str
) -> None:
    """The app-wide handler: even a route that declares typed parameters never echoes them."""
    app = create_app(served[1])

    @app.get("/typed")
    async def typed(count: int) -> dict[str, int]:
        return {"count": count}

    port = free_port()
    with serve(app, port) as base:
        response = httpx.get(f"{base}/typed", params={"count": key}, timeout=30)
    assert response.status_code == 422
    assert key.encode() not in response.content
    [detail] = response.json()["detail"]
    assert detail["loc"] == ["query", "count"] and "input" not in detail and "ctx" not in detail


def test_openapi_has_no_duplicate_operation_ids(http: httpx.Client) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        schema = http.get("/openapi.json").json()
    assert not [w for w in caught if "Duplicate Operation ID" in str(w.message)]
    operation_ids = [
        operation["operationId"] for path in schema["paths"].values() for operation in path.values()
    ]
    assert len(operation_ids) == len(set(operation_ids))
    assert "requestBody" in schema["paths"]["/run"]["post"]
