"""A fake OpenAI-compatible chat server on 127.0.0.1 for endpoint and judge tests."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tunesmith.evaluation.endpoint import JUDGE_RUBRIC, MAX_REPLY_BYTES


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)  # type: ignore[attr-defined]
        faults = self.server.faults  # type: ignore[attr-defined]
        if faults:
            self._misbehave(faults.pop(0))
            return
        messages = body["messages"]
        if messages[0]["content"] == JUDGE_RUBRIC:
            reply = "UNSUPPORTED" if "Denver" in messages[-1]["content"] else "SUPPORTED."
        else:
            reply = self.server.answer  # type: ignore[attr-defined]
        payload = {"choices": [{"message": {"role": "assistant", "content": reply},
                                "finish_reason": "stop"}]}
        self._send(200, json.dumps(payload).encode())

    def _send(self, status: int, data: bytes, length: int | None = None,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data) if length is None else length))
        self.end_headers()
        self.wfile.write(data)

    def _misbehave(self, fault: str) -> None:
        """close: hang up without a reply; short: half the promised body; html: a web page;
        big: a body past the client's cap; a number: that HTTP status, with the header
        after it if one is given ("429 Retry-After: 7")."""
        if fault == "close":
            self.close_connection = True
        elif fault == "short":
            self._send(200, b'{"choices": [', length=400)
            self.close_connection = True
        elif fault == "html":
            self._send(200, b"<html><body>Welcome to nginx!</body></html>")
        elif fault == "big":
            self._send(200, b" " * (MAX_REPLY_BYTES + 10))
        else:
            status, _, header = fault.partition(" ")
            name, _, value = header.partition(": ")
            self._send(int(status), b'{"error": "busy"}', headers={name: value} if name else None)

    def log_message(self, *args) -> None:
        pass


class FakeOpenAI:
    """Context manager: `with FakeOpenAI(answer) as url:` gives http://127.0.0.1:PORT/v1."""

    def __init__(self, answer: object = "ok", faults: list[str] | None = None) -> None:
        """`answer` is the message content sent; `faults` are misbehaviours, one per request,
        before the server answers normally (see _Handler._misbehave)."""
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.answer = answer  # type: ignore[attr-defined]
        self.server.faults = list(faults or [])  # type: ignore[attr-defined]
        self.server.requests = []  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def requests(self) -> list[dict]:
        return self.server.requests  # type: ignore[attr-defined]

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
