"""Local audio URLs for RunPod's local API: a small server for the signed audio route alone.

``python runpod_handler.py --rp_serve_api`` serves the SDK's job routes on its own port, and
nothing serves the local store's audio there; URLs built on the default
``TTS_PUBLIC_BASE_URL`` (port 8000) point at nothing. So, for that run, with local storage and
no base URL set by the operator, the audio route is served on a free loopback port beside it.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Sequence

from shared.config import Settings
from shared.storage.local import LocalAudioStore
from shared.worker import build_storage

_log = logging.getLogger(__name__)
_STARTUP_TIMEOUT_S = 10.0


def with_local_audio_server(settings: Settings, argv: Sequence[str]) -> Settings:
    """``settings`` with ``public_base_url`` pointed at a new audio server when this run needs
    one (see the module docstring); unchanged otherwise."""
    needed = (
        "--rp_serve_api" in argv
        and settings.storage == "local"
        and "public_base_url" not in settings.model_fields_set
    )
    if not needed:
        return settings
    store = build_storage(settings)
    assert isinstance(store, LocalAudioStore)
    base_url = start_audio_server(store)
    _log.info("local audio is served at %s (the RunPod local API serves only jobs)", base_url)
    return settings.model_copy(update={"public_base_url": base_url})


def start_audio_server(store: LocalAudioStore) -> str:
    """Serve ``store``'s signed audio on 127.0.0.1 at a free port, in a daemon thread (it ends
    with the process); return its base URL."""
    # Imported here: fastapi and uvicorn take ~0.7 s to import, which a RunPod cold start in
    # production (no local API) should not pay.
    import uvicorn
    from fastapi import FastAPI

    from serverless_tts.web import audio_route

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.state.storage = store
    app.include_router(audio_route.router)
    # Bound here, not by uvicorn: the port is known (and taken) before the thread starts.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    # log_config=None keeps the worker's JSON logging; no access log: it would print each
    # URL's signature.
    config = uvicorn.Config(
        app, log_config=None, log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="tts-audio"
    )
    thread.start()
    deadline = time.monotonic() + _STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the local audio server did not start")
        time.sleep(0.01)
    return f"http://127.0.0.1:{port}"
