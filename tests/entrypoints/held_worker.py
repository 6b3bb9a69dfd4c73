"""A project entry point run in this process with its engines behind ``FileGatedEngine`` (gate
files in the folder ``GATE_DIR`` names), so a test in another process can hold a job in the
real engine while it signals the process:

    python -m tests.entrypoints.held_worker serve --port P    # serverless-tts serve
    python -m tests.entrypoints.held_worker runpod_handler.py  # the RunPod worker
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

import shared.worker
from serverless_tts.cli import main
from shared.config import Settings
from shared.engines.base import Engine
from tests.engine_wrappers import FileGatedEngine

_real_build_engine = shared.worker.build_engine


def _gated(settings: Settings, kind: str | None = None) -> Engine:
    engine = _real_build_engine(settings, kind)
    return FileGatedEngine(engine, Path(os.environ["GATE_DIR"]))  # type: ignore[return-value]


if __name__ == "__main__":
    shared.worker.build_engine = _gated  # type: ignore[assignment]
    if sys.argv[1].endswith(".py"):
        script = sys.argv[1]
        sys.argv = sys.argv[1:]
        runpy.run_path(script, run_name="__main__")
    else:
        raise SystemExit(main(sys.argv[1:]))
