"""Fuzzing the HTTP app from its own OpenAPI document (schemathesis, real Piper, real uvicorn):
no operation answers a 5xx, and every 4xx is a refusal in its surface's shape with an error
code its clients can act on.

The app serves a low ``TTS_MAX_TEXT_CHARS``: the schema bounds no text, and a generated text
Piper speaks costs ~0.1 s per dozen characters here, so longer ones are refused as
``text_too_long`` (a refusal the check reads like any other) instead of spoken.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.transport import Response
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.schemas import OpenApiSchema

from serverless_tts.web.errors import Surface, surface_for
from shared.errors import ErrorCode
from tests.entrypoints.web_helpers import Served, Start

_CODES = {code.value for code in ErrorCode}
MAX_TEXT_CHARS = 60


def v1_code(body: Any) -> str:
    """Native v1: ``{"error": {"code", "message"}}``."""
    error = body["error"]
    assert set(error) == {"code", "message"} and isinstance(error["message"], str), body
    return str(error["code"])


def openai_code(body: Any) -> str:
    """OpenAI's ``{"error": {"message", "type", "param", "code"}}``; its code is ours, except
    OpenAI's own ``insufficient_quota`` for an exhausted quota."""
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, body
    assert isinstance(error["message"], str) and isinstance(error["type"], str), body
    return "quota_exceeded" if error["code"] == "insufficient_quota" else str(error["code"])


def runpod_code(body: Any) -> str:
    """RunPod's ``{"error": "code: message"}``, at the top or in a job's FAILED status."""
    error = body["error"]
    assert isinstance(error, str) and ": " in error, body
    return error.split(": ", 1)[0]


_READERS = {Surface.V1: v1_code, Surface.OPENAI: openai_code, Surface.RUNPOD: runpod_code}


# uvicorn's own answer to a request line or header it cannot parse: refused before the app
# exists for the request, so in no surface's shape (uvicorn/protocols/http/h11_impl.py).
UVICORN_BAD_REQUEST = b"Invalid HTTP request received."


def refusal_has_code(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every 4xx names an error code of ours, in the shape of the surface that answered, and so
    does every RunPod job that FAILED (RunPod answers those 200, the error in the status), and
    none of them is ``internal`` (an exception nothing translated)."""
    path, status = case.formatted_path, response.status_code
    surface = surface_for(path)
    is_json = "json" in str(response.headers.get("content-type", ""))
    if status == 400 and response.content == UVICORN_BAD_REQUEST:
        return None
    if 400 <= status < 500:
        read = _READERS[surface]
    elif surface is Surface.RUNPOD and status == 200 and is_json and _failed(response, path):
        read = runpod_code
    else:
        return None
    where = f"{status} from {case.method} {path}: {response.content[:300]!r}"
    try:
        code = read(response.json())
    except (KeyError, TypeError, ValueError, AssertionError):
        raise AssertionError(f"a refusal not in its surface's shape: {where}") from None
    assert code in _CODES, f"a refusal with no code of ours: {where}"
    assert code != ErrorCode.INTERNAL, f"an unhandled exception: {where}"
    return None


def _failed(response: Response, path: str) -> bool:
    """A FAILED job's status; ``/run`` only acknowledges a submission (its error, if any, is
    read from ``/status``), so a job that ended before the reply went out is no refusal."""
    body = response.json()
    return path != "/run" and isinstance(body, dict) and body.get("status") == "FAILED"


CHECKS = [not_a_server_error, refusal_has_code]


@pytest.fixture
def app(start: Start) -> Served:
    return start(max_text_chars=MAX_TEXT_CHARS)


@pytest.fixture
def app_key(app: Served) -> str:
    return app.new_key()


@pytest.fixture
def api_schema(app: Served) -> OpenApiSchema:
    return schemathesis.openapi.from_url(str(app.http.base_url.join("/openapi.json")))


# The WebSocket route's GET is documentation of an upgrade, not an HTTP operation to fuzz.
EXCLUDED = {"websocket_stream"}


# The job-bearing bodies, by path, and what makes a schema-valid one speakable on Piper.
_PREVIEW_PATH = "/v1/voices/{voice_id}/preview"
_SPEECH_PATHS = {"/v1/synthesize", "/v1/synthesize-url", _PREVIEW_PATH}
PIPER_VOICE = "builtin:en_US-joe-medium"
_JOB_PATHS = {"/runsync", "/run"}


def speakable(case: Case) -> Case:
    """A schema-valid case nudged past the rules the schema cannot state (exactly one of text
    or ssml, Piper's one language, a supported sample rate, a known OpenAI model), so
    synthesis runs too; the other fields stay as generated."""
    body, path = case.body, case.operation.path
    if not isinstance(body, dict):
        return case
    if path in _JOB_PATHS and isinstance(body.get("input"), dict):
        body = body["input"]
        body.pop("action", None)
    if path in _SPEECH_PATHS | _JOB_PATHS:
        body.update(text=str(body.get("text") or "Hi.")[:MAX_TEXT_CHARS], language="en")
        body.update(sample_rate=None)
    if path == _PREVIEW_PATH:
        case.path_parameters = {"voice_id": PIPER_VOICE}
    elif path in _SPEECH_PATHS | _JOB_PATHS:
        body.update(ssml=None, voice=None)
    if path == "/v1/audio/speech":
        body.update(model="tts-1", voice="alloy", input=str(body.get("input"))[:MAX_TEXT_CHARS])
    return case


def fuzz(operation: APIOperation, app: Served, key: str) -> None:
    """Valid and invalid requests for ``operation``, each sent and checked."""
    positive = operation.as_strategy(GenerationMode.POSITIVE)
    cases = st.one_of(
        positive, operation.as_strategy(GenerationMode.NEGATIVE), positive.map(speakable)
    )

    @settings(
        max_examples=25,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def run(case: Case) -> None:
        body = case.body
        if isinstance(body, dict) and isinstance(body.get("input"), dict):
            body["input"].setdefault("api_key", key)  # RunPod's routes carry the key in the job
        case.call_and_validate(
            base_url=str(app.http.base_url).rstrip("/"),
            headers={"Authorization": f"Bearer {key}"},
            checks=CHECKS,
        )

    run()


def test_no_operation_answers_a_server_error_or_an_uncoded_refusal(
    api_schema: OpenApiSchema, app: Served, app_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Every operation is fuzzed, and every one that fails is reported, not just the first.

    Operations are run one by one rather than through ``schema.parametrize()``: schemathesis
    4.32.5's fixture-loaded schemas read ``request.node._nodeid``, which pytest 9 no longer has.
    """
    caplog.set_level(logging.ERROR)
    failures: dict[str, str] = {}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    fuzzed = [op for op in operations if op.definition.raw.get("operationId") not in EXCLUDED]
    assert len(fuzzed) == len(operations) - len(EXCLUDED)
    for operation in fuzzed:
        try:
            fuzz(operation, app, app_key)
        except FailureGroup as group:  # each operation's shrunk failures, reported together
            failures[operation.label] = "\n".join(str(failure) for failure in group.exceptions)
    # A stream that fails after its 200 went out shows no 5xx: its error is only in the logs
    # (the dispatcher's "failed unexpectedly", uvicorn's "Exception in ASGI application").
    for record in caplog.records:
        if record.levelno >= logging.ERROR:
            failures.setdefault(f"logged by {record.name}", record.getMessage())
    assert not failures, "\n\n".join(f"{label}\n{text}" for label, text in failures.items())
