"""The web process as the Procfile runs it holds under slow clients (issue 14, item 6): clients
that trickle a request header or body hold no thread, so /healthz and real submissions are
answered while they stay connected, and a client too slow to finish its request gets 408."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import time
from collections.abc import Iterator

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from tests.processes import CeleryProcess, free_port, procfile_argv, wait_for

pytestmark = pytest.mark.integration

HEADER_TIMEOUT = 2


def start_web(platform, name: str) -> tuple[CeleryProcess, int]:
    port = free_port()
    env = platform.env(WEB_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT), WEB_BODY_TIMEOUT_SECONDS=str(HEADER_TIMEOUT))
    process = CeleryProcess(procfile_argv("web", PORT=str(port)), env, name)

    def ready() -> bool:
        if process.proc.poll() is not None:
            raise AssertionError(f"web exited with {process.proc.returncode}:\n{process.log()[-3000:]}")
        with contextlib.suppress(OSError):
            return request(port, "GET", "/healthz")[0] == 200
        return False

    try:
        wait_for(ready, timeout=60, interval=0.2, what="the web process to answer /healthz")
    except BaseException:
        process.stop()
        raise
    return process, port


@pytest.fixture
def web(platform) -> Iterator[int]:
    process, port = start_web(platform, "web-slow-clients")
    try:
        yield port
    finally:
        process.stop()


@pytest.fixture
def token(platform) -> str:
    user = get_user_model().objects.create_user("slow-client-test", password="x")
    return Token.objects.create(user=user).key


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def slow_clients(port: int) -> list[socket.socket]:
    """Far more slow clients than the web process has threads (2 processes x 4): half a header,
    a header and half a declared body, a header and one chunk of a chunked body."""
    starts = (
        [b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: "] * 48
        + [b'POST /api/v1/jobs HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{"kind"'] * 16
        + [b'POST /api/v1/jobs HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"ki\r\n'] * 16
    )
    sockets = []
    for start in starts:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(start)
        sockets.append(sock)
    return sockets


def test_slow_clients_hold_no_thread_and_are_answered_408_when_too_slow(web, token):
    sockets = slow_clients(web)
    try:
        # While 80 slow clients stay connected, health checks and submissions are answered.
        for _ in range(16):
            assert request(web, "GET", "/healthz")[0] == 200
        status, body = request(
            web,
            "POST",
            "/api/v1/jobs",
            json.dumps({"kind": "diagnostics.noop", "payload": {}}).encode(),
            {"Authorization": f"Token {token}", "Content-Type": "application/json"},
        )
        assert status == 202, body

        # A client that never finishes its request is answered 408 and disconnected.
        sockets[0].settimeout(HEADER_TIMEOUT + 10)
        answer = sockets[0].recv(4096)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert sockets[0].recv(4096) == b""
    finally:
        for sock in sockets:
            sock.close()


def test_a_chunked_body_sent_in_pieces_is_read_whole(web, token):
    conn = http.client.HTTPConnection("127.0.0.1", web, timeout=10)
    conn.putrequest("POST", "/api/v1/jobs")
    conn.putheader("Authorization", f"Token {token}")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    for part in (b'{"kind": "diag', b'nostics.noop", ', b'"payload": {}, "priority": "low"}'):
        conn.send(b"%x;ext=1\r\n%s\r\n" % (len(part), part))
    conn.send(b"0\r\nX-Trailer: yes\r\n\r\n")
    response = conn.getresponse()

    assert response.status == 202, response.read()
    assert json.loads(response.read())["priority"] == "low"  # from the last chunk


def test_expect_100_continue_gets_one_interim_answer_then_the_real_one(web, token):
    body = json.dumps({"kind": "diagnostics.noop", "payload": {}}).encode()
    sock = socket.create_connection(("127.0.0.1", web), timeout=10)
    try:
        sock.sendall(
            b"POST /api/v1/jobs HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n"
            + f"Authorization: Token {token}\r\nContent-Type: application/json\r\n".encode()
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        )
        assert sock.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    finally:
        sock.close()

    assert answer.startswith(b"HTTP/1.1 202 "), answer[:200]
    assert b"100 Continue" not in answer


def test_a_kept_alive_connection_serves_request_after_request(web):
    conn = http.client.HTTPConnection("127.0.0.1", web, timeout=10)
    try:
        for _ in range(3):
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            response.read()
            assert response.status == 200
    finally:
        conn.close()


def test_every_request_is_counted_in_metrics_and_none_is_lost_when_the_web_process_stops(platform, token):
    """The web process sums its requests' metrics and sends them from a background thread
    (apps.core.redis.add), so no request waits on a Redis round trip to count itself: every
    request is counted, without a stop to push the sums out, and what still waits when the
    process stops is sent then."""
    import redis

    client = redis.Redis.from_url(platform.redis.url)
    key = "jobplatform:m:h:http_request"

    def counted() -> int:
        return sum(int(v) for f, v in client.hgetall(key).items() if f.endswith(b"|count"))

    process, port = start_web(platform, "web-metrics")
    try:
        time.sleep(0.5)  # the readiness checks' own counts have left
        before_count = counted()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(60):
            conn.request("GET", "/api/v1/jobs", headers={"Authorization": f"Token {token}"})
            response = conn.getresponse()
            response.read()
            assert response.status == 200
        wait_for(lambda: counted() - before_count == 60, timeout=10, what="60 requests counted")
        for _ in range(5):
            conn.request("GET", "/api/v1/jobs", headers={"Authorization": f"Token {token}"})
            conn.getresponse().read()
        conn.close()
    finally:
        process.stop()
    assert counted() - before_count == 65


def test_a_jobs_events_stream_through_the_server_as_they_happen(platform, token):
    """Server-sent events through gunicorn as the Procfile runs it: the first event arrives
    while the job is still queued (the answer is streamed, not buffered to its end), the
    change follows when the doorbell rings, then `end`."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from apps.jobs import notify
    from apps.jobs.models import Job, JobStatus
    from tests.factories import JobFactory

    owner = get_user_model().objects.get(auth_token__key=token)
    job = JobFactory(owner=owner, status=JobStatus.QUEUED)
    process, port = start_web(platform, "web-events")
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"Authorization": f"Token {token}", "Accept": "text/event-stream"}
        conn.request("GET", f"/api/v1/jobs/{job.id}/events", headers=headers)
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type") == "text/event-stream; charset=utf-8"

        def next_event() -> dict[str, str]:
            fields: dict[str, str] = {}
            while True:
                line = response.readline().decode().rstrip("\n")
                if not line:
                    if "event" in fields:
                        return fields
                    continue
                name, _, value = line.partition(": ")
                fields[name] = value

        first = next_event()
        assert (first["event"], json.loads(first["data"])["status"]) == ("job", "queued")
        Job.objects.filter(id=job.id).update(
            status=JobStatus.SUCCEEDED, finished_at=timezone.now(), updated_at=timezone.now(), result={"ok": True}
        )
        notify.job_changed_publish(job.id)
        changed = next_event()
        assert (changed["event"], json.loads(changed["data"])["result"]) == ("job", {"ok": True})
        assert next_event()["event"] == "end"
        conn.close()
    finally:
        process.stop()
