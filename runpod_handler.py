"""RunPod serverless entry point.

The worker is built at import, which is RunPod's cold start: the engine loads once and stays warm
for every job this process takes. Run locally with
``python runpod_handler.py --test_input '{"input": {...}}'`` or ``--rp_serve_api``.
"""

from __future__ import annotations

import atexit
import os
import sys

# The SDK logs at DEBUG by default, which prints every job it receives (API keys included) and
# every streamed chunk (megabytes of base64). Operators can still ask for it explicitly.
os.environ.setdefault("RUNPOD_LOG_LEVEL", "INFO")

import runpod

from serverless_tts.runpod_worker import runpod_config
from shared.config import Settings
from shared.telemetry import configure_logging
from shared.worker import build_worker

SETTINGS = Settings()
configure_logging(SETTINGS.log_level)
WORKER = build_worker(SETTINGS)
atexit.register(WORKER.close)  # write every pending usage row before the process ends

if __name__ == "__main__":
    runpod.serverless.start(runpod_config(WORKER, sys.argv, os.environ))
