"""Local storage: HMAC-signed, expiring URLs that refuse tampering, expiry and path tricks."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.errors import InvalidInput, NotFound, StorageUnavailable
from shared.storage.base import object_key
from shared.storage.local import LocalAudioStore, UrlRefused, load_or_create_secret


@pytest.fixture
def store(tmp_path: Path) -> LocalAudioStore:
    return LocalAudioStore(tmp_path / "audio", base_url="http://127.0.0.1:9/", secret=b"s" * 32)


def signed_parts(store: LocalAudioStore, key: str, ttl_s: int = 60) -> tuple[str, str, str]:
    url = store.sign(key, ttl_s).url
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    return parts.path.removeprefix("/audio/"), query["expires"][0], query["sig"][0]


def test_signed_url_opens_the_stored_file(store: LocalAudioStore) -> None:
    key = object_key("tenant1", "piper", "abc", "mp3")
    store.put(key, b"ID3data", "audio/mpeg")
    path = store.open_signed(*signed_parts(store, key))
    assert path.read_bytes() == b"ID3data"
    assert store.content_type(key) == "audio/mpeg"


def test_expiry_is_in_the_url_and_enforced(store: LocalAudioStore) -> None:
    key = object_key("tenant1", "piper", "abc", "wav")
    store.put(key, b"RIFF", "audio/wav")
    signed = store.sign(key, 120)
    assert abs(signed.expires_at.timestamp() - (time.time() + 120)) < 2
    path, expires, sig = signed_parts(store, key, ttl_s=120)
    with pytest.raises(UrlRefused, match="expired"):
        store.open_signed(path, expires, sig, now=int(expires) + 1)


@pytest.mark.parametrize("part", ["key", "expires", "sig"])
def test_tampered_url_is_refused(store: LocalAudioStore, part: str) -> None:
    key = object_key("tenant1", "piper", "abc", "wav")
    other = object_key("tenant2", "piper", "abc", "wav")
    store.put(key, b"RIFF", "audio/wav")
    store.put(other, b"RIFF", "audio/wav")
    path, expires, sig = signed_parts(store, key)
    if part == "key":
        path = other  # another tenant's object with this tenant's signature
    elif part == "expires":
        expires = str(int(expires) + 3600)
    else:
        sig = ("0" if sig[0] != "0" else "1") + sig[1:]
    with pytest.raises(UrlRefused):
        store.open_signed(path, expires, sig)


@pytest.mark.parametrize("key", ["../secret", "tts/../../etc/passwd", "tts/a/b/c", "/etc/passwd"])
def test_keys_outside_the_layout_are_refused(store: LocalAudioStore, key: str) -> None:
    # A correct signature for the bad key: only the layout check can refuse it.
    signature = store._signature(key, 9999999999)
    with pytest.raises(UrlRefused, match="malformed"):
        store.open_signed(key, "9999999999", signature)
    with pytest.raises(InvalidInput):
        store.put(key, b"x", "audio/wav")


def test_signed_url_for_a_missing_object_is_not_found(store: LocalAudioStore) -> None:
    key = object_key("tenant1", "piper", "gone", "wav")
    with pytest.raises(NotFound):
        store.open_signed(*signed_parts(store, key))


def test_signing_secret_is_created_once_with_private_permissions(tmp_path: Path) -> None:
    path = tmp_path / "data" / "url_signing.key"
    first = load_or_create_secret(path)
    assert load_or_create_secret(path) == first and len(first) == 32
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("expires", ["", "²", "1" * 5000, "-5", "12.5"])
def test_malformed_expiry_is_refused_not_a_server_error(
    store: LocalAudioStore, expires: str
) -> None:
    key = object_key("tenant1", "piper", "abc", "wav")
    with pytest.raises(UrlRefused, match="malformed"):
        store.open_signed(key, expires, "0" * 64)


def test_a_file_where_a_folder_must_go_is_storage_unavailable(
    store: LocalAudioStore, tmp_path: Path
) -> None:
    """The cleanup of the partial file fails the same way; the caller must still learn that
    storage is unavailable (and deliver inline), not meet an unexpected OSError."""
    key = object_key("tenant1", "piper", "abc", "wav")
    folder = tmp_path / "audio" / Path(key).parent
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_bytes(b"not a folder")
    with pytest.raises(StorageUnavailable):
        store.put(key, b"RIFF", "audio/wav")
