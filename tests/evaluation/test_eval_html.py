"""The HTML report: content, escaping, and a headless-Chromium screenshot."""

import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path
from types import SimpleNamespace

import pytest

from tunesmith.data.records import Message
from tunesmith.evaluation.eval_json import conclude
from tunesmith.evaluation.runner import EvalCase
from tunesmith.evaluation.suite import ModelResult
from tunesmith.reporting.eval_html import render_report, write_report

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def _payload():
    cases = [EvalCase([Message("user", f"question <{i}>")], f"answer {i}") for i in range(4)]
    base = ModelResult("base", "base model", ["x", "answer 1", "x", "x"], [True] * 4,
                       {"exact_match": [0.0, 1.0, 0.0, 0.0]}, {"exact_match": 0.25,
                                                               "accuracy": 0.25})
    tuned = ModelResult("tuned", "run", ["answer 0", "<b>bold</b>", "answer 2", "x"],
                        [True] * 4, {"exact_match": [1.0, 0.0, 1.0, 0.0]},
                        {"exact_match": 0.5, "accuracy": 0.5})
    objective = SimpleNamespace(task="Answer questions", output="text", source="none",
                                targets={"accuracy": ">= 0.85"}, gate_model=None)
    return conclude(cases, [base, tuned], objective, samples=200)[1]


def test_report_has_tables_examples_and_escapes_text():
    payload = _payload()
    assert payload["examples"]["regressed"][0]["index"] == 1
    html = render_report(payload)
    assert "<svg" in html and "MISS" in html and "Answer questions" in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold</b>" not in html
    assert "question &lt;1&gt;" in html  # the regressed example is shown
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")  # self-contained


def _png_pixels(data: bytes) -> tuple[int, int, int]:
    """Width, height and the number of distinct byte values in the image data."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    chunks, offset = b"", 8
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if kind == b"IDAT":
            chunks += data[offset + 8 : offset + 8 + length]
        offset += 12 + length
    return width, height, len(set(zlib.decompress(chunks)))


def test_report_renders_in_headless_chromium(tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed")
    report = tmp_path / "report.html"
    write_report(report, _payload())
    shot = tmp_path / "shot.png"
    profile = tempfile.mkdtemp()
    common = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    subprocess.run([*common, f"--screenshot={shot}", "--window-size=1200,1600",
                    report.as_uri()], check=True, capture_output=True, timeout=120)
    width, height, distinct = _png_pixels(shot.read_bytes())
    assert (width, height) == (1200, 1600)
    assert distinct > 20  # text, bars and table borders, not a blank page
    dom = subprocess.run([*common, "--dump-dom", report.as_uri()], check=True,
                         capture_output=True, text=True, timeout=120).stdout
    assert "tunesmith evaluation" in dom and "Regressed examples" in dom
    shutil.rmtree(profile, ignore_errors=True)
    Path(shot).unlink()


def test_eval_json_is_strict_json_even_with_an_infinite_perplexity(tmp_path) -> None:
    import json

    from tunesmith.evaluation.eval_json import write_eval_json

    def refuse(word: str) -> None:
        raise ValueError(f"{word} is not JSON")

    path = tmp_path / "eval.json"
    write_eval_json(path, {"models": {"base": {"perplexity": float("inf"), "eval_loss": 60.0}}})
    read = json.loads(path.read_text(), parse_constant=refuse)
    assert read == {"models": {"base": {"perplexity": None, "eval_loss": 60.0}}}
