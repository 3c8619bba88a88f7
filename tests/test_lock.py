"""The lock: constraints.txt pins what the README's two commands install, within pyproject's ranges."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
# The extras `make demo` and `make test` install (the test extra pulls the serve extra).
LOCKED_EXTRAS = ("test", "serve")


def _pins() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for number, line in enumerate((ROOT / "constraints.txt").read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep, f"constraints.txt:{number}: {line!r} is not NAME==VERSION"
        pins[canonicalize_name(name)] = Version(version)
    return pins


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in LOCKED_EXTRAS:
        wanted += project["optional-dependencies"][extra]
    return [Requirement(text) for text in wanted if not text.startswith("llmgather")]


def test_every_pinned_version_is_within_the_range_pyproject_asks_for() -> None:
    pins = _pins()
    outside = [
        f"{req.name}=={pins[canonicalize_name(req.name)]} is outside {req}"
        for req in _requirements()
        if canonicalize_name(req.name) in pins
        and not req.specifier.contains(pins[canonicalize_name(req.name)], prereleases=True)
    ]
    assert not outside, "constraints.txt is stale, run `make lock`: " + "; ".join(outside)


def test_every_dependency_of_the_two_commands_is_pinned() -> None:
    if os.environ.get("LLMGATHER_LOCKING") == "1":
        # `make lock` runs the suite on the newest versions before it writes the lock: a
        # dependency just added to pyproject.toml is pinned by that very run.
        return
    pins = _pins()
    missing = sorted(req.name for req in _requirements() if canonicalize_name(req.name) not in pins)
    assert not missing, f"constraints.txt pins no version of {missing}: run `make lock`"
