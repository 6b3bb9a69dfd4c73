"""Asking RunPod for a fresh worker when this one's model can no longer be trusted.

runpod 1.12 replaces a worker whose job ends with ``refresh_worker`` set: a whole-result
handler may return ``{"error": ..., "refresh_worker": True}`` (``rp_job.run_job`` turns it into
``stopPod``); a streaming handler cannot say it in an item (``handle_job`` reads only ``error``
there), so the start configuration's own ``refresh_worker`` flag is set before the item that
reports the fault, which ``handle_job`` reads once the stream ends. Either way the SDK stops
taking jobs on this worker and the platform starts another.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable, MutableMapping
from typing import Any

from handlers.health import fault
from shared.worker import WorkerContext

_log = logging.getLogger(__name__)
RunpodJob = MutableMapping[str, Any]


def refreshing(config: MutableMapping[str, Any], ctx: WorkerContext) -> MutableMapping[str, Any]:
    """``config`` (for ``runpod.serverless.start``) whose handler asks for a fresh worker once
    ``ctx`` has a fault (``handlers.health.fault``)."""
    handler: Callable[[RunpodJob], Any] = config["handler"]

    def check() -> bool:
        reason = fault(ctx)
        if reason is not None and not config.get("refresh_worker"):
            _log.error("asking RunPod for a fresh worker: %s", reason)
            config["refresh_worker"] = True
        return reason is not None

    if inspect.isasyncgenfunction(handler):

        async def streaming(job: RunpodJob) -> AsyncIterator[Any]:
            async for item in handler(job):
                check()  # before the item: an error item ends RunPod's reading of the stream
                yield item
            check()

        config["handler"] = streaming
    else:

        async def whole(job: RunpodJob) -> Any:
            result = await handler(job)
            if check() and isinstance(result, dict):
                result = {**result, "refresh_worker": True}
            return result

        config["handler"] = whole
    return config
