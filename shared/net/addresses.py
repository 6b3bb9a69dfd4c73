"""Which IP addresses an outbound request may reach: public ones only.

Named ranges come first, so a refusal says what kind of address it met; ``ipaddress``'s own flags
then catch whatever the table misses (their coverage differs between Python releases). IPv6
forms that carry an IPv4 address (mapped, translated, NAT64, 6to4) are judged by the IPv4
address inside: that is where the packets go.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

IPAddress = IPv4Address | IPv6Address

_V4_KINDS: tuple[tuple[IPv4Network, str], ...] = tuple(
    (IPv4Network(net), kind)
    for net, kind in (
        ("0.0.0.0/32", "unspecified"),
        ("0.0.0.0/8", "this-network"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared (CGNAT)"),  # also Alibaba Cloud's metadata, 100.100.100.200
        ("127.0.0.0/8", "loopback"),
        ("169.254.169.254/32", "cloud metadata"),  # AWS, GCP, Azure, OpenStack instance metadata
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol"),
        ("192.0.2.0/24", "documentation"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "broadcast"),
        ("240.0.0.0/4", "reserved"),
    )
)
_V6_KINDS: tuple[tuple[IPv6Network, str], ...] = tuple(
    (IPv6Network(net), kind)
    for net, kind in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "IPv4-compatible"),  # deprecated by RFC 4291; nothing legitimate uses it
        ("100::/64", "discard"),
        ("2001::/32", "Teredo"),  # a tunnel whose far end cannot be checked
        ("2001:db8::/32", "documentation"),
        ("64:ff9b:1::/48", "NAT64 local-use"),
        ("fd00:ec2::254/128", "cloud metadata"),  # AWS's IPv6 instance metadata (Nitro)
        ("fc00::/7", "private"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)
_V4_LOOPBACK = ip_network("127.0.0.0/8")
_V6_LOOPBACK = IPv6Address("::1")
# RFC 2765's IPv4-translated form and RFC 6052's well-known NAT64 prefix both end in the IPv4
# address; ::ffff:0:0/96 (IPv4-mapped) has its own accessor.
_V4_IN_LAST_32_BITS = (IPv6Network("::ffff:0:0:0/96"), IPv6Network("64:ff9b::/96"))


def refusal(address: IPAddress, *, allow_loopback: bool = False) -> str | None:
    """The kind of non-public address ``address`` is, or None when it is public.

    ``allow_loopback`` (local development) lets 127.0.0.0/8 and ::1 through, and nothing else:
    not their IPv4-in-IPv6 forms, not private or link-local ranges.
    """
    if allow_loopback and (address == _V6_LOOPBACK or address in _V4_LOOPBACK):
        return None
    if isinstance(address, IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            kind = refusal(inner)
            return None if kind is None else f"{kind}, as IPv4 inside IPv6"
        return _kind(address, _V6_KINDS)
    return _kind(address, _V4_KINDS)


def _kind(
    address: IPAddress, kinds: tuple[tuple[IPv4Network | IPv6Network, str], ...]
) -> str | None:
    for network, kind in kinds:
        if address in network:
            return kind
    flagged = (
        address.is_private,
        address.is_loopback,
        address.is_link_local,
        address.is_multicast,
        address.is_reserved,
        address.is_unspecified,
        not address.is_global,
    )
    return "not globally routable" if any(flagged) else None


def _embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if any(address in network for network in _V4_IN_LAST_32_BITS):
        return IPv4Address(int(address) & 0xFFFF_FFFF)
    return address.sixtofour
