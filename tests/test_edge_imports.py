"""The edge is small on purpose: a webhook answer must not wait for, or pay memory for, the
worker's engines. Loading the edge app and every worker client imports none of them."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from tests.processes import clean_env, run_python

# Top-level packages of the worker side: the engines' libraries and the worker's own code.
WORKER_SIDE = {"torch", "TTS", "piper", "onnxruntime", "transformers", "handlers", "shared"}
PROBE = """
import json, sys
import edge.app, edge.calls, edge.media, edge.workers.build
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_the_edge_app_and_its_worker_clients_import_nothing_of_the_worker(
    tmp_path: Path,
) -> None:
    done = run_python(clean_env(tmp_path / "data"), "-c", PROBE)
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    assert "edge" in loaded and "twilio" in loaded
    assert loaded & WORKER_SIDE == set()


def test_serverless_tts_edge_serve_is_a_command(tmp_path: Path) -> None:
    done = run_python(
        clean_env(tmp_path / "data"), "-m", "serverless_tts.cli", "edge", "serve", "--help"
    )
    assert done.returncode == 0, done.stderr
    assert "--config" in done.stdout and "TTS_EDGE_CONFIG" in done.stdout


EDGE_TOML = """
public_base_url = "https://edge.example.com"
[worker]
kind = "http"
url = "http://127.0.0.1:9"
[businesses.acme]
api_key_env = "ACME_TTS_API_KEY"
greeting = "Thanks for calling Acme."
fallback_text = "Sorry, one moment please."
responder_url = "https://acme.example.com/reply"
"""


def test_edge_serve_names_each_missing_secret_and_never_starts(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text(EDGE_TOML)
    env = {**clean_env(tmp_path / "data"), "ACME_TTS_API_KEY": "stts_secret_value"}
    done = run_python(env, "-m", "serverless_tts.cli", "edge", "serve", "--config", str(config))
    assert done.returncode == 2
    assert "TWILIO_AUTH_TOKEN" in done.stderr and "ACME_TTS_API_KEY" not in done.stderr
    assert "stts_secret_value" not in done.stderr + done.stdout


def test_any_asgi_host_gets_the_app_from_the_environment(tmp_path: Path) -> None:
    """``uvicorn edge.asgi:app``: uvicorn imports the module and looks ``app`` up, which builds
    the edge from TTS_EDGE_CONFIG; importing the module alone reads nothing."""
    config = tmp_path / "edge.json"
    config.write_text(json.dumps(tomllib.loads(EDGE_TOML)))
    probe = (
        "import edge.asgi, uvicorn.importer as imp\n"
        "app = imp.import_from_string('edge.asgi:app')\n"
        "print(sorted(route.path for route in app.routes))"
    )
    env = {
        **clean_env(tmp_path / "data"),
        "TTS_EDGE_CONFIG": str(config),
        "TWILIO_AUTH_TOKEN": "tw",
        "ACME_TTS_API_KEY": "k",
    }
    done = run_python(env, "-c", probe)
    assert done.returncode == 0, done.stderr
    assert "/twilio/{business}/voice" in done.stdout and "/health" in done.stdout
    bare = run_python(clean_env(tmp_path / "data"), "-c", "import edge.asgi")
    assert bare.returncode == 0, bare.stderr  # no config needed just to import it
