"""RunPod's request body, ``{"input": {...}, "webhook": "https://..."}``, read by the routes
themselves.

Parsed as JSON whatever the content type: ``curl -d '{...}'`` sends
application/x-www-form-urlencoded, and a JSON API should not refuse it for that. Every refusal
names the fields that are wrong, never their values (``input`` holds the API key).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Request
from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, ValidationError

from shared.errors import InvalidInput
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
    raw = await request.body()
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except UnicodeDecodeError as exc:
        raise InvalidInput("the body is not valid JSON: it is not UTF-8 text") from exc
    except (ValueError, RecursionError) as exc:  # a 4,300-digit number; nesting past ~1,000
        raise InvalidInput("the body nests too deeply or holds too long a number") from exc
    if not isinstance(parsed, dict):
        raise InvalidInput('the body must be a JSON object with an "input" object')
    try:
        return RunRequest.model_validate(parsed)
    except ValidationError as exc:
        # from None: the validation error's own text quotes the input, API key included.
        raise InvalidInput(_problems(exc)) from None


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
        for error in exc.errors(include_input=False, include_url=False, include_context=False)
    )
