"""S3-compatible storage: AWS S3, Cloudflare R2, MinIO and Supabase Storage's S3 endpoint.

The boto3 client is injected (``connect_s3`` builds one from settings values), so tests hand in a
client pointed at a local server. botocore's errors are translated here, once, into
``StorageUnavailable`` chained ``from`` the cause; a missing object is not an error.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from shared.errors import InternalError, InvalidInput, StorageUnavailable
from shared.storage.base import SignedUrl, check_url_ttl, is_valid_key

# Path segments of plain characters, each ending in "/"; "." and ".." segments are refused so a
# prefix cannot climb out of itself on stores that normalise keys as paths.
_PREFIX_PATTERN = re.compile(r"(?:(?!\.{1,2}/)[A-Za-z0-9._-]+/)*")

# S3 error codes that say "try again shortly" although some arrive with a 4xx status.
_TRANSIENT_CODES = frozenset(
    {"RequestTimeout", "SlowDown", "Throttling", "ThrottlingException", "InternalError"}
)

# An upload is retried after these pauses (3 attempts in all): long enough to ride out a dropped
# connection or a throttle, short enough that a job does not sit on a dead bucket.
DEFAULT_PUT_BACKOFF_S: tuple[float, ...] = (0.1, 0.3)


def connect_s3(
    *,
    endpoint_url: str | None,
    region: str,
    access_key_id: str | None,
    secret_access_key: str | None,
    path_style: bool,
    connect_timeout_s: float = 2,
    read_timeout_s: float = 10,
    max_attempts: int = 1,
    session: boto3.session.Session | None = None,
) -> BaseClient:
    """An S3 client for any S3-compatible endpoint.

    ``endpoint_url`` None means AWS. R2: ``https://<account>.r2.cloudflarestorage.com``, region
    ``auto``. MinIO: its URL, path-style. Supabase: ``https://<project>.supabase.co/storage/v1/s3``,
    path-style, the project's region. Keys None fall back to boto3's own chain (e.g. an IAM role).
    ``max_attempts`` counts every HTTP attempt, the first included; 1 by default, because the
    store retries uploads itself and two layers of retries would multiply. ``session``: reuse one to
    skip reloading the S3 service model (~0.2 s a client), e.g. in tests that build many.
    """
    config = Config(
        region_name=region,
        signature_version="s3v4",  # the only scheme R2, MinIO and Supabase all accept
        # "virtual" rather than "auto": auto falls back to path-style for any custom endpoint,
        # which would silently ignore path_style=False on R2.
        s3={"addressing_style": "path" if path_style else "virtual"},
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
        # retries["max_attempts"] would count retries only (N + 1 requests); total_max_attempts
        # counts requests, which is what the caller means.
        retries={"total_max_attempts": max_attempts, "mode": "standard"},
        # botocore >= 1.36 adds x-amz-checksum-crc32 / x-amz-sdk-checksum-algorithm to every
        # PutObject by default, which R2, MinIO and other S3-compatibles reject or mishandle.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    # A session of our own: boto3's default session is shared module state and not thread-safe.
    session = session or boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        config=config,
    )


class S3AudioStore:
    """Audio objects in one bucket under ``key_prefix``, handed out as SigV4 presigned GET URLs.

    Thread-safe as long as the client is (botocore clients are), so one store serves every job.
    """

    def __init__(
        self,
        client: BaseClient,
        *,
        bucket: str,
        key_prefix: str = "",
        cache_control: str = "private, max-age=86400",
        put_backoff_s: Sequence[float] = DEFAULT_PUT_BACKOFF_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not bucket:
            raise InvalidInput("an S3 bucket name is required")
        if _PREFIX_PATTERN.fullmatch(key_prefix) is None:
            raise InvalidInput(
                f"S3 key prefix {key_prefix!r} must be empty or path segments ending in '/'"
            )
        self._client = client
        self._bucket = bucket
        self._prefix = key_prefix
        self._cache_control = cache_control
        self._put_backoff_s = tuple(put_backoff_s)
        self._sleep = sleep

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Upload, retrying transient failures; raise ``StorageUnavailable`` when they persist."""
        name = self._object_name(key)
        pauses = (*self._put_backoff_s, None)  # None: the last attempt, nothing to wait for
        for pause in pauses:
            try:
                self._client.put_object(
                    Bucket=self._bucket,
                    Key=name,
                    Body=data,
                    ContentType=content_type,
                    CacheControl=self._cache_control,
                )
                return
            except (BotoCoreError, ClientError) as exc:
                if pause is None or not _is_transient(exc):
                    raise _unavailable("upload audio to", exc) from exc
            self._sleep(pause)

    def get(self, key: str) -> bytes | None:
        name = self._object_name(key)
        try:
            response = self._client.get_object(Bucket=self._bucket, Key=name)
            return response["Body"].read()
        except ClientError as exc:
            # Only a missing key is "absent"; NoSuchBucket is a misconfiguration, not a miss.
            if _code(exc) == "NoSuchKey":
                return None
            raise _unavailable("read audio from", exc) from exc
        except BotoCoreError as exc:
            raise _unavailable("read audio from", exc) from exc

    def delete(self, key: str) -> None:
        """S3 answers 204 for a missing key too, so a retried delete succeeds."""
        name = self._object_name(key)
        try:
            self._client.delete_object(Bucket=self._bucket, Key=name)
        except (BotoCoreError, ClientError) as exc:
            raise _unavailable("delete an object from", exc) from exc

    def sign(self, key: str, ttl_s: int) -> SignedUrl:
        name = self._object_name(key)
        check_url_ttl(ttl_s)
        try:
            url = self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self._bucket, "Key": name}, ExpiresIn=ttl_s
            )
        except (BotoCoreError, ClientError) as exc:  # e.g. no credentials to sign with
            raise _unavailable("sign a URL for", exc) from exc
        return SignedUrl(url=url, expires_at=_expiry_of(url))

    def _object_name(self, key: str) -> str:
        if not is_valid_key(key):
            raise InvalidInput("invalid storage key")
        return f"{self._prefix}{key}"


def _expiry_of(url: str) -> datetime:
    """When a SigV4 presigned URL dies: its own signing time plus its lifetime, so the answer
    comes from the clock that signed it rather than a second reading of ours."""
    query = parse_qs(urlsplit(url).query)
    try:
        signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")
        lifetime_s = int(query["X-Amz-Expires"][0])
    except (KeyError, ValueError) as exc:
        raise InternalError("the S3 client did not produce a SigV4 presigned URL") from exc
    return signed_at.replace(tzinfo=UTC) + timedelta(seconds=lifetime_s)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _is_transient(exc: BotoCoreError | ClientError) -> bool:
    if isinstance(exc, ClientError):
        status = _status(exc)
        return status >= 500 or status == 429 or _code(exc) in _TRANSIENT_CODES
    # Refused, reset or timed-out connections and cut-off responses may succeed when repeated;
    # other botocore errors (no credentials, bad parameters) will not.
    return isinstance(exc, BotoConnectionError | HTTPClientError)


def _unavailable(action: str, exc: BotoCoreError | ClientError) -> StorageUnavailable:
    """The one translation of botocore errors: say what failed without leaking bucket names."""
    if isinstance(exc, ClientError):
        reason = f"storage answered {_code(exc) or _status(exc)}"
    elif isinstance(exc, BotoConnectionError | HTTPClientError):
        reason = "storage is unreachable"
    else:
        reason = type(exc).__name__
    return StorageUnavailable(f"could not {action} storage: {reason}")
