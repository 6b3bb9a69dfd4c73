"""``GET /metrics``: the worker's Prometheus figures, for the operator's scraper only.

The figures are the operator's, not a tenant's (they count every tenant's jobs), so a tenant key
opens nothing here: the route wants ``Authorization: Bearer <TTS_METRICS_TOKEN>`` and refuses
anything else with 401. Without the setting it answers 404, like a route that is not there, so
a worker deployed without thinking about it leaks no figure.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, HTTPException, Request, Response
from prometheus_client.exposition import choose_encoder
from pydantic import SecretStr

from serverless_tts.web.bearer import bearer_key
from shared.worker import WorkerContext

router = APIRouter()


# Not in the OpenAPI document: it describes the tenants' API, and this is the operator's.
@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    ctx: WorkerContext = request.app.state.worker
    token = ctx.settings.metrics_token
    if token is None:
        raise HTTPException(404, detail="Not Found")
    if not _presented(request, token):
        raise HTTPException(
            401,
            detail="GET /metrics needs the operator's metrics token as a Bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    # The client library's own negotiation: OpenMetrics when the scraper asks for it.
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(ctx.metrics.registry), media_type=content_type)


def _presented(request: Request, token: SecretStr) -> bool:
    given = bearer_key(request.headers.get("authorization"))
    return given is not None and hmac.compare_digest(
        given.encode(), token.get_secret_value().encode()
    )
