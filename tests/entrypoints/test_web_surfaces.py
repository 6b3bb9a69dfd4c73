"""What holds across the app's surfaces: each refuses in its own clients' error shape (even
before a route runs), CORS is off unless origins are configured, and /openapi.json documents
every route. Real app under uvicorn on loopback, real Piper."""

from __future__ import annotations

import httpx
from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts

from serverless_tts.web.app import create_app
from tests.entrypoints.web_helpers import Start


def test_a_body_over_the_bound_is_refused_in_each_surfaces_shape(
    start: Start,
) -> None:
    served = start(max_body_bytes=1_000)
    big = b'{"text": "' + b"a" * 2_000 + b'"}'
    headers = {"Content-Type": "application/json", "Authorization": "Bearer whatever"}

    runpod = served.http.post("/runsync", content=big, headers=headers)
    assert runpod.status_code == 413
    assert runpod.json()["error"].startswith("request_too_large: ")

    native = served.http.post("/v1/synthesize", content=big, headers=headers)
    assert native.status_code == 413
    assert native.json()["error"]["code"] == "request_too_large"

    openai = served.http.post("/v1/audio/speech", content=big, headers=headers)
    assert openai.status_code == 413
    error = openai.json()["error"]
    assert error["code"] == "request_too_large"
    assert error["type"] == "invalid_request_error"
    assert set(error) == {"message", "type", "param", "code"}


def test_an_unknown_v1_path_answers_in_the_v1_shape(start: Start) -> None:
    reply = start().http.get("/v1/no-such-route")
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "not_found"


def test_cors_is_off_by_default(start: Start) -> None:
    reply = _preflight(start().http, "https://app.example.com")
    assert "access-control-allow-origin" not in reply.headers


def test_cors_allows_only_the_configured_origins(start: Start) -> None:
    served = start(cors_origins="https://app.example.com, https://admin.example.com")
    allowed = _preflight(served.http, "https://admin.example.com")
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://admin.example.com"
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    refused = _preflight(served.http, "https://evil.example.net")
    assert "access-control-allow-origin" not in refused.headers
    health = served.http.get("/v1/health", headers={"Origin": "https://app.example.com"})
    assert health.headers["access-control-allow-origin"] == "https://app.example.com"
    exposed = health.headers["access-control-expose-headers"].lower()
    assert "x-request-id" in exposed and "retry-after" in exposed


def _preflight(http: httpx.Client, origin: str) -> httpx.Response:
    return http.options(
        "/v1/audio/speech",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


# Prometheus's scrape target: an operator's route (its own token), in Prometheus's text format,
# not part of the API clients are generated from.
UNDOCUMENTED = {"/metrics"}


def test_the_openapi_document_names_every_route(start: Start) -> None:
    served = start()
    document = served.http.get("/openapi.json").json()
    paths = document["paths"]
    app = create_app(served.ctx)
    routes = [
        (context.path_format, context.original_route)
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute | APIWebSocketRoute)
    ]
    assert len(routes) > 15
    for path, route in routes:
        if path in UNDOCUMENTED:
            assert path not in paths
            continue
        assert path in paths, f"{path} is not in /openapi.json"
        if isinstance(route, APIRoute):
            for method in route.methods - {"HEAD"}:
                assert method.lower() in paths[path], f"{method} {path}"
    for path in ("/v1/synthesize", "/v1/audio/speech", "/v1/stream", "/runsync", "/v1/health"):
        assert path in paths
    speech = paths["/v1/audio/speech"]["post"]
    assert "requestBody" in speech, "the OpenAI route documents its body"
    websocket = paths["/v1/stream"]["get"]
    assert "101" in websocket["responses"]
    assert "cancel" in websocket["description"], "the protocol is described"
