"""The admin CLI against the configured store (the embedded SQLite one here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from handlers.dispatch import run_job
from serverless_tts.cli import main
from shared.config import Settings
from shared.engines.base import Engine
from shared.errors import Unauthorized
from shared.tenants.sqlite_store import SqliteTenantStore
from shared.worker import build_worker
from tests.audio_probe import audio_stream, ffprobe_json


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TTS_DATA_DIR", str(tmp_path))
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def key_of(output: str) -> str:
    return output.split("API key (shown once, keep it): ", 1)[1].split()[0]


def test_tenant_lifecycle_create_limit_rotate_disable_usage(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    created = run(capsys, "tenants", "create", "acme", "--per-minute", "5")
    first_key = key_of(created)
    store = SqliteTenantStore(data_dir / "tenants.sqlite3", cache_ttl_s=0)
    tenant = store.authenticate(first_key)
    assert tenant.limits.requests_per_minute == 5

    limited = run(capsys, "tenants", "set-limits", tenant.id, "--monthly-chars", "0")
    assert "chars/month=unlimited" in limited and "per-minute=5" in limited

    second_key = key_of(run(capsys, "tenants", "rotate-key", tenant.id))
    with pytest.raises(Unauthorized):
        store.authenticate(first_key)
    assert store.authenticate(second_key).id == tenant.id

    assert "disabled" in run(capsys, "tenants", "disable", tenant.id)
    with pytest.raises(Unauthorized):
        store.authenticate(second_key)
    listed = run(capsys, "tenants", "list")
    assert tenant.id in listed and second_key not in listed
    assert run(capsys, "tenants", "usage", tenant.id).startswith("day")


def test_unknown_tenant_is_a_clean_error(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tenants", "rotate-key", "nope"]) == 2
    assert "not_found" in capsys.readouterr().err


def test_say_writes_a_playable_file(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = data_dir / "hello.mp3"
    run(capsys, "say", "Hello there.", "-o", str(target), "--format", "mp3")
    assert audio_stream(ffprobe_json(target.read_bytes(), "mp3"))["codec_name"] == "mp3"


def test_greetings_warm_fills_the_cache_a_get_job_then_answers_from(
    data_dir: Path, capsys: pytest.CaptureFixture[str], piper_engine: Engine
) -> None:
    key = key_of(run(capsys, "tenants", "create", "acme"))
    tenant_id = SqliteTenantStore(data_dir / "tenants.sqlite3").authenticate(key).id
    phrases = data_dir / "phrases.txt"
    phrases.write_text("Thanks for calling Acme.\n\nPlease hold.\n", encoding="utf-8")
    out = run(capsys, "greetings", "warm", "--tenant", tenant_id, "--file", str(phrases))
    assert "2 greetings ready" in out
    worker = build_worker(Settings(), engine=piper_engine)
    try:
        get = {"action": "greetings.get", "api_key": key, "text": "Please hold.", "format": "mp3"}
        [result] = run_job(get, worker)
    finally:
        worker.close()
    assert result["cached"] is True and result["url"]
