"""The overtraining signal: eval loss rising well above its best while training goes on."""

from __future__ import annotations

OVERTRAINING_MARGIN = 0.05


def overtraining_warning(history: list[tuple[int, float]]) -> str | None:
    """A warning when the newest eval loss rose and sits 5% above the best so far.

    `history` holds (step, eval loss) pairs in order; small rises between evaluations are
    noise and stay quiet.
    """
    if len(history) < 2:
        return None
    (_, before), (step, value) = history[-2], history[-1]
    best_step, best = min(history, key=lambda item: item[1])
    if value > before and value > best * (1 + OVERTRAINING_MARGIN):
        return (f"eval loss rose from {before:.4f} to {value:.4f} at step {step} (best "
                f"{best:.4f} at step {best_step}): the model may be overtraining")
    return None


def settle_overtraining(warnings: list[str], rises: list[tuple[int, str]], best_step: int | None,
                        best: float | None) -> list[str]:
    """`warnings` with each rise the run then recovered from (a new best eval loss came after
    it: `rises` holds (step, warning)) reworded, so a summary does not call it overtrained."""
    settled = list(warnings)
    for step, message in rises:
        if best_step is not None and best is not None and best_step > step:
            rise = message.split(": the model")[0]
            settled[settled.index(message)] = (f"{rise}; it then reached a new best {best:.4f} "
                                               f"at step {best_step}")
    return settled
