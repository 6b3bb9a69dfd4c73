"""A Twilio webhook, read and checked before any call logic sees it: the body bounded before it
is parsed, the signature checked before the business is looked up (so an unsigned request
learns nothing, not even which businesses exist).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.datastructures import ImmutableMultiDict, QueryParams
from starlette.requests import Request

from edge.config import BusinessConfig
from edge.signature import TwilioSignatures

# Twilio's webhook forms are a few hundred bytes; the say route's text is at most ~4 KB.
MAX_BODY_BYTES = 32 * 1024
MAX_FIELDS = 200
FORM = "application/x-www-form-urlencoded"


class Refused(Exception):
    """The request is answered with ``status`` and no TwiML."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Webhook:
    business: str
    config: BusinessConfig
    form: ImmutableMultiDict[str, str]
    query: QueryParams
    json: dict[str, object] | None = None  # the body, when it came as JSON (say route)

    @property
    def call_sid(self) -> str | None:
        return self.form.get("CallSid") or None


async def read_webhook(
    request: Request,
    signatures: TwilioSignatures,
    businesses: dict[str, BusinessConfig],
    *,
    allow_json: bool = False,
) -> Webhook:
    body = await _bounded_body(request)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    payload: dict[str, object] | None = None
    if media_type == FORM:
        form = _form(body)
        signed = signatures.form_is_signed(request.scope, form)
    elif media_type == "application/json" and allow_json:
        text = _text(body)
        form = ImmutableMultiDict()
        signed = signatures.body_is_signed(request.scope, text)
    else:
        raise Refused(415, "send the webhook as a form (application/x-www-form-urlencoded)")
    if not signed:
        raise Refused(403, "the X-Twilio-Signature is missing or does not match")
    if media_type != FORM:
        payload = _json_object(text)
    name = request.path_params["business"]
    config = businesses.get(name)
    if config is None:
        raise Refused(404, "no such business")
    return Webhook(name, config, form, request.query_params, payload)


async def _bounded_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise Refused(413, f"the body is over {MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise Refused(413, f"the body is over {MAX_BODY_BYTES} bytes")
    return bytes(body)


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, "the body is not UTF-8") from None


def _form(body: bytes) -> ImmutableMultiDict[str, str]:
    try:
        pairs = parse_qsl(_text(body), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        raise Refused(400, f"the form has more than {MAX_FIELDS} fields") from None
    return ImmutableMultiDict(pairs)


def _json_object(text: str) -> dict[str, object]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise Refused(400, "the body is not JSON") from None
    if not isinstance(value, dict):
        raise Refused(400, "the body must be a JSON object")
    return value
