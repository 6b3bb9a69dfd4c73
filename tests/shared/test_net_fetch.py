"""Fetching a reference by URL against real HTTP(S) servers on loopback: only public addresses
(loopback too with the development setting), on every redirect; the body bounded while it
streams; the whole fetch bounded in time; messages that never show the URL's secrets."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from pathlib import Path

import pytest

from shared.errors import InvalidInput
from shared.net import (
    DestinationRefused,
    FetchedBody,
    IPAddress,
    Resolver,
    ResponseTooLarge,
    SendFailed,
    fetch_bounded,
    system_resolver,
)
from tests.shared.http_receiver import serving
from tests.shared.tls import certificate

AUDIO = b"RIFF" + bytes(range(256)) * 40  # the bytes only travel; nothing decodes them
HUGE = 64 * 1024 * 1024  # more than loopback's socket buffers hold, so a cut is seen


@dataclass
class Site:
    """A server's record: what was asked for, and whether the client hung up mid-answer."""

    port: int
    paths: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    accept_encodings: list[str | None] = field(default_factory=list)
    sni_names: list[str | None] = field(default_factory=list)
    closed_early: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str, *, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"


Route = Callable[[BaseHTTPRequestHandler, Site], None]


@contextmanager
def site(routes: dict[str, Route], *, tls: ssl.SSLContext | None = None) -> Iterator[Site]:
    """A threaded HTTP/1.0 server on 127.0.0.1 answering each path (query ignored) by its
    route, 404 for the rest."""

    class Handler(BaseHTTPRequestHandler):
        timeout = 30  # no handler thread outlives a test by much, whatever the client does

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            state.paths.append(path)
            state.hosts.append(self.headers.get("Host", ""))
            state.accept_encodings.append(self.headers.get("Accept-Encoding"))
            try:
                routes.get(path, status(404))(self, state)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                state.closed_early.set()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = Site(port=int(server.server_address[1]))
    with serving(server, tls=tls, sni_names=state.sni_names):
        yield state


def body(
    data: bytes = AUDIO, *, length: bool = True, headers: dict[str, str] | None = None
) -> Route:
    def route(handler: BaseHTTPRequestHandler, _: Site) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "audio/wav")
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        if length:
            handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    return route


def status(code: int, headers: dict[str, str] | None = None) -> Route:
    def route(handler: BaseHTTPRequestHandler, _: Site) -> None:
        handler.send_response(code)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return route


def redirect(location: str, code: int = 302) -> Route:
    return status(code, {"Location": location})


def endless(*, declared: int | None) -> Route:
    """``HUGE`` bytes in 64 KiB writes; a client that stops reading makes a write fail."""

    def route(handler: BaseHTTPRequestHandler, _: Site) -> None:
        handler.send_response(200)
        if declared is not None:
            handler.send_header("Content-Length", str(declared))
        handler.end_headers()
        chunk = bytes(64 * 1024)
        for _ in range(HUGE // len(chunk)):
            handler.wfile.write(chunk)

    return route


def stall(*, declared: int | None) -> Route:
    """Headers, then nothing until the client hangs up."""

    def route(handler: BaseHTTPRequestHandler, state: Site) -> None:
        handler.send_response(200)
        if declared is not None:
            handler.send_header("Content-Length", str(declared))
        handler.end_headers()
        if handler.rfile.read(1) == b"":
            state.closed_early.set()

    return route


def trickle(*, in_headers: bool, count: int = 200, every_s: float = 0.05) -> Route:
    """A byte every ``every_s`` (well within each read's timeout), ``count`` of them, in a
    header or in the body, then a complete answer: only a bound on the whole fetch stops it."""

    def route(handler: BaseHTTPRequestHandler, _: Site) -> None:
        out = handler.wfile
        if in_headers:
            out.write(b"HTTP/1.0 200 OK\r\nX-Slow: ")
            for _ in range(count):
                out.write(b"a")
                time.sleep(every_s)
            out.write(b"\r\nContent-Length: 2\r\n\r\nok")
            return
        out.write(f"HTTP/1.0 200 OK\r\nContent-Length: {count}\r\n\r\n".encode())
        for _ in range(count):
            out.write(b"a")
            time.sleep(every_s)

    return route


class Names:
    """A resolver for test names (IP literals go to the system's), counting look-ups."""

    def __init__(self, names: dict[str, Sequence[str]]) -> None:
        self._names = names
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.calls.append(host)
        if host in self._names:
            return [ip_address(address) for address in self._names[host]]
        return system_resolver(host, port)


def dev_fetch(
    url: str,
    *,
    max_bytes: int = 1_000_000,
    timeout_s: float = 5.0,
    resolve: Resolver = system_resolver,
    verify: ssl.SSLContext | bool = True,
) -> FetchedBody:
    """A fetch with the development setting (plain http, loopback)."""
    return fetch_bounded(
        url,
        max_bytes=max_bytes,
        timeout_s=timeout_s,
        allow_http=True,
        resolve=resolve,
        verify=verify,
    )


# --- which destinations -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("https://127.0.0.1/voice.wav", "loopback"),
        ("https://10.0.0.1/voice.wav", "private"),
        ("https://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("https://[::1]/voice.wav", "loopback"),
        ("https://[::ffff:127.0.0.1]/voice.wav", "loopback, as IPv4 inside IPv6"),
    ],
)
def test_non_public_hosts_are_refused(url: str, kind: str) -> None:
    with pytest.raises(DestinationRefused, match="not public") as caught:
        fetch_bounded(url, max_bytes=1_000, timeout_s=5)
    assert kind in caught.value.message
    assert isinstance(caught.value, InvalidInput)


@pytest.mark.parametrize("address", ["10.1.2.3", "192.168.0.1", "fd00::1"])
def test_a_name_that_resolves_to_a_private_address_is_refused(address: str) -> None:
    resolve = Names({"voices.test": [address]})
    with pytest.raises(DestinationRefused, match="private") as caught:
        fetch_bounded("https://voices.test/a.wav", max_bytes=1_000, timeout_s=5, resolve=resolve)
    assert "voices.test" in caught.value.message
    assert resolve.calls == ["voices.test"]


def test_a_name_with_one_private_address_among_public_ones_is_refused() -> None:
    resolve = Names({"voices.test": ["93.184.215.14", "10.0.0.1"]})
    with pytest.raises(DestinationRefused, match="private"):
        fetch_bounded("https://voices.test/a.wav", max_bytes=1_000, timeout_s=5, resolve=resolve)


def test_plain_http_on_loopback_works_only_with_the_development_setting() -> None:
    with site({"/voice.wav": body()}) as served:
        with pytest.raises(DestinationRefused, match="only https"):
            fetch_bounded(served.url("/voice.wav"), max_bytes=1_000_000, timeout_s=5)
        assert served.paths == []
        fetched = dev_fetch(served.url("/voice.wav"))
    assert fetched == FetchedBody(body=AUDIO, host="127.0.0.1", content_type="audio/wav")


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]/",
        "http://[fd00::1]/",
    ],
)
def test_the_development_setting_still_refuses_other_non_public_hosts(url: str) -> None:
    with pytest.raises(DestinationRefused, match="not public"):
        dev_fetch(url)


@pytest.mark.parametrize("url", ["ftp://example.com/a.wav", "file:///etc/passwd", "not a url"])
def test_only_http_urls_are_fetched(url: str) -> None:
    with pytest.raises(DestinationRefused):
        dev_fetch(url)


def test_the_checked_address_is_contacted_with_the_urls_name() -> None:
    resolve = Names({"voices.test": ["127.0.0.1"]})
    with site({"/voice.wav": body()}) as served:
        fetched = dev_fetch(served.url("/voice.wav?sig=abc", host="voices.test"), resolve=resolve)
    assert fetched.body == AUDIO and fetched.host == "voices.test"
    assert resolve.calls == ["voices.test"]  # once: nothing resolved the name again
    assert served.hosts == [f"voices.test:{served.port}"]
    assert served.accept_encodings == ["identity"]


def test_https_is_fetched_by_the_urls_name(tmp_path: Path) -> None:
    server_tls, client_tls = certificate(tmp_path, "voices.test")
    resolve = Names({"voices.test": ["127.0.0.1"]})
    with site({"/voice.wav": body()}, tls=server_tls) as served:
        url = served.url("/voice.wav", host="voices.test", scheme="https")
        fetched = dev_fetch(url, resolve=resolve, verify=client_tls)
    assert fetched.body == AUDIO and fetched.host == "voices.test"
    assert served.sni_names == ["voices.test"]
    assert resolve.calls == ["voices.test"]


# --- redirects ------------------------------------------------------------------------------------
# Routes are looked up per request, so a test adds the ones that need the server's port.


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_a_redirect_is_followed_to_another_name(code: int) -> None:
    resolve = Names({"short.test": ["127.0.0.1"], "media.test": ["127.0.0.1"]})
    routes: dict[str, Route] = {"/voice.wav": body()}
    with site(routes) as served:
        routes["/s"] = redirect(served.url("/voice.wav", host="media.test"), code)
        fetched = dev_fetch(served.url("/s", host="short.test"), resolve=resolve)
    assert fetched.body == AUDIO and fetched.host == "media.test"
    assert served.paths == ["/s", "/voice.wav"]
    assert served.hosts == [f"short.test:{served.port}", f"media.test:{served.port}"]
    assert resolve.calls == ["short.test", "media.test"]


def test_relative_redirects_are_resolved_against_the_current_url() -> None:
    routes = {
        "/a/start": redirect("next?x=1"),
        "/a/next": redirect("/b/voice.wav"),
        "/b/voice.wav": body(),
    }
    with site(routes) as served:
        fetched = dev_fetch(served.url("/a/start"))
    assert fetched.body == AUDIO
    assert served.paths == ["/a/start", "/a/next", "/b/voice.wav"]


def chain(hops: int) -> dict[str, Route]:
    """/r{hops} redirects to /r{hops-1} ... /r0, which serves the audio."""
    routes: dict[str, Route] = {f"/r{n}": redirect(f"/r{n - 1}") for n in range(1, hops + 1)}
    routes["/r0"] = body()
    return routes


def test_three_redirects_are_followed() -> None:
    with site(chain(3)) as served:
        assert dev_fetch(served.url("/r3")).body == AUDIO
    assert served.paths == ["/r3", "/r2", "/r1", "/r0"]


def test_a_fourth_redirect_is_refused() -> None:
    with (
        site(chain(4)) as served,
        pytest.raises(SendFailed, match="more than 3 redirects"),
    ):
        dev_fetch(served.url("/r4"))
    assert served.paths == ["/r4", "/r3", "/r2", "/r1"]


@pytest.mark.parametrize(
    ("location", "kind"),
    [
        ("http://10.0.0.1/", "private"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://[::ffff:10.0.0.1]/", "private, as IPv4 inside IPv6"),
        ("http://[::ffff:127.0.0.1]/", "loopback, as IPv4 inside IPv6"),
        ("http://internal.test/voice.wav", "private"),
    ],
)
def test_a_redirect_to_a_non_public_address_is_refused(location: str, kind: str) -> None:
    resolve = Names({"internal.test": ["192.168.7.7"]})
    with (
        site({"/start": redirect(location)}) as served,
        pytest.raises(DestinationRefused, match="redirect 1 to host ") as caught,
    ):
        dev_fetch(served.url("/start"), resolve=resolve)
    assert caught.value.message.startswith("redirect 1 to host ") and kind in caught.value.message
    assert served.paths == ["/start"]


def test_a_redirect_to_another_scheme_is_refused() -> None:
    with (
        site({"/start": redirect("ftp://files.example.com/voice.wav")}) as served,
        pytest.raises(DestinationRefused, match="redirect 1: only http and https"),
    ):
        dev_fetch(served.url("/start"))


def test_a_redirect_without_a_location_is_refused() -> None:
    with (
        site({"/start": status(302)}) as served,
        pytest.raises(SendFailed, match=r"redirect \(302\) without a Location"),
    ):
        dev_fetch(served.url("/start"))


@pytest.mark.parametrize("code", [304, 404, 500])
def test_an_answer_that_is_not_a_success_is_refused_with_its_status(code: int) -> None:
    with (
        site({"/voice.wav": status(code)}) as served,
        pytest.raises(SendFailed, match=f"answered HTTP {code}$"),
    ):
        dev_fetch(served.url("/voice.wav"))


# --- size and time ---------------------------------------------------------------------------


@pytest.mark.parametrize("length", [True, False], ids=["declared", "undeclared"])
def test_a_body_at_the_limit_is_fetched_and_one_byte_more_is_refused(length: bool) -> None:
    with site({"/voice.wav": body(length=length)}) as served:
        assert dev_fetch(served.url("/voice.wav"), max_bytes=len(AUDIO)).body == AUDIO
        with pytest.raises(ResponseTooLarge, match=f"more than the {len(AUDIO) - 1} bytes allowed"):
            dev_fetch(served.url("/voice.wav"), max_bytes=len(AUDIO) - 1)


@pytest.mark.parametrize("declared", [None, HUGE], ids=["undeclared", "declared"])
def test_a_huge_body_is_refused_and_the_connection_closed(declared: int | None) -> None:
    with (
        site({"/voice.wav": endless(declared=declared)}) as served,
        pytest.raises(ResponseTooLarge),
    ):
        dev_fetch(served.url("/voice.wav"), max_bytes=100_000)
    assert served.closed_early.wait(timeout=30)  # the server could not send it all


def test_a_declared_length_over_the_limit_is_refused_before_reading_the_body() -> None:
    # The body never comes: reading it would end in a read timeout, not this refusal.
    with (
        site({"/voice.wav": stall(declared=10**9)}) as served,
        pytest.raises(ResponseTooLarge, match="declares 1000000000 bytes"),
    ):
        dev_fetch(served.url("/voice.wav"), max_bytes=100_000)
    assert served.closed_early.wait(timeout=30)


def test_a_body_that_stops_coming_times_out() -> None:
    with (
        site({"/voice.wav": stall(declared=None)}) as served,
        pytest.raises(SendFailed, match="ReadTimeout"),
    ):
        dev_fetch(served.url("/voice.wav"), timeout_s=0.3)
    assert served.closed_early.wait(timeout=30)


@pytest.mark.parametrize("in_headers", [False, True], ids=["body", "headers"])
def test_a_trickle_is_cut_at_the_deadline_of_the_whole_fetch(in_headers: bool) -> None:
    with (
        site({"/voice.wav": trickle(in_headers=in_headers)}) as served,
        pytest.raises(SendFailed, match=r"did not finish within 1\.5 s"),
    ):
        dev_fetch(served.url("/voice.wav"), timeout_s=0.5)
    assert served.closed_early.wait(timeout=30)


def test_a_trickle_over_tls_is_cut_at_the_deadline(tmp_path: Path) -> None:
    server_tls, client_tls = certificate(tmp_path, "voices.test")
    resolve = Names({"voices.test": ["127.0.0.1"]})
    with site({"/voice.wav": trickle(in_headers=True)}, tls=server_tls) as served:
        url = served.url("/voice.wav", host="voices.test", scheme="https")
        with pytest.raises(SendFailed, match=r"did not finish within 1\.5 s"):
            dev_fetch(url, timeout_s=0.5, resolve=resolve, verify=client_tls)
    assert served.closed_early.wait(timeout=30)


def test_a_compressed_body_is_refused() -> None:
    with (
        site({"/voice.wav": body(headers={"Content-Encoding": "gzip"})}) as served,
        pytest.raises(SendFailed, match="compressed"),
    ):
        dev_fetch(served.url("/voice.wav"))


# --- what messages show ----------------------------------------------------------------------

SECRETS = ("secret-path", "tok-123", "pw-456")


def test_messages_name_the_host_but_never_the_path_query_or_credentials() -> None:
    private = Names({"inside.test": ["10.2.3.4"]})
    routes: dict[str, Route] = {
        "/secret-path/redirect": redirect("http://inside.test/secret-path?X-Amz-Signature=tok-123")
    }
    messages: list[str] = []
    with site(routes) as served:
        signed = "/secret-path/voice.wav?X-Amz-Signature=tok-123"
        cases: list[Callable[[], object]] = [
            lambda: fetch_bounded(
                "https://user:pw-456@10.0.0.1/secret-path?token=tok-123", max_bytes=1, timeout_s=1
            ),
            lambda: fetch_bounded(
                f"http://user:pw-456@media.test{signed}", max_bytes=1, timeout_s=1
            ),
            lambda: dev_fetch(served.url(signed, host="user:pw-456@127.0.0.1")),
            lambda: dev_fetch(served.url("/secret-path/redirect?t=tok-123"), resolve=private),
        ]
        for case in cases:
            with pytest.raises(InvalidInput) as caught:
                case()
            messages.append(str(caught.value))
    assert len(served.paths) == 2  # the 404 and the redirect
    for message in messages:
        assert not any(secret in message for secret in SECRETS), message
    assert "127.0.0.1" in messages[2] and "inside.test" in messages[3]
