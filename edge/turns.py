"""Streamed turns: the reply a ``<Connect><Stream>`` answer hands to the Media Stream, and what
became of it, for the ``continue`` webhook that follows.

A short reply travels in the stream's ``<Parameter>``s too (Twilio hands them back in
``start``), so its Media Stream can be served by any edge instance; a long one would pass
Twilio's bound on parameters (error 31103), so it is found in memory by its turn id. The
parameters come back inside the socket, not under the handshake's signature, so they carry an
HMAC of their own over the business, the turn and its whole reply: a replayed handshake cannot
make the edge speak text of its choosing on a tenant's key.

Turns are kept in memory, bounded in count and age; a ``continue`` for a turn this instance
does not know just carries the call on.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pydantic import SecretStr

from edge.events import StreamOutcome
from edge.responder import Reply

MAX_TURNS = 10_000
# Twilio bounds a stream's parameters (error 31103); a reply longer than this stays in memory.
MAX_PARAMETER_CHARS = 350
TURN_TTL_S = 600.0
_KEY_LABEL = b"serverless-tts edge turn parameters v1"


@dataclass(slots=True)
class Turn:
    id: str
    business: str
    reply: Reply
    outcome: StreamOutcome | None = None  # None: no stream has ended for it yet
    fallback_reason: str | None = None  # why the stream failed, when it did

    def heard(self) -> bool:
        """Whether the caller got the reply from the stream (or chose to skip it): if not,
        ``continue`` says it. A failure part way says it all again, rather than leave the
        caller without its end."""
        return self.outcome in {"played", "interrupted", "stopped", "gone"}


class Turns:
    def __init__(
        self,
        auth_token: SecretStr,
        *,
        max_turns: int = MAX_TURNS,
        ttl_s: float = TURN_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # A key of its own, derived from the auth token, so every instance shares it.
        self._key = hmac.new(auth_token.get_secret_value().encode(), _KEY_LABEL, "sha256").digest()
        self._turns: OrderedDict[str, tuple[float, Turn]] = OrderedDict()
        self._max, self._ttl, self._clock = max_turns, ttl_s, clock

    def open(self, business: str, reply: Reply) -> Turn:
        turn = Turn(secrets.token_urlsafe(16), business, reply)
        self._expire()
        self._turns[turn.id] = (self._clock(), turn)
        while len(self._turns) > self._max:
            self._turns.popitem(last=False)
        return turn

    def parameters(self, turn: Turn) -> dict[str, str]:
        kind, content = _content(turn.reply)
        parameters = {"turn": turn.id, "sig": self._sign(turn.business, turn.id, kind, content)}
        if len(content) <= MAX_PARAMETER_CHARS:
            parameters[kind] = content
        return parameters

    def from_parameters(self, business: str, parameters: Mapping[str, str]) -> Turn | None:
        """The turn ``parameters`` describe, if they were signed for ``business``: the one in
        memory, or (served by another instance) one rebuilt from them; None otherwise."""
        turn_id, signature = parameters.get("turn", ""), parameters.get("sig", "")
        known = self._turns.get(turn_id)
        if known is not None:
            kind, content = _content(known[1].reply)
        else:
            kind = "ssml" if "ssml" in parameters else "text"
            content = parameters.get(kind, "")
        expected = self._sign(business, turn_id, kind, content)
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            return None
        if known is not None:
            return known[1]
        # Signed by an edge, so it is a reply that was valid there.
        return Turn(turn_id, business, Reply.model_validate({kind: content}))

    def take(self, business: str, turn_id: str) -> Turn | None:
        """The turn's outcome, once (``continue`` asks for it when the stream has ended)."""
        self._expire()
        known = self._turns.get(turn_id)
        if known is None or known[1].business != business:
            return None
        del self._turns[turn_id]
        return known[1]

    def _sign(self, business: str, turn_id: str, kind: str, content: str) -> str:
        message = "\n".join((business, turn_id, kind, content)).encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def _expire(self) -> None:
        oldest = self._clock() - self._ttl
        while self._turns and next(iter(self._turns.values()))[0] < oldest:
            self._turns.popitem(last=False)


def _content(reply: Reply) -> tuple[str, str]:
    return ("ssml", reply.ssml) if reply.ssml is not None else ("text", reply.text or "")
