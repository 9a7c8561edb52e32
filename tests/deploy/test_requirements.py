"""The dependency locks (requirements/): every dependency of an extra is pinned inside the range
pyproject.toml allows, every pinned line carries hashes, nothing is left unpinned. No network."""

from __future__ import annotations

import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from scripts.broker_config import ROOT

PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s\\;]+)")


def _lock(part: str) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes)."""
    pins: dict[str, tuple[str, int]] = {}
    current = ""
    for line in (ROOT / "requirements" / f"{part}.txt").read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if match := PIN.match(stripped):
            current = canonicalize_name(match[1])
            pins[current] = (match[2], 0)
        elif stripped.startswith("--hash=sha256:"):
            version, hashes = pins[current]
            pins[current] = (version, hashes + 1)
        else:
            pytest.fail(f"{part}.txt: unexpected line {line!r} (options or unpinned requirement)")
    return pins


@pytest.mark.parametrize("part", ["agent", "backend"])
def test_each_dependency_is_pinned_in_range_and_hashed(part: str) -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    pins = _lock(part)
    for spec in extras[part]:
        wanted = Requirement(spec)
        name = canonicalize_name(wanted.name)
        assert name in pins, f"{wanted.name} is not in requirements/{part}.txt: re-lock"
        assert wanted.specifier.contains(pins[name][0]), f"{name} {pins[name][0]} not {wanted}"
    unhashed = [name for name, (_v, hashes) in pins.items() if hashes == 0]
    assert unhashed == []
    assert "edgemon" not in pins  # the project itself is installed from its own wheel
