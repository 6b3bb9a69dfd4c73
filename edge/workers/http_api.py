"""This product's own HTTP app as the edge's worker (``serverless-tts serve``, or any host).

Greetings go through the app's RunPod-compatible ``/runsync`` (the key inside the job: the
native v1 API has no greetings route), a URL through ``POST /v1/synthesize-url`` and a stream
through ``WS /v1/stream``, both with the key as ``Authorization: Bearer``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import httpx

from edge.workers import greetings
from edge.workers.base import Speech
from edge.workers.http_calls import JsonCalls
from edge.workers.jobs import bearer
from edge.workers.runpod_jobs import RunPodJobs, url_of
from edge.workers.ws_stream import stream_audio


class HttpWorker:
    """The app at ``base_url``. Each call takes at most ``timeout_s`` (a stream: between two
    messages), and a call that reached no worker, or found it overloaded, is tried ``retries``
    more times within it. ``headers`` go with every request and WebSocket upgrade (a proxy's
    own auth); ``transport`` replaces httpx's."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float,
        retries: int,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("the worker's base URL must be http:// or https://")
        self._base_url = base_url.rstrip("/")
        self._headers = dict(headers or {})
        self._calls = JsonCalls(
            self._base_url,
            timeout_s=timeout_s,
            retries=retries,
            headers=self._headers,
            transport=transport,
        )
        self._jobs = RunPodJobs(self._calls)

    async def cached_url(self, speech: Speech) -> str | None:
        return await greetings.cached_url(self._jobs, speech)

    async def warm(self, speech: Speech) -> None:
        await greetings.warm(self._jobs, speech)

    async def synthesize_url(self, speech: Speech) -> str:
        where = "POST /v1/synthesize-url"
        reply = await self._calls.post(
            "/v1/synthesize-url", speech.job_fields(), headers=bearer(speech)
        )
        return url_of(reply, where)

    def stream(self, speech: Speech) -> AsyncIterator[bytes]:
        return stream_audio(
            "ws" + self._base_url.removeprefix("http") + "/v1/stream",
            speech.job_fields(),
            headers={**self._headers, **bearer(speech)},
            timeout_s=self._calls.timeout_s,
            retries=self._calls.retries,
        )

    async def aclose(self) -> None:
        await self._calls.aclose()
