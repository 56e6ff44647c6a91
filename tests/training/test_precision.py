"""Half precision on a CPU without native support warns; mixed precision picks per device."""

import logging

import pytest
import torch

from tunesmith.modeling import precision


@pytest.fixture
def slow_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_fp16_supported", lambda: False)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_dtype_on_slow_cpu_warns_with_the_fix(slow_cpu, dtype) -> None:
    message = precision.slow_dtype_warning(dtype, "cpu")
    assert message is not None
    assert "30x slower" in message and "model.dtype: float32" in message


def test_no_warning_for_float32_gpu_or_a_fast_cpu(slow_cpu, monkeypatch) -> None:
    assert precision.slow_dtype_warning("float32", "cpu") is None
    assert precision.slow_dtype_warning("bfloat16", "cuda") is None
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert precision.slow_dtype_warning("bfloat16", "cpu") is None
    assert precision.slow_dtype_warning("float16", "cpu") is not None


def test_load_model_logs_the_warning(slow_cpu, toy_dir, caplog) -> None:
    from tunesmith.modeling.loading import load_model

    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        loaded = load_model(str(toy_dir), dtype="bfloat16")
    assert loaded.model.dtype == torch.bfloat16
    assert any("30x slower" in r.getMessage() for r in caplog.records)


def test_mixed_precision_is_float32_on_cpu(slow_cpu, caplog) -> None:
    assert precision.resolve_mixed_precision("auto") == "no"
    assert precision.resolve_mixed_precision("no") == "no"
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        assert precision.resolve_mixed_precision("bf16") == "no"
    assert "ignored" in caplog.text


def test_bf16_is_honoured_on_a_cpu_with_native_bf16(slow_cpu, monkeypatch, caplog) -> None:
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert precision.resolve_mixed_precision("bf16") == "bf16"
    with caplog.at_level(logging.INFO, logger="tunesmith"):
        assert precision.resolve_mixed_precision("auto") == "no"  # same numbers on every CPU
        assert precision.resolve_mixed_precision("fp16") == "no"
    assert "training.mixed_precision: bf16" in caplog.text
    assert "fp16 ignored on CPU" in caplog.text


@pytest.mark.parametrize(("launcher", "setting", "resolved", "warns"), [
    ("fp16", "no", "no", True), ("bf16", "auto", "no", True), ("fp16", "bf16", "bf16", True),
    ("no", "bf16", "bf16", False), ("fp16", "fp16", "fp16", False), ("bf16", "auto", "bf16", False),
    ("fp16", "fp16", "no", False),  # resolve_mixed_precision already says why fp16 is off
    (None, "auto", "no", False),
])
def test_a_launcher_asking_for_another_precision_is_named(monkeypatch, launcher, setting,
                                                         resolved, warns) -> None:
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    if launcher is not None:
        monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", launcher)
    message = precision.launcher_precision_warning(setting, resolved)
    assert (message is not None) == warns
    if warns:
        assert f"launcher asks for mixed precision {launcher}" in message
        assert f"training.mixed_precision is {setting}" in message
        assert f"set training.mixed_precision: {launcher}" in message


def test_frozen_copy_is_cast_once_and_again_after_a_change() -> None:
    owner = torch.nn.Linear(4, 3)
    weight = owner.weight.detach()
    first = precision.frozen_copy(owner, "weight", weight, torch.bfloat16)
    assert first.dtype == torch.bfloat16 and torch.equal(first, weight.to(torch.bfloat16))
    assert precision.frozen_copy(owner, "weight", weight, torch.bfloat16) is first
    assert precision.frozen_copy(owner, "weight", weight, torch.float32) is weight
    weight.add_(1.0)  # merged or edited in place: the copy is stale
    again = precision.frozen_copy(owner, "weight", weight, torch.bfloat16)
    assert again is not first and torch.equal(again, weight.to(torch.bfloat16))
    other = weight.clone()  # a new tensor in the slot (re-gathered): replaces, never adds
    precision.frozen_copy(owner, "weight", other, torch.bfloat16)
    assert len(owner.__dict__[precision.COPIES]) == 1
    precision.release_copies(torch.nn.Sequential(owner))
    assert precision.COPIES not in owner.__dict__
    precision.keep_copies(torch.nn.Sequential(owner), False)  # sharded: cast, keep nothing
    cast = precision.frozen_copy(owner, "weight", weight, torch.bfloat16)
    assert cast.dtype == torch.bfloat16 and owner.__dict__[precision.COPIES] is None


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bf16"), (False, "no")])
def test_auto_mixed_precision_follows_the_gpu(monkeypatch, bf16, expected) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert precision.resolve_mixed_precision("auto") == expected
    assert precision.resolve_mixed_precision("fp16") == "fp16"


def test_unknown_mixed_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="expected one of"):
        precision.resolve_mixed_precision("fp8")
