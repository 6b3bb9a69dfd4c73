"""Native v1 request bodies, read by the routes themselves: a JSON object, turned into the job
the dispatcher validates, so every refusal carries the job contract's codes.

Parsed as JSON whatever the content type (``curl -d`` sends a form type). Every refusal names
what is wrong, never a value: a body may hold an API key sent where it does not belong.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from shared.errors import InvalidInput
from shared.jobs import Delivery

Model = TypeVar("Model", bound=BaseModel)

# Fields of a raw job that the route sets, never the client: each with what to do instead.
_ROUTE_FIELDS = {
    "api_key": "the key goes in the Authorization header (Authorization: Bearer KEY)",
    "delivery": "the route chooses the delivery: /v1/synthesize answers audio (streamed"
    ' with "stream": true), /v1/synthesize-url a signed URL',
    "action": "each route runs one kind of job",
}


async def read_json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object; ``InvalidInput`` saying what is wrong with it."""
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
        raise InvalidInput("the body must be a JSON object")
    return parsed


def take_stream(body: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    """``/v1/synthesize``'s own field, and the rest of the body."""
    rest = {name: value for name, value in body.items() if name != "stream"}
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidInput("stream: must be true or false")
    return stream, rest


def speech_job(body: dict[str, Any], delivery: Delivery) -> dict[str, Any]:
    """The raw synthesize job a speech body asks for, delivered as the route delivers."""
    for name, instead in _ROUTE_FIELDS.items():
        if name in body:
            raise InvalidInput(f"{name}: not a body field here; {instead}")
    if "stream" in body:
        raise InvalidInput("stream: only /v1/synthesize streams; this route answers a URL")
    return {**body, "delivery": delivery}


def validated(model: type[Model], body: dict[str, Any]) -> Model:
    """``body`` as ``model``; ``InvalidInput`` naming each field at fault."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        # from None: the validation error's own text quotes the input.
        problems = exc.errors(include_input=False, include_url=False, include_context=False)
        raise InvalidInput(
            "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in problems)
        ) from None
