"""Token-by-token view of an encoded example with the supervised spans marked."""

from __future__ import annotations

from tunesmith.data.records import Conversation
from tunesmith.formatting.chat import IGNORE_INDEX, ChatFormatter

_ON, _OFF = "\033[1;32m", "\033[0m"


def render_preview(formatter: ChatFormatter, conv: Conversation, color: bool = False) -> str:
    """Decoded text where supervised spans are green (terminal) or inside [[ ]] markers."""
    example = formatter.encode(conv)
    tokenizer = formatter.tokenizer
    pieces: list[str] = []
    inside = False
    for token, label in zip(example.input_ids, example.labels, strict=True):
        supervised = label != IGNORE_INDEX
        if supervised != inside:
            pieces.append((_ON if supervised else _OFF) if color else
                          ("[[" if supervised else "]]"))
            inside = supervised
        pieces.append(tokenizer.decode([token]))
    if inside:
        pieces.append(_OFF if color else "]]")
    header = (f"--- {conv.ref}: {len(example.input_ids)} tokens, {example.supervised} "
              "supervised" + ("" if color else " (inside [[ ]])") + " ---")
    return header + "\n" + "".join(pieces)
