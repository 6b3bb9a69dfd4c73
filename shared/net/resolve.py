"""Resolve a host once and check every address it has against the policy.

Every address, not just the first: a client may connect to any of them, and a name that mixes a
public address with a private one is an attack, not a misconfiguration.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from ipaddress import ip_address

from shared.net.addresses import IPAddress, refusal
from shared.net.errors import DestinationRefused, SendFailed

Resolver = Callable[[str, int], Sequence[IPAddress]]


def system_resolver(host: str, port: int) -> list[IPAddress]:
    """The system's addresses for ``host`` (IP literals included), in its order of
    preference, each once."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ip_address(info[4][0]) for info in infos))


def resolve_public(
    host: str, port: int, *, allow_loopback: bool = False, resolve: Resolver = system_resolver
) -> list[IPAddress]:
    """``host``'s addresses, all of them public; ``DestinationRefused`` if any is not,
    ``SendFailed`` if the name does not resolve."""
    try:
        addresses = list(resolve(host, port))
    except (OSError, UnicodeError) as exc:  # gaierror; an over-long label fails IDNA encoding
        raise SendFailed("the host name does not resolve") from exc
    if not addresses:
        raise SendFailed("the host name does not resolve")
    for address in addresses:
        kind = refusal(address, allow_loopback=allow_loopback)
        if kind is not None:
            raise DestinationRefused(f"the host resolves to an address that is not public ({kind})")
    return addresses
