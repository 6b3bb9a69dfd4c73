"""Embedded storage: audio files under a local directory, served by the local web app through
HMAC-SHA256 signed, expiring URLs (the same shape of guarantee as an S3 presigned GET).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlencode

from shared.audio.formats import FORMAT_SPECS
from shared.errors import InvalidInput, NotFound, StorageUnavailable
from shared.storage.base import SignedUrl, check_url_ttl, is_valid_key

AUDIO_ROUTE = "/audio/"
_EXPIRES = re.compile(r"[0-9]{1,12}")  # epoch seconds; str.isdigit() would let "²" through
_CONTENT_TYPES = {spec.extension: spec.content_type for spec in FORMAT_SPECS.values()}


class UrlRefused(Exception):
    """A signed URL that is malformed, tampered with or expired."""


class LocalAudioStore:
    def __init__(self, root: Path, *, base_url: str, secret: bytes) -> None:
        if len(secret) < 16:
            raise InvalidInput("the URL signing secret must be at least 16 bytes")
        self._root = root
        self._base_url = base_url.rstrip("/")
        self._secret = secret

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial.write_bytes(data)
            os.replace(partial, path)  # readers never see half a file
        except OSError as exc:
            # The cleanup fails the same way when the folder itself cannot exist (a file in
            # its place): the job must still see StorageUnavailable and fall back to inline.
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
            raise StorageUnavailable("could not write audio to local storage") from exc

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageUnavailable("could not read audio from local storage") from exc

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageUnavailable("could not delete an object from local storage") from exc
        with contextlib.suppress(OSError):  # a deleted voice's folder goes once it is empty
            path.parent.rmdir()

    def sign(self, key: str, ttl_s: int) -> SignedUrl:
        self._path(key)  # validates the key
        check_url_ttl(ttl_s)
        expires = int(time.time()) + ttl_s
        query = urlencode({"expires": expires, "sig": self._signature(key, expires)})
        return SignedUrl(
            url=f"{self._base_url}{AUDIO_ROUTE}{quote(key)}?{query}",
            expires_at=datetime.fromtimestamp(expires, UTC),
        )

    def open_signed(self, key: str, expires: str, sig: str, *, now: float | None = None) -> Path:
        """The file behind a signed URL; raise ``UrlRefused`` (403) or ``NotFound`` (404)."""
        if not is_valid_key(key) or _EXPIRES.fullmatch(expires) is None:
            raise UrlRefused("malformed URL")
        expected = self._signature(key, int(expires))
        if not hmac.compare_digest(expected.encode(), sig.encode()):
            raise UrlRefused("bad signature")
        if int(expires) < (time.time() if now is None else now):
            raise UrlRefused("URL expired")
        path = self._path(key)
        if not path.is_file():
            raise NotFound("no audio at this URL")
        return path

    @staticmethod
    def content_type(key: str) -> str:
        return _CONTENT_TYPES.get(key.rsplit(".", 1)[-1], "application/octet-stream")

    def _signature(self, key: str, expires: int) -> str:
        message = f"{key}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def _path(self, key: str) -> Path:
        if not is_valid_key(key):
            raise InvalidInput("invalid storage key")
        return self._root / key


def load_or_create_secret(path: Path) -> bytes:
    """A random signing key kept beside the data, so URLs survive restarts and are shared by the
    processes (web app, CLI, RunPod local run) that use the same data directory."""
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole under another name, then linked into place: a process starting at the same
    # moment either wins the link or reads the winner's complete key, never a half-written one.
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_bytes(32).hex())
    try:
        os.link(partial, path)
    except FileExistsError:
        pass
    finally:
        partial.unlink()
    return bytes.fromhex(path.read_text().strip())
