"""``serverless-tts edge serve``: the telephony edge on a local port (Twilio reaches it through
a tunnel or a reverse proxy whose public URL is the config's ``public_base_url``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from shared.config import Settings
from shared.errors import InvalidConfig


def add_edge_commands(commands: Any) -> None:
    edge = commands.add_parser("edge", help="the Twilio telephony edge")
    edge_commands = edge.add_subparsers(required=True, metavar="EDGE_COMMAND")
    serve = edge_commands.add_parser("serve", help="serve the edge's ASGI app")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--config", type=Path, help="the edge's TOML or JSON file (default: $TTS_EDGE_CONFIG)"
    )
    serve.set_defaults(run=_serve_edge)


def _serve_edge(args: argparse.Namespace, _settings: Settings) -> int:
    from edge.config import EdgeConfigError, load_edge_settings

    try:
        settings = load_edge_settings(args.config)
    except EdgeConfigError as exc:
        raise InvalidConfig(str(exc)) from None

    import uvicorn

    from edge.asgi import edge_app

    config = settings.config
    print(
        f"edge: {len(config.businesses)} business(es), worker {config.worker.kind} at "
        f"{config.worker.base_url()}, Twilio signs {config.public_base_url}",
        flush=True,
    )
    for name in config.businesses:
        print(f"  voice webhook: {config.public_base_url}/twilio/{name}/voice", flush=True)
    # Twilio's messages are ~400 bytes and the edge refuses any over 64 KiB: the protocol's cap
    # stops a far bigger one before it is buffered.
    uvicorn.run(
        edge_app(settings),
        host=args.host,
        port=args.port,
        log_level="warning",
        ws_max_size=64 * 1024,
    )
    return 0
