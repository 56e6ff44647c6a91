"""Exports get the modes a plain mkdir and open would give, not mkdtemp's 0700."""

import os
import stat
from pathlib import Path

from tunesmith.export.writers import atomic_dir


def test_export_modes_follow_the_umask(tmp_path: Path) -> None:
    for umask in (0o022, 0o002, 0o077):
        old = os.umask(umask)
        try:
            plain = tmp_path / f"plain-{umask:o}"
            plain.mkdir()
            (plain / "f").write_text("x")
            target = tmp_path / f"export-{umask:o}" / "adapter"
            with atomic_dir(target) as tmp:
                (tmp / "adapter_model.safetensors").write_bytes(b"x")
                os.chmod(tmp / "adapter_model.safetensors", 0o600)
                (tmp / "nested").mkdir(mode=0o700)
                (tmp / "nested" / "tokenizer.json").write_text("{}")
        finally:
            os.umask(old)
        folder_mode = stat.S_IMODE(plain.stat().st_mode)
        file_mode = stat.S_IMODE((plain / "f").stat().st_mode)
        for path in (target, target / "nested"):
            assert stat.S_IMODE(path.stat().st_mode) == folder_mode == 0o777 & ~umask
        for path in (target / "adapter_model.safetensors", target / "nested" / "tokenizer.json"):
            assert stat.S_IMODE(path.stat().st_mode) == file_mode == 0o666 & ~umask


def test_a_replaced_export_is_swapped_whole(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "export" / "merged"
    with atomic_dir(target) as tmp:
        (tmp / "model.safetensors").write_text("old")
    # a failure while writing the new one leaves the old one untouched
    try:
        with atomic_dir(target) as tmp:
            (tmp / "model.safetensors").write_text("half")
            raise RuntimeError("killed")
    except RuntimeError:
        pass
    assert (target / "model.safetensors").read_text() == "old"
    # the rename of the old folder aside fails: the old one is still whole at its place
    real_rename = Path.rename

    def refuse_old(self: Path, dest: Path) -> Path:
        if self == target:
            raise OSError("disk gone")
        return real_rename(self, dest)

    monkeypatch.setattr(Path, "rename", refuse_old)
    try:
        with atomic_dir(target) as tmp:
            (tmp / "model.safetensors").write_text("new")
    except OSError:
        pass
    assert (target / "model.safetensors").read_text() == "old"
    monkeypatch.setattr(Path, "rename", real_rename)
    with atomic_dir(target) as tmp:
        (tmp / "model.safetensors").write_text("new")
    assert (target / "model.safetensors").read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["merged"]  # nothing left aside
