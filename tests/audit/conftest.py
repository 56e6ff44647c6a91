"""Fixtures for the data-audit tests: datasets folder, model cache, planted-fault data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def datasets() -> Path:
    """The shared datasets folder ($TUNESMITH_DATASETS, default ../shared/datasets)."""
    path = Path(os.environ.get("TUNESMITH_DATASETS", REPO.parent / "shared" / "datasets"))
    if not path.is_dir():
        pytest.skip(f"shared datasets not found at {path}")
    return path


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keep converted models in $TUNESMITH_CACHE when set, else in one tmp dir per session."""
    if not os.environ.get("TUNESMITH_CACHE"):
        os.environ["TUNESMITH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    return Path(os.environ["TUNESMITH_CACHE"])


@pytest.fixture
def jsonl(tmp_path: Path):
    """Write rows (dicts or raw strings) as JSONL and return the path."""

    def write(rows: list, name: str = "data.jsonl") -> Path:
        path = tmp_path / name
        lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    return write
