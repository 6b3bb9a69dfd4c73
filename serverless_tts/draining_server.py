"""uvicorn with a drain before it stops, for ``serverless-tts serve``.

On SIGTERM (or Ctrl-C) the port stays open: new jobs get a retryable 503 and ``/health`` says
503 (a balancer moves on), while the jobs already admitted run for up to the grace period; then
uvicorn stops as usual. A second signal stops at once. Unlike plain uvicorn, the signal is not
raised again once the server has stopped: that would kill the process before the caller writes
its last usage rows.
"""

from __future__ import annotations

import logging
import threading
from types import FrameType

import uvicorn

from shared.lifecycle import Lifecycle

_log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, lifecycle: Lifecycle, *, grace_s: float) -> None:
        super().__init__(config)
        self._lifecycle = lifecycle
        self._grace_s = grace_s
        self._drain: threading.Thread | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain is not None:
            self.force_exit = True
            self.should_exit = True
            return
        self._drain = threading.Thread(target=self._drain_then_stop, name="drain", daemon=True)
        self._drain.start()

    def _drain_then_stop(self) -> None:
        if not self._lifecycle.drain(self._grace_s):
            _log.warning("shutdown: %g s grace over with jobs still running", self._grace_s)
        self.should_exit = True
