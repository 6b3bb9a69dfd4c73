"""Model versions from file contents, so every worker with the same weights computes the same
version (and so shares audio-cache entries), whatever the files' timestamps."""

from __future__ import annotations

import hashlib
from pathlib import Path

_SAMPLE_BYTES = 1 << 20


def fingerprint(prefix: str, whole: list[Path], sampled: list[Path]) -> str:
    """``whole`` files are hashed entirely (configs, vocabularies); ``sampled`` ones (weights of
    hundreds of MB) by size, first and last MiB, which keeps a cold start from reading 1.8 GB.
    Missing files are skipped, so optional ones may be listed."""
    digest = hashlib.sha256()
    for path in whole:
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    for path in sampled:
        if not path.is_file():
            continue
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with path.open("rb") as handle:
            digest.update(handle.read(_SAMPLE_BYTES))
            handle.seek(max(size - _SAMPLE_BYTES, 0))
            digest.update(handle.read(_SAMPLE_BYTES))
    return f"{prefix}-{digest.hexdigest()[:16]}"
