"""A project entry point serving in a subprocess on a fresh data directory: its tenant made
beforehand in the same SQLite store, and its usage rows read back after it exits."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from shared.tenants.base import UNLIMITED
from shared.tenants.sqlite_store import SqliteTenantStore
from tests.processes import REPO
from tests.servers import wait_for_port


def until(check: Callable[[], Any], what: str, timeout_s: float = 30.0) -> Any:
    """Poll ``check`` until it gives something true, and return that: a bound on a worker
    reaching a state, never a timed assertion."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.02)
    raise AssertionError(f"{what} did not happen within {timeout_s} s")


# Fixtures of the tests that serve a process; a test module imports them by these names.
@pytest.fixture(name="data_dir")
def data_dir_fixture(tmp_path: Path) -> Path:
    """The served process's data directory (its SQLite store and audio), fresh per test."""
    return tmp_path / "data"


@pytest.fixture(name="api_key")
def api_key_fixture(data_dir: Path) -> str:
    """The key of a tenant made beforehand in ``data_dir``'s store."""
    return new_tenant_key(data_dir, "acme")


def new_tenant_key(data_dir: Path, name: str) -> str:
    """A tenant in ``data_dir``'s store, as ``serverless-tts tenants create`` makes one."""
    data_dir.mkdir(exist_ok=True)
    store = SqliteTenantStore(data_dir / "tenants.sqlite3", cache_ttl_s=0)
    try:
        return store.create_tenant(name, UNLIMITED).api_key
    finally:
        store.close()


def spawn(module_argv: Sequence[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """``python -m MODULE ARGS`` in the repository, its output kept for a failure message."""
    return subprocess.Popen(
        [sys.executable, "-m", *module_argv],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@contextmanager
def listening(
    procs: Sequence[tuple[subprocess.Popen[str], int]],
) -> Iterator[list[tuple[subprocess.Popen[str], str]]]:
    """Each process once its port answers (they load at once), with its base URL; killed at
    the end if a test left it running."""
    try:
        for _, port in procs:
            wait_for_port(port, timeout_s=180)
        yield [(proc, f"http://127.0.0.1:{port}") for proc, port in procs]
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)


def usage_of(data_dir: Path) -> list[tuple[str, str | None, int]]:
    """(request id, error code, characters) of every usage row in ``data_dir``'s store."""
    db = sqlite3.connect(data_dir / "tenants.sqlite3")
    try:
        return db.execute("SELECT request_id, error_code, input_chars FROM usage_logs").fetchall()
    finally:
        db.close()
