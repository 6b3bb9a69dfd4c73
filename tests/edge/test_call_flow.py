"""The call flow's webhooks against real servers on loopback: the edge app in front of this
product's HTTP app with real Piper (through the real ``HttpWorker``), requests signed as Twilio
signs them, a business's responder that answers fast, slowly, wrongly or not at all, and every
answer parsed as TwiML."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from contextlib import ExitStack
from xml.etree.ElementTree import Element

import pytest

from edge.events import EDGE_LOGGER
from shared.config import Settings
from shared.engines.base import Engine
from tests.audio_probe import audio_stream, ffprobe_json
from tests.edge.edge_helpers import (
    PUBLIC,
    Edge,
    ResponderServer,
    business,
    call_params,
    edge_settings,
    parse_twiml,
    responder_server,
    signature,
    start_edge,
    start_product,
    turn_params,
    verbs,
)
from tests.engine_wrappers import GatedEngine
from tests.entrypoints.test_ws_stream import wait_until
from tests.entrypoints.web_helpers import Served, start_app
from tests.servers import free_port
from tests.worker_fixtures import usage_rows

# A generous bound for "answered by the deadline": the deadline plus loopback HTTP, the
# responder's round trip and a busy shared machine. A bound on the answer, never on the worker.
MARGIN_S = 2.5
REPLY = "Your order shipped this morning."
FALLBACK = "Sorry, one moment please."


@pytest.fixture(scope="module")
def stack() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


@pytest.fixture(scope="module")
def product(
    stack: ExitStack, tmp_path_factory: pytest.TempPathFactory, piper_engine: Engine
) -> Served:
    return start_product(stack, tmp_path_factory.mktemp("worker"), piper_engine)


@pytest.fixture(scope="module")
def responder() -> Iterator[ResponderServer]:
    with responder_server() as responder:
        yield responder


def businesses(responder: ResponderServer) -> dict[str, dict[str, object]]:
    return {
        "acme": business(responder.url("text"), greeting="Thanks for calling Acme."),
        "warmed": business(responder.url("text"), greeting="Welcome back to Warmed Inc."),
        "wavco": business(responder.url("ssml"), format="wav"),
        "streamer": business(responder.url("stream"), mode="stream"),
        "failing": business(responder.url("fail")),
        "junk": business(responder.url("junk")),
        "slow": business(responder.url("slow")),
    }


@pytest.fixture(scope="module")
def edge(stack: ExitStack, product: Served, responder: ResponderServer) -> Edge:
    # Deadlines far off here: these tests are about what is answered when the worker is in
    # time; the deadline's own tests hold the worker for real.
    settings = edge_settings(
        str(product.http.base_url),
        product.new_key(),
        businesses(responder),
        deadline_ms=10_000,
        cache_lookup_ms=5_000,
        responder_timeout_ms=500,
    )
    return start_edge(stack, settings)


@pytest.fixture(scope="module")
def down_edge(stack: ExitStack, responder: ResponderServer) -> Edge:
    """An edge whose worker is down: nothing listens at its URL."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    return start_edge(stack, edge_settings(nowhere, "tts_key", businesses(responder)))


def gather_of(root: Element, business: str) -> Element:
    gather = root.find("Gather")
    assert gather is not None
    assert gather.attrib == {
        "input": "speech",
        "action": f"{PUBLIC}/twilio/{business}/gather",
        "speechTimeout": "auto",
        "actionOnEmptyResult": "true",
    }
    return gather


def played_url(root: Element, business: str) -> str:
    assert verbs(root) == ["Gather", "Gather/Play"]
    play = gather_of(root, business).find("Play")
    assert play is not None and play.text
    return play.text


def said(root: Element, business: str) -> str:
    assert verbs(root) == ["Gather", "Gather/Say"]
    say = gather_of(root, business).find("Say")
    assert say is not None and say.text
    return say.text


def assert_serves(product: Served, url: str, content_type: str, codec: str) -> None:
    audio = product.http.get(url)
    assert audio.status_code == 200 and audio.headers["content-type"] == content_type
    assert audio_stream(ffprobe_json(audio.content, content_type.split("/")[1]))["codec_name"] == (
        codec
    )


def actions(product: Served) -> list[str]:
    return [row["action"] for row in usage_rows(product.ctx)]


# --- voice: the incoming call ----------------------------------------------------------------


def test_a_greeting_not_cached_is_said_and_warmed_so_the_next_call_plays_it(
    edge: Edge, product: Served
) -> None:
    first = edge.twiml("acme", "voice", call_params())
    assert said(first, "acme") == "Thanks for calling Acme."
    wait_until(lambda: len(edge.state.background) == 0, "the warm job done", timeout_s=60)
    assert "greetings.warm" in actions(product)  # the warm job was issued, and ran
    url = played_url(edge.twiml("acme", "voice", call_params()), "acme")
    assert_serves(product, url, "audio/mpeg", "mp3")


def test_a_warmed_greeting_is_played_with_no_synthesis_on_the_call(
    edge: Edge, product: Served
) -> None:
    key = edge.state.settings.secrets.tenant_keys["warmed"].get_secret_value()
    job = {
        "action": "greetings.warm",
        "phrases": ["Welcome back to Warmed Inc."],
        "format": "mp3",
        "language": "en",
        "api_key": key,
    }
    assert product.http.post("/runsync", json={"input": job}).json()["status"] == "COMPLETED"
    before = len(actions(product))
    url = played_url(edge.twiml("warmed", "voice", call_params()), "warmed")
    assert actions(product)[before:] == ["greetings.get"]  # a lookup, nothing synthesized
    assert_serves(product, url, "audio/mpeg", "mp3")


# --- gather: a caller's turn, play mode --------------------------------------------------------


def test_a_turn_posts_the_contract_to_the_responder_and_plays_the_reply(
    edge: Edge, product: Served, responder: ResponderServer
) -> None:
    url = played_url(edge.twiml("acme", "gather", turn_params("Where is my order?")), "acme")
    assert_serves(product, url, "audio/mpeg", "mp3")
    assert responder.received[-1] == {
        "business": "acme",
        "call_sid": "CA" + "1" * 32,
        "from": "+15550100001",
        "to": "+15550100002",
        "speech": "Where is my order?",
        "confidence": 0.93,
    }


def test_an_ssml_reply_is_spoken_as_ssml_in_the_business_format(
    edge: Edge, product: Served
) -> None:
    url = played_url(edge.twiml("wavco", "gather", turn_params("Is my table ready?")), "wavco")
    assert_serves(product, url, "audio/wav", "pcm_s16le")


def test_a_turn_with_no_speech_listens_again_without_asking_the_responder(
    edge: Edge, responder: ResponderServer
) -> None:
    asked = len(responder.received)
    root = edge.twiml("acme", "gather", call_params(SpeechResult="", Confidence="0"))
    assert verbs(root) == ["Gather"]
    gather_of(root, "acme")
    assert len(responder.received) == asked


@pytest.mark.parametrize("name", ["failing", "junk", "slow"])
def test_a_responder_that_fails_is_answered_with_the_fallback_text(edge: Edge, name: str) -> None:
    started = time.monotonic()
    root = edge.twiml(name, "gather", turn_params("Hello?"))
    assert time.monotonic() - started < 0.5 + MARGIN_S  # responder_timeout_ms + the margin
    assert said(root, name) == FALLBACK


# --- gather: stream mode -----------------------------------------------------------------------


def test_stream_mode_answers_a_media_stream_then_a_redirect_that_carries_on(edge: Edge) -> None:
    root = edge.twiml("streamer", "gather", turn_params("Tell me more."))
    assert verbs(root) == ["Connect", "Connect/Stream", "Redirect"]
    stream = root.find("Connect/Stream")
    assert stream is not None and stream.attrib == {
        "url": "wss://edge.example.com/twilio/streamer/media"
    }
    parameters = {one.attrib["name"]: one.attrib["value"] for one in stream}
    assert parameters["text"] == (
        "First sentence of the reply. Second sentence of the reply. Third sentence of the reply."
    )
    assert set(parameters) == {"turn", "text", "sig"}
    redirect = root.find("Redirect")
    assert redirect is not None and redirect.attrib == {"method": "POST"}
    assert redirect.text == f"{PUBLIC}/twilio/streamer/continue?turn={parameters['turn']}"


def test_continue_says_the_reply_of_a_stream_that_never_ran_and_then_forgets_it(
    edge: Edge,
) -> None:
    root = edge.twiml("streamer", "gather", turn_params("Tell me more."))
    stream = root.find("Connect/Stream")
    assert stream is not None
    turn = next(one.attrib["value"] for one in stream if one.attrib["name"] == "turn")
    query = f"turn={turn}"
    first = edge.twiml("streamer", "continue", call_params(), query=query)
    assert said(first, "streamer").startswith("First sentence of the reply.")
    again = edge.twiml("streamer", "continue", call_params(), query=query)
    assert verbs(again) == ["Gather"]


def test_continue_for_a_turn_it_does_not_know_just_listens_again(edge: Edge) -> None:
    root = edge.twiml("streamer", "continue", call_params(), query="turn=not-a-turn")
    assert verbs(root) == ["Gather"]
    gather_of(root, "streamer")


# --- say: text an app already has --------------------------------------------------------------


def test_say_plays_the_text_of_a_form(edge: Edge, product: Served) -> None:
    root = edge.twiml("acme", "say", {"text": "Your code is four two."})
    assert verbs(root) == ["Play"]
    play = root.find("Play")
    assert play is not None and play.text
    assert_serves(product, play.text, "audio/mpeg", "mp3")


def test_say_takes_json_signed_with_its_body_hash(edge: Edge) -> None:
    body = json.dumps({"text": "Your code is seven."})
    query = "bodySHA256=" + hashlib.sha256(body.encode()).hexdigest()
    path = f"/twilio/acme/say?{query}"
    headers = {"X-Twilio-Signature": signature(PUBLIC + path), "content-type": "application/json"}
    reply = edge.http.post(path, content=body, headers=headers)
    assert reply.status_code == 200 and verbs(parse_twiml(reply.text)) == ["Play"]
    tampered = edge.http.post(path, content=body.replace("seven", "eight"), headers=headers)
    assert tampered.status_code == 403
    unhashed = edge.http.post(
        "/twilio/acme/say",
        content=body,
        headers={**headers, "X-Twilio-Signature": signature(f"{PUBLIC}/twilio/acme/say")},
    )
    assert unhashed.status_code == 403  # without the hash the body would be unsigned


def test_say_without_text_is_a_bad_request(edge: Edge) -> None:
    assert edge.post("acme", "say", {"text": "  "}).status_code == 400
    assert edge.post("acme", "say", {"words": "Hello"}).status_code == 400


# --- whatever is down --------------------------------------------------------------------------


def test_with_the_worker_down_every_webhook_still_answers_twiml_at_once(
    down_edge: Edge,
) -> None:
    started = time.monotonic()
    assert said(down_edge.twiml("acme", "voice", call_params()), "acme") == (
        "Thanks for calling Acme."
    )
    # The worker down: the business's fallback, then the responder's answer, in Twilio's voice.
    said_down = said(down_edge.twiml("acme", "gather", turn_params("Hi.")), "acme")
    assert said_down == f"{FALLBACK} {REPLY}"
    root = down_edge.twiml("acme", "say", {"text": "Your code is nine."})
    assert verbs(root) == ["Say"] and root.findtext("Say") == f"{FALLBACK} Your code is nine."
    # The worker and the responder both down: the business's own words.
    assert said(down_edge.twiml("failing", "gather", turn_params("Hi.")), "failing") == FALLBACK
    assert time.monotonic() - started < 4 * MARGIN_S  # well inside Twilio's 15 s, all four


# --- the deadline, with the worker really held -------------------------------------------------


@pytest.fixture
def held(settings: Settings, piper_engine: Engine) -> Iterator[tuple[Served, GatedEngine, Edge]]:
    """A worker whose engine holds every synthesis until the test opens its gate, behind an
    edge with a short deadline."""
    gated = GatedEngine(piper_engine)
    with ExitStack() as stack, responder_server() as responder:
        served = start_app(stack, settings, gated)
        config = edge_settings(
            str(served.http.base_url),
            served.new_key(),
            {"acme": business(responder.url("text"))},
            deadline_ms=500,
            cache_lookup_ms=5_000,
        )
        edge = start_edge(stack, config)
        stack.callback(gated.gate.set)  # first thing at the end, whatever the test did
        yield served, gated, edge


def test_a_slow_worker_gets_say_by_the_deadline_and_the_reply_is_cached_for_next_time(
    held: tuple[Served, GatedEngine, Edge], caplog: pytest.LogCaptureFixture
) -> None:
    served, gated, edge = held
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger=EDGE_LOGGER):
        root = edge.twiml("acme", "gather", turn_params("Where is my order?"))
    assert time.monotonic() - started < 0.5 + MARGIN_S
    [event] = [json.loads(r.getMessage()) for r in caplog.records if r.name == EDGE_LOGGER]
    assert (event["response_type"], event["fallback_reason"]) == ("say", "deadline")
    assert event["worker_latency_ms"] is None  # it had not answered
    assert said(root, "acme") == REPLY
    assert gated.entered.wait(timeout=60) and not gated.gate.is_set()  # really held meanwhile
    assert len(edge.state.background) == 1  # the synthesis goes on
    gated.gate.set()
    wait_until(lambda: len(edge.state.background) == 0, "the synthesis done", timeout_s=60)
    url = played_url(edge.twiml("acme", "gather", turn_params("Where is my order?")), "acme")
    assert gated.calls == 1  # the second turn played what the first one made
    assert_serves(served, url, "audio/mpeg", "mp3")


def test_the_say_route_keeps_the_same_deadline(held: tuple[Served, GatedEngine, Edge]) -> None:
    _, gated, edge = held
    started = time.monotonic()
    root = edge.twiml("acme", "say", {"text": "Please hold for a moment."})
    assert time.monotonic() - started < 0.5 + MARGIN_S
    assert verbs(root) == ["Say"] and root.findtext("Say") == "Please hold for a moment."
    assert gated.entered.wait(timeout=60) and not gated.gate.is_set()
