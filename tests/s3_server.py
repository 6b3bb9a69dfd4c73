"""S3 for tests: moto's server on 127.0.0.1, speaking real HTTP to a real boto3 client.

A pytest plugin (``pytest_plugins = ["tests.s3_server"]``, or ``-p tests.s3_server``). moto checks
neither presigned-URL signatures nor expiry (an expired or tampered URL still gets 200), so tests
check a URL's parameters and never claim that moto refused an old URL.
"""

from __future__ import annotations

import functools
import socket
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.client import BaseClient

from shared.storage.s3 import S3AudioStore, connect_s3

if TYPE_CHECKING:
    from moto.server import ThreadedMotoServer

REGION = "us-east-1"


@functools.cache
def _session() -> boto3.session.Session:
    """One boto3 session for every test client: a new one reloads the S3 model (~0.2 s each)."""
    return boto3.session.Session()


class MotoS3:
    """A moto server that can go down and come back on the same port, buckets intact (moto keeps
    its state in-process, so a restarted server sees what the stopped one stored)."""

    def __init__(self) -> None:
        self._server: ThreadedMotoServer | None = None
        self._port = 0  # 0 on first start: the OS picks a free port, which is then kept

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> None:
        # Imported here: moto takes ~0.8 s to import, a cost only runs that use S3 should pay.
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self._port, verbose=False)
        server.start()
        self._port = server.get_host_and_port()[1]
        self._server = server

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.stop()
        # moto's stop() ends the serve loop but leaves the socket listening, so clients would
        # connect and hang until their read timeout; closing it makes "down" a prompt refusal.
        server._server.server_close()  # type: ignore[union-attr]


def s3_client_for(endpoint_url: str, *, max_attempts: int = 1) -> BaseClient:
    """A client as production builds it, except one HTTP attempt per call by default: botocore's
    own retries sleep up to a second, and the store's retries are what tests count."""
    return connect_s3(
        endpoint_url=endpoint_url,
        region=REGION,
        access_key_id="test",
        secret_access_key="test",
        path_style=True,
        max_attempts=max_attempts,
        session=_session(),
    )


def unused_port_url() -> str:
    """An endpoint on 127.0.0.1 that refuses connections: a port just bound, then released."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _no_sleep(_: float) -> None:
    """Retry pauses of stores whose failures are the point, so the suite does not wait on them."""


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoS3]:
    server = MotoS3()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_client(s3_server: MotoS3) -> BaseClient:
    """A fresh client per test, so event hooks a test registers do not outlive it."""
    return s3_client_for(s3_server.endpoint_url)


@pytest.fixture
def s3_bucket(s3_client: BaseClient) -> Iterator[str]:
    """A new, empty bucket, emptied and deleted afterwards."""
    bucket = f"tts-test-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=bucket)
    yield bucket
    listed = s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])
    for item in listed:
        s3_client.delete_object(Bucket=bucket, Key=item["Key"])
    s3_client.delete_bucket(Bucket=bucket)


@pytest.fixture
def s3_store(s3_client: BaseClient, s3_bucket: str) -> S3AudioStore:
    return S3AudioStore(s3_client, bucket=s3_bucket)


@pytest.fixture
def dead_s3_store() -> S3AudioStore:
    """A store whose endpoint refuses every connection: storage down from the start."""
    return S3AudioStore(s3_client_for(unused_port_url()), bucket="tts-unreachable", sleep=_no_sleep)


@pytest.fixture
def s3_outage() -> Iterator[MotoS3]:
    """A server of this test's own, to stop and start again (the shared one must stay up); point
    a store at it with ``S3AudioStore(s3_client_for(s3_outage.endpoint_url), bucket=...)``."""
    server = MotoS3()
    server.start()
    yield server
    server.stop()
