"""Jobs against tenant limits, and the usage row every authenticated job leaves behind."""

from __future__ import annotations

import sqlite3

import pytest

from handlers.dispatch import run_job
from shared.errors import ErrorCode, TTSError
from shared.tenants.base import TenantLimits
from shared.worker import WorkerContext


def usage_rows(worker: WorkerContext) -> list[sqlite3.Row]:
    assert worker.usage.flush(timeout_s=10)
    db = sqlite3.connect(worker.settings.sqlite_path)
    db.row_factory = sqlite3.Row
    return db.execute("SELECT * FROM usage_logs ORDER BY id").fetchall()


def test_n_jobs_leave_exactly_n_usage_rows_with_their_fields(
    worker: WorkerContext, api_key: str
) -> None:
    jobs = [
        {"api_key": api_key, "text": "One.", "format": "mp3", "request_id": "r1"},
        {"api_key": api_key, "text": "Two two.", "delivery": "base64", "request_id": "r2"},
        {"api_key": api_key, "text": "Three.", "delivery": "stream", "request_id": "r3"},
        {"api_key": api_key, "text": "Four.", "voice": "nobody", "request_id": "r4"},
    ]
    results = [run_job(job, worker)[-1] for job in jobs[:3]]
    with pytest.raises(TTSError):
        run_job(jobs[3], worker)
    rows = usage_rows(worker)
    assert [row["request_id"] for row in rows] == ["r1", "r2", "r3", "r4"]
    tenant = worker.tenants.authenticate(api_key)
    assert {row["tenant_id"] for row in rows} == {tenant.id}
    first, second, third, failed = rows
    assert (first["format"], first["delivery"], first["input_chars"]) == ("mp3", "url", 4)
    assert first["audio_bytes"] == results[0]["bytes"] and first["engine"] == "piper"
    assert second["delivery"] == "base64" and second["audio_seconds"] > 0
    assert third["streaming"] == 1 and third["audio_bytes"] == results[2]["bytes"]
    assert failed["error_code"] == "voice_not_found" and first["error_code"] is None


def test_a_retried_request_id_stays_one_usage_row(worker: WorkerContext, api_key: str) -> None:
    job = {"api_key": api_key, "text": "Again.", "request_id": "retry-me"}
    run_job(job, worker)
    run_job(job, worker)
    assert [row["request_id"] for row in usage_rows(worker)] == ["retry-me"]


def test_jobs_without_a_valid_key_leave_no_usage_row(worker: WorkerContext) -> None:
    with pytest.raises(TTSError):
        run_job({"api_key": "stts_nope", "text": "Hi."}, worker)
    assert usage_rows(worker) == []


def test_rate_limit_refuses_the_job_after_the_limit(worker: WorkerContext) -> None:
    key = worker.tenants.create_tenant("small", TenantLimits(requests_per_minute=2)).api_key
    job = {"api_key": key, "text": "Hi.", "delivery": "base64"}
    run_job(job, worker)
    run_job(job, worker)
    with pytest.raises(TTSError) as refused:
        run_job(job, worker)
    assert refused.value.code == ErrorCode.RATE_LIMITED
    assert "retry after" in refused.value.message


def test_quota_counts_spoken_characters_and_refused_jobs_cost_nothing(
    worker: WorkerContext,
) -> None:
    key = worker.tenants.create_tenant("quota", TenantLimits(monthly_char_quota=20)).api_key
    run_job({"api_key": key, "text": "Twelve chars", "delivery": "base64"}, worker)
    with pytest.raises(TTSError) as refused:
        run_job({"api_key": key, "text": "Nine more", "voice": "nobody"}, worker)
    assert refused.value.code == ErrorCode.VOICE_NOT_FOUND  # refused before any charge
    with pytest.raises(TTSError) as refused:
        run_job({"api_key": key, "text": "This is nine", "delivery": "base64"}, worker)
    assert refused.value.code == ErrorCode.QUOTA_EXCEEDED
    run_job({"api_key": key, "text": "Eight ch", "delivery": "base64"}, worker)  # 12 + 8 = 20
