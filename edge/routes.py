"""The edge's HTTP surface: each webhook read and checked (``webhook``), answered by the call
flow (``calls``) as TwiML, and logged as one ``voice.webhook`` event, whatever happened; and
the operator's ``GET /metrics``."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable

from prometheus_client.exposition import choose_encoder
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.websockets import WebSocket

from edge.calls import Answer
from edge.error_reports import tagged
from edge.events import WebhookEvent, record_webhook
from edge.media import media_stream
from edge.state import EdgeState
from edge.twiml import listen, twiml_response
from edge.webhook import Refused, Webhook, read_webhook

CallHandler = Callable[[Webhook, EdgeState], Awaitable[Answer]]
Endpoint = Callable[[Request], Awaitable[Response]]
_log = logging.getLogger(__name__)


def webhook(route: str, handler: CallHandler, *, allow_json: bool = False) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        edge: EdgeState = request.app.state.edge
        started = time.perf_counter()
        businesses = edge.settings.config.businesses
        try:
            call = await read_webhook(request, edge.signatures, businesses, allow_json=allow_json)
            answer = await _answer(call, edge, handler)
        except Refused as refused:
            name = request.path_params["business"]
            event = WebhookEvent(
                business=name if name in businesses else None,
                route=route,
                status=refused.status,
                latency_ms=_ms_since(started),
                response_type="refused",
            )
            record_webhook(edge.counters, event)
            return PlainTextResponse(refused.message, status_code=refused.status)
        event = WebhookEvent(
            business=call.business,
            call_sid=call.call_sid,
            route=route,
            latency_ms=_ms_since(started),
            response_type=answer.response_type,
            worker_latency_ms=answer.worker_latency_ms,
            fallback_reason=answer.fallback_reason,
        )
        record_webhook(edge.counters, event)
        return twiml_response(answer.twiml)

    return endpoint


async def _answer(call: Webhook, edge: EdgeState, handler: CallHandler) -> Answer:
    try:
        with tagged(business=call.business):  # an error reported meanwhile names its business
            return await handler(call, edge)
    except Refused:
        raise
    except Exception:  # a bug must still leave the caller on a live call
        with tagged(business=call.business):
            _log.exception("the %s call flow failed; saying the fallback text", call.business)
        twiml = listen(edge.url(call.business, "gather"), say=call.config.fallback_text)
        return Answer(twiml, "say", fallback_reason="edge_error")


async def media(websocket: WebSocket) -> None:
    edge: EdgeState = websocket.app.state.edge
    name = websocket.path_params["business"]
    with tagged(business=name if name in edge.settings.config.businesses else None):
        await media_stream(websocket, edge)


async def health(_request: Request) -> Response:
    """For the platform's health checks: no signature, nothing about the configuration."""
    return JSONResponse({"status": "ok"})


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


async def metrics(request: Request) -> Response:
    """The Prometheus figures, for the operator's scraper only: ``Authorization: Bearer`` and
    the token ``metrics_token_env`` names (else 401); with no token configured, 404, like a
    route that is not there, so an edge deployed without thinking about it leaks nothing."""
    edge: EdgeState = request.app.state.edge
    token = edge.settings.secrets.metrics_token
    if token is None:
        return PlainTextResponse("Not Found", status_code=404)
    scheme, _, given = request.headers.get("authorization", "").strip().partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        return PlainTextResponse(
            "GET /metrics needs the operator's metrics token as a Bearer token",
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    # The client library's own negotiation: OpenMetrics when the scraper asks for it.
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(edge.counters.metrics.registry), media_type=content_type)
