"""Checks that keep every install on the one lock (``requirements.lock``).

``check``: the lock still matches ``pyproject.toml``: every requirement (base, every extra and the
build backend) is locked at a version its specifier allows, the lock's direct dependencies are
exactly the project's, every package carries hashes, and no index URL is recorded (so any
mirror or private index serves the same install). ``make`` runs it before installing.

``installed``: the running environment holds only locked versions (``--complete``: all of them),
so tests and workers run on the set that was locked, not on whatever an index served that day.

Run with ``python scripts/lockfile.py check|installed``; exit status 1 lists what disagrees and
how to relock.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
PYPROJECT = ROOT / "pyproject.toml"
PROJECT_VIA = "(pyproject.toml)"
RELOCK_HINT = (
    "relock with `make lock` (uv pip compile pyproject.toml --all-extras --generate-hashes), "
    "then run the whole suite from a clean clone: "
    'd=$(mktemp -d) && git clone . "$d" && cd "$d" && make test'
)
# Lines a compiled lock must not carry: they would tie every install to one index host.
_INDEX_OPTIONS = ("-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--trusted-host")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")
_HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")
# What `python -m venv` seeds: an installer, not something the project imports.
_VENV_SEED = frozenset({"pip"})


@dataclass
class LockedPackage:
    name: str
    version: str
    hashes: int = 0
    via: set[str] = field(default_factory=set)


def canonical(name: str) -> str:
    """PEP 503 normalized name: ``Foo_Bar.baz`` and ``foo-bar-baz`` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(text: str) -> tuple[dict[str, LockedPackage], list[str]]:
    """Packages by canonical name, and option lines (``--index-url`` and the like) found."""
    packages: dict[str, LockedPackage] = {}
    options: list[str] = []
    current: LockedPackage | None = None
    in_via = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("-") and not line.startswith("--hash"):
            options.append(line)
            continue
        pin = _PIN.match(line) if not raw.startswith((" ", "#")) else None
        if pin is not None:
            current = LockedPackage(canonical(pin.group(1)), pin.group(2))
            packages[current.name] = current
            in_via = False
            current.hashes += len(_HASH.findall(line))
            continue
        if current is None:
            continue
        current.hashes += len(_HASH.findall(line))
        if line.startswith("# via"):
            rest = line.removeprefix("# via").strip()
            in_via = not rest
            if rest:
                current.via.add(rest)
        elif in_via and line.startswith("#"):
            current.via.add(line.lstrip("#").strip())
    return packages, options


def _project_requirements(pyproject: dict[str, object]) -> tuple[list[str], list[str]]:
    """(runtime requirements of the base and every extra, build-system requirements)."""
    project = pyproject["project"]
    assert isinstance(project, dict)
    runtime = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        runtime.extend(extra)
    build = pyproject.get("build-system", {})
    assert isinstance(build, dict)
    return runtime, list(build.get("requires", []))


def check_lock(pyproject_text: str, lock_text: str) -> list[str]:
    """Every way the lock disagrees with pyproject.toml (empty: they agree)."""
    from packaging.requirements import Requirement

    pyproject = tomllib.loads(pyproject_text)
    packages, options = parse_lock(lock_text)
    problems = [f"the lock names an index or link option: {option}" for option in options]
    runtime, build = _project_requirements(pyproject)
    project_name = canonical(str(pyproject["project"]["name"]))  # type: ignore[index]
    direct: set[str] = set()
    for text in [*runtime, *build]:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate(
            {"python_version": "3.11", "sys_platform": "linux", "extra": ""}
        ):
            continue
        name = canonical(requirement.name)
        if text in runtime:
            direct.add(name)
        locked = packages.get(name)
        if locked is None:
            problems.append(f"{requirement} is required by pyproject.toml but not locked")
        elif not requirement.specifier.contains(locked.version, prereleases=True):
            problems.append(
                f"pyproject.toml asks for {requirement}; the lock has {name}=={locked.version}"
            )
    locked_direct = {
        name
        for name, package in packages.items()
        if any(via.startswith(project_name) or PROJECT_VIA in via for via in package.via)
    }
    for name in sorted(locked_direct - direct):
        problems.append(f"{name} is locked as a direct dependency but pyproject.toml dropped it")
    problems.extend(
        f"{name}=={package.version} has no hashes"
        for name, package in sorted(packages.items())
        if package.hashes == 0
    )
    return problems


def check_installed(
    lock_text: str, installed: Iterable[tuple[str, str]], *, complete: bool, project: str
) -> list[str]:
    """Installed (name, version) pairs that are not the locked ones; with ``complete``, locked
    packages that are missing too. The project itself is not in its own lock, nor is the pip a
    venv is seeded with."""
    packages, _ = parse_lock(lock_text)
    seen: set[str] = set()
    problems = []
    for raw_name, version in installed:
        name = canonical(raw_name)
        if name == canonical(project) or name in seen or name in _VENV_SEED:
            continue
        seen.add(name)
        locked = packages.get(name)
        if locked is None:
            problems.append(f"{name}=={version} is installed but not in the lock")
        elif locked.version != version:
            problems.append(f"{name}=={version} is installed; the lock has {locked.version}")
    if complete:
        problems.extend(
            f"{name}=={packages[name].version} is locked but not installed"
            for name in sorted(set(packages) - seen)
        )
    return problems


def installed_distributions() -> list[tuple[str, str]]:
    return [(dist.metadata["Name"], dist.version) for dist in metadata.distributions()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["check", "installed"])
    parser.add_argument("--complete", action="store_true", help="installed: every locked package")
    parser.add_argument("--pyproject", type=Path, default=PYPROJECT)
    parser.add_argument("--lock", type=Path, default=LOCK)
    args = parser.parse_args(argv)
    lock_text = args.lock.read_text(encoding="utf-8")
    if args.what == "check":
        problems = check_lock(args.pyproject.read_text(encoding="utf-8"), lock_text)
        header = f"{args.lock.name} does not match {args.pyproject.name}:"
    else:
        problems = check_installed(
            lock_text, installed_distributions(), complete=args.complete, project="serverless-tts"
        )
        header = f"the environment at {sys.prefix} is not the locked set:"
    if problems:
        print(header, *(f"  - {problem}" for problem in problems), sep="\n", file=sys.stderr)
        print(RELOCK_HINT, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
