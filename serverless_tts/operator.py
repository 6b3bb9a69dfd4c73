"""What the operator commands (`say`, `greetings warm`) share.

They run on the operator's own machine, beside the data directory and the tenant store, so they
carry no tenant key: ``--tenant ID`` runs the job as that tenant (charged, with a usage row),
and without it `say` is a tenant-free run (nothing charged or stored; its event says so).
"""

from __future__ import annotations

import argparse
from typing import Any

from shared.audio.formats import AudioFormat
from shared.jobs import OperatorCredentials


def add_speech_arguments(parser: argparse.ArgumentParser, *, default_format: str) -> None:
    parser.add_argument("--format", default=default_format, choices=[f.value for f in AudioFormat])
    parser.add_argument("--voice")
    parser.add_argument("--language", default="en")
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--sample-rate", type=int)


def speech_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The job fields the speech arguments set (absent ones keep the contract's defaults)."""
    fields: dict[str, Any] = {
        "format": args.format,
        "language": args.language,
        "speed": args.speed,
    }
    if args.voice:
        fields["voice"] = args.voice
    if args.sample_rate:
        fields["sample_rate"] = args.sample_rate
    return fields


def operator_credentials(args: argparse.Namespace) -> OperatorCredentials:
    return OperatorCredentials(tenant_id=getattr(args, "tenant", None))
