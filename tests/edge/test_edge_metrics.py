"""``GET /metrics`` on the edge: real signed webhooks and a real Media Stream against the edge in
front of this product's HTTP app with real Piper, then the figures scraped over HTTP and read
with prometheus-client's own parser; the operator's token rule; nothing of a call in them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from starlette.applications import Starlette

from edge.app import create_edge_app
from edge.config import EdgeConfigError, EdgeSettings, read_secrets
from edge.events import WebhookEvent, record_webhook
from edge.state import EdgeState
from edge.workers.http_api import HttpWorker
from shared.engines.base import Engine
from tests.edge import edge_helpers as helpers
from tests.edge.edge_helpers import GUARD_S, Edge
from tests.edge.test_media_streams import Twilio
from tests.entrypoints.test_ws_stream import wait_until
from tests.entrypoints.web_helpers import Served
from tests.servers import free_port

TOKEN = "edge-metrics-token-0123456789"
SPEECH = "my card number is 4417 1234 5678 9113"
CALL_SID = "CA" + "1" * 32
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def with_token(settings: EdgeSettings, token: str | None) -> EdgeSettings:
    secrets = settings.secrets.model_copy(
        update={"metrics_token": SecretStr(token) if token else None}
    )
    return settings.model_copy(update={"secrets": secrets})


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory, piper_engine: Engine
) -> Iterator[tuple[Edge, Served, helpers.ResponderServer]]:
    with ExitStack() as stack:
        product = helpers.start_product(stack, tmp_path_factory.mktemp("worker"), piper_engine)
        responder = stack.enter_context(helpers.responder_server())
        businesses = {
            "acme": helpers.business(
                responder.url("text"), greeting="Hello from the metrics test."
            ),
            "failing": helpers.business(responder.url("fail")),
            "shop": helpers.business(responder.url("stream"), mode="stream"),
        }
        settings = helpers.edge_settings(
            str(product.http.base_url),
            product.new_key(),
            businesses,
            deadline_ms=10_000,
            cache_lookup_ms=5_000,
        )
        yield helpers.start_edge(stack, with_token(settings, TOKEN)), product, responder


@pytest.fixture
def edge(setup: tuple[Edge, Served, helpers.ResponderServer]) -> Edge:
    return setup[0]


def scrape(edge: Edge) -> str:
    reply = edge.http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain; version=")
    return reply.text


def samples(edge: Edge) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(scrape(edge))
        for sample in family.samples
    }


def grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


def webhooks(
    business: str, route: str, answer: str, reason: str = "none", status: str = "200"
) -> dict[str, str]:
    return {
        "business": business,
        "route": route,
        "status": status,
        "response_type": answer,
        "fallback_reason": reason,
    }


def test_webhooks_are_counted_by_route_answer_and_fallback_with_their_latency(
    edge: Edge,
) -> None:
    before = samples(edge)
    edge.twiml("acme", "voice", helpers.call_params())  # not cached yet: said while it warms
    wait_until(lambda: len(edge.state.background) == 0, "the warm job done", timeout_s=60)
    edge.twiml("acme", "voice", helpers.call_params())  # now played from the cache
    edge.twiml("acme", "gather", helpers.turn_params(SPEECH))  # the reply played
    edge.twiml("failing", "gather", helpers.turn_params(SPEECH))  # the responder down: said
    edge.http.post("/twilio/acme/voice", data=helpers.call_params())  # unsigned
    edge.post("nobody", "voice", helpers.call_params())  # not a configured helpers.business
    after = samples(edge)

    total = "tts_edge_webhooks_total"
    assert grew(before, after, total, **webhooks("acme", "voice", "say", "not_cached")) == 1
    assert grew(before, after, total, **webhooks("acme", "voice", "play")) == 1
    assert grew(before, after, total, **webhooks("acme", "gather", "play")) == 1
    failed = webhooks("failing", "gather", "say", "responder_failed")
    assert grew(before, after, total, **failed) == 1
    refused = webhooks("acme", "voice", "refused", status="403")
    assert grew(before, after, total, **refused) == 1
    unknown = webhooks("_unknown", "voice", "refused", status="404")
    assert grew(before, after, total, **unknown) == 1

    greetings = "tts_edge_greetings_total"
    assert grew(before, after, greetings, business="acme", result="miss") == 1
    assert grew(before, after, greetings, business="acme", result="hit") == 1

    duration = "tts_edge_webhook_duration_seconds_count"
    voice = {"business": "acme", "route": "voice"}
    assert grew(before, after, duration, **voice, response_type="say") == 1
    assert grew(before, after, duration, **voice, response_type="play") == 1
    seconds = "tts_edge_webhook_duration_seconds_sum"
    assert grew(before, after, seconds, **voice, response_type="play") > 0
    # The worker answered both lookups and the turn's synthesis inside their webhooks.
    worker = "tts_edge_worker_latency_seconds_count"
    assert grew(before, after, worker, business="acme", route="voice") == 2
    assert grew(before, after, worker, business="acme", route="gather") == 1
    assert grew(before, after, worker, business="failing", route="gather") == 0
    # Every bucket the phone budget needs, to Twilio's 15 s limit.
    buckets = {
        dict(labels)["le"]
        for name, labels in after
        if name == "tts_edge_webhook_duration_seconds_bucket"
    }
    assert {"0.01", "0.2", "1.2", "15.0", "+Inf"} <= buckets


def test_a_media_stream_is_counted_by_outcome_with_its_first_frame(edge: Edge) -> None:
    before = samples(edge)
    twilio = Twilio(edge)
    twilio.start()
    frames, mark = twilio.frames_until_not_media()
    assert frames and mark["event"] == "mark"
    twilio.send(mark)
    assert twilio.close_code() == 1000

    def streams() -> float:
        labels = {"business": "shop", "outcome": "played", "fallback_reason": "none"}
        return grew(before, samples(edge), "tts_edge_streams_total", **labels)

    wait_until(lambda: streams() == 1, "the stream counted", timeout_s=GUARD_S)
    after = samples(edge)
    first = "tts_edge_stream_first_frame_seconds_count"
    assert grew(before, after, first, business="shop") == 1
    audio = grew(before, after, "tts_edge_stream_audio_seconds_total", business="shop")
    assert audio == pytest.approx(len(frames) * 0.02)
    # The gather that opened it was answered with a stream.
    gather = webhooks("shop", "gather", "stream")
    assert grew(before, after, "tts_edge_webhooks_total", **gather) == 1


def test_nothing_of_a_call_is_in_the_figures(
    edge: Edge, setup: tuple[Edge, Served, helpers.ResponderServer]
) -> None:
    edge.twiml("acme", "gather", helpers.turn_params(SPEECH))
    text = scrape(edge)
    _, _, responder = setup
    key = edge.state.settings.secrets.tenant_keys["acme"].get_secret_value()
    reply = responder.replies["text"]["text"]
    url = "https://edge.example.com/twilio/acme/gather"
    for secret in [CALL_SID, "+15550100001", "+15550100002", SPEECH, "card number", reply, key]:
        assert secret not in text, secret
    assert helpers.signature(url, helpers.turn_params(SPEECH)) not in text


def test_metrics_want_the_operators_token(edge: Edge) -> None:
    assert edge.http.get("/metrics").status_code == 401
    wrong = edge.http.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    key = edge.state.settings.secrets.tenant_keys["acme"].get_secret_value()
    tenant = edge.http.get("/metrics", headers={"Authorization": f"Bearer {key}"})
    assert tenant.status_code == 401  # a tenant key opens nothing here
    assert "tts_edge" not in wrong.text + tenant.text
    openmetrics = edge.http.get(
        "/metrics",
        headers={"Authorization": f"Bearer {TOKEN}", "Accept": "application/openmetrics-text"},
    )
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.endswith("# EOF\n")


def test_without_a_token_configured_metrics_is_not_there(
    stack: ExitStack, setup: tuple[Edge, Served, helpers.ResponderServer]
) -> None:
    _, _, responder = setup
    nowhere = f"http://127.0.0.1:{free_port()}"
    settings = helpers.edge_settings(
        nowhere, "tts_key", {"acme": helpers.business(responder.url("text"))}
    )
    bare = helpers.start_edge(stack, settings)
    assert bare.http.get("/metrics").status_code == 404
    given = bare.http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert given.status_code == 404


def test_each_app_counts_on_its_own_registry_or_the_one_given() -> None:
    settings = helpers.edge_settings(
        "http://127.0.0.1:9", "tts_key", {"acme": helpers.business("http://x/")}
    )
    registry = CollectorRegistry()

    def app(given: CollectorRegistry | None = None) -> Starlette:
        worker = HttpWorker("http://127.0.0.1:9", timeout_s=1.0, retries=0)
        return create_edge_app(settings, worker, registry=given)

    apps = [app(), app(), app(registry)]
    states: list[EdgeState] = [one.state.edge for one in apps]
    event = WebhookEvent(business="acme", route="say", latency_ms=5.0, response_type="play")
    record_webhook(states[2].counters, event)
    labels = webhooks("acme", "say", "play")
    assert registry.get_sample_value("tts_edge_webhooks_total", labels) == 1
    for state in states[:2]:
        assert state.counters.metrics.registry is not registry
        assert (
            state.counters.metrics.registry.get_sample_value("tts_edge_webhooks_total", labels)
            is None
        )
    assert states[0].counters.metrics.registry is not states[1].counters.metrics.registry
    for state in states:
        asyncio.run(state.aclose())


def test_the_token_is_read_from_the_variable_the_config_names() -> None:
    config = helpers.edge_settings(
        "http://127.0.0.1:9",
        "k",
        {"acme": helpers.business("http://x/")},
        metrics_token_env="EDGE_MT",
    ).config
    environ = {"TWILIO_AUTH_TOKEN": "t", "UNUSED_IN_TESTS": "k"}
    with pytest.raises(EdgeConfigError, match="EDGE_MT"):
        read_secrets(config, environ)
    secrets = read_secrets(config, {**environ, "EDGE_MT": TOKEN})
    assert secrets.metrics_token is not None
    assert secrets.metrics_token.get_secret_value() == TOKEN
    unnamed = config.model_copy(update={"metrics_token_env": None})
    assert read_secrets(unnamed, environ).metrics_token is None
