"""A real local fake of the Anthropic Messages API (``POST /v1/messages``) for tests.

``FakeAnthropic`` runs ``http.server.ThreadingHTTPServer`` on 127.0.0.1 in a thread.
``POST /v1/messages`` answers a text reply, as SSE when the request has ``stream: true``
(``message_start``, ``content_block_start``, ``content_block_delta`` text deltas,
``content_block_stop``, ``message_delta`` with ``stop_reason: end_turn``,
``message_stop``), else as one JSON message. ``POST /v1/messages/count_tokens`` answers
a count; anything else a small JSON 200 (clients probe). Every request is kept in
``requests`` as ``(method, path, headers, body)``; no key is checked, any dummy works.

    with FakeAnthropic(reply="Hello from the fake Claude.") as api:
        env = {"ANTHROPIC_BASE_URL": api.base_url, "ANTHROPIC_API_KEY": "sk-ant-test"}
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeAnthropic:
    def __init__(self, reply: str = "Hello from the fake Claude.", *, chunk_size: int = 8) -> None:
        self.reply = reply
        self.chunk_size = chunk_size
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def record(self, method: str, path: str, headers: dict[str, str], body: Any) -> None:
        with self._lock:
            self.requests.append((method, path, headers, body))

    def message_requests(self) -> list[dict[str, Any]]:
        """The bodies of ``POST /v1/messages`` so far."""
        with self._lock:
            return [body for method, path, _, body in self.requests if method == "POST" and path == "/v1/messages"]

    def wait_message_requests(self, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.message_requests()) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.message_requests()

    def start(self) -> FakeAnthropic:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _message(model: str, text: str, *, usage: dict[str, int]) -> dict[str, Any]:
    return {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": usage}  # fmt: skip


def _usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {"input_tokens": input_tokens, "output_tokens": output_tokens, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0}


def _events(model: str, text: str, chunk_size: int) -> list[tuple[str, dict[str, Any]]]:
    start = _message(model, "", usage=_usage(12, 1))
    start["content"], start["stop_reason"] = [], None
    events = [("message_start", {"type": "message_start", "message": start}),
              ("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "text", "text": ""}})]  # fmt: skip
    for i in range(0, len(text), chunk_size):
        delta = {"type": "text_delta", "text": text[i : i + chunk_size]}
        events.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}))
    events += [("content_block_stop", {"type": "content_block_stop", "index": 0}),
               ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                  "usage": _usage(12, max(1, len(text) // 4))}),
               ("message_stop", {"type": "message_stop"})]  # fmt: skip
    return events


def _handler(fake: FakeAnthropic):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                return json.loads(raw) if raw else None
            except ValueError:
                return raw.decode("utf-8", "replace")

        def _json(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("request-id", f"req_{uuid.uuid4().hex[:16]}")
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, model: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            for name, payload in _events(model, fake.reply, fake.chunk_size):
                self.wfile.write(f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode())
                self.wfile.flush()
            self.close_connection = True

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            body = self._body()
            fake.record("POST", path, dict(self.headers), body)
            if path == "/v1/messages/count_tokens":
                return self._json(200, {"input_tokens": 12})
            if path != "/v1/messages":
                return self._json(200, {})
            model = (body or {}).get("model") or "claude-fake" if isinstance(body, dict) else "claude-fake"
            if isinstance(body, dict) and body.get("stream"):
                return self._stream(model)
            return self._json(200, _message(model, fake.reply, usage=_usage(12, 8)))

        def do_GET(self) -> None:
            fake.record("GET", self.path, dict(self.headers), None)
            self._json(200, {"data": [], "has_more": False})

        def do_HEAD(self) -> None:
            fake.record("HEAD", self.path, dict(self.headers), None)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler
