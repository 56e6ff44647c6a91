"""OpenAI-compatible chat endpoints: a model to compare, and the optional hallucination judge.

Only the `/chat/completions` route is used, with greedy settings (temperature 0). The API key,
when needed, comes from $OPENAI_API_KEY and is sent only to the URL the config names.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from tunesmith.errors import TunesmithError

JUDGE_RUBRIC = (
    "You check whether an answer is supported by a source text. An answer is SUPPORTED when "
    "every claim, number, name and date in it is stated in or directly entailed by the "
    "source. It is UNSUPPORTED when any of them is missing from the source or contradicts "
    "it. Reply with exactly one word: SUPPORTED or UNSUPPORTED."
)


class EndpointError(TunesmithError):
    """An OpenAI-compatible endpoint could not be reached or answered unexpectedly."""


@dataclass
class ChatEndpoint:
    """A chat-completions endpoint: base URL (ending in /v1) and model name."""

    url: str
    model: str
    timeout_s: float = 120.0

    @classmethod
    def parse(cls, spec: str) -> ChatEndpoint:
        """Read `openai:http://host:port/v1#model-name`."""
        body = spec.removeprefix("openai:")
        url, sep, model = body.partition("#")
        if not url.startswith(("http://", "https://")) or not sep or not model:
            raise EndpointError(f"model {spec!r}: expected openai:http://HOST:PORT/v1#MODEL")
        return cls(url.rstrip("/"), model)

    def chat(self, messages: list[dict[str, str]], max_tokens: int) -> tuple[str, bool]:
        """The reply text and whether it stopped on its own (finish_reason 'stop')."""
        payload = {"model": self.model, "messages": messages, "max_tokens": max_tokens,
                   "temperature": 0}
        reply = self._post("/chat/completions", payload)
        try:
            choice = reply["choices"][0]
            return choice["message"]["content"] or "", choice.get("finish_reason") == "stop"
        except (KeyError, IndexError, TypeError):
            raise EndpointError(f"{self.url}: unexpected reply {str(reply)[:200]}") from None

    def _post(self, route: str, payload: dict[str, Any]) -> Any:
        headers = {"Content-Type": "application/json"}
        if os.environ.get("OPENAI_API_KEY"):
            headers["Authorization"] = f"Bearer {os.environ['OPENAI_API_KEY']}"
        request = urllib.request.Request(self.url + route, json.dumps(payload).encode(),
                                         headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read().decode("utf-8"))
        except (urllib.error.URLError, TimeoutError, ValueError) as err:
            raise EndpointError(f"{self.url}{route}: {err}; is the server running?") from None


def judge_verdict(reply: str) -> float | None:
    """1.0 for UNSUPPORTED, 0.0 for SUPPORTED, None for anything else."""
    words = reply.strip().split()
    word = words[0].strip(".:*").upper() if words else ""
    return {"UNSUPPORTED": 1.0, "SUPPORTED": 0.0}.get(word)


def judge_answers(endpoint: ChatEndpoint, sources: list[str], questions: list[str],
                  answers: list[str]) -> list[float | None]:
    """Ask the judge about every answer; unreadable verdicts count as not scored (None)."""
    verdicts = []
    for source, question, answer in zip(sources, questions, answers, strict=True):
        user = f"Source:\n{source}\n\nQuestion:\n{question}\n\nAnswer:\n{answer}"
        reply, _ = endpoint.chat([{"role": "system", "content": JUDGE_RUBRIC},
                                  {"role": "user", "content": user}], max_tokens=4)
        verdicts.append(judge_verdict(reply))
    return verdicts
