"""Outbound HTTP to URLs that users give (webhooks, reference audio), safely.

One policy decides which addresses may be reached (public ones only, loopback when a developer
asks), a host is resolved once and every address it has is checked, and the request goes to the
address that was checked, so a second DNS answer cannot send it elsewhere (DNS rebinding).
"""

from shared.net.addresses import IPAddress, refusal
from shared.net.errors import DestinationRefused, ResponseTooLarge, SendFailed
from shared.net.fetch import FetchedBody, fetch_bounded
from shared.net.pinned import check_destination, check_http_url, open_pinned
from shared.net.resolve import Resolver, resolve_public, system_resolver

__all__ = [
    "DestinationRefused",
    "FetchedBody",
    "IPAddress",
    "Resolver",
    "ResponseTooLarge",
    "SendFailed",
    "check_destination",
    "check_http_url",
    "fetch_bounded",
    "open_pinned",
    "refusal",
    "resolve_public",
    "system_resolver",
]
