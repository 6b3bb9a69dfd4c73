"""Native v1 speech bodies (read as JSON objects by ``json_body``), turned into the job the
dispatcher validates, so every refusal carries the job contract's codes. Refusals name what is
wrong, never a value: a body may hold an API key sent where it does not belong.
"""

from __future__ import annotations

from typing import Any

from shared.errors import InvalidInput
from shared.jobs import Delivery

# Fields of a raw job that the route sets, never the client: each with what to do instead.
_ROUTE_FIELDS = {
    "api_key": "the key goes in the Authorization header (Authorization: Bearer KEY)",
    "delivery": "the route chooses the delivery: audio as the body (streamed with"
    ' "stream": true), or /v1/synthesize-url for a signed URL',
    "action": "each route runs one kind of job",
}


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
