"""Request bodies as JSON objects, read by the routes themselves (RunPod's envelope, native v1).

Parsed as JSON whatever the content type: ``curl -d '{...}'`` sends
application/x-www-form-urlencoded, and a JSON API should not refuse it for that. Every refusal
names what is wrong, never a value: a body may hold an API key.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from shared.errors import InvalidInput

Model = TypeVar("Model", bound=BaseModel)


async def read_json_object(request: Request, *, expected: str = "a JSON object") -> dict[str, Any]:
    """The body as a JSON object; ``InvalidInput`` saying what is wrong with it (``expected``
    describes the object, for the message when the body is some other JSON value)."""
    return json_object(await request.body(), what="the body", expected=expected)


def json_object(raw: str | bytes, *, what: str, expected: str) -> dict[str, Any]:
    """``raw`` (a body, a WebSocket message: ``what``) parsed as a JSON object."""
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{what} is not valid JSON: it is not UTF-8 text") from None
    except (ValueError, RecursionError):  # a 4,300-digit number; nesting past ~1,000
        raise InvalidInput(f"{what} nests too deeply or holds too long a number") from None
    if not isinstance(parsed, dict):
        raise InvalidInput(f"{what} must be {expected}")
    return parsed


def validated(model: type[Model], body: dict[str, Any]) -> Model:
    """``body`` as ``model``; ``InvalidInput`` naming each field at fault."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        # from None: the validation error's own text quotes the input, API key included.
        raise InvalidInput(problems(exc)) from None


def problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
        for error in exc.errors(include_input=False, include_url=False, include_context=False)
    )
