"""The pinned sender against real servers on loopback: it connects to the address it checked,
keeps the URL's own name for Host and TLS, and never follows a redirect."""

from __future__ import annotations

import base64
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

import pytest

from shared.net import DestinationRefused, SendFailed, check_http_url, open_pinned
from tests.shared.http_receiver import receiver
from tests.shared.tls import certificate


class CountingResolver:
    """Resolves every name to 127.0.0.1 and counts the look-ups (names under .test resolve
    nowhere else, so a second look-up by the HTTP client would fail to connect)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[IPv4Address | IPv6Address]:
        self.calls.append(host)
        return [ip_address("127.0.0.1")]


def test_posts_json_to_the_checked_address_with_the_urls_host() -> None:
    resolve = CountingResolver()
    with receiver() as server:
        url = f"http://hooks.test:{server.port}/hook?token=t1"
        with open_pinned(
            "POST", url, json={"a": 1}, timeout_s=5, allow_loopback=True, resolve=resolve
        ) as response:
            assert response.status_code == 200
        [got] = server.wait_for(1)
    assert resolve.calls == ["hooks.test"]
    assert got.method == "POST" and got.path == "/hook?token=t1"
    assert got.headers["host"] == f"hooks.test:{server.port}"
    assert got.headers["content-type"] == "application/json"
    assert got.json() == {"a": 1}


def test_credentials_in_the_url_are_sent_as_basic_auth() -> None:
    with receiver() as server:
        url = f"http://hook:p%40ss@hooks.test:{server.port}/"
        with open_pinned(
            "POST", url, json={}, timeout_s=5, allow_loopback=True, resolve=CountingResolver()
        ) as response:
            assert response.status_code == 200
        [got] = server.wait_for(1)
    assert got.headers["authorization"] == "Basic " + base64.b64encode(b"hook:p@ss").decode()


def test_a_name_for_loopback_is_refused_and_never_contacted() -> None:
    with receiver() as server:
        with (
            pytest.raises(DestinationRefused, match="loopback"),
            open_pinned("POST", f"http://localhost:{server.port}/", json={}, timeout_s=5),
        ):
            pass
        assert server.requests == []


def test_redirects_are_not_followed() -> None:
    with receiver([302], headers={"Location": "http://127.0.0.1:9/elsewhere"}) as server:
        url = f"http://127.0.0.1:{server.port}/"
        with open_pinned("POST", url, json={}, timeout_s=5, allow_loopback=True) as response:
            assert response.status_code == 302
        assert len(server.wait_for(1)) == 1


def test_connection_refused_is_a_send_failure() -> None:
    with receiver() as server:
        port = server.port
    with (
        pytest.raises(SendFailed),
        open_pinned("POST", f"http://127.0.0.1:{port}/", json={}, timeout_s=5, allow_loopback=True),
    ):
        pass


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/",
        "file:///etc/passwd",
        "http:///nohost",
        "not a url",
        "//x.com/",
        "http://[::1/",
        "http://example.com:99999/",
    ],
)
def test_only_http_urls_with_a_host_are_accepted(url: str) -> None:
    with pytest.raises(DestinationRefused):
        check_http_url(url)


def test_https_verifies_the_urls_name_over_the_pinned_address(tmp_path: Path) -> None:
    server_tls, client_tls = certificate(tmp_path, "hooks.test")
    resolve = CountingResolver()
    with receiver(tls=server_tls) as server:
        url = f"https://hooks.test:{server.port}/secure"
        with open_pinned(
            "POST",
            url,
            json={"ok": True},
            timeout_s=5,
            allow_loopback=True,
            resolve=resolve,
            verify=client_tls,
        ) as response:
            assert response.status_code == 200
        [got] = server.wait_for(1)
    assert server.sni_names == ["hooks.test"]
    assert got.headers["host"] == f"hooks.test:{server.port}" and got.json() == {"ok": True}
    assert resolve.calls == ["hooks.test"]


def test_https_refuses_a_certificate_for_another_name(tmp_path: Path) -> None:
    server_tls, client_tls = certificate(tmp_path, "other.test")
    with receiver(tls=server_tls) as server:
        url = f"https://hooks.test:{server.port}/secure"
        with (
            pytest.raises(SendFailed, match="CERTIFICATE_VERIFY_FAILED"),
            open_pinned(
                "POST",
                url,
                json={},
                timeout_s=5,
                allow_loopback=True,
                resolve=CountingResolver(),
                verify=client_tls,
            ),
        ):
            pass
        assert server.requests == []
