"""Micro-batches cut by a token budget: every example once, budgets kept, deterministic."""

import random

import pytest

from tunesmith.tokenization.batching import cut_by_budget, token_budget_batches


def _lengths(n: int = 400, seed: int = 7) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(3, 150) for _ in range(n)] + [400, 900]  # two beyond any budget


def test_cut_keeps_order_and_budget() -> None:
    lengths = [5, 5, 5, 20, 3, 3, 40, 1]
    assert cut_by_budget(list(range(8)), lengths, 15) == [[0, 1, 2], [3], [4, 5], [6], [7]]
    assert cut_by_budget([], lengths, 15) == []


@pytest.mark.parametrize("fill", [False, True])
@pytest.mark.parametrize("budget", [8, 160, 1000])
def test_every_example_once_and_no_batch_over_budget(budget: int, fill: bool) -> None:
    lengths = _lengths()
    batches = token_budget_batches(lengths, budget, seed=3, fill=fill)
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(len(lengths)))
    for batch in batches:
        assert batch
        tokens = sum(lengths[i] for i in batch)
        assert tokens <= budget or len(batch) == 1, (batch, tokens)
    alone = [b for b in batches if sum(lengths[i] for i in b) > budget]
    assert all(lengths[b[0]] > budget for b in alone)
    assert len(alone) == sum(1 for n in lengths if n > budget)


def test_budgets_are_filled() -> None:
    # greedy cuts close a batch only when the next example does not fit: two neighbouring
    # batches together always exceed the budget (the sorted cut) or nearly fill it (first fit)
    lengths = _lengths()
    budget = 600
    tokens = sum(min(n, budget) for n in lengths)
    for fill, share in ((False, 0.8), (True, 0.95)):
        batches = token_budget_batches(lengths, budget, seed=0, fill=fill)
        assert tokens / (len(batches) * budget) >= share, fill
    packed = token_budget_batches(lengths, budget, seed=0, fill=True)
    cut = token_budget_batches(lengths, budget, seed=0, fill=False)
    assert len(packed) < len(cut)


def test_sorted_cut_groups_alike_lengths() -> None:
    # padded micro-batches (packing off): rows of a batch have similar lengths
    lengths = _lengths()
    batches = token_budget_batches(lengths, 600, seed=1, fill=False)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded / sum(lengths) < 1.1
    rng = random.Random(1)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    unsorted = cut_by_budget(order, lengths, 600)  # control: no length grouping pads more
    assert sum(len(b) * max(lengths[i] for i in b) for b in unsorted) / sum(lengths) > 1.5


@pytest.mark.parametrize("fill", [False, True])
def test_deterministic_for_a_seed_and_different_across_seeds(fill: bool) -> None:
    lengths = _lengths()
    first = token_budget_batches(lengths, 300, seed=11, fill=fill)
    assert token_budget_batches(lengths, 300, seed=11, fill=fill) == first
    other = token_budget_batches(lengths, 300, seed=12, fill=fill)
    assert other != first
    assert {frozenset(b) for b in other} != {frozenset(b) for b in first}  # not just reordered
