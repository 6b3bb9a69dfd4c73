"""An HTTP request to the very address the policy checked.

The URL's host is resolved once (``resolve_public``); the request then names the checked IP, so
httpx never resolves the name again and a second DNS answer (rebinding) cannot redirect it. The
URL's own name stays in the ``Host`` header and, for https, in SNI and certificate verification
(httpcore's ``sni_hostname`` extension), so virtual hosts and TLS work as with the name.
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from shared.net.addresses import IPAddress
from shared.net.errors import DestinationRefused, SendFailed
from shared.net.resolve import Resolver, resolve_public, system_resolver

_DEFAULT_PORTS = {"http": 80, "https": 443}

Trace = Callable[[str, dict[str, Any]], None]


def check_http_url(url: str) -> httpx.URL:
    """``url`` parsed, if it is an absolute http or https URL with a host."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise DestinationRefused("not a valid URL") from exc
    if parsed.scheme not in _DEFAULT_PORTS:
        raise DestinationRefused("only http and https URLs are allowed")
    if not parsed.raw_host:
        raise DestinationRefused("the URL has no host")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise DestinationRefused("the URL's port is out of range")
    return parsed


def check_destination(
    url: str, *, allow_loopback: bool = False, resolve: Resolver = system_resolver
) -> None:
    """Refuse ``url`` now (``DestinationRefused``, ``SendFailed``) if a request to it would be:
    lets a caller say so before accepting work, not only when the request is due."""
    target = check_http_url(url)
    port = target.port or _DEFAULT_PORTS[target.scheme]
    resolve_public(
        target.raw_host.decode("ascii"), port, allow_loopback=allow_loopback, resolve=resolve
    )


@contextmanager
def open_pinned(
    method: str,
    url: str,
    *,
    timeout_s: float,
    json: object = None,
    headers: Mapping[str, str] | None = None,
    allow_loopback: bool = False,
    resolve: Resolver = system_resolver,
    verify: ssl.SSLContext | bool = True,
    trace: Trace | None = None,
) -> Iterator[httpx.Response]:
    """Send one request and yield its response, body unread (read what you need, bounded).

    Redirects come back as responses, never followed: their target was never checked. The
    addresses are tried in the resolver's order until one accepts the connection.
    ``timeout_s`` bounds each phase (connect, TLS, each read), as httpx timeouts do. ``trace``
    is httpcore's trace hook (events such as ``connection.connect_tcp.complete``), for a caller
    that must reach the connection itself.
    """
    target = check_http_url(url)
    host = target.raw_host.decode("ascii")
    port = target.port or _DEFAULT_PORTS[target.scheme]
    addresses = resolve_public(host, port, allow_loopback=allow_loopback, resolve=resolve)
    # httpx's transport, not a Client: a Client logs each request's full URL at INFO (a webhook
    # URL is a secret) and brings what a user's URL must not get: proxies from the environment
    # (which would resolve the name again), .netrc credentials, cookies, redirects. A fresh
    # transport per request, because httpcore pools connections by (scheme, IP, port): a shared
    # pool could hand this request a TLS connection verified for another name.
    with httpx.HTTPTransport(verify=verify) as transport:
        response = _send_to_first_reachable(
            transport, method, target, addresses, json, headers or {}, timeout_s, trace
        )
        try:
            yield response
        finally:
            response.close()


def _send_to_first_reachable(
    transport: httpx.HTTPTransport,
    method: str,
    target: httpx.URL,
    addresses: list[IPAddress],
    json: object,
    extra_headers: Mapping[str, str],
    timeout_s: float,
    trace: Trace | None,
) -> httpx.Response:
    extensions: dict[str, object] = {"timeout": httpx.Timeout(timeout_s).as_dict()}
    if target.scheme == "https":
        extensions["sni_hostname"] = target.raw_host.decode("ascii")
    if trace is not None:
        extensions["trace"] = trace
    headers = {**extra_headers, "Host": target.netloc.decode("ascii")}
    if target.userinfo:  # a transport drops the URL's credentials; a Client would send them so
        pair = f"{target.username}:{target.password}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    failure: httpx.HTTPError | None = None
    for address in addresses:
        request = httpx.Request(
            method,
            target.copy_with(host=str(address)),
            json=json,
            headers=headers,
            extensions=extensions,
        )
        try:
            return transport.handle_request(request)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            failure = exc  # this address does not answer: try the next, as a socket connect would
        except httpx.HTTPError as exc:
            raise SendFailed(_describe(exc)) from exc
    assert failure is not None  # resolve_public never returns an empty list
    raise SendFailed(_describe(failure)) from failure


def _describe(exc: httpx.HTTPError) -> str:
    # httpx's messages name the failure ("[Errno 111] Connection refused", the TLS alert), never
    # the URL.
    return f"could not reach the host: {type(exc).__name__}: {exc}"
