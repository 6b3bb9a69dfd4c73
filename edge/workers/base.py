"""The one interface the call flow speaks to a worker through, whatever backend serves it.

Every method is a coroutine (or an async iterator) so the edge's event loop never blocks; the
call flow applies Twilio's deadline itself (``asyncio.wait``), and a call it stops waiting for
is left to finish, so the phrase lands in the worker's cache for the next caller.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

from pydantic import SecretStr

SpeechFormat = Literal["mp3", "wav", "mulaw"]


@dataclass(frozen=True, slots=True)
class Speech:
    """What to say for one business, and how: the fields of a synthesize job (exactly one of
    ``text`` or ``ssml``), the tenant key to say it with."""

    api_key: SecretStr = field(repr=False)
    text: str | None
    ssml: str | None = None
    voice: str | None = None
    language: str = "en"
    speed: float = 1.0
    format: SpeechFormat = "mp3"

    def job_fields(self) -> dict[str, object]:
        """The synthesize job's speech fields (no key, no delivery)."""
        fields: dict[str, object] = {
            "language": self.language,
            "speed": self.speed,
            "format": self.format,
        }
        if self.voice:
            fields["voice"] = self.voice
        if self.ssml is not None:
            fields["ssml"] = self.ssml
        else:
            fields["text"] = self.text
        return fields


class WorkerError(Exception):
    """A worker call that did not give what was asked. ``reason`` (for the webhook's event and
    metrics): ``timeout``, ``unavailable`` (no connection, 5xx, 429), ``refused`` (4xx: the
    job itself was refused, e.g. a bad key) or ``failed`` (the job ran and failed)."""

    def __init__(
        self, reason: Literal["timeout", "unavailable", "refused", "failed"], message: str
    ):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class WorkerClient(Protocol):
    async def cached_url(self, speech: Speech) -> str | None:
        """A signed URL to ``speech`` if the worker has it cached (a greetings.get job: never
        synthesizes); None when it does not. ``WorkerError`` when the worker cannot answer."""
        ...

    async def warm(self, speech: Speech) -> None:
        """Ask the worker to cache ``speech.text`` (a greetings.warm job); returns once the
        worker has it, or raises ``WorkerError``."""
        ...

    async def synthesize_url(self, speech: Speech) -> str:
        """A signed URL to ``speech`` (url delivery: cached or synthesized); ``WorkerError``
        otherwise. It may take long: the caller bounds how long it waits, not this call."""
        ...

    def stream(self, speech: Speech) -> AsyncIterator[bytes]:
        """``speech``'s audio as the worker produces it (``speech.format``; mulaw: raw 8 kHz
        G.711 bytes with no header), chunks of any size; ``WorkerError`` from the iterator when
        the worker fails part way. Closing the iterator stops the worker's job."""
        ...

    async def aclose(self) -> None: ...
