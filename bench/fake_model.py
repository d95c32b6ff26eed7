"""A fake OpenAI-compatible model server for benchmarks and interop tests (loopback only).

    python bench/fake_model.py --port 18900 [--delay-ms 0] [--slow-ms 1000] [--log requests.jsonl]

Speaks ``POST /v1/chat/completions`` (streaming SSE with ``stream_options.include_usage``,
or one JSON response) and ``GET /v1/models``. Every reply is the fixed text ``REPLY``.
The delay before the first token is ``--delay-ms``, or ``--slow-ms`` when the requested
model id contains ``slow`` (so one server serves an instant and a 1 s model). With
``--log``, each request body is appended as one JSON line (what the model "saw");
``GET /_stats`` answers ``{"requests": n, "inflight": n, "maxInflight": n}``.

Plain asyncio streams, HTTP/1.1 keep-alive, no dependencies: thousands of concurrent
slow requests cost one coroutine each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from pathlib import Path

REPLY = "Hello from the fake model."
MODELS = ("fake-instant", "fake-slow")
MAX_BODY = 64 * 1024 * 1024


class FakeModel:
    def __init__(self, *, delay_ms: float, slow_ms: float, log_path: Path | None) -> None:
        self.delay_ms = delay_ms
        self.slow_ms = slow_ms
        self.log = log_path.open("a") if log_path else None
        self.requests = 0
        self.inflight = 0
        self.max_inflight = 0

    # --- HTTP plumbing -------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()

    async def _one_request(self, reader, writer) -> bool:
        line = await reader.readline()
        if not line:
            return False
        method, path, _ = line.decode("latin-1").split(" ", 2)
        headers = await _read_headers(reader)
        length = min(int(headers.get("content-length", "0")), MAX_BODY)
        body = await reader.readexactly(length) if length else b""
        keep_alive = headers.get("connection", "").lower() != "close"
        await self._route(method, path.split("?")[0], body, writer)
        return keep_alive

    async def _route(self, method: str, path: str, body: bytes, writer) -> None:
        if method == "POST" and path.endswith("/chat/completions"):
            await self._completions(json.loads(body or b"{}"), writer)
        elif method == "GET" and path.endswith("/models"):
            data = [{"id": m, "object": "model", "owned_by": "fake"} for m in MODELS]
            _send_json(writer, 200, {"object": "list", "data": data})
        elif method == "GET" and path == "/_stats":
            stats = {"requests": self.requests, "inflight": self.inflight, "maxInflight": self.max_inflight}
            _send_json(writer, 200, stats)
        else:
            _send_json(writer, 404, {"error": {"message": f"no route {method} {path}", "type": "not_found"}})
        await writer.drain()

    # --- chat completions ----------------------------------------------------------

    async def _completions(self, request: dict, writer) -> None:
        self.requests += 1
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        if self.log:
            self.log.write(json.dumps({"ts": time.time(), "request": request}) + "\n")
            self.log.flush()
        try:
            model = str(request.get("model") or "fake-instant")
            delay = self.slow_ms if "slow" in model else self.delay_ms
            await asyncio.sleep(delay / 1000)
            if request.get("stream"):
                await _stream(writer, model, include_usage=bool((request.get("stream_options") or {}).get("include_usage")))
            else:
                _send_json(writer, 200, _completion(model))
        finally:
            self.inflight -= 1


def _usage() -> dict:
    return {"prompt_tokens": 10, "completion_tokens": 6, "total_tokens": 16}


def _completion(model: str) -> dict:
    message = {"role": "assistant", "content": REPLY}
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
        "model": model, "choices": [{"index": 0, "message": message, "finish_reason": "stop"}], "usage": _usage(),
    }  # fmt: skip


async def _stream(writer, model: str, *, include_usage: bool) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
                 b"transfer-encoding: chunked\r\n\r\n")  # fmt: skip
    base = {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model}  # fmt: skip
    words = REPLY.split(" ")
    chunks = [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]
    chunks += [{"index": 0, "delta": {"content": w if i == 0 else " " + w}, "finish_reason": None}
               for i, w in enumerate(words)]  # fmt: skip
    chunks.append({"index": 0, "delta": {}, "finish_reason": "stop"})
    for choice in chunks:
        _chunk(writer, {**base, "choices": [choice]})
    if include_usage:
        _chunk(writer, {**base, "choices": [], "usage": _usage()})
    _write_chunked(writer, b"data: [DONE]\n\n")
    writer.write(b"0\r\n\r\n")
    await writer.drain()


def _chunk(writer, data: dict) -> None:
    _write_chunked(writer, b"data: " + json.dumps(data).encode() + b"\n\n")


def _write_chunked(writer, data: bytes) -> None:
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")


def _send_json(writer, status: int, data: dict) -> None:
    body = json.dumps(data).encode()
    reason = {200: "OK", 404: "Not Found"}.get(status, "Error")
    writer.write(f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
                 f"content-length: {len(body)}\r\n\r\n".encode() + body)  # fmt: skip


async def _read_headers(reader: asyncio.StreamReader) -> dict[str, str]:
    headers = {}
    for _ in range(200):
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            return headers
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    raise ValueError("too many headers")


async def serve(*, host: str, port: int, model: FakeModel, ready_file: Path | None = None) -> None:
    server = await asyncio.start_server(model.handle, host, port, backlog=4096, limit=MAX_BODY)
    bound = server.sockets[0].getsockname()[1]
    print(f"fake model listening on http://{host}:{bound}/v1", flush=True)
    if ready_file:
        ready_file.write_text(str(bound))
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (see --ready-file)")
    parser.add_argument("--delay-ms", type=float, default=0)
    parser.add_argument("--slow-ms", type=float, default=1000)
    parser.add_argument("--log", type=Path, default=None)
    parser.add_argument("--ready-file", type=Path, default=None, help="write the bound port here once listening")
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("loopback only")
    model = FakeModel(delay_ms=args.delay_ms, slow_ms=args.slow_ms, log_path=args.log)
    try:
        asyncio.run(serve(host=args.host, port=args.port, model=model, ready_file=args.ready_file))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
