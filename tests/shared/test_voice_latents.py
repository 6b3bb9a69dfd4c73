"""Cloned-voice latents: computed by coqui's real code from real speech, stored, read back, cached.

The XTTS weights are random, so these check shapes, storage and counts, not how a clone sounds.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from typing import Any, cast

import numpy as np
import pytest

from shared.audio.encode import encode
from shared.audio.formats import AudioFormat
from shared.engines.base import Engine
from shared.engines.xtts import XttsEngine
from shared.errors import InternalError, InvalidInput
from shared.voices.latents import LatentsCache, VoiceLatents, digest, from_bytes, to_bytes
from shared.voices.reference import decode_reference
from tests.engine_wrappers import counting

SPEECH = (
    "A cloned voice is computed once, when the voice is created, and every later request "
    "reads it back from storage instead of listening to the reference again."
)


@pytest.fixture(scope="module")
def reference_pcm(piper_engine: Engine) -> np.ndarray:
    """Real speech, as a tenant would upload it (a wav file), decoded the way the service does."""
    voice = piper_engine.voice(piper_engine.default_voice)
    pcm = piper_engine.synthesize(SPEECH, voice=voice, language="en", speed=1.0)
    wav = encode(pcm, in_rate=piper_engine.sample_rate, fmt=AudioFormat("wav"), out_rate=24000)
    ref = decode_reference(wav, target_rate=XttsEngine.reference_rate)
    assert ref.duration_s >= 3.0
    return ref.pcm


@pytest.fixture
def xtts(xtts_engine: Engine) -> XttsEngine:
    return cast(XttsEngine, xtts_engine)


@pytest.fixture(scope="module")
def latents(xtts_engine: Engine, reference_pcm: np.ndarray) -> VoiceLatents:
    return cast(XttsEngine, xtts_engine).compute_latents(reference_pcm)


def test_latents_have_the_shapes_of_the_checkpoints_own_speakers(
    xtts: XttsEngine, latents: VoiceLatents
) -> None:
    """XTTS-v2 is (1, 32, 1024) and (1, 512, 1); the tiny test model has a narrower GPT."""
    builtin = xtts.voice(xtts.default_voice).conditioning
    width = int(xtts._model.args.gpt_n_model_channels)
    assert latents.gpt_cond_latent.shape == tuple(builtin.gpt_cond_latent.shape) == (1, 32, width)
    assert latents.speaker_embedding.shape == tuple(builtin.speaker_embedding.shape) == (1, 512, 1)
    assert latents.gpt_cond_latent.dtype == latents.speaker_embedding.dtype == np.float32
    assert np.isfinite(latents.gpt_cond_latent).all()
    assert float(np.abs(latents.speaker_embedding).max()) > 0


def test_different_speech_gives_different_latents(
    xtts: XttsEngine, reference_pcm: np.ndarray, latents: VoiceLatents
) -> None:
    other = xtts.compute_latents(reference_pcm[::-1].copy())
    assert not np.array_equal(other.speaker_embedding, latents.speaker_embedding)
    assert digest(to_bytes(other)) != digest(to_bytes(latents))


def test_compute_refuses_non_mono_or_too_short(xtts: XttsEngine) -> None:
    with pytest.raises(InvalidInput):
        xtts.compute_latents(np.zeros((2, 44100), dtype=np.float32))
    with pytest.raises(InvalidInput):
        xtts.compute_latents(np.zeros(100, dtype=np.float32))


def test_bytes_round_trip_exactly(latents: VoiceLatents) -> None:
    data = to_bytes(latents)
    back = from_bytes(data)
    assert np.array_equal(back.gpt_cond_latent, latents.gpt_cond_latent)
    assert np.array_equal(back.speaker_embedding, latents.speaker_embedding)
    assert back.gpt_cond_latent.dtype == np.float32
    assert to_bytes(back) == data


def test_stored_bytes_carry_no_clock(latents: VoiceLatents) -> None:
    """np.savez would stamp the current time; equal latents must be equal bytes (one version)."""
    with zipfile.ZipFile(io.BytesIO(to_bytes(latents))) as box:
        assert {info.date_time for info in box.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_digest_changes_when_latents_change(latents: VoiceLatents) -> None:
    version = digest(to_bytes(latents))
    assert version.startswith("sha256-") and len(version) == len("sha256-") + 64
    nudged = latents.speaker_embedding.copy()
    nudged[0, 0, 0] += 1e-3
    changed = VoiceLatents(latents.gpt_cond_latent, nudged)
    assert digest(to_bytes(changed)) != version


class _Exploit:
    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("unpickled!",))


def _npz(**arrays: Any) -> bytes:
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(pickle.dumps(_Exploit()), id="pickle"),
        pytest.param(
            _npz(
                gpt_cond_latent=np.array([_Exploit()], dtype=object),
                speaker_embedding=np.zeros((1, 512, 1), np.float32),
            ),
            id="npz-with-pickled-array",
        ),
        pytest.param(np.random.default_rng(1).bytes(4096), id="random-bytes"),
        pytest.param(b"", id="empty"),
        pytest.param(
            _npz(
                gpt_cond_latent=np.zeros((32, 1024), np.float32),
                speaker_embedding=np.zeros((1, 512, 1), np.float32),
            ),
            id="wrong-rank",
        ),
        pytest.param(
            _npz(
                gpt_cond_latent=np.zeros((1, 32, 1024), np.float32),
                speaker_embedding=np.zeros((1, 512, 2), np.float32),
            ),
            id="wrong-shape",
        ),
        pytest.param(
            _npz(
                gpt_cond_latent=np.zeros((1, 32, 1024), np.float64),
                speaker_embedding=np.zeros((1, 512, 1), np.float32),
            ),
            id="wrong-dtype",
        ),
        pytest.param(_npz(gpt_cond_latent=np.zeros((1, 32, 1024), np.float32)), id="missing"),
        pytest.param(
            _npz(
                gpt_cond_latent=np.full((1, 32, 1024), np.nan, np.float32),
                speaker_embedding=np.zeros((1, 512, 1), np.float32),
            ),
            id="nan",
        ),
    ],
)
def test_from_bytes_refuses_anything_but_latents(
    data: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(InternalError):
        from_bytes(data)
    assert "unpickled!" not in capsys.readouterr().out


def test_from_bytes_refuses_a_header_claiming_more_than_it_holds(latents: VoiceLatents) -> None:
    """A header is read before numpy allocates the array it describes: no 4 GB allocation."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (1, 32, 1 << 25)}
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as box:
        box.writestr("gpt_cond_latent.npy", header.getvalue() + b"\0" * 64)
        box.writestr("speaker_embedding.npy", b"")
    with pytest.raises(InternalError, match="claims"):
        from_bytes(out.getvalue())


def test_from_bytes_refuses_truncated(latents: VoiceLatents) -> None:
    data = to_bytes(latents)
    with pytest.raises(InternalError, match="damaged"):
        from_bytes(data[: len(data) // 2])


def test_engine_speaks_with_a_cloned_voice(xtts: XttsEngine, latents: VoiceLatents) -> None:
    stored = to_bytes(latents)
    voice = xtts.cloned_voice("v1", version=digest(stored), latents=from_bytes(stored))
    assert voice.engine == "xtts" and voice.version == digest(stored)
    pcm = xtts.synthesize("Hello there.", voice=voice, language="en", speed=1.0)
    assert pcm.dtype == np.float32 and pcm.size > 0
    assert np.isfinite(pcm).all()
    chunks = list(xtts.stream("Hello there.", voice=voice, language="en", speed=1.0))
    assert sum(chunk.size for chunk in chunks) > 0


def test_cloned_voice_refuses_latents_of_another_model(xtts: XttsEngine) -> None:
    other = VoiceLatents(np.zeros((1, 32, 8), np.float32), np.zeros((1, 512, 1), np.float32))
    with pytest.raises(InternalError, match="another model"):
        xtts.cloned_voice("v1", version="sha256-x", latents=other)


def test_cached_latents_condition_once_for_many_syntheses(
    xtts: XttsEngine, reference_pcm: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpt_calls = counting(monkeypatch, xtts._model, "get_gpt_cond_latents")
    speaker_calls = counting(monkeypatch, xtts._model, "get_speaker_embedding")
    storage: dict[str, bytes] = {}

    # Creating the voice: computed once, stored.
    stored = to_bytes(xtts.compute_latents(reference_pcm))
    version = digest(stored)
    storage["tenant-a/v1"] = stored

    cache = LatentsCache(max_entries=4)
    for _ in range(2):
        latents = cache.get_or_load(
            ("tenant-a", "v1", version), lambda: from_bytes(storage["tenant-a/v1"])
        )
        voice = xtts.cloned_voice("v1", version=version, latents=latents)
        pcm = xtts.synthesize("Hello.", voice=voice, language="en", speed=1.0)
        assert pcm.size > 0
    assert (len(gpt_calls), len(speaker_calls)) == (1, 1)
    assert (cache.hits, cache.misses) == (1, 1)


def _latents(seed: int) -> VoiceLatents:
    rng = np.random.default_rng(seed)
    return VoiceLatents(
        rng.standard_normal((1, 32, 1024), dtype=np.float32),
        rng.standard_normal((1, 512, 1), dtype=np.float32),
    )


def test_cache_evicts_least_recently_used_and_counts() -> None:
    cache = LatentsCache(max_entries=2)
    a, b, c = ("t", "a", "v1"), ("t", "b", "v1"), ("t", "c", "v1")
    cache.put(a, _latents(1))
    cache.put(b, _latents(2))
    assert cache.get(a) is not None  # a is now the most recent
    cache.put(c, _latents(3))  # evicts b
    assert cache.get(b) is None
    assert cache.get(a) is not None and cache.get(c) is not None
    assert len(cache) == 2
    assert (cache.hits, cache.misses) == (3, 1)


def test_cache_keys_include_tenant_and_version() -> None:
    cache = LatentsCache(max_entries=8)
    cache.put(("t1", "v", "sha256-1"), _latents(1))
    assert cache.get(("t2", "v", "sha256-1")) is None
    assert cache.get(("t1", "v", "sha256-2")) is None
    assert cache.get(("t1", "v", "sha256-1")) is not None
    assert (cache.hits, cache.misses) == (1, 2)


def test_cache_refuses_no_room() -> None:
    with pytest.raises(InternalError):
        LatentsCache(max_entries=0)


def test_cached_latents_are_read_only(latents: VoiceLatents) -> None:
    with pytest.raises(ValueError):
        latents.gpt_cond_latent[0, 0, 0] = 1.0
