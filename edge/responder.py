"""The business's own AI, asked what to say back to the caller.

The contract: the edge POSTs JSON ``{"business", "call_sid", "from", "to", "speech",
"confidence"}`` and expects a 2xx JSON ``{"text": "..."}`` or ``{"ssml": "..."}``. Anything else
(a timeout, no connection, another status, another body) is one ``ResponderFailed`` with a
reason, and the call flow says the business's fallback text: a caller never waits on it past
``responder_timeout_ms``, which bounds the whole exchange, not each phase of it.
"""

from __future__ import annotations

import asyncio
import re
from typing import Literal

import httpx
from defusedxml import ElementTree
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edge.twiml import MAX_SAY_CHARS

# A reply is said by <Say> when synthesis is late, so it stays within Twilio's limit for one.
MAX_REPLY_CHARS = MAX_SAY_CHARS - 96
# A reply body larger than this is not a reply of at most MAX_REPLY_CHARS, whatever it holds.
MAX_REPLY_BYTES = 64 * 1024

FailureReason = Literal["responder_timeout", "responder_failed", "responder_invalid"]


class ResponderFailed(Exception):
    def __init__(self, reason: FailureReason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason: FailureReason = reason


class CallerTurn(BaseModel):
    """What the edge sends: the caller's words and the call they belong to."""

    model_config = ConfigDict(populate_by_name=True)

    business: str
    call_sid: str | None
    from_: str | None = Field(alias="from")
    to: str | None
    speech: str
    confidence: float | None


class Reply(BaseModel):
    """What the business answers: exactly one of ``text`` or ``ssml`` (SSML must parse)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    text: str | None = Field(None, min_length=1, max_length=MAX_REPLY_CHARS)
    ssml: str | None = Field(None, min_length=1, max_length=MAX_REPLY_CHARS)

    @model_validator(mode="after")
    def _one_of(self) -> Reply:
        if (self.text is None) == (self.ssml is None):
            raise ValueError('give exactly one of "text" or "ssml"')
        if self.text is not None and not self.text.strip():
            raise ValueError('"text" is blank')
        if self.ssml is not None and not ssml_words(self.ssml):
            raise ValueError('"ssml" is not SSML with words in it')
        return self

    def words(self) -> str:
        """What ``<Say>`` says when the worker's audio is not ready: the text, or the words
        of the SSML without its markup."""
        return self.text if self.text is not None else ssml_words(self.ssml or "")


def ssml_words(ssml: str) -> str:
    try:
        root = ElementTree.fromstring(ssml)
    except (ElementTree.ParseError, ValueError):
        return ""
    return re.sub(r"\s+", " ", "".join(root.itertext())).strip()


class Responder:
    """Asks businesses' responders over one pooled client (handed in, so tests and hosts
    choose its transport)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def reply(self, url: str, turn: CallerTurn, *, timeout_s: float) -> Reply:
        try:
            async with asyncio.timeout(timeout_s):
                status, body = await self._post(url, turn)
        except TimeoutError:
            raise ResponderFailed("responder_timeout", f"no reply within {timeout_s} s") from None
        except httpx.HTTPError as exc:
            raise ResponderFailed("responder_failed", type(exc).__name__) from exc
        if not 200 <= status < 300:
            raise ResponderFailed("responder_failed", f"status {status}")
        try:
            return Reply.model_validate_json(body)
        except ValidationError as exc:
            raise ResponderFailed("responder_invalid", str(exc.errors()[0]["msg"])) from None

    async def _post(self, url: str, turn: CallerTurn) -> tuple[int, bytes]:
        payload = turn.model_dump(by_alias=True)
        async with self._client.stream("POST", url, json=payload) as response:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_REPLY_BYTES:
                    raise ResponderFailed("responder_invalid", "the reply body is too large")
            return response.status_code, bytes(body)
