"""``GET /metrics`` over real HTTP: parsed with prometheus-client's own parser, its counts match
the jobs run through the real dispatcher and Piper; it is the operator's (a token of its own,
404 without one) and names no tenant, key or text."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from serverless_tts.runpod_shapes import output_items, run_job
from shared.errors import Unauthorized, UnsupportedFormat
from tests.entrypoints.web_helpers import Served, Start
from tests.worker_fixtures import usage_rows

TOKEN = "metrics-token-for-the-test-scraper"
OPERATOR = {"Authorization": f"Bearer {TOKEN}"}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(http: httpx.Client) -> tuple[str, Samples]:
    reply = http.get("/metrics", headers=OPERATOR)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(reply.text)
        for sample in family.samples
    }
    return reply.text, samples


def one(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of ``name`` that has ``labels`` (and any others)."""
    wanted = set(labels.items())
    return sum(v for (n, got), v in samples.items() if n == name and wanted <= got)


@pytest.fixture
def scraped(start: Start) -> Served:
    return start(metrics_token=SecretStr(TOKEN))


def test_metrics_count_the_jobs_run_and_name_no_tenant_key_or_text(scraped: Served) -> None:
    ctx, key = scraped.ctx, scraped.new_key()
    texts = ["Cached after the first time.", "Streamed to its end.", "Closed after one chunk."]
    first = run_job({"api_key": key, "text": texts[0], "format": "mp3"}, ctx)[0]
    hit = run_job({"api_key": key, "text": texts[0], "format": "mp3"}, ctx)[0]
    assert hit["cached"] is True
    with pytest.raises(Unauthorized):
        run_job({"api_key": "stts_wrong", "text": texts[0]}, ctx)
    with pytest.raises(UnsupportedFormat):
        run_job({"api_key": key, "text": texts[0], "format": "nope"}, ctx)
    spoken = scraped.http.post(
        "/v1/synthesize",
        json={"text": texts[1], "format": "wav", "stream": True},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert spoken.status_code == 200 and spoken.content
    closing = output_items(
        {"api_key": key, "text": f"{texts[2]} " * 6, "delivery": "stream", "format": "pcm16"},
        ctx,
    )
    next(iter(closing))
    closing.close()

    body, samples = scrape(scraped.http)
    ok = {"action": "synthesize", "engine": "piper"}
    assert one(samples, "tts_jobs_total", **ok, outcome="ok") == 3
    assert one(samples, "tts_jobs_total", **ok, outcome="cancelled") == 1
    refused = {"action": "synthesize", "engine": "none"}
    assert one(samples, "tts_jobs_total", **refused, outcome="unauthorized") == 1
    assert one(samples, "tts_jobs_total", **refused, outcome="unsupported_format") == 1
    assert total(samples, "tts_job_duration_seconds_count") == 6
    assert total(samples, "tts_job_duration_seconds_bucket", le="+Inf") == 6
    # Both streams handed on their first audio: the one read to its end and the one closed.
    first_audio = {"engine": "piper", "cached": "false"}
    assert total(samples, "tts_time_to_first_audio_seconds_count", **first_audio) == 2
    assert total(samples, "tts_time_to_first_audio_seconds_count") == 2
    assert one(samples, "tts_cache_lookups_total", engine="piper", result="hit") == 1
    assert one(samples, "tts_cache_lookups_total", engine="piper", result="miss") == 3
    made = first["bytes"] + len(spoken.content)  # the closed stream never reached its totals
    assert total(samples, "tts_audio_bytes_total", cached="false") == made
    assert (
        one(samples, "tts_audio_bytes_total", engine="piper", format="mp3", cached="true")
        == (hit["bytes"])
    )
    assert total(samples, "tts_audio_seconds_total", format="mp3") == pytest.approx(
        first["duration_s"] + hit["duration_s"], abs=0.01
    )
    rows = usage_rows(ctx)
    assert total(samples, "tts_text_chars_total") == sum(row["input_chars"] for row in rows) > 0
    assert one(samples, "tts_active_jobs") == 0
    assert one(samples, "tts_active_streams") == 0
    tenant_id = rows[0]["tenant_id"]
    for secret in (tenant_id, key, *texts):
        assert secret not in body


def test_the_figures_move_between_scrapes(scraped: Served) -> None:
    key = scraped.new_key()
    health = {"action": "health", "engine": "none", "outcome": "ok"}
    assert one(scrape(scraped.http)[1], "tts_jobs_total", **health) == 0
    run_job({"api_key": key, "action": "health"}, scraped.ctx)
    assert one(scrape(scraped.http)[1], "tts_jobs_total", **health) == 1


def test_metrics_answer_404_when_no_token_is_configured(served: Served) -> None:
    for headers in ({}, OPERATOR):
        reply = served.http.get("/metrics", headers=headers)
        assert reply.status_code == 404
        assert "tts_" not in reply.text


def test_metrics_refuse_a_missing_or_wrong_token_and_a_tenant_key(scraped: Served) -> None:
    key = scraped.new_key()
    refusals = [
        {},
        {"Authorization": "Bearer not-the-metrics-token"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {key}"},
    ]
    for headers in refusals:
        reply = scraped.http.get("/metrics", headers=headers)
        assert reply.status_code == 401, headers
        assert reply.headers["www-authenticate"] == "Bearer"
        assert "tts_" not in reply.text and TOKEN not in reply.text


def test_metrics_are_left_out_of_the_openapi_document(scraped: Served) -> None:
    assert "/metrics" not in scraped.http.get("/openapi.json").json()["paths"]


def test_a_scraper_asking_for_openmetrics_gets_it(scraped: Served) -> None:
    accept = {"Accept": "application/openmetrics-text; version=1.0.0", **OPERATOR}
    reply = scraped.http.get("/metrics", headers=accept)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("application/openmetrics-text")
    assert "# TYPE tts_jobs counter" in reply.text
    assert reply.text.rstrip().endswith("# EOF")
