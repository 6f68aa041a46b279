"""A real webhook receiver (an HTTP server in a thread of the test process) and the signature
a receiver verifies, written out as the docs state it; for the unit and integration tests."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.client import HTTPMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    method: str
    path: str
    headers: HTTPMessage
    body: bytes


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 and a free port, in a thread of the test process. Each
    POST gets the next status of `script` (the last one repeats); 3xx answers redirect to
    /moved. Every request it sees is kept in `requests`."""

    script: list[int] = field(default_factory=lambda: [200])
    delay: float = 0.0
    requests: list[Received] = field(default_factory=list)

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self._answer()

            def do_GET(self) -> None:
                self._answer()

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.requests.append(Received(self.command, self.path, self.headers, body))
                    index = min(len(receiver.requests), len(receiver.script)) - 1
                    status = receiver.script[index]
                if receiver.delay:
                    time.sleep(receiver.delay)
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/moved")
                payload = json.dumps({"answered": status}).encode()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the test reads `requests`, not stderr

        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True  # a slow answer must not hold up stop()
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/jobs?token=abc"

    def posts(self) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.method == "POST"]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def documented_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The algorithm as the README states it, written out independently of the code."""
    return "v1=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
