"""The CLI re-executes itself under tcmalloc/jemalloc when installed, exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tunesmith.errors import ConfigError
from tunesmith.training import allocator
from tunesmith.training.allocator import DONE, SETTING, find_allocator, relaunch_env

GLIBC_MAPS = "7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n"


@pytest.fixture
def maps(tmp_path: Path) -> Path:
    path = tmp_path / "maps"
    path.write_text(GLIBC_MAPS)
    return path


@pytest.fixture
def fake_library(monkeypatch: pytest.MonkeyPatch) -> str:
    found = {"jemalloc": "libjemalloc.so.2"}
    monkeypatch.setattr(allocator.ctypes.util, "find_library", found.get)
    return "libjemalloc.so.2"


def test_auto_preloads_an_installed_library_and_keeps_the_users_preload(fake_library, maps):
    env = relaunch_env({"LD_PRELOAD": "libmine.so", "PATH": "/bin"}, "linux", maps)
    assert env["LD_PRELOAD"] == f"{fake_library} libmine.so"
    assert env[DONE] == fake_library and env["PATH"] == "/bin"


def test_tcmalloc_comes_before_jemalloc(monkeypatch, maps):
    monkeypatch.setattr(allocator.ctypes.util, "find_library",
                        {"tcmalloc_minimal": "libtcmalloc_minimal.so.4",
                         "jemalloc": "libjemalloc.so.2"}.get)
    assert relaunch_env({}, "linux", maps)["LD_PRELOAD"] == "libtcmalloc_minimal.so.4"


@pytest.mark.parametrize("environ, platform", [
    ({SETTING: "system"}, "linux"),  # the user asked for glibc's malloc
    ({DONE: "libjemalloc.so.2"}, "linux"),  # already re-executed: never loop
    ({}, "darwin"),  # LD_PRELOAD is a Linux mechanism
])
def test_no_relaunch(environ, platform, fake_library, maps):
    assert relaunch_env(environ, platform, maps) is None


def test_no_relaunch_when_an_allocator_is_already_mapped(fake_library, tmp_path):
    maps = tmp_path / "maps"
    maps.write_text(GLIBC_MAPS + "7f02-7f03 r-xp 0 08:01 2 /opt/lib/libtcmalloc.so.4.5.9\n")
    assert relaunch_env({}, "linux", maps) is None


def test_nothing_installed_means_nothing_changes(monkeypatch, maps):
    monkeypatch.setattr(allocator.ctypes.util, "find_library", lambda name: None)
    assert relaunch_env({}, "linux", maps) is None


def test_a_path_setting_must_be_an_allocator_library(tmp_path):
    with pytest.raises(ConfigError, match=f"{SETTING}: .*no such file.*auto, system"):
        find_allocator(str(tmp_path / "libnothing.so"))
    with pytest.raises(ConfigError, match="no such file"):
        find_allocator(str(tmp_path))  # a folder
    text = tmp_path / "libtcmalloc.so"
    text.write_text("not a library")
    other = tmp_path / "libz.so.1"
    other.write_bytes(b"\x7fELF" + bytes(60))
    for path in (text, other):
        with pytest.raises(ConfigError, match="not a tcmalloc or jemalloc shared library"):
            find_allocator(str(path))
    library = tmp_path / "libjemalloc.so.2"
    library.write_bytes(b"\x7fELF" + bytes(60))
    assert find_allocator(str(library)) == str(library.resolve())


def test_a_library_by_name(fake_library, monkeypatch):
    assert find_allocator(" JEMALLOC ") == fake_library and find_allocator("Auto") == fake_library
    assert find_allocator("SYSTEM") is None
    with pytest.raises(ConfigError, match="tcmalloc: not installed"):
        find_allocator("tcmalloc")


def test_a_bad_setting_is_one_line_and_exit_2(tmp_path):
    env = {**os.environ, SETTING: str(tmp_path / "missing.so")}
    env.pop(DONE, None)
    proc = subprocess.run([sys.executable, "-m", "tunesmith.cli.main", "train", "x.yaml"],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    want = (f"tunesmith: error: {SETTING}: {tmp_path / 'missing.so'}: no such file; set it "
            "to auto, system, tcmalloc, jemalloc or the path of one of those libraries")
    assert proc.stderr.strip().splitlines() == [want]


@pytest.mark.skipif(not sys.platform.startswith("linux")
                    or find_allocator("auto") is None, reason="no tcmalloc/jemalloc installed")
def test_the_process_really_runs_under_the_library():
    code = ("from tunesmith.training.allocator import loaded_allocator, "
            "relaunch_with_allocator as r; r(); print(loaded_allocator())")
    env = {k: v for k, v in os.environ.items() if k not in (DONE, SETTING, "LD_PRELOAD")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout.split()
    assert out and any(k in out[-1] for k in ("tcmalloc", "jemalloc"))


def test_the_run_records_its_allocator(tmp_path):
    from tunesmith.rundir import package_versions

    assert package_versions()["allocator"] == (allocator.loaded_allocator() or "glibc")
