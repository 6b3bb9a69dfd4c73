"""Jobs against tenant limits, and the usage row every authenticated job leaves behind."""

from __future__ import annotations

import pytest

from serverless_tts.runpod_shapes import run_job
from shared.errors import ErrorCode, TTSError
from shared.tenants.base import TenantLimits
from shared.worker import WorkerContext
from tests.worker_fixtures import usage_rows


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


def test_a_reused_request_id_is_charged_and_logged_every_time(worker: WorkerContext) -> None:
    """The defect: two 40-char jobs with one request id used 80 of a 100-char quota while the
    usage showed 40. Every charged job leaves its own row, and the rows add up to the quota."""
    key = worker.tenants.create_tenant("reuse", TenantLimits(monthly_char_quota=100)).api_key
    text = "Thirty nine characters in this one here."
    job = {"api_key": key, "text": text, "request_id": "same-id", "delivery": "base64"}
    first, second = run_job(job, worker), run_job(job, worker)
    assert first[0]["cached"] is False and second[0]["cached"] is True  # cached, yet charged
    rows = usage_rows(worker)
    assert [row["request_id"] for row in rows] == ["same-id", "same-id"]
    assert len({row["job_id"] for row in rows}) == 2
    assert sum(row["input_chars"] for row in rows) == 2 * len(text) == 80
    # 80 of 100 are used: a 21-char job is refused (and charged nothing), a 20-char one fits.
    with pytest.raises(TTSError) as refused:
        run_job({"api_key": key, "text": "x" * 21, "request_id": "same-id"}, worker)
    assert refused.value.code == ErrorCode.QUOTA_EXCEEDED
    run_job({"api_key": key, "text": "y" * 20, "request_id": "same-id"}, worker)
    rows = usage_rows(worker)
    charged = [row for row in rows if row["error_code"] is None]
    assert sum(row["input_chars"] for row in charged) == 100
    assert [row["input_chars"] for row in rows if row["error_code"]] == [0]


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
