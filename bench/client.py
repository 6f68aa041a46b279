"""An HTTP client on keep-alive connections (http.client), and a load generator made of
threads, each with its own connection, bounded by a request count and by time. It only ever
talks to 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

_RECONNECT = (http.client.RemoteDisconnected, http.client.CannotSendRequest, ConnectionError, BrokenPipeError)


class Client:
    def __init__(self, port: int, token: str = "", timeout: float = 120) -> None:
        self.port = port
        self.timeout = timeout
        self.headers = {"Accept": "application/json"}
        if token:
            self.headers["Authorization"] = f"Token {token}"
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        headers = dict(self.headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except _RECONNECT:
                # The server closed an idle keep-alive connection before this request reached
                # it: open a new one and send the request again, once.
                self.close()
                if attempt == 2:
                    raise
                continue
            if response.getheader("Connection", "").lower() == "close":
                self.close()
            return response.status, dict(response.getheaders()), data
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        raw = json.dumps(body).encode() if body is not None else None
        status, _, data = self.request(method, path, raw)
        try:
            return status, json.loads(data) if data else None
        except ValueError:
            return status, data.decode(errors="replace")


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class LoadResult:
    clients: int
    requests: int
    seconds: float
    latencies_ms: list[float]
    unexpected: dict[int, int]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else math.nan

    @property
    def p50(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies_ms, 99)


def load(
    port: int,
    token: str,
    method: str,
    path: str,
    body: bytes | None,
    *,
    clients: int,
    max_requests: int,
    max_seconds: float,
    expect: int,
) -> LoadResult:
    """`clients` threads send requests back to back on their own keep-alive connection until
    `max_requests` have been sent or `max_seconds` have passed. Each connection sends one
    request first that is not counted (connect, warm), then all start together."""
    lock = threading.Lock()
    issued = 0
    latencies: list[float] = []
    unexpected: dict[int, int] = {}
    finished: list[float] = []
    start = threading.Barrier(clients + 1)
    deadline = [math.inf]

    def client() -> None:
        nonlocal issued
        mine: list[float] = []
        bad: dict[int, int] = {}
        conn = Client(port, token, timeout=60)
        try:
            conn.request(method, path, body)
        except Exception:
            conn.close()
        start.wait()
        while True:
            with lock:
                if issued >= max_requests or time.perf_counter() >= deadline[0]:
                    break
                issued += 1
            t0 = time.perf_counter()
            try:
                status, _, _ = conn.request(method, path, body)
            except Exception:
                status = -1  # a connection error
                conn.close()
            mine.append((time.perf_counter() - t0) * 1000)
            if status != expect:
                bad[status] = bad.get(status, 0) + 1
        end = time.perf_counter()
        conn.close()
        with lock:
            latencies.extend(mine)
            finished.append(end)
            for status, count in bad.items():
                unexpected[status] = unexpected.get(status, 0) + count

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    deadline[0] = time.perf_counter() + max_seconds + 60  # until the barrier opens
    start.wait(timeout=120)
    t0 = time.perf_counter()
    deadline[0] = t0 + max_seconds
    for thread in threads:
        thread.join(timeout=max_seconds + 120)
    seconds = (max(finished) if finished else time.perf_counter()) - t0
    return LoadResult(clients, len(latencies), seconds, latencies, unexpected)
