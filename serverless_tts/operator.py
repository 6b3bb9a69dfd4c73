"""What the operator commands (`say`, `greetings warm`) share.

They run on the operator's own machine, beside the data directory and the tenant store, so no
tenant key is checked; the placeholder key only satisfies the job contract and is never looked up.
"""

from __future__ import annotations

import argparse
from typing import Any

from shared.audio.formats import AudioFormat

OPERATOR_KEY = "local-operator"


def add_speech_arguments(parser: argparse.ArgumentParser, *, default_format: str) -> None:
    parser.add_argument("--format", default=default_format, choices=[f.value for f in AudioFormat])
    parser.add_argument("--voice")
    parser.add_argument("--language", default="en")
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--sample-rate", type=int)


def speech_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The job fields the speech arguments set (absent ones keep the contract's defaults)."""
    fields: dict[str, Any] = {
        "api_key": OPERATOR_KEY,
        "format": args.format,
        "language": args.language,
        "speed": args.speed,
    }
    if args.voice:
        fields["voice"] = args.voice
    if args.sample_rate:
        fields["sample_rate"] = args.sample_rate
    return fields
