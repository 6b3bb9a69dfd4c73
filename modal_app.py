"""Serverless TTS on Modal: XTTS-v2 on a GPU, loaded once per container and kept warm, behind the
project's one HTTP app and a job method other Modal functions call.

Read top to bottom: the image (built from the project's lock) -> the weights (a Volume, filled
once) -> the GPU class (loads the model into a memory snapshot, moves it to the GPU) -> its
endpoints (the HTTP app, a job method, a streaming generator). To run it:

    modal secret create serverless-tts TTS_TENANT_STORE=supabase SUPABASE_URL=... ...
    modal run modal_app.py::download_weights --accept-cpml     # once: fills the Volume
    modal deploy modal_app.py                                    # prints the app's URL

``TTS_MODAL_*`` variables in the deploying shell choose the GPU and the scaling
(``shared.config.ModalDeploySettings``); everything the worker itself reads comes, as on every
platform, from ``TTS_*`` variables: the image's defaults below, then the Secrets.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import modal
from fastapi import FastAPI

from handlers.dispatch import dispatch
from handlers.stream import AudioStream
from serverless_tts.runpod_shapes import result_item
from serverless_tts.web.app import create_app
from serverless_tts.web.errors import Surface, error_body
from serverless_tts.web.ws_messages import done_message, error_message, start_message
from shared.config import load_modal_deploy_settings, load_settings
from shared.engines.base import Engine
from shared.engines.xtts import XttsEngine
from shared.engines.xtts_weights import download_xtts_v2
from shared.error_reports import init_worker_error_reports
from shared.errors import InvalidInput, TTSError
from shared.jobs import ApiKeyCredentials
from shared.worker import WorkerContext, build_engine, build_worker

MINUTES = 60
ROOT = Path(__file__).resolve().parent
DEPLOY = load_modal_deploy_settings()  # a bad TTS_MODAL_* value stops here, naming it

# ## The image: the same locked stack as the Dockerfile
#
# Debian slim with Python 3.11 (the lock is compiled for it), plus FFmpeg, whose shared libraries
# torchcodec loads for coqui-tts. The dependencies come from requirements.lock, exactly as the
# Dockerfile installs them: a hash-pinned uv bootstrapped from scripts/installer.lock, a check
# that the lock matches pyproject.toml, then the base and `xtts` requirements of pyproject.toml
# at the lock's versions and hashes (`-c`): only what the worker needs, not the dev tools the
# lock also holds. `Image.uv_pip_install` would copy uv from a container image by tag, not by
# hash, so the Dockerfile's commands run as they are (all but `lockfile.py installed`: the base
# image's own pip, wheel and uv sit outside the lock). Modal mounts its client at runtime.
# Only these four files feed the slow layers, so a code change never reinstalls torch. The edge
# (at the end) uses the same lock without the `xtts` extra.
BUILD = "/build"


def locked_image(*extras: str) -> modal.Image:
    """Python 3.11 with the project's base requirements (and ``extras``) from the lock."""
    extra_flags = "".join(f" --extra {extra}" for extra in extras)
    return (
        modal.Image.debian_slim(python_version="3.11")
        .env({"PYTHONUNBUFFERED": "1", "UV_NO_CACHE": "1", "UV_PYTHON_DOWNLOADS": "never"})
        .add_local_file(
            ROOT / "scripts/installer.lock", f"{BUILD}/scripts/installer.lock", copy=True
        )
        .add_local_file(ROOT / "scripts/lockfile.py", f"{BUILD}/scripts/lockfile.py", copy=True)
        .add_local_file(ROOT / "pyproject.toml", f"{BUILD}/pyproject.toml", copy=True)
        .add_local_file(ROOT / "requirements.lock", f"{BUILD}/requirements.lock", copy=True)
        .run_commands(
            "python -m venv /opt/tools && /opt/tools/bin/pip install --no-cache-dir"
            f" --require-hashes --no-deps -r {BUILD}/scripts/installer.lock",
            f"/opt/tools/bin/python {BUILD}/scripts/lockfile.py check",
            "/opt/tools/bin/uv pip install --python $(command -v python) --compile-bytecode"
            f" -c {BUILD}/requirements.lock -r {BUILD}/pyproject.toml{extra_flags}",
        )
    )


image = locked_image("xtts").apt_install("ffmpeg")

# ## The weights: downloaded once into a Volume, never at a cold start
#
# The XTTS-v2 weights (~1.8 GB) are under the Coqui Public Model License, non-commercial use
# only: `download_weights` refuses unless the operator accepts it (`--accept-cpml`), as the
# Dockerfile's build does without COQUI_TOS_AGREED=1. Containers mount the Volume read-only.
weights = modal.Volume.from_name("serverless-tts-weights", create_if_missing=True)
WEIGHTS_DIR = "/weights"
MODEL_DIR = f"{WEIGHTS_DIR}/xtts-v2"

# The worker's defaults here, as in the Dockerfile. The device is cuda, not auto: a container
# that cannot see its GPU fails at start instead of serving from the CPU.
image = image.env(
    {
        "TTS_ENGINE": "xtts",
        "TTS_XTTS_MODEL_DIR": MODEL_DIR,
        "TTS_XTTS_DEVICE": "cuda",
        "TTS_DATA_DIR": "/tmp/serverless-tts",
        # Warm jobs charge a tenant from a leased allowance (README: "Limits off the hot path").
        "TTS_LEASE_REQUESTS": "10",
    }
).add_local_python_source("handlers", "shared", "serverless_tts")

app = modal.App("serverless-tts", image=image)


@app.function(volumes={WEIGHTS_DIR: weights}, memory=8 * 1024, timeout=30 * MINUTES)
def download_weights(accept_cpml: bool = False) -> None:
    """Put the XTTS-v2 weights into the Volume; running it again only loads them once more.

    The files go straight into ``MODEL_DIR`` (``shared/engines/xtts_weights.py``, which the
    Dockerfile runs too). One load here rewrites a legacy model.pth in place (coqui does on a
    first load) and proves the files work, so the read-only containers never have to.
    """
    model_dir = download_xtts_v2(Path(MODEL_DIR), accept_cpml=accept_cpml)
    XttsEngine.load(model_dir, device="cpu", warmup=False)
    weights.commit()


# ## The GPU class: one warm model per container, shared by every endpoint
#
# With TTS_MODAL_SNAPSHOT=cpu (the default), a cold start restores a memory snapshot taken after
# `load` (torch imported, the weights read from the Volume into CPU memory: no GPU is attached
# before a CPU snapshot), then `start` moves the model to the GPU and opens the stores. "gpu"
# snapshots the model already on the GPU; "off" runs both hooks, in the order written, at every
# cold start. coqui-tts asks torch about CUDA while it builds the model, and torch keeps that
# first answer: should a CPU snapshot keep a "no GPU", `start` fails loudly; use "gpu" or "off".
# The knobs come from TTS_MODAL_* at deploy time; shared/config.py says how to tune each.
SNAPSHOT = DEPLOY.snapshot != "off"


@app.cls(
    gpu=DEPLOY.gpu_request,  # L40S by default; L4/A10 cheaper, H100/H200 faster
    volumes={WEIGHTS_DIR: weights.with_mount_options(read_only=True)},
    # Supabase tenants and S3 storage: TTS_TENANT_STORE, SUPABASE_URL, SUPABASE_SERVICE_ROLE_KEY,
    # TTS_STORAGE, TTS_S3_*. Values are read at container start: redeploy after rotating one.
    secrets=[modal.Secret.from_name(name) for name in DEPLOY.secret_names],
    scaledown_window=DEPLOY.scaledown_s,  # idle seconds before a container stops
    min_containers=DEPLOY.min_containers,  # warm even with no traffic (billed all day)
    max_containers=DEPLOY.max_containers,  # a ceiling on cost
    buffer_containers=DEPLOY.buffer_containers,  # spare warm containers under load
    timeout=DEPLOY.timeout_s,  # the longest one input (a long stream) may run
    enable_memory_snapshot=SNAPSHOT,
    experimental_options={"enable_gpu_snapshot": True} if DEPLOY.snapshot == "gpu" else None,
    # The container imports this file too, without the deploying shell's environment: hand it
    # the one knob its code reads.
    env={"TTS_MODAL_SNAPSHOT": DEPLOY.snapshot},
)
# Requests in flight per container: they share the model, whose thread takes them in turns.
@modal.concurrent(max_inputs=DEPLOY.max_inputs, target_inputs=DEPLOY.target_inputs)
class ServerlessTTS:
    engine: Engine
    worker: WorkerContext

    @modal.enter(snap=SNAPSHOT)
    def load(self) -> None:
        """Load the model, without warming it yet: on the CPU for a CPU memory snapshot, else
        where it will run (TTS_XTTS_DEVICE)."""
        settings = load_settings()
        device = "cpu" if DEPLOY.snapshot == "cpu" else settings.xtts_device
        self.engine = build_engine(
            settings.model_copy(update={"xtts_device": device, "xtts_warmup": False})
        )

    @modal.enter(snap=False)
    def start(self) -> None:
        """After the restore: the model to TTS_XTTS_DEVICE (the image says cuda; auto picks
        CUDA when there is one), one warm-up there, then the stores and the engine thread, made
        here because network clients and threads should not cross a snapshot."""
        settings = load_settings()
        init_worker_error_reports()  # with SENTRY_DSN (a Modal Secret) only
        if isinstance(self.engine, XttsEngine):  # Piper runs on the CPU: nothing to move
            self.engine.to_device(settings.xtts_device)
            if settings.xtts_warmup:
                self.engine.warm_up()
        self.worker = build_worker(settings, engine=self.engine)

    @modal.exit()
    def stop(self) -> None:
        # Inputs still running get TTS_SHUTDOWN_GRACE_S to end (new ones are refused, 503),
        # then every pending usage row is written before the container goes.
        self.worker.shutdown()

    # ## The HTTP app: every surface, on the warm model
    #
    # RunPod-compatible (/runsync, /run, /status/{id}, /stream/{id}), native v1 (/v1/...), the
    # WebSocket stream (/v1/stream), OpenAI-compatible speech (/v1/audio/speech), /health, at
    # https://<workspace>--serverless-tts.modal.run (Bearer keys; no Modal proxy auth).
    @modal.asgi_app(label="serverless-tts")
    def web(self) -> FastAPI:
        return create_app(self.worker)

    # ## Jobs for other Modal functions
    #
    #     tts = modal.Cls.from_name("serverless-tts", "ServerlessTTS")()
    #     result = tts.run_job.remote({"text": "Hello.", "delivery": "base64"}, api_key=KEY)
    #     call = tts.run_job.spawn(job, api_key=KEY)      # returns at once: a FunctionCall
    #     result = call.get(timeout=30)                    # or FunctionCall.from_id(id).get()
    #     for item in tts.stream_job.remote_gen(job, api_key=KEY):
    #         ...  # bytes: audio; a dict: {"type": "start" | "done" | "error", ...}
    #
    # Refusals come back as values in native v1's error shape, not as exceptions: a caller
    # without this project's code could not unpickle its exception classes.
    @modal.method()
    def run_job(self, job: dict[str, Any], api_key: str | None = None) -> dict[str, Any]:
        """One job (synthesize with url or base64 delivery, voices, health, greetings) as JSON:
        the result's fields (base64 audio as ``audio_base64``), or
        ``{"error": {"code", "message"}}``."""
        if isinstance(job, Mapping) and job.get("delivery") == "stream":
            return error_body(InvalidInput("delivery: stream with stream_job"), Surface.V1)
        try:
            output = dispatch(
                job, ApiKeyCredentials.of(api_key), self.worker, job_id=modal.current_input_id()
            )
        except TTSError as err:
            return error_body(err, Surface.V1)
        assert not isinstance(output, AudioStream)  # only delivery "stream" makes one
        return result_item(output)

    @modal.method()
    def stream_job(
        self, job: dict[str, Any], api_key: str | None = None
    ) -> Iterator[bytes | dict[str, Any]]:
        """A synthesize job's audio as it is made, in the messages of ``WS /v1/stream``: a
        ``start`` dict (format, content type, sample rate), raw audio bytes, then a ``done``
        dict with the totals, or an ``error`` dict (the last item) if it fails."""
        if not isinstance(job, Mapping) or job.get("delivery", "stream") != "stream":
            yield error_message(InvalidInput("stream_job takes a synthesize job; omit delivery"))
            return
        try:
            output = dispatch(
                {**job, "delivery": "stream"},
                ApiKeyCredentials.of(api_key),
                self.worker,
                job_id=modal.current_input_id(),
            )
        except TTSError as err:
            yield error_message(err)
            return
        assert isinstance(output, AudioStream)  # other actions refuse a delivery field
        try:
            yield start_message(output.info)
            for chunk in output:
                if chunk.data:
                    yield chunk.data
                if chunk.summary is not None:
                    yield done_message(chunk.summary)
        except TTSError as err:
            yield error_message(err)
        finally:
            output.close()  # a caller that stops reading frees the engine at once


# ## The telephony edge: a CPU function beside the GPU class
#
# Deployed when TTS_MODAL_EDGE_CONFIG names the edge's TOML or JSON file in the deploying shell:
# the file is baked into the edge's image, and its secrets (TWILIO_AUTH_TOKEN, each business's
# tenant key, a RunPod or Modal token) come from the Modal Secrets in TTS_MODAL_EDGE_SECRETS.
# No GPU and no engines: the edge app imports nothing of the worker, and answers Twilio from the
# worker's HTTP API (this app's `web` endpoint, or a RunPod endpoint). One warm container by
# default (TTS_MODAL_EDGE_MIN_CONTAINERS), so no call waits for a cold start.
#
#     TTS_MODAL_EDGE_CONFIG=edge.toml modal deploy modal_app.py
#     # then set each Twilio number's voice webhook: https://<workspace>--serverless-tts-edge.modal.run/twilio/<business>/voice
if DEPLOY.edge_config is not None:
    EDGE_CONFIG = f"/config/edge{DEPLOY.edge_config.suffix}"
    edge_image = (
        locked_image()
        .env({"TTS_EDGE_CONFIG": EDGE_CONFIG})
        .add_local_file(DEPLOY.edge_config, EDGE_CONFIG)
        .add_local_python_source("edge", "handlers", "shared", "serverless_tts")
    )

    @app.function(
        image=edge_image,
        secrets=[modal.Secret.from_name(name) for name in DEPLOY.edge_secret_names],
        min_containers=DEPLOY.edge_min_containers,
        scaledown_window=DEPLOY.scaledown_s,
        timeout=DEPLOY.timeout_s,
        # The container imports this file again: the edge must be defined there too.
        env={"TTS_MODAL_EDGE_CONFIG": EDGE_CONFIG},
    )
    @modal.concurrent(max_inputs=100)  # webhooks wait on the network, not the CPU
    @modal.asgi_app(label="serverless-tts-edge")
    def edge() -> Any:
        from edge.asgi import edge_app

        return edge_app()
