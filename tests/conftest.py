"""Session-wide fixtures: the real engines, loaded once per test run.

A missing optional dependency fails the tests that need it, with what to install: nothing is
skipped, so a CI image without an engine cannot pass by testing nothing.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from shared.engines.base import Engine
from shared.errors import EngineUnavailable
from tests.xtts_checkpoint import (
    XTTS_TEST_MAX_AUDIO_TOKENS,
    XTTS_TEST_STREAM_CHUNK_TOKENS,
    build_tiny_xtts_checkpoint,
)


def _load_anyio_eagerly() -> None:
    """anyio imports its parts lazily, and pytest rewrites every module of a package that ships a
    pytest plugin (anyio does). A first import inside a test server's thread then runs pytest's
    AST rewrite there, and CPython 3.11 keeps AST state per process, so that can race another
    parse ("AST constructor recursion depth mismatch"). Import it all now, in the main thread."""
    import anyio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in dir(anyio):
            if not name.startswith("_"):
                getattr(anyio, name)


_load_anyio_eagerly()

pytest_plugins = ["tests.worker_fixtures", "tests.s3_server", "tests.supabase_fixtures"]


@pytest.fixture(scope="session")
def tiny_xtts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight XTTS-v2 model directory (config, model.pth, vocab, speakers), ~120 MB."""
    try:
        return build_tiny_xtts_checkpoint(tmp_path_factory.mktemp("xtts-tiny"))
    except ImportError as exc:
        pytest.fail(
            f"building the test XTTS checkpoint needs {exc.name}: pip install -e .[xtts,dev]"
        )


@pytest.fixture(scope="session")
def xtts_engine(tiny_xtts_dir: Path) -> Engine:
    return _load("xtts", xtts_model_dir=tiny_xtts_dir)


@pytest.fixture(scope="session")
def piper_engine() -> Engine:
    return _load("piper")


def _load(kind: str, *, xtts_model_dir: Path | None = None) -> Engine:
    from shared.engines.registry import load_engine

    try:
        return load_engine(
            kind,
            xtts_model_dir=xtts_model_dir,
            xtts_device="cpu",
            xtts_max_audio_tokens=XTTS_TEST_MAX_AUDIO_TOKENS,
            xtts_stream_chunk_tokens=XTTS_TEST_STREAM_CHUNK_TOKENS,
        )
    except EngineUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
