"""The ``serverless-tts`` command: serve the local web app, speak into a file, manage tenants,
serve the telephony edge."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from serverless_tts.audio_file import write_audio
from serverless_tts.edge_cli import add_edge_commands
from serverless_tts.greetings_cli import add_greetings_commands
from serverless_tts.operator import add_speech_arguments, operator_credentials, speech_fields
from serverless_tts.tenant_admin import add_tenant_commands
from shared.audio.formats import FORMAT_SPECS, AudioFormat
from shared.config import Settings, load_settings
from shared.errors import TTSError
from shared.telemetry import configure_logging
from shared.tenants.base import IssuedKey
from shared.tenants.dev import ensure_dev_tenant
from shared.worker import build_tenant_store, build_worker


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(settings.log_level)
        return int(args.run(args, settings))
    except TTSError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        # A file or port the operator named: say which and why, not a traceback.
        where = f" {err.filename}" if err.filename else ""
        print(f"error:{where}: {err.strerror or err}", file=sys.stderr)
        return 2


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from serverless_tts.draining_server import DrainingServer
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
    engine = worker.engines.default.engine
    print(f"engine: {engine.name} ({engine.model_version})", flush=True)
    # A WebSocket message is bounded by TTS_MAX_BODY_BYTES in the route (a JSON refusal); the
    # protocol's own cap, above it, stops a far bigger one before it is even buffered whole.
    ws_max_size = 2 * settings.max_body_bytes
    app = create_app(worker)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        ws_max_size=ws_max_size,
        # After the drain, what is still open (an idle WebSocket) gets this long to close.
        timeout_graceful_shutdown=5,
    )
    server = DrainingServer(config, worker.lifecycle, grace_s=settings.shutdown_grace_s)
    server.run()
    worker.close()  # every pending usage row is written before the process exits
    return 0


def _print_welcome(issued: IssuedKey | None, settings: Settings) -> None:
    base = settings.public_base_url
    if issued is None:
        print(
            "dev tenant exists (its key was shown on the first run; export it as TTS_API_KEY). "
            "New key: serverless-tts tenants create NAME",
            flush=True,
        )
        key = None
    else:
        print(f"dev tenant created. API key (shown once, keep it): {issued.api_key}", flush=True)
        key = issued.api_key
    print("try:", flush=True)
    print(f"  {curl_line(base, key)}", flush=True)


def curl_line(base_url: str, api_key: str | None) -> str:
    """A runsync call to paste into a shell; without the key, one that reads $TTS_API_KEY
    (outside single quotes, so the shell expands it)."""
    marker = "@@KEY@@"
    job = {"api_key": api_key or marker, "text": "Hello from serverless TTS.", "format": "mp3"}
    body = json.dumps({"input": job})
    assert "'" not in body  # safe to single-quote as a whole
    quoted = f"'{body}'"
    if api_key is None:
        quoted = quoted.replace(marker, "'\"$TTS_API_KEY\"'")
    return f"curl -s {base_url}/runsync -H 'Content-Type: application/json' -d {quoted}"


def _say(args: argparse.Namespace, settings: Settings) -> int:
    from handlers.dispatch import dispatch

    fmt = AudioFormat(args.format)
    # A stream keeps memory flat for long texts; flac can only be made whole.
    delivery = "stream" if FORMAT_SPECS[fmt].streamable else "base64"
    raw = {"delivery": delivery, "ssml" if args.ssml else "text": args.text, **speech_fields(args)}
    credentials = operator_credentials(args)
    with write_audio(args.output, fmt) as sink:
        if credentials.tenant_id is None:
            print("operator run: no tenant is charged and nothing is stored", file=sys.stderr)
        worker = build_worker(settings)
        try:
            written = sink.write_output(dispatch(raw, credentials, worker))
        finally:
            worker.close()
    print(f"wrote {args.output} ({written.duration_s:.2f} s, {written.bytes} bytes)")
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
    say.add_argument("--tenant", help="run as this tenant id: charged, with a usage row")
    say.set_defaults(run=_say)

    add_tenant_commands(commands)
    add_greetings_commands(commands)
    add_edge_commands(commands)
    commands.choices["tenants"].set_defaults(run=_tenants)
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
