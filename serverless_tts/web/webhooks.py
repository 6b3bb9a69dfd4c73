"""RunPod's ``webhook``: when a job ends, POST the body ``/status/{id}`` would return to the URL
the job named, as RunPod does, retrying a few times with backoff.

Deliveries run on threads of their own, so a slow or dead receiver (each attempt may wait
``timeout_s`` per phase) never holds a job thread, nor the engine behind it. Only public
addresses are reached (``shared.net``), loopback too when a developer allows it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared.config import Settings
from shared.net import DestinationRefused, SendFailed, check_destination, open_pinned

_log = logging.getLogger(__name__)
# Deliveries at once; more wait their turn. Four receivers timing out hold four threads.
_THREADS = 4
# Deliveries waiting or under way; beyond it a webhook is dropped (and logged), so a flood of
# jobs naming slow receivers cannot grow memory without bound.
MAX_PENDING = 1000


class Webhooks:
    def __init__(
        self,
        *,
        attempts: int,
        timeout_s: float,
        allow_loopback: bool,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._attempts = attempts
        self._timeout_s = timeout_s
        self._allow_loopback = allow_loopback
        self._sleep = sleep
        self._pool = ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="tts-webhook")
        self._pending = threading.BoundedSemaphore(MAX_PENDING)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, sleep: Callable[[float], None] = time.sleep
    ) -> Webhooks:
        return cls(
            attempts=settings.webhook_attempts,
            timeout_s=settings.webhook_timeout_s,
            allow_loopback=settings.webhook_allow_loopback,
            sleep=sleep,
        )

    def check(self, url: str) -> None:
        """Refuse, at submit, a webhook that could never be delivered (``InvalidInput``)."""
        check_destination(url, allow_loopback=self._allow_loopback)

    def send(self, url: str, body: dict[str, Any], *, job_id: str) -> None:
        """Deliver ``body`` to ``url`` in the background."""
        if not self._pending.acquire(blocking=False):
            _log.warning("webhook for job %s dropped: %d deliveries pending", job_id, MAX_PENDING)
            return
        future = self._pool.submit(self._deliver, url, body, job_id)
        future.add_done_callback(lambda _: self._pending.release())

    def close(self) -> None:
        """Wait for deliveries under way (graceful shutdown: a finished job's webhook still
        goes out)."""
        self._pool.shutdown(wait=True)

    def _deliver(self, url: str, body: dict[str, Any], job_id: str) -> None:
        # Logs name the job, never the URL (its path or query is often a secret) or the body.
        outcome = ""
        for attempt in range(self._attempts):
            if attempt:
                self._sleep(float(2 ** (attempt - 1)))  # 1 s, 2 s, 4 s...
            try:
                with open_pinned(
                    "POST",
                    url,
                    json=body,
                    timeout_s=self._timeout_s,
                    allow_loopback=self._allow_loopback,
                ) as response:
                    if response.is_success:
                        return
                    outcome = f"HTTP {response.status_code}"
            except DestinationRefused as err:
                _log.warning("webhook for job %s not sent: %s", job_id, err.message)
                return
            except SendFailed as err:
                outcome = err.message
        _log.warning(
            "webhook for job %s failed after %d attempts (last: %s)",
            job_id,
            self._attempts,
            outcome,
        )
