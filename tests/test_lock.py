"""The one lock: it matches pyproject.toml, and this test run is on exactly its versions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scripts.lockfile import (
    LOCK,
    PYPROJECT,
    check_installed,
    check_lock,
    installed_distributions,
    parse_lock,
)

REPO = Path(__file__).resolve().parents[1]
LOCK_TEXT = LOCK.read_text(encoding="utf-8")
PYPROJECT_TEXT = PYPROJECT.read_text(encoding="utf-8")


def test_the_lock_matches_pyproject() -> None:
    assert check_lock(PYPROJECT_TEXT, LOCK_TEXT) == []


def test_the_tests_run_on_exactly_the_locked_set() -> None:
    problems = check_installed(
        LOCK_TEXT, installed_distributions(), complete=True, project="serverless-tts"
    )
    assert problems == []


def test_transformers_is_pinned_to_the_release_that_works_with_coqui() -> None:
    from importlib.metadata import version

    packages, _ = parse_lock(LOCK_TEXT)
    assert packages["transformers"].version == "5.23.0" == version("transformers")
    assert '"transformers==5.23.0"' in PYPROJECT_TEXT


def test_every_locked_package_has_hashes_and_no_index_is_named() -> None:
    packages, options = parse_lock(LOCK_TEXT)
    assert len(packages) > 200 and options == []
    assert all(package.hashes > 0 for package in packages.values())
    assert "://" not in LOCK_TEXT


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (('"fastapi==0.165.0"', '"fastapi==0.166.0"'), "asks for fastapi==0.166.0"),
        (('"boto3==1.44.5",\n', ""), "boto3 is locked as a direct dependency"),
        (('"supabase==2.34.1",', '"supabase==2.34.1",\n    "left-pad==1.0",'), "not locked"),
        (('requires = ["setuptools==81.0.0"]', 'requires = ["setuptools==99"]'), "setuptools"),
    ],
)
def test_a_pyproject_edit_without_relocking_is_caught(edit: tuple[str, str], expected: str) -> None:
    old, new = edit
    assert old in PYPROJECT_TEXT
    problems = check_lock(PYPROJECT_TEXT.replace(old, new, 1), LOCK_TEXT)
    assert any(expected in problem for problem in problems), problems


def test_a_lock_with_an_index_url_or_a_missing_hash_is_caught() -> None:
    with_index = "--index-url https://mirror.example/simple\n" + LOCK_TEXT
    assert any("index" in problem for problem in check_lock(PYPROJECT_TEXT, with_index))
    first_pin = LOCK_TEXT.index("absl-py==")
    block_end = LOCK_TEXT.index("# via", first_pin)
    unhashed = LOCK_TEXT[:first_pin] + "absl-py==2.5.1\n    " + LOCK_TEXT[block_end:]
    assert any("no hashes" in problem for problem in check_lock(PYPROJECT_TEXT, unhashed))


def test_an_installed_version_off_the_lock_is_caught() -> None:
    installed = [("transformers", "5.24.0"), ("Serverless_TTS", "0.1.0"), ("left-pad", "1.0")]
    problems = check_installed(LOCK_TEXT, installed, complete=False, project="serverless-tts")
    assert problems == [
        "transformers==5.24.0 is installed; the lock has 5.23.0",
        "left-pad==1.0 is installed but not in the lock",
    ]


def test_the_check_command_fails_with_how_to_relock(tmp_path: Path) -> None:
    edited = tmp_path / "pyproject.toml"
    edited.write_text(PYPROJECT_TEXT.replace('"uvicorn==0.54.0"', '"uvicorn==0.55.0"'))
    done = subprocess.run(
        [sys.executable, "scripts/lockfile.py", "check", "--pyproject", str(edited)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "uvicorn==0.55.0" in done.stderr and "make lock" in done.stderr
