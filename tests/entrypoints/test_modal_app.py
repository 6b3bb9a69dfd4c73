"""modal_app.py without Modal's servers: it imports with no token; its GPU class runs through
Modal's own ``.local()`` (in-process, on the CPU: the enter hooks at the first call, no Volume
mounted, no Secret resolved) on the tiny random-weight XTTS checkpoint; its web app answers over
real HTTP; and the TTS_MODAL_* knobs reach the options ``modal deploy`` would send.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import modal_app
from shared.config import ModalDeploySettings, Settings, load_modal_deploy_settings
from shared.errors import InvalidConfig
from shared.tenants.base import UNLIMITED
from shared.tenants.sqlite_store import SqliteTenantStore
from tests.audio_probe import audio_stream, ffprobe_json
from tests.entrypoints.web_helpers import serve
from tests.processes import clean_env, run_python
from tests.servers import free_port
from tests.test_edge_imports import EDGE_TOML
from tests.worker_fixtures import usage_rows
from tests.xtts_checkpoint import (
    SPEAKERS,
    XTTS_TEST_MAX_AUDIO_TOKENS,
    XTTS_TEST_STREAM_CHUNK_TOKENS,
)

# Every .local() call warns that Volumes are not mounted in-process; one test checks it.
NO_VOLUME = "will not have access to the mounted Volume"
pytestmark = pytest.mark.filterwarnings(f"ignore:.*{NO_VOLUME}")
TOKEN_VARS = ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET")


@dataclass
class LocalTTS:
    """The module's ServerlessTTS instance, a tenant key, and the port its web app is served on
    (the worker's signed URLs point there)."""

    tts: Any
    key: str
    port: int
    first_reply: dict[str, Any]


@pytest.fixture(scope="module")
def local(tiny_xtts_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTTS]:
    """One instance for the module, so the model loads once. The enter hooks read the settings
    from the environment, as in a container: the tiny checkpoint, a fresh embedded store, no
    Modal token (nothing here may reach Modal's servers)."""
    port = free_port()
    with pytest.MonkeyPatch.context() as env:
        for name in list(os.environ):
            if name.startswith(("TTS_", "MODAL_")):
                env.delenv(name)
        env.setenv("TTS_ENGINE", "xtts")
        env.setenv("TTS_XTTS_MODEL_DIR", str(tiny_xtts_dir))
        env.setenv("TTS_XTTS_MAX_AUDIO_TOKENS", str(XTTS_TEST_MAX_AUDIO_TOKENS))
        env.setenv("TTS_XTTS_STREAM_CHUNK_TOKENS", str(XTTS_TEST_STREAM_CHUNK_TOKENS))
        env.setenv("TTS_DATA_DIR", str(tmp_path_factory.mktemp("modal-data")))
        env.setenv("TTS_PUBLIC_BASE_URL", f"http://127.0.0.1:{port}")
        store = SqliteTenantStore(Settings().sqlite_path)
        key = store.create_tenant("acme", UNLIMITED).api_key
        store.close()
        tts = modal_app.ServerlessTTS()
        # The first call runs @enter(snap=True), then @enter(snap=False), then the method.
        first = tts.run_job.local({"action": "health"}, api_key=key)
        yield LocalTTS(tts, key, port, first)
        tts.worker.close()  # what the @exit hook does: .local() never runs it


def test_modal_app_imports_in_a_fresh_process_with_no_token(tmp_path: Path) -> None:
    env = {k: v for k, v in clean_env(tmp_path / "data").items() if not k.startswith("MODAL_")}
    env["MODAL_CONFIG_PATH"] = str(tmp_path / "no-modal.toml")  # no ~/.modal.toml token either
    script = "import modal_app; print(modal_app.app.name, sorted(modal_app.app.registered_classes))"
    done = run_python(env, "-c", script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["serverless-tts", "['ServerlessTTS']"]


def test_the_suite_runs_with_no_modal_token_set() -> None:
    # A token would let a mistaken .remote() reach Modal (and bill it); CI must not set one.
    assert [name for name in TOKEN_VARS if name in os.environ] == []


def test_enter_hooks_load_on_the_cpu_then_start_the_worker_on_that_engine(
    local: LocalTTS,
) -> None:
    engine = local.tts.engine  # set by @enter(snap=True)
    worker = local.tts.worker  # set by @enter(snap=False), around the same engine
    assert worker.engines.default.engine is engine
    assert engine.name == "xtts" and engine.device == "cpu"
    assert local.first_reply["engine"] == "xtts"
    assert local.first_reply["model_version"] == engine.model_version


def test_local_calls_run_in_process_without_the_volume(local: LocalTTS) -> None:
    with pytest.warns(UserWarning, match=NO_VOLUME):
        reply = local.tts.run_job.local({"action": "voices"}, api_key=local.key)
    assert [voice["id"] for voice in reply["voices"]] == [f"builtin:{name}" for name in SPEAKERS]


def test_run_job_returns_base64_audio_that_ffprobe_accepts(local: LocalTTS) -> None:
    job = {"text": "Hello from Modal.", "format": "mp3", "delivery": "base64", "cache": False}
    reply = local.tts.run_job.local(job, api_key=local.key)
    audio = base64.b64decode(reply.pop("audio_base64"))
    assert reply["engine"] == "xtts" and reply["content_type"] == "audio/mpeg"
    assert len(audio) == reply["bytes"]
    assert audio_stream(ffprobe_json(audio, "mp3"))["codec_name"] == "mp3"
    json.dumps(reply)  # JSON-safe as it is: a caller can forward it
    assert local.key not in json.dumps(reply)


@pytest.mark.parametrize("api_key", ["stts_wrong", None])
def test_run_job_with_a_wrong_or_missing_key_returns_unauthorized(
    local: LocalTTS, api_key: str | None
) -> None:
    reply = local.tts.run_job.local({"text": "Hi."}, api_key=api_key)
    assert list(reply) == ["error"]
    assert reply["error"]["code"] == "unauthorized"
    assert "stts_wrong" not in reply["error"]["message"]


def test_run_job_refuses_stream_delivery_before_running_anything(local: LocalTTS) -> None:
    before = len(usage_rows(local.tts.worker))
    reply = local.tts.run_job.local({"text": "Hi.", "delivery": "stream"}, api_key=local.key)
    assert reply["error"]["code"] == "invalid_input"
    assert "stream_job" in reply["error"]["message"]
    assert len(usage_rows(local.tts.worker)) == before  # nothing charged, nothing logged


def test_stream_job_yields_start_then_audio_then_done(local: LocalTTS) -> None:
    job = {"text": "Streaming from Modal.", "format": "mp3", "cache": False}
    items = list(local.tts.stream_job.local(job, api_key=local.key))
    start, *chunks, done = items
    assert start["type"] == "start" and start["content_type"] == "audio/mpeg"
    assert done["type"] == "done" and done["request_id"] == start["request_id"]
    assert chunks and all(isinstance(chunk, bytes) for chunk in chunks)
    audio = b"".join(chunks)
    assert len(audio) == done["bytes"]
    assert audio_stream(ffprobe_json(audio, "mp3"))["codec_name"] == "mp3"


@pytest.mark.parametrize(
    ("job", "api_key", "code"),
    [
        ({"text": "Hi."}, "stts_wrong", "unauthorized"),
        ({"text": "Hi.", "delivery": "url"}, None, "invalid_input"),
        ({"action": "voices"}, None, "invalid_input"),
    ],
)
def test_stream_job_refusals_are_one_error_item(
    local: LocalTTS, job: dict[str, Any], api_key: str | None, code: str
) -> None:
    key = local.key if api_key is None else api_key
    [item] = list(local.tts.stream_job.local(job, api_key=key))
    assert item["type"] == "error" and item["error"]["code"] == code


def test_web_app_serves_the_warm_worker_over_http(local: LocalTTS) -> None:
    app = local.tts.web.local()
    with serve(app, local.port) as base, httpx.Client(base_url=base, timeout=120) as http:
        assert app.state.worker is local.tts.worker  # the same warm model as the methods
        health = http.get("/v1/health")
        assert health.status_code == 200 and health.json()["engine"] == "xtts"
        job = {"api_key": local.key, "text": "Over HTTP.", "format": "mp3"}
        reply = http.post("/runsync", json={"input": job}).json()
        assert reply["status"] == "COMPLETED", reply
        [result] = reply["output"]
        audio = http.get(result["url"])
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/mpeg"
    assert audio_stream(ffprobe_json(audio.content, "mp3"))["codec_name"] == "mp3"


def test_download_weights_refuses_until_the_licence_is_accepted() -> None:
    with pytest.raises(PermissionError, match="Coqui Public Model License"):
        modal_app.download_weights.local()
    with pytest.raises(PermissionError, match="--accept-cpml"):
        modal_app.download_weights.local(accept_cpml=False)


# What `modal deploy` sends for the class: modal 1.6.4 (pinned by the lock) keeps it in the
# loader of the class's service function, built when the module is imported.
DEPLOYED_OPTIONS = """
import json
import modal_app
from modal._utils.async_utils import synchronizer

service = modal_app.ServerlessTTS._get_class_service_function()
spec = service._spec_
load = synchronizer._translate_in(service)._load
sent = dict(zip(load.__code__.co_freevars, (cell.cell_contents for cell in load.__closure__)))
scaling = sent["autoscaler_settings"]
print(json.dumps({
    "gpu": spec.gpus,
    "secrets": [repr(secret) for secret in spec.secrets],
    "volumes": sorted(spec.volumes),
    "scaledown_window": scaling.scaledown_window,
    "min_containers": scaling.min_containers,
    "max_containers": scaling.max_containers,
    "buffer_containers": scaling.buffer_containers,
    "max_inputs": sent["max_concurrent_inputs"],
    "target_inputs": sent["target_concurrent_inputs_int"],
    "timeout": sent["timeout"],
    "memory_snapshot": sent["enable_memory_snapshot"],
    "experimental": sent["experimental_options"],
}))
"""


def _deployed(tmp_path: Path, knobs: dict[str, str]) -> dict[str, Any]:
    env = {k: v for k, v in clean_env(tmp_path / "data").items() if not k.startswith("MODAL_")}
    env["MODAL_CONFIG_PATH"] = str(tmp_path / "no-modal.toml")
    done = run_python({**env, **knobs}, "-c", DEPLOYED_OPTIONS)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_deploy_knobs_reach_the_options_modal_deploy_sends(tmp_path: Path) -> None:
    sent = _deployed(
        tmp_path,
        {
            "TTS_MODAL_GPU": "h100, l40s",
            "TTS_MODAL_SCALEDOWN_S": "900",
            "TTS_MODAL_MIN_CONTAINERS": "1",
            "TTS_MODAL_MAX_CONTAINERS": "5",
            "TTS_MODAL_BUFFER_CONTAINERS": "2",
            "TTS_MODAL_MAX_INPUTS": "8",
            "TTS_MODAL_TARGET_INPUTS": "6",
            "TTS_MODAL_TIMEOUT_S": "1200",
            "TTS_MODAL_SNAPSHOT": "gpu",
            "TTS_MODAL_SECRETS": "tts-prod, tts-s3",
        },
    )
    assert sent["gpu"] == ["H100", "L40S"]
    assert sent["secrets"][:2] == [
        "modal.Secret.from_name('tts-prod')",
        "modal.Secret.from_name('tts-s3')",
    ]
    assert sent["volumes"] == [modal_app.WEIGHTS_DIR]
    assert (sent["scaledown_window"], sent["timeout"]) == (900, 1200)
    assert (sent["min_containers"], sent["max_containers"], sent["buffer_containers"]) == (1, 5, 2)
    assert (sent["max_inputs"], sent["target_inputs"]) == (8, 6)
    assert sent["memory_snapshot"] is True
    assert sent["experimental"] == {"enable_gpu_snapshot": "True"}


def test_deploy_defaults_are_one_l40s_scaling_to_zero_with_a_cpu_snapshot(
    tmp_path: Path,
) -> None:
    sent = _deployed(tmp_path, {})
    assert sent["gpu"] == "L40S"
    assert sent["secrets"][0] == "modal.Secret.from_name('serverless-tts')"
    assert (sent["scaledown_window"], sent["min_containers"], sent["buffer_containers"]) == (
        300,
        0,
        0,
    )
    assert (sent["max_inputs"], sent["target_inputs"]) == (4, 0)  # 0: Modal's "unset"
    assert sent["memory_snapshot"] is True and sent["experimental"] == {}


def test_snapshot_off_and_no_secrets(tmp_path: Path) -> None:
    sent = _deployed(tmp_path, {"TTS_MODAL_SNAPSHOT": "off", "TTS_MODAL_SECRETS": ""})
    assert sent["memory_snapshot"] is False
    # Only the knob handed to the container's own import of modal_app.py is left.
    assert len(sent["secrets"]) == 1 and "from_name" not in sent["secrets"][0]


def test_a_bad_knob_stops_the_deploy_naming_the_variable(tmp_path: Path) -> None:
    env = {k: v for k, v in clean_env(tmp_path / "data").items() if not k.startswith("MODAL_")}
    done = run_python({**env, "TTS_MODAL_GPU": "L40"}, "-c", "import modal_app")
    assert done.returncode != 0
    assert "TTS_MODAL_GPU: unknown GPU type L40" in done.stderr
    assert "L40S" in done.stderr  # the types it could be


@pytest.mark.parametrize(
    ("knobs", "named"),
    [
        ({"TTS_MODAL_SCALEDOWN_S": "1"}, "TTS_MODAL_SCALEDOWN_S"),
        ({"TTS_MODAL_MAX_INPUTS": "0"}, "TTS_MODAL_MAX_INPUTS"),
        ({"TTS_MODAL_MIN_CONTAINERS": "-1"}, "TTS_MODAL_MIN_CONTAINERS"),
        ({"TTS_MODAL_GPU": "H100:2"}, "TTS_MODAL_GPU"),
        ({"TTS_MODAL_GPU": ""}, "TTS_MODAL_GPU"),
        ({"TTS_MODAL_SNAPSHOT": "disk"}, "TTS_MODAL_SNAPSHOT"),
        ({"TTS_MODAL_MAX_INPUTS": "2", "TTS_MODAL_TARGET_INPUTS": "3"}, "TTS_MODAL_TARGET_INPUTS"),
        ({"TTS_MODAL_MIN_CONTAINERS": "3", "TTS_MODAL_MAX_CONTAINERS": "2"}, "MAX_CONTAINERS"),
    ],
)
def test_bad_deploy_settings_are_invalid_config_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, knobs: dict[str, str], named: str
) -> None:
    for name, value in knobs.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(InvalidConfig, match=named):
        load_modal_deploy_settings()


def test_gpu_types_are_normalized_and_a_list_is_a_fallback_order() -> None:
    assert ModalDeploySettings(gpu="l40s").gpu_request == "L40S"
    assert ModalDeploySettings(gpu="h100!, a100-80gb").gpu_request == ["H100!", "A100-80GB"]
    assert ModalDeploySettings(secrets=" a, ,b ").secret_names == ["a", "b"]


# --- the telephony edge, a CPU function ---------------------------------------------------------

EDGE_OPTIONS = """
import json
import modal_app
from modal._utils.async_utils import synchronizer

edge = modal_app.edge
load = synchronizer._translate_in(edge)._load
sent = dict(zip(load.__code__.co_freevars, (cell.cell_contents for cell in load.__closure__)))
print(json.dumps({
    "gpu": edge._spec_.gpus,
    "secrets": [repr(secret) for secret in edge._spec_.secrets],
    "volumes": sorted(edge._spec_.volumes),
    "min_containers": sent["autoscaler_settings"].min_containers,
    "max_inputs": sent["max_concurrent_inputs"],
    "label": sent["webhook_config"].requested_suffix,
}))
"""


def test_the_edge_is_deployed_only_with_a_config_and_runs_on_no_gpu(tmp_path: Path) -> None:
    env = {k: v for k, v in clean_env(tmp_path / "data").items() if not k.startswith("MODAL_")}
    env["MODAL_CONFIG_PATH"] = str(tmp_path / "no-modal.toml")
    probe = "import modal_app; print(hasattr(modal_app, 'edge'))"
    assert run_python(env, "-c", probe).stdout.strip() == "False"
    config = tmp_path / "edge.toml"
    config.write_text(EDGE_TOML)
    knobs = {"TTS_MODAL_EDGE_CONFIG": str(config), "TTS_MODAL_EDGE_SECRETS": "acme-edge"}
    done = run_python({**env, **knobs}, "-c", EDGE_OPTIONS)
    assert done.returncode == 0, done.stderr
    sent = json.loads(done.stdout)
    assert sent["gpu"] is None and sent["volumes"] == []
    assert sent["secrets"][0] == "modal.Secret.from_name('acme-edge')"
    assert (sent["min_containers"], sent["max_inputs"]) == (1, 100)
    assert sent["label"] == "serverless-tts-edge"


def test_the_edge_functions_app_answers_a_signed_twilio_webhook(tmp_path: Path) -> None:
    """Modal's .local() runs the edge function in-process; its app is served over real HTTP,
    and a webhook signed as Twilio signs it gets TwiML (the worker is down: <Say>)."""
    config = tmp_path / "edge.toml"
    config.write_text(EDGE_TOML)
    probe = """
import httpx, threading, uvicorn
from twilio.request_validator import RequestValidator
import modal_app
from tests.servers import free_port, wait_for_port

app = modal_app.edge.local()
port = free_port()
server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
threading.Thread(target=server.run, daemon=True).start()
wait_for_port(port)
params = {"CallSid": "CA123", "From": "+15550001111", "To": "+15550002222"}
url = "https://edge.example.com/twilio/acme/voice"
signature = RequestValidator("tw-token").compute_signature(url, params)
reply = httpx.post(f"http://127.0.0.1:{port}/twilio/acme/voice", data=params,
                   headers={"X-Twilio-Signature": signature}, timeout=30)
unsigned = httpx.post(f"http://127.0.0.1:{port}/twilio/acme/voice", data=params, timeout=30)
print(reply.status_code, reply.headers["content-type"], unsigned.status_code, sep="|")
print(reply.text)
server.should_exit = True
"""
    env = {k: v for k, v in clean_env(tmp_path / "data").items() if not k.startswith("MODAL_")}
    env.update(
        MODAL_CONFIG_PATH=str(tmp_path / "no-modal.toml"),
        TTS_MODAL_EDGE_CONFIG=str(config),
        TTS_EDGE_CONFIG=str(config),
        TWILIO_AUTH_TOKEN="tw-token",
        ACME_TTS_API_KEY="stts_edge_test_key",
    )
    done = run_python(env, "-c", probe)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    [status_line] = [line for line in lines if line.count("|") == 2]
    status, content_type, unsigned = status_line.split("|")
    assert (status, unsigned) == ("200", "403") and content_type.startswith("text/xml")
    assert "<Say>Thanks for calling Acme.</Say>" in done.stdout and "<Gather" in done.stdout
    # The edge's events reach stdout, one JSON line per webhook (the Modal log).
    events = [json.loads(line) for line in lines if line.startswith('{"event"')]
    assert [event["response_type"] for event in events] == ["say", "refused"]
    assert "stts_edge_test_key" not in done.stdout + done.stderr
