"""The project's own commands run for real, as a user runs them: a subprocess in the repository,
with the caller's environment minus every TTS_/RUNPOD_ setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def clean_env(data_dir: Path) -> dict[str, str]:
    """This environment without the project's settings, on its own data directory and Piper."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TTS_", "RUNPOD_"))}
    env.update({"TTS_DATA_DIR": str(data_dir), "TTS_ENGINE": "piper"})
    return env


def run_python(
    env: dict[str, str], *argv: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python ARGV`` in the repository (a script, or ``-m module``), its output captured."""
    return subprocess.run(
        [sys.executable, *argv],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
