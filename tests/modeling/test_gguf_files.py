"""Damaged .gguf files are one user error naming the file, never a traceback."""

from pathlib import Path

import pytest

from tunesmith.cli.main import main
from tunesmith.modeling.loading import DEFAULT_MODEL, _alias_gguf

REPO = Path(__file__).resolve().parents[2]


def _estimate(model: Path, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    config = REPO / "examples" / "sample" / "config.yaml"
    code = main(["estimate", str(config), f"model.name={model}"])
    return code, capsys.readouterr().err.strip()


def test_truncated_gguf_is_a_user_error(tmp_path: Path, capsys) -> None:
    cut = tmp_path / "trunc.gguf"
    with _alias_gguf(DEFAULT_MODEL).open("rb") as whole:
        cut.write_bytes(whole.read(20_000_000))
    code, err = _estimate(cut, capsys)
    assert code == 2
    assert err.startswith(f"tunesmith: error: {cut}: damaged or truncated GGUF file "
                          "(20000000 bytes; the reader says: cannot reshape")
    assert err.endswith("copy or download it again") and "\n" not in err


@pytest.mark.parametrize("content", [b"hello\n", b""])
def test_text_named_gguf_is_a_user_error(tmp_path: Path, capsys, content: bytes) -> None:
    text = tmp_path / "notes.gguf"
    text.write_bytes(content)
    code, err = _estimate(text, capsys)
    assert code == 2
    assert err == (f"tunesmith: error: {text}: not a GGUF file (it starts with "
                   f"{content[:4]!r}, not b'GGUF'); name a .gguf model file, a model "
                   "directory or a hub id")
