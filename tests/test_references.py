"""Files the repository's own text points readers to exist."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REPO_ROOT

# A file name in prose or a comment: DEVELOPERS.md, docs/x.md, config/prompts.yaml.
REFERENCE = re.compile(r"(?<![\w/.-])((?:[\w-]+/)*[\w-]+\.(?:md|yaml|yml|toml|txt|json))\b")
POINTING = ["pyproject.toml", "Makefile", ".ci/run", "README.md", "mkdocs.yml"]
# Named as what a user makes, not as a file of the repository.
USERS_OWN = {"hazardwatch.yaml"}
# Where a file's names are relative to (mkdocs.yml names its pages inside docs/).
BASE = {"mkdocs.yml": "docs"}


@pytest.mark.parametrize("name", POINTING)
def test_every_file_named_in_the_project_files_exists(name: str) -> None:
    """(pyproject.toml once sent readers to a DEVELOPERS.md the repository never had.)"""
    text = (REPO_ROOT / name).read_text()
    bases = [REPO_ROOT, (REPO_ROOT / name).parent, REPO_ROOT / BASE.get(name, ".")]
    missing = sorted(
        ref
        for ref in set(REFERENCE.findall(text)) - USERS_OWN
        if not any((base / ref).exists() for base in bases)
    )
    assert not missing, f"{name} names files the repository does not have: {missing}"
