"""The lock files pin every dependency pyproject.toml declares, with hashes (issue: supply chain).

CI and the image install from ``requirements/*.lock`` with ``--require-hashes``; a dependency
added to pyproject.toml but not locked would make that install fail late, so say it here first.
``make lock`` refreshes all three (``rdkafka.lock``: the image with the librdkafka publisher).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[3]


def name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def locked(path: Path) -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;\\]+)", path.read_text(), re.M)
    return {name(n): v for n, v in pins}


PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


@pytest.mark.parametrize(
    ("lock", "requirements"),
    [
        ("runtime.lock", PROJECT["dependencies"]),
        ("dev.lock", PROJECT["dependencies"] + PROJECT["optional-dependencies"]["dev"]),
        ("rdkafka.lock", PROJECT["dependencies"] + PROJECT["optional-dependencies"]["rdkafka"]),
    ],
)
def test_every_declared_dependency_is_locked_with_hashes(
    lock: str, requirements: list[str]
) -> None:
    path = ROOT / "requirements" / lock
    pins = locked(path)
    missing = sorted({name(r) for r in requirements} - set(pins))
    assert not missing, f"{lock} lacks {missing}: run `make lock`"
    for requirement in map(Requirement, requirements):
        pinned = pins[name(requirement.name)]
        assert requirement.specifier.contains(pinned, prereleases=True), (
            f"{lock} pins {requirement.name}=={pinned}, outside {requirement.specifier}"
        )
    text = path.read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 1)[1])
    unhashed = [b.split(" ")[0] for b in blocks if "==" in b and "--hash=sha256:" not in b]
    assert not unhashed, f"{lock}: pins without a hash: {unhashed}"
