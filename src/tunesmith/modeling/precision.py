"""Pick numeric precision: warn about slow half precision on CPU, choose mixed precision.

On a CPU without native bf16/fp16 instructions (no AVX512-BF16 or AMX), half-precision
matmuls fall back to slow paths: training runs about 30x slower than in float32. A CPU with
AMX computes bf16 matrix products several times faster than float32 ones (5-6x measured on a
2-vCPU Xeon), so bf16 mixed precision is honoured there when asked for.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

HALF_DTYPES = ("bfloat16", "float16")
MIXED_PRECISIONS = ("auto", "no", "bf16", "fp16")
COPIES = "_tunesmith_half_copies"  # module attribute holding frozen_copy's casts


def cpu_has_fast_half(dtype: str) -> bool:
    """True when this CPU computes `dtype` (bfloat16 or float16) natively through oneDNN."""
    import torch

    check = {"bfloat16": "_is_mkldnn_bf16_supported",
             "float16": "_is_mkldnn_fp16_supported"}[dtype]
    try:
        return bool(getattr(torch.ops.mkldnn, check)())
    except (AttributeError, RuntimeError):
        return False


def slow_dtype_warning(dtype: str, device: str) -> str | None:
    """A warning when `dtype` would run on a CPU without fast half precision, else None."""
    if dtype not in HALF_DTYPES or device != "cpu" or cpu_has_fast_half(dtype):
        return None
    return (f"model.dtype {dtype} on this CPU: it has no native {dtype} support, so training "
            "and generation run about 30x slower than in float32; set model.dtype: float32 "
            "(the CPU default), or train on a GPU")


def gpu_supports_bf16() -> bool:
    """True when a CUDA GPU is present and computes bf16 natively (Ampere or newer)."""
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def resolve_mixed_precision(setting: str) -> str:
    """Return accelerate's mixed_precision for a config value: no, bf16 or fp16.

    On a GPU, auto means bf16 where the GPU supports it, else no (float32). On a CPU, bf16
    is used when asked for and the CPU computes bf16 natively; fp16, and bf16 on a CPU
    without it, fall back to no with a warning. auto stays float32 on CPUs, so a run gives
    the same numbers on every CPU; a CPU with native bf16 gets a line naming the option.
    """
    import torch

    if setting not in MIXED_PRECISIONS:
        raise ValueError(f"mixed precision {setting!r}: expected one of {MIXED_PRECISIONS}")
    if torch.cuda.is_available():
        if setting == "auto":
            return "bf16" if gpu_supports_bf16() else "no"
        return setting
    fast_bf16 = cpu_has_fast_half("bfloat16")
    if setting == "bf16" and fast_bf16:
        return "bf16"
    if setting == "fp16":
        logger.warning("training.mixed_precision fp16 ignored on CPU (no loss scaling there); "
                       "training stays float32%s", "; this CPU has native bf16: set "
                       "training.mixed_precision: bf16" if fast_bf16 else "")
    elif setting == "bf16":
        logger.warning("training.mixed_precision bf16 ignored: this CPU has no native bf16 "
                       "(AMX or AVX512-BF16) and would run it about 30x slower, so training "
                       "stays float32")
    elif setting == "auto" and fast_bf16:
        logger.info("this CPU computes bf16 natively: training.mixed_precision: bf16 trains "
                    "with bf16 matrix products (steps 1.6-1.9x faster on a 2-vCPU Xeon with "
                    "AMX; auto keeps float32)")
    return "no"


def launcher_precision_warning(setting: str, resolved: str) -> str | None:
    """A warning when `accelerate launch` asked for another mixed precision than this run's.

    The launcher passes its config file's (or --mixed_precision's) value to the workers as
    ACCELERATE_MIXED_PRECISION; tunesmith trains in `resolved`, from training.mixed_precision
    (`setting`). The launcher's `no` is its default whatever the file says, so it is no ask.
    """
    import os

    asked = os.environ.get("ACCELERATE_MIXED_PRECISION", "no").strip().lower()
    if asked in ("no", setting, resolved):
        return None
    used = "float32 (no mixed precision)" if resolved == "no" else resolved
    return (f"the accelerate launcher asks for mixed precision {asked} (its config file or "
            f"--mixed_precision), but training.mixed_precision is {setting}, so this run "
            f"trains in {used}; to train in {asked}, set training.mixed_precision: {asked} "
            f"in the run config (or add training.mixed_precision={asked})")


def autocast_dtype(device: str) -> Any:
    """The dtype autocast computes matrix products in on `device`, or None when it is off."""
    import torch

    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None


def frozen_copy(owner: Any, slot: str, tensor: Any, dtype: Any) -> Any:
    """`tensor`, the frozen `slot` ("weight", "bias") of module `owner`, in `dtype`: cast
    once and kept on `owner` while the tensor is unchanged. Autocast recasts weights that do
    not require gradients at every call, a pass over all of them per step; `release_copies`
    drops the copies. Nothing is kept for a sharded model (`keep_copies(model, False)`):
    each process would hold the whole model again."""
    if tensor is None or tensor.dtype == dtype:
        return tensor
    copies = owner.__dict__.setdefault(COPIES, {})
    if copies is None:
        return tensor.to(dtype)
    held = copies.get((slot, dtype))
    if held is None or held[0] is not tensor or held[1] != tensor._version:
        held = copies[slot, dtype] = (tensor, tensor._version, tensor.detach().to(dtype))
    return held[2]


def keep_copies(model: Any, keep: bool) -> None:
    """Let `frozen_copy` keep copies on `model`'s modules (the default) or not."""
    for module in model.modules():
        module.__dict__[COPIES] = {} if keep else None


def release_copies(model: Any) -> None:
    """Drop the copies `frozen_copy` kept on `model`'s modules."""
    for module in model.modules():
        module.__dict__.pop(COPIES, None)
