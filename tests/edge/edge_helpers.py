"""Helpers for the call flow's tests: the edge app served on loopback in front of a real worker
(this product's HTTP app through the real ``HttpWorker``), requests signed as Twilio signs them
(the twilio SDK's ``RequestValidator``), Twilio's side of a Media Stream (the ``websockets``
client), and a business's responder as a small local HTTP server that answers fast, slowly,
wrongly or not at all."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element

import httpx
from defusedxml import ElementTree
from pydantic import SecretStr
from starlette.applications import Starlette
from twilio.request_validator import RequestValidator
from websockets.sync.client import ClientConnection, connect

from edge.app import create_edge_app
from edge.config import EdgeConfig, EdgeSettings, Secrets
from edge.state import EdgeState
from edge.workers.http_api import HttpWorker
from shared.config import Settings
from shared.engines.base import Engine
from tests.entrypoints.web_helpers import Served, serve, start_app
from tests.servers import free_port

AUTH_TOKEN = "twilio-test-auth-token-0123456789"
PUBLIC = "https://edge.example.com"
# Guards against a hang, never a measure.
GUARD_S = 60.0


def call_params(**changes: str) -> dict[str, str]:
    """The form Twilio posts to a voice webhook (a gather adds SpeechResult, Confidence)."""
    params = {
        "AccountSid": "AC" + "0" * 32,
        "ApiVersion": "2010-04-01",
        "CallSid": "CA" + "1" * 32,
        "CallStatus": "in-progress",
        "Direction": "inbound",
        "From": "+15550100001",
        "To": "+15550100002",
    }
    return {**params, **changes}


def turn_params(speech: str, confidence: str = "0.93", **changes: str) -> dict[str, str]:
    return call_params(SpeechResult=speech, Confidence=confidence, **changes)


def signature(url: str, params: Mapping[str, str] | None = None) -> str:
    return RequestValidator(AUTH_TOKEN).compute_signature(url, dict(params or {}))


def start_product(stack: ExitStack, data_dir: Path, engine: Engine) -> Served:
    """This product's HTTP app (the worker the edge calls) on the embedded defaults."""
    settings = Settings(data_dir=data_dir, auth_cache_ttl_s=0, engine="piper")
    return start_app(stack, settings, engine)


# --- the business's responder -----------------------------------------------------------------


@dataclass
class ResponderServer:
    """``POST /<behaviour>``: ``text``, ``ssml`` and ``stream`` answer the reply set for them,
    ``echo`` repeats the caller's words, ``slow`` holds until ``release`` is set, ``fail`` is a
    500, ``junk`` a 200 that is not the contract.
    Every body received is kept, to check the contract's fields."""

    base: str = ""
    replies: dict[str, dict[str, str]] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, behaviour: str) -> str:
        return f"{self.base}/{behaviour}"


@contextmanager
def responder_server() -> Iterator[ResponderServer]:
    state = ResponderServer(
        replies={
            "text": {"text": "Your order shipped this morning."},
            "ssml": {"ssml": "<speak>Your table is <emphasis>ready</emphasis>.</speak>"},
            "stream": {
                "text": "First sentence of the reply. Second sentence of the reply. "
                "Third sentence of the reply."
            },
        }
    )

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            turn = json.loads(self.rfile.read(length))
            state.received.append(turn)
            behaviour = self.path.strip("/")
            if behaviour == "echo":  # a new reply for every new thing said
                self._answer(200, {"text": f"You said: {turn['speech']}."})
            elif behaviour == "slow":
                state.release.wait(GUARD_S)
                self._answer(200, {"text": "Too late to matter."})
            elif behaviour == "fail":
                self._answer(500, {"error": "the AI is down"})
            elif behaviour == "junk":
                self._answer(200, {"answer": "not the contract"})
            else:
                self._answer(200, state.replies[behaviour])

        def _answer(self, status: int, body: dict[str, str]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()


# --- the edge ---------------------------------------------------------------------------------


def business(responder: str, **fields: Any) -> dict[str, Any]:
    return {
        "api_key_env": "UNUSED_IN_TESTS",
        "greeting": "Thanks for calling.",
        "fallback_text": "Sorry, one moment please.",
        "responder_url": responder,
        **fields,
    }


def edge_settings(
    worker_url: str, key: str, businesses: dict[str, dict[str, Any]], **config: Any
) -> EdgeSettings:
    edge_config = EdgeConfig.model_validate(
        {
            "public_base_url": PUBLIC,
            "worker": {"kind": "http", "url": worker_url},
            "businesses": businesses,
            **config,
        }
    )
    secrets = Secrets(
        twilio_auth_token=SecretStr(AUTH_TOKEN),
        tenant_keys={name: SecretStr(key) for name in businesses},
    )
    return EdgeSettings(config=edge_config, secrets=secrets)


@dataclass
class Edge:
    """The served edge, as Twilio reaches it: signed webhooks and Media Streams."""

    app: Starlette
    base: str
    http: httpx.Client

    @property
    def state(self) -> EdgeState:
        state: EdgeState = self.app.state.edge
        return state

    def post(
        self,
        business: str,
        route: str,
        params: Mapping[str, str],
        *,
        query: str = "",
        signed_url: str | None = None,
        signed_params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """A webhook signed as Twilio signs it (over ``signed_url``/``signed_params`` when a
        test tampers with one)."""
        path = f"/twilio/{business}/{route}" + (f"?{query}" if query else "")
        url = signed_url or PUBLIC + path
        sent = {"X-Twilio-Signature": signature(url, signed_params or params), **(headers or {})}
        return self.http.post(path, data=dict(params), headers=sent)

    def twiml(
        self, business: str, route: str, params: Mapping[str, str], **options: Any
    ) -> Element:
        reply = self.post(business, route, params, **options)
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-type"].startswith("text/xml")
        return parse_twiml(reply.text)

    def media(self, business: str, *, signed_url: str | None = None) -> ClientConnection:
        """Twilio opening a Media Stream: the handshake signed over the ``wss://`` URL."""
        path = f"/twilio/{business}/media"
        url = signed_url or "wss://edge.example.com" + path
        return connect(
            "ws" + self.base.removeprefix("http") + path,
            additional_headers={"X-Twilio-Signature": signature(url)},
            open_timeout=GUARD_S,
            # Unbounded, as Twilio reads: a test that stops reading mid-reply must not stall
            # the client's own reader (and with it the closing handshake).
            max_queue=None,
        )


def start_edge(stack: ExitStack, settings: EdgeSettings, *, retries: int = 0) -> Edge:
    """The edge for ``settings``, its worker the real ``HttpWorker``, served until ``stack``
    closes."""
    worker = HttpWorker(settings.config.worker.base_url(), timeout_s=GUARD_S, retries=retries)
    app = create_edge_app(settings, worker)
    port = free_port()
    base = stack.enter_context(serve(app, port))  # type: ignore[arg-type]
    http = stack.enter_context(httpx.Client(base_url=base, timeout=GUARD_S))
    return Edge(app, base, http)


def parse_twiml(text: str) -> Element:
    root: Element = ElementTree.fromstring(text)
    assert root.tag == "Response"
    return root


def verbs(root: Element) -> list[str]:
    """The verbs in order, nested ones as ``Outer/Inner``."""
    found = []
    for verb in root:
        found.append(verb.tag)
        found.extend(f"{verb.tag}/{inner.tag}" for inner in verb)
    return found
