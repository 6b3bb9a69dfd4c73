"""Everything one edge app holds, built once from its settings: the worker client, the
responder client, the signature checker, streamed turns, work left running, counters."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from edge.background import Background
from edge.config import BusinessConfig, EdgeSettings
from edge.events import EdgeCounters
from edge.metrics import EdgeMetrics
from edge.responder import Reply, Responder
from edge.signature import TwilioSignatures, websocket_base
from edge.turns import Turns
from edge.workers.base import Speech, SpeechFormat, WorkerClient


@dataclass
class EdgeState:
    settings: EdgeSettings
    worker: WorkerClient
    http: httpx.AsyncClient
    responder: Responder
    signatures: TwilioSignatures
    turns: Turns
    background: Background = field(default_factory=Background)
    counters: EdgeCounters = field(default_factory=EdgeCounters)

    @classmethod
    def build(
        cls, settings: EdgeSettings, worker: WorkerClient, *, metrics: EdgeMetrics | None = None
    ) -> EdgeState:
        token = settings.secrets.twilio_auth_token
        # Redirects are not followed: a responder that moved answers with its new URL in the
        # configuration, not through a hop the edge cannot vet.
        http = httpx.AsyncClient(follow_redirects=False)
        return cls(
            settings=settings,
            worker=worker,
            http=http,
            responder=Responder(http),
            signatures=TwilioSignatures(token, settings.config.public_base_url),
            turns=Turns(token),
            counters=EdgeCounters(metrics=metrics or EdgeMetrics()),
        )

    def url(self, business: str, route: str) -> str:
        """The public URL of one of ``business``'s webhooks, as Twilio will call and sign it."""
        return f"{self.settings.config.public_base_url}/twilio/{business}/{route}"

    def stream_url(self, business: str) -> str:
        base = websocket_base(self.settings.config.public_base_url)
        return f"{base}/twilio/{business}/media"

    def speech(
        self,
        business: str,
        *,
        text: str | None = None,
        reply: Reply | None = None,
        format: SpeechFormat | None = None,
    ) -> Speech:
        """``text`` (or ``reply``'s text or SSML) in ``business``'s voice, on its tenant key."""
        config: BusinessConfig = self.settings.config.businesses[business]
        return Speech(
            api_key=self.settings.secrets.tenant_keys[business],
            text=reply.text if reply is not None else text,
            ssml=reply.ssml if reply is not None else None,
            voice=config.voice or None,
            language=config.language,
            speed=config.speed,
            format=format or config.format,
        )

    async def aclose(self) -> None:
        await self.background.aclose()
        await self.http.aclose()
        await self.worker.aclose()
