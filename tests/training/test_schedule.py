"""The loop's data order with token budgets: dealing to ranks, epochs, steps and determinism."""

import math
import random

import pytest

from tunesmith.config.schema import TrainingConfig
from tunesmith.training.schedule import (
    BudgetSchedule,
    Schedule,
    epoch_budget_counts,
    schedule_for,
)


def _lengths(n: int = 300) -> list[int]:
    rng = random.Random(5)
    return [rng.randint(4, 120) for _ in range(n)] + [700]  # one longer than the budget


def _epochs(schedule: Schedule, world: int) -> list[list[list[list[int]]]]:
    """Every step's micro-batches of every rank: [step][rank][micro-batch] -> indices."""
    return [[schedule.micro_batches(step, rank) for rank in range(world)]
            for step in range(schedule.total_steps())]


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("packing", [True, False])
def test_every_example_once_per_epoch_and_ranks_run_alike(world: int, packing: bool) -> None:
    lengths = _lengths()
    cfg = TrainingConfig(batch_tokens=500, epochs=2, grad_accum=1, packing=packing, seed=2)
    schedule = schedule_for(lengths, cfg, world)
    assert isinstance(schedule, BudgetSchedule)
    steps = _epochs(schedule, world)
    assert len(steps) == sum(schedule.epoch_sizes)
    for step in steps:
        assert len({len(share) for share in step}) == 1  # same count on every rank
        for share in step:
            for rows in share:
                tokens = sum(lengths[i] for i in rows)
                assert tokens <= 500 or len(rows) == 1
    start = 0
    for size in schedule.epoch_sizes:  # with grad_accum 1 an epoch is `size` steps
        seen = [i for step in steps[start:start + size] for share in step for rows in share
                for i in rows]
        assert sorted(seen) == list(range(len(lengths)))
        start += size
    # empty shares only where an epoch's budget batches run out before the last ranks
    empty = [rows for step in steps for share in step for rows in share if not rows]
    assert len(empty) == sum(math.ceil(n / world) * world - n
                             for n in epoch_budget_counts(lengths, cfg))


def test_rank_r_takes_the_r_th_budget_batch() -> None:
    from tunesmith.training.schedule import budget_batches

    lengths = _lengths()
    cfg = TrainingConfig(batch_tokens=400, epochs=1, seed=9)
    cut = budget_batches(lengths, cfg, 0)
    two = schedule_for(lengths, cfg, 2)
    assert two.per_epoch == math.ceil(len(cut) / 2)
    for step in range(two.total_steps()):
        for rank in range(2):
            slot = step * 2 + rank
            assert two.micro_batches(step, rank) == [cut[slot] if slot < len(cut) else []]


def test_deterministic_and_resumable_and_seeded() -> None:
    lengths = _lengths()
    cfg = TrainingConfig(batch_tokens=300, epochs=3, grad_accum=2, seed=4)
    a, b = schedule_for(lengths, cfg, 2), schedule_for(lengths, cfg, 2)
    order = _epochs(a, 2)
    # a fresh schedule asked for steps out of order (as a resumed run does) agrees
    for step in reversed(range(b.total_steps())):
        assert [b.micro_batches(step, r) for r in range(2)] == order[step]
    other = schedule_for(lengths, TrainingConfig(batch_tokens=300, epochs=3, grad_accum=2,
                                                 seed=5), 2)
    assert _epochs(other, 2)[:3] != order[:3]
    # the epochs differ from each other too: each has its own shuffle
    one = schedule_for(lengths, TrainingConfig(batch_tokens=300, epochs=2, seed=4), 1)
    size = one.epoch_sizes[0]
    first = {frozenset(rows) for (share,) in _epochs(one, 1)[:size] for rows in share}
    second = {frozenset(rows) for (share,) in _epochs(one, 1)[size:] for rows in share}
    assert first != second


@pytest.mark.parametrize(("epochs", "accum", "max_steps"),
                         [(1.0, 1, None), (2.5, 3, None), (3.0, 2, 7), (0.3, 1, None)])
def test_steps_follow_the_micro_batch_stream(epochs: float, accum: int,
                                             max_steps: int | None) -> None:
    lengths = _lengths()
    cfg = TrainingConfig(batch_tokens=350, epochs=epochs, grad_accum=accum,
                         max_steps=max_steps)
    schedule = schedule_for(lengths, cfg, 1)
    sizes = schedule.epoch_sizes
    assert len(sizes) == math.ceil(epochs)
    micro = sum(sizes[:int(epochs)]) + math.ceil((epochs % 1) * sizes[-1])
    expected = math.ceil(micro / accum)
    assert schedule.total_steps() == (min(expected, max_steps) if max_steps else expected)
    last = schedule.micro_batches(expected - 1, 0)
    assert len(last) == micro - (expected - 1) * accum  # the last step may hold fewer
    assert schedule.epoch_at(expected) == pytest.approx(epochs, abs=1 / sizes[-1])


def test_no_budget_keeps_the_example_count_schedule() -> None:
    lengths = _lengths()
    cfg = TrainingConfig(batch_size=4, grad_accum=2)
    schedule = schedule_for(lengths, cfg, 2)
    assert type(schedule) is Schedule
    assert schedule.per_epoch == math.ceil(len(lengths) / 8)
    assert all(len(rows) == 4 for rows in schedule.micro_batches(0, 1))


def test_a_checkpoint_remembers_its_budget(tmp_path) -> None:
    from tunesmith.config.schema import RunConfig
    from tunesmith.errors import CheckpointError
    from tunesmith.pipeline import _fingerprint
    from tunesmith.training.checkpoint import check_fingerprint

    config = RunConfig()
    assert _fingerprint(config)["batch"] == [8, 1, 0]  # unset: earlier checkpoints still match
    config.training.batch_tokens = 512
    saved = _fingerprint(config)
    assert saved["batch"] == [8, 1, 0, 512, True]
    config.training.batch_tokens = 1024
    with pytest.raises(CheckpointError, match=r"\(training.batch_tokens: 512 in the "
                                              r"checkpoint, 1024 now\)"):
        check_fingerprint(tmp_path, saved, _fingerprint(config))


def test_a_budget_holding_the_whole_set_warns(caplog) -> None:
    lengths = [10, 20, 30]
    with caplog.at_level("WARNING", logger="tunesmith"):
        schedule = schedule_for(lengths, TrainingConfig(batch_tokens=60, epochs=2), 1)
    assert schedule.total_steps() == 2
    assert "holds the whole training set (60 tokens): each epoch is a single optimizer step" \
        in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="tunesmith"):
        schedule_for(lengths, TrainingConfig(batch_tokens=59), 1)
    assert "whole training set" not in caplog.text
