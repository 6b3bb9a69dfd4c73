"""Deterministic Piper for tests that compare audio across processes: Piper's noise (on by
default, so two renders of one text differ) turned off, which makes a render of a text
bit-identical every time. ``python -m tests.quiet_piper ARGS`` runs ``serverless-tts ARGS``."""

from __future__ import annotations

import functools
import sys

import piper

from serverless_tts.cli import main


def silence_noise() -> None:
    """Every ``SynthesisConfig`` made from here on asks for no noise (shared/engines/piper.py
    makes one per segment)."""
    if not isinstance(piper.SynthesisConfig, functools.partial):
        piper.SynthesisConfig = functools.partial(  # type: ignore[misc]
            piper.SynthesisConfig, noise_scale=0.0, noise_w_scale=0.0
        )


if __name__ == "__main__":
    silence_noise()
    raise SystemExit(main(sys.argv[1:]))
