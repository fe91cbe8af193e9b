"""A small OpenAI-compatible HTTP server on loopback for tests and benchmarks.

It answers ``/v1/chat/completions`` and ``/v1/completions`` (echo logprobs) with deterministic
text, after ``latency_s`` (a fixed latency per call: 0 for an instant server, 0.05 for the
overhead benchmark's 50 ms server), and injects faults at a seeded rate: 429 with
``Retry-After``, 500, answers slower than the client's timeout, and garbage bodies. Every request
is logged with its request key (sha256 of model + messages/prompt + sampling fields) and
outcome, so tests can check that no request was paid for twice. Not a mock: it is a real server
the clients talk HTTP to (``keep_alive=True``: persistent connections, like a real one).

``/v1/completions`` takes ``prompt`` as a string or a list (one choice per prompt, ``index`` =
the prompt's position, usage summed), answered after ONE latency per request, as a batching
server (vLLM) answers a short list in about the time of one prompt. ``GET /v1/stats`` returns
``{"requests": POSTs answered, "prompts": prompts in them}`` (the log stays in a child
process under ``server_process``; the overhead benchmark reads its request count here).
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULTS = ("429", "500", "slow", "garbage")


def body_key(body: dict[str, Any]) -> str:
    keep = {k: body.get(k) for k in ("model", "messages", "prompt", "max_tokens", "logprobs")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()


def answer_text(body: dict[str, Any]) -> str:
    """What the server answers for a chat body (tests recompute it)."""
    msgs = body.get("messages") or []
    return f"answer {body_key(body)[:10]} n_messages={len(msgs)}"


@dataclass
class LogEntry:
    key: str
    path: str
    outcome: str  # ok | 429 | 500 | slow | garbage | 401 | poison
    t: float
    auth_ok: bool = True


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # socketserver's default listen backlog (5) drops bursts of connects


@dataclass
class FaultServer:
    """``with FaultServer(...) as fs: fs.url`` -> ``http://127.0.0.1:PORT/v1``."""

    fault_rate: float = 0.0
    faults: tuple[str, ...] = FAULTS
    seed: int = 0
    latency_s: float = 0.0
    slow_s: float = 2.0
    retry_after: str | None = "0"
    api_key: str | None = None  # when set, other keys get 401
    poison: str = "POISON"  # requests containing this always get 500
    keep_alive: bool = False  # HTTP/1.1 persistent connections (HTTP/1.0: one per request)
    reply: Callable[[dict[str, Any]], str] | None = None  # chat body -> text (default answer_text)
    log: list[LogEntry] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, int] = {}
        self.stats = {"requests": 0, "prompts": 0}
        server = self

        class Handler(BaseHTTPRequestHandler):
            # keep_alive: HTTP/1.1, clients reuse their connections (like a real server)
            protocol_version = "HTTP/1.1" if server.keep_alive else "HTTP/1.0"

            def log_message(self, *a: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                server._handle(self, body)

            def do_GET(self) -> None:  # noqa: N802
                if self.path.endswith("/stats"):
                    with server._lock:
                        self._send(200, dict(server.stats))
                    return
                self._send(200, {"object": "list", "data": [{"id": "fault", "object": "model"}]})

            def _send(self, status: int, obj: Any, headers: dict[str, str] | None = None):
                raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(raw)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------------------------------
    def _decide(self, key: str, blob: str) -> str:
        with self._lock:
            n = self._seen.get(key, 0)
            self._seen[key] = n + 1
        if self.poison and self.poison in blob:
            return "poison"
        rng = random.Random(f"{self.seed}:{key}:{n}")
        if rng.random() < self.fault_rate:
            return rng.choice(self.faults)
        return "ok"

    def _handle(self, h: Any, body: dict[str, Any]) -> None:
        key = body_key(body)
        auth = h.headers.get("authorization", "")
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            self._record(key, h.path, "401", auth_ok=False)
            h._send(401, {"error": {"message": "Incorrect API key provided", "code": 401}})
            return
        outcome = self._decide(key, json.dumps(body))
        self._record(key, h.path, outcome)
        if outcome == "429":
            hdr = {"retry-after": self.retry_after} if self.retry_after is not None else {}
            h._send(429, {"error": {"message": "rate limited"}}, hdr)
        elif outcome in ("500", "poison"):
            h._send(500, {"error": {"message": "internal error"}})
        elif outcome == "garbage":
            h._send(200, b"<html>\x00not json{{")
        else:
            time.sleep(self.slow_s if outcome == "slow" else self.latency_s)
            ans = self._ok(h.path, body, key)
            with self._lock:
                self.stats["requests"] += 1
                self.stats["prompts"] += len(ans["choices"])
            h._send(200, ans)

    def _record(self, key: str, path: str, outcome: str, auth_ok: bool = True) -> None:
        with self._lock:
            self.log.append(LogEntry(key, path, outcome, time.monotonic(), auth_ok))

    def _ok(self, path: str, body: dict[str, Any], key: str) -> dict[str, Any]:
        if path.endswith("/chat/completions"):
            text = (self.reply or answer_text)(body)
            ptoks = sum(len(m.get("content", "").split()) for m in body.get("messages") or [])
            return {
                "id": "chatcmpl-" + key[:8],
                "object": "chat.completion",
                "model": body.get("model"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": ptoks,
                    "completion_tokens": len(text.split()),
                    "total_tokens": ptoks + len(text.split()),
                },
            }
        prompt = body.get("prompt") or ""
        prompts = prompt if isinstance(prompt, list) else [prompt]
        choices = [_echo_choice(str(p), i) for i, p in enumerate(prompts)]
        n_toks = sum(len(c["logprobs"]["tokens"]) for c in choices)
        return {
            "id": "cmpl-" + key[:8],
            "object": "text_completion",
            "model": body.get("model"),
            "choices": choices,
            "usage": {
                "prompt_tokens": n_toks,
                "completion_tokens": len(choices),
                "total_tokens": n_toks + len(choices),
            },
        }

    # -------------------------------------------------------------------------------------
    def start(self) -> FaultServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def outcomes(self, key: str | None = None) -> list[str]:
        with self._lock:
            return [e.outcome for e in self.log if key is None or e.key == key]


def echo_logprob(before: str) -> float:
    """The server's logprob of a prompt token given the text ``before`` it: -0.5 down to
    -2.25 by a hash of that text, so a prefix changes it (the PMI simulator sees a signal)."""
    return -0.5 - (hashlib.sha256(before.encode()).digest()[0] % 8) / 4


def _echo_choice(prompt: str, index: int) -> dict[str, Any]:
    """One echo choice: a token per space-separated word with logprob ``echo_logprob(text
    before it)`` (none for the first) and " x" at -3 in its top."""
    words, offs, pos = [], [], 0
    for w in prompt.split(" "):
        tok = w if pos == 0 else " " + w
        offs.append(pos if pos == 0 else pos - 1)
        words.append(tok)
        pos += len(w) + 1
    lps = [echo_logprob(prompt[:o]) for o in offs[1:]]
    top = [None] + [{t: lp, " x": -3.0} for t, lp in zip(words[1:], lps, strict=True)]
    return {
        "index": index,
        "text": prompt + " x",
        "finish_reason": "length",
        "logprobs": {
            "tokens": words,
            "text_offset": offs,
            "token_logprobs": [None, *lps],
            "top_logprobs": top,
        },
    }


def _serve(kw: dict[str, Any], q: Any, stop: Any) -> None:
    with FaultServer(**kw) as fs:
        q.put(fs.url)
        stop.wait()


@contextmanager
def server_process(**kw: Any) -> Iterator[str]:
    """A ``FaultServer(**kw)`` in a child process (its CPU not spent in the caller's): yields
    its URL. The request log stays in the child."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    q, stop = ctx.Queue(), ctx.Event()
    p = ctx.Process(target=_serve, args=(kw, q, stop), daemon=True)
    p.start()
    try:
        yield q.get(timeout=120)
    finally:
        stop.set()
        p.join(10)
        if p.is_alive():
            p.terminate()
