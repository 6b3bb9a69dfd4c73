"""Audio cache keys and single-flight: one key per distinct request, one synthesis per key."""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from shared.audio.formats import AudioFormat
from shared.cache import audio_cache
from shared.cache.audio_cache import CacheEntry, CacheSlot
from shared.cache.keys import audio_cache_key
from shared.cache.single_flight import SingleFlight
from shared.errors import InvalidInput
from shared.storage.base import is_valid_key, object_key
from shared.storage.local import LocalAudioStore
from shared.storage.s3 import S3AudioStore

BASE: dict[str, Any] = {
    "engine": "xtts",
    "model_version": "v2.0.3",
    "voice": "ana",
    "voice_version": None,
    "language": "en",
    "speed": 1.0,
    "format": "mp3",
    "sample_rate": 24000,
    "text": "Hello there.",
}

# One changed value per field; each must move the key.
CHANGES: dict[str, Any] = {
    "engine": "piper",
    "model_version": "v2.0.2",
    "voice": "bob",
    "voice_version": "2",
    "language": "de",
    "speed": 1.1,
    "format": "wav",
    "sample_rate": 22050,
    "text": "Hello there!",
}

WAIT_S = 10  # bounds a failing test only; a passing one never waits this long


def key(**changes: Any) -> str:
    return audio_cache_key(**{**BASE, **changes})


# --- keys ---------------------------------------------------------------------------------------


def test_key_is_a_stable_sha256_hex_digest() -> None:
    first = key()
    assert first == key()
    assert len(first) == 64 and all(c in "0123456789abcdef" for c in first)


def test_every_field_is_covered_by_the_test_table() -> None:
    # A field added to audio_cache_key without a row in CHANGES would go untested.
    assert set(CHANGES) == set(BASE) == set(inspect.signature(audio_cache_key).parameters)


@pytest.mark.parametrize("field", sorted(CHANGES))
def test_changing_any_field_changes_the_key(field: str) -> None:
    assert key(**{field: CHANGES[field]}) != key()


def test_speed_counts_to_three_decimals() -> None:
    assert key(speed=1.0000001) == key(speed=1.0)
    assert key(speed=1.0004) == key(speed=1.0)
    assert key(speed=1.001) != key(speed=1.0)
    assert key(speed=1.1) != key(speed=1.0)


def test_characters_moved_between_fields_change_the_key() -> None:
    # A naive "voice|language|text" join would make these collide.
    assert key(voice="ana|en", language="x") != key(voice="ana", language="en|x")
    assert key(voice="ana", text='", "voice": "x') != key(voice="x", text="")


def test_unversioned_voice_differs_from_a_version_spelled_none() -> None:
    assert key(voice_version=None) != key(voice_version="None")
    assert key(voice_version=None) != key(voice_version="")


def test_format_enum_and_its_wire_name_give_the_same_key() -> None:
    assert key(format=AudioFormat.OGG_OPUS) == key(format="ogg_opus")


@pytest.mark.parametrize("speed", [float("nan"), float("inf")])
def test_non_finite_speed_is_refused(speed: float) -> None:
    with pytest.raises(InvalidInput):
        key(speed=speed)


def test_key_is_a_valid_storage_object_id() -> None:
    stored = object_key("tenant1", "xtts", key(), "mp3")
    assert is_valid_key(stored)


# --- single flight ------------------------------------------------------------------------------


def wait_until(condition: Callable[[], bool]) -> None:
    """Block until ``condition()`` holds; fail (not hang) if it never does."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached")
        time.sleep(0.001)


def start_leader(
    pool: ThreadPoolExecutor, flight: SingleFlight[str], fn: Callable[[], str]
) -> tuple[Future[tuple[str, bool]], threading.Event]:
    """Run ``fn`` under key "k" in a thread, blocked inside ``fn`` until the returned event."""
    entered, release = threading.Event(), threading.Event()

    def blocked() -> str:
        entered.set()
        assert release.wait(WAIT_S)
        return fn()

    leader = pool.submit(flight.run, "k", blocked)
    assert entered.wait(WAIT_S)
    return leader, release


def test_concurrent_callers_with_one_key_share_a_single_run() -> None:
    flight: SingleFlight[str] = SingleFlight()
    runs: list[str] = []

    def leader_fn() -> str:
        runs.append("leader")
        return "audio"

    def follower_fn() -> str:
        runs.append("follower")
        return "follower's"

    with ThreadPoolExecutor(max_workers=3) as pool:
        leader, release = start_leader(pool, flight, leader_fn)
        followers = [pool.submit(flight.run, "k", follower_fn) for _ in range(2)]
        wait_until(lambda: flight.waiting("k") == 2)
        release.set()
        assert leader.result(WAIT_S) == ("audio", True)
        assert [f.result(WAIT_S) for f in followers] == [("audio", False)] * 2
    assert runs == ["leader"]


def test_leaders_exception_reaches_every_waiting_caller() -> None:
    flight: SingleFlight[str] = SingleFlight()
    failure = RuntimeError("engine crashed")

    def crash() -> str:
        raise failure

    with ThreadPoolExecutor(max_workers=2) as pool:
        leader, release = start_leader(pool, flight, crash)
        follower = pool.submit(flight.run, "k", lambda: "never")
        wait_until(lambda: flight.waiting("k") == 1)
        release.set()
        assert leader.exception(WAIT_S) is failure
        assert follower.exception(WAIT_S) is failure


def test_different_keys_run_at_the_same_time() -> None:
    flight: SingleFlight[bool] = SingleFlight()
    started = {"a": threading.Event(), "b": threading.Event()}

    def meet(mine: str, other: str) -> bool:
        # Each run waits to see the other one start: only overlapping runs both see True.
        started[mine].set()
        return started[other].wait(WAIT_S)

    with ThreadPoolExecutor(max_workers=2) as pool:
        a = pool.submit(flight.run, "a", lambda: meet("a", "b"))
        b = pool.submit(flight.run, "b", lambda: meet("b", "a"))
        assert a.result(WAIT_S * 2) == (True, True)
        assert b.result(WAIT_S * 2) == (True, True)


def test_a_call_after_the_flight_lands_runs_again() -> None:
    flight: SingleFlight[int] = SingleFlight()
    assert flight.run("k", lambda: 1) == (1, True)
    assert flight.run("k", lambda: 2) == (2, True)
    assert flight.waiting("k") == 0


def test_a_call_after_a_failed_flight_runs_again() -> None:
    flight: SingleFlight[int] = SingleFlight()

    def fail() -> int:
        raise ValueError("first try")

    with pytest.raises(ValueError, match="first try"):
        flight.run("k", fail)
    assert flight.run("k", lambda: 7) == (7, True)


def test_cache_entry_round_trips_and_a_corrupt_sidecar_is_a_miss(tmp_path: Path) -> None:
    store = LocalAudioStore(tmp_path, base_url="http://127.0.0.1:9", secret=b"s" * 32)
    slot = CacheSlot.of("tenant1", "piper", "a" * 64, "mp3")
    assert audio_cache.lookup(store, slot) is None
    audio_cache.fill(store, slot, CacheEntry(duration_s=1.5, bytes=3), b"ID3", "audio/mpeg")
    assert audio_cache.lookup(store, slot) == CacheEntry(duration_s=1.5, bytes=3)
    assert store.get(slot.audio_key) == b"ID3"
    store.put(slot.meta_key, b"{not json", "application/json")
    assert audio_cache.lookup(store, slot) is None
    store.put(slot.meta_key, b'{"duration_s": 1.5}', "application/json")  # a field missing
    assert audio_cache.lookup(store, slot) is None


def test_an_unreachable_store_is_a_miss_not_an_error(dead_s3_store: S3AudioStore) -> None:
    slot = CacheSlot.of("tenant1", "piper", "a" * 64, "mp3")
    assert audio_cache.lookup(dead_s3_store, slot) is None
