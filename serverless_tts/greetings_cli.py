"""``serverless-tts greetings warm``: fill a tenant's audio cache with its phrases, one per line."""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

from handlers import greetings
from serverless_tts.operator import add_speech_arguments, speech_fields
from shared.config import Settings
from shared.errors import InvalidInput
from shared.jobs import GreetingsWarmJob, JobLimits, parse_job
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
    phrases = [line.strip() for line in args.file.read_text(encoding="utf-8").splitlines()]
    phrases = [phrase for phrase in phrases if phrase]
    if not phrases:
        raise InvalidInput(f"{args.file} has no phrases")
    raw = {"action": "greetings.warm", "phrases": phrases, **speech_fields(args)}
    job = parse_job(raw, JobLimits(max_text_chars=settings.max_text_chars))
    assert isinstance(job, GreetingsWarmJob)
    worker = build_worker(settings)
    try:
        tenant = worker.tenants.get_tenant(args.tenant)
        prepared = greetings.prepare_phrases(
            job, worker, tenant=tenant, request_id=f"warm-{uuid.uuid4().hex}"
        )
        for done, one in enumerate(prepared, start=1):
            single = job.model_copy(update={"phrases": [job.phrases[done - 1]]})
            [entry] = greetings.warm(single, [one], worker)
            _progress(done, len(prepared), "cached" if entry.cached else "made")
    finally:
        worker.close()
    print(file=sys.stderr)
    print(f"{len(prepared)} greetings ready for tenant {tenant.name}")
    return 0


def _progress(done: int, total: int, last: str) -> None:
    width = 30
    filled = width * done // total
    bar = "#" * filled + "." * (width - filled)
    print(f"\r[{bar}] {done}/{total} ({last})", end="", file=sys.stderr, flush=True)
