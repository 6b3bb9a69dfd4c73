"""The ``serverless-tts`` command: serve the local web app, speak into a file, manage tenants."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from serverless_tts.greetings_cli import add_greetings_commands
from serverless_tts.operator import OPERATOR_KEY, add_speech_arguments, speech_fields
from serverless_tts.tenant_admin import add_tenant_commands
from shared.config import Settings
from shared.errors import TTSError
from shared.jobs import JobLimits, SynthesizeJob, parse_job
from shared.telemetry import configure_logging
from shared.tenants.base import IssuedKey, Tenant
from shared.tenants.dev import ensure_dev_tenant
from shared.worker import build_tenant_store, build_worker


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings()
    configure_logging(settings.log_level)
    try:
        return int(args.run(args, settings))
    except TTSError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from serverless_tts.web.app import create_app

    if "public_base_url" not in settings.model_fields_set:
        settings = settings.model_copy(
            update={"public_base_url": f"http://{args.host}:{args.port}"}
        )
    if settings.create_dev_tenant:
        store = build_tenant_store(settings)
        issued = ensure_dev_tenant(store)
        store.close()
        _print_welcome(issued, settings)
    print("loading the speech engine...", flush=True)
    worker = build_worker(settings)
    print(f"engine: {worker.engine.name} ({worker.engine.model_version})", flush=True)
    uvicorn.run(create_app(worker), host=args.host, port=args.port, log_level="warning")
    worker.close()
    return 0


def _print_welcome(issued: IssuedKey | None, settings: Settings) -> None:
    base = settings.public_base_url
    if issued is None:
        print(
            "dev tenant exists (its key was shown on the first run). "
            "New key: serverless-tts tenants create NAME",
            flush=True,
        )
        key = "$TTS_API_KEY"
    else:
        print(f"dev tenant created. API key (shown once, keep it): {issued.api_key}", flush=True)
        key = issued.api_key
    job = {"api_key": key, "text": "Hello from serverless TTS.", "format": "mp3"}
    body = json.dumps({"input": job})
    print("try:", flush=True)
    print(
        f"  curl -s {base}/runsync -H 'Content-Type: application/json' -d {shlex.quote(body)}",
        flush=True,
    )


def _say(args: argparse.Namespace, settings: Settings) -> int:
    from handlers.synthesize import make_audio, prepare

    raw = {"delivery": "base64", "ssml" if args.ssml else "text": args.text, **speech_fields(args)}
    job = parse_job(raw, JobLimits(max_text_chars=settings.max_text_chars))
    assert isinstance(job, SynthesizeJob)
    worker = build_worker(settings)
    try:
        operator = Tenant(
            id=OPERATOR_KEY,
            name=OPERATOR_KEY,
            active=True,
            key_prefix="",
            created_at=datetime.now(UTC),
        )
        prepared = prepare(job, worker, tenant=operator, request_id=uuid.uuid4().hex)
        audio = make_audio(prepared, worker)
    finally:
        worker.close()
    args.output.write_bytes(audio.data)
    print(f"wrote {args.output} ({audio.duration_s:.2f} s, {len(audio.data)} bytes)")
    return 0


def _tenants(args: argparse.Namespace, settings: Settings) -> int:
    store = build_tenant_store(settings)
    try:
        args.tenant_command(args, store)
    finally:
        store.close()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="serverless-tts", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the local web app (RunPod-compatible API)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(run=_serve)

    say = commands.add_parser("say", help="speak TEXT into an audio file")
    say.add_argument("text")
    say.add_argument("-o", "--output", type=Path, required=True)
    add_speech_arguments(say, default_format="wav")
    say.add_argument("--ssml", action="store_true", help="TEXT is SSML")
    say.set_defaults(run=_say)

    add_tenant_commands(commands)
    add_greetings_commands(commands)
    commands.choices["tenants"].set_defaults(run=_tenants)
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
