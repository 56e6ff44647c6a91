"""The streamed check and clean: results independent of chunking and worker count, and the
band-key search finds what exact comparison finds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from planted import write_planted

from tunesmith.audit import AuditOptions, audit_data
from tunesmith.config import load_config
from tunesmith.data.checks import features, minhash
from tunesmith.data.checks.duplicates import jaccard, shingles
from tunesmith.data.cleaning import CleanOptions, clean_data


def _without_timings(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != "timings_s"}


@pytest.fixture
def planted(tmp_path: Path):
    return write_planted(tmp_path / "planted.jsonl")


def test_check_is_the_same_for_any_chunk_size_and_worker_count(planted, monkeypatch) -> None:
    path = [str(planted.path)]
    options = AuditOptions(progress=False)
    one = audit_data(path, path, load_config(None, ["data.max_length=256"]), options)
    monkeypatch.setattr(features, "CHUNK", 7)  # many chunks, several in flight per worker
    two = audit_data(path, path, load_config(None, ["data.max_length=256", "data.workers=2"]),
                     options)
    assert _without_timings(one) == _without_timings(two)
    assert one["duplicates"]["exact_duplicate_rows"] > 0
    assert one["leakage"]["leaked_rows"] == one["schema_check"]["eval"]["usable"]


def test_clean_output_is_the_same_for_any_worker_count(planted, tmp_path, monkeypatch) -> None:
    options = CleanOptions(eval_fraction=0.2)
    one = clean_data([str(planted.path)], tmp_path / "one", options=options)
    monkeypatch.setattr(features, "CHUNK", 5)
    two = clean_data([str(planted.path)], tmp_path / "two", options=options, workers=2)
    assert one["outputs"] == two["outputs"] and one["counts"]["dropped_rows"] > 0
    for name in ("train.jsonl", "eval.jsonl", "rejects.jsonl"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_band_keys_find_near_pairs_and_skip_unrelated_rows() -> None:
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(5000)]
    texts = [" ".join(rng.choice(words, 40)) for _ in range(200)]
    base = texts[0].split()
    texts.append(" ".join(base[:-3] + ["x", "y", "z"]))  # 200: near copy of 0
    sets = [shingles(t) for t in texts]
    assert jaccard(sets[0], sets[200]) >= 0.7
    keys = minhash.band_keys(minhash.signatures(sets), 0.7)
    assert keys.shape == (201, minhash.band_shape(0.7)[0]) and keys.dtype == np.uint32
    pairs = minhash.candidate_pairs(keys)
    assert (0, 200) in pairs and len(pairs) < 5
    allowed = np.ones(201, bool)
    allowed[200] = False
    assert (0, 200) not in minhash.candidate_pairs(keys, allowed)


def test_band_shape_favours_recall() -> None:
    bands, rows = minhash.band_shape(0.7)
    assert bands * rows <= minhash.NUM_PERM
    assert 1 - (1 - 0.7**rows) ** bands > 0.85  # a pair right at the threshold
    assert 1 - (1 - 0.3**rows) ** bands < 0.05  # an unrelated pair


def test_features_hold_no_text(planted) -> None:
    job = features.ScanJob(lambda raw: _normalise(raw), 0.7)
    chunks = list(features.scan(job, features.chunked(features.numbered([planted.path], []))))
    for chunk in chunks:
        values = [v for column in chunk.columns.values() for v in column]
        assert all(v is None or isinstance(v, int) for v in values)
        assert all(a.dtype == np.uint32 for a in chunk.bands.values())


def _normalise(raw: object) -> tuple:
    from tunesmith.data.checks.rows import RowNormaliser

    return RowNormaliser("auto", None, None)(raw)


def test_distinct_word_pairs_exact_then_estimated(monkeypatch) -> None:
    from tunesmith.data.checks import extras as extras_module

    rng = np.random.default_rng(1)
    true = rng.integers(0, 2**63, 40_000, dtype=np.uint64)
    for sketch, exact in ((1 << 20, True), (4096, False)):
        monkeypatch.setattr(extras_module, "PAIR_SKETCH", sketch)
        totals = extras_module.Extras()
        for part in np.array_split(np.concatenate([true, true[:5000]]), 70):
            chunk = features.Chunk(extra={"pairs": [extras_module._spread(part)]})
            totals.merge(chunk)
        count, estimated = totals.distinct_pairs()
        assert estimated is not exact
        assert count == 40_000 if exact else abs(count - 40_000) < 40_000 * 0.05
