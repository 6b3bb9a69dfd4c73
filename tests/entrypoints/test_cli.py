"""The admin CLI against the configured store (the embedded SQLite one here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from serverless_tts.cli import main
from serverless_tts.runpod_shapes import run_job
from shared.config import Settings
from shared.engines.base import Engine
from shared.errors import Unauthorized
from shared.tenants.sqlite_store import SqliteTenantStore
from shared.worker import build_worker
from tests.audio_probe import audio_stream, ffprobe_json, probe_duration_s
from tests.processes import REPO, clean_env, run_python
from tests.servers import free_port, wait_for_port


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


def job_events(stderr: str) -> list[dict[str, Any]]:
    events = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("event") == "job":
                events.append(record)
    return events


def test_say_without_a_tenant_is_an_operator_run_that_still_logs_its_event(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = data_dir / "hello.wav"
    assert main(["say", "Hello there. And again.", "-o", str(target)]) == 0
    captured = capsys.readouterr()
    assert "operator run: no tenant is charged" in captured.err
    [event] = job_events(captured.err)
    assert event["operator"] is True and event["success"] is True and "tenant_id" not in event
    assert event["action"] == "synthesize" and event["chars"] > 0
    probe = ffprobe_json(target.read_bytes(), "wav")
    # Streamed into the file, then the header's sizes were made exact.
    assert probe_duration_s(probe) == pytest.approx(event["audio_s"], rel=0.02)
    assert int.from_bytes(target.read_bytes()[40:44], "little") == target.stat().st_size - 44


def test_say_as_a_tenant_is_charged_and_leaves_a_usage_row(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = key_of(run(capsys, "tenants", "create", "acme", "--monthly-chars", "1000"))
    store = SqliteTenantStore(data_dir / "tenants.sqlite3", cache_ttl_s=0)
    tenant = store.authenticate(key)
    target = data_dir / "hi.mp3"
    assert (
        main(["say", "Hi there.", "-o", str(target), "--format", "mp3", "--tenant", tenant.id]) == 0
    )
    [event] = job_events(capsys.readouterr().err)
    assert event["tenant_id"] == tenant.id and event["operator"] is True
    [day] = store.usage_by_day(tenant.id, 1)
    assert (day.requests, day.input_chars) == (1, len("Hi there."))
    assert audio_stream(ffprobe_json(target.read_bytes(), "mp3"))["codec_name"] == "mp3"


def test_greetings_warm_runs_through_the_dispatcher_as_one_charged_job(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = key_of(run(capsys, "tenants", "create", "acme", "--per-minute", "1"))
    store = SqliteTenantStore(data_dir / "tenants.sqlite3", cache_ttl_s=0)
    tenant = store.authenticate(key)
    phrases = data_dir / "phrases.txt"
    phrases.write_text("One.\nTwo.\nThree.\n", encoding="utf-8")
    assert main(["greetings", "warm", "--tenant", tenant.id, "--file", str(phrases)]) == 0
    captured = capsys.readouterr()
    assert "3 greetings ready for tenant acme" in captured.out
    [event] = job_events(captured.err)
    assert event["action"] == "greetings.warm" and event["tenant_id"] == tenant.id
    [day] = store.usage_by_day(tenant.id, 1)
    assert (day.requests, day.input_chars) == (1, len("One.Two.Three."))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["say", "hi", "-o", "/nonexistent/dir/x.wav"], "the folder /nonexistent/dir does not"),
        (["greetings", "warm", "--tenant", "t", "--file", "/nonexistent"], "no such file"),
    ],
)
def test_operator_mistakes_get_a_message_not_a_traceback(
    data_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert "operator run" not in err  # refused before anything started


@pytest.fixture
def worker_env(tmp_path: Path) -> dict[str, str]:
    return clean_env(tmp_path / "data")


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("TTS_URL_TTL_S", "30", "TTS_URL_TTL_S: Input should be greater than or equal to 60"),
        ("TTS_CONCURRENCY", "many", "TTS_CONCURRENCY: Input should be a valid integer"),
    ],
)
def test_a_bad_setting_is_named_in_one_line_by_the_cli_and_the_runpod_worker(
    worker_env: dict[str, str], variable: str, value: str, expected: str
) -> None:
    env = {**worker_env, variable: value}
    served = run_python(env, "-m", "serverless_tts.cli", "serve", "--port", str(free_port()))
    assert served.returncode == 2
    assert f"error: invalid_config: {expected}" in served.stderr
    assert "Traceback" not in served.stderr and value not in served.stderr.replace(expected, "")
    worker = run_python(env, "runpod_handler.py", "--test_input", "{}")
    assert worker.returncode == 1
    assert f"invalid_config: {expected}" in worker.stderr and "Traceback" not in worker.stderr


def test_the_curl_line_of_a_second_run_works_with_the_key_exported(
    worker_env: dict[str, str],
) -> None:
    """The second `make run` has no key to show: its curl line must read $TTS_API_KEY."""
    port = free_port()

    def serve_and_read_the_curl_line() -> tuple[subprocess.Popen[str], str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "serverless_tts.cli", "serve", "--port", str(port)],
            env=worker_env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.strip().startswith("curl "):
                return process, "".join(lines)
        raise AssertionError("serve printed no curl line: " + "".join(lines))

    first, printed = serve_and_read_the_curl_line()
    first.terminate()
    first.wait(timeout=30)
    key = key_of(printed)
    second, printed = serve_and_read_the_curl_line()
    try:
        wait_for_port(port, timeout_s=120)
        curl = printed.strip().splitlines()[-1].strip()
        assert key not in printed and "$TTS_API_KEY" in curl
        done = subprocess.run(
            ["bash", "-c", curl],
            env={**worker_env, "TTS_API_KEY": key},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        reply = json.loads(done.stdout)
        assert reply["status"] == "COMPLETED", reply
        assert reply["output"][0]["url"].startswith(f"http://127.0.0.1:{port}/audio/")
    finally:
        second.terminate()
        second.wait(timeout=30)
