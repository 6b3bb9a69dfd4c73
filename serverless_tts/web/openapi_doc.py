"""The OpenAPI document, with the WebSocket routes in it too.

OpenAPI has no WebSocket operations and FastAPI leaves such routes out, so a client reading
/openapi.json would never learn of ``/v1/stream``. Each one is described as what it is on the
wire: a GET that upgrades (101 Switching Protocols), with its endpoint's docstring as the
protocol description.
"""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIWebSocketRoute, iter_route_contexts


def install_openapi(app: FastAPI) -> None:
    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            # Included routers are wrapped (FastAPI 0.165): their routes come out of the contexts.
            for context in iter_route_contexts(app.routes):
                route = context.original_route
                if isinstance(route, APIWebSocketRoute) and context.path:
                    schema.setdefault("paths", {})[context.path] = {"get": _upgrade(route)}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]


def _upgrade(route: APIWebSocketRoute) -> dict[str, Any]:
    description = inspect.getdoc(route.endpoint) or ""
    return {
        "summary": f"WebSocket {route.path}",
        "description": description,
        "operationId": f"websocket_{route.name}",
        "tags": ["websocket"],
        "parameters": [
            {"name": "Upgrade", "in": "header", "required": True, "schema": {"const": "websocket"}}
        ],
        "responses": {"101": {"description": "Switching Protocols: the WebSocket is open"}},
    }
