"""The README documents what the code does: every setting and every error code."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import ModalDeploySettings, Settings
from shared.errors import ErrorCode

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_documented(field: str) -> None:
    assert f"`TTS_{field.upper()}`" in README or f"(or `TTS_{field.upper()}`)" in README


@pytest.mark.parametrize("field", sorted(ModalDeploySettings.model_fields))
def test_every_modal_deploy_knob_is_documented(field: str) -> None:
    assert f"| `TTS_MODAL_{field.upper()}` |" in README


@pytest.mark.parametrize("code", [code.value for code in ErrorCode])
def test_every_error_code_is_documented(code: str) -> None:
    assert f"| `{code}` |" in README
