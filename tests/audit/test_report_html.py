"""The HTML data report renders in a real headless Chromium with every section and chart."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from planted import write_planted

from tunesmith.audit import AuditOptions, audit_data
from tunesmith.config import load_config
from tunesmith.data.checks.clusters import cluster_section
from tunesmith.reporting.html import SECTIONS, render_html

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("html")
    planted = write_planted(folder / "planted.jsonl")
    config = load_config(None, ["data.max_length=256", "audit.max_sensitive_rows=0"])
    report = audit_data([str(planted.path)], [str(planted.path)], config,
                        AuditOptions(progress=False))
    # clusters from made-up unit vectors: the chart needs no embedding model
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(40, 8)) + np.repeat(np.eye(4, 8) * 4, 10, axis=0)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    refs = [f"f:{i}" for i in range(40)]
    report["clusters"] = cluster_section(vectors, refs, refs, None, None, k=4)
    path = folder / "report.html"
    path.write_text(render_html(report), encoding="utf-8")
    return path


def _chromium(*args: str) -> subprocess.CompletedProcess:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=120, check=False)


def test_page_is_self_contained(page: Path) -> None:
    html = page.read_text()
    assert "<script" not in html and not re.search(r"(src|href)=\"https?:", html)


def test_screenshot_renders(page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    _chromium(f"--screenshot={shot}", "--window-size=1200,3000", page.as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1200, 3000)
    assert len(data) > 50_000  # a blank page compresses to a few kB


def test_rendered_dom_has_every_section_and_chart(page: Path) -> None:
    dom = _chromium("--dump-dom", page.as_uri()).stdout
    for section in SECTIONS:
        assert f'<section id="{section}">' in dom, section
    for chart in ("length-histogram", "duplicate-chart", "balance-chart", "cluster-chart"):
        assert re.search(rf'<figure id="{chart}"><svg', dom), chart
    assert "a threshold was broken" in dom
    assert "maria.lopez@example.org" not in dom
