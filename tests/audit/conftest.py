"""Fixtures for the data-audit tests: datasets folder, model cache, planted-fault data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def datasets(datasets_dir: Path) -> Path:
    """The shared datasets folder (the suite-wide `datasets_dir` fixture)."""
    return datasets_dir


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keep converted models in $TUNESMITH_CACHE when set, else in one tmp dir per session."""
    if not os.environ.get("TUNESMITH_CACHE"):
        os.environ["TUNESMITH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    return Path(os.environ["TUNESMITH_CACHE"])


@pytest.fixture
def jsonl(write_jsonl):  # noqa: ANN001, ANN201
    """Write rows (dicts or raw strings) as JSONL and return the path (the shared fixture)."""
    return write_jsonl
