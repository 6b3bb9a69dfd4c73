"""The AudioStore contract, run against every store: local disk and an S3 bucket (moto)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from shared.errors import InvalidInput
from shared.storage.base import (
    MAX_URL_TTL_S,
    MIN_URL_TTL_S,
    AudioStore,
    is_valid_key,
    object_key,
    voice_object_key,
)
from shared.storage.local import LocalAudioStore

KEY = object_key("tenant1", "piper", "abc123", "mp3")

BAD_KEYS = [
    "",
    "../secret",
    "/etc/passwd",
    "tts/../../etc/passwd",
    "tts/tenant1/piper/../../tenant2/piper/abc.mp3",
    "tts/tenant1/piper/abc.mp3/../../../tenant2/piper/abc.mp3",
    "tts/a/b/c",
    "tts/tenant1/piper/a b.mp3",
    "tts/tenant1/piper/abc.mp3\n",
    "prod/tts/tenant1/piper/abc.mp3",  # a store adds its own prefix; callers never do
    "voices/tenant1/v_0123456789abcdef/../latents.npz",
    "voices/tenant1/not-a-voice-id/latents.npz",
    "voices/tenant1/v_0123456789abcdef/Latents.npz",
    "voices/tenant1/v_0123456789abcdef.npz",
]
VOICE_KEY = voice_object_key("tenant1", "v_0123456789abcdef", "latents", "npz")


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> AudioStore:
    if request.param == "local":
        return LocalAudioStore(tmp_path / "audio", base_url="http://127.0.0.1:9", secret=b"s" * 32)
    return request.getfixturevalue("s3_store")


def test_stored_audio_reads_back_identical(store: AudioStore) -> None:
    data = bytes(range(256)) * 64
    store.put(KEY, data, "audio/mpeg")
    assert store.get(KEY) == data


def test_absent_object_is_reported_absent_not_as_an_error(store: AudioStore) -> None:
    assert store.get(KEY) is None


def test_put_replaces_an_existing_object(store: AudioStore) -> None:
    store.put(KEY, b"first", "audio/mpeg")
    store.put(KEY, b"second", "audio/mpeg")
    assert store.get(KEY) == b"second"


def test_objects_of_other_tenants_are_separate(store: AudioStore) -> None:
    other = object_key("tenant2", "piper", "abc123", "mp3")
    store.put(KEY, b"mine", "audio/mpeg")
    assert store.get(other) is None


@pytest.mark.parametrize("key", BAD_KEYS)
def test_keys_outside_the_layout_are_refused_by_every_method(store: AudioStore, key: str) -> None:
    with pytest.raises(InvalidInput):
        store.put(key, b"x", "audio/mpeg")
    with pytest.raises(InvalidInput):
        store.get(key)
    with pytest.raises(InvalidInput):
        store.sign(key, 600)
    with pytest.raises(InvalidInput):
        store.delete(key)


def test_delete_removes_the_object_and_a_second_delete_is_no_error(store: AudioStore) -> None:
    store.put(KEY, b"x", "audio/mpeg")
    store.put(VOICE_KEY, b"latents", "application/octet-stream")
    store.delete(VOICE_KEY)
    assert store.get(VOICE_KEY) is None
    store.delete(VOICE_KEY)
    assert store.get(KEY) == b"x"  # only the one object went


def test_voice_objects_live_under_their_tenant_and_voice(store: AudioStore) -> None:
    store.put(VOICE_KEY, b"mine", "application/octet-stream")
    assert store.get(VOICE_KEY) == b"mine"
    assert store.get(voice_object_key("tenant2", "v_0123456789abcdef", "latents", "npz")) is None


@pytest.mark.parametrize("ttl_s", [MIN_URL_TTL_S - 1, MAX_URL_TTL_S + 1, 0, -60, True, 600.5])
def test_url_lifetime_outside_a_minute_to_seven_days_is_refused(
    store: AudioStore, ttl_s: int
) -> None:
    store.put(KEY, b"x", "audio/mpeg")
    with pytest.raises(InvalidInput, match="lifetime"):
        store.sign(KEY, ttl_s)


@pytest.mark.parametrize("ttl_s", [MIN_URL_TTL_S, 900, MAX_URL_TTL_S])
def test_signed_url_expires_ttl_seconds_after_signing(store: AudioStore, ttl_s: int) -> None:
    store.put(KEY, b"x", "audio/mpeg")
    # Both stores stamp whole seconds, so the signing time lies between these two readings.
    before = math.floor(time.time())
    signed = store.sign(KEY, ttl_s)
    after = math.ceil(time.time())
    assert signed.expires_at.utcoffset() is not None  # aware, so callers can compare it safely
    assert before + ttl_s <= signed.expires_at.timestamp() <= after + ttl_s


@pytest.mark.parametrize("key", BAD_KEYS)
def test_malformed_keys_are_not_valid(key: str) -> None:
    assert is_valid_key(key) is False


def test_object_key_refuses_identifiers_that_would_escape_the_layout() -> None:
    for tenant, engine, object_id, ext in [
        ("..", "piper", "abc", "mp3"),
        ("tenant1/../tenant2", "piper", "abc", "mp3"),
        ("tenant1", "piper", "../abc", "mp3"),
        ("tenant1", "piper", "abc", "mp3/x"),
    ]:
        with pytest.raises(InvalidInput):
            object_key(tenant, engine, object_id, ext)
    for tenant, voice_id in [("..", "v_0123456789abcdef"), ("tenant1", "../v_0123456789abcdef")]:
        with pytest.raises(InvalidInput):
            voice_object_key(tenant, voice_id, "latents", "npz")
