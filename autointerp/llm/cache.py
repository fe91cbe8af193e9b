"""Durable response cache: sqlite in WAL mode, one row per request key.

Safe for many coroutines/threads (one connection behind a lock) and many processes (WAL + a
busy timeout); a row is committed before the call returns, so a killed process loses at most
the requests in flight. Keys are ``LLMClient.key_for`` hashes (no API keys, see
``base.request_key``); values are the parsed response as JSON.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from autointerp.errors import AutointerpError
from autointerp.llm.types import ChatResponse, PromptLogprobs, TokenLogprob, Usage


def encode_response(res: ChatResponse | PromptLogprobs) -> dict[str, Any]:
    """``asdict(res)`` less ``key``, without deep-copying the logprob tables (the dict is
    serialised at once; ``asdict`` cost more than the HTTP call for an instant server)."""
    d = {f.name: getattr(res, f.name) for f in fields(res) if f.name != "key"}
    d["usage"] = asdict(res.usage)
    if isinstance(res, ChatResponse) and res.logprobs is not None:
        d["logprobs"] = [
            {"token": t.token, "logprob": t.logprob, "top": t.top} for t in res.logprobs
        ]
    return d


def decode_response(kind: str, d: dict[str, Any]) -> ChatResponse | PromptLogprobs:
    d = dict(d)
    usage = Usage(**d.pop("usage"))
    if kind == "chat":
        lps = d.pop("logprobs")
        return ChatResponse(
            text=d["text"],
            logprobs=None if lps is None else [TokenLogprob(**t) for t in lps],
            usage=usage,
            finish_reason=d.get("finish_reason") or "",
        )
    return PromptLogprobs(
        tokens=d["tokens"],
        offsets=d["offsets"],
        top=d["top"],
        usage=usage,
        candidates=d.get("candidates"),
        exact_candidates=d.get("exact_candidates", False),
        token_logprobs=d.get("token_logprobs"),
    )


class ResponseCache:
    """``get(key) -> dict | None``, ``put(key, kind, value)``, ``forget(key)``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                str(self.path), timeout=60.0, check_same_thread=False, isolation_level=None
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS responses ("
                "key TEXT PRIMARY KEY, kind TEXT NOT NULL, value TEXT NOT NULL, created REAL)"
            )
            self._db.execute("SELECT key, kind, value FROM responses LIMIT 1").fetchall()
        except sqlite3.DatabaseError as e:
            raise AutointerpError(
                f"LLM response cache {self.path} is corrupt ({e}); delete it (and its -wal/-shm "
                "files): it holds only cached answers, which are asked again"
            ) from None

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM responses WHERE key=?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, kind: str, value: dict[str, Any]) -> None:
        blob = json.dumps(value, ensure_ascii=False, default=float)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses (key, kind, value, created) VALUES (?,?,?,?)",
                (key, kind, blob, time.time()),
            )

    def forget(self, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM responses WHERE key=?", (key,))

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return (
                self._db.execute("SELECT 1 FROM responses WHERE key=?", (key,)).fetchone()
                is not None
            )

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
