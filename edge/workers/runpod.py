"""A RunPod serverless endpoint running this product's worker (``runpod_handler.py``).

The RunPod key goes as ``Authorization: Bearer``, the tenant key inside each job. A URL comes
from ``/runsync?wait=`` (polled on ``/status`` when RunPod answers before the job ends), a
stream from ``/run`` then ``/stream`` polls (cancelled with ``/cancel`` when the caller stops
listening), and a warm job is only queued: RunPod runs it whether or not anyone waits.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from contextlib import aclosing

import httpx
from pydantic import SecretStr

from edge.workers import greetings
from edge.workers.base import Speech, WorkerError
from edge.workers.http_calls import JsonCalls
from edge.workers.jobs import greeting_input, synthesize_input
from edge.workers.runpod_jobs import RunPodJobs, result_of, url_of


class RunPodWorker:
    """The endpoint at ``base_url`` (``https://api.runpod.ai/v2/{endpoint_id}``). Timeouts and
    retries as ``HttpWorker``'s; ``webhook_url`` goes with every ``/run`` (RunPod calls it when
    the job ends); ``poll_interval_s`` between polls of ``/status`` and ``/stream``."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: SecretStr,
        timeout_s: float,
        retries: int,
        webhook_url: str | None = None,
        poll_interval_s: float = 0.1,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._calls = JsonCalls(
            base_url,
            timeout_s=timeout_s,
            retries=retries,
            headers={"Authorization": f"Bearer {api_key.get_secret_value()}"},
            transport=transport,
        )
        self._jobs = RunPodJobs(
            self._calls, wait=True, webhook_url=webhook_url, poll_interval_s=poll_interval_s
        )

    async def cached_url(self, speech: Speech) -> str | None:
        return await greetings.cached_url(self._jobs, speech)

    async def warm(self, speech: Speech) -> None:
        """Queue the warm job and return: it runs on RunPod whoever waits for it."""
        await self._jobs.submit(greeting_input(speech, "greetings.warm"))

    async def synthesize_url(self, speech: Speech) -> str:
        state = await self._jobs.run_sync(synthesize_input(speech, "url"))
        return url_of(result_of(state, "synthesize"), "synthesize")

    async def stream(self, speech: Speech) -> AsyncIterator[bytes]:
        job_id = await self._jobs.submit(synthesize_input(speech, "stream"))
        ended = False
        try:
            async with aclosing(self._jobs.stream_outputs(job_id)) as outputs:
                async for item in outputs:
                    audio = _audio(item)
                    if audio:
                        yield audio
            ended = True
        finally:
            if not ended:  # closed early, or failed: free the GPU
                await self._jobs.cancel(job_id)

    async def aclose(self) -> None:
        await self._calls.aclose()


def _audio(item: dict[str, object]) -> bytes:
    encoded = item.get("audio_base64")
    try:
        if not isinstance(encoded, str):
            raise ValueError
        return base64.b64decode(encoded, validate=True)
    except (ValueError, binascii.Error):
        raise WorkerError("failed", "GET /stream: an item without base64 audio") from None
