"""Choose and load the speech engine from configuration.

Importing this module imports neither torch nor piper: each engine's heavy packages are optional
extras, imported only when that engine is loaded, and a missing one is reported as the extra to
install (``EngineUnavailable``). Vendor engines (shared/engines/vendors) need only httpx; their
keys, voices and models come in ``vendors`` (``vendor_configs(settings)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from shared.engines.base import Engine
from shared.engines.vendors import VENDOR_KINDS, VendorConfig, load_vendor_engine
from shared.errors import EngineUnavailable, InvalidInput

ENGINE_KINDS: tuple[str, ...] = ("auto", "xtts", "piper", *VENDOR_KINDS)


def load_engine(
    kind: str,
    *,
    xtts_model_dir: Path | None = None,
    xtts_device: str = "auto",
    xtts_max_audio_tokens: int | None = None,
    xtts_stream_chunk_tokens: int = 20,
    xtts_stream_first_chunk_tokens: int = 4,
    xtts_max_batch: int = 1,
    xtts_decode_batch: int = 4,
    xtts_warmup: bool = True,
    piper_model_path: Path | None = None,
    vendors: Mapping[str, VendorConfig] | None = None,
) -> Engine:
    """Load the engine ``kind`` names; "auto" is XTTS when a model directory is set, else Piper
    (never a vendor: one is chosen by name)."""
    if kind not in ENGINE_KINDS:
        raise InvalidInput(f"unknown engine {kind!r}: use one of {', '.join(ENGINE_KINDS)}")
    if kind in VENDOR_KINDS:
        return load_vendor_engine(kind, vendors)
    if kind == "auto":
        kind = "xtts" if xtts_model_dir is not None else "piper"
    if kind == "xtts":
        if xtts_model_dir is None:
            raise EngineUnavailable("the xtts engine needs a model directory (config.json, ...)")
        from shared.engines.xtts import XttsEngine

        return XttsEngine.load(
            Path(xtts_model_dir),
            device=xtts_device,
            max_audio_tokens=xtts_max_audio_tokens,
            stream_chunk_tokens=xtts_stream_chunk_tokens,
            stream_first_chunk_tokens=xtts_stream_first_chunk_tokens,
            max_batch=xtts_max_batch,
            decode_batch=xtts_decode_batch,
            warmup=xtts_warmup,
        )
    from shared.engines.piper import PiperEngine

    return PiperEngine.load(piper_model_path)
