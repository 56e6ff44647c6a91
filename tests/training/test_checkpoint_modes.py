"""Finished checkpoints get the modes a plain mkdir and open would give, not mkdtemp's 0700."""

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tunesmith.training.checkpoint import LoopState, save_best, save_checkpoint


@pytest.fixture(params=[0o022, 0o002, 0o077])
def umask(request) -> Iterator[int]:
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def modes(folder: Path) -> set[tuple[str, int]]:
    return {("d" if p.is_dir() else "f", stat.S_IMODE(p.stat().st_mode))
            for p in [folder, *folder.rglob("*")]}


def test_checkpoint_modes_follow_the_umask(tmp_path: Path, umask: int) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "f").write_text("x")
    expected = modes(plain)
    assert expected == {("d", 0o777 & ~umask), ("f", 0o666 & ~umask)}

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    state = LoopState(step=3)
    step = save_checkpoint(tmp_path / "run", state, {"w": torch.ones(2)},
                           optimizer.state_dict(), scheduler)
    best = save_best(tmp_path / "run", state, {"w": torch.ones(2)})
    assert modes(step) == expected and modes(best) == expected
