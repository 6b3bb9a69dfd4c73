"""The XTTS-v2 weights step (Dockerfile and Modal): the licence first, a fixed folder, and
the Dockerfile pointing the worker at the folder it fills. No download happens here (no model
hub is reachable): a complete folder is left as it is."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.engines.xtts import REQUIRED_FILES
from shared.engines.xtts_weights import NEEDED, download_xtts_v2
from tests.processes import REPO


def test_nothing_is_fetched_until_the_cpml_is_accepted(tmp_path: Path) -> None:
    with pytest.raises(PermissionError, match="Coqui Public Model License"):
        download_xtts_v2(tmp_path / "xtts-v2", accept_cpml=False)
    assert not (tmp_path / "xtts-v2").exists()


def test_a_complete_folder_is_kept_as_it_is(tiny_xtts_dir: Path) -> None:
    assert download_xtts_v2(tiny_xtts_dir, accept_cpml=True) == tiny_xtts_dir


def test_the_files_it_needs_are_the_ones_the_engine_loads() -> None:
    assert set(NEEDED) == set(REQUIRED_FILES)


def test_the_dockerfile_points_the_worker_at_the_folder_it_fills() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    [filled] = re.findall(r"python download_xtts\.py (\S+) --accept-cpml", dockerfile)
    [pointed] = re.findall(r"TTS_XTTS_MODEL_DIR=(\S+)", dockerfile)
    assert filled == pointed
