"""The n8n example (examples/n8n): it parses as an n8n export, its nodes say what the README says,
it carries no secrets, and its request to this product, run for real against the served app with
real Piper, gets back a URL that serves a WhatsApp voice note."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from shared.audio.voice_note import WHATSAPP_VOICE_NOTE_MAX_BYTES
from shared.config import Settings
from shared.engines.base import Engine
from tests.audio_probe import audio_stream, ffprobe_json
from tests.entrypoints.web_helpers import start_app

WORKFLOW_FILE = (
    Path(__file__).resolve().parents[1] / "examples" / "n8n" / "whatsapp_voice_note.json"
)
WORKFLOW: dict[str, Any] = json.loads(WORKFLOW_FILE.read_text(encoding="utf-8"))
NODES: dict[str, dict[str, Any]] = {node["name"]: node for node in WORKFLOW["nodes"]}

WEBHOOK = "n8n-nodes-base.webhook"
HTTP_REQUEST = "n8n-nodes-base.httpRequest"
# The origin the README tells users to replace with their deployment's.
PLACEHOLDER_ORIGIN = "https://tts.example.com"
# What a caller POSTs to the workflow's webhook; quotes and a newline, as real replies have.
INCOMING = {"to": "15551234567", "text": 'Your order "A-17" shipped today.\nIt arrives Thursday.'}


def of_type(node_type: str) -> list[dict[str, Any]]:
    return [node for node in WORKFLOW["nodes"] if node["type"] == node_type]


def chain() -> list[str]:
    """Node names from the trigger along each node's only main output."""
    [trigger] = of_type(WEBHOOK)
    names = [trigger["name"]]
    while names[-1] in WORKFLOW["connections"]:
        [[link]] = WORKFLOW["connections"][names[-1]]["main"]
        names.append(link["node"])
    return names


def source_of(name: str) -> str:
    """The node whose main output feeds ``name``: what ``$json`` means inside ``name``."""
    [source] = [
        src
        for src, outputs in WORKFLOW["connections"].items()
        for link in outputs["main"][0]
        if link["node"] == name
    ]
    return source


# --- n8n expressions, as far as this workflow uses them -----------------------------------------

_EXPRESSION = re.compile(r"\{\{\s*(.*?)\s*\}\}", re.DOTALL)
_STRINGIFY = re.compile(r"JSON\.stringify\((.+)\)")
_REFERENCE = re.compile(r"(?:\$json|\$\('(?P<node>[^']+)'\)\.item\.json)(?P<path>(?:\.\w+)*)")


def _resolve(reference: str, node: str, outputs: dict[str, Any]) -> Any:
    match = _REFERENCE.fullmatch(reference)
    assert match, f"{node}: unsupported reference {reference!r}"
    value = outputs[match["node"] or source_of(node)]
    for key in match["path"].split(".")[1:]:
        value = value[key]
    return value


def render_json_body(node: str, outputs: dict[str, Any]) -> Any:
    """The JSON n8n would send for ``node``'s ``jsonBody``, given each earlier node's output item.

    Only the forms this workflow uses are understood (``JSON.stringify`` of ``$json.a.b`` or of
    ``$('Node').item.json.a.b``), so anything else fails here instead of passing unread.
    """
    template = NODES[node]["parameters"]["jsonBody"]
    assert template.startswith("="), "an expression parameter starts with '='"

    def value(match: re.Match[str]) -> str:
        stringify = _STRINGIFY.fullmatch(match[1])
        assert stringify, f"{node}: unsupported expression {match[1]!r}"
        return json.dumps(_resolve(stringify[1], node, outputs))

    return json.loads(_EXPRESSION.sub(value, template[1:]))


def webhook_item(body: dict[str, Any]) -> dict[str, Any]:
    """What n8n's Webhook node outputs for a JSON POST: the parsed body under ``body``."""
    return {
        "headers": {"content-type": "application/json"},
        "params": {},
        "query": {},
        "body": body,
    }


SYNTHESIZE, SEND = chain()[1:]


# --- the export's shape --------------------------------------------------------------------------


def test_every_node_has_what_an_n8n_export_carries() -> None:
    assert isinstance(WORKFLOW["name"], str) and WORKFLOW["name"]
    assert WORKFLOW["settings"] == {"executionOrder": "v1"}
    for node in WORKFLOW["nodes"]:
        assert {"id", "name", "type", "typeVersion", "position", "parameters"} <= set(node)
        assert node["type"].startswith("n8n-nodes-base.")
        assert isinstance(node["typeVersion"], int | float) and node["typeVersion"] >= 1
        assert len(node["position"]) == 2 and all(isinstance(p, int) for p in node["position"])
        assert isinstance(node["parameters"], dict)
    names = [node["name"] for node in WORKFLOW["nodes"]]
    ids = [node["id"] for node in WORKFLOW["nodes"]]
    assert len(set(names)) == len(names) and len(set(ids)) == len(ids)


def test_connections_go_by_node_name_to_existing_nodes_on_main() -> None:
    assert set(WORKFLOW["connections"]) <= set(NODES)
    for outputs in WORKFLOW["connections"].values():
        assert set(outputs) == {"main"}
        for output in outputs["main"]:
            for link in output:
                assert link["node"] in NODES
                assert (link["type"], link["index"]) == ("main", 0)


def test_the_flow_is_trigger_then_synthesize_then_whatsapp_and_reaches_every_node() -> None:
    names = chain()
    assert sorted(names) == sorted(NODES)
    assert [NODES[name]["type"] for name in names] == [WEBHOOK, HTTP_REQUEST, HTTP_REQUEST]


def test_the_trigger_is_a_post_webhook_behind_header_auth() -> None:
    trigger = NODES[chain()[0]]
    params = trigger["parameters"]
    assert (params["httpMethod"], params["authentication"]) == ("POST", "headerAuth")
    assert params["path"] and trigger["webhookId"]
    assert set(trigger["credentials"]) == {"httpHeaderAuth"}


@pytest.mark.parametrize("name", [SYNTHESIZE, SEND])
def test_http_nodes_are_v4_2_json_posts_with_a_header_auth_credential(name: str) -> None:
    node = NODES[name]
    params = node["parameters"]
    assert node["typeVersion"] == 4.2
    assert (params["method"], params["sendBody"], params["specifyBody"]) == ("POST", True, "json")
    assert params["authentication"] == "genericCredentialType"
    assert params["genericAuthType"] == "httpHeaderAuth"
    credential = node["credentials"]["httpHeaderAuth"]
    assert set(credential) == {"id", "name"} and credential["id"].startswith("REPLACE_")
    # Secrets live in credentials only, never in a header typed into the node.
    assert not params.get("sendHeaders") and "headerParameters" not in params


def test_each_service_has_its_own_credential() -> None:
    credentials = [node["credentials"]["httpHeaderAuth"] for node in WORKFLOW["nodes"]]
    assert len({c["id"] for c in credentials}) == len({c["name"] for c in credentials}) == 3


# --- the request bodies --------------------------------------------------------------------------


def test_the_synthesize_node_asks_this_product_for_a_voice_note_url() -> None:
    params = NODES[SYNTHESIZE]["parameters"]
    assert urlsplit(params["url"]).path == "/v1/synthesize-url"
    body = render_json_body(SYNTHESIZE, {chain()[0]: webhook_item(INCOMING)})
    # The reply's text comes through intact, quotes and newline included.
    assert body == {"text": INCOMING["text"], "format": "voice_note"}


def test_the_whatsapp_node_sends_that_url_as_a_voice_note_to_the_caller() -> None:
    url = urlsplit(NODES[SEND]["parameters"]["url"])
    assert (url.scheme, url.netloc) == ("https", "graph.facebook.com")
    assert re.fullmatch(r"/v21\.0/REPLACE_PHONE_NUMBER_ID/messages", url.path)
    note_url = "https://tts.example.com/audio/tts/t/piper/note.ogg?expires=1&sig=x"
    outputs = {chain()[0]: webhook_item(INCOMING), SYNTHESIZE: {"url": note_url}}
    assert render_json_body(SEND, outputs) == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": INCOMING["to"],
        "type": "audio",
        "audio": {"link": note_url, "voice": True},
    }


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


# A token: 20+ characters of mixed case and digits (keys, Meta access tokens). Node ids (UUIDs,
# lower case) and the REPLACE_ placeholders (upper case) are not.
_TOKEN = re.compile(r"[A-Za-z0-9_\-]{20,}")


def _looks_secret(text: str) -> bool:
    if re.search(r"stts_|Bearer\s|\bEAA[A-Za-z0-9]{10}", text):
        return True
    return any(
        re.search(r"[a-z]", token) and re.search(r"[A-Z]", token) and re.search(r"[0-9]", token)
        for token in _TOKEN.findall(text)
    )


def test_the_file_holds_no_secret_looking_values() -> None:
    assert not [text for text in _strings(WORKFLOW) if _looks_secret(text)]
    # The check itself catches what it is for.
    assert _looks_secret("Bearer stts_0a1b2c3d_" + "Ab3" * 15)
    assert _looks_secret("EAAGm0PX4ZCpsBAKZCfakeTokenZCZBZAexample")


# --- the product-side request, for real ----------------------------------------------------------


def test_the_workflows_request_to_this_product_gets_a_url_serving_a_voice_note(
    settings: Settings, piper_engine: Engine
) -> None:
    with ExitStack() as stack:
        served = start_app(stack, settings, piper_engine)
        tenant_key = served.new_key()
        params = NODES[SYNTHESIZE]["parameters"]
        # The two edits the README asks for: this deployment's origin, and the credential
        # (httpHeaderAuth sends its Name: Value as a header).
        assert params["url"].startswith(PLACEHOLDER_ORIGIN)
        url = str(served.http.base_url).rstrip("/") + params["url"][len(PLACEHOLDER_ORIGIN) :]
        body = render_json_body(SYNTHESIZE, {chain()[0]: webhook_item(INCOMING)})

        answer = served.http.post(url, json=body, headers={"Authorization": f"Bearer {tenant_key}"})
        assert answer.status_code == 200, answer.text
        result = answer.json()

        # What the WhatsApp node then sends, and what Meta would fetch from its link.
        send = render_json_body(SEND, {chain()[0]: webhook_item(INCOMING), SYNTHESIZE: result})
        note = served.http.get(send["audio"]["link"])
        assert note.status_code == 200
        assert note.headers["content-type"] == "audio/ogg"
        assert len(note.content) == result["bytes"] < WHATSAPP_VOICE_NOTE_MAX_BYTES
        probe = ffprobe_json(note.content, "ogg")
        assert probe["format"]["format_name"] == "ogg"
        stream = audio_stream(probe)
        assert (stream["codec_name"], stream["channels"]) == ("opus", 1)
