"""S3 storage against moto's server over real HTTP: uploads, presigned URLs, failures, retries.

moto accepts expired and tampered presigned URLs alike, so nothing here claims that a URL stops
working; the expiry tests read the lifetime that the URL itself carries.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from botocore.awsrequest import AWSResponse
from botocore.client import BaseClient
from botocore.exceptions import EndpointConnectionError

from shared.errors import InvalidInput, StorageUnavailable
from shared.storage.base import object_key
from shared.storage.s3 import S3AudioStore, connect_s3
from tests.s3_server import MotoS3, s3_client_for, unused_port_url

KEY = object_key("tenant1", "piper", "abc123", "mp3")


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    # trust_env=False: a proxy from the environment must not sit between us and 127.0.0.1.
    with httpx.Client(trust_env=False, timeout=10) as client:
        yield client


def count_sends(client: BaseClient, operation: str) -> list[str]:
    """Record each HTTP request the client sends for ``operation`` (retries included)."""
    sent: list[str] = []
    client.meta.events.register(
        f"before-send.s3.{operation}", lambda request, **_: sent.append(request.url)
    )
    return sent


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


def fail_first(
    client: BaseClient, operation: str, times: int, status: int, code: str | None
) -> None:
    """Answer the first ``times`` requests for ``operation`` with an S3 error instead of sending
    them (a botocore before-send hook may return the response); later requests go through.
    ``code`` None: no error body, as S3 answers a HEAD."""
    left = [times]
    body = b"" if code is None else f"<Error><Code>{code}</Code></Error>".encode()

    def answer(request: Any, **_: Any) -> AWSResponse | None:
        if left[0] == 0:
            return None
        left[0] -= 1
        return AWSResponse(request.url, status, {}, _Body(body))

    client.meta.events.register_first(f"before-send.s3.{operation}", answer)


def recording_sleep() -> tuple[list[float], Callable[[float], None]]:
    pauses: list[float] = []
    return pauses, pauses.append


# --- uploads and presigned URLs ---------------------------------------------------------------


def test_presigned_url_serves_the_uploaded_bytes_with_their_content_type(
    s3_store: S3AudioStore, http: httpx.Client
) -> None:
    data = b"ID3" + bytes(range(256)) * 100
    s3_store.put(KEY, data, "audio/mpeg")
    response = http.get(s3_store.sign(KEY, 600).url)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "audio/mpeg"


def test_upload_sets_content_type_and_cache_control(s3_client: BaseClient, s3_bucket: str) -> None:
    store = S3AudioStore(s3_client, bucket=s3_bucket, cache_control="private, max-age=600")
    store.put(KEY, b"OggS", "audio/ogg")
    head = s3_client.head_object(Bucket=s3_bucket, Key=KEY)
    assert head["ContentType"] == "audio/ogg"
    assert head["CacheControl"] == "private, max-age=600"


def test_key_prefix_is_prepended_to_every_object(
    s3_client: BaseClient, s3_bucket: str, http: httpx.Client
) -> None:
    store = S3AudioStore(s3_client, bucket=s3_bucket, key_prefix="prod/eu/")
    store.put(KEY, b"RIFF", "audio/wav")
    listed = s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]
    assert [item["Key"] for item in listed] == [f"prod/eu/{KEY}"]
    assert store.get(KEY) == b"RIFF"
    url = store.sign(KEY, 600).url
    assert urlsplit(url).path == f"/{s3_bucket}/prod/eu/{KEY}"
    assert http.get(url).content == b"RIFF"
    # The same key without the prefix is a different, absent object.
    assert S3AudioStore(s3_client, bucket=s3_bucket).get(KEY) is None


@pytest.mark.parametrize(
    "prefix", ["prod", "/prod/", "../prod/", "prod/../", "./", "prod//", "prod/\n"]
)
def test_key_prefix_that_is_not_plain_segments_is_refused(
    s3_client: BaseClient, prefix: str
) -> None:
    with pytest.raises(InvalidInput, match="prefix"):
        S3AudioStore(s3_client, bucket="tts-audio", key_prefix=prefix)


# moto does not enforce presigned-URL expiry, so these tests check what the URL carries.
@pytest.mark.parametrize("ttl_s", [60, 900, 7 * 24 * 3600])
def test_expires_at_is_the_urls_signing_time_plus_the_requested_ttl(
    s3_store: S3AudioStore, ttl_s: int
) -> None:
    s3_store.put(KEY, b"x", "audio/mpeg")
    before = math.floor(time.time())
    signed = s3_store.sign(KEY, ttl_s)
    after = math.ceil(time.time())
    query = parse_qs(urlsplit(signed.url).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == [str(ttl_s)]
    signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert before <= signed_at.timestamp() <= after
    assert signed.expires_at == signed_at + timedelta(seconds=ttl_s)


def test_presigned_url_names_the_region_and_keeps_the_endpoint_path() -> None:
    # Supabase Storage's S3 endpoint lives under a path; path-style must keep it. Signing is
    # offline, so no server is needed.
    client = connect_s3(
        endpoint_url="https://project.supabase.co/storage/v1/s3",
        region="eu-central-1",
        access_key_id="key-id",
        secret_access_key="secret",
        path_style=True,
    )
    url = S3AudioStore(client, bucket="audio").sign(KEY, 600).url
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == ("https", "project.supabase.co")
    assert parts.path == f"/storage/v1/s3/audio/{KEY}"
    assert parse_qs(parts.query)["X-Amz-Credential"][0].endswith("/eu-central-1/s3/aws4_request")


def test_virtual_hosted_style_puts_the_bucket_in_the_host_when_path_style_is_off() -> None:
    client = connect_s3(
        endpoint_url="https://account.r2.cloudflarestorage.com",
        region="auto",
        access_key_id="key-id",
        secret_access_key="secret",
        path_style=False,
    )
    parts = urlsplit(S3AudioStore(client, bucket="audio").sign(KEY, 600).url)
    assert (parts.netloc, parts.path) == ("audio.account.r2.cloudflarestorage.com", f"/{KEY}")


def test_uploads_carry_no_optional_checksum_headers(
    s3_client: BaseClient, s3_store: S3AudioStore
) -> None:
    # botocore >= 1.36 adds these by default; R2, MinIO and other S3-compatibles reject them.
    headers: list[list[str]] = []
    s3_client.meta.events.register(
        "before-send.s3.PutObject",
        lambda request, **_: headers.append([name.lower() for name in request.headers]),
    )
    s3_store.put(KEY, b"x", "audio/mpeg")
    assert len(headers) == 1
    assert [name for name in headers[0] if "checksum" in name] == []


# --- failures ---------------------------------------------------------------------------------


def test_upload_to_unreachable_storage_is_retried_then_fails_as_unavailable() -> None:
    client = s3_client_for(unused_port_url())
    pauses, sleep = recording_sleep()
    store = S3AudioStore(client, bucket="tts-audio", sleep=sleep)
    sends = count_sends(client, "PutObject")
    with pytest.raises(StorageUnavailable, match="unreachable") as caught:
        store.put(KEY, b"x", "audio/mpeg")
    assert len(sends) == 3
    assert pauses == [0.1, 0.3]
    assert isinstance(caught.value.__cause__, EndpointConnectionError)


def test_reads_from_unreachable_storage_fail_as_unavailable(dead_s3_store: S3AudioStore) -> None:
    with pytest.raises(StorageUnavailable):
        dead_s3_store.get(KEY)
    with pytest.raises(StorageUnavailable):
        dead_s3_store.put(KEY, b"x", "audio/mpeg")


@pytest.mark.parametrize(
    ("status", "code"),
    [(503, "SlowDown"), (502, None), (500, "InternalError"), (400, "RequestTimeout")],
)
def test_upload_succeeds_when_a_transient_failure_clears(
    s3_client: BaseClient, s3_bucket: str, status: int, code: str | None
) -> None:
    pauses, sleep = recording_sleep()
    store = S3AudioStore(s3_client, bucket=s3_bucket, sleep=sleep)
    fail_first(s3_client, "PutObject", times=2, status=status, code=code)
    sends = count_sends(s3_client, "PutObject")
    store.put(KEY, b"made it", "audio/mpeg")
    assert len(sends) == 3
    assert pauses == [0.1, 0.3]
    assert store.get(KEY) == b"made it"


def test_upload_refused_by_the_server_is_not_retried(s3_client: BaseClient) -> None:
    pauses, sleep = recording_sleep()
    store = S3AudioStore(s3_client, bucket="tts-no-such-bucket", sleep=sleep)
    sends = count_sends(s3_client, "PutObject")
    with pytest.raises(StorageUnavailable, match="NoSuchBucket"):
        store.put(KEY, b"x", "audio/mpeg")
    assert len(sends) == 1
    assert pauses == []


def test_server_error_on_a_read_is_unavailable_not_absent(
    s3_client: BaseClient, s3_store: S3AudioStore
) -> None:
    s3_store.put(KEY, b"x", "audio/mpeg")
    fail_first(s3_client, "GetObject", times=1, status=500, code=None)
    with pytest.raises(StorageUnavailable, match="500"):
        s3_store.get(KEY)
    fail_first(s3_client, "GetObject", times=1, status=503, code="ServiceUnavailable")
    with pytest.raises(StorageUnavailable, match="ServiceUnavailable"):
        s3_store.get(KEY)


def test_missing_bucket_is_a_storage_failure_not_a_cache_miss(s3_client: BaseClient) -> None:
    store = S3AudioStore(s3_client, bucket="tts-no-such-bucket")
    with pytest.raises(StorageUnavailable, match="NoSuchBucket"):
        store.get(KEY)


def test_storage_that_comes_back_serves_what_it_stored(s3_outage: MotoS3) -> None:
    client = s3_client_for(s3_outage.endpoint_url)
    client.create_bucket(Bucket="tts-outage")
    store = S3AudioStore(client, bucket="tts-outage", sleep=lambda _: None)
    store.put(KEY, b"kept", "audio/mpeg")

    s3_outage.stop()
    with pytest.raises(StorageUnavailable):
        store.get(KEY)
    with pytest.raises(StorageUnavailable):
        store.put(KEY, b"new", "audio/mpeg")

    s3_outage.start()
    assert store.get(KEY) == b"kept"


def test_client_retries_count_every_attempt_including_the_first(
    s3_server: MotoS3, s3_bucket: str
) -> None:
    # botocore's retries["max_attempts"] counts retries only (3 would send 4 requests);
    # connect_s3's max_attempts means requests in all.
    client = s3_client_for(s3_server.endpoint_url, max_attempts=2)
    fail_first(client, "GetObject", times=5, status=500, code=None)
    sends = count_sends(client, "GetObject")
    with pytest.raises(StorageUnavailable):
        S3AudioStore(client, bucket=s3_bucket).get(KEY)
    assert len(sends) == 2
