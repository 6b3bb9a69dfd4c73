"""``ModalWorker``: this product's HTTP app behind a local stand-in for Modal's proxy auth
(a request or WebSocket upgrade without the endpoint's token never reaches the app, as on
Modal), with real Piper speech behind it."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
from pydantic import SecretStr
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from edge.workers.base import WorkerError
from edge.workers.build import build_worker_client
from edge.workers.modal import ModalWorker
from serverless_tts.web.app import create_app
from shared.config import Settings
from shared.engines.base import Engine
from shared.tenants.base import UNLIMITED
from shared.worker import build_worker
from tests.edge.worker_fixtures import edge_settings, speech
from tests.entrypoints.web_helpers import serve
from tests.servers import free_port

pytestmark = pytest.mark.anyio
TOKEN_ID, TOKEN_SECRET = "wk-test-id", "ws-test-secret"


class ProxyAuth:
    """Modal's proxy auth: ``Modal-Key`` and ``Modal-Secret`` on every request and upgrade,
    else 401 (an upgrade is refused before the app accepts it); ``seen`` counts who passed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.seen: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = dict(scope["headers"])
            if (headers.get(b"modal-key"), headers.get(b"modal-secret")) != (
                TOKEN_ID.encode(),
                TOKEN_SECRET.encode(),
            ):
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                else:
                    await JSONResponse({"error": "missing proxy auth"}, 401)(scope, receive, send)
                return
            self.seen.append(f"{scope['type']} {scope['path']}")
        await self.app(scope, receive, send)


def modal_endpoint(
    stack: ExitStack, settings: Settings, engine: Engine
) -> tuple[str, ProxyAuth, str]:
    """The app behind ``ProxyAuth`` on loopback: its URL, the proxy, and a tenant key."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ctx = build_worker(settings.model_copy(update={"public_base_url": base}), engine=engine)
    stack.callback(ctx.close)
    proxy = ProxyAuth(create_app(ctx))
    stack.enter_context(serve(proxy, port))  # type: ignore[arg-type]
    return base, proxy, ctx.tenants.create_tenant("acme", UNLIMITED).api_key


async def test_the_token_goes_with_every_request_and_upgrade_and_is_needed(
    stack: ExitStack, settings: Settings, piper_engine: Engine
) -> None:
    base, proxy, key = modal_endpoint(stack, settings, piper_engine)
    table = (
        f'kind = "modal"\nurl = "{base}"\ntoken_id_env = "TOKEN_ID"\ntoken_secret_env = "SECRET"'
    )
    worker = build_worker_client(edge_settings(table, TOKEN_ID=TOKEN_ID, SECRET=TOKEN_SECRET))
    assert isinstance(worker, ModalWorker)
    greeting = speech(key, "Thanks for calling.")
    await worker.warm(greeting)
    assert await worker.cached_url(greeting) is not None
    assert await worker.synthesize_url(speech(key, "Through the proxy."))
    assert [chunk async for chunk in worker.stream(speech(key, "And a stream.", "mulaw"))]
    await worker.aclose()
    passed = ["http /runsync", "http /runsync", "http /v1/synthesize-url", "websocket /v1/stream"]
    assert proxy.seen == passed

    bare = ModalWorker(base, timeout_s=10, retries=2)
    wrong = ModalWorker(
        base, timeout_s=10, retries=2, token=(SecretStr(TOKEN_ID), SecretStr("ws-wrong"))
    )
    for client in (bare, wrong):
        for call in (client.cached_url, client.synthesize_url):
            with pytest.raises(WorkerError) as refused:
                await call(greeting)
            assert refused.value.reason == "refused" and "401" in refused.value.message
        with pytest.raises(WorkerError) as refused:
            async for _ in client.stream(speech(key, "No way in.", "mulaw")):
                pass
        assert refused.value.reason == "refused"
        assert "ws-wrong" not in str(refused.value)
        await client.aclose()
    assert proxy.seen == passed  # nothing reached the app without the token
