"""``serverless-tts greetings warm``: fill a tenant's audio cache with its phrases, one per line.

The phrases run as one greetings job for the tenant (charged as one request, with its usage row
and job event), through the same dispatcher as every other entry point.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from handlers.dispatch import dispatch
from serverless_tts.operator import add_speech_arguments, operator_credentials, speech_fields
from shared.config import Settings
from shared.errors import InvalidInput
from shared.jobs import GreetingEntry, GreetingsWarmResult
from shared.worker import build_worker


def add_greetings_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    greetings_parser = commands.add_parser("greetings", help="pre-generate a tenant's phrases")
    actions = greetings_parser.add_subparsers(required=True, metavar="ACTION")
    warm = actions.add_parser("warm", help="synthesize phrases into the cache, with progress")
    warm.add_argument("--tenant", required=True, help="tenant id (serverless-tts tenants list)")
    warm.add_argument("--file", type=Path, required=True, help="one phrase per line")
    add_speech_arguments(warm, default_format="mp3")
    warm.set_defaults(run=warm_greetings)


def warm_greetings(args: argparse.Namespace, settings: Settings) -> int:
    phrases = _read_phrases(args.file)
    raw = {"action": "greetings.warm", "phrases": phrases, **speech_fields(args)}
    worker = build_worker(settings)
    try:
        # The dispatcher looks the tenant up: an unknown one is a logged job like any other.
        result = dispatch(raw, operator_credentials(args), worker, progress=_Progress(len(phrases)))
        tenant = worker.tenants.get_tenant(args.tenant)
    finally:
        worker.close()
    assert isinstance(result, GreetingsWarmResult)
    print(f"{len(result.greetings)} greetings ready for tenant {tenant.name}")
    return 0


def _read_phrases(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"cannot read {path}: no such file") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"cannot read {path}: it is not UTF-8 text") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from None
    phrases = [line.strip() for line in text.splitlines() if line.strip()]
    if not phrases:
        raise InvalidInput(f"{path} has no phrases")
    return phrases


class _Progress:
    def __init__(self, total: int) -> None:
        self._total = total
        self._done = 0

    def __call__(self, entry: GreetingEntry) -> None:
        self._done += 1
        width = 30
        filled = width * self._done // self._total
        bar = "#" * filled + "." * (width - filled)
        last = "cached" if entry.cached else "made"
        end = "\n" if self._done == self._total else ""  # log lines after the bar start afresh
        line = f"\r[{bar}] {self._done}/{self._total} ({last})"
        print(line, end=end, file=sys.stderr, flush=True)
