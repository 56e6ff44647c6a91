"""OpenAI-compatible chat endpoints: a model to compare, and the optional hallucination judge.

Only the `/chat/completions` route is used, with greedy settings (temperature 0). The API key,
when needed, comes from $OPENAI_API_KEY and is sent only to the URL the config names.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timezone
from typing import Any

from tunesmith.errors import TunesmithError

logger = logging.getLogger(__name__)

# a chat reply is a few KiB; a body past this is a misconfigured server, not an answer
MAX_REPLY_BYTES = 16 * 1024 * 1024
# statuses a busy or restarting server gives; asked again after a pause
RETRY_STATUSES = (429, 502, 503, 504)
# statuses whose Retry-After header (seconds or an HTTP-date) replaces the fixed pause; a
# longer wait than the cap is cut to it, so one busy server cannot stall an evaluation for hours
RETRY_AFTER_STATUSES = (429, 503)
RETRY_AFTER_CAP_S = 60.0

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
    retry_delays_s: tuple[float, ...] = (1.0, 2.0, 4.0)
    # the pause between tries; tests pass a recorder so they need not wait
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    @classmethod
    def parse(cls, spec: str) -> ChatEndpoint:
        """Read `openai:http://host:port/v1#model-name`."""
        body = spec.removeprefix("openai:")
        url, sep, model = body.partition("#")
        if not url.startswith(("http://", "https://")) or not sep or not model:
            raise EndpointError(f"model {spec!r}: expected openai:http://HOST:PORT/v1#MODEL")
        return cls(url.rstrip("/"), model)

    def chat(self, messages: list[dict[str, str]], max_tokens: int,
             tools: list[dict[str, Any]] | None = None) -> tuple[str, bool]:
        """The reply text and whether it stopped on its own (finish_reason 'stop').

        `tools` (OpenAI form) go in the request only when there are some.
        """
        payload: dict[str, Any] = {"model": self.model, "messages": messages,
                                   "max_tokens": max_tokens, "temperature": 0}
        if tools:
            payload["tools"] = tools
        reply = self._post("/chat/completions", payload)
        try:
            choice = reply["choices"][0]
            content = choice["message"]["content"]
            stopped = choice.get("finish_reason") == "stop"
        except (KeyError, IndexError, TypeError, AttributeError):
            raise EndpointError(f"{self.url}: unexpected reply {str(reply)[:200]}; expected "
                                "choices[0].message.content") from None
        return self._content_text(content), stopped

    def _content_text(self, content: Any) -> str:
        """The reply text: a string, or the text parts of a list of content parts joined."""
        if content is None:
            return ""
        if isinstance(content, str):
            return content
        if isinstance(content, list) and all(_is_text_part(p) for p in content):
            return "".join(p.get("text", "") for p in content if p.get("type", "text") == "text")
        raise EndpointError(f"{self.url}: message.content is {type(content).__name__} "
                            f"{str(content)[:100]}; expected a string or a list of text parts")

    def _post(self, route: str, payload: dict[str, Any]) -> Any:
        """POST JSON and read the JSON reply, asking again after transient failures."""
        headers = {"Content-Type": "application/json"}
        if os.environ.get("OPENAI_API_KEY"):
            headers["Authorization"] = f"Bearer {os.environ['OPENAI_API_KEY']}"
        where, body = self.url + route, json.dumps(payload).encode()
        delays = list(self.retry_delays_s)
        while True:
            request = urllib.request.Request(where, body, headers, method="POST")
            try:
                return _json_reply(where, self._read(request))
            except _Transient as err:
                if not delays:
                    raise EndpointError(f"{where}: {err}; gave up after "
                                        f"{len(self.retry_delays_s) + 1} tries") from None
                delay, why = delays.pop(0), ""
                if err.retry_after_s is not None:
                    delay = min(err.retry_after_s, RETRY_AFTER_CAP_S)
                    why = f" (Retry-After {err.retry_after_s:g}s, at most {RETRY_AFTER_CAP_S:g}s)"
                logger.warning("%s: %s; asking again in %gs%s", where, err, delay, why)
                self.sleep(delay)

    def _read(self, request: urllib.request.Request) -> bytes:
        """The reply body; _Transient for failures worth another try, EndpointError else."""
        where = request.full_url
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                body = response.read(MAX_REPLY_BYTES + 1)
                promised = response.headers.get("Content-Length", "")
        except urllib.error.HTTPError as err:
            if err.code in RETRY_STATUSES:
                wait = (retry_after_s(err.headers.get("Retry-After"))
                        if err.code in RETRY_AFTER_STATUSES and err.headers else None)
                raise _Transient(f"HTTP {err.code} {err.reason}", wait) from None
            raise EndpointError(f"{where}: HTTP {err.code} {err.reason}: "
                                f"{_snippet(err.read(400))}") from None
        except (http.client.IncompleteRead, ConnectionResetError, ConnectionAbortedError,
                BrokenPipeError) as err:
            # RemoteDisconnected is a ConnectionResetError: the server closed without a reply
            raise _Transient(_describe(err)) from None
        except urllib.error.URLError as err:
            reason = err.reason
            if isinstance(reason, ConnectionResetError | ConnectionAbortedError):
                raise _Transient(_describe(reason)) from None
            raise EndpointError(f"{where}: {reason}; is the server running?") from None
        except (TimeoutError, http.client.HTTPException, OSError) as err:
            raise EndpointError(f"{where}: {_describe(err)}") from None
        if len(body) > MAX_REPLY_BYTES:
            raise EndpointError(f"{where}: reply larger than {MAX_REPLY_BYTES >> 20} MiB; "
                                "expected a chat-completions JSON reply")
        # a sized read returns what came before the server hung up, without IncompleteRead
        if promised.isdigit() and len(body) < int(promised):
            raise _Transient(f"reply cut short ({len(body)} of {promised} bytes)")
        return body


class _Transient(Exception):
    """A failure that another try may not meet: a dropped connection or a busy server, with
    the pause the server asked for (Retry-After, seconds) when it named one."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


_DELAY_SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?")  # RFC 9110: digits; a fraction is read too


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Seconds a Retry-After header asks to wait (delay-seconds or an HTTP-date, RFC 9110
    10.2.3); None when absent or unreadable. A date in the past gives 0. `now`: Unix time."""
    text = (value or "").strip()
    if not text:
        return None
    if _DELAY_SECONDS.fullmatch(text):  # ASCII digits only: no sign, "_" or other scripts
        return float(text)  # a huge value is capped by the caller, like any long one
    if text[:1].isdigit() or text[:1] in "+-.":
        return None  # a number, but not delay-seconds ("1.5", "-0", "+3", "1_000")
    return _seconds_until(text, time.time() if now is None else now)


def _seconds_until(date: str, now: float) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP-date is GMT; a zone-less one is read as such
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - now)


def _is_text_part(part: Any) -> bool:
    return isinstance(part, dict) and (part.get("type", "text") != "text"
                                       or isinstance(part.get("text"), str))


def _describe(err: BaseException) -> str:
    if isinstance(err, http.client.IncompleteRead):
        return f"reply cut short ({len(err.partial)} bytes, {err.expected} more expected)"
    if isinstance(err, http.client.RemoteDisconnected):
        return "server closed the connection without replying"
    if isinstance(err, TimeoutError):
        return "no reply before the timeout"
    return f"{type(err).__name__}: {err}"


def _snippet(body: bytes) -> str:
    text = " ".join(body[:200].decode("utf-8", "replace").split())
    return repr(text) if text else "(empty body)"


def _json_reply(where: str, body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        raise EndpointError(f"{where}: reply is not JSON: {_snippet(body)}; expected an "
                            "OpenAI-compatible chat-completions reply") from None


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
