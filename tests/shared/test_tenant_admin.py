"""``serverless-tts tenants ...`` against the embedded store, run for real through the CLI's
``main``: limits given as 0 mean unlimited, and refusals exit 2 with the error's code."""

from __future__ import annotations

from pathlib import Path

import pytest

from serverless_tts.cli import main


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TTS_DATA_DIR", str(tmp_path))
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> tuple[str, str]:
    assert main(list(argv)) == code
    captured = capsys.readouterr()
    return captured.out, captured.err


def tenant_id_of(created: str) -> str:
    """``tenant NAME (ID)`` on the first line of ``tenants create``."""
    return created.splitlines()[0].rsplit("(", 1)[1].rstrip(")")


def test_max_voices_0_means_unlimited(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    created, _ = run(capsys, "tenants", "create", "acme")
    tenant_id = tenant_id_of(created)
    assert "max-voices=10" in run(capsys, "tenants", "list")[0]

    limited, _ = run(capsys, "tenants", "set-limits", tenant_id, "--max-voices", "0")
    assert "max-voices=unlimited" in limited
    assert "max-voices=unlimited" in run(capsys, "tenants", "list")[0]
    # A flag not given keeps the limit: unlimited stays unlimited.
    run(capsys, "tenants", "set-limits", tenant_id, "--per-minute", "7")
    listed = run(capsys, "tenants", "list")[0]
    assert "per-minute=7" in listed and "max-voices=unlimited" in listed


def test_create_with_max_voices_0_is_unlimited(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "tenants", "create", "acme", "--max-voices", "0")
    assert "max-voices=unlimited" in run(capsys, "tenants", "list")[0]


@pytest.mark.parametrize("name", ["", " ", "two\nlines"])
def test_a_name_that_is_empty_or_has_control_characters_is_refused(
    data_dir: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    _, err = run(capsys, "tenants", "create", name, code=2)
    assert err.startswith("error: invalid_input: ")
    assert run(capsys, "tenants", "list")[0] == ""


def test_a_taken_name_is_a_conflict(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "tenants", "create", "acme")
    _, err = run(capsys, "tenants", "create", "acme", code=2)
    assert err.strip() == "error: conflict: a tenant named 'acme' already exists"


def test_usage_of_an_unknown_tenant_is_not_found(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, err = run(capsys, "tenants", "usage", "NOSUCH", code=2)
    assert err.startswith("error: not_found: ")
    assert out == ""  # no table header for a tenant that does not exist
