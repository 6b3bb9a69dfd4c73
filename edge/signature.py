"""Twilio's request signatures (``X-Twilio-Signature``), checked with the twilio SDK's own
``RequestValidator``.

Twilio signs the URL it was told to call, so the URL is rebuilt from the configured
``public_base_url`` (what the number's webhook settings name), never from the Host header a
proxy or tunnel hands on: the request's path and raw query string are appended exactly as
received. The WebSocket handshake is signed over the ``wss://`` form of the same URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qs

from pydantic import SecretStr
from starlette.datastructures import ImmutableMultiDict
from starlette.types import Scope
from twilio.request_validator import SIGNATURE_HEADER, RequestValidator

SIGNATURE_HEADER_BYTES = SIGNATURE_HEADER.lower().encode()


def websocket_base(public_base_url: str) -> str:
    """``https://host/prefix`` -> ``wss://host/prefix`` (``http`` -> ``ws`` for a tunnel)."""
    scheme, rest = public_base_url.split("://", 1)
    return ("wss" if scheme == "https" else "ws") + "://" + rest


class TwilioSignatures:
    def __init__(self, auth_token: SecretStr, public_base_url: str) -> None:
        self._validator = RequestValidator(auth_token.get_secret_value())
        self._https = public_base_url
        self._wss = websocket_base(public_base_url)

    def form_is_signed(self, scope: Scope, params: ImmutableMultiDict[str, str]) -> bool:
        """A form POST: the URL plus every POST parameter, as Twilio signs webhooks."""
        signature = _signature(scope)
        url = self._https + _path_and_query(scope)
        return signature is not None and self._validator.validate(url, params, signature)

    def body_is_signed(self, scope: Scope, body: str) -> bool:
        """A JSON POST: Twilio's scheme for bodies that are not forms puts the body's SHA-256
        in the ``bodySHA256`` query parameter and signs the URL alone; without that parameter
        the body would be unsigned, so it is refused."""
        signature = _signature(scope)
        url = self._https + _path_and_query(scope)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        return (
            signature is not None
            and "bodySHA256" in query
            and self._validator.validate(url, body, signature)
        )

    def websocket_is_signed(self, scope: Scope) -> bool:
        signature = _signature(scope)
        url = self._wss + _path_and_query(scope)
        return signature is not None and self._validator.validate(url, {}, signature)


def _signature(scope: Scope) -> str | None:
    headers: Mapping[bytes, bytes] = dict(scope.get("headers", []))
    value = headers.get(SIGNATURE_HEADER_BYTES)
    return value.decode("latin-1") if value else None


def _path_and_query(scope: Scope) -> str:
    # raw_path keeps the percent-encoding Twilio signed; path is its decoded form.
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else scope["path"]
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path
