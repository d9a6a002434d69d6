"""A release's version is written in three places; they must agree."""

from __future__ import annotations

import re
from pathlib import Path

import modalrec

ROOT = Path(__file__).resolve().parents[1]


def test_the_version_agrees_in_pyproject_the_package_and_the_changelog():
    project = re.search(r'^version = "([^"]+)"$', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert releases, "CHANGELOG.md has no '## [X.Y.Z] - YYYY-MM-DD' heading"
    assert project == modalrec.__version__ == releases[0]
