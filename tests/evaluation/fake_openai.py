"""A fake OpenAI-compatible chat server on 127.0.0.1 for endpoint and judge tests."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tunesmith.evaluation.endpoint import JUDGE_RUBRIC


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)  # type: ignore[attr-defined]
        messages = body["messages"]
        if messages[0]["content"] == JUDGE_RUBRIC:
            reply = "UNSUPPORTED" if "Denver" in messages[-1]["content"] else "SUPPORTED."
        else:
            reply = self.server.answer  # type: ignore[attr-defined]
        payload = {"choices": [{"message": {"role": "assistant", "content": reply},
                                "finish_reason": "stop"}]}
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


class FakeOpenAI:
    """Context manager: `with FakeOpenAI(answer) as url:` gives http://127.0.0.1:PORT/v1."""

    def __init__(self, answer: str = "ok") -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.answer = answer  # type: ignore[attr-defined]
        self.server.requests = []  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
