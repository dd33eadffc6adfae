"""Failed logins slow down, per client, and are logged: an ASGI middleware in front of gradio's ``POST /login``.

The first ``free_failures`` wrong passwords cost nothing (typos happen); after that each further failure doubles
the wait before that client may try again (1 s, 2 s, 4 s … up to ``max_delay``). A try during the wait is answered
``429 Too Many Requests`` with ``Retry-After`` and never reaches the password check. A successful login clears the
client's count. Behind the share tunnel every request comes from this machine, so for loopback peers the client is
the first ``X-Forwarded-For`` address when there is one (a header only the local tunnel can set for us).
"""
from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

MAX_CLIENTS = 10_000  # the oldest client's record is dropped past this many


@dataclass
class _Record:
    failures: int = 0
    blocked_until: float = 0.0


class LoginThrottle:
    def __init__(self, app, free_failures: int = 3, base_delay: float = 1.0, max_delay: float = 300.0,
                 clock=time.monotonic, log=None):
        self.app = app
        self.free_failures, self.base_delay, self.max_delay = free_failures, base_delay, max_delay
        self.clock = clock
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._lock = threading.Lock()

    async def __call__(self, scope, receive, send):
        if not _is_login(scope):
            await self.app(scope, receive, send)
            return
        client = client_address(scope)
        wait = self.wait_for(client)
        if wait > 0:
            await _too_many(send, wait)
            return
        status: dict[str, int] = {}

        async def watch(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        await self.app(scope, receive, watch)
        self.record(client, ok=status.get("code") == 200)

    def wait_for(self, client: str) -> float:
        """Seconds ``client`` must still wait before its next login try (0: it may try now)."""
        with self._lock:
            record = self._records.get(client)
            return max(0.0, record.blocked_until - self.clock()) if record else 0.0

    def record(self, client: str, ok: bool) -> None:
        with self._lock:
            if ok:
                self._records.pop(client, None)
                return
            record = self._records.pop(client, None) or _Record()
            record.failures += 1
            extra = record.failures - self.free_failures
            delay = min(self.base_delay * 2 ** (extra - 1), self.max_delay) if extra > 0 else 0.0
            record.blocked_until = self.clock() + delay
            self._records[client] = record
            while len(self._records) > MAX_CLIENTS:
                self._records.popitem(last=False)
        note = f"; next try allowed in {math.ceil(delay)} s" if delay else ""
        self.log(f"login failed from {client} ({record.failures} failed in a row{note})")


def _is_login(scope) -> bool:
    return scope["type"] == "http" and scope.get("method") == "POST" and scope.get("path", "").rstrip("/") \
        .endswith("/login")


def client_address(scope) -> str:
    host = (scope.get("client") or ("unknown", 0))[0]
    if host in ("127.0.0.1", "::1", "localhost"):
        for name, value in scope.get("headers") or []:
            if name.lower() == b"x-forwarded-for":
                forwarded = value.decode("latin-1").split(",")[0].strip()
                return forwarded[:64] or host
    return host


async def _too_many(send, wait: float) -> None:
    seconds = math.ceil(wait)
    body = json.dumps({"detail": f"Too many failed logins from this address; try again in {seconds} s."}).encode()
    await send({"type": "http.response.start", "status": 429,
                "headers": [(b"content-type", b"application/json"), (b"retry-after", str(seconds).encode()),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
