"""The edge's events: one ``voice.webhook`` JSON line per webhook and one ``voice.stream`` line
per Media Stream, with what an operator needs (route, latency, what was answered, why a
fallback) and nothing secret or personal; and the counters the metrics work will export."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from edge.events import EDGE_LOGGER
from shared.engines.base import Engine
from tests.edge.edge_helpers import (
    AUTH_TOKEN,
    Edge,
    ResponderServer,
    business,
    call_params,
    edge_settings,
    responder_server,
    signature,
    start_edge,
    start_product,
    turn_params,
)
from tests.edge.test_media_streams import Twilio

SPEECH = "my card number is 4417 1234 5678 9113"
CALL_SID = "CA" + "1" * 32


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory, piper_engine: Engine
) -> Iterator[tuple[Edge, ResponderServer, str]]:
    with ExitStack() as stack:
        product = start_product(stack, tmp_path_factory.mktemp("worker"), piper_engine)
        responder = stack.enter_context(responder_server())
        key = product.new_key()
        businesses = {
            "acme": business(responder.url("text"), greeting="Hello from the events test."),
            "failing": business(responder.url("fail")),
            "shop": business(responder.url("stream"), mode="stream"),
        }
        settings = edge_settings(
            str(product.http.base_url), key, businesses, deadline_ms=10_000, cache_lookup_ms=5_000
        )
        yield start_edge(stack, settings), responder, key


@pytest.fixture
def edge(setup: tuple[Edge, ResponderServer, str]) -> Edge:
    return setup[0]


def events(caplog: pytest.LogCaptureFixture, kind: str) -> list[dict[str, Any]]:
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == EDGE_LOGGER]
    return [line for line in lines if line["event"] == kind]


def test_each_webhook_is_one_line_saying_what_was_answered_and_why(
    edge: Edge, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=EDGE_LOGGER):
        edge.twiml("acme", "voice", call_params())
        edge.twiml("acme", "gather", turn_params(SPEECH))
        edge.twiml("failing", "gather", turn_params(SPEECH))
        edge.twiml("shop", "gather", turn_params(SPEECH))
        edge.http.post("/twilio/acme/gather", data=turn_params(SPEECH))  # unsigned
    voice, played, failed, streamed, refused = events(caplog, "voice.webhook")
    assert voice["business"] == "acme" and voice["call_sid"] == CALL_SID
    assert (voice["route"], voice["response_type"], voice["fallback_reason"]) == (
        "voice",
        "say",
        "not_cached",
    )
    assert isinstance(voice["worker_latency_ms"], float)  # the lookup answered, with a miss
    assert (played["route"], played["response_type"], played["fallback_reason"]) == (
        "gather",
        "play",
        None,
    )
    assert 0 < played["worker_latency_ms"] <= played["latency_ms"]
    assert (failed["response_type"], failed["fallback_reason"]) == ("say", "responder_failed")
    assert failed["worker_latency_ms"] is None  # the worker was never asked
    assert (streamed["response_type"], streamed["fallback_reason"]) == ("stream", None)
    assert (refused["status"], refused["response_type"], refused["call_sid"]) == (
        403,
        "refused",
        None,
    )
    assert all(line["latency_ms"] > 0 for line in (voice, played, failed, streamed, refused))


def test_a_media_stream_is_one_line_with_the_time_to_its_first_frame(
    edge: Edge, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=EDGE_LOGGER):
        twilio = Twilio(edge)
        twilio.start()
        frames, mark = twilio.frames_until_not_media()
        twilio.send(mark)
        assert twilio.close_code() == 1000
    [line] = events(caplog, "voice.stream")
    assert (line["business"], line["call_sid"], line["turn"]) == ("shop", CALL_SID, twilio.turn)
    assert (line["outcome"], line["fallback_reason"]) == ("played", None)
    assert line["first_frame_ms"] > 0 and line["audio_ms"] == len(frames) * 20


def test_no_key_token_signature_number_or_words_are_ever_logged(
    setup: tuple[Edge, ResponderServer, str], caplog: pytest.LogCaptureFixture
) -> None:
    edge, responder, key = setup
    # Everything at INFO (what a host logs), and the edge's own modules at every level.
    with caplog.at_level(logging.INFO), caplog.at_level(logging.DEBUG, logger="edge"):
        edge.twiml("acme", "gather", turn_params(SPEECH))
        edge.twiml("failing", "gather", turn_params(SPEECH))
        edge.twiml("acme", "say", {"text": "Your one-time code is 889911."})
        twilio = Twilio(edge)
        twilio.start()
        _, mark = twilio.frames_until_not_media()
        twilio.send(mark)
        twilio.close_code()
    logged = "\n".join(caplog.text.splitlines() + [r.getMessage() for r in caplog.records])
    assert events(caplog, "voice.webhook") and events(caplog, "voice.stream")
    secrets = [key, AUTH_TOKEN, signature("https://edge.example.com/twilio/acme/voice")]
    words = [SPEECH, "4417", "889911", *responder.replies["text"].values(), "+15550100001"]
    for secret in secrets + words:
        assert secret not in logged, secret


def test_the_counters_count_webhooks_answers_fallbacks_and_refusals(edge: Edge) -> None:
    before = edge.state.counters.snapshot()
    edge.twiml("failing", "gather", turn_params(SPEECH))
    edge.twiml("acme", "gather", call_params(SpeechResult=""))
    edge.http.post("/twilio/acme/voice", data=call_params())
    after = edge.state.counters.snapshot()

    def grew(group: str, name: object) -> int:
        return after[group].get(name, 0) - before[group].get(name, 0)  # type: ignore[attr-defined]

    assert after["webhooks"] == before["webhooks"] + 3  # type: ignore[operator]
    assert (grew("responses", "say"), grew("responses", "gather")) == (1, 1)
    assert grew("fallbacks", "responder_failed") == 1
    assert (grew("responses", "refused"), grew("refusals", 403)) == (1, 1)
