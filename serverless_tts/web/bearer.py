"""The tenant key as HTTP carries it: ``Authorization: Bearer <key>``.

A missing or malformed header gives empty credentials, which the dispatcher refuses as
``unauthorized`` (401 with ``WWW-Authenticate: Bearer``), so every route refuses the same way.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection

from shared.jobs import ApiKeyCredentials


def bearer_key(authorization: str | None) -> str | None:
    """The key in an ``Authorization`` header value, or None when it holds no Bearer key."""
    if authorization is None:
        return None
    scheme, _, key = authorization.strip().partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key else None


def bearer_credentials(connection: HTTPConnection) -> ApiKeyCredentials:
    """Credentials from a request's (or a WebSocket upgrade's) Authorization header."""
    return ApiKeyCredentials.of(bearer_key(connection.headers.get("authorization")))
