"""The outbound address policy: which addresses a webhook (or any fetch by URL) may reach."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from shared.errors import InvalidInput
from shared.net import DestinationRefused, SendFailed, refusal, resolve_public

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("::1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("169.254.1.1", "link-local"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("169.254.169.254", "cloud metadata"),
    ("fd00:ec2::254", "cloud metadata"),
    ("100.64.0.1", "shared (CGNAT)"),
    ("100.127.255.255", "shared (CGNAT)"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "this-network"),
    ("::", "unspecified"),
    ("192.0.2.1", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("2001:db8::1", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("192.0.0.8", "IETF protocol"),
    ("fec0::1", "site-local"),
    ("100::1", "discard"),
    ("2001::1", "Teredo"),
    ("::127.0.0.1", "IPv4-compatible"),
    # IPv6 forms that carry an IPv4 address: the embedded address decides.
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:169.254.169.254", "cloud metadata"),
    ("::ffff:0:127.0.0.1", "loopback"),
    ("::ffff:0:100.64.0.1", "shared (CGNAT)"),
    ("64:ff9b::127.0.0.1", "loopback"),
    ("64:ff9b::10.0.0.1", "private"),
    ("64:ff9b:1::1", "NAT64 local-use"),
    ("2002:7f00:1::", "loopback"),
    ("2002:a00:1::", "private"),
    ("2002:a9fe:a9fe::", "cloud metadata"),
]

PUBLIC = [
    "1.1.1.1",
    "8.8.8.8",
    "93.184.215.14",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::8.8.8.8",
    "2002:808:808::",
]


@pytest.mark.parametrize(("address", "reason"), REFUSED)
def test_non_public_addresses_are_refused_with_their_kind(address: str, reason: str) -> None:
    said = refusal(ip_address(address))
    assert said is not None and reason in said


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ip_address(address)) is None


@pytest.mark.parametrize("address", ["127.0.0.1", "127.9.8.7", "::1"])
def test_loopback_is_allowed_only_when_asked(address: str) -> None:
    assert refusal(ip_address(address), allow_loopback=True) is None


@pytest.mark.parametrize(
    "address",
    ["::ffff:127.0.0.1", "64:ff9b::127.0.0.1", "10.0.0.1", "169.254.169.254", "0.0.0.0", "fe80::1"],
)
def test_allowing_loopback_allows_nothing_else(address: str) -> None:
    assert refusal(ip_address(address), allow_loopback=True) is not None


def test_a_name_that_resolves_to_loopback_is_refused() -> None:
    with pytest.raises(DestinationRefused, match="loopback"):
        resolve_public("localhost", 80)
    assert all(one.is_loopback for one in resolve_public("localhost", 80, allow_loopback=True))


def test_every_resolved_address_must_be_public() -> None:
    def resolver(host: str, port: int) -> list[IPv4Address | IPv6Address]:
        return [ip_address("8.8.8.8"), ip_address("10.0.0.7")]

    with pytest.raises(DestinationRefused, match="private"):
        resolve_public("mixed.example", 443, resolve=resolver)


def test_the_address_checked_is_the_one_returned() -> None:
    def resolver(host: str, port: int) -> list[IPv4Address | IPv6Address]:
        return [ip_address("2606:4700:4700::1111"), ip_address("1.1.1.1")]

    assert resolve_public("public.example", 443, resolve=resolver) == [
        ip_address("2606:4700:4700::1111"),
        ip_address("1.1.1.1"),
    ]


def test_a_name_that_does_not_resolve_is_a_send_failure() -> None:
    def resolver(host: str, port: int) -> list[IPv4Address | IPv6Address]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(SendFailed, match="does not resolve"):
        resolve_public("nowhere.invalid", 80, resolve=resolver)


def test_refusals_are_invalid_input_that_never_name_the_host() -> None:
    with pytest.raises(DestinationRefused) as refused:
        resolve_public("localhost", 80)
    assert isinstance(refused.value, InvalidInput)
    assert "localhost" not in str(refused.value)
