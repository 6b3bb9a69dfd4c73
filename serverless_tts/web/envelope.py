"""RunPod's request body, ``{"input": {...}, "webhook": "https://..."}``, read by the routes
themselves (``json_body``): every refusal names the fields that are wrong, never their values
(``input`` holds the API key).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Request
from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

from serverless_tts.web.json_body import read_json_object, validated
from shared.net import DestinationRefused, check_http_url

MAX_WEBHOOK_CHARS = 2048


def _http_url(value: str) -> str:
    try:
        check_http_url(value)
    except DestinationRefused as err:
        raise ValueError(err.message) from None
    return value


WebhookUrl = Annotated[
    str, StringConstraints(max_length=MAX_WEBHOOK_CHARS), AfterValidator(_http_url)
]


class RunRequest(BaseModel):
    """The job is under ``input``; ``webhook`` hears the job's final status when it ends."""

    model_config = ConfigDict(extra="ignore", strict=True)

    input: dict[str, Any]
    webhook: WebhookUrl | None = None


# The routes read the body themselves, so the schema is declared for the OpenAPI document.
OPENAPI_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": RunRequest.model_json_schema()}},
    }
}


async def read_envelope(request: Request) -> RunRequest:
    """The request's envelope; ``InvalidInput`` saying what is wrong with it."""
    body = await read_json_object(request, expected='a JSON object with an "input" object')
    return validated(RunRequest, body)
