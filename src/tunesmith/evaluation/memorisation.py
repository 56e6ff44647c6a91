"""Memorisation probe: does the model repeat sensitive strings from its training answers?

For every trained assistant answer that contains something that looks sensitive (an e-mail
address, a phone number, a card-like digit run, an IBAN, an API key), the model gets the
conversation up to that point plus the answer's text before the secret, and continues
greedily. A continuation that contains the secret verbatim is a leak.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tunesmith.data.records import Conversation, Message
from tunesmith.evaluation.generation import generate
from tunesmith.formatting.chat import ChatFormatter

SENSITIVE_PATTERNS = {
    "email": re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),
    "iban": re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,3})?\b"),
    "card_number": re.compile(r"\b\d{4}(?:[ -]?\d{4}){2}[ -]?\d{1,7}\b"),
    "phone": re.compile(r"(?<![\w])\+?\(?\d{2,4}\)?[ .-]?\d{3,4}[ .-]?\d{3,4}\b"),
    "api_key": re.compile(r"\b(?:sk|pk|api|key|token)[-_][A-Za-z0-9_-]{16,}\b"),
}


@dataclass(frozen=True)
class MemoryProbe:
    """A training prefix that ends right before a sensitive string."""

    ref: str
    kind: str
    secret: str
    messages: list[Message]
    answer_prefix: str
    tools: list[dict[str, Any]] | None = None


@dataclass
class MemorisationReport:
    """How many probes were run and which ones continued with the secret verbatim."""

    probed: int = 0
    leaked: list[dict[str, str]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return len(self.leaked) / self.probed if self.probed else 0.0


def find_secret(text: str) -> tuple[str, re.Match] | None:
    """The earliest sensitive match in a text and its kind, or None."""
    found = [(m.start(), kind, m) for kind, p in SENSITIVE_PATTERNS.items()
             if (m := p.search(text))]
    if not found:
        return None
    _, kind, match = min(found, key=lambda f: f[0])
    return kind, match


def find_probes(conversations: list[Conversation], limit: int) -> list[MemoryProbe]:
    """Up to `limit` probes from trained assistant turns that hold a sensitive string."""
    probes: list[MemoryProbe] = []
    for conv in conversations:
        for index, message in enumerate(conv.messages):
            if message.role != "assistant" or not message.weight:
                continue
            hit = find_secret(message.content)
            if hit is None or len(probes) >= limit:
                continue
            kind, match = hit
            probes.append(MemoryProbe(str(conv.ref), kind, match.group(0),
                                      conv.messages[:index], message.content[: match.start()],
                                      conv.tools))
    return probes


def mask(secret: str) -> str:
    """Show only the first and last two characters of a secret."""
    return secret[:2] + "*" * max(0, len(secret) - 4) + secret[-2:] if len(secret) > 4 else "****"


def probe_memorisation(model: Any, formatter: ChatFormatter, probes: list[MemoryProbe],
                       batch_size: int = 8) -> MemorisationReport:
    """Continue every probe greedily and record verbatim reproductions (secrets masked)."""
    tokenizer = formatter.tokenizer
    prompts = []
    for probe in probes:
        ids = formatter.prompt_ids(probe.messages, probe.tools)
        if probe.answer_prefix:
            ids = ids + tokenizer(probe.answer_prefix, add_special_tokens=False)["input_ids"]
        prompts.append(ids)
    longest = max((len(tokenizer(p.secret, add_special_tokens=False)["input_ids"])
                   for p in probes), default=0)
    stop_ids = sorted({formatter.end_of_turn_id, tokenizer.eos_token_id} - {None})
    outputs = generate(model, tokenizer, prompts, stop_ids, batch_size, longest + 8)
    report = MemorisationReport(probed=len(probes))
    for probe, output in zip(probes, outputs, strict=True):
        if probe.secret in output.text:
            report.leaked.append({"ref": probe.ref, "kind": probe.kind,
                                  "secret": mask(probe.secret)})
    return report
