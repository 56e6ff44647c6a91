"""The data order of training: which examples each process trains on at each optimizer step.

Both schedules are pure functions of (lengths, config, world size, step): a resumed run asks
for step k and gets exactly the examples the uninterrupted run trained on at step k.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math

from tunesmith.config.schema import TrainingConfig
from tunesmith.tokenization.batching import length_grouped_batches, token_budget_batches

logger = logging.getLogger(__name__)


class Schedule:
    """Deterministic data order: global micro-batches of `batch_size * world` examples."""

    def __init__(self, lengths: list[int], cfg: TrainingConfig, world: int) -> None:
        self.lengths = lengths
        self.cfg = cfg
        self.world = world
        self.global_batch = cfg.batch_size * world
        self.per_epoch = math.ceil(len(lengths) / self.global_batch)
        self._cache: dict[int, list[list[int]]] = {}

    def total_steps(self) -> int:
        steps_per_epoch = math.ceil(self.per_epoch / self.cfg.grad_accum)
        total = math.ceil(self.cfg.epochs * steps_per_epoch)
        return min(total, self.cfg.max_steps) if self.cfg.max_steps else total

    def epoch_at(self, step: int) -> float:
        """Epochs done after `step` optimizer steps (the metrics' epoch column)."""
        return step / max(1, math.ceil(self.per_epoch / self.cfg.grad_accum))

    def micro_batches(self, step: int, rank: int) -> list[list[int]]:
        """Example indices of this rank's micro-batches for optimizer step `step`.

        Every rank gets the same number of micro-batches; a share is empty when the last
        global batch of an epoch has fewer examples than processes need.
        """
        out = []
        for k in range(step * self.cfg.grad_accum, (step + 1) * self.cfg.grad_accum):
            epoch, index = divmod(k, self.per_epoch)
            if epoch not in self._cache:
                self._cache = {epoch: length_grouped_batches(
                    self.lengths, self.global_batch, self.cfg.seed + epoch)}
            rows = self._cache[epoch][index]
            out.append(rows[rank * self.cfg.batch_size : (rank + 1) * self.cfg.batch_size])
        return out


def budget_batches(lengths: list[int], cfg: TrainingConfig, epoch: int) -> list[list[int]]:
    """Epoch `epoch` cut into micro-batches of at most `cfg.batch_tokens` tokens: filled to
    the brim when packed (no padding), alike in length when padded."""
    return token_budget_batches(lengths, cfg.batch_tokens or 0, cfg.seed + epoch,
                                fill=cfg.packing)


def epoch_budget_counts(lengths: list[int], cfg: TrainingConfig) -> list[int]:
    """Budget micro-batches (all processes together) in each epoch the run touches.

    The cut follows each epoch's shuffle, so counts can differ by a few between epochs.
    """
    return [len(budget_batches(lengths, cfg, e)) for e in range(max(1, math.ceil(cfg.epochs)))]


def stream_micro_batches(per_epoch: list[int], epochs: float) -> int:
    """Global micro-batches in `epochs` epochs of `per_epoch[e]` each (a fraction rounds up)."""
    whole, part = int(epochs), epochs - int(epochs)
    total = sum(per_epoch[:whole])
    return total + (math.ceil(part * per_epoch[whole]) if part > 0 else 0)


def stream_steps(per_epoch: list[int], epochs: float, grad_accum: int,
                 max_steps: int | None) -> int:
    """Optimizer steps over the micro-batch stream: `grad_accum` per step, the last may hold
    fewer; capped at `max_steps`."""
    total = math.ceil(stream_micro_batches(per_epoch, epochs) / grad_accum)
    return min(total, max_steps) if max_steps else total


class BudgetSchedule(Schedule):
    """Deterministic data order by token budget (`training.batch_tokens`).

    Each epoch is cut into micro-batches of at most `batch_tokens` tokens; global micro-batch
    g deals the budget micro-batches g * world ... g * world + world - 1 to ranks 0 ... world-1
    (a rank past the epoch's end gets an empty share). Epochs follow each other as one stream
    of global micro-batches, `grad_accum` per optimizer step.
    """

    def __init__(self, lengths: list[int], cfg: TrainingConfig, world: int) -> None:
        self.lengths = lengths
        self.cfg = cfg
        self.world = world
        counts = epoch_budget_counts(lengths, cfg)
        self.epoch_sizes = [math.ceil(n / world) for n in counts]  # global micro-batches
        self.per_epoch = self.epoch_sizes[0]
        self.starts = [0, *itertools.accumulate(self.epoch_sizes)]
        self.total_micro = stream_micro_batches(self.epoch_sizes, cfg.epochs)
        self._cache = {}

    def total_steps(self) -> int:
        cfg = self.cfg
        return stream_steps(self.epoch_sizes, cfg.epochs, cfg.grad_accum, cfg.max_steps)

    def epoch_at(self, step: int) -> float:
        micro = min(step * self.cfg.grad_accum, self.total_micro)
        epoch = min(bisect.bisect_right(self.starts, micro) - 1, len(self.epoch_sizes) - 1)
        return epoch + (micro - self.starts[epoch]) / max(1, self.epoch_sizes[epoch])

    def micro_batches(self, step: int, rank: int) -> list[list[int]]:
        """Example indices of this rank's micro-batches for optimizer step `step`.

        Every rank gets the same number of micro-batches (the run's last step may have fewer
        than `grad_accum`); a share past the end of an epoch's budget batches is empty.
        """
        first = step * self.cfg.grad_accum
        out = []
        for k in range(first, min(first + self.cfg.grad_accum, self.total_micro)):
            epoch = bisect.bisect_right(self.starts, k) - 1
            if epoch not in self._cache:
                self._cache = {epoch: budget_batches(self.lengths, self.cfg, epoch)}
            batches = self._cache[epoch]
            slot = (k - self.starts[epoch]) * self.world + rank
            out.append(batches[slot] if slot < len(batches) else [])
        return out


def schedule_for(lengths: list[int], cfg: TrainingConfig, world: int) -> Schedule:
    """The schedule the config asks for: token budgets when `batch_tokens` is set."""
    if not cfg.batch_tokens:
        return Schedule(lengths, cfg, world)
    over = sum(1 for n in lengths if n > cfg.batch_tokens)
    if over:
        logger.info("%d examples are longer than training.batch_tokens=%d; each trains in a "
                    "micro-batch of its own", over, cfg.batch_tokens)
    if cfg.batch_tokens * world >= sum(lengths):
        logger.warning("training.batch_tokens=%d holds the whole training set (%d tokens%s): "
                       "each epoch is a single optimizer step", cfg.batch_tokens, sum(lengths),
                       f" over {world} processes" if world > 1 else "")
    return BudgetSchedule(lengths, cfg, world)
