"""RunPod serverless entry point.

The worker is built at import, which is RunPod's cold start: the engine loads once and stays warm
for every job this process takes. Run locally with
``python runpod_handler.py --test_input '{"input": {...}}'`` or ``--rp_serve_api``.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys

# The SDK logs at DEBUG by default, which prints every job it receives (API keys included) and
# every streamed chunk (megabytes of base64). Operators can still ask for it explicitly.
os.environ.setdefault("RUNPOD_LOG_LEVEL", "INFO")

import runpod

from serverless_tts.runpod_refresh import refreshing
from serverless_tts.runpod_worker import runpod_config
from serverless_tts.web.audio_server import with_local_audio_server
from shared.config import load_settings
from shared.errors import InvalidConfig
from shared.telemetry import configure_logging
from shared.worker import build_worker

try:
    SETTINGS = load_settings()
except InvalidConfig as err:
    sys.exit(f"error: {err}")  # a clear line for the platform's log, not a traceback
configure_logging(SETTINGS.log_level)
# The SDK's local API (--rp_serve_api) serves only jobs: local audio URLs get a server beside it.
SETTINGS = with_local_audio_server(SETTINGS, sys.argv)
WORKER = build_worker(SETTINGS)
# On SIGTERM the SDK stops taking jobs and lets the running ones finish; then this drains what
# is left (within TTS_SHUTDOWN_GRACE_S) and writes every pending usage row before the exit.
atexit.register(WORKER.shutdown)

if __name__ == "__main__":
    # The serving worker installs its own SIGTERM handler; the local API's uvicorn raises
    # SIGTERM again once its requests are done, which by default kills the process before
    # atexit runs: exit through Python instead.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    # A device error or a lost engine step asks RunPod for a fresh worker (refresh_worker).
    runpod.serverless.start(refreshing(runpod_config(WORKER, sys.argv, os.environ), WORKER))
