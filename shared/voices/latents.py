"""A cloned voice's XTTS conditioning as plain arrays: stored as bytes, versioned, cached.

A voice is cloned once: the reference's conditioning is computed when the voice is created,
stored, and every later job loads it instead of recomputing it (FIELD_NOTES: never per request).

The stored form is an uncompressed ``.npz`` read with ``allow_pickle=False``: the bytes come back
from storage, and ``torch.load`` or a pickle would run whatever code they held. Its zip entries
carry a fixed timestamp (``np.savez`` stamps the current time), so equal latents are equal bytes
and ``digest`` of the bytes is a content version that keys the audio cache.
"""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

from shared.errors import InternalError

# The entries of the stored .npz; nothing else may be in it.
_GPT = "gpt_cond_latent"
_SPEAKER = "speaker_embedding"
# XTTS-v2 is (1, 32, 1024) and (1, 512, 1), about 130 KB stored: the bounds leave room for other
# checkpoints while refusing, before any array is allocated, a header that claims gigabytes.
MAX_LATENTS = 256
MAX_DIM = 4096
MAX_STORED_BYTES = 1 << 22
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can state

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class VoiceLatents:
    """XTTS's conditioning for one voice, on the host: the GPT conditioning latent
    (1, latents, model dim) and the speaker embedding (1, d-vector dim, 1), both float32."""

    gpt_cond_latent: F32
    speaker_embedding: F32

    def __post_init__(self) -> None:
        _check("gpt_cond_latent", self.gpt_cond_latent, last_is_one=False)
        _check("speaker_embedding", self.speaker_embedding, last_is_one=True)
        # One value is shared by every job (and thread) that speaks the voice.
        self.gpt_cond_latent.flags.writeable = False
        self.speaker_embedding.flags.writeable = False


def _check(name: str, array: np.ndarray, *, last_is_one: bool) -> None:
    shape = array.shape
    wanted = "(1, N, 1)" if last_is_one else "(1, N, D)"
    if (
        array.dtype != np.float32
        or len(shape) != 3
        or shape[0] != 1
        or not 1 <= shape[1] <= MAX_DIM
        or (shape[2] != 1 if last_is_one else not 1 <= shape[2] <= MAX_DIM)
        or (not last_is_one and shape[1] > MAX_LATENTS)
    ):
        raise InternalError(
            f"voice latents: {name} must be float32 {wanted}, got {array.dtype} {shape}"
        )
    if not np.isfinite(array).all():
        raise InternalError(f"voice latents: {name} holds NaN or infinite values")


def to_bytes(latents: VoiceLatents) -> bytes:
    """``latents`` as an uncompressed .npz, byte-identical for equal latents."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as box:
        for name, array in ((_GPT, latents.gpt_cond_latent), (_SPEAKER, latents.speaker_embedding)):
            entry = io.BytesIO()
            np.lib.format.write_array(entry, np.ascontiguousarray(array), allow_pickle=False)
            box.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME), entry.getvalue())
    return out.getvalue()


def from_bytes(data: bytes) -> VoiceLatents:
    """Latents stored by ``to_bytes``; ``InternalError`` for anything else (a stored object
    that does not read back is damage on our side, not a caller's mistake)."""
    if len(data) > MAX_STORED_BYTES:
        raise InternalError(f"stored voice latents are {len(data)} bytes, over {MAX_STORED_BYTES}")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as box:
            entries = {info.filename: info.file_size for info in box.infolist()}
        if sorted(entries) != [f"{_GPT}.npy", f"{_SPEAKER}.npy"]:
            raise InternalError(
                f"stored voice latents hold {sorted(entries)}, not {_GPT} and {_SPEAKER}"
            )
        if sum(entries.values()) > MAX_STORED_BYTES:
            raise InternalError("stored voice latents unpack past their size limit")
        with zipfile.ZipFile(io.BytesIO(data)) as box:
            for name, size in entries.items():
                _check_header(box, name, size)
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            gpt, speaker = stored[_GPT], stored[_SPEAKER]
    except InternalError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        # ValueError is also what numpy raises for a pickled (object) array.
        raise InternalError(
            f"stored voice latents are damaged: {type(exc).__name__}: {exc}"
        ) from exc
    return VoiceLatents(gpt_cond_latent=gpt, speaker_embedding=speaker)


def _check_header(box: zipfile.ZipFile, name: str, size: int) -> None:
    """Refuse an entry whose header claims more data than it holds, before numpy allocates
    the array that header describes."""
    with box.open(name) as entry:
        version = np.lib.format.read_magic(entry)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read_header(entry)
        body = size - entry.tell()
    if dtype.hasobject or int(np.prod(shape, dtype=np.int64)) * dtype.itemsize > body:
        raise InternalError(f"stored voice latents: {name} claims {dtype} {shape}, past its data")


def digest(data: bytes) -> str:
    """The version of a cloned voice: its stored latents' content hash."""
    return "sha256-" + hashlib.sha256(data).hexdigest()


CacheKey = tuple[str, str, str]  # (tenant id, voice id, version)
Loaded = TypeVar("Loaded")


class LatentsCache(Generic[Loaded]):
    """Bounded, thread-safe LRU of loaded latents (as arrays, or as the engine's ready voice),
    so a warm worker reads each voice from storage once.

    Keyed by version as well as voice: a re-cloned voice gets a new version, and its old latents
    simply age out. ``get_or_load`` runs ``load`` outside the lock, so one slow storage read does
    not stall other voices; two first requests for one voice may both load it, harmlessly.
    """

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise InternalError(f"latents cache needs at least 1 entry, got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[CacheKey, Loaded] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get(self, key: CacheKey) -> Loaded | None:
        with self._lock:
            latents = self._entries.get(key)
            if latents is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return latents

    def put(self, key: CacheKey, latents: Loaded) -> None:
        with self._lock:
            self._entries[key] = latents
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def get_or_load(self, key: CacheKey, load: Callable[[], Loaded]) -> Loaded:
        latents = self.get(key)
        if latents is None:
            latents = load()
            self.put(key, latents)
        return latents

    def forget(self, tenant_id: str, voice_id: str) -> None:
        """Drop every version of a voice (it was deleted): its memory goes back at once."""
        with self._lock:
            for key in [key for key in self._entries if key[:2] == (tenant_id, voice_id)]:
                del self._entries[key]
