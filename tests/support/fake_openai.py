"""A real local OpenAI-compatible HTTP server for tests, scripted per test.

``FakeOpenAI`` runs ``http.server.ThreadingHTTPServer`` in a thread and answers
``POST /v1/chat/completions`` with SSE streaming (text in chunks, tool-call fragments,
a usage chunk when ``stream_options.include_usage``) or a plain JSON body. Each reply
comes from the script: a list of :class:`Reply` consumed in order (the last one
repeats), or a callable ``(request_body) -> Reply``. Every request body is kept in
``requests`` so tests can assert what the model received.

    with FakeOpenAI([Reply(text="hi")]) as server:
        config = {"models": {"providers": {"fake": server.provider_config()}}, ...}
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


@dataclass
class Reply:
    text: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # [{name, arguments, id?}]
    delay_s: float = 0.0  # before the first chunk
    chunk_size: int = 8
    chunk_delay_s: float = 0.0
    status: int = 200  # != 200 answers an error body
    prompt_tokens: int = 11
    completion_tokens: int = 7


class FakeOpenAI:
    def __init__(self, script: list[Reply] | Callable[[dict], Reply] | None = None) -> None:
        self.script = script if script is not None else [Reply(text="Hello from the fake model.")]
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def provider_config(self, model: str = "fake-model") -> dict[str, Any]:
        return {"baseUrl": self.base_url, "apiKey": "sk-test", "api": "openai-completions",
                "models": [{"id": model, "name": model}]}  # fmt: skip

    def reply_for(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            self.requests.append(body)
            if callable(self.script):
                return self.script(body)
            index = min(len(self.requests) - 1, len(self.script) - 1)
            return self.script[index]

    def wait_requests(self, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.requests)

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _handler(fake: FakeOpenAI):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            self._json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._json(404, {"error": {"message": "not found"}})
                return
            reply = fake.reply_for(body)
            time.sleep(reply.delay_s)
            if reply.status != 200:
                self._json(reply.status, {"error": {"message": reply.text or "fake failure", "type": "server_error"}})
            elif body.get("stream"):
                self._stream(body, reply)
            else:
                self._json(200, _completion(body, reply))

        def _json(self, status: int, data: dict) -> None:
            raw = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _stream(self, body: dict, reply: Reply) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            for chunk in _chunks(body, reply):
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
                if reply.chunk_delay_s:
                    time.sleep(reply.chunk_delay_s)
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

    return Handler


def _calls(reply: Reply) -> list[dict[str, Any]]:
    return [{"id": call.get("id") or f"call_{uuid.uuid4().hex[:10]}", "name": call["name"],
             "arguments": json.dumps(call.get("arguments") or {})} for call in reply.tool_calls]  # fmt: skip


def _chunks(body: dict, reply: Reply):
    base = {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": body.get("model", "fake-model")}  # fmt: skip
    yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    size = max(1, reply.chunk_size)
    for start in range(0, len(reply.text), size):
        yield {**base, "choices": [{"index": 0, "delta": {"content": reply.text[start : start + size]}, "finish_reason": None}]}
    for index, call in enumerate(_calls(reply)):
        head = {"index": index, "id": call["id"], "type": "function", "function": {"name": call["name"], "arguments": ""}}
        yield {**base, "choices": [{"index": 0, "delta": {"tool_calls": [head]}, "finish_reason": None}]}
        half = len(call["arguments"]) // 2
        for part in (call["arguments"][:half], call["arguments"][half:]):
            fragment = {"index": index, "function": {"arguments": part}}
            yield {**base, "choices": [{"index": 0, "delta": {"tool_calls": [fragment]}, "finish_reason": None}]}
    finish = "tool_calls" if reply.tool_calls else "stop"
    yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                 "total_tokens": reply.prompt_tokens + reply.completion_tokens}  # fmt: skip
        yield {**base, "choices": [], "usage": usage}


def _completion(body: dict, reply: Reply) -> dict[str, Any]:
    calls = [{"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
             for c in _calls(reply)]  # fmt: skip
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
        "model": body.get("model", "fake-model"),
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
        "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                  "total_tokens": reply.prompt_tokens + reply.completion_tokens},
    }  # fmt: skip
