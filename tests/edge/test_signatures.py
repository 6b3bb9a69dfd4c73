"""``X-Twilio-Signature`` on every webhook and on the Media Stream's handshake, signed and
tampered with through the twilio SDK's own ``RequestValidator``: only a request signed for the
public URL Twilio was given, with exactly the parameters it sent, gets past the door.

The worker is down here (nothing listens at its URL): a signed webhook still answers TwiML,
and the checks run before any worker call would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.edge.edge_helpers import (
    GUARD_S,
    PUBLIC,
    Edge,
    business,
    call_params,
    edge_settings,
    parse_twiml,
    responder_server,
    start_edge,
    turn_params,
)
from tests.servers import free_port


@pytest.fixture(scope="module")
def edge() -> Iterator[Edge]:
    with ExitStack() as stack:
        responder = stack.enter_context(responder_server())
        businesses = {
            "acme": business(responder.url("text")),
            "shop": business(responder.url("stream"), mode="stream"),
        }
        nowhere = f"http://127.0.0.1:{free_port()}"
        yield start_edge(stack, edge_settings(nowhere, "tts_key", businesses))


VOICE = f"{PUBLIC}/twilio/acme/voice"


@pytest.mark.parametrize("signed_url", [VOICE, "https://edge.example.com:443/twilio/acme/voice"])
def test_a_valid_signature_is_answered_with_twiml(edge: Edge, signed_url: str) -> None:
    reply = edge.post("acme", "voice", call_params(), signed_url=signed_url)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/xml")
    parse_twiml(reply.text)


@pytest.mark.parametrize(
    ("signed_url", "signed_params"),
    [
        (VOICE, call_params(From="+15559999999")),  # a parameter changed after signing
        (VOICE, {k: v for k, v in call_params().items() if k != "To"}),  # one added
        (f"{PUBLIC}/twilio/acme/gather", call_params()),  # another route's URL
        ("https://elsewhere.example.com/twilio/acme/voice", call_params()),  # another host
        ("http://edge.example.com/twilio/acme/voice", call_params()),  # http, not https
        (VOICE + "/", call_params()),  # a trailing slash
        (VOICE + "?x=1", call_params()),  # a query string Twilio never sent
    ],
)
def test_a_signature_over_anything_else_is_refused(
    edge: Edge, signed_url: str, signed_params: dict[str, str]
) -> None:
    reply = edge.post(
        "acme", "voice", call_params(), signed_url=signed_url, signed_params=signed_params
    )
    assert reply.status_code == 403 and reply.headers["content-type"].startswith("text/plain")


def test_a_missing_or_empty_signature_is_refused(edge: Edge) -> None:
    assert edge.http.post("/twilio/acme/voice", data=call_params()).status_code == 403
    empty = {"X-Twilio-Signature": ""}
    assert edge.http.post("/twilio/acme/voice", data=call_params(), headers=empty).status_code == (
        403
    )


def test_every_webhook_checks_its_signature(edge: Edge) -> None:
    for route in ("voice", "gather", "continue", "say"):
        tampered = turn_params("Hi.", text="Hello.")
        reply = edge.post(
            "acme", route, tampered, signed_params={**tampered, "SpeechResult": "Bye."}
        )
        assert reply.status_code == 403, route


def test_the_query_string_is_signed_exactly_as_sent(edge: Edge) -> None:
    signed = edge.post("shop", "continue", call_params(), query="turn=abc")
    assert signed.status_code == 200
    unsigned_query = edge.post(
        "shop",
        "continue",
        call_params(),
        query="turn=abc",
        signed_url=f"{PUBLIC}/twilio/shop/continue",
    )
    assert unsigned_query.status_code == 403


def test_an_unknown_business_is_404_only_once_signed(edge: Edge) -> None:
    assert edge.post("nobody", "voice", call_params()).status_code == 404
    # Unsigned, it learns nothing: not even that the business does not exist.
    assert edge.http.post("/twilio/nobody/voice", data=call_params()).status_code == 403


def test_bodies_are_bounded_and_must_be_forms(edge: Edge) -> None:
    huge = call_params(SpeechResult="a" * 40_000)
    assert edge.post("acme", "gather", huge).status_code == 413
    as_json = edge.http.post("/twilio/acme/voice", json=call_params())
    assert as_json.status_code == 415


def test_health_needs_no_signature(edge: Edge) -> None:
    reply = edge.http.get("/health")
    assert reply.status_code == 200 and reply.json() == {"status": "ok"}


# --- the Media Stream's handshake --------------------------------------------------------------


def closed_code(edge: Edge, *, signed_url: str | None = None) -> int | None:
    """Open the stream, send Twilio's first messages, and return how the edge closed it."""
    ws = edge.media("shop", signed_url=signed_url)
    with pytest.raises(ConnectionClosed) as closed:
        ws.send('{"event": "connected", "protocol": "Call", "version": "1.0.0"}')
        ws.recv(timeout=GUARD_S)
    return closed.value.rcvd.code if closed.value.rcvd is not None else None


@pytest.mark.parametrize(
    "signed_url",
    [
        "https://edge.example.com/twilio/shop/media",  # https: webhooks' form, not the socket's
        "wss://elsewhere.example.com/twilio/shop/media",
        "wss://edge.example.com/twilio/acme/media",
    ],
)
def test_a_handshake_signed_for_another_url_is_closed_with_1008(
    edge: Edge, signed_url: str
) -> None:
    assert closed_code(edge, signed_url=signed_url) == 1008


def test_a_handshake_without_a_signature_is_closed_with_1008(edge: Edge) -> None:
    url = "ws" + edge.base.removeprefix("http") + "/twilio/shop/media"
    with connect(url, open_timeout=GUARD_S) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=GUARD_S)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


def test_a_signed_handshake_gets_to_speak_the_turn(edge: Edge) -> None:
    root = edge.twiml("shop", "gather", turn_params("Hi."))
    stream = root.find("Connect/Stream")
    assert stream is not None
    parameters = {one.attrib["name"]: one.attrib["value"] for one in stream}
    ws = edge.media("shop")
    start = {
        "event": "start",
        "streamSid": "MZ1",
        "start": {"streamSid": "MZ1", "callSid": "CA1", "customParameters": parameters},
    }
    with pytest.raises(ConnectionClosed) as closed:
        ws.send(json.dumps(start))
        ws.recv(timeout=GUARD_S)
    # Accepted and tried: the worker is down, so the stream ends as failed (1011), not 1008.
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
