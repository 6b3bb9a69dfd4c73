"""The edge's configuration: one file (TOML or JSON, named by ``TTS_EDGE_CONFIG``) for what is
not secret, the environment for what is (``TWILIO_AUTH_TOKEN``, each business's tenant key, a
RunPod or Modal key), so one file works on a laptop, on Modal and on any ASGI host.

A key is never written in the file: a business names the variable that holds it. Everything is
checked once, at start, and a problem names the setting (never a secret's value).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

CONFIG_ENV = "TTS_EDGE_CONFIG"
AUTH_TOKEN_ENV = "TWILIO_AUTH_TOKEN"
# A business's name is a path segment (/twilio/{business}/voice): keep it plain.
BUSINESS_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
EnvName = Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]{0,127}$")]
_STRICT = ConfigDict(extra="forbid", frozen=True)


class EdgeConfigError(Exception):
    """The configuration cannot be used; the message says which setting and why."""


class WorkerConfig(BaseModel):
    """Where speech comes from.

    ``http``: this product's HTTP API at ``url``. ``runpod``: endpoint ``endpoint_id`` at
    ``url`` (default ``https://api.runpod.ai/v2/{endpoint_id}``), the RunPod key read from
    ``api_key_env``; ``webhook_url``, if set, is handed to RunPod with each queued (``/run``)
    job, so an operator hears when a warm job ends. ``modal``: this product's HTTP API as a
    Modal web endpoint at ``url``; with proxy auth on, the token id and secret read from
    ``token_id_env``/``token_secret_env``.
    """

    model_config = _STRICT

    kind: Literal["http", "runpod", "modal"]
    url: str | None = Field(None, pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
    endpoint_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    api_key_env: EnvName | None = None
    token_id_env: EnvName | None = None
    token_secret_env: EnvName | None = None
    webhook_url: str | None = Field(None, pattern=r"^https://[^\s]+$")
    timeout_s: float = Field(30.0, gt=0, le=300, description="Longest any one call may take.")
    retries: int = Field(1, ge=0, le=5, description="Retries of a call that failed to connect.")

    def base_url(self) -> str:
        if self.url is not None:
            return self.url.rstrip("/")
        if self.kind == "runpod" and self.endpoint_id is not None:
            return f"https://api.runpod.ai/v2/{self.endpoint_id}"
        raise EdgeConfigError(f"worker: kind {self.kind} needs a url")


class BusinessConfig(BaseModel):
    """One business's phone line: its tenant key (by variable), how it speaks, what it says
    while it cannot say anything better, and where its own AI answers the caller."""

    model_config = _STRICT

    api_key_env: EnvName
    language: str = Field("en", pattern=r"^[a-z]{2}(-[a-z]{2})?$")
    voice: str = Field("", max_length=128)
    speed: float = Field(1.0, ge=0.5, le=2.0)
    greeting: str = Field(min_length=1, max_length=1000)
    fallback_text: str = Field(min_length=1, max_length=1000)
    responder_url: str = Field(pattern=r"^https?://[^\s]+$")
    mode: Literal["play", "stream"] = "play"
    format: Literal["mp3", "wav"] = Field("mp3", description="What <Play> fetches.")


class EdgeConfig(BaseModel):
    model_config = _STRICT

    public_base_url: str = Field(pattern=r"^https?://[^\s/?#]+(/[^\s?#]*[^\s/?#])?$")
    deadline_ms: int = Field(1200, ge=100, le=10_000)
    responder_timeout_ms: int = Field(3000, ge=100, le=10_000)
    cache_lookup_ms: int = Field(
        500,
        ge=50,
        le=5_000,
        description="How long an incoming call waits for the cached greeting before <Say>.",
    )
    metrics_token_env: EnvName | None = Field(
        None,
        description="The variable holding the operator's token for GET /metrics (unset: 404).",
    )
    worker: WorkerConfig
    businesses: dict[str, BusinessConfig] = Field(min_length=1)

    @field_validator("businesses")
    @classmethod
    def _plain_names(cls, businesses: dict[str, BusinessConfig]) -> dict[str, BusinessConfig]:
        for name in businesses:
            if not BUSINESS_NAME.fullmatch(name):
                raise ValueError(
                    f"business {name!r}: use 1-63 lowercase letters, digits, '_' or '-'"
                )
        return businesses


class Secrets(BaseModel):
    """What the environment holds for the configuration: never logged, never in a reply."""

    model_config = ConfigDict(frozen=True)

    twilio_auth_token: SecretStr
    tenant_keys: dict[str, SecretStr]  # business -> its tenant API key
    worker_key: SecretStr | None = None  # RunPod's API key
    modal_token: tuple[SecretStr, SecretStr] | None = None  # Modal proxy auth id, secret
    metrics_token: SecretStr | None = None  # the operator's, for GET /metrics


class EdgeSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    config: EdgeConfig
    secrets: Secrets


def parse_config(text: str, *, kind: Literal["toml", "json"]) -> EdgeConfig:
    try:
        raw = tomllib.loads(text) if kind == "toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise EdgeConfigError(
            f"the edge configuration is not valid {kind.upper()}: {exc}"
        ) from None
    if not isinstance(raw, dict):
        raise EdgeConfigError("the edge configuration must be a table (an object) of settings")
    try:
        return EdgeConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or 'config'}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        ]
        raise EdgeConfigError("; ".join(problems)) from None


def read_secrets(config: EdgeConfig, environ: Mapping[str, str]) -> Secrets:
    """Each secret the configuration names, from ``environ``; every missing one is named."""
    missing: list[str] = []

    def secret(name: str | None) -> SecretStr | None:
        if name is None:
            return None
        value = environ.get(name, "")
        if not value:
            missing.append(name)
            return None
        return SecretStr(value)

    token = secret(AUTH_TOKEN_ENV)
    keys = {business: secret(one.api_key_env) for business, one in config.businesses.items()}
    worker = config.worker
    worker_key = secret(worker.api_key_env) if worker.kind == "runpod" else None
    if worker.kind == "runpod" and worker.api_key_env is None:
        raise EdgeConfigError("worker: kind runpod needs api_key_env (the RunPod API key)")
    modal_id, modal_secret = secret(worker.token_id_env), secret(worker.token_secret_env)
    metrics_token = secret(config.metrics_token_env)
    if missing:
        raise EdgeConfigError("missing from the environment: " + ", ".join(sorted(set(missing))))
    assert token is not None
    return Secrets(
        twilio_auth_token=token,
        tenant_keys={business: key for business, key in keys.items() if key is not None},
        worker_key=worker_key,
        modal_token=(modal_id, modal_secret) if modal_id and modal_secret else None,
        metrics_token=metrics_token,
    )


def load_edge_settings(
    path: Path | None = None, environ: Mapping[str, str] | None = None
) -> EdgeSettings:
    """The configuration file (``path``, else ``$TTS_EDGE_CONFIG``) and its secrets."""
    environ = os.environ if environ is None else environ
    if path is None:
        named = environ.get(CONFIG_ENV)
        if not named:
            raise EdgeConfigError(f"{CONFIG_ENV} must name the edge configuration file")
        path = Path(named)
    kind: Literal["toml", "json"] = "json" if path.suffix.lower() == ".json" else "toml"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EdgeConfigError(
            f"cannot read the edge configuration {path}: {exc.strerror}"
        ) from None
    config = parse_config(text, kind=kind)
    config.worker.base_url()  # a worker without an address is refused at start
    return EdgeSettings(config=config, secrets=read_secrets(config, environ))
